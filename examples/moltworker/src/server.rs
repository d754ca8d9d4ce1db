//! HTTP routes: health, status, the Control UI page, and the WebSocket upgrade.

use crate::protocol;
use crate::webchat::ChatStream;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use molt_core::Secret;
use molt_core::gateway::Gateway;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

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
    /// Whether a real model provider answers (not the offline echo model).
    pub model_configured: bool,
    /// The mirror of the state directory to a bucket, when one is configured.
    pub mirror: Option<std::sync::Arc<molt_storage::StateMirror>>,
}

impl AppState {
    /// The status document of `/api/status` and the hello snapshot.
    pub fn status(&self) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": self.started.elapsed().as_secs(),
            "sessions": { "known": self.gateway.known_sessions(), "busy": self.gateway.busy_sessions() },
            "model": self.model_status(),
            "storage": crate::backup::status(self.mirror.as_deref()),
            "channels": [crate::webchat::CHANNEL],
        })
    }
}

impl AppState {
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

/// The gateway's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(control_ui))
        .route("/health", get(|| async { "ok" }))
        .route("/api/status", get(status))
        .route("/ws", get(websocket))
        .with_state(state)
}

async fn control_ui() -> impl IntoResponse {
    // The page holds no secret; it asks for the token and sends it over the WebSocket.
    ([(header::CACHE_CONTROL, "no-store")], Html(CONTROL_UI))
}

async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.status())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned());
    let presented = protocol::Presented {
        query: query.token,
        header: bearer,
    };
    upgrade
        .max_message_size(protocol::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| protocol::serve(socket, state, presented))
}
