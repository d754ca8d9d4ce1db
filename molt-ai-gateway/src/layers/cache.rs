//! The response cache: exact match on the normalized request, a TTL per gateway
//! and per call, skip per call, one upstream call for identical concurrent
//! requests, memory bounded by bytes (least recently used goes first), errors
//! never stored, and cached answers replayed as streams.

use crate::error::GatewayError;
use crate::service::{
    Answer, AnswerInfo, CacheStatus, Call, ModelService, SharedService, StreamEnd, watch_stream,
};
use async_trait::async_trait;
use futures::{StreamExt, stream};
use lru::LruCache;
use molt_core::model::ModelEvent;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Cache settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long answers are kept when the call does not say; `None` caches only
    /// calls that ask for it with a TTL.
    pub default_ttl: Option<Duration>,
    /// The most bytes of answers kept.
    pub max_bytes: usize,
    /// How long an identical call waits for the first caller's answer before
    /// asking upstream itself.
    pub wait_limit: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: None,
            max_bytes: 64 * 1024 * 1024,
            wait_limit: Duration::from_secs(30),
        }
    }
}

type Key = [u8; 32];

struct Entry {
    events: Arc<[ModelEvent]>,
    info: AnswerInfo,
    expires: Instant,
    size: usize,
}

struct State {
    entries: LruCache<Key, Entry>,
    bytes: usize,
    inflight: HashMap<Key, (u64, watch::Receiver<()>)>,
    next_flight: u64,
}

/// Counts since the cache was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers kept now.
    pub entries: usize,
    /// Their size in bytes.
    pub bytes: usize,
}

/// The cache layer.
pub struct Cache {
    inner: SharedService,
    config: CacheConfig,
    state: Arc<Mutex<State>>,
}

/// A fixed cost per event and per entry, so many tiny answers still count.
const EVENT_OVERHEAD: usize = 48;
const ENTRY_OVERHEAD: usize = 160;

fn event_size(event: &ModelEvent) -> usize {
    EVENT_OVERHEAD
        + match event {
            ModelEvent::TextDelta(text) => text.len(),
            ModelEvent::ToolCallStart { id, name } => id.len() + name.len(),
            ModelEvent::ToolCallDelta { id, arguments } => id.len() + arguments.len(),
            ModelEvent::ToolCallEnd { id } => id.len(),
            ModelEvent::Usage(_) | ModelEvent::Stop(_) => 0,
        }
}

impl Cache {
    /// Caches answers from `inner`.
    pub fn new(inner: SharedService, config: CacheConfig) -> Self {
        Self {
            inner,
            config,
            state: Arc::new(Mutex::new(State {
                entries: LruCache::unbounded(),
                bytes: 0,
                inflight: HashMap::new(),
                next_flight: 0,
            })),
        }
    }

    /// What the cache holds now.
    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            entries: state.entries.len(),
            bytes: state.bytes,
        }
    }

    /// The key: the caller's own key when given (with the model it asked
    /// for), else a hash of the whole normalized request (model included; JSON
    /// objects have sorted keys). Always scoped to the gateway key the caller
    /// presented, so one client's answers, or a key it chose, never reach
    /// another. The call's metadata always counts, since conditional routes
    /// choose by it.
    fn key(call: &Call) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(b"gateway-key\0");
        hasher.update(
            call.context
                .key_id
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        hasher.update(b"\0");
        for (name, value) in &call.context.metadata {
            hasher.update(name.as_bytes());
            hasher.update(b"\0");
            hasher.update(value.as_bytes());
            hasher.update(b"\0");
        }
        match &call.context.cache.key {
            Some(custom) => {
                hasher.update(b"custom\0");
                hasher.update(call.model().as_bytes());
                hasher.update(b"\0");
                hasher.update(custom.as_bytes());
            }
            None => {
                hasher.update(b"request\0");
                let body = serde_json::to_vec(&call.request).unwrap_or_default();
                hasher.update(&body);
            }
        }
        hasher.finalize().into()
    }

    fn replay(entry: &Entry) -> Answer {
        let events: Vec<_> = entry.events.iter().cloned().map(Ok).collect();
        Answer {
            events: stream::iter(events).boxed(),
            info: AnswerInfo {
                cache: CacheStatus::Hit,
                attempts: 0,
                ..entry.info.clone()
            },
        }
    }
}

enum Lookup {
    Hit(Answer),
    Wait(watch::Receiver<()>),
    Bypass,
    Lead(Flight),
}

/// The leader's claim on a key: while it lives, identical calls wait for its
/// answer; when it is dropped (answer stored, failure, or the caller gone),
/// the claim is released and the waiters look again.
struct Flight {
    key: Key,
    id: u64,
    state: Arc<Mutex<State>>,
    _done: watch::Sender<()>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .inflight
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            state.inflight.remove(&self.key);
        }
        // `_done` drops after this, waking the waiters, who then find the slot free.
    }
}

/// About thirty years from now: "never" for an expiry.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(30 * 365 * 86_400)
}

fn store(state: &Mutex<State>, max_bytes: usize, key: Key, entry: Entry) {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if entry.size > max_bytes {
        return;
    }
    if let Some(old) = state.entries.put(key, entry) {
        state.bytes -= old.size;
    }
    state.bytes += state.entries.peek(&key).map_or(0, |entry| entry.size);
    while state.bytes > max_bytes {
        match state.entries.pop_lru() {
            Some((_, evicted)) => state.bytes -= evicted.size,
            None => break,
        }
    }
}

#[async_trait]
impl ModelService for Cache {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let ttl = call.context.cache.ttl.or(self.config.default_ttl);
        let ttl = match ttl {
            Some(ttl) if !call.context.cache.skip && !ttl.is_zero() => ttl,
            _ => return self.inner.call(call).await,
        };
        let key = Self::key(&call);
        let mut waited = false;
        let flight = loop {
            let lookup = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                match state.entries.get(&key).map(|entry| entry.expires > now) {
                    Some(true) => {
                        Lookup::Hit(Self::replay(state.entries.peek(&key).expect("just found")))
                    }
                    stale => {
                        if stale == Some(false)
                            && let Some(old) = state.entries.pop(&key)
                        {
                            state.bytes -= old.size;
                        }
                        match state.inflight.get(&key) {
                            Some(_) if waited => Lookup::Bypass,
                            Some((_, waiting)) => Lookup::Wait(waiting.clone()),
                            None if waited => Lookup::Bypass,
                            None => {
                                let (sender, receiver) = watch::channel(());
                                state.next_flight += 1;
                                let id = state.next_flight;
                                state.inflight.insert(key, (id, receiver));
                                Lookup::Lead(Flight {
                                    key,
                                    id,
                                    state: self.state.clone(),
                                    _done: sender,
                                })
                            }
                        }
                    }
                }
            };
            match lookup {
                Lookup::Hit(answer) => return Ok(answer),
                // Wait once, for the leader's claim to end or the wait limit; then
                // look again, and without an answer go upstream directly, so a
                // failing or slow leader never lines its waiters up one by one.
                Lookup::Wait(mut receiver) => {
                    let _ = tokio::time::timeout(self.config.wait_limit, receiver.changed()).await;
                    waited = true;
                }
                Lookup::Bypass => {
                    let mut answer = self.inner.call(call).await?;
                    answer.info.cache = CacheStatus::Miss;
                    return Ok(answer);
                }
                Lookup::Lead(flight) => break flight,
            }
        };
        // If this future is dropped while waiting, `flight` drops and releases the claim.
        let answer = self.inner.call(call).await?;
        let info = AnswerInfo {
            cache: CacheStatus::Miss,
            ..answer.info
        };
        let max_bytes = self.config.max_bytes;
        let collected = Arc::new(Mutex::new((Vec::new(), ENTRY_OVERHEAD)));
        let on_event = {
            let collected = collected.clone();
            move |event: &ModelEvent| {
                let (events, size) = &mut *collected.lock().unwrap_or_else(|e| e.into_inner());
                // An answer larger than the whole cache is never stored: stop keeping it.
                if *size <= max_bytes {
                    *size += event_size(event);
                    events.push(event.clone());
                }
            }
        };
        let on_end = {
            let state = self.state.clone();
            let info = info.clone();
            move |end: StreamEnd| {
                if matches!(end, StreamEnd::Complete) {
                    let (events, size) =
                        std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
                    // A TTL too large for the clock keeps the answer until evicted.
                    let expires = Instant::now().checked_add(ttl).unwrap_or_else(far_future);
                    let entry = Entry {
                        events: events.into(),
                        info,
                        expires,
                        size,
                    };
                    store(&state, max_bytes, key, entry);
                }
                drop(flight);
            }
        };
        Ok(Answer {
            events: watch_stream(answer.events, on_event, on_end),
            info,
        })
    }
}
