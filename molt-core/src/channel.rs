//! The channel contract: an ingress that yields messages, and an egress that
//! calls the platform (sends, shows typing, downloads attachments).

use crate::message::{Attachment, InboundMessage, OutboundMessage};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::time::Duration;

/// How a platform measures message length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthUnit {
    /// Unicode scalar values (Discord, Slack).
    Chars,
    /// UTF-16 code units (Telegram).
    Utf16,
}

/// The text formatting a platform understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatDialect {
    /// No formatting.
    Plain,
    /// CommonMark-style Markdown (the Control UI, Discord).
    Markdown,
    /// Telegram's MarkdownV2.
    TelegramMarkdownV2,
    /// Slack's mrkdwn.
    SlackMrkdwn,
}

/// What a channel can do, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The longest message the platform accepts.
    pub max_message_len: usize,
    /// How that length is counted.
    pub length_unit: LengthUnit,
    /// The formatting it understands.
    pub format: FormatDialect,
    /// How often a typing indicator must be sent again to stay visible while
    /// a run lasts; `None` when the platform has none.
    pub typing_refresh: Option<Duration>,
}

/// Why a channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The platform refused the credentials.
    #[error("{channel}: authentication failed: {reason}")]
    Auth {
        /// The channel.
        channel: String,
        /// What the platform said.
        reason: String,
    },
    /// Rate limited; retry after the delay.
    #[error("{channel}: rate limited, retry after {retry_after:?}")]
    RateLimited {
        /// The channel.
        channel: String,
        /// How long to wait.
        retry_after: Duration,
    },
    /// The platform refused the request.
    #[error("{channel}: request refused: {reason}")]
    Rejected {
        /// The channel.
        channel: String,
        /// What the platform said.
        reason: String,
    },
    /// The connection failed or timed out.
    #[error("{channel}: transport error: {reason}")]
    Transport {
        /// The channel.
        channel: String,
        /// What failed.
        reason: String,
    },
    /// Another client holds the connection this one needs (a second poller
    /// on the same bot token, or a webhook where polling is wanted).
    #[error("{channel}: conflict: {remedy}")]
    Conflict {
        /// The channel.
        channel: String,
        /// What to do about it.
        remedy: String,
    },
    /// The channel is closed.
    #[error("{channel}: closed")]
    Closed {
        /// The channel.
        channel: String,
    },
    /// A file is larger than the caller takes.
    #[error("{channel}: the file is over {limit} bytes")]
    TooLarge {
        /// The channel.
        channel: String,
        /// The most bytes the caller takes.
        limit: u64,
    },
    /// The channel cannot do this.
    #[error("this channel cannot {operation}")]
    Unsupported {
        /// What was asked, such as `download files`.
        operation: &'static str,
    },
}

/// Tells the platform a message was received. Call it only after the message
/// is durably in the inbox.
pub struct Ack(Option<Box<dyn FnOnce() + Send>>);

impl Ack {
    /// An acknowledgement that runs `confirm`.
    pub fn new(confirm: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(confirm)))
    }

    /// An acknowledgement with nothing to confirm.
    pub fn none() -> Self {
        Self(None)
    }

    /// Confirms receipt upstream.
    pub fn confirm(mut self) {
        if let Some(confirm) = self.0.take() {
            confirm();
        }
    }
}

/// A message delivered by an ingress, with its acknowledgement.
pub struct Delivery {
    /// The message.
    pub message: InboundMessage,
    /// Confirm once the message is in the inbox.
    pub ack: Ack,
}

/// The receiving half of a channel: a stream of deliveries. The stream ends
/// when the channel shuts down; an error item is reported and the stream goes on.
pub trait ChannelIngress: Send {
    /// The deliveries.
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>>;
}

/// The half of a channel that calls the platform: sends replies, shows typing, downloads files.
#[async_trait]
pub trait ChannelEgress: Send + Sync {
    /// What the platform can do.
    fn capabilities(&self) -> Capabilities;

    /// Sends one message, already split to fit.
    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError>;

    /// Shows a typing indicator in `chat_id`, when the platform has one.
    async fn typing(&self, _chat_id: &str) -> Result<(), ChannelError> {
        Ok(())
    }

    /// Downloads an attachment that came in on this channel, refusing a file
    /// over `limit` bytes with [`ChannelError::TooLarge`] (before or while
    /// reading it). Channels without files answer [`ChannelError::Unsupported`].
    async fn download(&self, _attachment: &Attachment, _limit: u64) -> Result<Bytes, ChannelError> {
        Err(ChannelError::Unsupported {
            operation: "download files",
        })
    }
}

/// Splits `text` into pieces of at most `max` units, preferring paragraph
/// breaks, then line breaks, then spaces, and never splitting a character.
pub fn split_text(text: &str, max: usize, unit: LengthUnit) -> Vec<String> {
    let max = max.max(1);
    let width = |c: char| match unit {
        LengthUnit::Chars => 1,
        LengthUnit::Utf16 => c.len_utf16(),
    };
    let mut pieces = Vec::new();
    let mut rest = text.trim_start();
    loop {
        // Find the byte index where `max` units end.
        let mut used = 0;
        let mut end = rest.len();
        for (index, c) in rest.char_indices() {
            if used + width(c) > max {
                end = index;
                break;
            }
            used += width(c);
        }
        if end == rest.len() {
            if !rest.trim().is_empty() {
                pieces.push(rest.to_owned());
            }
            return pieces;
        }
        let window = &rest[..end];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|&i| i > 0).map(|i| i + sep.len()))
            .unwrap_or(end.max(rest.chars().next().map_or(1, char::len_utf8)));
        let piece = rest[..cut].trim_end();
        if !piece.is_empty() {
            pieces.push(piece.to_owned());
        }
        // The break itself is not worth a piece of its own.
        rest = rest[cut..].trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_breaks_and_counts_utf16() {
        assert_eq!(
            split_text("hello world", 5, LengthUnit::Chars),
            ["hello", "world"]
        );
        assert_eq!(
            split_text("para one\n\npara two", 12, LengthUnit::Chars),
            ["para one", "para two"]
        );
        assert_eq!(split_text("abcdef", 4, LengthUnit::Chars), ["abcd", "ef"]);
        // An emoji is two UTF-16 units; it is never cut in half.
        assert_eq!(split_text("😀😀😀", 4, LengthUnit::Utf16), ["😀😀", "😀"]);
        assert_eq!(split_text("😀😀😀", 4, LengthUnit::Chars), ["😀😀😀"]);
        assert!(split_text("", 10, LengthUnit::Chars).is_empty());
        assert!(split_text(" \n ", 10, LengthUnit::Chars).is_empty());
        assert_eq!(
            split_text("\n\nabcdefgh", 5, LengthUnit::Chars),
            ["abcde", "fgh"]
        );
        let long = "word ".repeat(1000);
        assert!(
            split_text(&long, 100, LengthUnit::Chars)
                .iter()
                .all(|p| p.chars().count() <= 100)
        );
    }
}
