//! Chat with the Control UI's session: `chat.*` and OpenClaw's `agent`.

use super::{Call, Reply, params, unavailable};
use crate::protocol::frames::RpcError;
use crate::protocol::{history_message, now_ms};
use crate::server::AppState;
use molt_core::inbox::Admission;
use molt_core::session::SessionKey;
use serde::Deserialize;
use serde_json::{Value, json};

/// The `sessionKey` of `chat.send`: the Control UI's session (the default);
/// the others belong to their channels.
fn session(state: &AppState, key: Option<&str>) -> Result<SessionKey, RpcError> {
    let main = state.chat.session();
    match key {
        None => Ok(main.clone()),
        Some(key) if key == main.as_str() || key == "main" => Ok(main.clone()),
        Some(key) => Err(RpcError::invalid(format!(
            "unknown sessionKey {key:?}; the Control UI session is {main}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatSend {
    session_key: Option<String>,
    message: String,
    idempotency_key: String,
}

pub(super) async fn chat_send(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChatSend = params("chat.send", value)?;
    session(&call.state, p.session_key.as_deref())?;
    if p.message.trim().is_empty() || p.message.contains('\0') {
        return Err(RpcError::invalid(
            "message must be non-empty text without NUL characters",
        ));
    }
    if p.idempotency_key.is_empty() {
        return Err(RpcError::invalid(
            "invalid chat.send params: idempotencyKey must be non-empty",
        ));
    }
    let now = molt_core::platform::Timestamp(now_ms());
    let message = call
        .state
        .chat
        .message(p.idempotency_key.clone(), p.message, now);
    match call.state.gateway.accept(message).await {
        Ok(Admission::Accepted(_)) => {
            call.state.metrics.message_in(crate::webchat::CHANNEL);
            Ok(json!({ "runId": p.idempotency_key, "status": "started" }))
        }
        Ok(Admission::Duplicate(_)) => {
            Ok(json!({ "runId": p.idempotency_key, "status": "in_flight" }))
        }
        // Not stored (store failure, or too many waiting): the client may retry.
        Err(err) => Err(unavailable(err)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Agent {
    message: String,
    idempotency_key: String,
    session_key: Option<String>,
}

/// OpenClaw's `agent` (what openclaw-node chats with): the run's id is the
/// idempotency key; it is acknowledged at once, streams as `agent` events,
/// and its final response comes when it ends.
pub(super) async fn agent(call: Call, value: Value) -> Reply {
    let p: Agent = match params("agent", value) {
        Ok(p) => p,
        Err(err) => return Reply::Now(Err(err)),
    };
    let send = json!({ "sessionKey": p.session_key, "message": p.message, "idempotencyKey": p.idempotency_key });
    match chat_send(call.clone(), send).await {
        Ok(started) if started["status"] == "started" => Reply::Accepted {
            ack: json!({ "runId": p.idempotency_key, "sessionKey": call.state.chat.session().as_str(),
                         "agentId": "main", "status": "accepted", "acceptedAt": now_ms() }),
            run_id: p.idempotency_key,
        },
        other => Reply::Now(other),
    }
}

/// A `sessionKey` to read or act on: the Control UI's session (the default),
/// or one a message has reached; any other is refused, so a client cannot make
/// the gateway load arbitrary sessions.
async fn listed(state: &AppState, key: Option<&str>) -> Result<SessionKey, RpcError> {
    let main = state.chat.session();
    if key.is_some_and(|key| {
        molt_core::store::key_segment(key).len() > super::sessions::MAX_KEY_SEGMENT
    }) {
        return Err(RpcError::invalid("sessionKey too long"));
    }
    match key.map(|key| super::sessions::resolve(state, key.trim())) {
        None => Ok(main.clone()),
        Some(key) if &key == main => Ok(key),
        Some(key) => match state.gateway.session_info(&key).await {
            Ok(Some(_)) => Ok(key),
            Ok(None) => Err(RpcError::invalid(format!("unknown session: {key}"))),
            Err(err) => Err(unavailable(err)),
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatHistory {
    session_key: Option<String>,
    limit: Option<u64>,
}

pub(super) async fn chat_history(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChatHistory = params("chat.history", value)?;
    let session = listed(&call.state, p.session_key.as_deref()).await?;
    let limit = p.limit.unwrap_or(200).clamp(1, 1000) as usize;
    let history = call
        .state
        .gateway
        .history(&session)
        .await
        .map_err(unavailable)?;
    let skip = history.messages.len().saturating_sub(limit);
    let messages: Vec<Value> = history.messages[skip..]
        .iter()
        .map(history_message)
        .collect();
    Ok(json!({ "sessionKey": session.as_str(), "messages": messages, "summary": history.summary }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatAbort {
    session_key: Option<String>,
}

pub(super) async fn chat_abort(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChatAbort = params("chat.abort", value)?;
    let session = listed(&call.state, p.session_key.as_deref()).await?;
    Ok(json!({ "ok": true, "aborted": call.state.gateway.abort(&session), "runIds": [] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted as OpenClaw's schema has it; Molt has one agent"
)]
struct ChatInject {
    session_key: String,
    message: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
}

/// The most characters of a `chat.inject` label.
const MAX_LABEL_CHARS: usize = 100;

/// Adds an assistant message to a session's conversation without a run; its
/// watchers see it as a `chat` final (run `inject-<id>`) and a `session.message`.
pub(super) async fn chat_inject(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChatInject = params("chat.inject", value)?;
    if p.message.trim().is_empty() || p.message.contains('\0') {
        return Err(RpcError::invalid(
            "invalid chat.inject params: message must be non-empty text without NUL characters",
        ));
    }
    if p.label.as_ref().is_some_and(|label| {
        label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control)
    }) {
        return Err(RpcError::invalid(format!(
            "invalid chat.inject params: label must be at most {MAX_LABEL_CHARS} characters, without control characters"
        )));
    }
    let state = &call.state;
    let session = listed(state, Some(&p.session_key)).await?;
    let text = match p.label.as_deref().filter(|label| !label.is_empty()) {
        Some(label) => format!("[{label}]\n\n{}", p.message),
        None => p.message,
    };
    let message = molt_core::message::Message::assistant(text.clone());
    (state.gateway.inject(&session, message.clone()).await)
        .map_err(|err| RpcError::unavailable(format!("failed to write transcript: {err}")))?;
    let message_id = crate::platform::random_token();
    let run_id = format!("inject-{message_id}");
    state.chat.injected(&session, &run_id, &text);
    state.broadcast(crate::protocol::Broadcast::SessionMessage {
        session_key: session.as_str().to_owned(),
        payload: json!({ "sessionKey": session.as_str(), "messageId": message_id,
                         "message": history_message(&message), "ts": now_ms() }),
    });
    Ok(json!({ "ok": true, "messageId": message_id }))
}
