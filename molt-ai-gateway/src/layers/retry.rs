//! Retries with exponential backoff and jitter that honour `retry-after`, and
//! the time-to-first-token, per-attempt and total timeouts.

use crate::error::{GatewayError, TimeoutKind};
use crate::service::{Answer, Call, EventStream, ModelService, SharedService};
use async_trait::async_trait;
use futures::{StreamExt, stream};
use std::time::Duration;
use tokio::time::Instant;

/// When and how often to try again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 means no retry).
    pub max_attempts: u32,
    /// The delay before the first retry; it doubles each time.
    pub base_delay: Duration,
    /// The longest computed delay.
    pub max_delay: Duration,
    /// The longest `retry-after` to wait for; a longer one fails the step at once
    /// (so a fallback can answer instead).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: the provider's `retry-after` when it
    /// gave one, else exponential backoff with jitter (a random half to all of it).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let doubled = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Time limits for a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the start of an attempt to its first output.
    pub first_token: Option<Duration>,
    /// One attempt, its stream included.
    pub attempt: Option<Duration>,
    /// The whole call, retries and stream included.
    pub total: Option<Duration>,
}

/// The retry layer.
pub struct Retry {
    inner: SharedService,
    policy: RetryPolicy,
    timeouts: Timeouts,
}

impl Retry {
    /// Retries calls to `inner` under `policy`, within `timeouts`.
    pub fn new(inner: SharedService, policy: RetryPolicy, timeouts: Timeouts) -> Self {
        Self {
            inner,
            policy,
            timeouts,
        }
    }
}

fn earliest(limits: &[(Option<Instant>, TimeoutKind)]) -> Option<(Instant, TimeoutKind)> {
    limits
        .iter()
        .filter_map(|(at, kind)| at.map(|at| (at, *kind)))
        .min_by_key(|(at, _)| *at)
}

#[async_trait]
impl ModelService for Retry {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        // A limit too large for the clock is no limit.
        let total_deadline = self
            .timeouts
            .total
            .and_then(|limit| Instant::now().checked_add(limit));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let start = Instant::now();
            let attempt_deadline = self
                .timeouts
                .attempt
                .and_then(|limit| start.checked_add(limit));
            let first_deadline = self
                .timeouts
                .first_token
                .and_then(|limit| start.checked_add(limit));
            let limit = earliest(&[
                (first_deadline, TimeoutKind::FirstToken),
                (attempt_deadline, TimeoutKind::Attempt),
                (total_deadline, TimeoutKind::Total),
            ]);
            let result = match limit {
                Some((at, kind)) => tokio::time::timeout_at(at, self.inner.call(call.clone()))
                    .await
                    .unwrap_or(Err(GatewayError::Timeout(kind))),
                None => self.inner.call(call.clone()).await,
            };
            let error = match result {
                Ok(mut answer) => {
                    answer.info.attempts = attempt;
                    let stream_limit = earliest(&[
                        (attempt_deadline, TimeoutKind::Attempt),
                        (total_deadline, TimeoutKind::Total),
                    ]);
                    if let Some((at, kind)) = stream_limit {
                        answer.events = with_deadline(answer.events, at, kind);
                    }
                    return Ok(answer);
                }
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= self.policy.max_attempts {
                return Err(error);
            }
            if error
                .retry_after()
                .is_some_and(|wait| wait > self.policy.max_retry_after)
            {
                return Err(error);
            }
            let delay = self.policy.delay(attempt, error.retry_after());
            if total_deadline.is_some_and(|deadline| {
                Instant::now()
                    .checked_add(delay)
                    .is_none_or(|at| at >= deadline)
            }) {
                return Err(error);
            }
            tracing::debug!(attempt, ?delay, error = %error, "retrying a model call");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Ends `events` with a timeout error if it has not finished by `deadline`.
pub fn with_deadline(events: EventStream, deadline: Instant, kind: TimeoutKind) -> EventStream {
    let sleep = Box::pin(tokio::time::sleep_until(deadline));
    stream::unfold(
        (events, sleep, false),
        move |(mut events, mut sleep, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                item = events.next() => {
                    let item = item?;
                    let done = item.is_err();
                    Some((item, (events, sleep, done)))
                }
                () = &mut sleep => Some((Err(GatewayError::Timeout(kind)), (events, sleep, true))),
            }
        },
    )
    .boxed()
}
