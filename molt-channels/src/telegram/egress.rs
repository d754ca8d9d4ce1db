//! Sending to Telegram: MarkdownV2 with a plain-text retry when Telegram
//! rejects the entities, flood control honoured, groups that became
//! supergroups followed, and the typing indicator.

use super::api::{ApiError, BotApi};
use super::format::to_markdown_v2;
use super::inbound::message_id_of;
use super::types::File;
use super::{CHANNEL, TelegramConfig, channel_error};
use crate::http::{check_declared_size, download_file};
use async_trait::async_trait;
use bytes::Bytes;
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::message::{Attachment, OutboundMessage};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest message Telegram accepts (counted here in UTF-16 units,
/// which is never more than Telegram's own count).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A `typing` action shows for at most 5 s; it is renewed a little sooner.
const TYPING_REFRESH: Duration = Duration::from_secs(4);

/// Attempts per message before giving up (flood waits and migrations count).
const MAX_ATTEMPTS: usize = 5;

/// Telegram's sending half.
pub struct TelegramEgress {
    pub(super) api: BotApi,
    pub(super) config: TelegramConfig,
    /// Groups that became supergroups: old chat id to new.
    pub(super) migrated: Mutex<HashMap<String, String>>,
}

impl TelegramEgress {
    fn chat(&self, chat_id: &str) -> String {
        let migrated = self.migrated.lock().unwrap_or_else(|e| e.into_inner());
        migrated
            .get(chat_id)
            .cloned()
            .unwrap_or_else(|| chat_id.to_string())
    }

    /// Calls `method`, following migrations and waiting out flood control.
    /// `params` gets the (possibly migrated) `chat_id` on each attempt;
    /// `on_refusal` may change the parameters and ask for another attempt.
    async fn call_for_chat(
        &self,
        method: &str,
        chat_id: &str,
        mut params: Value,
        mut on_refusal: impl FnMut(&ApiError, &mut Value) -> bool,
    ) -> Result<(), ChannelError> {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            params["chat_id"] = json!(self.chat(chat_id));
            let error = match self
                .api
                .call::<Value>(method, &params, self.config.request_timeout)
                .await
            {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            match &error {
                ApiError::Refused {
                    retry_after: Some(wait),
                    ..
                } => {
                    tracing::warn!(method, retry_after = ?wait, "telegram: flood control; waiting");
                    tokio::time::sleep(*wait).await;
                }
                ApiError::Refused {
                    migrate_to_chat_id: Some(new_id),
                    ..
                } => {
                    tracing::info!(
                        from = chat_id,
                        to = new_id,
                        "telegram: the group became a supergroup"
                    );
                    self.migrated
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(chat_id.to_string(), new_id.to_string());
                }
                ApiError::Refused { .. } if on_refusal(&error, &mut params) => {}
                ApiError::Refused { .. } => return Err(channel_error(error)),
                ApiError::Transport { .. } => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            last = Some(error);
        }
        Err(channel_error(last.expect("at least one attempt")))
    }
}

#[async_trait]
impl ChannelEgress for TelegramEgress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: MAX_MESSAGE_LEN,
            length_unit: LengthUnit::Utf16,
            format: FormatDialect::TelegramMarkdownV2,
            typing_refresh: Some(TYPING_REFRESH),
        }
    }

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let mut params = json!({
            "text": to_markdown_v2(&message.text),
            "parse_mode": "MarkdownV2",
            "link_preview_options": { "is_disabled": true },
        });
        if let Some(thread) = message
            .thread_id
            .as_deref()
            .and_then(|id| id.parse::<i64>().ok())
        {
            params["message_thread_id"] = json!(thread);
        }
        if let Some(reply_to) = message.reply_to.as_deref().and_then(message_id_of) {
            params["reply_parameters"] = json!({
                "message_id": reply_to,
                "allow_sending_without_reply": true,
            });
        }
        if message.possibly_delivered {
            // The Bot API has no idempotent send and no way to read the chat back.
            tracing::warn!(
                chat = %message.chat_id,
                reply_to = message.reply_to.as_deref().unwrap_or_default(),
                piece = message.piece,
                "telegram: sending a reply again that may have been delivered before the restart; it may arrive twice"
            );
        }
        let plain = message.text;
        self.call_for_chat("sendMessage", &message.chat_id, params, |error, params| {
            // Entities Telegram cannot parse: send the text as it is.
            let unparsable = error.description().contains("can't parse entities");
            if unparsable && params.get("parse_mode").is_some() {
                tracing::warn!(error = %error, "telegram: formatting refused; sending plain text");
                params["text"] = json!(plain);
                params.as_object_mut().map(|p| p.remove("parse_mode"));
                return true;
            }
            false
        })
        .await
    }

    /// `getFile`, then the file (Telegram serves bots files up to 20 MB).
    async fn download(&self, attachment: &Attachment, limit: u64) -> Result<Bytes, ChannelError> {
        check_declared_size(CHANNEL, attachment.size, limit)?;
        let timeout = self.config.request_timeout;
        let file: File = self
            .api
            .call("getFile", &json!({ "file_id": attachment.id }), timeout)
            .await
            .map_err(channel_error)?;
        check_declared_size(CHANNEL, file.file_size, limit)?;
        let path = file.file_path.ok_or_else(|| ChannelError::Rejected {
            channel: CHANNEL.into(),
            reason: "getFile: no file_path (the file is over 20 MB)".into(),
        })?;
        download_file(CHANNEL, self.api.file_request(&path, timeout * 6), limit).await
    }

    async fn typing(&self, chat_id: &str) -> Result<(), ChannelError> {
        let params = json!({ "action": "typing" });
        self.call_for_chat("sendChatAction", chat_id, params, |_, _| false)
            .await
    }
}

impl std::fmt::Debug for TelegramEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramEgress")
            .field("channel", &CHANNEL)
            .finish()
    }
}
