//! The tokio implementation of `molt-core`'s host services.

use futures::FutureExt;
use futures::future::BoxFuture;
use molt_core::platform::{Clock, Entropy, Platform, Spawner, Timer, Timestamp};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall clock, tokio timers and tasks, and the operating system's random bytes.
pub struct TokioPlatform;

impl TokioPlatform {
    /// The host services for a gateway running on the current tokio runtime.
    pub fn platform() -> Platform {
        let this = Arc::new(TokioPlatform);
        Platform {
            clock: this.clone(),
            timer: this.clone(),
            spawner: this.clone(),
            entropy: this,
        }
    }
}

impl Clock for TokioPlatform {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since_epoch.as_millis() as u64)
    }
}

impl Timer for TokioPlatform {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        tokio::time::sleep(duration).boxed()
    }
}

impl Spawner for TokioPlatform {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

impl Entropy for TokioPlatform {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's random source is available");
    }
}

/// A random token of 32 bytes, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    TokioPlatform.fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
