//! HTTP routes: health, status, the Control UI page, and the WebSocket upgrade.
//!
//! Only `/health` and the Control UI page (which holds no secret) are public.
//! `/api/status` needs the gateway token. A client that fails the token ten
//! times in a minute is refused (429) without its token being looked at
//! until the minute is over, and at most [`MAX_PENDING_HANDSHAKES`]
//! WebSockets (two per address) may wait to authenticate at once.

use crate::auth::{self, AuthResult};
use crate::protocol;
use crate::webchat::ChatStream;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use molt_ai_gateway::listen::ClientAddress;
use molt_core::Secret;
use molt_core::gateway::Gateway;
use molt_core::platform::Clock;
use molt_core::throttle::{AttemptThrottle, client_key};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// WebSockets that may wait for their `connect` frame at once. Each may buffer
/// one frame of up to [`crate::protocol::MAX_FRAME_BYTES`] before its token
/// is checked, so this bounds what strangers can make the gateway hold.
pub const MAX_PENDING_HANDSHAKES: usize = 16;
/// Of those, the most one client address may hold, so one stranger cannot
/// keep the Control UI out.
pub const MAX_PENDING_PER_ADDRESS: u32 = 2;

/// Places for WebSockets waiting to authenticate: [`MAX_PENDING_HANDSHAKES`]
/// in all, [`MAX_PENDING_PER_ADDRESS`] per client address.
#[derive(Default)]
pub struct WaitingRoom {
    by_address: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>>,
}

/// A socket's place in the [`WaitingRoom`], given back when it drops.
pub struct WaitingPlace {
    by_address: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>>,
    client: std::net::IpAddr,
}

impl WaitingRoom {
    /// A place for `client`, when there is one.
    pub fn enter(&self, client: std::net::IpAddr) -> Option<WaitingPlace> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let total: u32 = by_address.values().sum();
        let mine = by_address.get(&client).copied().unwrap_or(0);
        if total as usize >= MAX_PENDING_HANDSHAKES || mine >= MAX_PENDING_PER_ADDRESS {
            return None;
        }
        by_address.insert(client, mine + 1);
        Some(WaitingPlace {
            by_address: self.by_address.clone(),
            client,
        })
    }
}

impl Drop for WaitingPlace {
    fn drop(&mut self) {
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = by_address.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.client);
            }
        }
    }
}

const CONTROL_UI: &str = include_str!("../ui/index.html");

/// What the HTTP handlers share.
pub struct AppState {
    /// The message pipeline.
    pub gateway: Gateway,
    /// The Control UI's channel.
    pub chat: ChatStream,
    /// The token the Control UI and WebSocket require.
    pub token: Secret,
    /// When the process started.
    pub started: Instant,
    /// When the gateway last served anything (for `/health`'s `idleSeconds`).
    pub activity: crate::activity::Activity,
    /// Whether a real model provider answers (not the offline echo model).
    pub model_configured: bool,
    /// The mirror of the state directory to a bucket, when one is configured.
    pub mirror: Option<std::sync::Arc<molt_storage::StateMirror>>,
    /// Failed token attempts, per client address.
    pub throttle: AttemptThrottle,
    /// Places for WebSockets waiting to authenticate.
    pub handshakes: WaitingRoom,
    /// Paired devices and pairing requests.
    pub devices: molt_core::devices::DeviceBook,
    /// The state's store (channel pairing lives there).
    pub store: Arc<dyn molt_core::store::Store>,
    /// Cloudflare Access, when configured: it then guards the operator's routes.
    pub access: Option<crate::access_gate::AccessGate>,
    /// Proxies whose forwarded client addresses are believed (`MOLT_TRUSTED_PROXIES`).
    pub trusted_proxies: molt_ai_gateway::listen::TrustedProxies,
    /// Events and decisions every connection hears.
    pub broadcasts: tokio::sync::broadcast::Sender<protocol::Broadcast>,
    /// Who is connected.
    pub presence: protocol::presence::Presence,
    /// The configured channels, their connections, and their restart.
    pub channels: crate::channels::ChannelRuntime,
    /// The models the gateway can answer with (`provider/model`).
    pub models: Vec<String>,
    /// The configuration in force, redacted.
    pub config: crate::config_view::ConfigView,
    /// What passes through the gateway, for `/metrics`.
    pub metrics: Arc<crate::metrics::GatewayMetrics>,
    /// molt-ai-gateway, when a provider is configured (its token and cost metrics).
    pub ai: Option<Arc<molt_ai_gateway::Gateway>>,
    /// The recent log lines (`/debug/logs`).
    pub logs: crate::logs::LogRing,
    /// Whether `/debug/*` is mounted (`DEBUG_ROUTES=true`).
    pub debug_routes: bool,
}

impl AppState {
    /// The status document of `/api/status` and the hello snapshot.
    pub fn status(&self) -> Value {
        json!({
            // Moltworker's fields first.
            "ok": true,
            "status": "running",
            "processId": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": self.started.elapsed().as_secs(),
            "sessions": { "known": self.gateway.known_sessions(), "busy": self.gateway.busy_sessions() },
            "model": self.model_status(),
            "storage": crate::backup::status(self.mirror.as_deref()),
            "channels": self.channels.board().snapshot(),
            "clients": self.presence.connected(),
        })
    }

    /// OpenClaw's health snapshot: the channels, the sessions, the agent.
    pub async fn health(&self) -> Value {
        let started = Instant::now();
        let channels = self.channels.board().snapshot();
        let labels: serde_json::Map<String, Value> = (channels.keys())
            .map(|name| {
                (
                    name.to_string(),
                    json!(protocol::methods::channel_label(name)),
                )
            })
            .collect();
        // Cheap on purpose (every hello-ok carries it): the index is listed,
        // no transcript is read; recent ones are those loaded in memory.
        let count = self.gateway.session_count().await.unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot count the sessions for the health snapshot");
            0
        });
        let now = protocol::now_ms();
        let recent: Vec<Value> = (self.gateway.recent_sessions(10).into_iter())
            .map(|(key, updated)| {
                let updated = updated.map(|at| at.0);
                json!({ "key": key.as_str(), "updatedAt": updated,
                        "age": updated.map(|at| now.saturating_sub(at)) })
            })
            .collect();
        let summary = json!({ "path": molt_core::gateway::SESSION_INDEX_PREFIX,
                              "count": count, "recent": recent });
        json!({
            "ok": true, "ts": now, "durationMs": started.elapsed().as_millis() as u64,
            "channels": channels, "channelOrder": channels.keys().collect::<Vec<_>>(),
            "channelLabels": labels, "heartbeatSeconds": 0, "defaultAgentId": "main",
            "sessions": summary,
        })
    }
}

impl AppState {
    /// Tells every connection (those it concerns act on it).
    pub fn broadcast(&self, broadcast: protocol::Broadcast) {
        // No connection is fine: nobody is listening.
        let _ = self.broadcasts.send(broadcast);
    }

    /// A receiver of what [`AppState::broadcast`] sends.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<protocol::Broadcast> {
        self.broadcasts.subscribe()
    }

    /// The model that answers, and whether it is a real one.
    pub fn model_status(&self) -> Value {
        if self.model_configured {
            return json!({ "name": self.gateway.model_name(), "configured": true });
        }
        json!({
            "name": self.gateway.model_name(),
            "configured": false,
            "note": "No model provider is configured: replies come from the offline echo model. Set ANTHROPIC_API_KEY or OPENAI_API_KEY (or the Cloudflare AI Gateway variables).",
        })
    }
}

/// The gateway's routes, each guarded as [`molt_core::routes`] says (by
/// [`crate::admin::guard`]).
pub fn router(state: Arc<AppState>) -> Router {
    let debug = match state.debug_routes {
        true => crate::debug::router(),
        false => Router::new(),
    };
    Router::new()
        .route("/", get(control_ui_or_socket))
        .route("/health", get(health))
        .route("/api/status", get(status))
        .route("/metrics", get(metrics))
        .route("/_admin/", get(crate::admin_page::page))
        .route("/_admin", get(crate::admin_page::without_slash))
        .nest("/api/admin", crate::admin::router())
        .nest("/debug", debug)
        .route("/ws", get(websocket))
        .route(
            molt_core::webhook::TELEGRAM_PATH,
            axum::routing::post(telegram_webhook),
        )
        .route(
            molt_core::webhook::SLACK_PATH,
            axum::routing::post(slack_events),
        )
        // Declared, so that the guard covers paths with no route too.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::admin::guard,
        ))
        .layer(axum::Extension(state.trusted_proxies.clone()))
        .with_state(state)
}

/// The Control UI page, or (for a WebSocket upgrade) the protocol, as OpenClaw serves both at `/`.
async fn control_ui_or_socket(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    use axum::extract::FromRequestParts;
    let wants_socket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !wants_socket {
        // The page holds no secret; it asks for the token and sends it over the WebSocket.
        return ([(header::CACHE_CONTROL, "no-store")], Html(CONTROL_UI)).into_response();
    }
    let (mut parts, _) = request.into_parts();
    let extracted = (
        ClientAddress::from_request_parts(&mut parts, &state).await,
        Query::<TokenQuery>::from_request_parts(&mut parts, &state).await,
        WebSocketUpgrade::from_request_parts(&mut parts, &state).await,
    );
    match extracted {
        (Ok(client), Ok(query), Ok(upgrade)) => {
            websocket(State(state), client, query, parts.headers, upgrade).await
        }
        (Err(rejection), _, _) => rejection.into_response(),
        (_, Err(rejection), _) => rejection.into_response(),
        (_, _, Err(rejection)) => rejection.into_response(),
    }
}

/// Telegram's deliveries in webhook mode: 200 once the update is in the
/// inbox, 403 for a wrong secret, 503 (Telegram delivers again) when it could
/// not be taken; 404 while Telegram is not in webhook mode.
async fn telegram_webhook(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    match state.channels.webhooks().telegram() {
        Some(endpoint) => endpoint.handle(&headers, &body).await,
        None => StatusCode::NOT_FOUND,
    }
}

/// Slack's events over the Events API: 200 once the event's message is in
/// the inbox (or with the challenge of `url_verification`), 401 for a request
/// Slack did not sign, 503 (Slack retries) when it could not be taken in
/// time; 404 while Slack is not on the Events API.
async fn slack_events(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match state.channels.webhooks().slack() {
        Some(endpoint) => (endpoint.handle(&headers, &body).await)
            .map(axum::body::Body::from)
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Liveness, and how long the gateway has been idle (0 while clients are
/// connected or runs are in progress): the Worker's sandbox sleeps on it.
async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let busy = state.presence.connected() > 0 || state.gateway.busy_sessions() > 0;
    let idle = if busy {
        0
    } else {
        state.activity.quiet_for().as_secs()
    };
    Json(json!({ "status": "ok", "idleSeconds": idle }))
}

/// The status document (the guard has let the operator through).
async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.status())
}

/// Prometheus' text: the gateway's counters and gauges, then molt-ai-gateway's
/// (tokens, cost, model latency) when a provider is configured.
async fn metrics(
    State(state): State<Arc<AppState>>,
    ClientAddress(client): ClientAddress,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) =
        crate::admin::authorize(&state, client, &headers, query.token.as_deref()).await
    {
        return refused;
    }
    let mirror = state.mirror.as_ref().map(|mirror| mirror.status());
    let now = crate::protocol::now_ms();
    let gauges = crate::metrics::Gauges {
        busy_sessions: state.gateway.busy_sessions(),
        queued_messages: state.gateway.queued_messages(),
        clients: state.presence.connected(),
        backup_lag_seconds: (mirror.as_ref())
            .and_then(|status| status.last_success_ms)
            .map(|at| now.saturating_sub(at) as f64 / 1000.0),
        backup_pending: mirror.as_ref().map(|status| status.pending),
    };
    let mut page = state.metrics.render(&gauges);
    if let Some(ai) = &state.ai {
        page.push_str(&ai.metrics().prometheus());
    }
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], page).into_response()
}

impl AppState {
    /// A 429 for a client with too many failed attempts, or `None`.
    pub fn throttled(&self, client: std::net::IpAddr) -> Option<Response> {
        let now = crate::platform::TokioPlatform.now();
        let wait = self.throttle.check(&client_key(client), now)?;
        let seconds = wait.as_secs().max(1);
        let body =
            json!({ "error": format!("too many failed attempts; try again in {seconds} s") });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        Some(response)
    }

    /// Counts a wrong token (a missing one is not an attempt).
    pub fn failed_attempt(&self, client: std::net::IpAddr, result: AuthResult) {
        if result == AuthResult::Mismatch {
            tracing::warn!(%client, "a wrong gateway token was presented");
            self.throttle
                .failed(&client_key(client), crate::platform::TokioPlatform.now());
        }
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    ClientAddress(client): ClientAddress,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = state.throttled(client) {
        return refused;
    }
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let access_token = molt_core::access::token_from_request(
        text(molt_core::access::ASSERTION_HEADER),
        text("cookie"),
    );
    let presented = protocol::Presented {
        query: query.token,
        header: bearer(&headers),
        client,
        access_token: access_token.map(str::to_owned),
    };
    // A socket whose upgrade carried the right token holds no waiting place.
    let authorized = auth::check(
        &state.token,
        [presented.query.as_deref(), presented.header.as_deref()],
    ) == AuthResult::Ok;
    let waiting = match authorized {
        true => None,
        false => match state.handshakes.enter(client) {
            Some(place) => Some(place),
            None => {
                let body = json!({ "error": "too many connections are waiting to authenticate; try again shortly" });
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
        },
    };
    upgrade
        .max_message_size(protocol::MAX_FRAME_BYTES)
        .max_frame_size(protocol::MAX_FRAME_BYTES)
        // Small buffers that grow with a frame, rather than 128 KiB each way
        // for every idle client; what waits for a slow reader is bounded by
        // the policy's maxBufferedBytes.
        .read_buffer_size(protocol::SOCKET_BUFFER_BYTES)
        .write_buffer_size(protocol::SOCKET_BUFFER_BYTES)
        .max_write_buffer_size(protocol::MAX_BUFFERED_BYTES)
        .on_upgrade(move |socket| protocol::serve(socket, state, presented, waiting))
}
