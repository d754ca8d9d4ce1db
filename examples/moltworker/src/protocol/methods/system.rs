//! The gateway itself: `health`, `status`, `models.list`, `channels.status`
//! and `config.get`.

use super::{Call, params};
use crate::protocol::frames::RpcError;
use crate::protocol::now_ms;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(super) async fn health(call: Call, _params: Value) -> Result<Value, RpcError> {
    Ok(call.state.health().await)
}

pub(super) async fn status(call: Call, _params: Value) -> Result<Value, RpcError> {
    Ok(call.state.status())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "accepted as OpenClaw's schema has them")]
struct ModelsList {
    agent_id: Option<String>,
    provider: Option<String>,
    view: Option<String>,
    refresh: Option<bool>,
}

/// The models the gateway can answer with: those molt-ai-gateway routes to,
/// or the offline echo model.
pub(super) async fn models_list(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ModelsList = params("models.list", value)?;
    let state = &call.state;
    let models: Vec<Value> = (state.models.iter())
        .map(|id| {
            let (provider, name) = id.split_once('/').unwrap_or(("molt", id));
            json!({ "id": id, "name": name, "provider": provider, "available": true,
                    "supportsTools": true, "input": ["text", "image"] })
        })
        .filter(|model| {
            p.provider
                .as_deref()
                .is_none_or(|wanted| model["provider"] == wanted)
        })
        .collect();
    Ok(json!({ "models": models }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has them; status is never probed"
)]
struct ChannelsStatus {
    probe: Option<bool>,
    timeout_ms: Option<u64>,
    channel: Option<String>,
}

/// Every configured channel and its connection, in OpenClaw's shape (one
/// account per channel).
pub(super) async fn channels_status(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChannelsStatus = params("channels.status", value)?;
    let mut channels = call.state.channels.board().snapshot();
    if let Some(wanted) = p.channel.as_deref() {
        if !channels.contains_key(wanted) {
            return Err(RpcError::invalid(format!("unknown channel: {wanted}")));
        }
        channels.retain(|name, _| *name == wanted);
    }
    let (mut summaries, mut accounts, mut labels, mut defaults) =
        (Map::new(), Map::new(), Map::new(), Map::new());
    for (name, status) in &channels {
        let summary = serde_json::to_value(status).unwrap_or_default();
        let mut account = summary.clone();
        account["accountId"] = json!("default");
        summaries.insert(name.to_string(), summary);
        accounts.insert(name.to_string(), json!([account]));
        labels.insert(name.to_string(), json!(label(name)));
        defaults.insert(name.to_string(), json!("default"));
    }
    Ok(json!({
        "ts": now_ms(), "channelOrder": channels.keys().collect::<Vec<_>>(),
        "channelLabels": labels, "channels": summaries, "channelAccounts": accounts,
        "channelDefaultAccountId": defaults,
    }))
}

/// A channel's name for people.
pub fn label(channel: &str) -> &str {
    match channel {
        "telegram" => "Telegram",
        "discord" => "Discord",
        "slack" => "Slack",
        "webchat" => "Control UI",
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigGet {}

/// The configuration in force, secrets redacted (OpenClaw's
/// `__OPENCLAW_REDACTED__`), with a hash of what is shown.
pub(super) async fn config_get(call: Call, value: Value) -> Result<Value, RpcError> {
    let ConfigGet {} = params("config.get", value)?;
    Ok(call.state.config.snapshot())
}
