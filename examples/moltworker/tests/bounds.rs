//! Bounds before trust, tried against the real binary as a stranger would:
//! the status needs the token and tells no secrets, wrong tokens are
//! throttled per address, slow headers and idle connections are cut, the
//! number of connections is capped, and WebSockets waiting to authenticate
//! are few.

mod support;

use std::time::{Duration, Instant};
use support::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "bounds-test-token";

fn start(state: &std::path::Path, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![("MOLTBOT_GATEWAY_TOKEN", TOKEN)];
    env.extend_from_slice(extra);
    let mut gateway = Gateway::start(state, &env);
    gateway.token = TOKEN.to_owned();
    gateway
}

/// Whether the server closed `stream` (a read returns end of file) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn the_status_needs_the_token_and_wrong_tokens_are_throttled() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), &[]);
    let (status, body) = gateway.get("/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert!(health["idleSeconds"].is_u64(), "{body}");
    assert_eq!(gateway.get_with("/api/status", None).await.0, 401);
    assert_eq!(gateway.get("/api/status").await.0, 200);
    for _ in 0..10 {
        let (code, body) = gateway.get_with("/api/status", Some("guess")).await;
        assert_eq!(code, 401, "{body}");
    }
    // Ten wrong guesses in a minute: this address is held off, whatever it sends.
    let (code, body) = gateway.get_with("/api/status", Some("guess")).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(gateway.get("/api/status").await.0, 429);
    let socket =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token={TOKEN}", gateway.address))
            .await;
    match socket {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("expected a 429, got {:?}", other.map(|_| ())),
    }
    assert_eq!(gateway.get("/health").await.0, 200, "health stays public");
}

#[tokio::test]
async fn the_status_names_no_endpoint_bucket_or_path() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("notes.md"), "local state").unwrap();
    // A bucket that cannot be reached: the mirror fails and says so.
    let gateway = start(
        state.path(),
        &[
            ("R2_ACCESS_KEY_ID", "AKIDBOUNDSTEST"),
            ("R2_SECRET_ACCESS_KEY", "bounds-secret-key"),
            ("S3_ENDPOINT", "http://127.0.0.1:9"),
            ("S3_REGION", "us-east-1"),
            ("R2_BUCKET_NAME", "secret-bucket-name"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = gateway.get("/api/status").await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status["storage"]["mirror"]["last_error"].is_string() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no backup failure reported: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("the bucket failed"), "{body}");
    let state_path = state.path().display().to_string();
    for secret in [
        "127.0.0.1:9",
        "secret-bucket-name",
        "AKIDBOUNDSTEST",
        "bounds-secret-key",
        state_path.as_str(),
        TOKEN,
    ] {
        assert!(
            !body.contains(secret),
            "the status shows {secret:?}: {body}"
        );
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_cut_and_connections_are_capped() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(
        state.path(),
        &[
            ("MOLT_MAX_CONNECTIONS", "4"),
            ("MOLT_HEADER_READ_TIMEOUT", "1"),
        ],
    );
    // Headers that never finish are cut after the deadline.
    let mut slow = TcpStream::connect(&gateway.address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut at the deadline, not before"
    );
    // A keep-alive connection left idle after its answer is cut too.
    let mut idle = TcpStream::connect(&gateway.address).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);

    // Four connections hold every place; a fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(&gateway.address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = TcpStream::connect(&gateway.address).await.unwrap();
    assert!(closed_within(&mut fifth, Duration::from_millis(500)).await);
    // Once they are gone, the gateway answers again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gateway.get("/health").await.0, 200);
}

#[tokio::test]
async fn only_a_few_websockets_may_wait_to_authenticate() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), &[]);
    let url = format!("ws://{}/ws", gateway.address);
    // Two waiting sockets per address: a third from the same address is refused.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        waiting.push(socket);
    }
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("expected a 503, got {:?}", other.map(|_| ())),
    }
    // A client with the token on the upgrade takes no waiting place.
    let mut client = gateway.socket(Some(TOKEN), None).await;
    client.connect(None).await;
    // Other addresses still get places (all of 127.0.0.0/8 reaches loopback).
    let elsewhere = tokio::net::TcpSocket::new_v4().unwrap();
    elsewhere.bind("127.0.0.7:0".parse().unwrap()).unwrap();
    let stream = elsewhere
        .connect(gateway.address.parse().unwrap())
        .await
        .unwrap();
    let (other, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .unwrap();
    drop(other);
    // A waiting socket that gives up frees its place.
    drop(waiting.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
}

/// Eleven wrong guesses from `client` (as a proxy forwards it); the last answer's status.
async fn guesses(gateway: &Gateway, client: &str) -> u16 {
    let mut last = 0;
    for _ in 0..11 {
        let headers = [
            ("Authorization", "Bearer guess"),
            ("CF-Connecting-IP", client),
        ];
        last = gateway.http("GET", "/api/status", &headers).await.0;
    }
    last
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_throttled_alone() {
    // Trusted (the test connects from 127.0.0.1): the forwarded address counts.
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), &[("MOLT_TRUSTED_PROXIES", "127.0.0.1/32")]);
    assert_eq!(guesses(&gateway, "203.0.113.5").await, 429);
    let other = [
        ("Authorization", "Bearer guess"),
        ("CF-Connecting-IP", "203.0.113.6"),
    ];
    let status = gateway.http("GET", "/api/status", &other).await.0;
    assert_eq!(status, 401, "another client is not held off");
    // Not trusted: the header is the client's to forge, and is ignored.
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), &[]);
    assert_eq!(guesses(&gateway, "203.0.113.5").await, 429);
    assert_eq!(gateway.http("GET", "/api/status", &other).await.0, 429);
}

#[tokio::test]
async fn a_frame_over_64_kib_before_connect_closes_the_socket_with_1009() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.socket(None, None).await;
    let padding = "x".repeat(70 * 1024);
    let connect = serde_json::json!({ "type": "req", "id": "c", "method": "connect",
        "params": { "minProtocol": 4, "maxProtocol": 4, "padding": padding } });
    client.send_text(&connect.to_string()).await;
    let closed = client.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1009, "preauth payload too large")
    );
    // Just under the limit is read (and refused for its parameters, not its size).
    let mut client = gateway.socket(None, None).await;
    let padding = "x".repeat(60 * 1024);
    let connect = serde_json::json!({ "type": "req", "id": "c", "method": "connect",
        "params": { "minProtocol": 4, "maxProtocol": 4, "padding": padding } });
    client.send_text(&connect.to_string()).await;
    assert_eq!(client.closed().await.code, 1008);
}

#[tokio::test]
async fn a_frame_over_the_limit_after_connect_closes_the_socket_with_1009() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), &[]);
    let mut client = gateway.connected().await;
    let padding = "x".repeat(600 * 1024);
    let request = serde_json::json!({ "type": "req", "id": "big", "method": "health", "params": { "padding": padding } });
    client.send_text(&request.to_string()).await;
    let closed = client.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1009, "payload too large")
    );
}
