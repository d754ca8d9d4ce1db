//! The operator's HTTP API under `/api/admin/`, in Moltworker's shapes:
//! devices (list, approve, approve all, reject, remove), channel pairing
//! codes (list, approve, reject), the backup (status, sync now), and a
//! restart of the gateway's channels.
//!
//! Who may call it ([`authorize`], also used by `/api/status`): Cloudflare
//! Access when it is configured (its token in the `Cf-Access-Jwt-Assertion`
//! header or the `CF_Authorization` cookie), else the gateway token
//! (`Authorization: Bearer` or `?token=`). Never open. API clients get a JSON
//! 401; browsers get a page that says how to sign in.

use crate::auth::{self, AuthResult};
use crate::protocol::{Broadcast, now_ms};
use crate::server::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use molt_ai_gateway::listen::ClientAddress;
use molt_core::access::{ASSERTION_HEADER, token_from_request};
use molt_core::devices::DevicesError;
use molt_core::pairing::{PairingBook, PairingError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The admin routes (mounted under `/api/admin`).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/approve-all", post(approve_all))
        .route("/devices/{request_id}/approve", post(approve_device))
        .route("/devices/{request_id}/reject", post(reject_device))
        .route("/devices/{device_id}", delete(remove_device))
        .route("/pairing", get(list_pairing))
        .route("/pairing/{channel}/{code}/approve", post(approve_code))
        .route("/pairing/{channel}/{code}/reject", post(reject_code))
        .route("/storage", get(storage))
        .route("/storage/sync", post(sync_storage))
        .route("/gateway/restart", post(restart_gateway))
}

/// How long a restart waits for runs in progress before reconnecting anyway.
pub const RESTART_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The `?token=` of a request.
#[derive(Deserialize)]
pub struct TokenQuery {
    /// The gateway token, when given in the URL.
    pub token: Option<String>,
}

/// Lets the operator through, or answers 401 (or 429 after too many failures).
pub async fn authorize(
    state: &AppState,
    client: std::net::IpAddr,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(), Response> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let browser = text("accept").is_some_and(|accept| accept.contains("text/html"));
    if let Some(gate) = &state.access {
        let token = token_from_request(text(ASSERTION_HEADER), text("cookie"));
        let refused = match token {
            None => "no Cloudflare Access token".to_owned(),
            Some(token) => match gate.verify(token).await {
                Ok(_) => return Ok(()),
                Err(err) => err.to_string(),
            },
        };
        tracing::warn!(%client, reason = %refused, "refused an admin request");
        let sign_in = format!("https://{}/", gate.team_domain());
        return Err(unauthorized(browser, &refused, SignIn::Access(sign_in)));
    }
    if let Some(refused) = state.throttled(client) {
        return Err(refused);
    }
    let bearer = text("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let presented = auth::check(&state.token, [query_token, bearer]);
    if presented == AuthResult::Ok
        || (presented == AuthResult::Missing
            && auth::has_session(&state.token, text("cookie"), now_ms() / 1000))
    {
        return Ok(());
    }
    state.failed_attempt(client, presented);
    let (_, message) = presented.refusal().unwrap_or_default();
    Err(unauthorized(browser, message, SignIn::Token))
}

/// Where a browser that was refused signs in.
enum SignIn {
    /// At the Cloudflare Access team domain.
    Access(String),
    /// With the gateway token, in a form on the page.
    Token,
}

fn unauthorized(browser: bool, reason: &str, sign_in: SignIn) -> Response {
    if browser {
        let how = match sign_in {
            SignIn::Access(url) => format!(
                "<p><a href=\"{}\">Sign in with Cloudflare Access</a></p>",
                html_escape(&url)
            ),
            SignIn::Token => "<form method=\"get\"><label>Gateway token <input name=\"token\" type=\"password\" autocomplete=\"off\" data-testid=\"sign-in-token\"></label> <button data-testid=\"sign-in\">Sign in</button></form>".to_owned(),
        };
        let page = format!(
            "<!doctype html><meta charset=\"utf-8\"><title>Sign in</title><h1>Sign in first</h1><p>{}</p>{how}",
            html_escape(reason),
        );
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({ "error": reason }))).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The gateway's guard, on every request: the paths that the shared route
/// table ([`molt_core::routes`]) gives to the operator need [`authorize`], and
/// changes to them must come from this origin. Other paths pass (the
/// protocol and `/cdp` admit their own clients).
pub async fn guard(
    State(state): State<Arc<AppState>>,
    ClientAddress(client): ClientAddress,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // What keeps a sandbox awake: requests served, not liveness probes or refusals.
    let counts = request.uri().path() != "/health";
    let response = guarded(&state, client, request, next).await;
    if counts && !response.status().is_client_error() {
        state.activity.touch();
    }
    response
}

async fn guarded(
    state: &AppState,
    client: std::net::IpAddr,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if molt_core::routes::guard(request.uri().path()) != molt_core::routes::Guard::Operator {
        return next.run(request).await;
    }
    let query = match Query::<TokenQuery>::try_from_uri(request.uri()) {
        Ok(Query(query)) => query,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(refused) = authorize(state, client, request.headers(), query.token.as_deref()).await
    {
        return refused;
    }
    // A change asked by another site's page (riding the Access cookie) is refused.
    let changes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if changes && !same_origin(request.headers()) {
        return failure(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    next.run(request).await
}

/// Whether a request's `Origin` (when it has one) is the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => url::Url::parse(origin).is_ok_and(|origin| {
            let port = origin.port().map(|p| format!(":{p}")).unwrap_or_default();
            origin
                .host_str()
                .is_some_and(|h| format!("{h}{port}") == host)
        }),
        (Some(_), None) => false,
    }
}

fn failure(status: StatusCode, error: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

fn devices_failure(err: DevicesError) -> Response {
    match err {
        DevicesError::Store(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, err),
        other => failure(StatusCode::NOT_FOUND, other),
    }
}

async fn list_devices(State(state): State<Arc<AppState>>) -> Response {
    let devices = &state.devices;
    match (devices.pending().await, devices.paired().await) {
        (Ok(pending), Ok(paired)) => {
            let paired: Vec<Value> = paired
                .iter()
                .map(crate::protocol::methods::redacted)
                .collect();
            Json(json!({ "pending": pending, "paired": paired })).into_response()
        }
        (Err(err), _) | (_, Err(err)) => failure(StatusCode::INTERNAL_SERVER_ERROR, err),
    }
}

/// Approves one request, telling every operator connection.
async fn approve(state: &AppState, request_id: &str) -> Result<(), DevicesError> {
    let device = state.devices.approve(request_id, None).await?;
    tracing::info!(device = %device.device_id, "a device was paired from the admin API");
    state.broadcast(Broadcast::pair_resolved(
        request_id,
        &device.device_id,
        "approved",
    ));
    Ok(())
}

async fn approve_device(
    State(state): State<Arc<AppState>>,
    Path(request_id): Path<String>,
) -> Response {
    match approve(&state, &request_id).await {
        Ok(()) => {
            Json(json!({ "success": true, "requestId": request_id, "message": "Device approved" }))
                .into_response()
        }
        Err(err) => devices_failure(err),
    }
}

async fn approve_all(State(state): State<Arc<AppState>>) -> Response {
    let pending = match state.devices.pending().await {
        Ok(pending) => pending,
        Err(err) => return failure(StatusCode::INTERNAL_SERVER_ERROR, err),
    };
    if pending.is_empty() {
        return Json(
            json!({ "approved": [], "failed": [], "message": "No pending devices to approve" }),
        )
        .into_response();
    }
    let (mut approved, mut failed) = (Vec::new(), Vec::new());
    for request in &pending {
        match approve(&state, &request.request_id).await {
            Ok(()) => approved.push(request.request_id.clone()),
            Err(err) => failed.push(json!({ "requestId": request.request_id, "success": false, "error": err.to_string() })),
        }
    }
    let message = format!("Approved {} of {} device(s)", approved.len(), pending.len());
    Json(json!({ "approved": approved, "failed": failed, "message": message })).into_response()
}

async fn reject_device(
    State(state): State<Arc<AppState>>,
    Path(request_id): Path<String>,
) -> Response {
    match state.devices.reject(&request_id).await {
        Ok(request) => {
            state.broadcast(Broadcast::pair_resolved(
                &request_id,
                &request.device_id,
                "rejected",
            ));
            Json(json!({ "success": true, "requestId": request_id, "message": "Device rejected" }))
                .into_response()
        }
        Err(err) => devices_failure(err),
    }
}

async fn remove_device(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
) -> Response {
    match state.devices.remove(&device_id).await {
        Ok(()) => {
            state.broadcast(Broadcast::DeviceRemoved(device_id.clone()));
            Json(json!({ "success": true, "deviceId": device_id, "message": "Device removed" }))
                .into_response()
        }
        Err(err) => devices_failure(err),
    }
}

fn pairing_book(state: &AppState) -> PairingBook {
    let platform = crate::platform::TokioPlatform::platform();
    PairingBook::new(state.store.clone(), platform.clock, platform.entropy)
}

async fn list_pairing(State(state): State<Arc<AppState>>) -> Response {
    let book = pairing_book(&state);
    let listed = async {
        let mut channels = serde_json::Map::new();
        for channel in book.channels().await? {
            let pending = book.pending(&channel).await?;
            let approved = book.approved(&channel).await?;
            channels.insert(channel, json!({ "pending": pending, "approved": approved }));
        }
        Ok::<_, molt_core::store::StoreError>(channels)
    };
    match listed.await {
        Ok(channels) => Json(json!({ "channels": channels })).into_response(),
        Err(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, err),
    }
}

fn pairing_failure(err: PairingError) -> Response {
    match err {
        PairingError::UnknownCode(_) => failure(StatusCode::NOT_FOUND, err),
        PairingError::Store(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, err),
    }
}

async fn approve_code(
    State(state): State<Arc<AppState>>,
    Path((channel, code)): Path<(String, String)>,
) -> Response {
    match pairing_book(&state).approve(&channel, &code).await {
        Ok(sender) => Json(json!({ "success": true, "channel": channel, "sender": sender,
                                   "message": format!("{sender} may now talk to the assistant on {channel}") }))
            .into_response(),
        Err(err) => pairing_failure(err),
    }
}

async fn reject_code(
    State(state): State<Arc<AppState>>,
    Path((channel, code)): Path<(String, String)>,
) -> Response {
    match pairing_book(&state).reject(&channel, &code).await {
        Ok(sender) => Json(json!({ "success": true, "channel": channel, "sender": sender, "message": "Request rejected" }))
            .into_response(),
        Err(err) => pairing_failure(err),
    }
}

/// When the mirror last finished a backup, as an RFC 3339 time.
fn last_sync(mirror: Option<&molt_storage::StateMirror>) -> Option<String> {
    let ms = mirror?.status().last_success_ms?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Some(humantime::format_rfc3339_millis(at).to_string())
}

async fn storage(State(state): State<Arc<AppState>>) -> Response {
    let configured = state.mirror.is_some();
    let last_sync = last_sync(state.mirror.as_deref());
    let message = match configured {
        true => "R2 storage is configured. Your data will persist across container restarts.",
        false => {
            "R2 storage is not configured. Paired devices and conversations will be lost when the container restarts."
        }
    };
    let mut body = json!({ "configured": configured, "lastSync": last_sync, "message": message });
    if !configured {
        body["missing"] = json!(["R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "CF_ACCOUNT_ID"]);
    }
    Json(body).into_response()
}

async fn sync_storage(State(state): State<Arc<AppState>>) -> Response {
    let Some(mirror) = &state.mirror else {
        let body = json!({ "success": false, "error": "R2 storage is not configured" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    match mirror.backup_now().await {
        Ok(_) => {
            let last_sync = last_sync(Some(mirror));
            Json(json!({ "success": true, "message": "Sync completed successfully", "lastSync": last_sync }))
                .into_response()
        }
        Err(err) => {
            let body = json!({ "success": false, "error": err.summary() });
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// Restarts the gateway's runtime inside the process: channels stop, runs
/// in progress finish (up to [`RESTART_DRAIN`]), channels connect again.
/// Connected clients stay connected.
async fn restart_gateway(State(state): State<Arc<AppState>>) -> Response {
    let restarted = state.channels.restart(RESTART_DRAIN).await;
    let channels = match restarted.channels.is_empty() {
        true => "no chat channel is configured".to_owned(),
        false => format!("channels reconnected: {}", restarted.channels.join(", ")),
    };
    let message = match restarted.drained {
        true => format!("Gateway restarted; {channels}."),
        false => format!(
            "Gateway restarted; {channels}. Runs still in progress after {} s go on and are not answered twice.",
            RESTART_DRAIN.as_secs()
        ),
    };
    Json(
        json!({ "success": true, "message": message, "channels": restarted.channels,
                 "drained": restarted.drained, "resumed": restarted.resumed }),
    )
    .into_response()
}
