//! Sending to Slack with `chat.postMessage`, in the thread when there is one.

use super::api::WebApi;
use super::api_error;
use super::format::to_mrkdwn;
use async_trait::async_trait;
use molt_core::Secret;
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::message::OutboundMessage;
use serde_json::json;

/// The longest message sent in one piece. Slack takes 40,000 characters but
/// advises 4,000, and escaping can lengthen a piece.
pub const MAX_MESSAGE_LEN: usize = 4_000;

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

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let mut body = json!({ "channel": message.chat_id, "text": to_mrkdwn(&message.text) });
        if let Some(thread) = &message.thread_id {
            body["thread_ts"] = json!(thread);
        }
        self.api
            .call("chat.postMessage", &self.bot_token, &body)
            .await
            .map(drop)
            .map_err(api_error)
    }
}
