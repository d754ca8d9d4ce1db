//! The methods a connection may call: one table from name to scope and
//! handler, each handler a plain async function with typed parameters.

use super::connect::Admitted;
use super::frames::{ErrorCode, RpcError};
use super::{Broadcast, history_message, now_ms};
use crate::server::AppState;
use futures::FutureExt;
use futures::future::BoxFuture;
use molt_core::devices::{DevicesError, PairedDevice, scope_satisfied, scopes_satisfied};
use molt_core::inbox::Admission;
use molt_core::session::SessionKey;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// What a handler gets: the server's state and the calling connection.
#[derive(Clone)]
pub struct Call {
    /// The server.
    pub state: Arc<AppState>,
    /// The caller.
    pub conn: Arc<Admitted>,
}

/// What a method answers.
#[derive(Debug)]
pub enum Reply {
    /// One response, now.
    Now(Result<Value, RpcError>),
    /// An acknowledgement now, and the final response once run `run_id`
    /// ends (OpenClaw's `agent`: two responses on one request id).
    Accepted {
        /// The acknowledgement.
        ack: Value,
        /// The run whose end brings the final response.
        run_id: String,
    },
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(result: Result<Value, RpcError>) -> Self {
        Reply::Now(result)
    }
}

type Handler = fn(Call, Value) -> BoxFuture<'static, Reply>;

/// A method: its name, the scope it needs (`None`: any connection), its handler.
pub struct Method {
    /// The method's name.
    pub name: &'static str,
    /// The scope a caller must hold.
    pub scope: Option<&'static str>,
    handler: Handler,
}

const READ: Option<&str> = Some("operator.read");
const WRITE: Option<&str> = Some("operator.write");
const PAIRING: Option<&str> = Some("operator.pairing");

/// A method whose handler answers once.
macro_rules! method {
    ($name:literal, $scope:expr, $handler:ident) => {
        Method {
            name: $name,
            scope: $scope,
            handler: |c, p| $handler(c, p).map(Reply::from).boxed(),
        }
    };
}

/// Every method, in the order `hello-ok` lists them.
pub const METHODS: &[Method] = &[
    method!("health", None, health),
    method!("status", READ, status),
    method!("chat.send", WRITE, chat_send),
    method!("chat.history", READ, chat_history),
    method!("chat.abort", WRITE, chat_abort),
    Method {
        name: "agent",
        scope: WRITE,
        handler: |c, p| agent(c, p).boxed(),
    },
    method!("sessions.list", READ, sessions_list),
    method!("device.pair.list", PAIRING, pair_list),
    method!("device.pair.approve", PAIRING, pair_approve),
    method!("device.pair.reject", PAIRING, pair_reject),
    method!("device.pair.remove", PAIRING, pair_remove),
    method!("device.token.rotate", PAIRING, token_rotate),
    method!("device.token.revoke", PAIRING, token_revoke),
];

/// The events a connection may receive.
pub const EVENTS: [&str; 6] = [
    "connect.challenge",
    "chat",
    "agent",
    "tick",
    "device.pair.requested",
    "device.pair.resolved",
];

/// Calls `method` for `call`: the scope first (an unknown method needs
/// `operator.admin`, as in OpenClaw), then the handler.
pub async fn dispatch(call: Call, method: &str, params: Value) -> Reply {
    let found = METHODS.iter().find(|m| m.name == method);
    let scope = found.map_or(Some("operator.admin"), |m| m.scope);
    if let Some(scope) = scope
        && !scope_satisfied(scope, &call.conn.scopes)
    {
        let details =
            json!({ "code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope] });
        let error = RpcError::new(ErrorCode::Forbidden, format!("missing scope: {scope}"));
        return Reply::Now(Err(error.with_details(details)));
    }
    match found {
        Some(method) => (method.handler)(call, params).await,
        None if method == "connect" => Reply::Now(Err(RpcError::invalid(
            "connect is only valid as the first request",
        ))),
        None => Reply::Now(Err(RpcError::invalid(format!("unknown method: {method}")))),
    }
}

/// `params` as `T`, or OpenClaw's `invalid <method> params` error.
fn params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params)
        .map_err(|err| RpcError::invalid(format!("invalid {method} params: {err}")))
}

fn unavailable(err: impl std::fmt::Display) -> RpcError {
    RpcError::unavailable(err.to_string())
}

async fn health(_call: Call, _params: Value) -> Result<Value, RpcError> {
    Ok(json!({ "ok": true, "ts": now_ms() }))
}

async fn status(call: Call, _params: Value) -> Result<Value, RpcError> {
    Ok(call.state.status())
}

/// The `sessionKey` parameter: the Control UI's session (the default); any
/// other key is refused, so a client cannot make the gateway load arbitrary sessions.
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

async fn chat_send(call: Call, value: Value) -> Result<Value, RpcError> {
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
async fn agent(call: Call, value: Value) -> Reply {
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

async fn sessions_list(call: Call, _params: Value) -> Result<Value, RpcError> {
    let session = call.state.chat.session();
    let history = call
        .state
        .gateway
        .history(session)
        .await
        .map_err(unavailable)?;
    let row = json!({ "key": session.as_str(), "kind": "direct", "channel": crate::webchat::CHANNEL,
                      "agentId": "main", "messageCount": history.messages.len(),
                      "hasActiveRun": call.state.gateway.busy_sessions() > 0 });
    Ok(
        json!({ "ts": now_ms(), "count": 1, "totalCount": 1, "hasMore": false, "nextOffset": null,
               "sessions": [row] }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatHistory {
    session_key: Option<String>,
    limit: Option<u64>,
}

async fn chat_history(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChatHistory = params("chat.history", value)?;
    let session = session(&call.state, p.session_key.as_deref())?;
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

async fn chat_abort(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: ChatAbort = params("chat.abort", value)?;
    let session = session(&call.state, p.session_key.as_deref())?;
    Ok(json!({ "ok": true, "aborted": call.state.gateway.abort(&session), "runIds": [] }))
}

/// A paired device as `device.pair.list` shows it: tokens summarised, never shown.
pub fn redacted(device: &PairedDevice) -> Value {
    let mut value = serde_json::to_value(device).unwrap_or_default();
    let tokens: Vec<Value> = (device.tokens.iter())
        .map(|(role, token)| {
            json!({ "role": role, "scopes": token.scopes, "createdAtMs": token.created_at_ms.0,
                    "rotatedAtMs": token.rotated_at_ms.map(|t| t.0), "revokedAtMs": token.revoked_at_ms.map(|t| t.0) })
        })
        .collect();
    value["tokens"] = json!(tokens);
    value
}

/// Whether the caller may act on device `device_id`: an admin on any, a
/// device on itself only.
fn may_manage(call: &Call, device_id: &str) -> bool {
    scope_satisfied("operator.admin", &call.conn.scopes)
        || call.conn.device_id.as_deref() == Some(device_id)
}

async fn pair_list(call: Call, _params: Value) -> Result<Value, RpcError> {
    let devices = &call.state.devices;
    let mut pending = devices.pending().await.map_err(unavailable)?;
    let mut paired = devices.paired().await.map_err(unavailable)?;
    // A device that is not an admin sees only itself.
    pending.retain(|request| may_manage(&call, &request.device_id));
    paired.retain(|device| may_manage(&call, &device.device_id));
    let paired: Vec<Value> = paired.iter().map(redacted).collect();
    Ok(json!({ "pending": pending, "paired": paired }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestId {
    request_id: String,
}

fn devices_error(err: DevicesError) -> RpcError {
    match err {
        DevicesError::Store(err) => unavailable(err),
        other => RpcError::invalid(other.to_string()),
    }
}

async fn pair_approve(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: RequestId = params("device.pair.approve", value)?;
    // An operator grants only scopes it holds itself.
    let granted = Some(call.conn.scopes.as_slice());
    let device =
        (call.state.devices.approve(&p.request_id, granted).await).map_err(|err| match err {
            DevicesError::NotApproved => RpcError::invalid("device pairing approval denied"),
            other => devices_error(other),
        })?;
    tracing::info!(device = %device.device_id, "a device was paired");
    resolved(&call.state, &p.request_id, &device.device_id, "approved");
    Ok(json!({ "requestId": p.request_id, "device": redacted(&device) }))
}

async fn pair_reject(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: RequestId = params("device.pair.reject", value)?;
    let request = call
        .state
        .devices
        .reject(&p.request_id)
        .await
        .map_err(devices_error)?;
    resolved(&call.state, &p.request_id, &request.device_id, "rejected");
    Ok(json!({ "requestId": p.request_id, "deviceId": request.device_id }))
}

fn resolved(state: &AppState, request_id: &str, device_id: &str, decision: &str) {
    let payload = json!({ "requestId": request_id, "deviceId": device_id, "decision": decision, "ts": now_ms() });
    state.broadcast(Broadcast::event(
        "device.pair.resolved",
        payload,
        "operator.pairing",
    ));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceId {
    device_id: String,
}

async fn pair_remove(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: DeviceId = params("device.pair.remove", value)?;
    if !may_manage(&call, &p.device_id) {
        return Err(RpcError::invalid("device removal denied"));
    }
    call.state
        .devices
        .remove(&p.device_id)
        .await
        .map_err(devices_error)?;
    call.state
        .broadcast(Broadcast::DeviceRemoved(p.device_id.clone()));
    Ok(json!({ "deviceId": p.device_id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRotate {
    device_id: String,
    role: String,
    scopes: Option<Vec<String>>,
}

async fn token_rotate(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: TokenRotate = params("device.token.rotate", value)?;
    let denied = || RpcError::invalid("device token rotation denied");
    // A device rotates only its own token, and never beyond what it holds.
    if !may_manage(&call, &p.device_id) {
        return Err(denied());
    }
    let current = (call
        .state
        .devices
        .device(&p.device_id)
        .await
        .map_err(unavailable)?)
    .and_then(|device| device.tokens.get(&p.role).map(|token| token.scopes.clone()));
    let scopes = p.scopes.clone().or(current).unwrap_or_default();
    if !scopes_satisfied(&scopes, &call.conn.scopes) {
        return Err(denied());
    }
    let token = (call
        .state
        .devices
        .rotate_token(&p.device_id, &p.role, p.scopes)
        .await)
        .map_err(|err| match err {
            DevicesError::Store(err) => unavailable(err),
            _ => RpcError::invalid("device token rotation denied"),
        })?;
    let mut answer = json!({ "deviceId": p.device_id, "role": p.role, "scopes": token.scopes,
                             "rotatedAtMs": token.rotated_at_ms.map(|t| t.0) });
    // The new token goes only to the device itself, signed in with its token.
    let itself = call.conn.device_id.as_deref() == Some(p.device_id.as_str())
        && call.conn.method == super::connect::AuthMethod::DeviceToken;
    if itself {
        answer["token"] = json!(token.token);
        answer["tokenDelivery"] = json!("in-band");
    } else {
        answer["tokenDelivery"] = json!("withheld-cross-device");
    }
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRevoke {
    device_id: String,
    role: String,
}

async fn token_revoke(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: TokenRevoke = params("device.token.revoke", value)?;
    if !may_manage(&call, &p.device_id) {
        return Err(RpcError::invalid("device token revocation denied"));
    }
    let revoked = (call.state.devices.revoke_token(&p.device_id, &p.role).await).map_err(
        |err| match err {
            DevicesError::Store(err) => unavailable(err),
            _ => RpcError::invalid("device token revocation denied"),
        },
    )?;
    call.state
        .broadcast(Broadcast::DeviceRemoved(p.device_id.clone()));
    Ok(json!({ "deviceId": p.device_id, "role": p.role, "revokedAtMs": revoked.0 }))
}
