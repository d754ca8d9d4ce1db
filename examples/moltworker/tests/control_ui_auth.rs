//! Control UI WebSocket authentication and malformed frames, against the real binary.

mod support;

use serde_json::json;
use support::*;

const MISMATCH: &str = "unauthorized: gateway token mismatch";
const MISSING: &str = "unauthorized: gateway token missing";

#[tokio::test]
async fn token_is_required_and_checked_everywhere() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[("MOLTBOT_GATEWAY_TOKEN", "right-token")]);

    // Missing: no token anywhere.
    let mut client = gateway.socket(None, None).await;
    let response = client.connect(None).await;
    assert_eq!(
        (
            response["ok"].as_bool(),
            response["error"]["details"]["code"].as_str()
        ),
        (Some(false), Some("AUTH_TOKEN_MISSING"))
    );
    let closed = client.closed().await;
    assert_eq!(closed.code, 1008);
    assert!(closed.reason.starts_with(MISSING), "{closed:?}");

    // Wrong token in the connect frame.
    let mut client = gateway.socket(None, None).await;
    assert_eq!(
        client.connect(Some("wrong-token")).await["error"]["details"]["code"],
        "AUTH_TOKEN_MISMATCH"
    );
    assert!(client.closed().await.reason.starts_with(MISMATCH));

    // Wrong token in the query, even with the right one in the frame.
    let mut client = gateway.socket(Some("wrong-token"), None).await;
    assert_eq!(client.connect(Some("right-token")).await["ok"], false);
    assert!(client.closed().await.reason.starts_with(MISMATCH));

    // Wrong token in the header.
    let mut client = gateway.socket(None, Some("right-tokeN")).await;
    assert_eq!(client.connect(None).await["ok"], false);
    assert_eq!(client.closed().await.code, 1008);

    // The right token in the query, in the header, or in the frame.
    for (query, header, frame) in [
        (Some("right-token"), None, None),
        (None, Some("right-token"), None),
        (None, None, Some("right-token")),
    ] {
        let mut client = gateway.socket(query, header).await;
        let hello = client.connect(frame).await;
        assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
        assert_eq!(
            hello["payload"]["snapshot"]["sessionDefaults"]["mainSessionKey"],
            "main"
        );
        let (health, _) = client.request("health", json!({})).await;
        assert_eq!(health["ok"], true);
    }
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays_open() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);

    // Before connect, as OpenClaw's gateway: garbage closes the socket...
    let mut client = gateway.socket(None, None).await;
    client.send_text("{not json").await;
    let closed = client.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "invalid request frame")
    );
    // ...and a first request that is not connect is answered, then closed.
    let mut client = gateway.socket(None, None).await;
    let (early, _) = client.request("chat.history", json!({})).await;
    assert_eq!(
        early["error"]["message"],
        "invalid handshake: first request must be connect"
    );
    assert_eq!(client.closed().await.code, 1008);
    let mut client = gateway.socket(None, None).await;
    assert_eq!(client.connect(Some(&gateway.token)).await["ok"], true);

    // After connect: each bad frame gets an error response...
    for bad in [
        "[]",
        "42",
        r#"{"type":"req","method":"health"}"#,
        r#"{"type":"res","id":"1"}"#,
        r#"{"type":"req","id":"x","method":7}"#,
    ] {
        client.send_text(bad).await;
        let frame = client
            .next_response()
            .await
            .expect("an error response, not a close");
        assert_eq!(frame["ok"], false, "{bad} -> {frame}");
    }
    let (unknown, _) = client.request("no.such.method", json!({})).await;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown method")
    );
    let (missing, _) = client
        .request(
            "chat.send",
            json!({ "sessionKey": "main", "idempotencyKey": "k" }),
        )
        .await;
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid chat.send params: missing field `message`"),
        "{missing}"
    );
    let (empty, _) = client
        .request(
            "chat.send",
            json!({ "message": "  ", "idempotencyKey": "k" }),
        )
        .await;
    assert_eq!(empty["ok"], false);
    let (other, _) = client
        .request(
            "chat.send",
            json!({ "sessionKey": "elsewhere", "message": "hi", "idempotencyKey": "k" }),
        )
        .await;
    assert!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown sessionKey")
    );

    // ...and the connection still works.
    let events = client.chat("still here?", "k2").await;
    assert_eq!(
        events.last().unwrap()["payload"]["message"]["content"][0]["text"],
        "echo: still here?"
    );
}
