//! Chat platforms reach a sleeping gateway through the Worker: Telegram in
//! webhook mode (WORKER_URL set) against the strict Telegram fake, which
//! delivers to the Worker as Telegram does (retrying until a 2xx), and Slack
//! over the Events API against the Slack fake, which verifies the Request
//! URL, signs each event and retries as Slack does (3 s, then at once, a
//! minute and five minutes later). The Worker
//! runs in workerd (worker/tests/serve.mjs) with the real gateway binary as
//! its container, state on an S3 server that checks SigV4.
//!
//! Needs Node.js and the worker's npm packages and wasm build, which
//! `./scripts/test` provides: run with `--ignored`.

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;
#[path = "../../../molt-channels/tests/support/slack.rs"]
mod slack;
#[path = "support/stand_ins.rs"]
mod stand_ins;
mod support;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The Worker in workerd, served by worker/tests/serve.mjs until dropped.
struct Edge {
    url: String,
    node: tokio::process::Child,
}

impl Drop for Edge {
    /// serve.mjs stops workerd and the gateways it started when it ends on
    /// SIGTERM (a SIGKILL, `kill_on_drop`'s, would leave them running).
    fn drop(&mut self) {
        let Some(pid) = self.node.id() else { return };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.node.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Edge {
    async fn start(vars: Value, envs: &[(&str, String)], boot_delay_ms: u64) -> Self {
        let mut node = tokio::process::Command::new("node");
        node.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/worker"))
            .arg("tests/serve.mjs")
            .env("MOLTWORKER_BIN", env!("CARGO_BIN_EXE_moltworker"))
            .env("EDGE_VARS", vars.to_string())
            .env("BOOT_DELAY_MS", boot_delay_ms.to_string())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = node.spawn().expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the Worker serves within a minute")
            .unwrap()
            .expect("serve.mjs prints its URL");
        let url = serde_json::from_str::<Value>(&line).unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned();
        // The Worker's log goes on to stdout: keep reading so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { url, node: child }
    }

    /// Waits (up to 30 s) until the default gateway is in `state`.
    async fn until_gateway(&self, state: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.gateway().await != state {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway is {state}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn gateway(&self) -> String {
        let health: Value = reqwest::get(format!("{}/health", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["gateway"].as_str().unwrap_or_default().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and the worker's npm packages and wasm build: ./scripts/test runs it"]
async fn telegram_updates_reach_a_sleeping_gateway_through_the_worker() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stand_ins = stand_ins::StandIns::start().await;
    let platform = telegram::FakeTelegram::start().await;
    let vars = json!({
        "TELEGRAM_BOT_TOKEN": telegram::TOKEN,
        "TELEGRAM_API_BASE": platform.base,
        "TELEGRAM_DM_POLICY": "open",
        "SANDBOX_SLEEP_AFTER": "2s",
    });
    let edge = Edge::start(vars, &stand_ins.env(), 1500).await;
    let hook = format!("{}/hooks/telegram", edge.url);

    // The first visit starts the gateway, which points Telegram at the Worker.
    let _ = reqwest::get(format!("{}/", edge.url)).await.unwrap();
    support::until("the webhook is set at the Worker", || {
        platform.recorded(|r| r.webhook.as_ref().map(|(url, _)| url.clone())) == Some(hook.clone())
    })
    .await;

    let sent = || {
        platform.recorded(|r| {
            (r.sent.iter())
                .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
    };
    platform.private_message(77, 1, "hello through the webhook");
    support::until("the update is answered", || sent().len() == 1).await;
    assert!(
        sent()[0].contains("hello through the webhook"),
        "{:?}",
        sent()
    );

    // Idle for 2 s, the gateway sleeps. A delivery without the secret is
    // refused at the edge and wakes nothing.
    edge.until_gateway("not_running").await;
    let forged = reqwest::Client::new()
        .post(&hook)
        .header("x-telegram-bot-api-secret-token", "not-the-secret")
        .json(&json!({ "update_id": 1, "message": { "message_id": 1, "date": 0, "chat": { "id": 5, "type": "private" }, "from": { "id": 5, "is_bot": false, "first_name": "Eve" }, "text": "let me in" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    stays_asleep(&edge).await;

    // The next update wakes it (a 1.5 s boot) and is answered, with no
    // delivery refused on the way.
    let id = platform.private_message(77, 2, "are you awake?");
    support::until_for(
        "the update that woke it is answered",
        Duration::from_secs(60),
        || sent().len() == 2,
    )
    .await;
    assert!(sent()[1].contains("are you awake?"), "{:?}", sent());
    let answers: Vec<u16> = platform.recorded(|r| {
        (r.webhook_answers.iter())
            .filter(|(update, _)| *update == id)
            .map(|(_, status)| *status)
            .collect()
    });
    assert_eq!(
        answers,
        vec![200],
        "delivered once, acknowledged once in the inbox"
    );
}

/// How Slack's POSTs of one event went: retry number, and the status
/// answered or why there was none.
type Attempts = Vec<(u64, Result<u16, &'static str>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and the worker's npm packages and wasm build: ./scripts/test runs it"]
async fn slack_events_reach_a_sleeping_gateway_through_the_worker() {
    // A 1.5 s boot: the event that wakes the gateway is answered in time.
    assert_eq!(slack_wakes_a_sleeping_gateway(1500).await, [(0, Ok(200))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and the worker's npm packages and wasm build: ./scripts/test runs it"]
async fn a_wake_slower_than_slacks_3_s_is_answered_at_its_first_retry() {
    // A 4 s boot: Slack gives up on the first POST and retries at once; the
    // retry reaches the gateway the first one woke, and is answered.
    let attempts = slack_wakes_a_sleeping_gateway(4000).await;
    assert_eq!(attempts, [(0, Err("http_timeout")), (1, Ok(200))]);
}

/// Slack over the Events API through the Worker, to a gateway whose
/// container takes `boot_delay_ms` to boot: the Request URL is verified, a
/// forged request refused, an event answered; then the gateway sleeps, and
/// an event wakes it and is answered once. Returns how Slack's POSTs of the
/// waking event went.
async fn slack_wakes_a_sleeping_gateway(boot_delay_ms: u64) -> Attempts {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stand_ins = stand_ins::StandIns::start().await;
    let platform = slack::FakeSlack::start().await;
    let vars = json!({
        "SLACK_BOT_TOKEN": slack::BOT_TOKEN,
        "SLACK_SIGNING_SECRET": slack::SIGNING_SECRET,
        "SLACK_API_BASE": platform.base,
        "SLACK_DM_POLICY": "open",
        "SANDBOX_SLEEP_AFTER": "2s",
    });
    let edge = Edge::start(vars, &stand_ins.env(), boot_delay_ms).await;
    let hook = format!("{}/hooks/slack", edge.url);

    // The operator opens the deployment, and once it is up saves the Request
    // URL in the app's settings: Slack's signed url_verification passes
    // through the Worker.
    let _ = reqwest::get(format!("{}/", edge.url)).await.unwrap();
    edge.until_gateway("running").await;
    platform.set_request_url(&hook).await.unwrap();

    let posted = || {
        platform.recorded(|r| {
            (r.posted.iter())
                .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
    };
    let attempts = |event: &str| {
        platform.recorded(|r| {
            (r.events_attempts.iter())
                .filter(|a| a.event_id == event)
                .map(|a| (a.retry_num, a.outcome))
                .collect::<Vec<_>>()
        })
    };
    let event = platform.direct_message("U42", "hello through the Events API");
    support::until("the event is answered", || posted().len() == 1).await;
    assert!(
        posted()[0].contains("hello through the Events API"),
        "{:?}",
        posted()
    );
    assert_eq!(attempts(&event), [(0, Ok(200))]);

    // Idle for 2 s, the gateway sleeps. Requests Slack did not sign are
    // refused at the edge and wake nothing.
    edge.until_gateway("not_running").await;
    let body = json!({ "type": "event_callback", "event_id": "Ev0FORGED", "event": {
        "type": "message", "channel": "DU9", "channel_type": "im", "user": "U9",
        "text": "let me in", "ts": "1.1" } })
    .to_string();
    let now = slack::unix_now();
    for (secret, timestamp) in [("not-the-secret", now), (slack::SIGNING_SECRET, now - 310)] {
        let forged = reqwest::Client::new()
            .post(&hook)
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", slack::sign(secret, timestamp, &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401);
    }
    let unsigned = reqwest::Client::new()
        .post(&hook)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let elsewhere = reqwest::Client::new()
        .post(format!("{}/hooks/discord", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    stays_asleep(&edge).await;

    // The next event wakes it and is answered once, within Slack's 3 s or
    // at its first retry.
    let event = platform.direct_message("U42", "are you awake?");
    support::until_for(
        "the event that woke it is answered",
        Duration::from_secs(60),
        || posted().len() == 2,
    )
    .await;
    assert!(posted()[1].contains("are you awake?"), "{:?}", posted());
    support::until("Slack got its 200", || {
        attempts(&event)
            .last()
            .is_some_and(|(_, outcome)| *outcome == Ok(200))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(posted().len(), 2, "answered once");
    attempts(&event)
}

/// The gateway is still asleep a second later.
async fn stays_asleep(edge: &Edge) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(edge.gateway().await, "not_running", "nothing woke it");
}
