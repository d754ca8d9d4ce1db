//! The language-model contract: a request answered by a stream of events.

use crate::message::{ContentBlock, Message, Role, Usage};
use crate::tool::ToolSpec;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Options for one model call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelOptions {
    /// The model id, when the model serves several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling: the probability mass to sample from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sequences that end the answer when produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may ask for several tool calls in one turn (the provider's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// An opaque id of the end user, for the provider's abuse checks and for per-user routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Request fields of one provider API with no neutral equivalent (OpenAI's
    /// `seed` or `response_format`, Anthropic's `top_k` or `thinking`), kept so
    /// they reach providers that speak that API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_fields: Option<ProviderFields>,
}

/// Fields of a request written for one provider API, passed through unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderFields {
    /// The API they belong to (`anthropic` or `openai`).
    pub api: String,
    /// The fields, by name.
    pub fields: serde_json::Map<String, Value>,
}

/// How the model may use the tools it is offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides whether to call a tool.
    Auto,
    /// The model must call some tool.
    Any,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Tool {
        /// The tool's name.
        name: String,
    },
}

/// A request to a language model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Call options.
    pub options: ModelOptions,
    /// Where the provider may cache the prompt up to. Providers with explicit
    /// prompt caching (Anthropic's `cache_control`) use them; those that cache
    /// on their own ignore them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_breakpoints: Vec<CacheBreakpoint>,
}

/// The end of a prompt prefix the provider may cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheBreakpoint {
    /// The last part of the cached prefix.
    pub after: PromptPart,
    /// How long to keep it, as the provider spells it (`5m`, `1h`); the
    /// provider's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl CacheBreakpoint {
    /// A breakpoint after `part` with the provider's default lifetime.
    pub fn after(part: PromptPart) -> Self {
        Self {
            after: part,
            ttl: None,
        }
    }
}

/// A part of a prompt, in the order providers read them: system, tools, messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "part", rename_all = "snake_case")]
pub enum PromptPart {
    /// The system prompt.
    System,
    /// The tool at this index.
    Tool {
        /// Its index in `tools`.
        index: usize,
    },
    /// A content block of a message.
    Block {
        /// The message's index in `messages`.
        message: usize,
        /// The block's index in that message.
        block: usize,
    },
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its turn.
    EndTurn,
    /// It wants tool results.
    ToolUse,
    /// It hit the token limit.
    MaxTokens,
    /// It produced a stop sequence.
    StopSequence,
    /// A reason this crate does not know, as the provider spelled it.
    Other(String),
}

/// One event of a streamed model answer.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelEvent {
    /// More text.
    TextDelta(String),
    /// A tool call begins.
    ToolCallStart {
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallDelta {
        /// The call's id.
        id: String,
        /// A fragment of the arguments' JSON text.
        arguments: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnd {
        /// The call's id.
        id: String,
    },
    /// Token usage so far (cumulative for the call).
    Usage(Usage),
    /// The answer is complete.
    Stop(StopReason),
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The provider refused the request as invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Credentials were missing or refused.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Rate limited; retry after the given delay when known.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// The provider is overloaded or failed.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The connection failed or timed out.
    #[error("transport error: {0}")]
    Transport(String),
    /// The stream broke the protocol (for example it ended without a stop).
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A stream of model events.
pub type ModelStream = BoxStream<'static, Result<ModelEvent, ModelError>>;

/// A language model: something that answers a request with a stream of events.
#[async_trait]
pub trait LanguageModel: Send + Sync {
    /// A short name for logs and status pages.
    fn name(&self) -> &str;

    /// Starts answering `request`.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError>;
}

/// A tool call as the model asked for it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The call's id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The parsed arguments, or the reason they are not valid JSON.
    pub input: Result<Value, String>,
}

/// A complete (non-streamed) model answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelResponse {
    /// The assistant message, with text and tool-use blocks in order.
    pub message: Message,
    /// The tool calls it asks for.
    pub tool_calls: Vec<ToolCall>,
    /// Token usage.
    pub usage: Usage,
    /// Why it stopped.
    pub stop_reason: StopReason,
}

/// Assembles a [`ModelResponse`] from streamed events.
#[derive(Debug, Default)]
pub struct ResponseBuilder {
    blocks: Vec<ContentBlock>,
    calls: Vec<(String, String, String)>,
    usage: Usage,
    stop: Option<StopReason>,
}

impl ResponseBuilder {
    /// Takes one event into account.
    pub fn push(&mut self, event: ModelEvent) -> Result<(), ModelError> {
        match event {
            ModelEvent::TextDelta(delta) => match self.blocks.last_mut() {
                Some(ContentBlock::Text { text }) => text.push_str(&delta),
                _ => self.blocks.push(ContentBlock::Text { text: delta }),
            },
            ModelEvent::ToolCallStart { id, name } => {
                self.blocks.push(ContentBlock::ToolUse {
                    id: id.clone(),
                    name: name.clone(),
                    input: Value::Null,
                });
                self.calls.push((id, name, String::new()));
            }
            ModelEvent::ToolCallDelta { id, arguments } => {
                let call = self.calls.iter_mut().find(|(call_id, ..)| *call_id == id);
                let (.., args) = call.ok_or_else(|| {
                    ModelError::Protocol(format!("arguments for unknown tool call {id}"))
                })?;
                args.push_str(&arguments);
            }
            ModelEvent::ToolCallEnd { .. } => {}
            ModelEvent::Usage(usage) => self.usage = usage,
            ModelEvent::Stop(reason) => self.stop = Some(reason),
        }
        Ok(())
    }

    /// The complete answer; an error when the stream never said it stopped.
    pub fn finish(self) -> Result<ModelResponse, ModelError> {
        let stop_reason = self
            .stop
            .ok_or_else(|| ModelError::Protocol("stream ended without a stop event".into()))?;
        let tool_calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .map(|(id, name, args)| {
                let text = if args.trim().is_empty() {
                    "{}"
                } else {
                    args.as_str()
                };
                let input = serde_json::from_str(text)
                    .map_err(|err| format!("arguments are not valid JSON ({err}): {args}"));
                ToolCall { id, name, input }
            })
            .collect();
        let mut blocks = self.blocks;
        for block in &mut blocks {
            if let ContentBlock::ToolUse { id, input, .. } = block
                && let Some(call) = tool_calls.iter().find(|call| call.id == *id)
            {
                *input = call
                    .input
                    .clone()
                    .unwrap_or_else(|_| Value::Object(Default::default()));
            }
        }
        Ok(ModelResponse {
            message: Message {
                role: Role::Assistant,
                content: blocks,
            },
            tool_calls,
            usage: self.usage,
            stop_reason,
        })
    }
}

/// Calls `model` and waits for the whole answer (the non-streaming helper).
pub async fn complete(
    model: &dyn LanguageModel,
    request: ModelRequest,
) -> Result<ModelResponse, ModelError> {
    let mut stream = model.stream(request).await?;
    let mut builder = ResponseBuilder::default();
    while let Some(event) = stream.next().await {
        builder.push(event?)?;
    }
    builder.finish()
}
