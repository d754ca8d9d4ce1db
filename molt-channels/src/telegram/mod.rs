//! Telegram through the Bot API: long polling or a webhook in, HTTPS calls out.
//!
//! ```no_run
//! # async fn run() -> Result<(), molt_core::channel::ChannelError> {
//! use molt_channels::telegram::{Telegram, TelegramConfig};
//! let config = TelegramConfig::new(molt_core::Secret::new("123:ABC"));
//! let telegram = Telegram::connect(config).await?;
//! let ingress = telegram.ingress(); // a stream of deliveries for the gateway
//! let egress = telegram.egress(); // register it under `molt_channels::telegram::CHANNEL`
//! # let _ = (ingress, egress); Ok(()) }
//! ```

mod api;
mod egress;
mod format;
pub(crate) mod inbound;
mod polling;
pub(crate) mod types;
mod webhook;

pub use api::{ApiError, BotApi};
pub use egress::{MAX_MESSAGE_LEN, TelegramEgress};
pub use format::{escape, escape_code, escape_link, to_markdown_v2, utf16_len};
pub use inbound::{CHANNEL, message_id_of, message_key};
pub use polling::TelegramIngress;
pub use webhook::{SECRET_HEADER, TelegramWebhook, TelegramWebhookIngress, valid_secret};

use crate::doctor::{Finding, Report, not_connected};
use molt_core::Secret;
use molt_core::channel::ChannelError;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use types::User;

/// How to reach Telegram.
#[derive(Clone, Debug)]
pub struct TelegramConfig {
    /// The bot token from BotFather.
    pub token: Secret,
    /// The Bot API server (`https://api.telegram.org`).
    pub api_base: String,
    /// How long one `getUpdates` call waits for updates.
    pub poll_timeout: Duration,
    /// The bound on every other request (and added to the poll's).
    pub request_timeout: Duration,
    /// Delete a webhook at start, so polling works (a webhook and polling
    /// exclude each other).
    pub delete_webhook: bool,
    /// The webhook this bot runs on, in webhook mode: [`doctor`] then
    /// expects Telegram to deliver there rather than no webhook at all.
    pub webhook_url: Option<String>,
}

impl TelegramConfig {
    /// The defaults for `token`.
    pub fn new(token: Secret) -> Self {
        Self {
            token,
            api_base: "https://api.telegram.org".into(),
            poll_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            delete_webhook: false,
            webhook_url: None,
        }
    }

    /// From `TELEGRAM_BOT_TOKEN` (and `TELEGRAM_API_BASE`, for a local Bot
    /// API server); `None` when the token is not set.
    pub fn from_env() -> Option<Self> {
        let mut config = Self::new(Secret::new(crate::env::var("TELEGRAM_BOT_TOKEN")?));
        if let Some(base) = crate::env::var("TELEGRAM_API_BASE") {
            config.api_base = base;
        }
        Some(config)
    }
}

/// A connected bot: who it is, and its two halves.
pub struct Telegram {
    api: BotApi,
    bot: User,
    config: TelegramConfig,
}

impl Telegram {
    /// Checks the token (`getMe`) and, when configured, deletes a webhook.
    pub async fn connect(config: TelegramConfig) -> Result<Self, ChannelError> {
        let http = crate::http::client(CHANNEL, config.request_timeout)?;
        let api = BotApi::new(http, &config.api_base, config.token.clone());
        let bot: User = api
            .call("getMe", &json!({}), config.request_timeout)
            .await
            .map_err(channel_error)?;
        if config.delete_webhook {
            api.call::<bool>("deleteWebhook", &json!({}), config.request_timeout)
                .await
                .map_err(channel_error)?;
        }
        tracing::info!(
            bot = bot.username.as_deref().unwrap_or("?"),
            "telegram: connected"
        );
        Ok(Self { api, bot, config })
    }

    /// The bot's username (without `@`).
    pub fn username(&self) -> Option<&str> {
        self.bot.username.as_deref()
    }

    /// The receiving half: long polling.
    pub fn ingress(&self) -> TelegramIngress {
        TelegramIngress {
            api: self.api.clone(),
            bot: self.bot.clone(),
            config: self.config.clone(),
        }
    }

    /// The receiving half in webhook mode: the endpoint's logic (mount it in
    /// your HTTP server) and the deliveries it takes in. `secret` is what
    /// Telegram must echo; give the same to [`Telegram::set_webhook`].
    pub fn webhook(
        &self,
        secret: Secret,
    ) -> Result<(TelegramWebhook, TelegramWebhookIngress), ChannelError> {
        check_secret(&secret)?;
        let (out, receiver) = tokio::sync::mpsc::channel(100);
        let endpoint = TelegramWebhook {
            bot: self.bot.clone(),
            secret,
            out,
        };
        Ok((endpoint, TelegramWebhookIngress { receiver }))
    }

    /// Asks Telegram to POST updates to `url` (HTTPS, port 443, 80, 88 or
    /// 8443) with `secret` in the secret header. Updates waiting are kept.
    pub async fn set_webhook(&self, url: &str, secret: &Secret) -> Result<(), ChannelError> {
        check_secret(secret)?;
        let params = json!({
            "url": url,
            "secret_token": secret.expose(),
            "allowed_updates": ["message"],
        });
        self.api
            .call::<bool>("setWebhook", &params, self.config.request_timeout)
            .await
            .map(drop)
            .map_err(channel_error)
    }

    /// The sending half.
    pub fn egress(&self) -> Arc<TelegramEgress> {
        Arc::new(TelegramEgress {
            api: self.api.clone(),
            config: self.config.clone(),
            migrated: Default::default(),
        })
    }
}

fn check_secret(secret: &Secret) -> Result<(), ChannelError> {
    if valid_secret(secret.expose()) {
        return Ok(());
    }
    Err(ChannelError::Rejected {
        channel: CHANNEL.into(),
        reason: "a webhook secret is 1 to 256 characters of A-Z, a-z, 0-9, _ and -".into(),
    })
}

/// Checks the token and whether a webhook is in the way of long polling.
pub async fn doctor(mut config: TelegramConfig) -> Report {
    config.delete_webhook = false;
    let telegram = match Telegram::connect(config).await {
        Ok(telegram) => telegram,
        Err(error) => {
            return not_connected(
                CHANNEL,
                error,
                "check TELEGRAM_BOT_TOKEN: copy it again from @BotFather (/token)",
            );
        }
    };
    let mut findings = Vec::new();
    findings.push(Finding::ok(format!(
        "token accepted (getMe): the bot is @{}",
        telegram.username().unwrap_or("?")
    )));
    let timeout = telegram.config.request_timeout;
    let expected = telegram.config.webhook_url.clone();
    match telegram
        .api
        .call::<serde_json::Value>("getWebhookInfo", &json!({}), timeout)
        .await
    {
        Ok(info) if expected.is_some() => {
            let url = info["url"].as_str().unwrap_or_default();
            let waiting = info["pending_update_count"].as_u64().unwrap_or(0);
            findings.push(match expected.as_deref() == Some(url) {
                true => Finding::ok(format!(
                    "webhook mode: updates arrive at {url} ({waiting} waiting)"
                )),
                false => Finding::problem(
                    format!("webhook mode, but Telegram delivers to {url:?}"),
                    "start the gateway (it sets the webhook), or check WORKER_URL",
                ),
            })
        }
        Ok(info) if info["url"].as_str().is_some_and(|url| !url.is_empty()) => {
            findings.push(Finding::problem(
                "a webhook is set, so long polling gets 409 Conflict",
                "run in webhook mode, or set delete_webhook in the Telegram config to remove it at start",
            ))
        }
        Ok(info) => findings.push(Finding::ok(format!(
            "no webhook set: long polling can run ({} updates waiting)",
            info["pending_update_count"].as_u64().unwrap_or(0)
        ))),
        Err(error) => findings.push(Finding::problem(
            format!("getWebhookInfo failed: {error}"),
            "try again; if it persists, check the network",
        )),
    }
    Report {
        channel: CHANNEL,
        findings,
    }
}

/// The channel error for a failed Bot API call.
fn channel_error(error: ApiError) -> ChannelError {
    let channel = CHANNEL.to_string();
    match error {
        ApiError::Refused {
            code: 401 | 404,
            description,
            ..
        } => ChannelError::Auth {
            channel,
            reason: format!("{description} (check TELEGRAM_BOT_TOKEN)"),
        },
        ApiError::Refused {
            retry_after: Some(retry_after),
            ..
        } => ChannelError::RateLimited {
            channel,
            retry_after,
        },
        ApiError::Refused {
            method,
            code,
            description,
            ..
        } => ChannelError::Rejected {
            channel,
            reason: format!("{method}: {code} {description}"),
        },
        ApiError::Transport { method, reason } => ChannelError::Transport {
            channel,
            reason: format!("{method}: {reason}"),
        },
    }
}
