//! Conversation messages, and the channel-neutral inbound and outbound messages.

use crate::platform::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message in a conversation with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person (and tool results, which go back to the model as user turns).
    User,
    /// The model.
    Assistant,
}

/// One block of a message's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by reference (a URL or a stored object), never inlined.
    Image {
        /// Where the image is.
        url: String,
        /// Its media type, such as `image/png`, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
    },
    /// The model asks for a tool call.
    ToolUse {
        /// The call's id, echoed by its result.
        id: String,
        /// The tool's name.
        name: String,
        /// The call's input (a JSON value, normally an object).
        input: Value,
    },
    /// The result of a tool call.
    ToolResult {
        /// The id of the call this answers.
        tool_use_id: String,
        /// What the tool returned, or the error the model should see.
        content: String,
        /// Whether the call failed.
        #[serde(default)]
        is_error: bool,
    },
}

/// A message in a conversation with the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its content, in order.
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message holding one text block.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// An assistant message holding one text block.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// The text blocks joined together.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls this message asks for.
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|block| match block {
            ContentBlock::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }

    /// A rough size in tokens (four bytes a token), for history budgets.
    pub fn estimated_tokens(&self) -> usize {
        let bytes: usize = self
            .content
            .iter()
            .map(|block| match block {
                ContentBlock::Text { text } => text.len(),
                ContentBlock::Image { .. } => 1_000,
                ContentBlock::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
                ContentBlock::ToolResult { content, .. } => content.len(),
            })
            .sum();
        bytes / 4 + 4
    }
}

/// Tokens used by a model call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, not counting cache reads and writes.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Adds another call's usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }
}

/// The kind of conversation a message arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    /// A direct message with one person.
    Direct,
    /// A group chat or a channel.
    Group,
    /// A thread inside a group.
    Thread,
}

/// Who sent an inbound message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The platform's stable id for the sender.
    pub id: String,
    /// A display name, when the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A file that came with an inbound message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The platform's id for the file (fetch it through the channel).
    pub id: String,
    /// Media type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// File name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A message from a chat platform, in a form every channel shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The channel's name (`telegram`, `discord`, `slack`, `webchat`, ...).
    pub channel: String,
    /// The bot account on that channel that received it.
    pub account: String,
    /// Who sent it.
    pub sender: Sender,
    /// The chat's id on the platform.
    pub chat_id: String,
    /// The kind of chat.
    pub chat_kind: ChatKind,
    /// The thread inside the chat, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The platform's id for this message: the key that removes duplicates.
    pub message_id: String,
    /// The text.
    pub text: String,
    /// Files that came with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Whether the bot was mentioned (or replied to).
    #[serde(default)]
    pub mentioned: bool,
    /// When the platform says it was sent.
    pub sent_at: Timestamp,
}

/// A reply on its way to a chat platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The channel's name.
    pub channel: String,
    /// The bot account to send from.
    pub account: String,
    /// The chat to send to.
    pub chat_id: String,
    /// The thread to reply in, when the inbound message was in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The platform id of the message this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The text, already no longer than the channel's limit.
    pub text: String,
    /// Which piece of its reply this is (0 for the first; a long reply is
    /// split). With `reply_to`, it names this send across retries and
    /// restarts, so a platform that can deduplicate sends it once.
    #[serde(default)]
    pub piece: usize,
    /// An earlier attempt at this piece may have reached the platform (the
    /// process stopped, or a send failed, after the request left). A channel
    /// that can check looks before sending again.
    #[serde(default)]
    pub possibly_delivered: bool,
}

impl OutboundMessage {
    /// A reply to `inbound` in the same chat and thread.
    pub fn reply_to(inbound: &InboundMessage, text: impl Into<String>) -> Self {
        Self {
            channel: inbound.channel.clone(),
            account: inbound.account.clone(),
            chat_id: inbound.chat_id.clone(),
            thread_id: inbound.thread_id.clone(),
            reply_to: Some(inbound.message_id.clone()),
            text: text.into(),
            piece: 0,
            possibly_delivered: false,
        }
    }
}
