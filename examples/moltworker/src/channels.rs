//! The chat channels configured in the environment: Telegram
//! (`TELEGRAM_BOT_TOKEN`), Discord (`DISCORD_BOT_TOKEN`) and Slack
//! (`SLACK_BOT_TOKEN` with `SLACK_APP_TOKEN`).

use molt_channels::discord::{self, Discord, DiscordConfig};
use molt_channels::doctor::Report;
use molt_channels::slack::{self, Slack, SlackConfig};
use molt_channels::telegram::{self, Telegram, TelegramConfig};
use molt_core::channel::{ChannelEgress, ChannelError, ChannelIngress};
use molt_core::gateway::Gateway;
use molt_core::store::Store;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A connected channel's two halves.
type Halves = (Box<dyn ChannelIngress>, Arc<dyn ChannelEgress>);

fn halves(ingress: impl ChannelIngress + 'static, egress: Arc<dyn ChannelEgress>) -> Halves {
    (Box::new(ingress), egress)
}

/// Connects every configured channel, registers its sending half and feeds
/// its deliveries to `gateway`. A channel that cannot connect is reported
/// and left out; the others run. Returns the names of those running and
/// their tasks (which end when a channel stops for good).
pub async fn start(
    gateway: &Gateway,
    store: Arc<dyn Store>,
) -> (Vec<&'static str>, Vec<JoinHandle<()>>) {
    let mut running = Vec::new();
    let mut tasks = Vec::new();
    let mut run = |name: &'static str, connected: Result<Halves, ChannelError>| match connected {
        Ok((ingress, egress)) => {
            gateway.register_egress(name, egress);
            let gateway = gateway.clone();
            tasks.push(tokio::spawn(async move {
                let summary = gateway.receive(ingress).await;
                tracing::warn!(channel = name, ?summary, "channel stopped");
            }));
            running.push(name);
        }
        Err(error) => tracing::error!(
            channel = name,
            %error,
            "channel not started; `moltworker doctor` says what to fix"
        ),
    };
    if let Some(mut config) = TelegramConfig::from_env() {
        // moltworker polls: a webhook left from elsewhere would block it.
        config.delete_webhook = true;
        let connected = Telegram::connect(config)
            .await
            .map(|telegram| halves(telegram.ingress(), telegram.egress()));
        run(telegram::CHANNEL, connected);
    }
    if let Some(mut config) = DiscordConfig::from_env() {
        // Kept with the state (and so in the backup): a restart resumes.
        config.session_store = Some(store);
        let connected = Discord::connect(config)
            .await
            .map(|discord| halves(discord.ingress(), discord.egress()));
        run(discord::CHANNEL, connected);
    }
    if let Some(config) = SlackConfig::from_env() {
        let connected = Slack::connect(config)
            .await
            .map(|slack| halves(slack.ingress(), slack.egress()));
        run(slack::CHANNEL, connected);
    }
    (running, tasks)
}

/// The health report of every configured channel (empty when none is).
pub async fn doctor() -> Vec<Report> {
    let mut reports = Vec::new();
    if let Some(config) = TelegramConfig::from_env() {
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
