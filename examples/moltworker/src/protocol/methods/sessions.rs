//! Sessions: `sessions.list`, `describe`, `reset`, `delete`, `compact`, and
//! the subscriptions that bring `session.message` events.

use super::{Call, params, unavailable};
use crate::protocol::frames::RpcError;
use crate::protocol::{Broadcast, now_ms};
use crate::server::AppState;
use molt_core::gateway::SessionInfo;
use molt_core::session::SessionKey;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Mutex;

/// The sessions whose `session.message` events a connection hears.
#[derive(Debug, Default)]
pub struct Subscriptions {
    all: std::sync::atomic::AtomicBool,
    keys: Mutex<HashSet<String>>,
}

impl Subscriptions {
    /// Whether the connection asked for `session_key`'s messages.
    pub fn wants(&self, session_key: &str) -> bool {
        self.all.load(std::sync::atomic::Ordering::Relaxed) || self.lock().contains(session_key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session as OpenClaw's session rows show it.
pub fn row(state: &AppState, info: &SessionInfo) -> Value {
    let key = info.key.as_str();
    let group = key.contains(":group:");
    json!({
        "key": key,
        "kind": if group { "group" } else { "direct" },
        "chatType": if group { "group" } else { "direct" },
        "channel": info.channel,
        "agentId": "main",
        "displayName": format!("{}:{}", info.channel, info.chat_id),
        "isMain": key == state.chat.session().as_str(),
        "createdAt": info.created_at.0,
        "updatedAt": info.updated_at.map(|at| at.0),
        "messageCount": info.message_count,
        "compacted": info.summarized,
        "hasActiveRun": info.running,
        "model": state.gateway.model_name(),
    })
}

/// The longest session key accepted, in bytes once made a store key segment.
pub const MAX_KEY_SEGMENT: usize = 200;

/// A session key as a client gave it: present, and not too long to be stored.
fn checked(state: &AppState, key: &str) -> Result<SessionKey, RpcError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(RpcError::invalid("key required"));
    }
    if molt_core::store::key_segment(key).len() > MAX_KEY_SEGMENT {
        return Err(RpcError::invalid("key too long"));
    }
    Ok(resolve(state, key))
}

/// The `key` of a session a message has reached, or OpenClaw's errors.
async fn known(state: &AppState, key: &str) -> Result<SessionInfo, RpcError> {
    let key = checked(state, key)?;
    (state.gateway.session_info(&key).await)
        .map_err(unavailable)?
        .ok_or_else(|| RpcError::invalid(format!("unknown session: {key}")))
}

/// A session key as clients write it: `main` is the Control UI's session.
pub(super) fn resolve(state: &AppState, key: &str) -> SessionKey {
    match key {
        "main" => state.chat.session().clone(),
        key => SessionKey::new(key),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct List {
    limit: Option<usize>,
    offset: Option<usize>,
    search: Option<String>,
    active_minutes: Option<u64>,
}

pub(super) async fn list(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: List = params("sessions.list", value)?;
    let state = &call.state;
    let mut sessions = state.gateway.sessions().await.map_err(unavailable)?;
    let since = p
        .active_minutes
        .map(|minutes| now_ms().saturating_sub(minutes * 60_000));
    sessions.retain(|info| {
        let matches = p.search.as_deref().is_none_or(|search| {
            let search = search.to_lowercase();
            info.key.as_str().to_lowercase().contains(&search)
                || info.channel.to_lowercase().contains(&search)
        });
        let active = since.is_none_or(|since| info.updated_at.is_some_and(|at| at.0 >= since));
        matches && active
    });
    // Most recently active first, as OpenClaw sorts by default.
    sessions.sort_by_key(|info| std::cmp::Reverse(info.updated_at.unwrap_or(info.created_at)));
    let total = sessions.len();
    let offset = p.offset.unwrap_or(0).min(total);
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let page: Vec<Value> = (sessions.iter().skip(offset).take(limit))
        .map(|info| row(state, info))
        .collect();
    let next = offset + page.len();
    let has_more = next < total;
    Ok(json!({
        "ts": now_ms(), "path": molt_core::gateway::SESSION_INDEX_PREFIX,
        "count": page.len(), "totalCount": total, "limitApplied": limit, "offset": offset,
        "nextOffset": if has_more { json!(next) } else { Value::Null }, "hasMore": has_more,
        "defaults": { "model": state.gateway.model_name(), "mainSessionKey": state.chat.session().as_str() },
        "sessions": page,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has them; Molt has one agent"
)]
struct Describe {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    include_derived_titles: Option<bool>,
    #[serde(default)]
    include_last_message: Option<bool>,
}

pub(super) async fn describe(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: Describe = params("sessions.describe", value)?;
    match known(&call.state, &p.key).await {
        Ok(info) => Ok(json!({ "session": row(&call.state, &info) })),
        Err(err) if err.message.starts_with("unknown session") => Ok(json!({ "session": null })),
        Err(err) => Err(err),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has them; Molt has one agent"
)]
struct Reset {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    expected_session_id: Option<String>,
}

pub(super) async fn reset(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: Reset = params("sessions.reset", value)?;
    let reason = match p.reason.as_deref() {
        None | Some("reset") => "reset",
        Some("new") => "new",
        Some(other) => {
            return Err(RpcError::invalid(format!(
                "invalid sessions.reset params: reason must be \"new\" or \"reset\", not {other:?}"
            )));
        }
    };
    let state = &call.state;
    let info = known(state, &p.key).await?;
    state
        .gateway
        .reset_session(&info.key)
        .await
        .map_err(unavailable)?;
    tracing::info!(session = %info.key, "a session was reset");
    changed(state, &info.key, reason);
    let info = known(state, info.key.as_str()).await?;
    let model = state.gateway.model_name();
    Ok(
        json!({ "ok": true, "key": info.key.as_str(), "entry": row(state, &info),
               "resolved": { "model": model, "modelProvider": provider(model) } }),
    )
}

/// The provider part of a `provider/model` name.
fn provider(model: &str) -> &str {
    model
        .split_once('/')
        .map_or("molt", |(provider, _)| provider)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has them; Molt has one agent"
)]
struct Delete {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    delete_transcript: Option<bool>,
    #[serde(default)]
    expected_session_id: Option<String>,
}

pub(super) async fn delete(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: Delete = params("sessions.delete", value)?;
    let state = &call.state;
    let key = checked(state, &p.key)?;
    if &key == state.chat.session() {
        return Err(RpcError::invalid(format!(
            "Cannot delete the main session ({key})."
        )));
    }
    let deleted = (state.gateway.delete_session(&key).await).map_err(unavailable)?;
    if deleted {
        tracing::info!(session = %key, "a session was deleted");
        changed(state, &key, "delete");
    }
    Ok(json!({ "ok": true, "key": key.as_str(), "deleted": deleted, "archived": [] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has them; Molt has one agent"
)]
struct Compact {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    max_lines: Option<u64>,
}

pub(super) async fn compact(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: Compact = params("sessions.compact", value)?;
    let state = &call.state;
    let info = known(state, &p.key).await?;
    if info.running {
        return Err(RpcError::invalid(format!(
            "Session {} has an active run; retry after it finishes.",
            info.key
        )));
    }
    let before = info.message_count;
    let compacted = (state.gateway.compact_session(&info.key).await).map_err(unavailable)?;
    if !compacted {
        return Ok(
            json!({ "ok": true, "key": info.key.as_str(), "compacted": false, "reason": "nothing to compact" }),
        );
    }
    changed(state, &info.key, "compact");
    let after = known(state, info.key.as_str()).await?.message_count;
    Ok(
        json!({ "ok": true, "key": info.key.as_str(), "compacted": true,
               "result": { "messagesBefore": before, "messagesAfter": after } }),
    )
}

fn changed(state: &AppState, key: &SessionKey, reason: &str) {
    let payload = json!({ "sessionKey": key.as_str(), "reason": reason, "ts": now_ms() });
    state.broadcast(Broadcast::event(
        "sessions.changed",
        payload,
        "operator.read",
    ));
}

pub(super) async fn subscribe(call: Call, _value: Value) -> Result<Value, RpcError> {
    (call.subscriptions.all).store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(json!({ "subscribed": true }))
}

pub(super) async fn unsubscribe(call: Call, _value: Value) -> Result<Value, RpcError> {
    (call.subscriptions.all).store(false, std::sync::atomic::Ordering::Relaxed);
    Ok(json!({ "subscribed": false }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has them; Molt has one agent"
)]
struct MessagesSubscribe {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
}

pub(super) async fn messages_subscribe(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: MessagesSubscribe = params("sessions.messages.subscribe", value)?;
    let key = checked(&call.state, &p.key)?;
    call.subscriptions.lock().insert(key.as_str().to_owned());
    Ok(json!({ "subscribed": true, "key": key.as_str() }))
}

pub(super) async fn messages_unsubscribe(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: MessagesSubscribe = params("sessions.messages.unsubscribe", value)?;
    let key = checked(&call.state, &p.key)?;
    call.subscriptions.lock().remove(key.as_str());
    Ok(json!({ "subscribed": false, "key": key.as_str() }))
}
