//! Tools the model can call, and the registry that validates and runs them.

use crate::message::{ChatKind, InboundMessage};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a tool can change, so policies (confirmation, egress rules) can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideEffect {
    /// Reads only; safe to run without asking.
    ReadOnly,
    /// Changes local state (files in the workspace, memory).
    LocalWrite,
    /// Reaches outside (web requests, sending messages, purchases).
    External,
}

/// What the model is told about a tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// The JSON schema of its input.
    pub input_schema: Value,
}

/// Why a tool call failed; the model sees the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What went wrong, phrased for the model.
    pub message: String,
}

impl ToolError {
    /// A tool error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Whom a run answers, for the tools that act for someone (whose chat,
/// whose private memory).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunContext {
    /// The message the run answers (its channel, chat and sender), if any.
    pub inbound: Option<InboundMessage>,
}

impl RunContext {
    /// The context of a run answering `inbound`.
    pub fn answering(inbound: &InboundMessage) -> Self {
        Self {
            inbound: Some(inbound.clone()),
        }
    }

    /// Whether the run is private to one person: a direct conversation, or
    /// a run that answers no chat (the host's own).
    pub fn is_private(&self) -> bool {
        (self.inbound.as_ref()).is_none_or(|inbound| inbound.chat_kind == ChatKind::Direct)
    }
}

/// A tool the model can call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Its name (letters, digits, `_` and `-`).
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// The JSON schema its input must match.
    fn input_schema(&self) -> Value;
    /// What it can change.
    fn side_effect(&self) -> SideEffect;
    /// Runs the tool on input that matched the schema.
    async fn call(&self, input: Value) -> Result<String, ToolError>;
    /// Runs the tool for the run described by `context`. Tools that act for
    /// someone override this; the default is [`Tool::call`].
    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        let _ = context;
        self.call(input).await
    }
}

/// Why a tool could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Another tool already has this name.
    #[error("a tool named {0:?} is already registered")]
    DuplicateName(String),
    /// The name has characters providers refuse.
    #[error("tool name {0:?} must be 1 to 64 letters, digits, '_' or '-'")]
    InvalidName(String),
    /// The input schema is not a valid JSON schema.
    #[error("tool {name:?} has an invalid input schema: {reason}")]
    InvalidSchema {
        /// The tool.
        name: String,
        /// What is wrong with the schema.
        reason: String,
    },
}

/// The outcome of one call, as the model will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutcome {
    /// The tool's output, or the error message.
    pub content: String,
    /// Whether the call failed.
    pub is_error: bool,
}

impl ToolOutcome {
    fn error(content: String) -> Self {
        Self {
            content,
            is_error: true,
        }
    }
}

struct Registered {
    tool: Arc<dyn Tool>,
    /// Built once: the spec goes into every model request.
    spec: ToolSpec,
    validator: jsonschema::Validator,
}

/// The tools offered to the model, each with its compiled input schema.
#[derive(Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Registered>,
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool after checking its name and schema.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), RegistryError> {
        let name = tool.name().to_owned();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(RegistryError::InvalidName(name));
        }
        if self.tools.contains_key(&name) {
            return Err(RegistryError::DuplicateName(name));
        }
        let input_schema = tool.input_schema();
        let validator = jsonschema::validator_for(&input_schema).map_err(|err| {
            RegistryError::InvalidSchema {
                name: name.clone(),
                reason: err.to_string(),
            }
        })?;
        let spec = ToolSpec {
            name: name.clone(),
            description: tool.description().to_owned(),
            input_schema,
        };
        self.tools.insert(
            name,
            Registered {
                tool,
                spec,
                validator,
            },
        );
        Ok(())
    }

    /// The specs to put in a model request.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|r| r.spec.clone()).collect()
    }

    /// A registered tool by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name).map(|r| &r.tool)
    }

    /// Whether no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Runs one call, for no one in particular ([`RunContext::default`]).
    pub async fn invoke(&self, name: &str, input: Result<Value, String>) -> ToolOutcome {
        self.invoke_in(name, input, &RunContext::default()).await
    }

    /// Runs one call for the run described by `context`. An unknown tool,
    /// input that breaks the schema, or a failing tool all become an error
    /// outcome for the model; nothing here panics or aborts the run.
    pub async fn invoke_in(
        &self,
        name: &str,
        input: Result<Value, String>,
        context: &RunContext,
    ) -> ToolOutcome {
        let Some(registered) = self.tools.get(name) else {
            return ToolOutcome::error(format!(
                "unknown tool {name:?}; available: {}",
                self.names()
            ));
        };
        let input = match input {
            Ok(input) => input,
            Err(reason) => {
                return ToolOutcome::error(format!("invalid input for {name}: {reason}"));
            }
        };
        let problems: Vec<String> = registered
            .validator
            .iter_errors(&input)
            .map(|err| {
                let path = err.instance_path().to_string();
                if path.is_empty() {
                    err.to_string()
                } else {
                    format!("{path}: {err}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return ToolOutcome::error(format!(
                "invalid input for {name}: {}",
                problems.join("; ")
            ));
        }
        match registered.tool.call_in(input, context).await {
            Ok(content) => ToolOutcome {
                content,
                is_error: false,
            },
            Err(err) => ToolOutcome::error(format!("{name} failed: {err}")),
        }
    }

    fn names(&self) -> String {
        self.tools.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}
