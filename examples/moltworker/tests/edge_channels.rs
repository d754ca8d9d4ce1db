//! Chat platforms reach a sleeping gateway through the Worker: Telegram in
//! webhook mode (WORKER_URL set) against the strict Telegram fake, which
//! delivers to the Worker as Telegram does (retrying until a 2xx). The Worker
//! runs in workerd (worker/tests/serve.mjs) with the real gateway binary as
//! its container, state on an S3 server that checks SigV4.
//!
//! Needs Node.js and the worker's npm packages and wasm build, which
//! `./scripts/test` provides: run with `--ignored`.

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;
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
    _node: tokio::process::Child,
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
        Self { url, _node: child }
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

    // A wrong secret is refused, at the gateway, through the Worker.
    let forged = reqwest::Client::new()
        .post(&hook)
        .header("x-telegram-bot-api-secret-token", "not-the-secret")
        .json(&json!({ "update_id": 1, "message": { "message_id": 1, "date": 0, "chat": { "id": 5, "type": "private" }, "from": { "id": 5, "is_bot": false, "first_name": "Eve" }, "text": "let me in" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

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

    // Idle for 2 s, the gateway sleeps; the next update wakes it (a 1.5 s boot)
    // and is answered, with no delivery refused on the way.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while edge.gateway().await != "not_running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle gateway sleeps"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
