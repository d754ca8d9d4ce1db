//! An authenticated CDP endpoint for a gateway to mount at `/cdp`: a
//! WebSocket relay to the browser, plus `/cdp/json/version` and
//! `/cdp/json/list` whose URLs point back through the relay. Puppeteer's
//! `connect` and Playwright's `connectOverCDP` work through it.
//!
//! The secret is presented as `?secret=…` or `Authorization: Bearer …` and
//! compared in constant time. A wrong or missing secret gets 401; an endpoint
//! without a secret or a browser configured answers 503 to everyone.
//!
//! Every message a client sends passes a [`CdpFirewall`]: methods outside
//! the browser's pages are refused, navigation stays on `http(s)` pages the
//! egress policy allows, downloads stay denied. Give the endpoint a browser
//! of its own, launched with [`SharedBrowser::policed`], so that whatever
//! its pages load also passes the policy, and so that clients never see the
//! agent's pages.

use crate::browser::Browser;
use crate::egress::EgressPolicy;
use crate::firewall::{CdpFirewall, Inspected, RELAY_ID_BASE};
use crate::shared::SharedBrowser;
use axum::Router;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use molt_core::Secret;
use molt_core::throttle::{AttemptThrottle, client_key};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The largest CDP message relayed to a client (a full-page screenshot, base64-encoded).
const MAX_MESSAGE_BYTES: usize = 512 << 20;
/// The largest message a client may send (a fulfilled request's body, say).
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 20;
/// Relayed sockets open at once.
const MAX_RELAYS: usize = 16;
/// How long the relay waits for the browser's WebSocket to open.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `/cdp` component: who may use it, and the browser behind it.
#[derive(Clone)]
pub struct CdpEndpoint {
    secret: Option<Secret>,
    browser: Option<Arc<SharedBrowser>>,
    firewall: CdpFirewall,
    /// Wrong secrets, per client address (from the server's `ConnectInfo`).
    throttle: Arc<AttemptThrottle>,
    /// Places for relayed sockets ([`MAX_RELAYS`] of them).
    relays: Arc<Semaphore>,
}

impl CdpEndpoint {
    /// An endpoint guarded by `secret` (`CDP_SECRET`) in front of `browser`.
    /// Without either it answers 503. Navigation is checked against the
    /// browser's own policy ([`SharedBrowser::policed`]), or else the
    /// default one (public addresses only).
    pub fn new(secret: Option<Secret>, browser: Option<Arc<SharedBrowser>>) -> Self {
        let policy = browser
            .as_ref()
            .and_then(|browser| browser.egress().cloned())
            .unwrap_or_else(|| Arc::new(EgressPolicy::default()));
        Self {
            secret: secret.filter(|s| !s.is_empty()),
            browser,
            firewall: CdpFirewall::new(policy),
            throttle: Arc::new(AttemptThrottle::default()),
            relays: Arc::new(Semaphore::new(MAX_RELAYS)),
        }
    }

    /// The routes, under `/cdp`, to merge into the gateway's router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/cdp", get(browser_socket))
            .route("/cdp/json/version", get(json_version))
            .route("/cdp/json/version/", get(json_version))
            .route("/cdp/json/list", get(json_list))
            .route("/cdp/json/list/", get(json_list))
            .route("/cdp/json", get(json_list))
            .route("/cdp/devtools/browser/{id}", get(browser_socket))
            .route("/cdp/devtools/page/{id}", get(page_socket))
            .with_state(Arc::new(self))
    }

    /// Checks the request's secret and returns the browser, or the refusal.
    async fn admit(&self, request: &Presented) -> Result<Arc<Browser>, Response> {
        let (Some(secret), Some(browser)) = (&self.secret, &self.browser) else {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the CDP endpoint is not configured: it needs CDP_SECRET and a browser",
            ));
        };
        let now = molt_core::platform::Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        );
        let client = client_key(request.client);
        if let Some(wait) = self.throttle.check(&client, now) {
            let seconds = wait.as_secs().max(1);
            let mut refused = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("too many wrong secrets; try again in {seconds} s"),
            );
            refused
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            return Err(refused);
        }
        let presented = request.secret().unwrap_or_default();
        if !secret.matches(presented) {
            if !presented.is_empty() {
                tracing::warn!(%client, "a wrong CDP secret was presented");
                self.throttle.failed(&client, now);
            }
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "wrong or missing CDP secret",
            ));
        }
        browser.get().await.map_err(|err| {
            // The details (a binary's path, an endpoint) are for the log only.
            tracing::warn!(%err, "the CDP endpoint has no browser");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the browser is unavailable (the gateway's log says why)",
            )
        })
    }
}

/// A JSON answer that no cache or proxy keeps (its URLs may carry the secret).
fn private_json(value: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(value)).into_response()
}

/// A 502 for a failed browser call; the details (the browser's own URL)
/// go to the log only.
fn browser_failed(err: &crate::error::CdpError) -> Response {
    tracing::warn!(%err, "a /cdp discovery call failed");
    refuse(StatusCode::BAD_GATEWAY, "the browser did not answer")
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "error": reason }))).into_response()
}

#[derive(Deserialize)]
struct SecretQuery {
    secret: Option<String>,
}

/// The secret as the client presented it, and where the client reached us.
struct Presented {
    query: Option<String>,
    bearer: Option<String>,
    /// `ws://host` or `wss://host`, as the client sees this server.
    origin: String,
    /// The client's address, when the server tells (`ConnectInfo`).
    client: std::net::IpAddr,
}

impl Presented {
    fn new(query: SecretQuery, headers: &HeaderMap, client: std::net::IpAddr) -> Self {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_owned());
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let secure = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        Self {
            query: query.secret,
            bearer,
            origin: format!("{}://{host}", if secure { "wss" } else { "ws" }),
            client,
        }
    }

    fn secret(&self) -> Option<&str> {
        self.query.as_deref().or(self.bearer.as_deref())
    }

    /// A WebSocket URL back through this endpoint. The secret is repeated
    /// only if the client put it in the URL itself; a client using the
    /// header sends the header again.
    fn relay_url(&self, path: &str) -> String {
        let mut url = format!("{}/cdp{path}", self.origin);
        if let Some(secret) = &self.query {
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            url.push_str("?secret=");
            url.push_str(&encoded);
        }
        url
    }
}

/// A request whose secret matched, with the browser it may use. As an
/// extractor, it answers the refusal (401 or 503) itself.
struct Admitted {
    presented: Presented,
    browser: Arc<Browser>,
    firewall: CdpFirewall,
    relays: Arc<Semaphore>,
}

impl FromRequestParts<Arc<CdpEndpoint>> for Admitted {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        endpoint: &Arc<CdpEndpoint>,
    ) -> Result<Self, Response> {
        let Query(query) = Query::<SecretQuery>::from_request_parts(parts, endpoint)
            .await
            .map_err(IntoResponse::into_response)?;
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        let presented = Presented::new(query, &parts.headers, client);
        let browser = endpoint.admit(&presented).await?;
        Ok(Self {
            presented,
            browser,
            firewall: endpoint.firewall.clone(),
            relays: endpoint.relays.clone(),
        })
    }
}

async fn json_version(
    Admitted {
        presented, browser, ..
    }: Admitted,
) -> Response {
    match browser.version().await {
        Ok(version) => private_json(json!({
            "Browser": version.product,
            "Protocol-Version": version.protocol_version,
            "User-Agent": version.user_agent,
            "V8-Version": version.js_version,
            "webSocketDebuggerUrl": presented.relay_url(""),
        })),
        Err(err) => browser_failed(&err),
    }
}

async fn json_list(
    Admitted {
        presented, browser, ..
    }: Admitted,
) -> Response {
    let targets = match browser
        .connection()
        .call("Target.getTargets", json!({}), None)
        .await
    {
        Ok(targets) => targets,
        Err(err) => return browser_failed(&err),
    };
    let list: Vec<Value> = targets["targetInfos"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|target| {
            let id = target["targetId"].as_str().unwrap_or_default();
            json!({
                "id": id,
                "type": target["type"],
                "title": target["title"],
                "url": target["url"],
                "description": "",
                "webSocketDebuggerUrl": presented.relay_url(&format!("/devtools/page/{id}")),
            })
        })
        .collect();
    private_json(Value::Array(list))
}

async fn browser_socket(admitted: Admitted, upgrade: WebSocketUpgrade) -> Response {
    let Some(place) = relay_place(&admitted.relays) else {
        return too_many_relays();
    };
    let url = admitted.browser.ws_url().to_owned();
    relay(upgrade, url, admitted.firewall, place)
}

fn relay_place(relays: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    relays.clone().try_acquire_owned().ok()
}

fn too_many_relays() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many CDP connections are open; close one first",
    )
}

async fn page_socket(
    Path(id): Path<String>,
    Admitted {
        browser,
        firewall,
        relays,
        ..
    }: Admitted,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(place) = relay_place(&relays) else {
        return too_many_relays();
    };
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return refuse(StatusCode::BAD_REQUEST, "not a target id");
    }
    let Ok(mut upstream) = url::Url::parse(browser.ws_url()) else {
        return refuse(StatusCode::BAD_GATEWAY, "the browser's URL does not parse");
    };
    upstream.set_path(&format!("/devtools/page/{id}"));
    relay(upgrade, upstream.to_string(), firewall, place)
}

/// Upgrades the client and relays every message both ways until either
/// side closes, each of the client's through the firewall. `place` holds the
/// socket's place among the endpoint's relays.
fn relay(
    upgrade: WebSocketUpgrade,
    upstream_url: String,
    firewall: CdpFirewall,
    place: OwnedSemaphorePermit,
) -> Response {
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |client| async move {
            if let Err(err) = pump(client, &upstream_url, &firewall).await {
                tracing::warn!(%err, "CDP relay ended with an error");
            }
            drop(place);
        })
}

/// What the two directions of one relay share: the contexts whose creation
/// answer waits until downloads are denied in them.
#[derive(Default)]
struct Held {
    /// Client requests that create a context, by session (empty for the
    /// browser's own) and id.
    creating: HashSet<(String, u64)>,
    /// The relay's own requests in flight, with the answer each holds back.
    denying: HashMap<u64, String>,
    next_id: u64,
}

/// An answer's id and, for a created context, its id.
#[derive(Deserialize)]
struct Reply {
    id: Option<u64>,
    #[serde(rename = "sessionId", default)]
    session_id: String,
    result: Option<CreatedContext>,
}

#[derive(Deserialize)]
struct CreatedContext {
    #[serde(rename = "browserContextId")]
    context_id: Option<String>,
}

async fn pump(client: WebSocket, upstream_url: &str, firewall: &CdpFirewall) -> Result<(), String> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(upstream_url, Some(config), true);
    let (upstream, _) = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| "the browser's WebSocket did not open in time".to_owned())?
        .map_err(|err| format!("the browser's WebSocket: {err}"))?;
    tracing::debug!("CDP relay open");
    let (client_tx, mut client_rx) = client.split();
    let client_tx = tokio::sync::Mutex::new(client_tx);
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    // Both directions send to the browser: the client's requests, and the
    // relay's own download denials.
    let (to_upstream, mut outgoing) = tokio::sync::mpsc::channel::<String>(64);
    let held = std::sync::Mutex::new(Held::default());
    let writer = async {
        while let Some(text) = outgoing.recv().await {
            if upstream_tx
                .send(tungstenite::Message::text(text))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = upstream_tx.close().await;
    };
    let to_browser = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let text = match message {
                ws::Message::Text(text) => text,
                // CDP is text; anything else is not a request.
                ws::Message::Binary(_) | ws::Message::Close(_) => break,
                ws::Message::Ping(_) | ws::Message::Pong(_) => continue,
            };
            let text = match firewall.inspect(text.as_str()) {
                Inspected::Forward(text) => text,
                Inspected::ForwardContext(text, session, id) => {
                    lock(&held).creating.insert((session, id));
                    text
                }
                Inspected::Refuse(answer) => {
                    if client_tx
                        .lock()
                        .await
                        .send(ws::Message::text(answer))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            };
            if to_upstream.send(text).await.is_err() {
                break;
            }
        }
    };
    let to_client = async {
        while let Some(Ok(message)) = upstream_rx.next().await {
            let message = match message {
                tungstenite::Message::Text(text) => match hold_back(&held, text.as_str()) {
                    Hold::Pass => ws::Message::text(text.as_str()),
                    Hold::Deny(request) => {
                        if to_upstream.send(request).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Hold::Release(answer) => ws::Message::text(answer),
                },
                tungstenite::Message::Binary(bytes) => ws::Message::binary(bytes),
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            if client_tx.lock().await.send(message).await.is_err() {
                break;
            }
        }
        let _ = client_tx.lock().await.close().await;
    };
    // Whichever side ends first ends the relay.
    tokio::select! {
        () = to_browser => {}
        () = to_client => {}
        () = writer => {}
    }
    tracing::debug!("CDP relay closed");
    Ok(())
}

/// What to do with one of the browser's messages.
enum Hold {
    /// Pass it to the client.
    Pass,
    /// It answers a context creation: hold it back, and send this denial of
    /// downloads in the new context to the browser first.
    Deny(String),
    /// It answers the relay's denial: pass the held answer instead.
    Release(String),
}

fn hold_back(held: &std::sync::Mutex<Held>, text: &str) -> Hold {
    let mut held = lock(held);
    if held.creating.is_empty() && held.denying.is_empty() {
        return Hold::Pass;
    }
    let Ok(Reply {
        id: Some(id),
        session_id,
        result,
    }) = serde_json::from_str::<Reply>(text)
    else {
        return Hold::Pass;
    };
    if session_id.is_empty()
        && let Some(answer) = held.denying.remove(&id)
    {
        return Hold::Release(answer);
    }
    if !held.creating.remove(&(session_id, id)) {
        return Hold::Pass;
    }
    let Some(context_id) = result.and_then(|result| result.context_id) else {
        return Hold::Pass;
    };
    let relay_id = RELAY_ID_BASE + held.next_id;
    held.next_id += 1;
    held.denying.insert(relay_id, text.to_owned());
    let deny = json!({
        "id": relay_id,
        "method": "Browser.setDownloadBehavior",
        "params": { "behavior": "deny", "browserContextId": context_id },
    });
    Hold::Deny(deny.to_string())
}

fn lock(held: &std::sync::Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}
