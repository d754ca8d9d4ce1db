//! The contract every router layer and provider implements: a [`Call`] in,
//! an [`Answer`] (a stream of model events plus what served it) out.

use crate::error::GatewayError;
use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use molt_core::model::{ModelEvent, ModelRequest};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A stream of model events whose errors keep the gateway's detail.
pub type EventStream = BoxStream<'static, Result<ModelEvent, GatewayError>>;

/// How the cache should treat one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// Do not read or write the cache (`cf-aig-skip-cache`).
    pub skip: bool,
    /// Keep this answer this long instead of the gateway's default (`cf-aig-cache-ttl`).
    pub ttl: Option<Duration>,
    /// Use this key instead of one derived from the request (`cf-aig-cache-key`).
    pub key: Option<String>,
}

/// What the gateway knows about a call beyond the model request itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Which gateway key the caller presented (a name, never the secret).
    pub key_id: Option<String>,
    /// Free-form metadata for conditional routes and analytics (`cf-aig-metadata`).
    pub metadata: BTreeMap<String, String>,
    /// Cache instructions.
    pub cache: CacheControl,
}

/// One model call on its way through the layers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Call {
    /// The request; `options.model` names the route or the provider model.
    pub request: ModelRequest,
    /// Routing, cache and accounting context.
    pub context: CallContext,
}

impl Call {
    /// A call with an empty context.
    pub fn new(request: ModelRequest) -> Self {
        Self {
            request,
            context: CallContext::default(),
        }
    }

    /// The requested model or route name (empty when unset).
    pub fn model(&self) -> &str {
        self.request.options.model.as_deref().unwrap_or_default()
    }

    /// The end user, when the caller named one.
    pub fn user(&self) -> Option<&str> {
        self.request.options.user.as_deref()
    }
}

/// Whether an answer came from the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheStatus {
    /// The cache was not consulted.
    #[default]
    Bypass,
    /// Served from the cache.
    Hit,
    /// Not in the cache; answered upstream.
    Miss,
}

impl CacheStatus {
    /// The header value (`HIT`, `MISS`, `BYPASS`).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
        }
    }
}

/// What served an answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerInfo {
    /// The provider that answered.
    pub provider: String,
    /// The provider's model id that answered.
    pub model: String,
    /// Which fallback step answered (0 for the first).
    pub step: usize,
    /// Whether the cache served it.
    pub cache: CacheStatus,
    /// How many attempts the answering step took (1 without retries).
    pub attempts: u32,
}

/// A started answer: output has begun (or the stream is complete), so a
/// failure from here on ends the stream with an error event instead of a retry.
pub struct Answer {
    /// The events; an `Err` item ends the stream.
    pub events: EventStream,
    /// What served it.
    pub info: AnswerInfo,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").field("info", &self.info).finish()
    }
}

/// Something that answers calls: a provider, or a layer around another service.
#[async_trait]
pub trait ModelService: Send + Sync {
    /// Answers `call`. Returns once output has started, so callers may retry an `Err`.
    async fn call(&self, call: Call) -> Result<Answer, GatewayError>;
}

/// A shared service.
pub type SharedService = Arc<dyn ModelService>;

/// Waits for the first output event (text, tool call or stop) of `events`,
/// keeping the events before it (usage), so an error before any output comes back
/// as `Err` (retryable) and one after it stays in the stream.
pub async fn commit_on_first_output(mut events: EventStream) -> Result<EventStream, GatewayError> {
    let mut before = Vec::new();
    loop {
        match events.next().await {
            Some(Ok(event)) => {
                let is_output = !matches!(event, ModelEvent::Usage(_));
                before.push(Ok(event));
                if is_output {
                    return Ok(stream::iter(before).chain(events).boxed());
                }
            }
            Some(Err(error)) => return Err(error),
            None => return Ok(stream::iter(before).boxed()),
        }
    }
}

/// How a watched stream ended.
#[derive(Clone, Debug)]
pub enum StreamEnd {
    /// It ended normally.
    Complete,
    /// It ended with this error.
    Failed(GatewayError),
    /// The caller dropped it before the end.
    Abandoned,
}

/// Calls `on_event` for every item and `on_end` once when the stream ends,
/// fails, or is dropped unfinished.
pub fn watch_stream<E, F>(events: EventStream, on_event: E, on_end: F) -> EventStream
where
    E: FnMut(&ModelEvent) + Send + Unpin + 'static,
    F: FnOnce(StreamEnd) + Send + Unpin + 'static,
{
    Watched {
        inner: events,
        on_event,
        on_end: Some(on_end),
    }
    .boxed()
}

struct Watched<E, F: FnOnce(StreamEnd)> {
    inner: EventStream,
    on_event: E,
    on_end: Option<F>,
}

impl<E, F: FnOnce(StreamEnd)> Watched<E, F> {
    fn end(&mut self, how: StreamEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(how);
        }
    }
}

impl<E, F> Stream for Watched<E, F>
where
    E: FnMut(&ModelEvent) + Send + Unpin,
    F: FnOnce(StreamEnd) + Send + Unpin,
{
    type Item = Result<ModelEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.on_end.is_none() {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(event)) => (self.on_event)(event),
            Some(Err(error)) => self.end(StreamEnd::Failed(error.clone())),
            None => self.end(StreamEnd::Complete),
        }
        Poll::Ready(item)
    }
}

impl<E, F: FnOnce(StreamEnd)> Drop for Watched<E, F> {
    fn drop(&mut self) {
        self.end(StreamEnd::Abandoned);
    }
}
