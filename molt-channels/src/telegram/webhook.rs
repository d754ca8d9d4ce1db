//! Webhook mode: Telegram POSTs each update to an HTTPS endpoint of ours.
//!
//! [`TelegramWebhook::handle`] is the endpoint's logic, independent of the
//! HTTP server: it checks the secret Telegram echoes in
//! `X-Telegram-Bot-Api-Secret-Token` (403 on a mismatch), hands the update to
//! the gateway, and answers 200 only once the gateway has acknowledged it.
//! Any other answer makes Telegram deliver the update again later, so a
//! message the gateway could not take is not lost.

use super::inbound::normalize;
use super::types::{Update, User};
use crate::delivery::{Outbox, awaited_delivery, receiver_stream};
use futures::stream::BoxStream;
use http::{HeaderMap, StatusCode};
use molt_core::Secret;
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use std::time::Duration;
use tokio::sync::mpsc;

/// The header Telegram puts the webhook's secret in.
pub const SECRET_HEADER: &str = molt_core::webhook::TELEGRAM_SECRET_HEADER;

/// How long a request waits for the gateway to acknowledge its update.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `secret` is one Telegram accepts: 1 to 256 characters of
/// `A-Z`, `a-z`, `0-9`, `_` and `-`.
pub fn valid_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The endpoint's logic. Cheap to clone; mount it at the URL given to
/// `setWebhook` (see [`super::Telegram::set_webhook`]).
#[derive(Clone)]
pub struct TelegramWebhook {
    pub(super) bot: User,
    pub(super) secret: Secret,
    pub(super) out: Outbox,
}

/// The receiving half in webhook mode: the updates the endpoint took in.
/// The stream ends when every [`TelegramWebhook`] clone is dropped.
pub struct TelegramWebhookIngress {
    pub(super) receiver: mpsc::Receiver<Result<Delivery, ChannelError>>,
}

impl ChannelIngress for TelegramWebhookIngress {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>> {
        receiver_stream(self.receiver)
    }
}

impl TelegramWebhook {
    /// Handles one POST from Telegram and says which status to answer:
    /// - 403 when the secret header is missing or wrong;
    /// - 200 once the gateway acknowledged the update, and for updates it
    ///   does not answer (edits, other bots) or that do not parse (logged, so
    ///   Telegram does not send them again and again);
    /// - 503 when the gateway did not take the update in time: Telegram
    ///   delivers it again later.
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let given = headers
            .get(SECRET_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !self.secret.matches(given) {
            tracing::warn!("telegram: webhook request with a wrong secret refused");
            return StatusCode::FORBIDDEN;
        }
        let update: Update = match serde_json::from_slice(body) {
            Ok(update) => update,
            Err(err) => {
                tracing::warn!(%err, "telegram: skipping a webhook update that does not parse");
                return StatusCode::OK;
            }
        };
        let Some(message) = normalize(update, &self.bot) else {
            return StatusCode::OK;
        };
        let (delivery, confirmation) = awaited_delivery(message);
        // Waiting for room in the queue counts against the same bound.
        let taken = async {
            self.out.send(Ok(delivery)).await.ok()?;
            confirmation.await.ok()
        };
        match tokio::time::timeout(ACK_TIMEOUT, taken).await {
            Ok(Some(())) => StatusCode::OK,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
