//! Messages per second through the whole path: inbox → policy → session queue →
//! agent (echo model) → transcript → outbound → done, on one core (a
//! current-thread tokio runtime), with the in-memory store and the local-file
//! store side by side.
//!
//! Run: `cargo bench -p moltworker --bench pipeline`

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use molt_core::agent::{Agent, AgentOptions};
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::echo::EchoModel;
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::message::{ChatKind, InboundMessage, OutboundMessage, Sender};
use molt_core::platform::Timestamp;
use molt_core::policy::{ChannelPolicy, DmPolicy};
use molt_core::session::SessionScope;
use molt_core::store::{LogStore, MemoryStore, Store};
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use molt_storage::LocalFileStore;
use moltworker::platform::TokioPlatform;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const BATCH: u64 = 1_000;

/// Counts what would go to the platform.
#[derive(Default)]
struct CountingEgress(AtomicU64);

#[async_trait]
impl ChannelEgress for CountingEgress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: 4096,
            length_unit: LengthUnit::Utf16,
            format: FormatDialect::Plain,
            typing_refresh: None,
        }
    }

    async fn send(&self, _: OutboundMessage) -> Result<(), ChannelError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn gateway(store: Arc<dyn Store>, logs: Arc<dyn LogStore>) -> (Gateway, Arc<CountingEgress>) {
    let platform = TokioPlatform::platform();
    let agent = Agent::new(
        Arc::new(EchoModel),
        Arc::new(ToolRegistry::new()),
        platform.timer.clone(),
        AgentOptions::default(),
    );
    let mut policies = BTreeMap::new();
    policies.insert(
        "bench".to_owned(),
        ChannelPolicy {
            dm_policy: DmPolicy::Open,
            ..ChannelPolicy::default()
        },
    );
    let gateway = Gateway::new(GatewayParts {
        store,
        logs,
        agent,
        platform,
        system_prompt: std::sync::Arc::new("bench".to_owned()),
        notebook: None,
        scope: SessionScope::PerChannelPeer,
        compaction: CompactionPolicy::default(),
        policies,
        observer: None,
    });
    let egress = Arc::new(CountingEgress::default());
    gateway.register_egress("bench", egress.clone());
    (gateway, egress)
}

fn message(n: u64) -> InboundMessage {
    InboundMessage {
        channel: "bench".to_owned(),
        account: "bot".to_owned(),
        // One session per 10 messages: histories stay short, as with many users.
        sender: Sender {
            id: format!("user-{}", n / 10),
            name: None,
        },
        chat_id: format!("chat-{}", n / 10),
        chat_kind: ChatKind::Direct,
        thread_id: None,
        message_id: n.to_string(),
        text: "hello there, how are you today?".to_owned(),
        attachments: Vec::new(),
        mentioned: false,
        sent_at: Timestamp(n),
    }
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);

    let dir = tempfile::tempdir().unwrap();
    measure(
        &mut group,
        &runtime,
        "memory-store",
        Arc::new(MemoryStore::new()),
    );
    measure(
        &mut group,
        &runtime,
        "local-file-store",
        Arc::new(LocalFileStore::new(dir.path())),
    );
    group.finish();
}

/// Measures batches of messages through a gateway kept in `store`.
fn measure<S: Store + LogStore + 'static>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<S>,
) {
    let (gateway, egress) = gateway(store.clone(), store);
    let next = AtomicU64::new(0);
    group.bench_function(BenchmarkId::new("messages", name), |b| {
        b.iter(|| {
            runtime.block_on(async {
                let before = egress.0.load(Ordering::Relaxed);
                for _ in 0..BATCH {
                    gateway
                        .accept(message(next.fetch_add(1, Ordering::Relaxed)))
                        .await
                        .unwrap();
                }
                gateway.idle().await;
                assert_eq!(
                    egress.0.load(Ordering::Relaxed) - before,
                    BATCH,
                    "every message answered"
                );
            })
        })
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
