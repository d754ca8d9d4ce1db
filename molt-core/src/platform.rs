//! What the runtime needs from its host: time, timers, task spawning and randomness.
//!
//! `molt-core` has no async runtime and no clock of its own, so that it builds
//! for `wasm32-unknown-unknown`. The host (a tokio binary, a Worker, a test)
//! implements these four small traits and hands them over as a [`Platform`].

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This time plus a duration (saturating).
    pub fn plus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration.as_millis() as u64))
    }
}

/// The current time.
pub trait Clock: Send + Sync {
    /// Now, as milliseconds since the Unix epoch.
    fn now(&self) -> Timestamp;
}

/// Timers.
pub trait Timer: Send + Sync {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Runs background tasks (one per busy session).
pub trait Spawner: Send + Sync {
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// Cryptographically secure random bytes (pairing codes, tokens).
pub trait Entropy: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The host services the runtime uses, bundled.
#[derive(Clone)]
pub struct Platform {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Timers.
    pub timer: Arc<dyn Timer>,
    /// Task spawning.
    pub spawner: Arc<dyn Spawner>,
    /// Random bytes.
    pub entropy: Arc<dyn Entropy>,
}
