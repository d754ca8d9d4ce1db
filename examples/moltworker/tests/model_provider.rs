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

/// A guard against any code path logging the key (the request, the config, an error).
#[tokio::test]
async fn the_provider_key_stays_out_of_the_logs_even_at_trace_level() {
    let fake = fake::FakeProvider::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .env("MOLT_STATE_DIR", state.path())
        .env("MOLT_BIND", "127.0.0.1:0")
        .env(
            "RUST_LOG",
            "trace,hyper=trace,hyper_util=trace,reqwest=trace,h2=trace",
        )
        .env("ANTHROPIC_API_KEY", fake::ANTHROPIC_KEY)
        .env("ANTHROPIC_BASE_URL", fake.anthropic_url())
        .env("MOLT_MODEL", "echo")
        .env_remove("MOLTBOT_GATEWAY_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().strip_prefix("Control UI: http://").unwrap();
    let (address, query) = url.split_once('/').unwrap();
    let token = query.trim_start_matches("?token=").to_owned();
    let gateway = Gateway {
        child,
        address: address.to_owned(),
        token,
    };
    let mut client = gateway.connected().await;
    let events = client.chat("hello provider", "run-1").await;
    assert_eq!(
        events.last().unwrap()["payload"]["message"]["content"][0]["text"],
        "You said: hello provider"
    );
    drop(client);
    gateway.signal("-TERM");
    let mut gateway = gateway;
    let _ = gateway.child.wait();
    let mut logs = String::new();
    std::io::Read::read_to_string(gateway.child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    assert!(
        logs.contains("molt-ai-gateway"),
        "trace logs were captured: {logs}"
    );
    let leaks: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(fake::ANTHROPIC_KEY))
        .collect();
    assert!(
        leaks.is_empty(),
        "the provider key appeared in the logs:\n{}",
        leaks.join("\n")
    );
}
