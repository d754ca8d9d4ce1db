//! HTTP clients for the providers: Anthropic's Messages API and OpenAI's Chat
//! Completions (OpenAI itself and every compatible server), directly or through
//! Cloudflare AI Gateway.

use crate::error::GatewayError;
use crate::service::{Answer, AnswerInfo, Call, EventStream, ModelService, commit_on_first_output};
use crate::wire::{anthropic, openai};
use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::{StreamExt, stream};
use molt_core::Secret;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Which API a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Anthropic's Messages API; the base URL excludes `/v1`.
    Anthropic,
    /// OpenAI's Chat Completions API; the base URL includes `/v1` (or its equivalent).
    #[serde(rename = "openai")]
    OpenAi,
}

/// Log targets whose traces show HTTP frames, which carry provider keys:
/// binaries should keep them at `info` or above.
pub const HTTP_LOG_TARGETS: [&str; 5] = ["h2", "hyper", "hyper_util", "reqwest", "rustls"];

/// Cloudflare AI Gateway's public endpoint.
pub const CLOUDFLARE_AI_GATEWAY: &str = "https://gateway.ai.cloudflare.com/v1";

/// How to reach one provider.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// A name for routes, logs and analytics (`anthropic`, `openai`, `groq`, ...).
    pub name: String,
    /// The API it speaks.
    pub api: Api,
    /// The base URL, as the provider's official SDK expects it.
    pub base_url: String,
    /// The provider's API key (`x-api-key` for Anthropic, a bearer token otherwise).
    pub api_key: Option<Secret>,
    /// A Cloudflare AI Gateway token, sent as `cf-aig-authorization` for authenticated gateways.
    pub gateway_token: Option<Secret>,
    /// `max_tokens` for Anthropic requests that leave it unset (Anthropic requires one).
    pub default_max_tokens: u32,
    /// The limit on connecting.
    pub connect_timeout: Duration,
    /// The longest silence tolerated while reading an answer.
    pub read_timeout: Duration,
    /// For Chat Completions: send the output limit as `max_completion_tokens`
    /// (OpenAI's current name; its reasoning models refuse `max_tokens`) rather
    /// than `max_tokens` (what compatible servers understand).
    pub max_completion_tokens: bool,
}

impl ProviderConfig {
    fn new(name: &str, api: Api, base_url: &str, api_key: Option<Secret>) -> Self {
        Self {
            name: name.to_string(),
            api,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            gateway_token: None,
            default_max_tokens: 4096,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            max_completion_tokens: false,
        }
    }

    /// Anthropic at `https://api.anthropic.com`.
    pub fn anthropic(api_key: Secret) -> Self {
        Self::new(
            "anthropic",
            Api::Anthropic,
            "https://api.anthropic.com",
            Some(api_key),
        )
    }

    /// OpenAI at `https://api.openai.com/v1`.
    pub fn openai(api_key: Secret) -> Self {
        let base = Self::new(
            "openai",
            Api::OpenAi,
            "https://api.openai.com/v1",
            Some(api_key),
        );
        Self {
            max_completion_tokens: true,
            ..base
        }
    }

    /// Any server speaking Chat Completions at `base_url` (Groq, Mistral, OpenRouter, Ollama, vLLM, Workers AI).
    pub fn openai_compatible(name: &str, base_url: &str, api_key: Option<Secret>) -> Self {
        Self::new(name, Api::OpenAi, base_url, api_key)
    }

    /// A provider reached through Cloudflare AI Gateway, and the model id to ask
    /// it for. `provider` is the gateway's name for it (`anthropic`, `openai`,
    /// `workers-ai`, `groq`, `mistral`, ...). Anthropic is spoken to in Messages,
    /// OpenAI and Workers AI on their own Chat Completions paths, and every other
    /// provider through the gateway's OpenAI-compatible `/compat` endpoint, where
    /// models are named `provider/model`.
    pub fn cloudflare_ai_gateway(
        account_id: &str,
        gateway_id: &str,
        provider: &str,
        model: &str,
        api_key: Option<Secret>,
    ) -> (Self, String) {
        let gateway = format!("{CLOUDFLARE_AI_GATEWAY}/{account_id}/{gateway_id}");
        let name = format!("cf-ai-gateway-{provider}");
        match provider {
            "anthropic" => (
                Self::new(
                    &name,
                    Api::Anthropic,
                    &format!("{gateway}/anthropic"),
                    api_key,
                ),
                model.to_string(),
            ),
            "openai" => (
                Self {
                    max_completion_tokens: true,
                    ..Self::new(&name, Api::OpenAi, &format!("{gateway}/openai"), api_key)
                },
                model.to_string(),
            ),
            "workers-ai" => (
                Self::new(
                    &name,
                    Api::OpenAi,
                    &format!("{gateway}/workers-ai/v1"),
                    api_key,
                ),
                model.to_string(),
            ),
            other => (
                Self::new(&name, Api::OpenAi, &format!("{gateway}/compat"), api_key),
                format!("{other}/{model}"),
            ),
        }
    }

    /// The same provider under another name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Adds a Cloudflare AI Gateway token (`cf-aig-authorization: Bearer ...`).
    pub fn with_gateway_token(mut self, token: Secret) -> Self {
        self.gateway_token = Some(token);
        self
    }

    fn endpoint(&self) -> String {
        match self.api {
            Api::Anthropic => format!("{}/v1/messages", self.base_url),
            Api::OpenAi => format!("{}/chat/completions", self.base_url),
        }
    }
}

/// A provider client: a [`ModelService`] that calls the model named in `options.model`.
pub struct Provider {
    config: ProviderConfig,
    endpoint: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.config.name)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The largest error body read from a provider.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl Provider {
    /// A client for `config`.
    pub fn new(config: ProviderConfig) -> Result<Self, GatewayError> {
        let client = http_client(config.connect_timeout, config.read_timeout)?;
        Ok(Self {
            endpoint: config.endpoint(),
            config,
            client,
        })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The provider's configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// A transport error, without the URL (it can name a Cloudflare account and gateway).
    fn connection_error(&self, err: reqwest::Error) -> GatewayError {
        if err.is_timeout() {
            return GatewayError::Timeout(crate::error::TimeoutKind::Attempt);
        }
        GatewayError::Connection {
            provider: self.config.name.clone(),
            message: molt_core::error::chain(&err.without_url()),
        }
    }

    async fn send(&self, call: &Call) -> Result<EventStream, GatewayError> {
        let model = call
            .request
            .options
            .model
            .as_deref()
            .filter(|model| !model.is_empty())
            .ok_or_else(|| GatewayError::InvalidRequest("no model given".into()))?;
        let body = match self.config.api {
            Api::Anthropic => {
                anthropic::encode_request(&call.request, model, self.config.default_max_tokens)?
            }
            Api::OpenAi => {
                openai::encode_request(&call.request, model, self.config.max_completion_tokens)?
            }
        };
        let mut request = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(body.to_string());
        if let Some(key) = &self.config.api_key {
            request = match self.config.api {
                Api::Anthropic => request.header("x-api-key", sensitive(key.expose())?),
                Api::OpenAi => request.bearer_auth(key.expose()),
            };
        }
        if self.config.api == Api::Anthropic {
            request = request.header("anthropic-version", anthropic::API_VERSION);
        }
        if let Some(token) = &self.config.gateway_token {
            let value = sensitive(&format!("Bearer {}", token.expose()))?;
            request = request.header("cf-aig-authorization", value);
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.connection_error(err))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            // The gateway's own credentials were refused: the caller's key is not at fault.
            tracing::warn!(provider = %self.config.name, status, "the provider refused the gateway's credentials");
            return Err(GatewayError::ProviderAuth {
                provider: self.config.name.clone(),
                status,
            });
        }
        if !response.status().is_success() {
            let retry_after = retry_after(response.headers());
            let body = read_limited(response, MAX_ERROR_BODY).await;
            let mut error = match self.config.api {
                Api::Anthropic => anthropic::parse_error(&self.config.name, status, &body),
                Api::OpenAi => openai::parse_error(&self.config.name, status, &body),
            };
            if let GatewayError::Upstream {
                retry_after: slot, ..
            } = &mut error
            {
                *slot = retry_after;
            }
            tracing::debug!(provider = %self.config.name, status, "provider refused the call");
            return Err(error);
        }
        Ok(self.decode(response))
    }

    fn decode(&self, response: reqwest::Response) -> EventStream {
        let name = self.config.name.clone();
        let events = response.bytes_stream().eventsource();
        let decoder = match self.config.api {
            Api::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new(&name)),
            Api::OpenAi => Decoder::OpenAi(openai::StreamDecoder::new(&name)),
        };
        let state = (events.boxed(), decoder, false);
        stream::unfold(state, move |(mut events, mut decoder, ended)| {
            let name = name.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    let mut out = Vec::new();
                    let step = match events.next().await {
                        Some(Ok(event)) => decoder.push(&event.data, &mut out).map(|()| false),
                        Some(Err(err)) => Err(GatewayError::Connection {
                            provider: name.clone(),
                            message: match err {
                                eventsource_stream::EventStreamError::Transport(err) => {
                                    format!(
                                        "the stream broke: {}",
                                        molt_core::error::chain(&err.without_url())
                                    )
                                }
                                other => format!("the stream broke: {other}"),
                            },
                        }),
                        None => decoder.finish(&mut out).map(|()| true),
                    };
                    match step {
                        Ok(ended) if out.is_empty() && !ended => continue,
                        Ok(ended) => {
                            // Nothing after the stop matters, not even a reset connection.
                            let ended = ended
                                || out
                                    .iter()
                                    .any(|e| matches!(e, molt_core::model::ModelEvent::Stop(_)));
                            let items: Vec<_> = out.into_iter().map(Ok).collect();
                            return Some((stream::iter(items), (events, decoder, ended)));
                        }
                        Err(error) => {
                            let mut items: Vec<_> = out.into_iter().map(Ok).collect();
                            items.push(Err(error));
                            return Some((stream::iter(items), (events, decoder, true)));
                        }
                    }
                }
            }
        })
        .flatten()
        .boxed()
    }
}

enum Decoder {
    Anthropic(anthropic::StreamDecoder),
    OpenAi(openai::StreamDecoder),
}

impl Decoder {
    fn push(
        &mut self,
        data: &str,
        out: &mut Vec<molt_core::model::ModelEvent>,
    ) -> Result<(), GatewayError> {
        match self {
            Decoder::Anthropic(decoder) => decoder.push(data, out),
            Decoder::OpenAi(decoder) => decoder.push(data, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<molt_core::model::ModelEvent>) -> Result<(), GatewayError> {
        match self {
            Decoder::Anthropic(decoder) => decoder.finish(),
            Decoder::OpenAi(decoder) => decoder.finish(out),
        }
    }
}

#[async_trait]
impl ModelService for Provider {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let model = call.model().to_string();
        let events = commit_on_first_output(self.send(&call).await?).await?;
        Ok(Answer {
            events,
            info: AnswerInfo {
                provider: self.config.name.clone(),
                model,
                attempts: 1,
                ..AnswerInfo::default()
            },
        })
    }
}

/// The HTTP client the providers use: rustls (ring) with Mozilla's roots, so it works in
/// containers without a CA bundle.
pub fn http_client(
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, GatewayError> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(|err| GatewayError::InvalidRequest(format!("TLS setup: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        // Never follow redirects: they would carry `x-api-key` and
        // `cf-aig-authorization` to another host (reqwest strips only `Authorization`).
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| {
            GatewayError::InvalidRequest(format!(
                "HTTP client setup: {}",
                molt_core::error::chain(&err)
            ))
        })
}

/// Reads at most `limit` bytes of a body; a broken body yields what arrived.
async fn read_limited(response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// A header value that HTTP/2 never indexes and `Debug` never prints.
fn sensitive(value: &str) -> Result<reqwest::header::HeaderValue, GatewayError> {
    let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        GatewayError::InvalidRequest(
            "a configured key holds characters a header cannot carry".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The longest `retry-after` believed; anything longer (or not a number) is capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0))
        .map_or(MAX_RETRY_AFTER, |wait| wait.min(MAX_RETRY_AFTER))
}

/// `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|value| value.parse::<f64>().ok()) {
        return Some(seconds(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(value) = value.parse::<f64>() {
        return Some(seconds(value));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates_and_caps_nonsense() {
        assert_eq!(
            retry_after(&headers("retry-after", "2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers("retry-after-ms", "150")),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            retry_after(&headers("retry-after", "1e20")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers("retry-after", "inf")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers("retry-after", "-5")),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("retry-after", "soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn cloudflare_ai_gateway_paths_follow_its_documentation() {
        let gateway = "https://gateway.ai.cloudflare.com/v1/acct/gw";
        let (anthropic, model) = ProviderConfig::cloudflare_ai_gateway(
            "acct",
            "gw",
            "anthropic",
            "claude-sonnet-4-5",
            None,
        );
        assert_eq!(
            (anthropic.api, anthropic.endpoint(), model.as_str()),
            (
                Api::Anthropic,
                format!("{gateway}/anthropic/v1/messages"),
                "claude-sonnet-4-5"
            )
        );
        let (openai, _) =
            ProviderConfig::cloudflare_ai_gateway("acct", "gw", "openai", "gpt-4o", None);
        assert_eq!(
            openai.endpoint(),
            format!("{gateway}/openai/chat/completions")
        );
        assert!(openai.max_completion_tokens);
        let (workers, model) = ProviderConfig::cloudflare_ai_gateway(
            "acct",
            "gw",
            "workers-ai",
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            None,
        );
        assert_eq!(
            (workers.endpoint(), model.as_str()),
            (
                format!("{gateway}/workers-ai/v1/chat/completions"),
                "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
            )
        );
        let (groq, model) =
            ProviderConfig::cloudflare_ai_gateway("acct", "gw", "groq", "llama-3.3-70b", None);
        assert_eq!(
            (groq.endpoint(), model.as_str()),
            (
                format!("{gateway}/compat/chat/completions"),
                "groq/llama-3.3-70b"
            )
        );
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let config = ProviderConfig::anthropic(Secret::new("sk-ant-secret"))
            .with_gateway_token(Secret::new("cf-secret"));
        let text = format!("{config:?} {:?}", Provider::new(config.clone()).unwrap());
        assert!(
            !text.contains("sk-ant-secret") && !text.contains("cf-secret"),
            "{text}"
        );
    }
}
