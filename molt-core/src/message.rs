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

    /// This message as a provider accepts it: text blocks that are empty or
    /// only whitespace are left out (Anthropic refuses them, and refuses the
    /// whole conversation from then on), and a message left with nothing says
    /// so in words.
    pub fn for_model(&self) -> Message {
        let mut content: Vec<ContentBlock> = self
            .content
            .iter()
            .filter(|block| !matches!(block, ContentBlock::Text { text } if text.trim().is_empty()))
            .cloned()
            .collect();
        if content.is_empty() {
            content.push(ContentBlock::Text {
                text: EMPTY_MESSAGE.to_owned(),
            });
        }
        Message {
            role: self.role,
            content,
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

/// What the model sees in place of a message that had no content.
pub const EMPTY_MESSAGE: &str = "(an empty message)";

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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The platform's id for the file (fetch it through the channel's
    /// [`ChannelEgress::download`](crate::channel::ChannelEgress::download)).
    pub id: String,
    /// Where the platform serves the file, when the message says (Discord's
    /// CDN, Slack's `url_private`); only the channel's own hosts are fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
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

impl InboundMessage {
    /// The user turn the model sees: the text, then one line per attachment
    /// naming it (its kind, file name, media type and size), so a photo
    /// without a caption is still something the model can answer.
    pub fn to_user_message(&self) -> Message {
        let mut content = Vec::new();
        if !self.text.trim().is_empty() {
            content.push(ContentBlock::Text {
                text: self.text.clone(),
            });
        }
        if !self.attachments.is_empty() {
            let lines: Vec<String> = self.attachments.iter().map(Attachment::describe).collect();
            content.push(ContentBlock::Text {
                text: lines.join("\n"),
            });
        }
        Message {
            role: Role::User,
            content,
        }
        .for_model()
    }
}

impl Attachment {
    /// Whether the platform says it is an image.
    pub fn is_image(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|media| media.starts_with("image/"))
    }

    /// One line for the model: `[attached image: photo.jpg, image/jpeg, 118 KiB]`.
    pub fn describe(&self) -> String {
        format!("[{}]", self.summary())
    }

    /// The line of [`Attachment::describe`] without its brackets.
    pub fn summary(&self) -> String {
        let kind = match self.media_type.as_deref() {
            Some(media) if media.starts_with("image/") => "image",
            Some(media) if media.starts_with("audio/") => "audio",
            Some(media) if media.starts_with("video/") => "video",
            _ => "file",
        };
        let mut details: Vec<String> = Vec::new();
        details.extend(
            self.name
                .as_deref()
                .map(|name| name.chars().filter(|c| !c.is_control()).collect()),
        );
        details.extend(self.media_type.clone());
        details.extend(self.size.map(|bytes| match bytes {
            0..1024 => format!("{bytes} bytes"),
            1024..1_048_576 => format!("{} KiB", bytes / 1024),
            _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
        }));
        if details.is_empty() {
            format!("attached {kind}")
        } else {
            format!("attached {kind}: {}", details.join(", "))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_turn_reaches_a_model_empty() {
        let blank = Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: " \n".into() }],
        };
        assert_eq!(
            blank.for_model().content,
            [ContentBlock::Text {
                text: EMPTY_MESSAGE.into()
            }]
        );
        let mut with_image = blank.clone();
        with_image.content.push(ContentBlock::Image {
            url: "https://example.com/a.png".into(),
            media_type: None,
        });
        assert_eq!(with_image.for_model().content, with_image.content[1..]);
    }

    #[test]
    fn attachments_are_named_for_the_model() {
        let attachment = |media: Option<&str>, name: Option<&str>, size| Attachment {
            id: "f1".into(),
            media_type: media.map(str::to_owned),
            name: name.map(str::to_owned),
            size,
            ..Attachment::default()
        };
        assert_eq!(
            attachment(Some("image/jpeg"), None, Some(120_000)).describe(),
            "[attached image: image/jpeg, 117 KiB]"
        );
        assert_eq!(
            attachment(
                Some("application/pdf"),
                Some("re\u{1b}[2Jport.pdf"),
                Some(3 << 20)
            )
            .describe(),
            "[attached file: re[2Jport.pdf, application/pdf, 3.0 MiB]"
        );
        assert_eq!(attachment(None, None, None).describe(), "[attached file]");
    }
}
