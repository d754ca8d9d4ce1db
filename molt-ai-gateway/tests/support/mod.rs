//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod fake;

use async_trait::async_trait;
use futures::StreamExt;
use molt_ai_gateway::service::{Answer, AnswerInfo, Call, EventStream, ModelService};
use molt_ai_gateway::{GatewayError, Provider, ProviderConfig};
use molt_core::Secret;
use molt_core::message::{Message, Usage};
use molt_core::model::{ModelEvent, ModelRequest, StopReason};
use molt_core::platform::{Clock, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A provider client for the fake's Anthropic API.
pub fn anthropic(fake: &fake::FakeProvider) -> Provider {
    let config = ProviderConfig::openai_compatible(
        "anthropic",
        &fake.anthropic_url(),
        Some(Secret::new(fake::ANTHROPIC_KEY)),
    );
    Provider::new(ProviderConfig {
        api: molt_ai_gateway::Api::Anthropic,
        ..config
    })
    .unwrap()
}

/// A provider client for the fake's OpenAI API.
pub fn openai(fake: &fake::FakeProvider) -> Provider {
    Provider::new(ProviderConfig::openai_compatible(
        "openai",
        &fake.openai_url(),
        Some(Secret::new(fake::OPENAI_KEY)),
    ))
    .unwrap()
}

/// A one-message call for `model`.
pub fn call(model: &str, text: &str) -> Call {
    let mut request = ModelRequest {
        messages: vec![Message::user(text)],
        ..ModelRequest::default()
    };
    request.options.model = Some(model.to_string());
    Call::new(request)
}

/// Every event of an answer, and the error that ended it, if any.
pub async fn drain(answer: Answer) -> (Vec<ModelEvent>, Option<GatewayError>) {
    let mut events = Vec::new();
    let mut stream = answer.events;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

/// The text of some events.
pub fn text(events: &[ModelEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            ModelEvent::TextDelta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// A clock moved by hand.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(ms: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(ms)))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A service that answers at once with a fixed text and usage, counting calls.
/// It stands in for the layers *below* the one under test.
pub struct Answering {
    pub name: &'static str,
    pub calls: AtomicUsize,
    pub usage: Usage,
}

impl Answering {
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            calls: AtomicUsize::new(0),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
        })
    }
    pub fn with_usage(name: &'static str, usage: Usage) -> Arc<Self> {
        Arc::new(Self {
            name,
            calls: AtomicUsize::new(0),
            usage,
        })
    }
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub fn answer_stream(text: &str, usage: Usage) -> EventStream {
    let events = vec![
        Ok(ModelEvent::Usage(Usage {
            output_tokens: 0,
            ..usage
        })),
        Ok(ModelEvent::TextDelta(text.to_string())),
        Ok(ModelEvent::Usage(usage)),
        Ok(ModelEvent::Stop(StopReason::EndTurn)),
    ];
    futures::stream::iter(events).boxed()
}

#[async_trait]
impl ModelService for Answering {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Answer {
            events: answer_stream(&format!("{} #{n}", self.name), self.usage),
            info: AnswerInfo {
                provider: self.name.to_string(),
                model: call.model().to_string(),
                attempts: 1,
                ..AnswerInfo::default()
            },
        })
    }
}

/// A service that always fails with `error`, counting calls.
pub struct Failing {
    pub error: GatewayError,
    pub calls: AtomicUsize,
}

impl Failing {
    pub fn new(error: GatewayError) -> Arc<Self> {
        Arc::new(Self {
            error,
            calls: AtomicUsize::new(0),
        })
    }
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ModelService for Failing {
    async fn call(&self, _call: Call) -> Result<Answer, GatewayError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(self.error.clone())
    }
}

/// Service 429 error with a retry-after.
pub fn upstream(status: u16) -> GatewayError {
    GatewayError::Upstream {
        provider: "fake".into(),
        status,
        error_type: "x".into(),
        message: "fails".into(),
        retry_after: None,
    }
}

/// The gateway key the test proxies accept.
pub const GATEWAY_KEY: &str = "molt-test-gateway-key";

/// A gateway configuration over the fake: providers `anthropic` and `openai`,
/// and a `fallback` route (Anthropic `rate-limited`, then OpenAI `echo`).
pub fn gateway_toml(fake: &fake::FakeProvider, extra: &str) -> String {
    format!(
        r#"
[[providers]]
name = "anthropic"
api = "anthropic"
base_url = "{anthropic}"
api_key = "{anthropic_key}"

[[providers]]
name = "openai"
api = "openai"
base_url = "{openai}"
api_key = "{openai_key}"

[retry]
max_attempts = 2
base_delay = "1ms"
max_retry_after = "100ms"

[routes.fallback]
steps = [{{ provider = "anthropic", model = "rate-limited" }}, {{ provider = "openai", model = "echo" }}]

{extra}
"#,
        anthropic = fake.anthropic_url(),
        anthropic_key = fake::ANTHROPIC_KEY,
        openai = fake.openai_url(),
        openai_key = fake::OPENAI_KEY,
    )
}

/// A running proxy over the fake.
pub struct RunningProxy {
    pub address: std::net::SocketAddr,
    pub gateway: Arc<molt_ai_gateway::Gateway>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// Starts the proxy on a free loopback port.
pub async fn start_proxy(toml: &str, max_body_bytes: usize) -> RunningProxy {
    let config = molt_ai_gateway::GatewayConfig::from_toml(toml).unwrap();
    let gateway = Arc::new(molt_ai_gateway::Gateway::from_config(&config, |_| None).unwrap());
    let proxy_config = molt_ai_gateway::proxy::ProxyConfig {
        keys: vec![("test".into(), Secret::new(GATEWAY_KEY))],
        max_body_bytes,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = gateway.clone();
    let task = tokio::spawn(async move {
        molt_ai_gateway::proxy::serve(listener, served, proxy_config, std::future::pending())
            .await
            .unwrap();
    });
    RunningProxy {
        address,
        gateway,
        task,
    }
}
