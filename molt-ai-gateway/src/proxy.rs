//! The proxy: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages`
//! (Anthropic) and `GET /v1/models`, streaming or not, behind gateway keys,
//! with Cloudflare AI Gateway's headers (`cf-aig-cache-ttl`, `cf-aig-skip-cache`,
//! `cf-aig-cache-key`, `cf-aig-metadata` in; `cf-aig-cache-status`, `cf-aig-step`
//! out). Also `GET /metrics` (Prometheus, behind a key) and `GET /health`.

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::listen::{self, ClientAddress, ServeLimits};
use crate::service::{Answer, AnswerInfo, CacheStatus, Call, CallContext};
use crate::wire::{anthropic, openai};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use molt_core::Secret;
use molt_core::model::ResponseBuilder;
use molt_core::platform::Clock;
use molt_core::throttle::{AttemptThrottle, client_key};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Proxy settings.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Accepted gateway keys, by name (the name goes to analytics, never the key).
    pub keys: Vec<(String, Secret)>,
    /// The largest request body accepted (read only once the key is checked).
    pub max_body_bytes: usize,
    /// Connections, header deadline and drain time of [`serve`].
    pub limits: ServeLimits,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            limits: ServeLimits::default(),
        }
    }
}

struct Proxy {
    gateway: Arc<Gateway>,
    config: ProxyConfig,
    /// Wrong keys, per client address.
    throttle: AttemptThrottle,
}

/// The proxy's routes, ready to serve.
pub fn router(gateway: Arc<Gateway>, config: ProxyConfig) -> axum::Router {
    let state = Arc::new(Proxy {
        gateway,
        config,
        throttle: AttemptThrottle::default(),
    });
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves the proxy on `listener` until `shutdown` completes, then finishes
/// open requests, within `config.limits` (see [`crate::listen`]). Small
/// writes go out at once (`TCP_NODELAY`): streamed answers are many small
/// writes, and Nagle's algorithm would hold each one back until the client's
/// delayed acknowledgement (about 40 ms).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    config: ProxyConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = config.limits;
    listen::serve(listener, router(gateway, config), limits, shutdown).await;
    Ok(())
}

/// Which API shape a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    OpenAi,
    Anthropic,
}

impl Flavor {
    fn error(self, error: &GatewayError) -> Response {
        let body = match self {
            Flavor::OpenAi => openai::error_body(error),
            Flavor::Anthropic => anthropic::error_body(error),
        };
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(wait) = error.retry_after() {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }

    fn refuse(self, status: StatusCode, error_type: &str, message: &str) -> Response {
        let body = match self {
            Flavor::OpenAi => {
                json!({ "error": { "message": message, "type": error_type, "param": null, "code": null } })
            }
            Flavor::Anthropic => {
                json!({ "type": "error", "error": { "type": error_type, "message": message } })
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

/// Why a caller was not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthFailure {
    Missing,
    Wrong,
    /// Too many wrong keys from this client lately; try again after this long.
    Throttled(Duration),
}

impl AuthFailure {
    /// The refusal in the client's API shape.
    fn response(self, flavor: Flavor) -> Response {
        if let AuthFailure::Throttled(wait) = self {
            let seconds = wait.as_secs().max(1);
            let kind = match flavor {
                Flavor::OpenAi => "rate_limit_exceeded",
                Flavor::Anthropic => "rate_limit_error",
            };
            let message = format!("too many wrong gateway keys; try again in {seconds} s");
            let mut response = flavor.refuse(StatusCode::TOO_MANY_REQUESTS, kind, &message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
        let (kind, message) = match (self, flavor) {
            (AuthFailure::Missing, Flavor::OpenAi) => (
                "invalid_request_error",
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
            ),
            (AuthFailure::Missing, Flavor::Anthropic) => {
                ("authentication_error", "x-api-key header is required")
            }
            (AuthFailure::Wrong | AuthFailure::Throttled(_), Flavor::OpenAi) => {
                ("invalid_request_error", "invalid gateway key")
            }
            (AuthFailure::Wrong | AuthFailure::Throttled(_), Flavor::Anthropic) => {
                ("authentication_error", "invalid gateway key")
            }
        };
        flavor.refuse(StatusCode::UNAUTHORIZED, kind, message)
    }
}

impl Proxy {
    /// [`Proxy::key_name`], refusing a client with too many wrong keys
    /// lately without looking at its key, and counting a wrong one.
    fn authenticate(&self, client: IpAddr, headers: &HeaderMap) -> Result<String, AuthFailure> {
        let now = crate::clock::SystemClock.now();
        let client = client_key(client);
        if let Some(wait) = self.throttle.check(&client, now) {
            return Err(AuthFailure::Throttled(wait));
        }
        let result = self.key_name(headers);
        if matches!(result, Err(AuthFailure::Wrong)) {
            tracing::warn!(%client, "a wrong gateway key was presented");
            self.throttle.failed(&client, now);
        }
        result
    }

    /// The name of the key the caller presented (`Authorization: Bearer` or `x-api-key`).
    fn key_name(&self, headers: &HeaderMap) -> Result<String, AuthFailure> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
        };
        let bearer = text(header::AUTHORIZATION).and_then(|value| value.strip_prefix("Bearer "));
        let presented = bearer
            .or_else(|| text(header::HeaderName::from_static("x-api-key")))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(AuthFailure::Missing)?;
        // Compare with every key so the time taken does not depend on which matched.
        let mut found = None;
        for (name, key) in &self.config.keys {
            if key.matches(presented) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found.ok_or(AuthFailure::Wrong)
    }
}

/// The longest cache TTL a request may ask for (Cloudflare's limit: a month).
const MAX_CACHE_TTL_SECONDS: u64 = 30 * 86_400;

/// Reads Cloudflare AI Gateway's request headers into a call context.
fn context(headers: &HeaderMap, key_id: String) -> Result<CallContext, GatewayError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let mut context = CallContext {
        key_id: Some(key_id),
        ..CallContext::default()
    };
    if let Some(ttl) = text("cf-aig-cache-ttl") {
        let seconds: u64 = ttl
            .parse()
            .ok()
            .filter(|seconds| *seconds <= MAX_CACHE_TTL_SECONDS)
            .ok_or_else(|| {
                GatewayError::InvalidRequest(format!(
                    "cf-aig-cache-ttl: expected seconds, at most {MAX_CACHE_TTL_SECONDS} (30 days); got {ttl:?}"
                ))
            })?;
        context.cache.ttl = Some(Duration::from_secs(seconds));
    }
    context.cache.skip =
        text("cf-aig-skip-cache").is_some_and(|value| value.eq_ignore_ascii_case("true"));
    context.cache.key = text("cf-aig-cache-key")
        .filter(|key| !key.is_empty())
        .map(str::to_string);
    if let Some(metadata) = text("cf-aig-metadata") {
        let object: serde_json::Map<String, Value> =
            serde_json::from_str(metadata).map_err(|err| {
                GatewayError::InvalidRequest(format!(
                    "cf-aig-metadata: expected a JSON object ({err})"
                ))
            })?;
        for (key, value) in object {
            let value = match value {
                Value::String(text) => text,
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    return Err(GatewayError::InvalidRequest(format!(
                        "cf-aig-metadata: {key:?} must be a string, number or boolean"
                    )));
                }
            };
            context.metadata.insert(key, value);
        }
    }
    Ok(context)
}

fn with_gateway_headers(mut response: Response, info: &AnswerInfo) -> Response {
    let headers = response.headers_mut();
    let status = if info.cache == CacheStatus::Hit {
        "HIT"
    } else {
        "MISS"
    };
    headers.insert("cf-aig-cache-status", HeaderValue::from_static(status));
    headers.insert("cf-aig-step", HeaderValue::from(info.step));
    response
}

fn random_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend((0..24).map(|_| fastrand::alphanumeric()));
    id
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Starts a call: authentication, body, headers; or the provider-shaped refusal.
async fn begin(
    proxy: &Proxy,
    client: IpAddr,
    headers: &HeaderMap,
    body: Body,
    flavor: Flavor,
    parse: impl FnOnce(&[u8]) -> Result<Call, GatewayError>,
) -> Result<Answer, Response> {
    // The key first: a stranger's body is never read.
    let key_id = proxy
        .authenticate(client, headers)
        .map_err(|failure| failure.response(flavor))?;
    let body = read_body(body, proxy.config.max_body_bytes)
        .await
        .map_err(|(status, kind, message)| flavor.refuse(status, kind, &message))?;
    let mut call = parse(&body).map_err(|err| flavor.error(&err))?;
    call.context = context(headers, key_id).map_err(|err| flavor.error(&err))?;
    proxy
        .gateway
        .call(call)
        .await
        .map_err(|err| flavor.error(&err))
}

/// Reads a request body of at most `limit` bytes (a declared length over it
/// is refused before anything is read).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, (StatusCode, &'static str, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request body is over {limit} bytes"),
        )
    };
    if http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the request body could not be read".to_owned(),
        )),
    }
}

/// Collects a whole answer for a non-streaming client; a failure becomes an error response.
async fn collect(
    answer: Answer,
    flavor: Flavor,
) -> Result<molt_core::model::ModelResponse, Response> {
    let mut events = answer.events;
    let mut builder = ResponseBuilder::default();
    while let Some(item) = events.next().await {
        let event = item.map_err(|err| flavor.error(&err))?;
        builder.push(event).map_err(|err| {
            flavor.error(&GatewayError::Protocol {
                provider: answer.info.provider.clone(),
                message: err.to_string(),
            })
        })?;
    }
    builder.finish().map_err(|err| {
        flavor.error(&GatewayError::Protocol {
            provider: answer.info.provider.clone(),
            message: err.to_string(),
        })
    })
}

async fn chat_completions(
    State(proxy): State<Arc<Proxy>>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut shape = (false, false);
    let parse = |body: &[u8]| {
        let parsed = openai::parse_request(body)?;
        shape = (parsed.stream, parsed.include_usage);
        Ok(Call::new(parsed.request))
    };
    let answer = match begin(&proxy, client, &headers, body, Flavor::OpenAi, parse).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let (stream, include_usage) = shape;
    let info = answer.info.clone();
    let id = random_id("chatcmpl-");
    let created = unix_seconds();
    let response = if stream {
        let mut encoder =
            openai::StreamEncoder::new(id, info.model.clone(), created, include_usage);
        let body = answer.events.flat_map(move |item| {
            let mut lines = Vec::new();
            encoder.encode(&item, &mut lines);
            futures::stream::iter(lines.into_iter().map(|line| {
                Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {line}\n\n")))
            }))
        });
        sse_response(Body::from_stream(body))
    } else {
        match collect(answer, Flavor::OpenAi).await {
            Ok(complete) => axum::Json(openai::encode_response(
                &complete,
                &id,
                &info.model,
                created,
            ))
            .into_response(),
            Err(response) => return response,
        }
    };
    with_gateway_headers(response, &info)
}

async fn messages(
    State(proxy): State<Arc<Proxy>>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut stream = false;
    let parse = |body: &[u8]| {
        let parsed = anthropic::parse_request(body)?;
        stream = parsed.stream;
        Ok(Call::new(parsed.request))
    };
    let answer = match begin(&proxy, client, &headers, body, Flavor::Anthropic, parse).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let info = answer.info.clone();
    let id = random_id("msg_");
    let response = if stream {
        let mut encoder = anthropic::StreamEncoder::new(id, info.model.clone());
        let body = answer.events.flat_map(move |item| {
            let mut events = Vec::new();
            encoder.encode(&item, &mut events);
            futures::stream::iter(events.into_iter().map(|(name, data)| {
                Ok::<_, std::convert::Infallible>(Bytes::from(format!(
                    "event: {name}\ndata: {data}\n\n"
                )))
            }))
        });
        sse_response(Body::from_stream(body))
    } else {
        match collect(answer, Flavor::Anthropic).await {
            Ok(complete) => {
                axum::Json(anthropic::encode_response(&complete, &id, &info.model)).into_response()
            }
            Err(response) => return response,
        }
    };
    with_gateway_headers(response, &info)
}

async fn models(
    State(proxy): State<Arc<Proxy>>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
) -> Response {
    let flavor = if headers.contains_key("anthropic-version") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    };
    if let Err(failure) = proxy.authenticate(client, &headers) {
        return failure.response(flavor);
    }
    let names = proxy.gateway.models();
    let body = match flavor {
        Flavor::OpenAi => json!({
            "object": "list",
            "data": names.iter().map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "molt-ai-gateway" })).collect::<Vec<_>>(),
        }),
        Flavor::Anthropic => json!({
            "data": names.iter().map(|id| json!({ "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z" })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": names.first(),
            "last_id": names.last(),
        }),
    };
    axum::Json(body).into_response()
}

async fn metrics(
    State(proxy): State<Arc<Proxy>>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
) -> Response {
    if let Err(failure) = proxy.authenticate(client, &headers) {
        return failure.response(Flavor::OpenAi);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        proxy.gateway.metrics().prometheus(),
    )
        .into_response()
}
