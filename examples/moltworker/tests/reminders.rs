//! Reminders through the real gateway, set with the `cron` tool (the
//! offline echo model calls the tool it is told to): one fires once across a
//! SIGKILL and a restart; one due while the gateway was stopped fires at
//! start and says it is late; a cancelled one never fires; a restore on
//! an empty machine brings the jobs back.

mod support;

#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{Client, Gateway};

/// The operator's conversation, as (role, text).
async fn reminders_seen(client: &mut Client, name: &str) -> usize {
    let prefix = format!("[Reminder \"{name}\"");
    (client.history().await.iter())
        .filter(|(role, text)| role == "user" && text.starts_with(&prefix))
        .count()
}

/// Waits up to `limit` until the reminder `name` reached the conversation.
async fn until_reminded(client: &mut Client, name: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while reminders_seen(client, name).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the reminder {name:?} did not fire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reply(events: &[serde_json::Value]) -> String {
    events.last().unwrap()["payload"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_fires_once_across_a_sigkill_and_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    let add = json!({ "action": "add", "name": "tea", "message": "the tea is ready",
                      "schedule": { "kind": "at", "at": "3s" } });
    let added = reply(&client.chat(&format!("/tool cron {add}"), "r1").await);
    assert!(added.contains("\"added\""), "{added}");
    // SIGKILL before it is due; the job is in the state.
    drop(client);
    drop(gateway);
    let restarted = Gateway::start(state.path(), &[]);
    let mut client = restarted.connected().await;
    until_reminded(&mut client, "tea", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reminders_seen(&mut client, "tea").await, 1, "fired once");
    let history = client.history().await;
    assert!(
        history
            .iter()
            .any(|(role, text)| role == "assistant" && text.contains("the tea is ready")),
        "answered in the conversation it was set in: {history:?}"
    );
    let listed = reply(&client.chat(r#"/tool cron {"action": "list"}"#, "r2").await);
    assert!(
        listed.contains(r#""jobs":[]"#),
        "a one-time job is gone: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_due_while_stopped_fires_at_start_and_says_it_is_late() {
    let state = tempfile::tempdir().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let due = now_ms - 10 * 60_000;
    let job = json!({
        "id": "late1", "name": "stretch", "message": "time to stretch",
        "schedule": { "kind": "at", "at": "2026-01-01T00:00:00Z" },
        "route": { "channel": "webchat", "account": "control-ui", "chatId": "control-ui",
                   "chatKind": "direct", "sender": { "id": "operator", "name": "Operator" } },
        "createdAt": due - 60_000, "nextAt": due,
    });
    std::fs::create_dir_all(state.path().join("cron")).unwrap();
    std::fs::write(state.path().join("cron/late1.json"), job.to_string()).unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    until_reminded(&mut client, "stretch", Duration::from_secs(20)).await;
    let history = client.history().await;
    let fired = history
        .iter()
        .find(|(_, text)| text.starts_with("[Reminder \"stretch\""))
        .unwrap();
    assert!(fired.1.contains("late by 10 minutes"), "{}", fired.1);
    assert!(!state.path().join("cron/late1.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_reminder_never_fires() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    let add = json!({ "action": "add", "name": "call", "message": "call the bank",
                      "schedule": { "kind": "at", "at": "2s" } });
    let added = reply(&client.chat(&format!("/tool cron {add}"), "r1").await);
    let start = added.find("\"jobId\":\"").expect("an id") + 9;
    let id = &added[start..start + added[start..].find('"').unwrap()];
    let remove = json!({ "action": "remove", "jobId": id });
    let removed = reply(&client.chat(&format!("/tool cron {remove}"), "r2").await);
    assert!(removed.contains("\"removed\""), "{removed}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(reminders_seen(&mut client, "call").await, 0);
    // Bad schedules are refused with the reason.
    let bad = json!({ "action": "add", "name": "x", "message": "y",
                      "schedule": { "kind": "cron", "expr": "0 9 * * *", "tz": "Mars/Olympus" } });
    let refused = reply(&client.chat(&format!("/tool cron {bad}"), "r3").await);
    assert!(refused.contains("not a time zone"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_on_an_empty_machine_brings_the_jobs_back() {
    let s3_root = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(s3_root.path()).await;
    server.bucket("moltbot-data");
    let endpoint = server.endpoint();
    let env = [
        ("R2_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("R2_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_REGION", "us-east-1"),
        ("R2_BUCKET_NAME", "moltbot-data"),
    ];
    let first = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(first.path(), &env);
    let mut client = gateway.connected().await;
    let add = json!({ "action": "add", "name": "passport", "message": "renew the passport",
                      "schedule": { "kind": "cron", "expr": "0 9 1 3 *", "tz": "Europe/Lisbon" } });
    let added = reply(&client.chat(&format!("/tool cron {add}"), "r1").await);
    assert!(added.contains("\"added\""), "{added}");
    drop(client);
    // A graceful stop makes the last backup.
    gateway.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let second = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(second.path(), &env);
    let mut client = gateway.connected().await;
    let listed = reply(&client.chat(r#"/tool cron {"action": "list"}"#, "r2").await);
    assert!(listed.contains("renew the passport"), "{listed}");
}
