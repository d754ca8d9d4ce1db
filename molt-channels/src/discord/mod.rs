//! Discord through the gateway WebSocket (events in) and the REST API
//! (messages out).
//!
//! ```no_run
//! # async fn run() -> Result<(), molt_core::channel::ChannelError> {
//! use molt_channels::discord::{Discord, DiscordConfig};
//! let config = DiscordConfig::new(molt_core::Secret::new("bot-token"));
//! let discord = Discord::connect(config).await?;
//! let ingress = discord.ingress(); // a stream of deliveries for the gateway
//! let egress = discord.egress(); // register it under `molt_channels::discord::CHANNEL`
//! # let _ = (ingress, egress); Ok(()) }
//! ```

mod egress;
mod gateway;
pub(crate) mod inbound;
mod ratelimit;
mod rest;

pub use egress::{DiscordEgress, MAX_MESSAGE_LEN};
pub use gateway::DiscordIngress;
pub use inbound::CHANNEL;
pub use ratelimit::{RateLimits, Route};
pub use rest::{Rest, RestError};

use crate::doctor::{Finding, Report, not_connected};
use inbound::User;
use molt_core::Secret;
use molt_core::channel::ChannelError;
use molt_core::store::Store;
use reqwest::Method;
use std::sync::Arc;
use std::time::Duration;

/// How to reach Discord.
#[derive(Clone)]
pub struct DiscordConfig {
    /// The bot token from the Developer Portal.
    pub token: Secret,
    /// The REST API (`https://discord.com/api/v10`).
    pub api_base: String,
    /// Ask for the privileged Message Content intent, so guild messages that
    /// do not mention the bot carry their text. It must be enabled in the
    /// Developer Portal; the gateway refuses the connection otherwise.
    pub message_content: bool,
    /// The bound on each request and on connecting.
    pub request_timeout: Duration,
    /// Where the gateway session is kept, so a restarted process resumes it
    /// and Discord replays what it missed. Without one, a restart identifies
    /// anew and events sent while it was down are not received.
    pub session_store: Option<Arc<dyn Store>>,
}

impl std::fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("api_base", &self.api_base)
            .field("message_content", &self.message_content)
            .field("request_timeout", &self.request_timeout)
            .field("session_store", &self.session_store.is_some())
            .finish_non_exhaustive()
    }
}

impl DiscordConfig {
    /// The defaults for `token`.
    pub fn new(token: Secret) -> Self {
        Self {
            token,
            api_base: "https://discord.com/api/v10".into(),
            message_content: true,
            request_timeout: Duration::from_secs(10),
            session_store: None,
        }
    }

    /// From `DISCORD_BOT_TOKEN` (and `DISCORD_API_BASE`, for a proxy);
    /// `None` when the token is not set.
    pub fn from_env() -> Option<Self> {
        let mut config = Self::new(Secret::new(crate::env::var("DISCORD_BOT_TOKEN")?));
        if let Some(base) = crate::env::var("DISCORD_API_BASE") {
            config.api_base = base;
        }
        Some(config)
    }
}

/// A connected bot: who it is, and its two halves.
pub struct Discord {
    config: DiscordConfig,
    rest: Rest,
    bot: User,
    gateway_url: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Discord {
    /// Checks the token (`GET /users/@me`) and finds the gateway (`GET /gateway/bot`).
    pub async fn connect(config: DiscordConfig) -> Result<Self, ChannelError> {
        let http = crate::http::client(CHANNEL, config.request_timeout)?;
        let tls = crate::http::tls_config().map_err(|reason| ChannelError::Transport {
            channel: CHANNEL.into(),
            reason,
        })?;
        let rest = Rest::new(
            http,
            &config.api_base,
            config.token.clone(),
            config.request_timeout,
        );
        let me = Route {
            template: "GET /users/@me",
            major: String::new(),
        };
        let bot: User = serde_json::from_value(
            rest.request(Method::GET, &me, "/users/@me", None)
                .await
                .map_err(rest_error)?,
        )
        .map_err(|err| unreadable("GET /users/@me", err))?;
        let gateway = Route {
            template: "GET /gateway/bot",
            major: String::new(),
        };
        let answer = rest
            .request(Method::GET, &gateway, "/gateway/bot", None)
            .await
            .map_err(rest_error)?;
        let gateway_url = answer["url"]
            .as_str()
            .ok_or_else(|| unreadable("GET /gateway/bot", "no url"))?
            .to_owned();
        Ok(Self {
            config,
            rest,
            bot,
            gateway_url,
            tls: Arc::new(tls),
        })
    }

    /// The bot's user id.
    pub fn bot_id(&self) -> &str {
        &self.bot.id
    }

    /// The bot's username.
    pub fn username(&self) -> &str {
        &self.bot.username
    }

    /// The receiving half: the gateway connection.
    pub fn ingress(&self) -> DiscordIngress {
        DiscordIngress {
            config: self.config.clone(),
            bot: self.bot.clone(),
            gateway_url: self.gateway_url.clone(),
            tls: self.tls.clone(),
        }
    }

    /// The sending half.
    pub fn egress(&self) -> Arc<DiscordEgress> {
        Arc::new(DiscordEgress {
            rest: self.rest.clone(),
        })
    }
}

/// Checks the token (`GET /users/@me`) and that the gateway accepts an
/// IDENTIFY with the configured intents.
pub async fn doctor(config: DiscordConfig) -> Report {
    let discord = match Discord::connect(config).await {
        Ok(discord) => discord,
        Err(error) => {
            return not_connected(
                CHANNEL,
                error,
                "check DISCORD_BOT_TOKEN: reset and copy it in the Developer Portal (Bot > Token)",
            );
        }
    };
    let mut findings = Vec::new();
    findings.push(Finding::ok(format!(
        "token accepted: the bot is {} ({})",
        discord.username(),
        discord.bot_id()
    )));
    let intents = if discord.config.message_content {
        "guilds, messages, direct messages, message content"
    } else {
        "guilds, messages, direct messages"
    };
    findings.push(match gateway::probe(&discord.ingress()).await {
        Ok(()) => Finding::ok(format!("gateway identify accepted (intents: {intents})")),
        Err(ChannelError::Rejected { reason, .. }) if reason.contains("4014") => Finding::problem(
            "the gateway refused the Message Content intent (4014)",
            "enable Message Content Intent in the Developer Portal (Bot > Privileged Gateway Intents), or set message_content to false",
        ),
        Err(error) => Finding::problem(
            format!("gateway identify failed: {error}"),
            "check the token and the network; see the error above",
        ),
    });
    Report {
        channel: CHANNEL,
        findings,
    }
}

fn unreadable(route: &str, err: impl std::fmt::Display) -> ChannelError {
    ChannelError::Transport {
        channel: CHANNEL.into(),
        reason: format!("{route}: unreadable answer ({err})"),
    }
}

/// The channel error for a failed REST request.
fn rest_error(error: RestError) -> ChannelError {
    let channel = CHANNEL.to_owned();
    match error {
        RestError::Refused { status: 401, .. } => ChannelError::Auth {
            channel,
            reason: "401: Unauthorized (check DISCORD_BOT_TOKEN)".into(),
        },
        RestError::Refused {
            status: 403,
            route,
            code,
            message,
        } => ChannelError::Rejected {
            channel,
            reason: format!(
                "{route}: {message} ({code}); give the bot View Channel, Send Messages and Read Message History there"
            ),
        },
        RestError::Refused { status: 429, .. } => ChannelError::RateLimited {
            channel,
            retry_after: Duration::from_secs(1),
        },
        error @ RestError::Refused { .. } => ChannelError::Rejected {
            channel,
            reason: error.to_string(),
        },
        RestError::Transport { route, reason } => ChannelError::Transport {
            channel,
            reason: format!("{route}: {reason}"),
        },
    }
}
