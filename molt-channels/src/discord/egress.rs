//! Sending to Discord: replies with a message reference, mentions disarmed,
//! and the typing indicator.

use super::inbound::CHANNEL;
use super::rest::Rest;
use super::{ratelimit::Route, rest_error};
use crate::http::{check_declared_size, download_file};
use async_trait::async_trait;
use bytes::Bytes;
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::message::{Attachment, OutboundMessage};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// The longest message Discord accepts, in characters.
pub const MAX_MESSAGE_LEN: usize = 2000;

/// The longest nonce Discord takes (a snowflake and a piece number fit).
const MAX_NONCE_LEN: usize = 25;

/// Typing shows for 10 s; it is renewed a little sooner.
const TYPING_REFRESH: Duration = Duration::from_secs(8);

/// Discord's sending half.
pub struct DiscordEgress {
    pub(super) rest: Rest,
}

#[async_trait]
impl ChannelEgress for DiscordEgress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: MAX_MESSAGE_LEN,
            length_unit: LengthUnit::Chars,
            format: FormatDialect::Markdown,
            typing_refresh: Some(TYPING_REFRESH),
        }
    }

    /// From Discord's CDN, by the URL the message gave (never another host).
    async fn download(&self, attachment: &Attachment, limit: u64) -> Result<Bytes, ChannelError> {
        check_declared_size(CHANNEL, attachment.size, limit)?;
        let request = (attachment.url.as_deref())
            .and_then(|url| self.rest.file_request(url))
            .ok_or_else(|| ChannelError::Rejected {
                channel: CHANNEL.into(),
                reason: "the attachment is not on Discord's CDN".into(),
            })?;
        download_file(CHANNEL, request, limit).await
    }

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let mut body = json!({
            "content": message.text,
            // The model's text must not ping @everyone, roles or users.
            "allowed_mentions": { "parse": [], "replied_user": true },
        });
        if let Some(reply_to) = &message.reply_to {
            body["message_reference"] = json!({
                "message_id": reply_to,
                "fail_if_not_exists": false,
            });
            // The same piece sent again (after a restart) is not created twice:
            // Discord returns the message it already made with this nonce.
            let nonce = format!("{reply_to}.{}", message.piece);
            if nonce.len() <= MAX_NONCE_LEN {
                body["nonce"] = json!(nonce);
                body["enforce_nonce"] = json!(true);
            }
        }
        let route = Route {
            template: "POST /channels/{id}/messages",
            major: message.chat_id.clone(),
        };
        let path = format!("/channels/{}/messages", message.chat_id);
        self.rest
            .request(Method::POST, &route, &path, Some(&body))
            .await
            .map(drop)
            .map_err(rest_error)
    }

    async fn typing(&self, chat_id: &str) -> Result<(), ChannelError> {
        let route = Route {
            template: "POST /channels/{id}/typing",
            major: chat_id.to_owned(),
        };
        let path = format!("/channels/{chat_id}/typing");
        self.rest
            .request(Method::POST, &route, &path, None)
            .await
            .map(drop)
            .map_err(rest_error)
    }
}
