//! OpenClaw's handshake with device identity against the real binary, from a
//! client written from the protocol's description: an unknown device is
//! told to pair, an operator approves it, it comes back with its device
//! token; stale or misdirected proofs, revoked tokens, protocol ranges and
//! scopes are refused as OpenClaw refuses them.

mod support;

use serde_json::{Value, json};
use support::device::{Device, connect, connect_for, now_ms};
use support::{Client, Gateway};

/// The events `client` receives until one named `name` comes.
async fn event(client: &mut Client, name: &str) -> Value {
    loop {
        let frame = client.next_frame().await.expect("an event before close");
        if frame["event"] == name {
            return frame["payload"].clone();
        }
    }
}

#[tokio::test]
async fn a_device_pairs_through_an_operator_and_returns_with_its_token() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut operator = gateway.connected().await;
    let device = Device::new(7);

    // Unknown: told to pair, with OpenClaw's error and close.
    let (mut first, refused) = connect(&gateway, &device, json!({ "token": gateway.token })).await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED", "{refused}");
    let details = &refused["error"]["details"];
    assert_eq!(
        (details["code"].as_str(), details["reason"].as_str()),
        (Some("PAIRING_REQUIRED"), Some("not-paired"))
    );
    assert_eq!(details["deviceId"], device.id().as_str());
    let request_id = details["requestId"].as_str().unwrap().to_owned();
    let closed = first.closed().await;
    assert_eq!(closed.code, 1008);
    assert_eq!(
        closed.reason,
        format!("pairing required: device is not approved yet (requestId: {request_id})")
    );

    // The operator hears of it, sees it, approves it.
    let requested = event(&mut operator, "device.pair.requested").await;
    assert_eq!(requested["requestId"], request_id.as_str());
    let (list, _) = operator.request("device.pair.list", json!({})).await;
    assert_eq!(
        list["payload"]["pending"][0]["deviceId"],
        device.id().as_str(),
        "{list}"
    );
    let (approved, events) = operator
        .request("device.pair.approve", json!({ "requestId": request_id }))
        .await;
    assert_eq!(approved["ok"], true, "{approved}");
    let tokens = &approved["payload"]["device"]["tokens"];
    assert!(
        tokens.is_array() && tokens[0].get("token").is_none(),
        "tokens are never listed: {approved}"
    );
    let resolved = match events.iter().find(|e| e["event"] == "device.pair.resolved") {
        Some(frame) => frame["payload"].clone(),
        None => event(&mut operator, "device.pair.resolved").await,
    };
    assert_eq!(resolved["decision"], "approved");

    // Paired: in with the gateway token, and given a device token.
    let (_client, hello) = connect(&gateway, &device, json!({ "token": gateway.token })).await;
    let auth = &hello["payload"]["auth"];
    assert_eq!(
        (hello["ok"].as_bool(), auth["method"].as_str()),
        (Some(true), Some("token")),
        "{hello}"
    );
    assert_eq!(hello["payload"]["protocol"], 4);
    let device_token = auth["deviceToken"].as_str().unwrap().to_owned();
    assert!(
        !approved.to_string().contains(&device_token),
        "the approval did not show the token"
    );
    // As openclaw-node comes back: the device token in `auth.token`.
    let (mut returning, hello) = connect(&gateway, &device, json!({ "token": device_token })).await;
    assert_eq!(
        hello["payload"]["auth"]["method"], "device-token",
        "{hello}"
    );
    assert_eq!(
        hello["payload"]["auth"]["deviceToken"],
        device_token.as_str()
    );
    let (health, _) = returning.request("health", json!({})).await;
    assert_eq!(health["ok"], true);
    // Read and write only: pairing and unknown methods are out of its reach.
    let (pairing, _) = returning.request("device.pair.list", json!({})).await;
    assert_eq!(pairing["error"]["code"], "FORBIDDEN", "{pairing}");
    assert_eq!(
        pairing["error"]["details"]["missingScope"],
        "operator.pairing"
    );
    let (unknown, _) = returning.request("no.such.method", json!({})).await;
    assert_eq!(unknown["error"]["message"], "missing scope: operator.admin");
    let (unknown, _) = operator.request("no.such.method", json!({})).await;
    assert_eq!(
        unknown["error"]["message"],
        "unknown method: no.such.method"
    );

    // Revoked: its live connection closes, and the token no longer opens one.
    let (revoked, _) = operator
        .request(
            "device.token.revoke",
            json!({ "deviceId": device.id(), "role": "operator" }),
        )
        .await;
    assert_eq!(revoked["ok"], true, "{revoked}");
    let closed = returning.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4001, "device removed")
    );
    let (mut again, refused) =
        connect(&gateway, &device, json!({ "deviceToken": device_token })).await;
    assert_eq!(
        refused["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH",
        "{refused}"
    );
    assert_eq!(again.closed().await.code, 1008);
}

#[tokio::test]
async fn stale_or_misdirected_proofs_are_refused_and_v3_is_taken() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let device = Device::new(9);
    let token = json!({ "token": gateway.token });

    let refusal = |response: &Value| {
        let details = &response["error"]["details"];
        (
            details["code"].as_str().unwrap_or_default().to_owned(),
            response["error"]["message"].clone(),
        )
    };
    // Signed three minutes ago.
    let mut client = gateway.socket(None, None).await;
    let stale = device.connect(&client.nonce, token.clone(), now_ms() - 180_000);
    let (response, _) = client.request("connect", stale).await;
    assert_eq!(
        refusal(&response),
        (
            "DEVICE_AUTH_SIGNATURE_EXPIRED".into(),
            json!("device signature expired")
        )
    );
    assert_eq!(client.closed().await.reason, "device signature expired");
    // Signed for another connection's challenge.
    let mut client = gateway.socket(None, None).await;
    let elsewhere = device.connect(
        "6e1f0000-0000-4000-8000-000000000000",
        token.clone(),
        now_ms(),
    );
    let (response, _) = client.request("connect", elsewhere).await;
    assert_eq!(refusal(&response).0, "DEVICE_AUTH_NONCE_MISMATCH");
    // Claims changed after signing (more scopes than signed).
    let mut client = gateway.socket(None, None).await;
    let mut widened = device.connect(&client.nonce, token.clone(), now_ms());
    widened["scopes"] = json!(["operator.admin"]);
    let (response, _) = client.request("connect", widened).await;
    assert_eq!(refusal(&response).0, "DEVICE_AUTH_SIGNATURE_INVALID");
    // Another key under this device's id.
    let mut client = gateway.socket(None, None).await;
    let mut borrowed = device.connect(&client.nonce, token.clone(), now_ms());
    borrowed["device"]["publicKey"] = json!(Device::new(10).public_key());
    let (response, _) = client.request("connect", borrowed).await;
    assert_eq!(refusal(&response).0, "DEVICE_AUTH_DEVICE_ID_MISMATCH");

    // A v3 proof (platform and family, trimmed and lower-cased) is taken:
    // the device is then told to pair, which means its proof held.
    let mut client = gateway.socket(None, None).await;
    let signed_at = now_ms();
    let payload = format!(
        "v3|{}|openclaw-control-ui|webchat|operator||{signed_at}|{}|{}|web|desktop",
        device.id(),
        gateway.token,
        client.nonce
    );
    let params = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": { "id": "openclaw-control-ui", "version": "1", "platform": " Web ", "deviceFamily": "Desktop", "mode": "webchat" },
        "scopes": [], "auth": { "token": gateway.token },
        "device": device.proof(&payload, &client.nonce, signed_at),
    });
    let (response, _) = client.request("connect", params).await;
    assert_eq!(response["error"]["code"], "NOT_PAIRED", "{response}");
}

#[tokio::test]
async fn protocol_ranges_are_agreed_or_refused_with_1002() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let connect = |min: u32, max: u32| {
        json!({ "minProtocol": min, "maxProtocol": max, "auth": { "token": gateway.token },
                "client": { "id": "cli", "version": "1", "platform": "linux", "mode": "cli" } })
    };
    for (min, max, agreed) in [(3, 3, 3), (3, 4, 4), (4, 9, 4)] {
        let mut client = gateway.socket(None, None).await;
        let (hello, _) = client.request("connect", connect(min, max)).await;
        assert_eq!(
            hello["payload"]["protocol"], agreed,
            "{min}..{max}: {hello}"
        );
    }
    let mut client = gateway.socket(None, None).await;
    let (refused, _) = client.request("connect", connect(5, 6)).await;
    assert_eq!(refused["error"]["code"], "INVALID_REQUEST");
    assert_eq!(refused["error"]["details"]["code"], "PROTOCOL_MISMATCH");
    let closed = client.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1002, "protocol mismatch")
    );
    // A closed object: an unknown field or client id is refused.
    let mut client = gateway.socket(None, None).await;
    let mut extra = connect(4, 4);
    extra["client"]["id"] = json!("robot");
    let (refused, _) = client.request("connect", extra).await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid connect params: client.id"),
        "{message}"
    );
    assert_eq!(client.closed().await.code, 1008);
}

/// Runs `moltworker devices <args>` on `state`; returns the exit code and output.
fn devices(state: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .arg("devices")
        .args(args)
        .env("MOLT_STATE_DIR", state)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_devices_command_decides_while_the_gateway_runs() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let device = Device::new(31);
    let token = json!({ "token": gateway.token });
    let (_, refused) = connect(&gateway, &device, token.clone()).await;
    let request_id = refused["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();

    let (code, listed) = devices(state.path(), &["list"]);
    assert_eq!(code, 0, "{listed}");
    assert!(
        listed.contains(&format!("moltworker devices approve {request_id}")),
        "{listed}"
    );
    let (code, out) = devices(state.path(), &["approve", &request_id]);
    assert_eq!(code, 0, "{out}");
    let (mut connected, hello) = connect(&gateway, &device, token.clone()).await;
    assert_eq!(hello["ok"], true, "approved at once, no restart: {hello}");

    let (code, out) = devices(state.path(), &["remove", &device.id()]);
    assert_eq!(code, 0, "{out}");
    // Removed by another process: its connection closes within the device check's interval.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(8), connected.closed())
        .await
        .expect("closed within 8 s");
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4001, "device removed")
    );
    let (_, refused) = connect(&gateway, &device, token.clone()).await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED");
    let (code, out) = devices(state.path(), &["approve", "no-such-request"]);
    assert_eq!((code, out.trim()), (1, "moltworker: unknown requestId"));
    let (code, out) = devices(state.path(), &["frobnicate"]);
    assert_eq!(code, 2, "{out}");
}

#[tokio::test]
async fn a_device_that_may_pair_acts_only_on_itself_and_within_its_scopes() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut owner = gateway.connected().await;
    let token = json!({ "token": gateway.token });
    // A helper device that may pair (read and pairing), and a plain one.
    let (helper, plain) = (Device::new(41), Device::new(42));
    let helper_scopes = ["operator.read", "operator.pairing"];
    let plain_scopes = ["operator.read", "operator.write"];
    for (device, scopes) in [(&helper, &helper_scopes), (&plain, &plain_scopes)] {
        let (_, refused) = connect_for(&gateway, device, token.clone(), scopes).await;
        let request_id = refused["error"]["details"]["requestId"].clone();
        let (approved, _) = owner
            .request("device.pair.approve", json!({ "requestId": request_id }))
            .await;
        assert_eq!(approved["ok"], true, "{approved}");
    }
    let (_, hello) = connect_for(&gateway, &helper, token.clone(), &helper_scopes).await;
    let helper_token = hello["payload"]["auth"]["deviceToken"].clone();
    let (mut as_helper, hello) = connect_for(
        &gateway,
        &helper,
        json!({ "token": helper_token }),
        &helper_scopes,
    )
    .await;
    assert_eq!(
        hello["payload"]["auth"]["method"], "device-token",
        "{hello}"
    );

    // It sees only itself, and cannot act on another device.
    let (list, _) = as_helper.request("device.pair.list", json!({})).await;
    let paired = list["payload"]["paired"].as_array().unwrap();
    assert_eq!(paired.len(), 1, "{list}");
    assert_eq!(paired[0]["deviceId"], helper.id().as_str());
    for (method, params) in [
        (
            "device.token.revoke",
            json!({ "deviceId": plain.id(), "role": "operator" }),
        ),
        (
            "device.token.rotate",
            json!({ "deviceId": plain.id(), "role": "operator" }),
        ),
        ("device.pair.remove", json!({ "deviceId": plain.id() })),
    ] {
        let (refused, _) = as_helper.request(method, params).await;
        assert_eq!(refused["ok"], false, "{method}: {refused}");
    }
    // It grants no scope it lacks: a request for admin is refused.
    let asking = Device::new(43);
    let (_, refused) = connect_for(&gateway, &asking, token.clone(), &["operator.admin"]).await;
    let request_id = refused["error"]["details"]["requestId"].clone();
    let (denied, _) = as_helper
        .request("device.pair.approve", json!({ "requestId": request_id }))
        .await;
    assert_eq!(denied["error"]["message"], "device pairing approval denied");
    // Its own token: never wider than it holds; rotated, it comes back in-band.
    let own =
        |scopes: Value| json!({ "deviceId": helper.id(), "role": "operator", "scopes": scopes });
    let (wider, _) = as_helper
        .request("device.token.rotate", own(json!(["operator.admin"])))
        .await;
    assert_eq!(wider["ok"], false, "{wider}");
    let (rotated, _) = as_helper
        .request("device.token.rotate", own(json!(helper_scopes)))
        .await;
    assert_eq!(rotated["payload"]["tokenDelivery"], "in-band", "{rotated}");
    assert!(rotated["payload"]["token"].is_string());
}
