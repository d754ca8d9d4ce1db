//! The tool-calling agent loop: model, tools, model, ... until the model is done.

use crate::cancel::CancelToken;
use crate::message::{ContentBlock, Message, Role, Usage};
use crate::model::{
    CacheBreakpoint, LanguageModel, ModelError, ModelEvent, ModelOptions, ModelRequest, PromptPart,
    ResponseBuilder, StopReason, ToolCall,
};
use crate::platform::Timer;
use crate::tool::{RunContext, ToolRegistry};
use futures::future::{Either, join_all, select};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// Limits and options for runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The most model calls in one run.
    pub max_steps: u32,
    /// The longest a run may take, tools included.
    pub run_timeout: Duration,
    /// Options passed to every model call.
    pub model: ModelOptions,
    /// Mark the system prompt, the tools and the conversation so far as
    /// cacheable, so each step and each turn reuses the provider's prompt cache.
    pub prompt_caching: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            max_steps: 8,
            run_timeout: Duration::from_secs(600),
            model: ModelOptions::default(),
            prompt_caching: true,
        }
    }
}

/// Two breakpoints: after the stable prefix (tools, or the system prompt when
/// there are none) and after the newest message, so the next step or turn reads
/// everything before it from the cache.
fn prompt_cache_breakpoints(tools: usize, messages: &[Message]) -> Vec<CacheBreakpoint> {
    let stable = match tools {
        0 => PromptPart::System,
        count => PromptPart::Tool { index: count - 1 },
    };
    let mut breakpoints = vec![CacheBreakpoint::after(stable)];
    if let Some((message, last)) = messages.iter().enumerate().next_back()
        && !last.content.is_empty()
    {
        breakpoints.push(CacheBreakpoint::after(PromptPart::Block {
            message,
            block: last.content.len() - 1,
        }));
    }
    breakpoints
}

/// What observers see while a run goes on.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// The model wrote more text.
    TextDelta(String),
    /// A tool call starts.
    ToolStart {
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// A tool call ended.
    ToolEnd {
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
        /// Whether it failed.
        is_error: bool,
    },
    /// A message is complete and belongs in the transcript.
    Message(Message),
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The model finished its turn.
    Completed,
    /// The step limit was reached while the model still wanted tools.
    MaxSteps,
}

/// The result of a run that ended normally.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// The messages the run added (assistant turns and tool results).
    pub messages: Vec<Message>,
    /// The text of the last assistant message.
    pub reply: String,
    /// Tokens used by all model calls.
    pub usage: Usage,
    /// Model calls made.
    pub steps: u32,
    /// How it ended.
    pub end: RunEnd,
    /// Why the model stopped the last time.
    pub stop_reason: StopReason,
}

/// Why a run failed. Messages completed before the failure were already
/// reported as [`AgentEvent::Message`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model call failed.
    #[error("model failed: {0}")]
    Model(#[from] ModelError),
    /// The run took longer than its timeout.
    #[error("run timed out after {0:?}")]
    Timeout(Duration),
    /// The run was cancelled.
    #[error("run cancelled")]
    Cancelled,
}

/// Runs conversations through a model and its tools.
#[derive(Clone)]
pub struct Agent {
    model: Arc<dyn LanguageModel>,
    tools: Arc<ToolRegistry>,
    timer: Arc<dyn Timer>,
    options: AgentOptions,
}

impl Agent {
    /// An agent using `model`, `tools` and `timer` (for the run timeout).
    pub fn new(
        model: Arc<dyn LanguageModel>,
        tools: Arc<ToolRegistry>,
        timer: Arc<dyn Timer>,
        options: AgentOptions,
    ) -> Self {
        Self {
            model,
            tools,
            timer,
            options,
        }
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        self.model.name()
    }

    /// The agent's limits and options.
    pub fn options(&self) -> &AgentOptions {
        &self.options
    }

    /// The model this agent calls.
    pub fn model(&self) -> &Arc<dyn LanguageModel> {
        &self.model
    }

    /// Answers the last user message of `history`, calling tools as the model asks,
    /// until the model ends its turn, the step limit is reached, the run times out,
    /// or `cancel` fires. Events stream to `on_event` as they happen.
    pub async fn run(
        &self,
        system: &str,
        history: &[Message],
        cancel: &CancelToken,
        on_event: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<RunOutcome, AgentError> {
        (self.run_in(&RunContext::default(), system, history, cancel, on_event)).await
    }

    /// [`Agent::run`], for the run described by `context` (which its tools see).
    pub async fn run_in(
        &self,
        context: &RunContext,
        system: &str,
        history: &[Message],
        cancel: &CancelToken,
        on_event: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<RunOutcome, AgentError> {
        // Stopped before it started (while its images downloaded): no model call.
        if cancel.is_cancelled() {
            return Err(AgentError::Cancelled);
        }
        let work = self.steps(context, system, history, on_event).boxed();
        let stop = select(
            self.timer.sleep(self.options.run_timeout),
            cancel.cancelled(),
        );
        match select(work, stop).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right((Either::Left(_), _)) => {
                Err(AgentError::Timeout(self.options.run_timeout))
            }
            Either::Right((Either::Right(_), _)) => Err(AgentError::Cancelled),
        }
    }

    /// Runs one step's tool calls concurrently; results keep the calls' order.
    async fn run_tools(
        &self,
        context: &RunContext,
        calls: &[ToolCall],
        on_event: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Vec<ContentBlock> {
        for call in calls {
            on_event(AgentEvent::ToolStart {
                id: call.id.clone(),
                name: call.name.clone(),
            });
        }
        let results = join_all(
            calls
                .iter()
                .map(|call| (self.tools).invoke_in(&call.name, call.input.clone(), context)),
        )
        .await;
        let mut content = Vec::with_capacity(results.len());
        for (call, result) in calls.iter().zip(results) {
            on_event(AgentEvent::ToolEnd {
                id: call.id.clone(),
                name: call.name.clone(),
                is_error: result.is_error,
            });
            content.push(tool_result(&call.id, result.content, result.is_error));
        }
        content
    }

    async fn steps(
        &self,
        context: &RunContext,
        system: &str,
        history: &[Message],
        on_event: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<RunOutcome, AgentError> {
        // A history from before this rule (or from anywhere) may hold empty turns.
        let mut messages: Vec<Message> = history.iter().map(Message::for_model).collect();
        let first_new = messages.len();
        let mut usage = Usage::default();
        let mut steps = 0;
        loop {
            let tools = self.tools.specs();
            let cache_breakpoints = if self.options.prompt_caching {
                prompt_cache_breakpoints(tools.len(), &messages)
            } else {
                Vec::new()
            };
            let request = ModelRequest {
                system: system.to_owned(),
                messages: messages.clone(),
                tools,
                options: self.options.model.clone(),
                cache_breakpoints,
            };
            let mut stream = self.model.stream(request).await?;
            let mut builder = ResponseBuilder::default();
            while let Some(event) = stream.next().await {
                let event = event?;
                if let ModelEvent::TextDelta(delta) = &event {
                    on_event(AgentEvent::TextDelta(delta.clone()));
                }
                builder.push(event)?;
            }
            let response = builder.finish()?;
            steps += 1;
            usage.add(&response.usage);
            on_event(AgentEvent::Message(response.message.clone()));
            let reply = response.message.text();
            messages.push(response.message);

            let end = if response.tool_calls.is_empty() {
                Some(RunEnd::Completed)
            } else {
                let out_of_steps = steps >= self.options.max_steps;
                let content = if out_of_steps {
                    // Answer every call so the history stays valid for the next run.
                    let note = format!(
                        "not run: the run reached its limit of {} model calls",
                        self.options.max_steps
                    );
                    response
                        .tool_calls
                        .iter()
                        .map(|call| tool_result(&call.id, note.clone(), true))
                        .collect()
                } else {
                    self.run_tools(context, &response.tool_calls, on_event)
                        .await
                };
                let results = Message {
                    role: Role::User,
                    content,
                };
                on_event(AgentEvent::Message(results.clone()));
                messages.push(results);
                out_of_steps.then_some(RunEnd::MaxSteps)
            };
            if let Some(end) = end {
                let messages = messages.split_off(first_new);
                return Ok(RunOutcome {
                    messages,
                    reply,
                    usage,
                    steps,
                    end,
                    stop_reason: response.stop_reason,
                });
            }
        }
    }
}

fn tool_result(id: &str, content: String, is_error: bool) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.to_owned(),
        content,
        is_error,
    }
}
