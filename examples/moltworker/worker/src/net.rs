//! Outbound calls with a deadline: the Workers runtime gives `fetch` none.

use futures::future::{Either, select};
use std::future::Future;
use std::time::Duration;
use worker::Delay;

/// A call that did not finish in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no answer within {0:?}")]
pub struct TimedOut(pub Duration);

/// `future`'s output, or [`TimedOut`] after `limit`.
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Result<T, TimedOut> {
    let future = std::pin::pin!(future);
    match select(future, Delay::from(limit)).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(_) => Err(TimedOut(limit)),
    }
}

/// Milliseconds since the Unix epoch, by the runtime's clock.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
