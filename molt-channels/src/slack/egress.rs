//! Sending to Slack with `chat.postMessage`, in the thread when there is one.

use super::api::WebApi;
use super::api_error;
use super::format::to_mrkdwn;
use super::inbound::CHANNEL;
use crate::http::{check_declared_size, download_file};
use async_trait::async_trait;
use bytes::Bytes;
use molt_core::Secret;
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::message::{Attachment, OutboundMessage};
use serde_json::{Value, json};

/// The longest message sent in one piece. Slack takes 40,000 characters but
/// advises 4,000, and escaping can lengthen a piece.
pub const MAX_MESSAGE_LEN: usize = 4_000;

/// The metadata event type that marks a reply, with the message it answers
/// and the piece, so a resend after a restart can find it.
const REPLY_EVENT: &str = "molt_reply";

/// Pages of history read when looking for a reply that may have gone out.
const MAX_HISTORY_PAGES: usize = 5;

/// Slack's sending half.
pub struct SlackEgress {
    pub(super) api: WebApi,
    pub(super) bot_token: Secret,
}

#[async_trait]
impl ChannelEgress for SlackEgress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: MAX_MESSAGE_LEN,
            length_unit: LengthUnit::Chars,
            format: FormatDialect::SlackMrkdwn,
            // Bots have no typing indicator in Socket Mode or the Web API.
            typing_refresh: None,
        }
    }

    /// The file's `url_private`, with the bot token (the app needs the
    /// `files:read` scope; without it Slack answers with a sign-in page).
    async fn download(&self, attachment: &Attachment, limit: u64) -> Result<Bytes, ChannelError> {
        check_declared_size(CHANNEL, attachment.size, limit)?;
        let request = (attachment.url.as_deref())
            .and_then(|url| self.api.file_request(url, &self.bot_token))
            .ok_or_else(|| ChannelError::Rejected {
                channel: CHANNEL.into(),
                reason: "the file has no url_private on Slack's file host".into(),
            })?;
        download_file(CHANNEL, request, limit).await
    }

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let mut body = json!({ "channel": message.chat_id, "text": to_mrkdwn(&message.text) });
        if let Some(thread) = &message.thread_id {
            body["thread_ts"] = json!(thread);
        }
        if let Some(reply_to) = &message.reply_to {
            // Marks the piece, so a resend after a restart can look for it.
            let payload = json!({ "reply_to": reply_to, "piece": message.piece });
            if message.possibly_delivered && self.already_posted(&message, &payload).await {
                return Ok(());
            }
            body["metadata"] = json!({ "event_type": REPLY_EVENT, "event_payload": payload });
        }
        self.api
            .call("chat.postMessage", &self.bot_token, &body)
            .await
            .map(drop)
            .map_err(api_error)
    }
}

impl SlackEgress {
    /// Whether the piece marked with `payload` is already in the conversation
    /// (posted before a restart). Reads the messages after the one answered,
    /// newest first, a bounded number of pages; when Slack cannot be asked
    /// (such as a missing `im:history` scope), says no, so the piece is sent.
    async fn already_posted(&self, message: &OutboundMessage, payload: &Value) -> bool {
        let Some(reply_to) = message.reply_to.as_deref() else {
            return false;
        };
        // Message ids here are `<channel>:<ts>`; Slack reads from the ts.
        let after = reply_to.rsplit_once(':').map_or(reply_to, |(_, ts)| ts);
        let (method, thread) = match message.thread_id.as_deref() {
            Some(thread) => ("conversations.replies", thread),
            None => ("conversations.history", ""),
        };
        let mut cursor = String::new();
        for _ in 0..MAX_HISTORY_PAGES {
            let mut fields = vec![
                ("channel", message.chat_id.as_str()),
                ("oldest", after),
                ("include_all_metadata", "true"),
                ("limit", "200"),
            ];
            if !thread.is_empty() {
                fields.push(("ts", thread));
            }
            if !cursor.is_empty() {
                fields.push(("cursor", cursor.as_str()));
            }
            let page = match self.api.call_form(method, &self.bot_token, &fields).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(%err, "slack: cannot tell whether a reply went out before the restart; sending it, so it may arrive twice");
                    return false;
                }
            };
            let messages = page["messages"].as_array().into_iter().flatten();
            if messages.into_iter().any(|m| {
                m["metadata"]["event_type"] == REPLY_EVENT
                    && m["metadata"]["event_payload"] == *payload
            }) {
                return true;
            }
            match page["response_metadata"]["next_cursor"].as_str() {
                Some(next) if !next.is_empty() && page["has_more"] == true => {
                    cursor = next.to_owned();
                }
                _ => return false,
            }
        }
        false
    }
}
