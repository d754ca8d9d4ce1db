//! The client's `cancel {id}` on the real binary, with a provider that takes
//! its time (the strict Anthropic fake, model `slow-first-token`): a
//! cancelled `agent` request is answered `request cancelled` and its run
//! stops; a cancel for a request already answered changes nothing; a
//! malformed cancel gets an error and the connection goes on.

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_agent_request_is_answered_and_its_run_stops() {
    let provider = fake::FakeProvider::start().await;
    *provider.state.first_token_delay.lock().unwrap() = Duration::from_secs(30);
    let state = tempfile::tempdir().unwrap();
    let base_url = provider.anthropic_url();
    let gateway = tokio::task::spawn_blocking(move || {
        support::Gateway::start(
            state.path(),
            &[
                ("ANTHROPIC_API_KEY", fake::ANTHROPIC_KEY),
                ("ANTHROPIC_BASE_URL", &base_url),
                ("MOLT_MODEL", "slow-first-token"),
            ],
        )
    })
    .await
    .unwrap();
    let mut client = gateway.connected().await;

    let (accepted, _) = client
        .request(
            "agent",
            json!({ "message": "take your time", "idempotencyKey": "run-1" }),
        )
        .await;
    assert_eq!(accepted["payload"]["status"], "accepted", "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    client
        .send_text(&json!({ "type": "cancel", "id": id }).to_string())
        .await;
    // The request's second answer is the cancellation; the run ends soon after.
    let mut answered = None;
    let mut ended = false;
    while answered.is_none() || !ended {
        let frame: Value = client.next_frame().await.expect("frames before close");
        if frame["type"] == "res" && frame["id"] == id.as_str() {
            answered = Some(frame);
        } else if frame["event"] == "chat"
            && frame["payload"]["runId"] == "run-1"
            && frame["payload"]["state"] != "delta"
        {
            ended = true;
        }
    }
    let answered = answered.unwrap();
    assert_eq!(answered["ok"], false);
    assert_eq!(answered["error"]["message"], "request cancelled");
    assert_eq!(answered["error"]["details"]["code"], "CANCELLED");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run stopped without waiting for the provider"
    );

    // A cancel for an answered request changes nothing; a malformed one is an error.
    client
        .send_text(&json!({ "type": "cancel", "id": id }).to_string())
        .await;
    client
        .send_text(&json!({ "type": "cancel", "id": "x", "extra": 1 }).to_string())
        .await;
    let error = client.next_response().await.unwrap();
    assert_eq!(error["id"], "x");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid cancel frame"),
        "{error}"
    );
    let (health, _) = client.request("health", json!({})).await;
    assert_eq!(health["ok"], true);
}
