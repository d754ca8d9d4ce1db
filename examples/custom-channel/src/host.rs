//! The host side, shared by the binary and the tests: tokio platform services,
//! and a gateway that answers [`CHANNEL`](crate::CHANNEL) with the offline echo model.

use futures::FutureExt;
use futures::future::BoxFuture;
use molt_core::agent::{Agent, AgentOptions};
use molt_core::echo::EchoModel;
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::platform::{Clock, Entropy, Platform, Spawner, Timer, Timestamp};
use molt_core::policy::{ChannelPolicy, DmPolicy};
use molt_core::session::SessionScope;
use molt_core::store::{LogStore, Store};
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall clock, tokio timers and tasks, and the operating system's random bytes.
pub struct TokioHost;

impl TokioHost {
    /// The host services for a gateway on the current tokio runtime.
    pub fn platform() -> Platform {
        let host = Arc::new(TokioHost);
        Platform {
            clock: host.clone(),
            timer: host.clone(),
            spawner: host.clone(),
            entropy: host,
        }
    }
}

impl Clock for TokioHost {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
        Timestamp(since_epoch.unwrap_or_default().as_millis() as u64)
    }
}

impl Timer for TokioHost {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        tokio::time::sleep(duration).boxed()
    }
}

impl Spawner for TokioHost {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

impl Entropy for TokioHost {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's random source is available");
    }
}

/// A gateway over `store` (a [`MemoryStore`](molt_core::store::MemoryStore),
/// say) answering with the echo model, open to everyone on
/// [`CHANNEL`](crate::CHANNEL), with one session per connection.
pub fn echo_gateway<S: Store + LogStore + 'static>(store: Arc<S>) -> Gateway {
    let platform = TokioHost::platform();
    let tools = Arc::new(ToolRegistry::new());
    let agent = Agent::new(
        Arc::new(EchoModel),
        tools,
        platform.timer.clone(),
        AgentOptions::default(),
    );
    let open = ChannelPolicy {
        dm_policy: DmPolicy::Open,
        ..ChannelPolicy::default()
    };
    Gateway::new(GatewayParts {
        store: store.clone(),
        logs: store,
        agent,
        platform,
        system_prompt: std::sync::Arc::new("You are a helpful assistant.".to_owned()),
        notebook: None,
        scope: SessionScope::PerChannelPeer,
        compaction: CompactionPolicy::default(),
        policies: BTreeMap::from([(crate::CHANNEL.to_owned(), open)]),
        observer: None,
    })
}
