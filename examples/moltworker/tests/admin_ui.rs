//! The operator's page in headless Chromium (tests/browser/admin-ui.mjs,
//! Playwright), against the real binary with a bucket on an S3 server that
//! checks SigV4 and Telegram on the strict fake: a device is approved in the
//! page and chats, "Backup now" updates the last backup, and a stranger's
//! pairing code approved in the page lets their next message through.
//!
//! Needs Node.js, tests/browser's npm packages and Chromium (CHROMIUM_PATH or
//! /usr/bin/chromium), which `./scripts/test` installs: run with `--ignored`.

mod support;

#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use std::time::Duration;

const TOKEN: &str = "admin-ui-test-gateway-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, tests/browser's npm packages and Chromium: ./scripts/test runs it"]
async fn the_admin_page_approves_a_device_backs_up_and_approves_a_pairing_code() {
    let s3_root = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(s3_root.path()).await;
    server.bucket("moltbot-data");
    let platform = telegram::FakeTelegram::start().await;
    let state = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = vec![
        ("MOLTBOT_GATEWAY_TOKEN", TOKEN.into()),
        ("R2_ACCESS_KEY_ID", s3::ACCESS_KEY.into()),
        ("R2_SECRET_ACCESS_KEY", s3::SECRET_KEY.into()),
        ("S3_ENDPOINT", server.endpoint()),
        ("S3_REGION", "us-east-1".into()),
        ("TELEGRAM_BOT_TOKEN", telegram::TOKEN.into()),
        ("TELEGRAM_API_BASE", platform.base.clone()),
    ];
    let dir = state.path().to_owned();
    let gateway = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        support::Gateway::start(&dir, &env)
    })
    .await
    .unwrap();

    // A stranger writes on Telegram and is given a pairing code (the default DM policy).
    let sent = || {
        platform.recorded(|r| {
            (r.sent.iter())
                .map(|m| m["visible_text"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
    };
    platform.private_message(77, 1, "hello?");
    support::until("the stranger gets a pairing code", || sent().len() == 1).await;
    assert!(sent()[0].contains("pairing code"), "{:?}", sent());

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/browser/admin-ui.mjs"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let run = tokio::process::Command::new("node")
        .arg(script)
        .env("BASE_URL", format!("http://{}/", gateway.address))
        .env("GATEWAY_TOKEN", TOKEN)
        .env("CHROMIUM_PATH", chromium)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser steps finish within 3 minutes")
        .expect("node runs");
    assert!(status.success(), "the browser steps failed: {status}");

    // Approved in the page: the stranger's next message is answered.
    platform.private_message(77, 2, "may I come in now?");
    support::until("the approved sender is answered", || sent().len() == 2).await;
    assert!(sent()[1].contains("may I come in now?"), "{:?}", sent());

    // "Backup now" really wrote a snapshot to the bucket.
    let (_, body) = gateway.get_with("/api/admin/storage", Some(TOKEN)).await;
    let storage: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(storage["lastSync"].is_string(), "{storage}");
    let manifests = std::fs::read_dir(s3_root.path().join("moltbot-data"))
        .unwrap()
        .count();
    assert!(manifests > 0, "the bucket holds the backup");
}
