//! Transcripts: append-only JSONL records of a session, with compaction.
//!
//! A transcript is a log of [`TranscriptRecord`]s. Replaying it gives the
//! session's [`History`]: the summary of compacted turns, then the live messages.

use crate::message::{ContentBlock, Message, Role};
use crate::model::{LanguageModel, ModelError, ModelOptions, ModelRequest, complete};
use crate::platform::Timestamp;
use crate::session::SessionKey;
use crate::store::{LogStore, StoreError, key_segment};
use crate::workspace::memory::Notebook;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One line of a transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TranscriptRecord {
    /// A message joined the conversation.
    Message {
        /// When.
        at: Timestamp,
        /// The inbox entry that caused it, for user messages from a channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inbox: Option<String>,
        /// The message.
        message: Message,
    },
    /// The messages one run added (assistant turns and tool results), in one
    /// record so that a crash never leaves a tool call without its result.
    Run {
        /// When.
        at: Timestamp,
        /// The inbox entry the run answered, for a message from a channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inbox: Option<String>,
        /// The reply the run decided, kept with it: a restart that finds the
        /// run but not the stored reply sends this instead of asking again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<String>,
        /// The messages.
        messages: Vec<Message>,
    },
    /// The oldest `replaces` live messages were compacted into a summary.
    Summary {
        /// When.
        at: Timestamp,
        /// The summary, written by the model.
        text: String,
        /// How many of the oldest live messages it replaces.
        replaces: usize,
    },
    /// The conversation was reset: what came before no longer reaches the
    /// model (the records stay, so replies already decided are still known).
    Reset {
        /// When.
        at: Timestamp,
    },
}

impl TranscriptRecord {
    /// When the record was written.
    pub fn at(&self) -> Timestamp {
        match self {
            Self::Message { at, .. }
            | Self::Run { at, .. }
            | Self::Summary { at, .. }
            | Self::Reset { at } => *at,
        }
    }
}

/// A session's conversation as the model sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The summary of compacted turns, if any.
    pub summary: Option<String>,
    /// The messages after the summary.
    pub messages: Vec<Message>,
    /// Inbox entries whose user message is already in the transcript.
    pub inbox_ids: std::collections::HashSet<String>,
    /// Replies decided by recorded runs, by the inbox entry they answer.
    pub replies: std::collections::HashMap<String, String>,
    /// When the last record was written.
    pub updated_at: Option<Timestamp>,
    /// How many times the conversation was reset (or deleted) since it was
    /// loaded: a run that started before a reset does not add to the new conversation.
    pub epoch: u64,
}

impl History {
    /// Applies one record.
    pub fn apply(&mut self, record: TranscriptRecord) {
        self.updated_at = Some(record.at());
        match record {
            TranscriptRecord::Message { inbox, message, .. } => {
                self.inbox_ids.extend(inbox);
                self.messages.push(message);
            }
            TranscriptRecord::Run {
                inbox,
                reply,
                messages,
                ..
            } => {
                if let (Some(inbox), Some(reply)) = (inbox, reply) {
                    self.replies.insert(inbox, reply);
                }
                self.messages.extend(messages);
            }
            TranscriptRecord::Summary { text, replaces, .. } => {
                self.messages.drain(..replaces.min(self.messages.len()));
                self.summary = Some(text);
            }
            TranscriptRecord::Reset { .. } => {
                self.messages.clear();
                self.summary = None;
                self.epoch += 1;
            }
        }
    }

    /// The live messages, with an error result added for any tool call left
    /// without one (by a record lost to a crash), so providers accept them.
    pub fn messages_for_model(&self) -> Vec<Message> {
        let mut out = Vec::with_capacity(self.messages.len());
        for (index, message) in self.messages.iter().enumerate() {
            out.push(message.clone());
            let next = self.messages.get(index + 1);
            let unanswered: Vec<ContentBlock> = message
                .tool_uses()
                .filter(|(id, ..)| !next.is_some_and(|next| answers(next, id)))
                .map(|(id, ..)| ContentBlock::ToolResult {
                    tool_use_id: id.to_owned(),
                    content: "not run: the run was interrupted".to_owned(),
                    is_error: true,
                })
                .collect();
            if !unanswered.is_empty() {
                out.push(Message {
                    role: Role::User,
                    content: unanswered,
                });
            }
        }
        out
    }

    /// The rough token size of the live messages.
    pub fn estimated_tokens(&self) -> usize {
        self.messages.iter().map(Message::estimated_tokens).sum()
    }

    /// How many of the oldest messages to compact so that at most `keep` remain,
    /// moved forward so the cut falls on a user turn that is not tool results
    /// (tool calls stay next to their results).
    pub fn compaction_cut(&self, keep: usize) -> Option<usize> {
        let start = self.messages.len().checked_sub(keep)?;
        (start..self.messages.len())
            .find(|&i| is_turn_start(&self.messages[i]))
            .filter(|&cut| cut > 0)
    }
}

fn answers(message: &Message, tool_use_id: &str) -> bool {
    message
        .content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolResult { tool_use_id: id, .. } if id == tool_use_id))
}

fn is_turn_start(message: &Message) -> bool {
    message.role == Role::User
        && !message
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
}

/// Why a transcript operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The log store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model failed to write a summary.
    #[error("compaction failed: {0}")]
    Compaction(#[from] ModelError),
    /// The model did not write the summary in time.
    #[error("compaction timed out")]
    TimedOut,
}

/// The store key of a session's transcript.
pub fn transcript_key(session: &SessionKey) -> String {
    format!("transcripts/{}.jsonl", key_segment(session.as_str()))
}

/// Appends a record to a session's transcript.
pub async fn append(
    logs: &dyn LogStore,
    session: &SessionKey,
    record: &TranscriptRecord,
) -> Result<(), StoreError> {
    let key = transcript_key(session);
    let line = serde_json::to_vec(record).map_err(|err| StoreError::Corrupt {
        key: key.clone(),
        reason: err.to_string(),
    })?;
    logs.append(&key, Bytes::from(line)).await
}

/// Replays a session's transcript. A record that cannot be decoded is skipped
/// with a warning, so one bad line never loses the rest of a conversation.
pub async fn load(logs: &dyn LogStore, session: &SessionKey) -> Result<History, StoreError> {
    let key = transcript_key(session);
    let mut history = History::default();
    for (line, raw) in logs.read(&key).await?.iter().enumerate() {
        match serde_json::from_slice(raw) {
            Ok(record) => history.apply(record),
            Err(err) => {
                tracing::warn!(%key, line = line + 1, %err, "skipping unreadable transcript record")
            }
        }
    }
    Ok(history)
}

/// When and how much to compact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Compact when the live messages exceed this many (estimated) tokens.
    pub token_budget: usize,
    /// How many recent messages to keep verbatim.
    pub keep_recent: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            token_budget: 60_000,
            keep_recent: 8,
        }
    }
}

const SUMMARY_PROMPT: &str = "You compact conversation history. Summarise the conversation below for your future self: \
keep facts about the user, decisions, open tasks and anything promised. Write plain prose, no preamble.";

/// Compacts `history` when it exceeds the policy's budget: the model summarises
/// the older turns (and any earlier summary), the summary is kept in the
/// `notebook` (when given), appended to the transcript, and `history` is
/// updated. Returns whether it compacted.
pub async fn compact_if_needed(
    logs: &dyn LogStore,
    session: &SessionKey,
    history: &mut History,
    policy: CompactionPolicy,
    model: &dyn LanguageModel,
    notebook: Option<&dyn Notebook>,
    now: Timestamp,
) -> Result<bool, TranscriptError> {
    if history.estimated_tokens() <= policy.token_budget {
        return Ok(false);
    }
    let Some(cut) = history.compaction_cut(policy.keep_recent) else {
        return Ok(false);
    };
    let mut transcript = String::new();
    if let Some(summary) = &history.summary {
        transcript.push_str(&format!("Earlier summary: {summary}\n\n"));
    }
    for message in &history.messages[..cut] {
        let role = match message.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        for block in &message.content {
            let line = match block {
                ContentBlock::Text { text } => text.clone(),
                ContentBlock::Image { .. } => "[image]".to_owned(),
                ContentBlock::ToolUse { name, input, .. } => {
                    format!("[called {name} with {input}]")
                }
                ContentBlock::ToolResult { content, .. } => format!("[tool result: {content}]"),
            };
            transcript.push_str(&format!("{role}: {line}\n"));
        }
    }
    let request = ModelRequest {
        system: SUMMARY_PROMPT.to_owned(),
        messages: vec![Message::user(transcript)],
        tools: Vec::new(),
        options: ModelOptions::default(),
        cache_breakpoints: Vec::new(),
    };
    let text = complete(model, request).await?.message.text();
    // Kept in memory first. If that fails, compaction goes on (the
    // transcript on disk keeps every message), rather than stop for good.
    if let Some(notebook) = notebook
        && let Err(err) = notebook.keep_summary(session, now, &text).await
    {
        tracing::error!(%session, %err, "the summary could not be kept in memory; compacting all the same");
    }
    let record = TranscriptRecord::Summary {
        at: now,
        text,
        replaces: cut,
    };
    append(logs, session, &record).await?;
    history.apply(record);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dangling_tool_calls_get_error_results() {
        let call = Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: "c1".into(),
                name: "t".into(),
                input: json!({}),
            }],
        };
        let history = History {
            messages: vec![Message::user("hi"), call, Message::user("again")],
            ..History::default()
        };
        let repaired = history.messages_for_model();
        assert_eq!(repaired.len(), 4);
        assert!(answers(&repaired[2], "c1"));
        assert_eq!(repaired[3].text(), "again");
    }
}
