//! Slack: events in through Socket Mode (over a WebSocket the app opens) or
//! the Events API (Slack POSTs them to the app's Request URL), messages out
//! through the Web API.
//!
//! ```no_run
//! # async fn run() -> Result<(), molt_core::channel::ChannelError> {
//! use molt_channels::slack::{Slack, SlackConfig};
//! use molt_core::Secret;
//! let config = SlackConfig::new(Secret::new("xoxb-..."), Secret::new("xapp-..."));
//! let slack = Slack::connect(config).await?;
//! let ingress = slack.ingress()?; // a stream of deliveries for the gateway
//! let egress = slack.egress(); // register it under `molt_channels::slack::CHANNEL`
//! # let _ = (ingress, egress); Ok(()) }
//! ```
//!
//! Over the Events API, the endpoint is mounted in the application's HTTP
//! server and its ingress feeds the gateway:
//!
//! ```no_run
//! # async fn run() -> Result<(), molt_core::channel::ChannelError> {
//! # use molt_channels::slack::{Slack, SlackConfig};
//! # use molt_core::Secret;
//! let config = SlackConfig::events_api(Secret::new("xoxb-..."), Secret::new("signing secret"));
//! let slack = Slack::connect(config).await?;
//! let (endpoint, ingress) = slack.events()?;
//! // For each POST to the Request URL: `endpoint.handle(&headers, &body).await`.
//! # let _ = (endpoint, ingress); Ok(()) }
//! ```

mod api;
mod egress;
mod events;
mod format;
pub(crate) mod inbound;
mod socket;

pub use api::{SlackApiError, WebApi};
pub use egress::{MAX_MESSAGE_LEN, SlackEgress};
pub use events::{NO_RETRY_HEADER, RETRY_NUM_HEADER, SlackEvents, SlackEventsIngress};
pub use format::{escape, to_mrkdwn, unescape};
pub use inbound::CHANNEL;
pub use socket::SlackIngress;

use crate::doctor::{Finding, Report, not_connected};
use inbound::BotIdentity;
use molt_core::Secret;
use molt_core::channel::ChannelError;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How many taken event ids are remembered, to recognise redeliveries.
const REMEMBERED_EVENTS: usize = 10_000;

/// How to reach Slack, and how events arrive: Socket Mode (with the app
/// token) or the Events API (with the signing secret).
#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// The bot token (`xoxb-`), for the Web API.
    pub bot_token: Secret,
    /// The app-level token (`xapp-`, scope `connections:write`), for Socket Mode.
    pub app_token: Option<Secret>,
    /// The app's signing secret (Basic Information), for the Events API.
    pub signing_secret: Option<Secret>,
    /// The Web API (`https://slack.com/api`).
    pub api_base: String,
    /// The bound on each request and on connecting.
    pub request_timeout: Duration,
    /// How often the socket is pinged.
    pub ping_interval: Duration,
    /// How long the socket may stay silent (no frame, no pong) before it is
    /// taken for half-open and replaced.
    pub idle_timeout: Duration,
}

impl SlackConfig {
    /// Socket Mode with these two tokens, and the defaults.
    pub fn new(bot_token: Secret, app_token: Secret) -> Self {
        Self::with(bot_token, Some(app_token), None)
    }

    /// The Events API with the bot token and the app's signing secret, and
    /// the defaults.
    pub fn events_api(bot_token: Secret, signing_secret: Secret) -> Self {
        Self::with(bot_token, None, Some(signing_secret))
    }

    fn with(bot_token: Secret, app_token: Option<Secret>, signing_secret: Option<Secret>) -> Self {
        Self {
            bot_token,
            app_token,
            signing_secret,
            api_base: "https://slack.com/api".into(),
            request_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// From `SLACK_BOT_TOKEN` with `SLACK_APP_TOKEN` (Socket Mode) and/or
    /// `SLACK_SIGNING_SECRET` (the Events API), and `SLACK_API_BASE` for a
    /// proxy; `None` unless the bot token and one of the others are set.
    pub fn from_env() -> Option<Self> {
        let bot = Secret::new(crate::env::var("SLACK_BOT_TOKEN")?);
        let signing_secret = crate::env::var("SLACK_SIGNING_SECRET").map(Secret::new);
        let app_token = crate::env::var("SLACK_APP_TOKEN").map(Secret::new);
        if signing_secret.is_none() && app_token.is_none() {
            return None;
        }
        let mut config = Self::with(bot, app_token, signing_secret);
        if let Some(base) = crate::env::var("SLACK_API_BASE") {
            config.api_base = base;
        }
        Some(config)
    }
}

/// A connected app: who its bot is, and its two halves.
pub struct Slack {
    config: SlackConfig,
    api: WebApi,
    bot: BotIdentity,
    tls: Arc<rustls::ClientConfig>,
}

impl Slack {
    /// Checks the tokens' kinds and the bot token (`auth.test`).
    pub async fn connect(config: SlackConfig) -> Result<Self, ChannelError> {
        let auth = |reason: &str| ChannelError::Auth {
            channel: CHANNEL.into(),
            reason: reason.into(),
        };
        if !config.bot_token.expose().starts_with("xoxb-") {
            return Err(auth("SLACK_BOT_TOKEN must be a bot token (xoxb-...)"));
        }
        if (config.app_token.as_ref()).is_some_and(|token| !token.expose().starts_with("xapp-")) {
            return Err(auth(
                "SLACK_APP_TOKEN must be an app-level token (xapp-...)",
            ));
        }
        if (config.signing_secret.as_ref()).is_some_and(Secret::is_empty) {
            return Err(auth("SLACK_SIGNING_SECRET is empty"));
        }
        if config.app_token.is_none() && config.signing_secret.is_none() {
            return Err(auth(
                "set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (the Events API)",
            ));
        }
        let http = crate::http::client(CHANNEL, config.request_timeout)?;
        let tls = crate::http::tls_config().map_err(|reason| ChannelError::Transport {
            channel: CHANNEL.into(),
            reason,
        })?;
        let api = WebApi::new(http, &config.api_base, config.request_timeout);
        let answer = api
            .call("auth.test", &config.bot_token, &json!({}))
            .await
            .map_err(api_error)?;
        let bot: BotIdentity =
            serde_json::from_value(answer).map_err(|err| ChannelError::Transport {
                channel: CHANNEL.into(),
                reason: format!("auth.test: unreadable answer ({err})"),
            })?;
        tracing::info!(bot = %bot.user_id, team = %bot.team_id, "slack: connected");
        Ok(Self {
            config,
            api,
            bot,
            tls: Arc::new(tls),
        })
    }

    /// The bot's user id.
    pub fn bot_user_id(&self) -> &str {
        &self.bot.user_id
    }

    /// The receiving half through Socket Mode; an error without the app token.
    pub fn ingress(&self) -> Result<SlackIngress, ChannelError> {
        let app_token = self
            .config
            .app_token
            .clone()
            .ok_or_else(|| ChannelError::Auth {
                channel: CHANNEL.into(),
                reason: "Socket Mode needs the app-level token (SLACK_APP_TOKEN)".into(),
            })?;
        Ok(SlackIngress {
            api: self.api.clone(),
            config: self.config.clone(),
            app_token,
            bot: self.bot.clone(),
            tls: self.tls.clone(),
        })
    }

    /// The receiving half through the Events API: the endpoint to mount at
    /// the app's Request URL, and the stream of what it takes in; an error
    /// without the signing secret.
    pub fn events(&self) -> Result<(SlackEvents, SlackEventsIngress), ChannelError> {
        let secret = self
            .config
            .signing_secret
            .clone()
            .ok_or_else(|| ChannelError::Auth {
                channel: CHANNEL.into(),
                reason: "the Events API needs the app's signing secret (SLACK_SIGNING_SECRET)"
                    .into(),
            })?;
        Ok(SlackEvents::new(self.bot.clone(), secret))
    }

    /// The sending half.
    pub fn egress(&self) -> Arc<SlackEgress> {
        Arc::new(SlackEgress {
            api: self.api.clone(),
            bot_token: self.config.bot_token.clone(),
        })
    }
}

/// Checks the bot token with `auth.test`, and the app token (Socket Mode) by
/// opening a connection; the signing secret (the Events API) can only be
/// checked by Slack's own requests.
pub async fn doctor(config: SlackConfig) -> Report {
    let slack = match Slack::connect(config).await {
        Ok(slack) => slack,
        Err(error) => {
            return not_connected(
                CHANNEL,
                error,
                "check SLACK_BOT_TOKEN (xoxb-, OAuth & Permissions) and SLACK_APP_TOKEN (xapp-, Basic Information > App-Level Tokens, scope connections:write) or SLACK_SIGNING_SECRET (Basic Information > App Credentials)",
            );
        }
    };
    let mut findings = Vec::new();
    findings.push(Finding::ok(format!(
        "bot token accepted (auth.test): bot user {} in team {}",
        slack.bot.user_id, slack.bot.team_id
    )));
    let socket = match slack.ingress() {
        Ok(socket) => socket,
        Err(_) => {
            findings.push(Finding::ok(
                "Events API: Slack POSTs events to the app's Request URL (Event Subscriptions), which must answer Slack's url_verification when it is saved; requests not signed with SLACK_SIGNING_SECRET are refused",
            ));
            return Report {
                channel: CHANNEL,
                findings,
            };
        }
    };
    findings.push(match socket.probe().await {
        Ok(()) => Finding::ok("app token accepted: a Socket Mode connection opened"),
        Err(ChannelError::Auth { reason, .. }) => Finding::problem(
            format!("the app token was refused: {reason}"),
            "create an app-level token with connections:write (Basic Information > App-Level Tokens) and set SLACK_APP_TOKEN",
        ),
        Err(error) => Finding::problem(
            format!("Socket Mode did not open: {error}"),
            "turn Socket Mode on in the app settings, and check the network",
        ),
    });
    Report {
        channel: CHANNEL,
        findings,
    }
}

/// The channel error for a failed Web API call.
fn api_error(error: SlackApiError) -> ChannelError {
    let channel = CHANNEL.to_owned();
    match error {
        SlackApiError::Refused { error: code, .. } if socket::is_auth_error(&code) => {
            ChannelError::Auth {
                channel,
                reason: format!("{code} (check SLACK_BOT_TOKEN and the app's scopes)"),
            }
        }
        SlackApiError::Refused { method, error } => {
            let hint = match error.as_str() {
                "not_in_channel" => ": invite the bot to the channel",
                "channel_not_found" => ": the bot cannot see that channel",
                _ => "",
            };
            ChannelError::Rejected {
                channel,
                reason: format!("{method}: {error}{hint}"),
            }
        }
        SlackApiError::RateLimited { retry_after, .. } => ChannelError::RateLimited {
            channel,
            retry_after,
        },
        SlackApiError::Transport { method, reason } => ChannelError::Transport {
            channel,
            reason: format!("{method}: {reason}"),
        },
    }
}
