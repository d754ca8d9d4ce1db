//! With a provider key set, the agent answers through molt-ai-gateway (here
//! against the protocol-faithful fake Anthropic and OpenAI servers).

mod support;

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;

use support::Gateway;

#[tokio::test]
async fn an_anthropic_key_makes_the_agent_use_the_provider() {
    let fake = fake::FakeProvider::start().await;
    let state = tempfile::tempdir().unwrap();
    let base_url = fake.anthropic_url();
    let gateway = Gateway::start(
        state.path(),
        &[
            ("ANTHROPIC_API_KEY", fake::ANTHROPIC_KEY),
            ("ANTHROPIC_BASE_URL", &base_url),
            ("MOLT_MODEL", "echo"),
        ],
    );
    let (_, body) = gateway.get("/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["model"]["configured"], true);
    assert_eq!(status["model"]["name"], "anthropic/echo");
    assert!(!body.contains(fake::ANTHROPIC_KEY));

    let mut client = gateway.connected().await;
    let events = client.chat("hello provider", "run-1").await;
    let last = events.last().unwrap();
    assert_eq!(last["payload"]["state"], "final");
    assert_eq!(
        last["payload"]["message"]["content"][0]["text"],
        "You said: hello provider"
    );
    let received = fake.state.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].api, "anthropic");
    assert_eq!(received[0].body["model"], "echo");
}

#[tokio::test]
async fn an_openai_key_with_a_failing_primary_falls_back_in_the_agent() {
    let fake = fake::FakeProvider::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("ai-gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
default_route = "assistant"
[[providers]]
name = "openai"
api = "openai"
base_url = "{}"
api_key_env = "FAKE_OPENAI_KEY"
[retry]
max_retry_after = "10ms"
[routes.assistant]
steps = [{{ provider = "openai", model = "rate-limited" }}, {{ provider = "openai", model = "echo" }}]
"#,
            fake.openai_url()
        ),
    )
    .unwrap();
    let gateway = Gateway::start(state.path(), &[("FAKE_OPENAI_KEY", fake::OPENAI_KEY)]);
    let mut client = gateway.connected().await;
    let events = client.chat("fall back please", "run-1").await;
    let last = events.last().unwrap();
    assert_eq!(
        last["payload"]["message"]["content"][0]["text"],
        "You said: fall back please"
    );
    assert_eq!(fake.state.requests_for("rate-limited"), 1);
}
