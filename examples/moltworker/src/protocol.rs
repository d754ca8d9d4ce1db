//! The Control UI WebSocket: JSON frames shaped like the OpenClaw gateway protocol.
//!
//! Requests `{type:"req",id,method,params}` get responses
//! `{type:"res",id,ok,payload|error}`; the server pushes
//! `{type:"event",event,payload,seq}`. The server opens with a
//! `connect.challenge` event; the first request must be `connect`, carrying the
//! gateway token unless the upgrade request already did (`?token=` or
//! `Authorization: Bearer`). A wrong or missing token closes the socket with
//! code 1008 and a clear reason. A malformed frame gets an error response and
//! the connection stays open.

use crate::auth::{self, AuthResult};
use crate::server::AppState;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use molt_core::inbox::Admission;
use molt_core::message::{ContentBlock, Message, Role};
use molt_core::session::SessionKey;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The largest frame accepted.
pub const MAX_FRAME_BYTES: usize = 512 * 1024;
/// The protocol version spoken (OpenClaw's version 3: cumulative chat deltas).
pub const PROTOCOL_VERSION: u64 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const METHODS: [&str; 6] = [
    "connect",
    "chat.send",
    "chat.history",
    "chat.abort",
    "status",
    "health",
];
const POLICY_VIOLATION: u16 = 1008;
const PROTOCOL_ERROR: u16 = 1002;

/// Tokens presented on the upgrade request.
pub struct Presented {
    /// From `?token=`.
    pub query: Option<String>,
    /// From `Authorization: Bearer`.
    pub header: Option<String>,
    /// The client's address, for throttling failed attempts.
    pub client: std::net::IpAddr,
}

/// An error response.
struct RpcError {
    code: &'static str,
    message: String,
    details: Option<Value>,
}

impl RpcError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: "INVALID_REQUEST",
            message: message.into(),
            details: None,
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: "UNAVAILABLE",
            message: message.into(),
            details: None,
        }
    }
}

struct Request {
    id: String,
    method: String,
    params: Value,
}

type Sink = SplitSink<WebSocket, WsMessage>;

/// Serves one WebSocket connection until it closes.
///
/// `waiting` holds the socket's place among those waiting to authenticate;
/// it is given back once the handshake ends, whichever way.
pub async fn serve(
    socket: WebSocket,
    state: Arc<AppState>,
    presented: Presented,
    waiting: Option<crate::server::WaitingPlace>,
) {
    let (mut sink, mut stream) = socket.split();
    let conn_id = crate::platform::random_token()[..16].to_owned();
    let challenge = json!({ "nonce": crate::platform::random_token(), "ts": now_ms() });
    if send(&mut sink, event_frame("connect.challenge", challenge, None))
        .await
        .is_err()
    {
        return;
    }
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        handshake(&mut sink, &mut stream, &state, &presented, &conn_id),
    )
    .await;
    drop(waiting);
    match connected {
        Ok(true) => {}
        Ok(false) => return,
        Err(_) => {
            close(&mut sink, POLICY_VIOLATION, "no connect request within 5 s").await;
            return;
        }
    }
    tracing::info!(conn = %conn_id, "control UI connected");

    let mut chat_events = state.chat.subscribe();
    let mut seq = 0;
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let response = match parse(&text) {
                        Ok(request) => {
                            let result = handle(&state, &request).await;
                            response_frame(&request.id, result)
                        }
                        Err((id, error)) => response_frame(&id, Err(error)),
                    };
                    if send(&mut sink, response).await.is_err() {
                        break;
                    }
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    let error = RpcError::invalid("binary frames are not supported; send JSON text frames");
                    if send(&mut sink, response_frame("", Err(error))).await.is_err() {
                        break;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            event = chat_events.recv() => match event {
                Ok(payload) => {
                    seq += 1;
                    if send(&mut sink, event_frame("chat", payload, Some(seq))).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(missed)) => tracing::warn!(conn = %conn_id, missed, "a slow client missed chat events"),
                Err(RecvError::Closed) => break,
            },
        }
    }
    tracing::info!(conn = %conn_id, "control UI disconnected");
}

/// Waits for `connect`, answering anything else with an error. Returns whether the client is in.
async fn handshake(
    sink: &mut Sink,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    state: &AppState,
    presented: &Presented,
    conn_id: &str,
) -> bool {
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(WsMessage::Text(text)) => text,
            Ok(WsMessage::Close(_)) | Err(_) => return false,
            Ok(_) => continue,
        };
        let request = match parse(&text) {
            Ok(request) if request.method == "connect" => request,
            Ok(request) => {
                let error = RpcError::invalid(format!(
                    "the first request must be connect, not {}",
                    request.method
                ));
                if send(sink, response_frame(&request.id, Err(error)))
                    .await
                    .is_err()
                {
                    return false;
                }
                continue;
            }
            Err((id, error)) => {
                if send(sink, response_frame(&id, Err(error))).await.is_err() {
                    return false;
                }
                continue;
            }
        };
        let params = &request.params;
        let min = params["minProtocol"].as_u64().unwrap_or(PROTOCOL_VERSION);
        let max = params["maxProtocol"].as_u64().unwrap_or(PROTOCOL_VERSION);
        if !(min..=max).contains(&PROTOCOL_VERSION) {
            let details =
                json!({ "code": "PROTOCOL_MISMATCH", "expectedProtocol": PROTOCOL_VERSION });
            let error = RpcError {
                code: "INVALID_REQUEST",
                message: "protocol mismatch".into(),
                details: Some(details),
            };
            let _ = send(sink, response_frame(&request.id, Err(error))).await;
            close(sink, PROTOCOL_ERROR, "protocol mismatch").await;
            return false;
        }
        let frame_token = params["auth"]["token"].as_str();
        let result = auth::check(
            &state.token,
            [
                presented.query.as_deref(),
                presented.header.as_deref(),
                frame_token,
            ],
        );
        if let Some((detail, message)) = result.refusal() {
            tracing::warn!(conn = %conn_id, reason = detail, "refused a control UI connection");
            state.failed_attempt(presented.client, result);
            let error = RpcError {
                code: "INVALID_REQUEST",
                message: message.into(),
                details: Some(json!({ "code": detail })),
            };
            let _ = send(sink, response_frame(&request.id, Err(error))).await;
            close(sink, POLICY_VIOLATION, message).await;
            return false;
        }
        debug_assert_eq!(result, AuthResult::Ok);
        let hello = json!({
            "type": "hello-ok",
            "protocol": PROTOCOL_VERSION,
            "server": { "version": env!("CARGO_PKG_VERSION"), "connId": conn_id },
            "features": { "methods": METHODS, "events": ["connect.challenge", "chat"] },
            "snapshot": {
                "sessionDefaults": { "mainSessionKey": state.chat.session().as_str() },
                "model": state.model_status(),
            },
            "policy": { "maxPayload": MAX_FRAME_BYTES, "maxBufferedBytes": MAX_FRAME_BYTES * 4, "tickIntervalMs": 30_000 },
        });
        return send(sink, response_frame(&request.id, Ok(hello)))
            .await
            .is_ok();
    }
    false
}

/// Parses a request frame; on failure returns the id (when readable) and the error.
fn parse(text: &str) -> Result<Request, (String, RpcError)> {
    let value: Value = serde_json::from_str(text).map_err(|err| {
        (
            String::new(),
            RpcError::invalid(format!("malformed JSON: {err}")),
        )
    })?;
    let id = value["id"].as_str().unwrap_or_default().to_owned();
    if value["type"] != "req" {
        return Err((
            id,
            RpcError::invalid(
                "expected a request frame: {\"type\":\"req\",\"id\",\"method\",\"params\"}",
            ),
        ));
    }
    if id.is_empty() {
        return Err((
            id,
            RpcError::invalid("a request needs a non-empty string id"),
        ));
    }
    let Some(method) = value["method"].as_str() else {
        return Err((id, RpcError::invalid("a request needs a string method")));
    };
    let params = value.get("params").cloned().unwrap_or(Value::Null);
    Ok(Request {
        id,
        method: method.to_owned(),
        params,
    })
}

async fn handle(state: &AppState, request: &Request) -> Result<Value, RpcError> {
    let params = &request.params;
    match request.method.as_str() {
        "connect" => Err(RpcError::invalid("already connected")),
        "health" => Ok(json!({ "ok": true })),
        "status" => Ok(state.status()),
        "chat.send" => {
            session_param(state, params)?; // checked; the message goes to the Control UI session
            let text = required_str(params, "message")?;
            let key = required_str(params, "idempotencyKey")?;
            if text.trim().is_empty() || text.contains('\0') {
                return Err(RpcError::invalid(
                    "message must be non-empty text without NUL characters",
                ));
            }
            let message = state.chat.message(
                key.to_owned(),
                text.to_owned(),
                molt_core::platform::Timestamp(now_ms()),
            );
            match state.gateway.accept(message).await {
                Ok(Admission::Accepted(_)) => Ok(json!({ "runId": key, "status": "started" })),
                Ok(Admission::Duplicate(_)) => Ok(json!({ "runId": key, "status": "in_flight" })),
                // Not stored (store failure, or too many waiting): the client may retry.
                Err(err) => Err(RpcError::unavailable(err.to_string())),
            }
        }
        "chat.history" => {
            let session = session_param(state, params)?;
            let limit = params["limit"].as_u64().unwrap_or(200).clamp(1, 1000) as usize;
            let history = state
                .gateway
                .history(&session)
                .await
                .map_err(|err| RpcError::unavailable(err.to_string()))?;
            let skip = history.messages.len().saturating_sub(limit);
            let messages: Vec<Value> = history.messages[skip..]
                .iter()
                .map(history_message)
                .collect();
            Ok(
                json!({ "sessionKey": session.as_str(), "messages": messages, "summary": history.summary }),
            )
        }
        "chat.abort" => {
            let session = session_param(state, params)?;
            Ok(json!({ "ok": true, "aborted": state.gateway.abort(&session) }))
        }
        other => Err(RpcError::invalid(format!(
            "unknown method {other:?}; methods: {}",
            METHODS.join(", ")
        ))),
    }
}

/// The `sessionKey` parameter: the Control UI's session (the default); any
/// other key is refused, so a client cannot make the gateway load arbitrary sessions.
fn session_param(state: &AppState, params: &Value) -> Result<SessionKey, RpcError> {
    let main = state.chat.session();
    match params.get("sessionKey") {
        None | Some(Value::Null) => Ok(main.clone()),
        Some(Value::String(key)) if key == main.as_str() => Ok(main.clone()),
        Some(Value::String(key)) => Err(RpcError::invalid(format!(
            "unknown sessionKey {key:?}; the Control UI session is {main}"
        ))),
        Some(_) => Err(RpcError::invalid("sessionKey must be a string")),
    }
}

fn required_str<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params[name]
        .as_str()
        .ok_or_else(|| RpcError::invalid(format!("params.{name} is required and must be a string")))
}

/// A transcript message in the shape OpenClaw's `chat.history` uses.
fn history_message(message: &Message) -> Value {
    let results: Vec<Value> = message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolResult {
                content, is_error, ..
            } => Some(json!({ "type": "text", "text": content, "isError": is_error })),
            _ => None,
        })
        .collect();
    if !results.is_empty() {
        return json!({ "role": "toolResult", "content": results });
    }
    let content: Vec<Value> = message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(json!({ "type": "text", "text": text })),
            ContentBlock::ToolUse { name, input, .. } => {
                Some(json!({ "type": "toolCall", "name": name, "arguments": input }))
            }
            ContentBlock::Image { url, .. } => Some(json!({ "type": "image", "url": url })),
            ContentBlock::ToolResult { .. } => None,
        })
        .collect();
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    json!({ "role": role, "content": content })
}

fn response_frame(id: &str, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(payload) => json!({ "type": "res", "id": id, "ok": true, "payload": payload }),
        Err(error) => {
            let mut shape = json!({ "code": error.code, "message": error.message });
            if let Some(details) = error.details {
                shape["details"] = details;
            }
            json!({ "type": "res", "id": id, "ok": false, "error": shape })
        }
    }
}

fn event_frame(event: &str, payload: Value, seq: Option<u64>) -> Value {
    let mut frame = json!({ "type": "event", "event": event, "payload": payload });
    if let Some(seq) = seq {
        frame["seq"] = json!(seq);
    }
    frame
}

async fn send(sink: &mut Sink, frame: Value) -> Result<(), axum::Error> {
    sink.send(WsMessage::Text(frame.to_string().into())).await
}

async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(WsMessage::Close(Some(frame))).await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Entry point for fuzzing (feature `fuzzing`, used by the `fuzz/` crate):
/// parses one WebSocket text frame as the server does.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_frame(text: &str) {
    let _ = parse(text);
}
