//! `/debug/*`, mounted only with `DEBUG_ROUTES=true` and behind the same
//! guard as `/api/admin/` (Access, else the gateway token). Each route reads
//! state; none runs a command. Secrets never appear: environment values are
//! not shown, the configuration is redacted, and log lines have every
//! secret value the process knows replaced.

use crate::server::AppState;
use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

/// What replaces a secret in a log line.
pub const REDACTED: &str = "[redacted]";

/// The debug routes (mounted under `/debug`).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/version", get(version))
        .route("/processes", get(processes))
        .route("/gateway-api", get(gateway_api))
        .route("/logs", get(logs))
        .route("/env", get(env))
        .route("/container-config", get(container_config))
}

/// The values of the environment variables whose names say they hold a
/// secret (token, key, secret, password), at least 6 characters long.
pub fn secret_values(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    const MARKS: [&str; 5] = ["TOKEN", "KEY", "SECRET", "PASSWORD", "CREDENTIAL"];
    let mut values: Vec<String> = vars
        .filter(|(name, value)| {
            let name = name.to_ascii_uppercase();
            value.len() >= 6 && MARKS.iter().any(|mark| name.contains(mark))
        })
        .map(|(_, value)| value)
        .collect();
    // Longest first, so a secret containing another is replaced whole.
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    values
}

/// `line` with each of `secrets` replaced by [`REDACTED`].
pub fn redact(line: &str, secrets: &[String]) -> String {
    secrets.iter().fold(line.to_owned(), |line, secret| {
        line.replace(secret.as_str(), REDACTED)
    })
}

async fn version() -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": { "max": 4, "min": 3 },
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "rustVersion": env!("CARGO_PKG_RUST_VERSION"),
    }))
}

/// The process, its async tasks, and its child processes (Linux: from /proc).
async fn processes(State(state): State<Arc<AppState>>) -> Json<Value> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count());
    Json(json!({
        "pid": std::process::id(),
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "threads": threads,
        "tasks": { "alive": metrics.num_alive_tasks(), "workers": metrics.num_workers() },
        "children": children(),
        "clients": state.presence.connected(),
        "sessions": { "busy": state.gateway.busy_sessions(), "queuedMessages": state.gateway.queued_messages() },
    }))
}

/// The child processes of process `pid` (`"self"` for this one), from
/// /proc (empty elsewhere than Linux).
pub fn child_pids(pid: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Each child process: its id and program (never its arguments).
fn children() -> Vec<Value> {
    child_pids("self")
        .into_iter()
        .map(|pid| {
            let program = std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .and_then(|cmdline| {
                    let first = cmdline.split(|&b| b == 0).next()?.to_vec();
                    String::from_utf8(first).ok()
                })
                .unwrap_or_default();
            json!({ "pid": pid, "program": program })
        })
        .collect()
}

async fn gateway_api() -> Json<Value> {
    let methods: Vec<Value> = (crate::protocol::methods::METHODS.iter())
        .map(|m| json!({ "name": m.name, "scope": m.scope, "advertised": m.advertised }))
        .collect();
    Json(json!({ "methods": methods, "events": crate::protocol::methods::EVENTS }))
}

/// The kept lines: the environment's secret values were replaced as they
/// were written; the gateway token (generated, so in no variable) is here.
async fn logs(State(state): State<Arc<AppState>>) -> Json<Value> {
    let token = [state.token.expose().to_owned()];
    let lines: Vec<String> = (state.logs.lines().iter())
        .map(|line| redact(line, &token))
        .collect();
    Json(json!({ "lines": lines, "kept": crate::logs::KEPT_LINES }))
}

/// The names of the environment variables, never their values.
async fn env() -> Json<Value> {
    let mut names: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    Json(json!({ "names": names }))
}

async fn container_config(State(state): State<Arc<AppState>>) -> Json<Value> {
    let snapshot = state.config.snapshot();
    let channels: Vec<&str> = state.channels.board().snapshot().into_keys().collect();
    Json(json!({
        "config": snapshot["config"],
        "configPath": snapshot["path"],
        "access": state.access.is_some(),
        "backup": state.mirror.is_some(),
        "models": state.models,
        "channels": channels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_found_by_name_and_replaced_longest_first() {
        let vars = [
            ("TELEGRAM_BOT_TOKEN", "12345:abcdef"),
            ("ANTHROPIC_API_KEY", "sk-ant-secret-value"),
            ("HOME", "/root"),
            ("SHORT_KEY", "abc"),
        ];
        let secrets = secret_values(vars.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        assert_eq!(secrets, ["sk-ant-secret-value", "12345:abcdef"]);
        let line = "calling https://api.telegram.org/bot12345:abcdef/getMe with sk-ant-secret-value in /root";
        assert_eq!(
            redact(line, &secrets),
            "calling https://api.telegram.org/bot[redacted]/getMe with [redacted] in /root"
        );
    }
}
