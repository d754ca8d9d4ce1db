//! OpenClaw's gateway protocol over the WebSocket at `/` and `/ws`
//! (version 4, and 3 for older clients).
//!
//! The server opens with `connect.challenge {nonce, ts}`; the first frame must
//! be a `connect` request, whose admission ([`connect`]) checks the protocol
//! version, the gateway token or a device token, the device's signed proof and
//! its pairing. Then requests go through one table of methods ([`methods`]),
//! and the connection receives `chat` events, device pairing events for
//! operators who may pair, and a `tick` every 30 s.

pub mod connect;
pub mod frames;
pub mod methods;
pub mod presence;
pub mod runs;

use crate::server::AppState;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use connect::{Admitted, POLICY_VIOLATION};
use frames::{ClientFrame, ConnectParams, RequestFrame, RpcError, ServerFrame};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use molt_core::devices::scope_satisfied;
use molt_core::message::{ContentBlock, Message, Role};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The largest frame accepted once a connection is in.
pub const MAX_FRAME_BYTES: usize = 512 * 1024;
/// What may wait unsent for a slow client (the policy's `maxBufferedBytes`).
pub const MAX_BUFFERED_BYTES: usize = MAX_FRAME_BYTES * 4;
/// The read and write buffers a socket starts with.
pub const SOCKET_BUFFER_BYTES: usize = 8 * 1024;
/// The largest frame accepted before the handshake ends.
pub const MAX_PREAUTH_FRAME_BYTES: usize = 64 * 1024;
/// How often `tick` is sent.
pub const TICK_INTERVAL: Duration = Duration::from_secs(30);
/// How often a device's connection checks that the device is still paired
/// (a removal by another process, such as the CLI, is seen this late at most).
pub const DEVICE_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests one connection may have waiting for their responses at once.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 32;
const RETRY_AFTER_MS: u64 = 500;

/// Tokens presented on the upgrade request.
pub struct Presented {
    /// From `?token=`.
    pub query: Option<String>,
    /// From `Authorization: Bearer`.
    pub header: Option<String>,
    /// The client's address, for throttling failed attempts.
    pub client: std::net::IpAddr,
    /// The Cloudflare Access token of the upgrade (header or cookie), if any.
    pub access_token: Option<String>,
}

/// What the server tells every connection that may hear it.
#[derive(Clone, Debug)]
pub enum Broadcast {
    /// An event for connections holding `scope` (every connection when `None`).
    Event {
        /// The event's name.
        event: &'static str,
        /// Its payload.
        payload: Value,
        /// The scope a connection needs to receive it.
        scope: Option<&'static str>,
        /// The presence and health versions, for `presence` and `health`.
        state_version: Option<Value>,
    },
    /// A message joined a session's transcript: a `session.message` event
    /// for connections that subscribed to the session (and may read).
    SessionMessage {
        /// The session.
        session_key: String,
        /// The event's payload.
        payload: Value,
    },
    /// A device was unpaired or its token revoked: its connections close
    /// (4001 `device removed`).
    DeviceRemoved(String),
    /// The gateway is stopping: every connection hears `shutdown` and closes
    /// (1012 `service restart`).
    Shutdown {
        /// Why.
        reason: String,
        /// When the gateway expects to be back, if it restarts.
        restart_expected_ms: Option<u64>,
    },
}

impl Broadcast {
    /// An event for connections holding `scope`.
    pub fn event(event: &'static str, payload: Value, scope: &'static str) -> Self {
        Self::Event {
            event,
            payload,
            scope: Some(scope),
            state_version: None,
        }
    }

    /// `device.pair.resolved`: an operator decided request `request_id` of
    /// device `device_id` (`approved` or `rejected`), for those who may pair.
    pub fn pair_resolved(request_id: &str, device_id: &str, decision: &str) -> Self {
        let payload = json!({ "requestId": request_id, "deviceId": device_id,
                              "decision": decision, "ts": now_ms() });
        Self::event("device.pair.resolved", payload, "operator.pairing")
    }

    /// The `presence` event: who is connected now, for those who may read.
    pub fn presence(presence: &presence::Presence, versions: Value) -> Self {
        Self::Event {
            event: "presence",
            payload: json!({ "presence": presence.entries() }),
            scope: Some("operator.read"),
            state_version: Some(versions),
        }
    }
}

type Sink = SplitSink<WebSocket, WsMessage>;
type Stream = SplitStream<WebSocket>;

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
    let conn_id = uuid(&crate::platform::random_token());
    let nonce = uuid(&crate::platform::random_token());
    let challenge = json!({ "nonce": nonce, "ts": now_ms(), "capabilities": [] });
    if send(
        &mut sink,
        &ServerFrame::Event {
            event: "connect.challenge",
            payload: challenge,
            seq: None,
            state_version: None,
        },
    )
    .await
    .is_err()
    {
        return;
    }
    // Heard from before admission, so no removal between the two is missed.
    let broadcasts = state.subscribe();
    let handshake = handshake(&mut sink, &mut stream, &state, &presented, &nonce, &conn_id);
    let admitted = tokio::time::timeout(CONNECT_TIMEOUT, handshake).await;
    drop(waiting);
    let (conn, client, connect_id) = match admitted {
        Ok(Some(admitted)) => admitted,
        Ok(None) => return,
        Err(_) => {
            close(&mut sink, POLICY_VIOLATION, "no connect request within 5 s").await;
            return;
        }
    };
    tracing::info!(conn = %conn_id, device = ?conn.device_id, method = conn.method.as_str(), "a client connected");
    let versions = state.presence.join(presence::Joining {
        conn_id: &conn_id,
        client: &client,
        role: &conn.role,
        scopes: &conn.scopes,
        device_id: conn.device_id.as_deref(),
    });
    state.broadcast(Broadcast::presence(&state.presence, versions));
    let hello = hello(&state, &conn, &conn_id).await;
    if send(&mut sink, &ServerFrame::response(&connect_id, Ok(hello)))
        .await
        .is_ok()
    {
        run(
            sink,
            stream,
            state.clone(),
            Arc::new(conn),
            broadcasts,
            &conn_id,
        )
        .await;
    }
    let versions = state.presence.leave(&conn_id);
    state.broadcast(Broadcast::presence(&state.presence, versions));
    tracing::info!(conn = %conn_id, "a client disconnected");
}

/// Takes the first frame, which must be `connect`, and admits the connection
/// (returning the `connect` request's id, for `hello-ok`), or answers an
/// error and closes.
async fn handshake(
    sink: &mut Sink,
    stream: &mut Stream,
    state: &AppState,
    presented: &Presented,
    nonce: &str,
    conn_id: &str,
) -> Option<(Admitted, frames::ClientInfo, String)> {
    let text = loop {
        match stream.next().await? {
            Ok(WsMessage::Text(text)) => break text,
            Ok(WsMessage::Binary(_)) => {
                close(sink, POLICY_VIOLATION, "invalid request frame").await;
                return None;
            }
            Err(err) if too_large(&err) => {
                close(sink, 1009, "payload too large").await;
                return None;
            }
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    };
    if text.len() > MAX_PREAUTH_FRAME_BYTES {
        close(sink, 1009, "preauth payload too large").await;
        return None;
    }
    let request = match RequestFrame::parse(&text) {
        Ok(request) => request,
        Err((_, error)) => {
            tracing::warn!(conn = %conn_id, reason = %error.message, "refused a connection");
            close(sink, POLICY_VIOLATION, "invalid request frame").await;
            return None;
        }
    };
    let refuse = |error: RpcError| (error.clone(), frames::close_reason(&error.message));
    let refused = if request.method != "connect" {
        Some(refuse(RpcError::invalid(
            "invalid handshake: first request must be connect",
        )))
    } else {
        match serde_json::from_value::<ConnectParams>(request.params.clone())
            .map_err(|e| e.to_string())
            .and_then(|params| params.validate().map(|()| params))
        {
            Err(reason) => Some(refuse(RpcError::invalid(format!(
                "invalid connect params: {reason}"
            )))),
            Ok(params) => match connect::admit(state, &params, nonce, presented).await {
                Ok(admitted) => return Some((admitted, params.client, request.id)),
                Err(refusal) => {
                    tracing::warn!(conn = %conn_id, reason = %refusal.reason, "refused a connection");
                    let _ = send(
                        sink,
                        &ServerFrame::response(&request.id, Err(refusal.error)),
                    )
                    .await;
                    close(sink, refusal.code, &refusal.reason).await;
                    return None;
                }
            },
        }
    };
    if let Some((error, reason)) = refused {
        tracing::warn!(conn = %conn_id, %reason, "refused a connection");
        let _ = send(sink, &ServerFrame::response(&request.id, Err(error))).await;
        close(sink, POLICY_VIOLATION, &reason).await;
    }
    None
}

/// `hello-ok`: what the connection agreed and may do, and the state now.
async fn hello(state: &AppState, conn: &Admitted, conn_id: &str) -> Value {
    let mut auth =
        json!({ "method": conn.method.as_str(), "role": conn.role, "scopes": conn.scopes });
    if let Some(token) = &conn.device_token {
        auth["deviceToken"] = json!(token.token);
        auth["issuedAtMs"] = json!(token.rotated_at_ms.unwrap_or(token.created_at_ms).0);
    }
    let methods: Vec<&str> = (methods::METHODS.iter())
        .filter(|m| m.advertised)
        .map(|m| m.name)
        .collect();
    // Who is connected is for those who may read.
    let presence = match scope_satisfied("operator.read", &conn.scopes) {
        true => state.presence.entries(),
        false => Vec::new(),
    };
    json!({
        "type": "hello-ok",
        "protocol": conn.protocol,
        "server": { "version": env!("CARGO_PKG_VERSION"), "connId": conn_id },
        "features": { "methods": methods, "events": methods::EVENTS },
        "snapshot": {
            "presence": presence,
            "health": state.health().await,
            "stateVersion": state.presence.versions(),
            "uptimeMs": state.started.elapsed().as_millis() as u64,
            "sessionDefaults": {
                "defaultAgentId": "main",
                "mainKey": "main",
                "mainSessionKey": state.chat.session().as_str(),
            },
        },
        "auth": auth,
        "policy": {
            "maxPayload": MAX_FRAME_BYTES,
            "maxBufferedBytes": MAX_BUFFERED_BYTES,
            "tickIntervalMs": TICK_INTERVAL.as_millis() as u64,
        },
    })
}

/// A request being answered, and its id (`None` as the reply: cancelled).
type Answering = futures::future::BoxFuture<'static, (String, Option<methods::Reply>)>;

/// The answer to a cancelled request.
fn cancelled() -> RpcError {
    RpcError::invalid("request cancelled").with_details(json!({ "code": "CANCELLED" }))
}

/// Serves a connection that is in: requests (answered concurrently, each
/// response sent when ready), events, ticks.
async fn run(
    mut sink: Sink,
    mut stream: Stream,
    state: Arc<AppState>,
    conn: Arc<Admitted>,
    mut broadcasts: tokio::sync::broadcast::Receiver<Broadcast>,
    conn_id: &str,
) {
    let mut chat_events = state.chat.subscribe();
    let start = tokio::time::Instant::now() + TICK_INTERVAL;
    let mut tick = tokio::time::interval_at(start, TICK_INTERVAL);
    let first_check = tokio::time::Instant::now() + DEVICE_CHECK_INTERVAL;
    let mut device_check = tokio::time::interval_at(first_check, DEVICE_CHECK_INTERVAL);
    let may_read = scope_satisfied("operator.read", &conn.scopes);
    let subscriptions = Arc::new(methods::sessions::Subscriptions::default());
    let mut answering = futures::stream::FuturesUnordered::<Answering>::new();
    let mut in_flight = std::collections::HashMap::<String, futures::future::AbortHandle>::new();
    let mut agent_runs = runs::AgentRuns::default();
    let mut seq = 0;
    let mut event = |name: &str, payload: Value, state_version: Option<Value>| {
        seq += 1;
        let frame = ServerFrame::Event {
            event: name,
            payload,
            seq: Some(seq),
            state_version,
        };
        frame.to_text()
    };
    loop {
        let outgoing: Vec<String> = tokio::select! {
            // Every frame a client sends keeps the sandbox awake.
            frame = stream.next() => match frame.inspect(|_| state.activity.touch()) {
                Some(Ok(WsMessage::Text(text))) => match ClientFrame::parse(&text) {
                    Ok(ClientFrame::Request(request)) => {
                        if answering.len() >= MAX_REQUESTS_IN_FLIGHT {
                            let error = RpcError::unavailable("too many requests in flight; wait for their responses");
                            vec![ServerFrame::response(&request.id, Err(error.retryable(RETRY_AFTER_MS))).to_text()]
                        } else {
                            let call = methods::Call { state: state.clone(), conn: conn.clone(), subscriptions: subscriptions.clone() };
                            let (method, params) = (request.method, request.params);
                            let answer = async move { methods::dispatch(call, &method, params).await };
                            let (reply, handle) = futures::future::abortable(answer);
                            in_flight.insert(request.id.clone(), handle);
                            let id = request.id;
                            answering.push(Box::pin(async move { (id, reply.await.ok()) }));
                            Vec::new()
                        }
                    }
                    Ok(ClientFrame::Cancel { id }) => {
                        if let Some(handle) = in_flight.remove(&id) {
                            // Its future ends now, and is answered as cancelled.
                            handle.abort();
                            Vec::new()
                        } else if let Some(run_id) = agent_runs.cancel(&id) {
                            // The run's id is its message's: stopped even if it has not started yet.
                            state.gateway.abort_run(state.chat.session(), &run_id);
                            tracing::debug!(conn = %conn_id, run = %run_id, "an agent request was cancelled");
                            vec![ServerFrame::response(&id, Err(cancelled())).to_text()]
                        } else {
                            // Already answered (or never asked): nothing to stop.
                            Vec::new()
                        }
                    }
                    Err((id, error)) => vec![ServerFrame::response(&id, Err(error)).to_text()],
                },
                Some(Ok(WsMessage::Binary(_))) => {
                    let error = RpcError::invalid("invalid request frame: binary frames are not supported");
                    vec![ServerFrame::response("invalid", Err(error)).to_text()]
                }
                Some(Err(err)) if too_large(&err) => {
                    tracing::warn!(conn = %conn_id, "a client sent a frame over the limit");
                    close(&mut sink, 1009, "payload too large").await;
                    break;
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => Vec::new(),
            },
            Some((id, reply)) = answering.next(), if !answering.is_empty() => {
                in_flight.remove(&id);
                match reply {
                    Some(methods::Reply::Now(result)) => vec![ServerFrame::response(&id, result).to_text()],
                    Some(methods::Reply::Accepted { ack, run_id }) => {
                        agent_runs.wait_for(run_id, id.clone());
                        vec![ServerFrame::response(&id, Ok(ack)).to_text()]
                    }
                    None => vec![ServerFrame::response(&id, Err(cancelled())).to_text()],
                }
            }
            chat = chat_events.recv(), if may_read => match chat {
                Ok(payload) => {
                    let translated = agent_runs.on_chat(&payload, now_ms());
                    let mut frames = vec![event("chat", payload, None)];
                    frames.extend(translated.events.into_iter().map(|agent| event("agent", agent, None)));
                    if let Some((id, result)) = translated.response {
                        frames.push(ServerFrame::response(&id, result).to_text());
                    }
                    frames
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(conn = %conn_id, missed, "a slow client missed chat events");
                    // The runs' ends may be among them: the waiting requests are told.
                    let error = || RpcError::unavailable("the run's events were missed; read chat.history");
                    (agent_runs.abandon().iter())
                        .map(|id| ServerFrame::response(id, Err(error())).to_text())
                        .collect()
                }
                Err(RecvError::Closed) => break,
            },
            broadcast = broadcasts.recv() => match broadcast {
                Ok(Broadcast::Event { event: name, payload, scope, state_version })
                    if scope.is_none_or(|scope| scope_satisfied(scope, &conn.scopes)) =>
                {
                    vec![event(name, payload, state_version)]
                }
                Ok(Broadcast::SessionMessage { session_key, payload })
                    if may_read && subscriptions.wants(&session_key) =>
                {
                    vec![event("session.message", payload, None)]
                }
                Ok(Broadcast::DeviceRemoved(device)) if conn.device_id.as_deref() == Some(device.as_str()) => {
                    close(&mut sink, 4001, "device removed").await;
                    break;
                }
                Ok(Broadcast::Shutdown { reason, restart_expected_ms }) => {
                    let mut payload = json!({ "reason": reason });
                    if let Some(ms) = restart_expected_ms {
                        payload["restartExpectedMs"] = json!(ms);
                    }
                    let text = event("shutdown", payload, None);
                    let _ = sink.send(WsMessage::Text(text.into())).await;
                    close(&mut sink, 1012, "service restart").await;
                    break;
                }
                Ok(_) => Vec::new(),
                // A removal may be among what was missed: ask the store.
                Err(RecvError::Lagged(_)) => {
                    if !still_paired(&state, &conn).await {
                        close(&mut sink, 4001, "device removed").await;
                        break;
                    }
                    Vec::new()
                }
                Err(RecvError::Closed) => break,
            },
            _ = device_check.tick(), if conn.device_id.is_some() => {
                // A device removed by another process (`moltworker devices remove`) goes now.
                if !still_paired(&state, &conn).await {
                    close(&mut sink, 4001, "device removed").await;
                    break;
                }
                Vec::new()
            }
            _ = tick.tick() => vec![event("tick", json!({ "ts": now_ms() }), None)],
        };
        for text in outgoing {
            if sink.send(WsMessage::Text(text.into())).await.is_err() {
                return;
            }
        }
    }
}

/// Whether the connection's device (if it has one) is still paired for its
/// role and scopes, and (when it came in with its token) that token still live.
async fn still_paired(state: &AppState, conn: &Admitted) -> bool {
    let (Some(device), Some(key)) = (&conn.device_id, &conn.public_key) else {
        return true;
    };
    let standing = state
        .devices
        .standing(device, key, &conn.role, &conn.scopes)
        .await;
    match standing {
        Ok(molt_core::devices::Standing::Paired(paired)) => {
            conn.method != connect::AuthMethod::DeviceToken
                || paired
                    .tokens
                    .get(&conn.role)
                    .is_some_and(|token| token.revoked_at_ms.is_none())
        }
        Ok(_) => false,
        // A store that cannot be read keeps the connection: the next tick asks again.
        Err(_) => true,
    }
}

/// How often every connection hears the `health` snapshot.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(60);

/// Sends the `health` event every [`HEALTH_INTERVAL`]; never completes.
pub async fn broadcast_health(state: Arc<AppState>) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + HEALTH_INTERVAL,
        HEALTH_INTERVAL,
    );
    loop {
        every.tick().await;
        let payload = state.health().await;
        state.broadcast(Broadcast::Event {
            event: "health",
            payload,
            scope: None,
            state_version: Some(state.presence.bump_health()),
        });
    }
}

/// The `session.message` a run event brings, if any: the user's turn as the
/// run starts, then each message the run adds (tool calls, their results,
/// the answer) as it is made.
pub fn session_message(event: &molt_core::gateway::RunEvent) -> Option<Broadcast> {
    use molt_core::agent::AgentEvent;
    use molt_core::gateway::RunEventKind;
    let mut message = match &event.kind {
        RunEventKind::Started { text } => {
            json!({ "role": "user", "content": [{ "type": "text", "text": text }] })
        }
        RunEventKind::Agent(AgentEvent::Message(message)) => history_message(message),
        _ => return None,
    };
    let now = now_ms();
    message["timestamp"] = json!(now);
    let session_key = event.session.as_str().to_owned();
    let payload = json!({ "sessionKey": session_key, "runId": event.run_id, "channel": event.channel,
                          "message": message, "hasActiveRun": true, "activeRunIds": [event.run_id], "ts": now });
    Some(Broadcast::SessionMessage {
        session_key,
        payload,
    })
}

/// A transcript message in the shape OpenClaw's `chat.history` uses.
pub(crate) fn history_message(message: &Message) -> Value {
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
            ContentBlock::Image { .. } => Some(json!({ "type": "text", "text": "[image]" })),
            ContentBlock::ToolResult { .. } => None,
        })
        .collect();
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    json!({ "role": role, "content": content })
}

/// 32 hex digits as a UUID (version 4 layout).
fn uuid(hex: &str) -> String {
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

async fn send(sink: &mut Sink, frame: &ServerFrame<'_>) -> Result<(), axum::Error> {
    sink.send(WsMessage::Text(frame.to_text().into())).await
}

/// Whether a read failed on a frame or message over [`MAX_FRAME_BYTES`]
/// (the WebSocket library's capacity error, which axum passes on as text).
fn too_large(err: &axum::Error) -> bool {
    err.to_string().contains("Space limit exceeded")
}

async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: frames::close_reason(reason).into(),
    };
    let _ = sink.send(WsMessage::Close(Some(frame))).await;
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Entry point for fuzzing (feature `fuzzing`, used by the `fuzz/` crate):
/// parses one WebSocket text frame as the server does, and a `connect`'s parameters.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_frame(text: &str) {
    if let Ok(request) = RequestFrame::parse(text) {
        let _ = serde_json::from_value::<ConnectParams>(request.params).map(|p| p.validate());
    }
}
