//! The real binary: chat over the WebSocket, SIGKILL, restart, history intact;
//! graceful shutdown on SIGTERM; health and status.

mod support;

use std::time::Duration;
use support::*;

#[tokio::test]
async fn chat_streams_and_history_survives_sigkill() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    assert_eq!(
        gateway.token.len(),
        64,
        "a generated token is printed in the URL"
    );
    let mut client = gateway.connected().await;

    let events = client.chat("hello there, gateway", "run-1").await;
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["payload"]["state"] == "delta")
        .map(|e| {
            e["payload"]["message"]["content"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(deltas.len() >= 2, "the reply streams in pieces: {deltas:?}");
    assert!(
        deltas.windows(2).all(|w| w[1].starts_with(w[0])),
        "deltas are cumulative: {deltas:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["payload"]["state"], "final");
    assert_eq!(
        last["payload"]["message"]["content"][0]["text"],
        "echo: hello there, gateway"
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    let tool_events = client
        .chat(
            r#"/tool write {"path": "notes/today.md", "content": "one two three four"}"#,
            "run-2",
        )
        .await;
    assert_eq!(
        tool_events.last().unwrap()["payload"]["message"]["content"][0]["text"],
        "echo: the tool returned wrote 18 bytes to notes/today.md"
    );

    // The same idempotency key is not answered twice.
    let (again, _) = client
        .request(
            "chat.send",
            serde_json::json!({ "sessionKey": "main", "message": "x", "idempotencyKey": "run-1" }),
        )
        .await;
    assert_eq!(again["payload"]["status"], "in_flight");

    let before = client.history().await;
    assert_eq!(
        before.first().unwrap(),
        &("user".to_owned(), "hello there, gateway".to_owned())
    );
    assert_eq!(before.len(), 6, "{before:?}");

    // SIGKILL: no chance to flush anything.
    drop(client);
    let token = gateway.token.clone();
    drop(gateway);

    let restarted = Gateway::start(state.path(), &[]);
    assert_eq!(
        restarted.token, token,
        "the generated token is reused from the state directory"
    );
    let mut client = restarted.connected().await;
    assert_eq!(client.history().await, before);
    // What the tool wrote is in the workspace, and so is the seeded default.
    let written = std::fs::read_to_string(state.path().join("workspace/notes/today.md")).unwrap();
    assert_eq!(written, "one two three four");
    assert!(state.path().join("workspace/AGENTS.md").exists());
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let state = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    client.chat("before shutdown", "k1").await;
    gateway.signal("-TERM");
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = gateway.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn health_status_and_control_ui() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(
        state.path(),
        &[("MOLTBOT_GATEWAY_TOKEN", "configured-token")],
    );
    assert_eq!(gateway.token, "", "a configured token is never printed");
    let (status, body) = gateway.get("/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert!(health["idleSeconds"].is_u64(), "{body}");
    assert_eq!(
        gateway.get("/api/status").await.0,
        401,
        "the status needs the token"
    );
    let (code, body) = gateway
        .get_with("/api/status", Some("configured-token"))
        .await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["model"]["configured"], false);
    assert_eq!(status["model"]["name"], "echo (offline)");
    assert!(
        status["version"].is_string()
            && status["uptimeSeconds"].is_u64()
            && status["sessions"]["busy"].is_u64()
    );
    assert!(!body.contains("configured-token"));
    let (code, page) = gateway.get("/").await;
    assert_eq!(code, 200);
    assert!(page.contains("<html") && page.contains("token-input"));
    assert!(
        !state.path().join("gateway-token").exists(),
        "a configured token is not written to disk"
    );
}

#[tokio::test]
async fn invalid_configuration_names_the_variable() {
    let state = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .env("MOLT_STATE_DIR", state.path())
        .env("TELEGRAM_DM_POLICY", "sometimes")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TELEGRAM_DM_POLICY"), "{stderr}");
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let state = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .env("MOLT_STATE_DIR", state.path())
        .env("MOLT_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "trace,tungstenite=trace")
        .env_remove("MOLTBOT_GATEWAY_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("Control UI: http://")
        .unwrap()
        .to_owned();
    let (address, query) = url.split_once('/').unwrap();
    let token = query.trim_start_matches("?token=").to_owned();
    let gateway = Gateway {
        child,
        address: address.to_owned(),
        token: token.clone(),
    };
    // Exercise the paths that log: a good connection with a chat, a refused one.
    let mut client = gateway.socket(Some(&token), None).await;
    assert_eq!(client.connect(Some(&token)).await["ok"], true);
    client.chat("hello", "k1").await;
    let mut by_header = gateway.socket(None, Some(&token)).await;
    assert_eq!(by_header.connect(None).await["ok"], true);
    let mut refused = gateway.socket(Some("wrong"), None).await;
    refused.connect(None).await;
    drop((client, by_header, refused));
    gateway.signal("-TERM");
    let mut gateway = gateway;
    let mut logs = String::new();
    std::io::Read::read_to_string(gateway.child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    assert!(
        logs.contains("moltworker is serving"),
        "trace logs were captured: {logs}"
    );
    let leaks: Vec<String> = logs
        .lines()
        .filter(|l| l.contains(&token))
        .map(|l| l.replace(&token, "<TOKEN>"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the token appeared in the logs:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test]
async fn only_requests_served_keep_the_gateway_awake() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[("MOLTBOT_GATEWAY_TOKEN", "awake-token")]);
    let idle = || async {
        let (_, body) = gateway.get("/health").await;
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        health["idleSeconds"].as_u64().unwrap()
    };
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(idle().await >= 2, "liveness probes do not count");
    // Refusals do not count: a wrong path, a webhook not in webhook mode, no token.
    assert_eq!(gateway.get("/nope").await.0, 404);
    assert_eq!(gateway.get("/hooks/telegram").await.0, 405);
    assert_eq!(gateway.get_with("/api/status", None).await.0, 401);
    assert!(idle().await >= 2, "refused requests do not count");
    // A request served does.
    assert_eq!(gateway.get("/").await.0, 200);
    assert_eq!(idle().await, 0);
}
