//! A real `molt-core` gateway for end-to-end tests: a memory store, tokio
//! host services, the default pairing policy, and a model that repeats the
//! user's text a set number of times (long replies exercise splitting).

#![allow(dead_code)]

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use molt_core::agent::{Agent, AgentOptions};
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::message::Role;
use molt_core::model::{
    LanguageModel, ModelError, ModelEvent, ModelRequest, ModelStream, StopReason,
};
use molt_core::platform::{Clock, Entropy, Platform, Spawner, Timer, Timestamp};
use molt_core::session::SessionScope;
use molt_core::store::MemoryStore;
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall clock, tokio timers and tasks, and varied (not secret) bytes.
pub struct TokioHost(AtomicU64);

impl Clock for TokioHost {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Timestamp(since.as_millis() as u64)
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
        for byte in buf {
            let x = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst);
            *byte = (x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 56) as u8;
        }
    }
}

/// Answers `times` copies of the user's last text (so a reply can be made
/// longer than a platform's limit) after thinking for `delay`.
pub struct RepeatModel {
    pub times: usize,
    pub delay: Duration,
}

#[async_trait]
impl LanguageModel for RepeatModel {
    fn name(&self) -> &str {
        "repeat"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let text = request
            .messages
            .last()
            .filter(|m| m.role == Role::User)
            .map(|m| m.text())
            .unwrap_or_default();
        tokio::time::sleep(self.delay).await;
        let events = vec![
            ModelEvent::TextDelta(text.repeat(self.times)),
            ModelEvent::Stop(StopReason::EndTurn),
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

/// A gateway over `store` (pass the same store again for a restart), with the
/// default policy (pairing for DMs, listed groups only) on every channel and
/// Slack's channel `C9` listed.
pub fn gateway(store: Arc<MemoryStore>, model: Arc<dyn LanguageModel>) -> Gateway {
    let host = Arc::new(TokioHost(AtomicU64::new(7)));
    let platform = Platform {
        clock: host.clone(),
        timer: host.clone(),
        spawner: host.clone(),
        entropy: host,
    };
    let agent = Agent::new(
        model,
        Arc::new(ToolRegistry::new()),
        platform.timer.clone(),
        AgentOptions::default(),
    );
    Gateway::new(GatewayParts {
        store: store.clone(),
        logs: store,
        agent,
        platform,
        system_prompt: std::sync::Arc::new("You are a test.".to_owned()),
        notebook: None,
        scope: SessionScope::PerChannelPeer,
        compaction: CompactionPolicy::default(),
        policies: BTreeMap::from([(
            "slack".to_owned(),
            molt_core::policy::ChannelPolicy {
                group_allow_from: vec!["C9".into()],
                ..Default::default()
            },
        )]),
        observer: None,
    })
}

/// The pairing code in a pairing reply.
pub fn pairing_code(reply: &str) -> String {
    let after = reply
        .split("pairing code is ")
        .nth(1)
        .unwrap_or_else(|| panic!("no pairing code in {reply:?}"));
    after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}
