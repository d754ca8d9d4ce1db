//! Long polling with `getUpdates`. An update is confirmed to Telegram (by
//! the next call's `offset`) only once the gateway has acknowledged it, that
//! is, once it is durably in the inbox; an update left unacknowledged is
//! fetched again.

use super::api::{ApiError, BotApi};
use super::inbound::normalize;
use super::types::{Update, User};
use super::{TelegramConfig, channel_error};
use crate::delivery::{Outbox, awaited_delivery, receiver_stream};
use futures::stream::BoxStream;
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;

/// Telegram's receiving half: long polling, as a stream of deliveries. The
/// stream ends after a fatal error (a revoked token); dropping it stops
/// polling at once.
pub struct TelegramIngress {
    pub(super) api: BotApi,
    pub(super) bot: User,
    pub(super) config: TelegramConfig,
}

/// How long to wait before polling again after an error, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl ChannelIngress for TelegramIngress {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>> {
        // One batch (at most 100 updates) waits in the channel at a time.
        let (sender, receiver) = mpsc::channel(100);
        tokio::spawn(async move {
            let closed = sender.clone();
            tokio::select! {
                () = self.poll(sender) => {}
                () = closed.closed() => {}
            }
        });
        receiver_stream(receiver)
    }
}

impl TelegramIngress {
    async fn poll(self, out: Outbox) {
        let mut offset: Option<i64> = None;
        let mut backoff = Duration::ZERO;
        loop {
            let params = json!({
                "offset": offset,
                "timeout": self.config.poll_timeout.as_secs(),
                "allowed_updates": ["message"],
            });
            // The HTTP timeout is longer than the poll's, so an empty poll
            // ends with Telegram's answer, not with our timeout.
            let timeout = self.config.poll_timeout + self.config.request_timeout;
            let updates: Vec<serde_json::Value> =
                match self.api.call("getUpdates", &params, timeout).await {
                    Ok(updates) => {
                        backoff = Duration::ZERO;
                        updates
                    }
                    Err(error) => {
                        let fatal = matches!(error.code(), Some(401 | 404));
                        let wait = match &error {
                            ApiError::Refused {
                                retry_after: Some(wait),
                                ..
                            } => *wait,
                            _ => {
                                backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                                backoff
                            }
                        };
                        let error = poll_error(error);
                        tracing::warn!(%error, retry_in = ?wait, "telegram: getUpdates failed");
                        if out.send(Err(error)).await.is_err() || fatal {
                            return;
                        }
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                };
            match self.deliver(updates, &out).await {
                Some(next) => offset = next.or(offset),
                None => return,
            }
        }
    }

    /// Hands a batch to the gateway; returns the offset that confirms what
    /// was acknowledged (`Some(None)` when nothing new), or `None` once the
    /// stream is gone.
    async fn deliver(&self, updates: Vec<serde_json::Value>, out: &Outbox) -> Option<Option<i64>> {
        let mut waiting = Vec::new();
        for raw in updates {
            // Bad input is logged and skipped; the poll goes on.
            let update: Update = match serde_json::from_value(raw) {
                Ok(update) => update,
                Err(err) => {
                    tracing::warn!(%err, "telegram: skipping an update that does not parse");
                    continue;
                }
            };
            let id = update.update_id;
            let Some(message) = normalize(update, &self.bot) else {
                waiting.push((id, None));
                continue;
            };
            let (delivery, confirmation) = awaited_delivery(message);
            if out.send(Ok(delivery)).await.is_err() {
                return None;
            }
            waiting.push((id, Some(confirmation)));
        }
        // Confirm the longest acknowledged run from the start of the batch.
        let mut next = None;
        for (id, confirmation) in waiting {
            if let Some(confirmation) = confirmation
                && confirmation.await.is_err()
            {
                tracing::debug!(
                    update_id = id,
                    "telegram: update not accepted; it will be fetched again"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            next = Some(id + 1);
        }
        Some(next)
    }
}

/// A polling error with a remedy a person can act on.
fn poll_error(error: ApiError) -> ChannelError {
    if error.code() == Some(409) {
        let remedy = if error.description().contains("webhook") {
            "a webhook is set for this bot: delete it (deleteWebhook, or set `delete_webhook` in the Telegram config) or run in webhook mode"
        } else {
            "another process polls with this bot token: stop it (only one poller per bot)"
        };
        return ChannelError::Conflict {
            channel: super::CHANNEL.into(),
            remedy: remedy.into(),
        };
    }
    channel_error(error)
}
