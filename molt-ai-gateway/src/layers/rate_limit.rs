//! Rate limits: fixed and sliding windows, per gateway, per key or per user,
//! counting requests or tokens. A refused call gets [`GatewayError::RateLimited`]
//! with the time after which it would be accepted (the proxy's `Retry-After`).

use crate::error::GatewayError;
use crate::service::{Answer, CacheStatus, Call, ModelService, SharedService, watch_stream};
use async_trait::async_trait;
use molt_core::model::ModelEvent;
use molt_core::platform::{Clock, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whose calls a limit counts together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every call through the gateway.
    Gateway,
    /// Calls made with the same gateway key.
    Key,
    /// Calls for the same end user (calls without one share a bucket).
    User,
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Calls.
    Requests,
    /// Tokens in and out, counted when an answer ends (cache hits are free).
    Tokens,
}

/// How a window moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Counts reset at each multiple of the period.
    Fixed,
    /// The last period, estimated from the current and previous fixed windows
    /// (the previous one weighted by how much of it still overlaps).
    Sliding,
}

/// One limit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Limit {
    /// A name for errors and logs.
    pub name: String,
    /// Whose calls count together.
    pub scope: Scope,
    /// What is counted.
    pub unit: Unit,
    /// How many per period.
    pub limit: u64,
    /// The period.
    #[serde(with = "crate::config::duration")]
    pub period: Duration,
    /// Fixed or sliding.
    pub window: Window,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    window: u64,
    current: u64,
    previous: u64,
}

impl Counter {
    fn roll(&mut self, window: u64) {
        if window == self.window {
            return;
        }
        self.previous = if window == self.window + 1 {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.window = window;
    }
}

/// Counts for every limit and subject.
struct Ledger {
    counters: HashMap<(usize, String), Counter>,
    /// How many counters the last sweep kept: the next sweep waits until twice as many.
    kept_at_sweep: usize,
}

/// Subjects kept before stale counters are swept.
const SWEEP_AT: usize = 10_000;

/// The rate-limit layer.
pub struct RateLimit {
    inner: SharedService,
    limits: Arc<[Limit]>,
    ledger: Arc<Mutex<Ledger>>,
    clock: Arc<dyn Clock>,
}

impl RateLimit {
    /// Applies `limits` to calls to `inner`, timed by `clock`.
    pub fn new(inner: SharedService, limits: Vec<Limit>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            limits: limits.into(),
            ledger: Arc::new(Mutex::new(Ledger {
                counters: HashMap::new(),
                kept_at_sweep: 0,
            })),
            clock,
        }
    }
}

fn subject(limit: &Limit, call: &Call) -> String {
    match limit.scope {
        Scope::Gateway => String::new(),
        Scope::Key => call.context.key_id.clone().unwrap_or_default(),
        Scope::User => call.user().unwrap_or_default().to_string(),
    }
}

fn period_ms(limit: &Limit) -> u64 {
    (limit.period.as_millis() as u64).max(1)
}

/// Whether `cost` more fits under `limit`, or how long until it would.
fn check(limit: &Limit, counter: &Counter, now: Timestamp, cost: u64) -> Result<(), Duration> {
    let period = period_ms(limit);
    let window_end = (counter.window + 1) * period;
    let to_window_end = Duration::from_millis(window_end.saturating_sub(now.0).max(1));
    // Token limits are checked before the answer's size is known: refuse once the budget is used up.
    let fits = |count: u64| match limit.unit {
        Unit::Requests => count + cost <= limit.limit,
        Unit::Tokens => count < limit.limit,
    };
    match limit.window {
        Window::Fixed => fits(counter.current).then_some(()).ok_or(to_window_end),
        Window::Sliding => {
            let elapsed = (now.0 - counter.window * period) as f64 / period as f64;
            let estimate = counter.previous as f64 * (1.0 - elapsed) + counter.current as f64;
            if fits(estimate.ceil() as u64) {
                return Ok(());
            }
            let room = limit.limit as f64 - counter.current as f64 - cost as f64;
            if room < 0.0 {
                // This window alone is over the limit. Next window it becomes the
                // previous one, and must fade until `cost` more fits.
                let budget = limit.limit as f64 - cost as f64;
                let fade = if counter.current == 0 {
                    1.0
                } else {
                    (1.0 - budget / counter.current as f64).clamp(0.0, 1.0)
                };
                let wait =
                    to_window_end + Duration::from_millis((fade * period as f64).ceil() as u64);
                return Err(wait);
            }
            if counter.previous == 0 {
                return Err(to_window_end);
            }
            let needed = 1.0 - room / counter.previous as f64;
            let wait = ((needed - elapsed) * period as f64).ceil().max(1.0) as u64;
            Err(Duration::from_millis(wait))
        }
    }
}

impl RateLimit {
    fn admit(&self, call: &Call) -> Result<Vec<(usize, String)>, GatewayError> {
        let now = self.clock.now();
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if ledger.counters.len() > SWEEP_AT.max(2 * ledger.kept_at_sweep) {
            let limits = self.limits.clone();
            ledger.counters.retain(|(index, _), counter| {
                now.0 / period_ms(&limits[*index]) <= counter.window + 1
            });
            ledger.kept_at_sweep = ledger.counters.len();
        }
        let mut subjects = Vec::with_capacity(self.limits.len());
        for (index, limit) in self.limits.iter().enumerate() {
            let subject = subject(limit, call);
            let window = now.0 / period_ms(limit);
            let counter = ledger.counters.entry((index, subject.clone())).or_default();
            counter.roll(window);
            check(limit, counter, now, 1).map_err(|retry_after| GatewayError::RateLimited {
                limit: limit.name.clone(),
                retry_after,
            })?;
            subjects.push((index, subject));
        }
        for (index, subject) in &subjects {
            if self.limits[*index].unit == Unit::Requests
                && let Some(counter) = ledger.counters.get_mut(&(*index, subject.clone()))
            {
                counter.current += 1;
            }
        }
        Ok(subjects)
    }
}

#[async_trait]
impl ModelService for RateLimit {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let subjects = self.admit(&call)?;
        let mut answer = self.inner.call(call).await?;
        let counts_tokens = self.limits.iter().any(|limit| limit.unit == Unit::Tokens);
        if !counts_tokens || answer.info.cache == CacheStatus::Hit {
            return Ok(answer);
        }
        let tokens = Arc::new(Mutex::new(0u64));
        let on_event = {
            let tokens = tokens.clone();
            move |event: &ModelEvent| {
                if let ModelEvent::Usage(usage) = event {
                    *tokens.lock().unwrap_or_else(|e| e.into_inner()) = usage.input_tokens
                        + usage.output_tokens
                        + usage.cache_read_tokens
                        + usage.cache_write_tokens;
                }
            }
        };
        let (ledger, limits, clock) =
            (self.ledger.clone(), self.limits.clone(), self.clock.clone());
        let on_end = move |_| {
            let used = *tokens.lock().unwrap_or_else(|e| e.into_inner());
            let now = clock.now();
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            for (index, subject) in subjects {
                let limit = &limits[index];
                if limit.unit == Unit::Tokens {
                    let counter = ledger.counters.entry((index, subject)).or_default();
                    counter.roll(now.0 / period_ms(limit));
                    counter.current += used;
                }
            }
        };
        answer.events = watch_stream(answer.events, on_event, on_end);
        Ok(answer)
    }
}
