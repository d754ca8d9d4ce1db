//! The gateway binary, driven over OpenClaw's protocol: sessions, models,
//! channels, config, presence, session messages and the shutdown event.

mod support;

use serde_json::{Value, json};
use support::{Client, Gateway};

/// Frames until one matches `wanted` (events that do not are skipped).
async fn wait_for(client: &mut Client, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = client.next_frame().await.expect("a frame before close");
        if wanted(&frame) {
            return frame;
        }
    }
}

fn is_event(name: &'static str) -> impl Fn(&Value) -> bool {
    move |frame| frame["type"] == "event" && frame["event"] == name
}

/// A connection as the owner (gateway token, no device) with `scopes`.
async fn connect_with(gateway: &Gateway, scopes: &[&str]) -> (Client, Value) {
    let mut client = gateway.socket(None, None).await;
    let params = json!({ "minProtocol": 4, "maxProtocol": 4, "scopes": scopes, "auth": { "token": gateway.token },
                         "client": { "id": "test", "version": "1.2.3", "platform": "linux", "mode": "cli", "displayName": "tester" } });
    let (hello, _) = client.request("connect", params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    (client, hello["payload"].clone())
}

#[tokio::test]
async fn hello_carries_presence_and_health_and_others_hear_who_joins() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let (mut first, hello) = connect_with(&gateway, &["operator.read"]).await;
    let snapshot = &hello["snapshot"];
    let presence = snapshot["presence"].as_array().unwrap();
    assert_eq!(
        presence[0]["mode"], "gateway",
        "the gateway's own row first"
    );
    assert!(presence.iter().any(|entry| entry["clientId"] == "test"
        && entry["version"] == "1.2.3"
        && entry["roles"] == json!(["operator"])));
    assert!(snapshot["stateVersion"]["presence"].as_u64().unwrap() >= 2);
    assert_eq!(snapshot["health"]["ok"], true);
    assert_eq!(snapshot["health"]["channels"]["webchat"]["connected"], true);
    let methods = hello["features"]["methods"].as_array().unwrap();
    for name in [
        "sessions.describe",
        "sessions.reset",
        "models.list",
        "config.get",
    ] {
        assert!(methods.contains(&json!(name)), "{name} is listed");
    }
    assert!(
        !methods.contains(&json!("chat.inject")),
        "OpenClaw does not list chat.inject"
    );

    // A second client joins: the first hears a presence event, versioned.
    let (second, _) = connect_with(&gateway, &["operator.write"]).await;
    let event = wait_for(&mut first, |frame| {
        is_event("presence")(frame) && frame["payload"]["presence"].as_array().unwrap().len() == 3
    })
    .await;
    let before = snapshot["stateVersion"]["presence"].as_u64().unwrap();
    assert!(event["stateVersion"]["presence"].as_u64().unwrap() > before);
    drop(second);
    let event = wait_for(&mut first, is_event("presence")).await;
    assert_eq!(event["payload"]["presence"].as_array().unwrap().len(), 2);

    // A connection without operator.read is told nothing of who is connected.
    let (_, hello) = connect_with(&gateway, &["operator.pairing"]).await;
    assert_eq!(hello["snapshot"]["presence"], json!([]));
}

#[tokio::test]
async fn sessions_are_listed_described_compacted_reset_and_protected() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    let (describe, _) = client
        .request("sessions.describe", json!({ "key": "main" }))
        .await;
    assert_eq!(describe["payload"]["session"], Value::Null, "{describe}");

    let (subscribed, _) = client
        .request("sessions.messages.subscribe", json!({ "key": "main" }))
        .await;
    assert_eq!(subscribed["payload"]["subscribed"], true);
    let main = subscribed["payload"]["key"].as_str().unwrap().to_owned();
    for n in 0..5 {
        client
            .chat(&format!("question {n}"), &format!("k{n}"))
            .await;
    }
    let (listed, _) = client.request("sessions.list", json!({})).await;
    let rows = listed["payload"]["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["key"], main.as_str());
    assert_eq!(rows[0]["messageCount"], 10);
    assert_eq!(rows[0]["channel"], "webchat");
    assert_eq!(rows[0]["isMain"], true);
    assert_eq!(listed["payload"]["totalCount"], 1);
    let (described, _) = client
        .request("sessions.describe", json!({ "key": main }))
        .await;
    assert_eq!(described["payload"]["session"]["messageCount"], 10);

    let (compacted, _) = client
        .request("sessions.compact", json!({ "key": "main" }))
        .await;
    assert_eq!(compacted["payload"]["compacted"], true, "{compacted}");
    assert_eq!(compacted["payload"]["result"]["messagesAfter"], 8);

    let (reset, events) = client
        .request("sessions.reset", json!({ "key": "main" }))
        .await;
    assert_eq!(reset["payload"]["ok"], true, "{reset}");
    assert_eq!(reset["payload"]["entry"]["messageCount"], 0);
    // The compaction's change may arrive first; the reset's follows (waited
    // for before any other request, whose own wait would pass it by).
    let reset_changed =
        |e: &Value| e["event"] == "sessions.changed" && e["payload"]["reason"] == "reset";
    let changed = match events.iter().find(|e| reset_changed(e)) {
        Some(event) => event.clone(),
        None => wait_for(&mut client, reset_changed).await,
    };
    assert_eq!(changed["payload"]["reason"], "reset");
    assert!(client.history().await.is_empty());

    let (delete, _) = client
        .request("sessions.delete", json!({ "key": "main" }))
        .await;
    assert!(
        delete["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Cannot delete the main session"),
        "{delete}"
    );
    let (unknown, _) = client
        .request("sessions.reset", json!({ "key": "telegram:dm:nobody" }))
        .await;
    assert_eq!(
        unknown["error"]["message"],
        "unknown session: telegram:dm:nobody"
    );
    let (history, _) = client
        .request(
            "chat.history",
            json!({ "sessionKey": "telegram:dm:nobody" }),
        )
        .await;
    assert_eq!(history["ok"], false, "unknown sessions are not loaded");
    let long = "x:".repeat(200);
    for (method, params, message) in [
        ("sessions.reset", json!({ "key": long }), "key too long"),
        ("sessions.delete", json!({ "key": long }), "key too long"),
        ("sessions.delete", json!({ "key": " " }), "key required"),
        (
            "chat.history",
            json!({ "sessionKey": long }),
            "sessionKey too long",
        ),
        (
            "sessions.list",
            json!([1, 2]),
            "invalid sessions.list params: must be an object",
        ),
    ] {
        let (refused, _) = client.request(method, params).await;
        assert_eq!(
            refused["error"]["code"], "INVALID_REQUEST",
            "{method}: {refused}"
        );
        assert_eq!(refused["error"]["message"], message, "{method}");
    }
    let (bad, _) = client
        .request("sessions.reset", json!({ "key": "main", "extra": 1 }))
        .await;
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid sessions.reset params")
    );
}

#[tokio::test]
async fn messages_reach_subscribers_and_injected_notes_join_the_conversation() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut watcher = gateway.connected().await;
    let (subscribed, _) = watcher.request("sessions.subscribe", json!({})).await;
    assert_eq!(subscribed["payload"]["subscribed"], true);
    let mut talker = gateway.connected().await;
    talker.chat("hello there", "k1").await;
    let user = wait_for(&mut watcher, is_event("session.message")).await;
    assert_eq!(user["payload"]["message"]["role"], "user");
    assert_eq!(
        user["payload"]["message"]["content"][0]["text"],
        "hello there"
    );
    let answer = wait_for(&mut watcher, is_event("session.message")).await;
    assert_eq!(answer["payload"]["message"]["role"], "assistant");
    assert_eq!(answer["payload"]["runId"], "k1");

    let (injected, _) = talker
        .request(
            "chat.inject",
            json!({ "sessionKey": "main", "message": "the meeting moved", "label": "note" }),
        )
        .await;
    assert_eq!(injected["payload"]["ok"], true, "{injected}");
    let id = injected["payload"]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let chat = wait_for(&mut watcher, |f| {
        f["event"] == "chat" && f["payload"]["runId"] == format!("inject-{id}").as_str()
    })
    .await;
    assert_eq!(
        (
            chat["payload"]["state"].as_str(),
            chat["payload"]["seq"].as_u64()
        ),
        (Some("final"), Some(0))
    );
    let history = talker.history().await;
    assert_eq!(
        history.last().unwrap(),
        &(
            "assistant".to_owned(),
            "[note]\n\nthe meeting moved".to_owned()
        )
    );

    let (refused, _) = talker
        .request(
            "chat.inject",
            json!({ "sessionKey": "main", "message": "x", "label": "bad\u{1b}[31m" }),
        )
        .await;
    assert_eq!(refused["error"]["code"], "INVALID_REQUEST", "{refused}");

    // Only an admin injects.
    let (mut reader, _) = connect_with(&gateway, &["operator.write"]).await;
    let (refused, _) = reader
        .request(
            "chat.inject",
            json!({ "sessionKey": "main", "message": "x" }),
        )
        .await;
    assert_eq!(refused["error"]["code"], "FORBIDDEN");
    assert_eq!(
        refused["error"]["details"]["missingScope"],
        "operator.admin"
    );
}

#[tokio::test]
async fn models_channels_and_config_describe_the_gateway_without_its_secrets() {
    let state = tempfile::tempdir().unwrap();
    let token = "a-long-configured-gateway-token-0123456789";
    let mut gateway = Gateway::start(state.path(), &[("MOLTBOT_GATEWAY_TOKEN", token)]);
    gateway.token = token.to_owned();
    let (mut client, _) = connect_with(&gateway, &["operator.read"]).await;
    let (models, _) = client.request("models.list", json!({})).await;
    assert_eq!(
        models["payload"]["models"][0]["id"], "molt/echo",
        "{models}"
    );
    let (channels, _) = client.request("channels.status", json!({})).await;
    let payload = &channels["payload"];
    assert_eq!(
        payload["channels"]["webchat"]["connected"], true,
        "{channels}"
    );
    assert_eq!(
        payload["channelAccounts"]["webchat"][0]["accountId"],
        "default"
    );
    let (unknown, _) = client
        .request("channels.status", json!({ "channel": "irc" }))
        .await;
    assert_eq!(unknown["error"]["message"], "unknown channel: irc");

    let (config, _) = client.request("config.get", json!({})).await;
    assert_eq!(
        config["payload"]["config"]["gateway"]["token"],
        "__OPENCLAW_REDACTED__"
    );
    assert!(!config.to_string().contains(token));
    assert_eq!(config["payload"]["hash"].as_str().unwrap().len(), 64);
    let (bad, _) = client.request("config.get", json!({ "path": "x" })).await;
    assert_eq!(bad["error"]["code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn a_stopping_gateway_tells_its_clients_and_closes_them() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    gateway.signal("-TERM");
    let shutdown = wait_for(&mut client, is_event("shutdown")).await;
    assert_eq!(shutdown["payload"]["reason"], "gateway stopping");
    let closed = client.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1012, "service restart")
    );
}
