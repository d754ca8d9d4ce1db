//! `POST /api/admin/gateway/restart` on the real binary with Telegram (the
//! strict fake of molt-channels' tests): the channel reconnects, a message
//! sent around the restart is answered once, and connected clients stay.

mod support;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reconnects_the_channels_and_answers_each_message_once() {
    let platform = telegram::FakeTelegram::start().await;
    let state = tempfile::tempdir().unwrap();
    let api_base = platform.base.clone();
    let dir = state.path().to_owned();
    let gateway = tokio::task::spawn_blocking(move || {
        support::Gateway::start(
            &dir,
            &[
                ("TELEGRAM_BOT_TOKEN", telegram::TOKEN),
                ("TELEGRAM_API_BASE", &api_base),
                ("TELEGRAM_DM_POLICY", "open"),
            ],
        )
    })
    .await
    .unwrap();
    let replies = || platform.recorded(|r| r.sent.len());
    platform.private_message(77, 1, "before");
    support::until("the first message is answered", || replies() == 1).await;

    let (status, body) = gateway.get("/api/status").await;
    let status_doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (status_doc["ok"].as_bool(), status_doc["status"].as_str()),
        (Some(true), Some("running"))
    );
    assert_eq!(
        status_doc["channels"]["telegram"]["connected"], true,
        "{body}"
    );
    assert!(status_doc["processId"].as_u64().is_some());

    let mut client = gateway.connected().await;
    let polls_before = platform.recorded(|r| r.poll_generation);
    let bearer = format!("Bearer {}", gateway.token);
    let (code, body) = gateway
        .http(
            "POST",
            "/api/admin/gateway/restart",
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let restarted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(restarted["success"], true);
    assert_eq!(restarted["channels"], json!(["telegram"]));
    assert!(restarted["message"].as_str().unwrap().contains("telegram"));

    // The channel polls again, and a new message is answered, once.
    platform.private_message(77, 2, "after");
    support::until("the second message is answered", || replies() == 2).await;
    assert!(platform.recorded(|r| r.poll_generation) > polls_before);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replies(), 2, "nothing answered twice");
    // The Control UI's connection was not dropped.
    let (health, _) = client.request("health", json!({})).await;
    assert_eq!(health["ok"], true);

    // Without the token, no restart.
    let (code, _) = gateway
        .http("POST", "/api/admin/gateway/restart", &[])
        .await;
    assert_eq!(code, 401);
}

/// A platform that quotes the bot token in its error (a proxy in front of
/// Telegram may): the token reaches neither the log nor the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_quoted_in_a_platform_error_is_never_shown() {
    let platform = telegram::FakeTelegram::start().await;
    let quoted = format!("Unauthorized: no bot {} here", telegram::TOKEN);
    platform.fail_next("getMe", 401, &quoted, serde_json::Value::Null);
    let state = tempfile::tempdir().unwrap();
    let log_path = state.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (api_base, dir) = (platform.base.clone(), state.path().join("state"));
    let gateway = tokio::task::spawn_blocking(move || {
        support::Gateway::start_logging(
            &dir,
            &[
                ("TELEGRAM_BOT_TOKEN", telegram::TOKEN),
                ("TELEGRAM_API_BASE", &api_base),
                ("RUST_LOG", "info"),
            ],
            log,
        )
    })
    .await
    .unwrap();
    let (_, body) = gateway.get("/api/status").await;
    let status: Value = serde_json::from_str(&body).unwrap();
    let error = status["channels"]["telegram"]["lastError"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("no bot [redacted] here"), "{body}");
    assert!(!body.contains(telegram::TOKEN));
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("[redacted]"),
        "the failure is logged: {logged}"
    );
    assert!(!logged.contains(telegram::TOKEN), "{logged}");
}
