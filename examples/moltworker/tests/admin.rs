//! The operator's HTTP API against the real binary: devices approved, all
//! approved, rejected and removed in Moltworker's shapes; channel pairing
//! codes approved; the backup's state; and who may call it: the gateway
//! token, or, once Cloudflare Access is configured, only a valid Access token
//! (header or cookie) checked against keys a server of the test publishes.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use support::Gateway;
use support::device::{Device, connect};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

#[tokio::test]
async fn devices_and_pairing_codes_are_decided_through_the_admin_api() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let bearer = format!("Bearer {}", gateway.token);
    let auth = [("Authorization", bearer.as_str())];

    // Never open: a JSON 401 for API clients, a page for browsers.
    let (status, body) = gateway.http("GET", "/api/admin/devices", &[]).await;
    assert_eq!(status, 401);
    assert!(
        parse(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("unauthorized")
    );
    let browser = [("Accept", "text/html,application/xhtml+xml")];
    let (status, body) = gateway.http("GET", "/api/admin/devices", &browser).await;
    assert_eq!(status, 401);
    assert!(body.contains("<h1>Sign in first</h1>"), "{body}");

    // Two devices ask; one is approved alone, then the rest all at once.
    let (first, second) = (Device::new(21), Device::new(22));
    let token = json!({ "token": gateway.token });
    connect(&gateway, &first, token.clone()).await;
    connect(&gateway, &second, token.clone()).await;
    let (status, body) = gateway.http("GET", "/api/admin/devices", &auth).await;
    assert_eq!(status, 200, "{body}");
    let pending = parse(&body)["pending"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 2);
    let first_request = pending
        .iter()
        .find(|p| p["deviceId"] == first.id().as_str())
        .unwrap();
    let path = format!(
        "/api/admin/devices/{}/approve",
        first_request["requestId"].as_str().unwrap()
    );
    let (status, body) = gateway.http("POST", &path, &auth).await;
    assert_eq!(
        (status, parse(&body)["success"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (status, body) = gateway.http("POST", &path, &auth).await;
    assert_eq!(status, 404, "approved once: {body}");
    let (status, body) = gateway
        .http("POST", "/api/admin/devices/approve-all", &auth)
        .await;
    let all = parse(&body);
    assert_eq!(
        (status, all["approved"].as_array().unwrap().len()),
        (200, 1),
        "{body}"
    );
    assert_eq!(all["message"], "Approved 1 of 1 device(s)");
    let (_, hello) = connect(&gateway, &second, token.clone()).await;
    assert_eq!(hello["ok"], true, "{hello}");

    // Removed: its connection closes, and it must pair again.
    let (mut live, _) = connect(&gateway, &first, token.clone()).await;
    let path = format!("/api/admin/devices/{}", first.id());
    let (status, body) = gateway.http("DELETE", &path, &auth).await;
    assert_eq!(
        (status, parse(&body)["success"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(live.closed().await.code, 4001);
    let (_, refused) = connect(&gateway, &first, token.clone()).await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED");
    let request_id = refused["error"]["details"]["requestId"].as_str().unwrap();
    let path = format!("/api/admin/devices/{request_id}/reject");
    let (status, _) = gateway.http("POST", &path, &auth).await;
    assert_eq!(status, 200);

    // A channel pairing code (as a Telegram stranger would hold) approved here.
    let platform = moltworker::platform::TokioPlatform::platform();
    let store = Arc::new(molt_storage::LocalFileStore::new(state.path()));
    let book = molt_core::pairing::PairingBook::new(store, platform.clock, platform.entropy);
    let code = match book.request("telegram", "4242", Some("Ada")).await.unwrap() {
        molt_core::pairing::PairingRequest::Issued(code) => code,
        other => panic!("{other:?}"),
    };
    let (status, body) = gateway.http("GET", "/api/admin/pairing", &auth).await;
    assert_eq!(status, 200);
    assert_eq!(
        parse(&body)["channels"]["telegram"]["pending"][0]["code"],
        code.as_str()
    );
    let path = format!("/api/admin/pairing/telegram/{code}/approve");
    let (status, body) = gateway.http("POST", &path, &auth).await;
    assert_eq!(
        (status, parse(&body)["sender"].as_str()),
        (200, Some("4242")),
        "{body}"
    );
    assert!(book.is_approved("telegram", "4242").await.unwrap());

    // Another site's page cannot make the change, token or not.
    let forged = [
        ("Authorization", bearer.as_str()),
        ("Origin", "https://evil.example"),
    ];
    let (status, body) = gateway
        .http("POST", "/api/admin/devices/approve-all", &forged)
        .await;
    assert_eq!(status, 403, "{body}");

    // No bucket: the backup says so, and a sync is refused as Moltworker refuses it.
    let (_, body) = gateway.http("GET", "/api/admin/storage", &auth).await;
    assert_eq!(parse(&body)["configured"], false);
    let (status, body) = gateway.http("POST", "/api/admin/storage/sync", &auth).await;
    assert_eq!(
        (status, parse(&body)["success"].as_bool()),
        (400, Some(false))
    );
}

/// Serves `jwks` at `/certs` on loopback, as a team's certs endpoint does.
async fn key_server(jwks: Value) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, task)
}

#[tokio::test]
async fn with_access_configured_only_a_valid_access_token_passes() {
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../molt-core/tests/fixtures/access.json"
    ))
    .unwrap();
    let (certs, _server) = key_server(fixture["jwks"].clone()).await;
    let state = tempfile::tempdir().unwrap();
    let team = fixture["issuer"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .to_owned();
    let audience = fixture["audience"].as_str().unwrap().to_owned();
    let gateway = Gateway::start(
        state.path(),
        &[
            ("CF_ACCESS_TEAM_DOMAIN", &team),
            ("CF_ACCESS_AUD", &audience),
            ("MOLT_ACCESS_CERTS_URL", &certs),
        ],
    );
    let token = |name: &str| fixture["tokens"][name].as_str().unwrap().to_owned();
    let status_with = |headers: Vec<(&'static str, String)>| {
        let gateway = &gateway;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            gateway.http("GET", "/api/admin/devices", &headers).await.0
        }
    };
    assert_eq!(
        status_with(vec![("Cf-Access-Jwt-Assertion", token("valid"))]).await,
        200
    );
    let cookie = format!("theme=dark; CF_Authorization={}", token("valid"));
    assert_eq!(status_with(vec![("Cookie", cookie)]).await, 200);
    assert_eq!(
        gateway.get_with("/api/status", None).await.0,
        401,
        "/api/status needs Access too"
    );
    for name in [
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "unknown_kid",
        "other_key_same_kid",
        "alg_none",
        "hs256_with_public_key",
        "tampered",
        "garbage",
    ] {
        let status = status_with(vec![("Cf-Access-Jwt-Assertion", token(name))]).await;
        assert_eq!(status, 401, "{name}");
    }
    // The gateway token does not stand in for Access...
    let bearer = format!("Bearer {}", gateway.token);
    assert_eq!(status_with(vec![("Authorization", bearer)]).await, 401);
    // ...nor, on the WebSocket, for deciding about devices.
    let mut client = gateway.socket(None, None).await;
    let hello = client.connect(Some(&gateway.token)).await;
    let scopes = hello["payload"]["auth"]["scopes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!scopes.contains(&json!("operator.pairing")), "{hello}");
    assert!(!scopes.contains(&json!("operator.admin")), "{hello}");
    let (refused, _) = client.request("device.pair.list", json!({})).await;
    assert_eq!(refused["error"]["code"], "FORBIDDEN");
}
