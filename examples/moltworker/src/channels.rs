//! The chat channels configured in the environment: Telegram
//! (`TELEGRAM_BOT_TOKEN`), Discord (`DISCORD_BOT_TOKEN`) and Slack
//! (`SLACK_BOT_TOKEN` with `SLACK_APP_TOKEN` for Socket Mode, or with
//! `SLACK_SIGNING_SECRET` for the Events API).
//!
//! With `WORKER_URL` set (the gateway runs behind the Worker, which may let
//! it sleep), Telegram is in webhook mode: Telegram POSTs each update to
//! `<WORKER_URL>/hooks/telegram`, which wakes a sleeping container; the
//! secret Telegram echoes is derived from the bot token, so it stays the
//! same across restarts. Slack over the Events API (the signing secret
//! without the app token) is the same for Slack: it POSTs each event to
//! `<WORKER_URL>/hooks/slack`, the app's Request URL.

use crate::metrics::{CountedIngress, GatewayMetrics};
use molt_channels::discord::{self, Discord, DiscordConfig};
use molt_channels::doctor::Report;
use molt_channels::slack::{self, Slack, SlackConfig, SlackEvents};
use molt_channels::telegram::{self, Telegram, TelegramConfig, TelegramWebhook};
use molt_core::Secret;
use molt_core::channel::{ChannelEgress, ChannelError, ChannelIngress};
use molt_core::gateway::Gateway;
use molt_core::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::task::JoinHandle;

/// What is known of one configured channel's connection.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    /// Set in the environment.
    pub configured: bool,
    /// Its deliveries are being received.
    pub running: bool,
    /// Connected to its platform.
    pub connected: bool,
    /// When it last connected (ms since the Unix epoch).
    pub last_connected_at: Option<u64>,
    /// When it stopped (ms since the Unix epoch).
    pub last_stop_at: Option<u64>,
    /// Why it failed to connect or stopped, when it did.
    pub last_error: Option<String>,
}

/// The configured channels and their connection state, shared with the
/// status routes. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct ChannelBoard {
    channels: Arc<Mutex<BTreeMap<&'static str, ChannelStatus>>>,
    /// When the Control UI's channel came up (with the process).
    started_ms: u64,
    /// Secret values a platform's error text must never carry out.
    secrets: Arc<Vec<String>>,
}

impl Default for ChannelBoard {
    /// A board whose errors are cleaned of the secrets in the environment.
    fn default() -> Self {
        Self {
            channels: Arc::default(),
            started_ms: crate::protocol::now_ms(),
            secrets: Arc::new(crate::debug::secret_values(std::env::vars())),
        }
    }
}

impl ChannelBoard {
    /// Every channel's state, by name (the Control UI's `webchat` included).
    pub fn snapshot(&self) -> BTreeMap<&'static str, ChannelStatus> {
        let mut channels = self.lock().clone();
        channels.insert(
            crate::webchat::CHANNEL,
            ChannelStatus {
                configured: true,
                running: true,
                connected: true,
                last_connected_at: Some(self.started_ms),
                ..ChannelStatus::default()
            },
        );
        channels
    }

    fn update(&self, name: &'static str, change: impl FnOnce(&mut ChannelStatus)) {
        let mut channels = self.lock();
        let status = channels.entry(name).or_insert_with(|| ChannelStatus {
            configured: true,
            ..ChannelStatus::default()
        });
        change(status);
        // A platform's error may quote what it was sent (a bot token in a URL).
        if let Some(error) = &mut status.last_error {
            *error = crate::debug::redact(error, &self.secrets);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, ChannelStatus>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connected channel's two halves.
type Halves = (Box<dyn ChannelIngress>, Arc<dyn ChannelEgress>);

fn halves(ingress: impl ChannelIngress + 'static, egress: Arc<dyn ChannelEgress>) -> Halves {
    (Box::new(ingress), egress)
}

use molt_core::webhook::{SLACK_PATH, TELEGRAM_PATH};

/// The endpoints of the channels that platforms call, replaced when the
/// channels connect again. Cheap to clone.
#[derive(Clone, Default)]
pub struct Webhooks {
    telegram: Arc<RwLock<Option<TelegramWebhook>>>,
    slack: Arc<RwLock<Option<SlackEvents>>>,
}

impl Webhooks {
    /// Telegram's endpoint, while Telegram is in webhook mode.
    pub fn telegram(&self) -> Option<TelegramWebhook> {
        self.telegram.read().ok()?.clone()
    }

    /// Slack's endpoint, while Slack is on the Events API.
    pub fn slack(&self) -> Option<SlackEvents> {
        self.slack.read().ok()?.clone()
    }

    /// Removes every endpoint (before the channels connect again).
    fn clear(&self) {
        if let Ok(mut slot) = self.telegram.write() {
            *slot = None;
        }
        if let Ok(mut slot) = self.slack.write() {
            *slot = None;
        }
    }
}

/// The Worker's public URL (`WORKER_URL`), when the gateway runs behind it.
fn worker_url() -> Option<String> {
    let url = std::env::var("WORKER_URL").ok()?;
    let url = url.trim().trim_end_matches('/');
    match url {
        "" => None,
        url if url.contains("://") => Some(url.to_owned()),
        host => Some(format!("https://{host}")),
    }
}

/// Where Telegram delivers when the gateway runs behind the Worker at `base`.
fn telegram_webhook_url(base: &str) -> String {
    format!("{base}{TELEGRAM_PATH}")
}

/// Telegram in webhook mode: the endpoint goes to `webhooks`, and Telegram
/// is told where to deliver.
async fn telegram_webhook_mode(
    telegram: &Telegram,
    secret: Secret,
    base: &str,
    webhooks: &Webhooks,
) -> Result<Halves, ChannelError> {
    let (endpoint, ingress) = telegram.webhook(secret.clone())?;
    if let Ok(mut slot) = webhooks.telegram.write() {
        *slot = Some(endpoint);
    }
    let url = telegram_webhook_url(base);
    // Telegram keeps delivering to a webhook set before (the same URL and
    // secret), so a failed call leaves the channel working, and is retried
    // at the next start.
    match telegram.set_webhook(&url, &secret).await {
        Ok(()) => tracing::info!("telegram: webhook mode, updates arrive at {url}"),
        Err(err) => {
            tracing::warn!(%err, "telegram: setWebhook failed; Telegram delivers to the webhook set before, if any")
        }
    }
    Ok(halves(ingress, telegram.egress()))
}

/// Slack through Socket Mode when the app token is set, else through the
/// Events API, whose endpoint goes to `webhooks`.
fn slack_halves(slack: &Slack, webhooks: &Webhooks) -> Result<Halves, ChannelError> {
    if let Ok(socket) = slack.ingress() {
        return Ok(halves(socket, slack.egress()));
    }
    let (endpoint, ingress) = slack.events()?;
    if let Ok(mut slot) = webhooks.slack.write() {
        *slot = Some(endpoint);
    }
    let url = worker_url().unwrap_or_else(|| "https://<this gateway's public URL>".into());
    tracing::info!("slack: Events API, Slack's Request URL is {url}{SLACK_PATH}");
    Ok(halves(ingress, slack.egress()))
}

/// A connected channel whose deliveries are not yet being received.
pub struct Connected {
    /// The channel's name.
    pub name: &'static str,
    ingress: Box<dyn ChannelIngress>,
}

/// Connects every configured channel and registers its sending half with
/// `gateway` (so replies pending from before a restart can go out). A channel
/// that cannot connect is reported and left out; the others are returned.
pub async fn connect(
    gateway: &Gateway,
    store: Arc<dyn Store>,
    board: &ChannelBoard,
    webhooks: &Webhooks,
) -> Vec<Connected> {
    let mut connected = Vec::new();
    let mut register = |name: &'static str, result: Result<Halves, ChannelError>| match result {
        Ok((ingress, egress)) => {
            gateway.register_egress(name, egress);
            connected.push(Connected { name, ingress });
            board.update(name, |status| {
                (status.running, status.connected) = (true, true);
                status.last_connected_at = Some(crate::protocol::now_ms());
            });
        }
        Err(error) => {
            tracing::error!(
                channel = name,
                %error,
                "channel not started; `moltworker doctor` says what to fix"
            );
            board.update(name, |status| status.last_error = Some(error.to_string()));
        }
    };
    // A channel that fails to connect again leaves no endpoint behind.
    webhooks.clear();
    if let Some(mut config) = TelegramConfig::from_env() {
        let result = match worker_url() {
            Some(base) => {
                let secret = molt_core::webhook::telegram_secret(&config.token);
                match Telegram::connect(config).await {
                    Ok(telegram) => telegram_webhook_mode(&telegram, secret, &base, webhooks).await,
                    Err(err) => Err(err),
                }
            }
            None => {
                // Long polling: a webhook left from elsewhere would block it.
                config.delete_webhook = true;
                Telegram::connect(config)
                    .await
                    .map(|telegram| halves(telegram.ingress(), telegram.egress()))
            }
        };
        register(telegram::CHANNEL, result);
    }
    if let Some(mut config) = DiscordConfig::from_env() {
        // Kept with the state (and so in the backup): a restart resumes.
        config.session_store = Some(store);
        let result = Discord::connect(config)
            .await
            .map(|discord| halves(discord.ingress(), discord.egress()));
        register(discord::CHANNEL, result);
    }
    if let Some(config) = SlackConfig::from_env() {
        let result = match Slack::connect(config).await {
            Ok(slack) => slack_halves(&slack, webhooks),
            Err(err) => Err(err),
        };
        register(slack::CHANNEL, result);
    }
    connected
}

/// Feeds each channel's deliveries to `gateway`, one task per channel (a
/// task ends when its channel stops for good).
fn receive(
    gateway: &Gateway,
    channels: Vec<Connected>,
    board: &ChannelBoard,
    metrics: &Arc<GatewayMetrics>,
) -> Vec<JoinHandle<()>> {
    channels
        .into_iter()
        .map(|Connected { name, ingress }| {
            let (gateway, board) = (gateway.clone(), board.clone());
            let ingress = Box::new(CountedIngress::new(ingress, metrics.clone()));
            tokio::spawn(async move {
                let summary = gateway.receive(ingress).await;
                tracing::warn!(channel = name, ?summary, "channel stopped");
                board.update(name, |status| {
                    (status.running, status.connected) = (false, false);
                    status.last_stop_at = Some(crate::protocol::now_ms());
                    status.last_error = summary.last_error.map(|err| err.to_string());
                });
            })
        })
        .collect()
}

/// The channels' receiving tasks, which can be stopped and started again
/// while the process serves (`POST /api/admin/gateway/restart`).
pub struct ChannelRuntime {
    gateway: Gateway,
    webhooks: Webhooks,
    store: Arc<dyn Store>,
    board: ChannelBoard,
    metrics: Arc<GatewayMetrics>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// What a restart did.
#[derive(Debug)]
pub struct Restarted {
    /// Whether every run finished within the drain timeout.
    pub drained: bool,
    /// The channels connected again.
    pub channels: Vec<&'static str>,
    /// Messages accepted but unanswered, answered now.
    pub resumed: usize,
}

impl ChannelRuntime {
    /// Runtime over channels already connected (see [`connect`]); their
    /// deliveries start being received now.
    pub fn start(
        gateway: &Gateway,
        store: Arc<dyn Store>,
        board: ChannelBoard,
        metrics: Arc<GatewayMetrics>,
        connected: Vec<Connected>,
        webhooks: Webhooks,
    ) -> Self {
        let tasks = receive(gateway, connected, &board, &metrics);
        Self {
            gateway: gateway.clone(),
            webhooks,
            store,
            board,
            metrics,
            tasks: tokio::sync::Mutex::new(tasks),
        }
    }

    /// The channels and their connection state.
    pub fn board(&self) -> &ChannelBoard {
        &self.board
    }

    /// The endpoints of the channels in webhook mode.
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// Stops receiving from every channel (what they delivered is in the inbox).
    pub async fn stop(&self) {
        for task in self.tasks.lock().await.drain(..) {
            task.abort();
        }
    }

    /// Stops every channel, waits up to `drain` for runs in progress, then
    /// connects the channels again and answers what was left unanswered
    /// (only when the runs drained, so none is answered twice).
    pub async fn restart(&self, drain: std::time::Duration) -> Restarted {
        let mut tasks = self.tasks.lock().await;
        for task in tasks.drain(..) {
            task.abort();
        }
        let drained = tokio::time::timeout(drain, self.gateway.idle())
            .await
            .is_ok();
        let connected = connect(
            &self.gateway,
            self.store.clone(),
            &self.board,
            &self.webhooks,
        )
        .await;
        let channels = connected.iter().map(|c| c.name).collect();
        let resumed = match drained {
            true => self.gateway.resume_pending().await.unwrap_or_else(|err| {
                tracing::warn!(%err, "cannot read the inbox after a restart");
                0
            }),
            false => 0,
        };
        *tasks = receive(&self.gateway, connected, &self.board, &self.metrics);
        tracing::info!(
            drained,
            ?channels,
            resumed,
            "the gateway's channels restarted"
        );
        Restarted {
            drained,
            channels,
            resumed,
        }
    }
}

/// The health report of every configured channel (empty when none is).
pub async fn doctor() -> Vec<Report> {
    let mut reports = Vec::new();
    if let Some(mut config) = TelegramConfig::from_env() {
        config.webhook_url = worker_url().as_deref().map(telegram_webhook_url);
        reports.push(telegram::doctor(config).await);
    }
    if let Some(config) = DiscordConfig::from_env() {
        reports.push(discord::doctor(config).await);
    }
    if let Some(config) = SlackConfig::from_env() {
        reports.push(slack::doctor(config).await);
    }
    reports
}
