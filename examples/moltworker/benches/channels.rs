//! Channel numbers against the protocol fakes of molt-channels' tests, all in
//! one run:
//! - inbound parse-and-dispatch throughput per channel: a platform payload
//!   read by the adapter (long poll, gateway event or Socket Mode envelope),
//!   stored in the inbox, acknowledged to the platform, and passed through
//!   the DM policy (set to `disabled`, so no model runs and nothing is sent);
//! - the RSS of the release `moltworker` with Telegram, Discord and Slack
//!   connected and idle, beside the same binary with no channel.
//!
//! Run: `cargo bench -p moltworker --bench channels` (prints a table).

#[path = "../../../molt-channels/tests/support/discord.rs"]
mod discord;
#[path = "../../../molt-channels/tests/support/slack.rs"]
mod slack;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use async_trait::async_trait;
use bytes::Bytes;
use molt_channels::discord::{Discord, DiscordConfig};
use molt_channels::slack::{Slack, SlackConfig};
use molt_channels::telegram::{Telegram, TelegramConfig};
use molt_core::Secret;
use molt_core::agent::{Agent, AgentOptions};
use molt_core::channel::ChannelIngress;
use molt_core::echo::EchoModel;
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::policy::{ChannelPolicy, DmPolicy};
use molt_core::session::SessionScope;
use molt_core::store::{MemoryStore, PutOutcome, Store, StoreError};
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use moltworker::platform::TokioPlatform;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Messages per channel and run.
const MESSAGES: usize = 3_000;
const RUNS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "\nchannels ({}; {MESSAGES} messages per run, median of {RUNS} runs)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("| channel | inbound messages/s |\n|---|---|");
    for channel in ["telegram", "discord", "slack"] {
        let mut rates: Vec<f64> = (0..RUNS)
            .map(|_| runtime.block_on(throughput(channel)))
            .collect();
        rates.sort_by(f64::total_cmp);
        println!("| {channel} | {:.0} |", rates[RUNS / 2]);
    }
    let (none, all) = runtime.block_on(idle_rss());
    println!("\n| moltworker idle RSS | MiB |\n|---|---|");
    println!("| no channel | {:.1} |", none as f64 / 1024.0);
    println!(
        "| Telegram, Discord and Slack connected | {:.1} |",
        all as f64 / 1024.0
    );
}

/// The inbox's store, counting entries that reached `done`.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    done: AtomicUsize,
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let done = value.starts_with(br#"{"state":"done""#);
        self.inner.put(key, value).await?;
        if done {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    async fn put_if_absent(&self, key: &str, value: Bytes) -> Result<PutOutcome, StoreError> {
        self.inner.put_if_absent(key, value).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// A gateway whose DM policy ignores every message once it is accepted.
fn gateway(store: Arc<CountingStore>) -> Gateway {
    let platform = TokioPlatform::platform();
    let agent = Agent::new(
        Arc::new(EchoModel),
        Arc::new(ToolRegistry::new()),
        platform.timer.clone(),
        AgentOptions::default(),
    );
    let policies: BTreeMap<String, ChannelPolicy> = ["telegram", "discord", "slack"]
        .into_iter()
        .map(|name| {
            let policy = ChannelPolicy {
                dm_policy: DmPolicy::Disabled,
                ..ChannelPolicy::default()
            };
            (name.to_owned(), policy)
        })
        .collect();
    Gateway::new(GatewayParts {
        store,
        logs: Arc::new(MemoryStore::new()),
        agent,
        platform,
        system_prompt: std::sync::Arc::new(String::new()),
        notebook: None,
        scope: SessionScope::PerPeer,
        compaction: CompactionPolicy::default(),
        policies,
        observer: None,
    })
}

/// Messages per second from the platform queueing them to the gateway
/// having taken them all.
async fn throughput(channel: &str) -> f64 {
    let store = Arc::new(CountingStore::default());
    let gateway = gateway(store.clone());
    let user = |n: usize| n % 50;
    let (started, _alive, receiving) = match channel {
        "telegram" => {
            let fake = telegram::FakeTelegram::start().await;
            let mut config = TelegramConfig::new(Secret::new(telegram::TOKEN));
            config.api_base = fake.base.clone();
            config.request_timeout = TIMEOUT;
            let telegram = Telegram::connect(config).await.unwrap();
            let ingress = telegram.ingress();
            let started = Instant::now();
            for n in 0..MESSAGES {
                fake.private_message(7_000 + user(n) as i64, n as i64 + 1, "hello there");
            }
            let receiving = receive(&gateway, ingress);
            (started, alive(fake, telegram), receiving)
        }
        "discord" => {
            let fake = discord::FakeDiscord::start().await;
            let mut config = DiscordConfig::new(Secret::new(discord::TOKEN));
            config.api_base = fake.base.clone();
            config.request_timeout = TIMEOUT;
            let discord = Discord::connect(config).await.unwrap();
            let ingress = discord.ingress();
            // The socket opens when the deliveries are first read.
            let receiving = receive(&gateway, ingress);
            wait_for("the Discord session", || fake.is_live()).await;
            let started = Instant::now();
            for n in 0..MESSAGES {
                fake.direct_message(&format!("81000000000000{:04}", user(n)), "hello there");
            }
            (started, alive(fake, discord), receiving)
        }
        _ => {
            let fake = slack::FakeSlack::start().await;
            let mut config =
                SlackConfig::new(Secret::new(slack::BOT_TOKEN), Secret::new(slack::APP_TOKEN));
            config.api_base = fake.base.clone();
            config.request_timeout = TIMEOUT;
            let slack = Slack::connect(config).await.unwrap();
            let ingress = slack.ingress().unwrap();
            // The socket opens when the deliveries are first read.
            let receiving = receive(&gateway, ingress);
            wait_for("the Slack socket", || fake.live() > 0).await;
            let started = Instant::now();
            for n in 0..MESSAGES {
                fake.direct_message(&format!("U{:04}", user(n)), "hello there");
            }
            (started, alive(fake, slack), receiving)
        }
    };
    let deadline = started + Duration::from_secs(120);
    while store.done.load(Ordering::Relaxed) < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{channel}: not all taken in 120 s"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let elapsed = started.elapsed();
    receiving.abort();
    MESSAGES as f64 / elapsed.as_secs_f64()
}

/// A fake and its adapter, kept alive until the measurement ends.
fn alive(fake: impl Send + 'static, adapter: impl Send + 'static) -> Box<dyn Send> {
    Box::new((fake, adapter))
}

/// Polls `check` until it holds; panics after 20 s.
async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn receive(
    gateway: &Gateway,
    ingress: impl ChannelIngress + 'static,
) -> tokio::task::JoinHandle<()> {
    let gateway = gateway.clone();
    tokio::spawn(async move {
        gateway.receive(Box::new(ingress)).await;
    })
}

/// The release binary's RSS (KiB) after two idle seconds: with no channel,
/// and with all three connected to the fakes.
async fn idle_rss() -> (u64, u64) {
    let telegram = telegram::FakeTelegram::start().await;
    let discord = discord::FakeDiscord::start().await;
    let slack = slack::FakeSlack::start().await;
    let channels = [
        ("TELEGRAM_BOT_TOKEN", telegram::TOKEN.to_owned()),
        ("TELEGRAM_API_BASE", telegram.base.clone()),
        ("DISCORD_BOT_TOKEN", discord::TOKEN.to_owned()),
        ("DISCORD_API_BASE", discord.base.clone()),
        ("SLACK_BOT_TOKEN", slack::BOT_TOKEN.to_owned()),
        ("SLACK_APP_TOKEN", slack::APP_TOKEN.to_owned()),
        ("SLACK_API_BASE", slack.base.clone()),
    ];
    let none = process_rss(&[], || true).await;
    let all = process_rss(&channels, || {
        telegram.recorded(|r| !r.offsets.is_empty()) && discord.is_live() && slack.live() > 0
    })
    .await;
    (none, all)
}

async fn process_rss(env: &[(&str, String)], connected: impl Fn() -> bool) -> u64 {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .env("MOLT_STATE_DIR", state.path())
        .env("MOLT_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
    })
    .await
    .unwrap();
    wait_for("the channels to connect", connected).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    kib
}
