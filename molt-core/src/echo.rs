//! The offline `echo` model, and a demo tool for it to call.
//!
//! With no model provider configured, the gateway still works end to end: the
//! echo model streams back what the user wrote, and `/tool NAME {json}` makes
//! it call a tool, so the whole path (tools included) can be tried offline.

use crate::message::{ContentBlock, Role, Usage};
use crate::model::{LanguageModel, ModelError, ModelEvent, ModelRequest, ModelStream, StopReason};
use crate::tool::{SideEffect, Tool, ToolError};
use async_trait::async_trait;
use futures::stream;
use serde_json::{Value, json};

/// The longest reply the echo model writes, in characters.
pub const ECHO_MAX_CHARS: usize = 2_000;

/// A model that repeats the user. Clearly not a real model: replies start with `echo:`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoModel;

#[async_trait]
impl LanguageModel for EchoModel {
    fn name(&self) -> &str {
        "echo (offline)"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let events = answer(&request);
        Ok(Box::pin(stream::iter(events.into_iter().map(Ok))))
    }
}

fn answer(request: &ModelRequest) -> Vec<ModelEvent> {
    let Some(last) = request.messages.last().filter(|m| m.role == Role::User) else {
        return vec![
            ModelEvent::TextDelta("echo: (nothing to repeat)".into()),
            ModelEvent::Stop(StopReason::EndTurn),
        ];
    };
    let input_tokens = request
        .messages
        .iter()
        .map(|m| m.estimated_tokens() as u64)
        .sum();
    let results: Vec<String> = last
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolResult {
                content, is_error, ..
            } => Some(if *is_error {
                format!("error: {content}")
            } else {
                content.clone()
            }),
            _ => None,
        })
        .collect();
    let text = last.text();
    let mut events = Vec::new();
    let reply = if !results.is_empty() {
        format!("echo: the tool returned {}", results.join("; "))
    } else if let Some(call) = text.trim().strip_prefix("/tool ") {
        let (name, args) = call
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((call.trim(), "{}"));
        let id = format!("echo-call-{}", request.messages.len());
        events.push(ModelEvent::ToolCallStart {
            id: id.clone(),
            name: name.to_owned(),
        });
        events.push(ModelEvent::ToolCallDelta {
            id: id.clone(),
            arguments: args.trim().to_owned(),
        });
        events.push(ModelEvent::ToolCallEnd { id });
        events.push(ModelEvent::Usage(Usage {
            input_tokens,
            output_tokens: 10,
            ..Usage::default()
        }));
        events.push(ModelEvent::Stop(StopReason::ToolUse));
        return events;
    } else {
        let mut reply = format!("echo: {text}");
        if let Some((cut, _)) = reply.char_indices().nth(ECHO_MAX_CHARS) {
            reply.truncate(cut);
            reply.push('…');
        }
        reply
    };
    let output_tokens = (reply.len() / 4) as u64 + 1;
    events.extend(
        reply
            .split_inclusive(' ')
            .map(|word| ModelEvent::TextDelta(word.to_owned())),
    );
    events.push(ModelEvent::Usage(Usage {
        input_tokens,
        output_tokens,
        ..Usage::default()
    }));
    events.push(ModelEvent::Stop(StopReason::EndTurn));
    events
}

/// A demo tool: counts the words of a text.
#[derive(Clone, Copy, Debug, Default)]
pub struct WordCountTool;

#[async_trait]
impl Tool for WordCountTool {
    fn name(&self) -> &str {
        "word_count"
    }

    fn description(&self) -> &str {
        "Counts the words in a text."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "text": { "type": "string", "description": "The text to count." } },
            "required": ["text"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::ReadOnly
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let text = input["text"]
            .as_str()
            .ok_or_else(|| ToolError::new("text must be a string"))?;
        Ok(format!("{} words", text.split_whitespace().count()))
    }
}
