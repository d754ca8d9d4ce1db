//! `/debug/*` (only with `DEBUG_ROUTES=true`) and `/metrics`, on the real
//! binary: guarded like the admin API, and never showing a secret.

mod support;

use serde_json::Value;
use support::Gateway;

const TOKEN: &str = "debug-test-gateway-token-0123456789";
const OTHER_SECRET: &str = "my-service-secret-value-42";

fn start(state: &std::path::Path, debug: &str) -> Gateway {
    let mut gateway = Gateway::start(
        state,
        &[
            ("MOLTBOT_GATEWAY_TOKEN", TOKEN),
            ("MY_SERVICE_TOKEN", OTHER_SECRET),
            ("DEBUG_ROUTES", debug),
            ("RUST_LOG", "info"),
        ],
    );
    gateway.token = TOKEN.to_owned();
    gateway
}

async fn get_json(gateway: &Gateway, path: &str) -> Value {
    let (status, body) = gateway.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(
        !body.contains(TOKEN) && !body.contains(OTHER_SECRET),
        "{path} shows a secret: {body}"
    );
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn debug_routes_exist_only_when_asked_for_and_only_for_the_operator() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), "false");
    assert_eq!(gateway.get("/debug/version").await.0, 404);
    // The operator's paths are guarded before they are looked up: a stranger
    // cannot tell which exist.
    for path in ["/debug/version", "/api/no-such-route", "/_admin/nothing"] {
        assert_eq!(gateway.get_with(path, None).await.0, 401, "{path}");
        assert_eq!(gateway.get(path).await.0, 404, "{path}");
    }

    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), "true");
    for path in ["/debug/version", "/debug/logs", "/debug/env", "/metrics"] {
        assert_eq!(gateway.get_with(path, None).await.0, 401, "{path}");
        assert_eq!(gateway.get_with(path, Some("wrong")).await.0, 401, "{path}");
    }
    let version = get_json(&gateway, "/debug/version").await;
    assert_eq!(version["protocol"]["max"], 4);
    let processes = get_json(&gateway, "/debug/processes").await;
    assert!(
        processes["tasks"]["alive"].as_u64().unwrap() > 0,
        "{processes}"
    );
    assert!(processes["threads"].as_u64().unwrap() > 0);
    let api = get_json(&gateway, "/debug/gateway-api").await;
    let methods = api["methods"].as_array().unwrap();
    assert!(
        methods
            .iter()
            .any(|m| m["name"] == "sessions.reset" && m["scope"] == "operator.admin")
    );
    let logs = get_json(&gateway, "/debug/logs").await;
    let lines = logs["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|line| line.as_str().unwrap().contains("moltworker is serving")),
        "{logs}"
    );
    let env = get_json(&gateway, "/debug/env").await;
    let names = env["names"].as_array().unwrap();
    assert!(names.contains(&Value::from("MY_SERVICE_TOKEN")));
    let config = get_json(&gateway, "/debug/container-config").await;
    assert_eq!(
        config["config"]["gateway"]["token"],
        "__OPENCLAW_REDACTED__"
    );
    assert_eq!(config["config"]["gateway"]["debugRoutes"], true);
}

#[tokio::test]
async fn metrics_count_messages_runs_and_clients() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), "false");
    let mut client = gateway.connected().await;
    client.chat("count me", "m1").await;
    client.chat("and me", "m2").await;
    // The run's end is counted just after its reply went out: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let page = loop {
        let (status, page) = gateway.get("/metrics").await;
        assert_eq!(status, 200, "{page}");
        if page.contains("molt_sessions_busy 0") || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for line in [
        "molt_messages_in_total{channel=\"webchat\"} 2",
        "molt_runs_total{channel=\"webchat\",outcome=\"answered\"} 2",
        "molt_run_duration_seconds_count{channel=\"webchat\"} 2",
        "molt_run_duration_seconds_bucket{channel=\"webchat\",le=\"+Inf\"} 2",
        "molt_clients_connected 1",
        "molt_messages_queued 0",
        "molt_sessions_busy 0",
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "missing {line:?} in\n{page}"
        );
    }
    assert!(!page.contains(TOKEN));
}
