//! The `molt-ai-proxy` binary: refusing to start without a key, serving, and
//! finishing open streams on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::fake::FakeProvider;

struct Proxy {
    child: Child,
    address: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(config: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_molt-ai-proxy"));
    command
        .env("MOLT_AI_CONFIG", config)
        .env("MOLT_AI_BIND", "127.0.0.1:0")
        .env("MOLT_LOG", "warn")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn start(config: &std::path::Path) -> Proxy {
    let mut child = command(config)
        .env("MOLT_AI_GATEWAY_KEY", support::GATEWAY_KEY)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    Proxy { child, address }
}

fn write_config(fake: &FakeProvider) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        support::gateway_toml(fake, ""),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn it_refuses_to_start_without_a_gateway_key() {
    let fake = FakeProvider::start().await;
    let dir = write_config(&fake);
    let output = command(&dir.path().join("gateway.toml"))
        .env_remove("MOLT_AI_GATEWAY_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MOLT_AI_GATEWAY_KEY"), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_an_open_stream_finish_then_exits() {
    let fake = FakeProvider::start().await;
    let dir = write_config(&fake);
    let mut proxy = start(&dir.path().join("gateway.toml"));
    let client =
        molt_ai_gateway::provider::http_client(Duration::from_secs(5), Duration::from_secs(30))
            .unwrap();
    // A stream that pauses for two seconds halfway.
    let body = serde_json::json!({ "model": "openai/stall-mid-stream", "messages": [{ "role": "user", "content": "one two three" }], "stream": true });
    let response = client
        .post(format!("http://{}/v1/chat/completions", proxy.address))
        .bearer_auth(support::GATEWAY_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let text = response.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream finished: {text}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = proxy.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
