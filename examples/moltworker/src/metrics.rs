//! The gateway's counters for `GET /metrics` (Prometheus' text format):
//! messages in per channel, runs and their latency, replies out; the gauges
//! (queues, clients, backup lag) are read when the page is asked for.

use futures::StreamExt;
use futures::stream::BoxStream;
use molt_ai_gateway::prometheus::{self, LATENCY_BUCKETS, escape};
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use molt_core::gateway::{RunEvent, RunEventKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Runs whose start is remembered for their latency; beyond this (runs lost
/// to a crash never end) the oldest are forgotten.
const MAX_RUNS_TIMED: usize = 10_000;

type Histogram = ([u64; LATENCY_BUCKETS.len()], u64, f64);

#[derive(Default)]
struct Counters {
    messages_in: BTreeMap<String, u64>,
    runs: BTreeMap<(String, &'static str), u64>,
    run_seconds: BTreeMap<String, Histogram>,
    started: HashMap<String, Instant>,
}

/// Counts what passes through the gateway. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct GatewayMetrics {
    counters: Mutex<Counters>,
}

/// The values read when `/metrics` is asked for.
pub struct Gauges {
    /// Sessions with a run in progress or waiting.
    pub busy_sessions: usize,
    /// Messages waiting behind the runs in progress.
    pub queued_messages: usize,
    /// Connected WebSocket clients.
    pub clients: usize,
    /// Seconds since the last successful backup (`None`: no bucket, or none yet).
    pub backup_lag_seconds: Option<f64>,
    /// Whether changes wait to be backed up.
    pub backup_pending: Option<bool>,
}

impl GatewayMetrics {
    /// Counts a message delivered by `channel`.
    pub fn message_in(&self, channel: &str) {
        *self
            .lock()
            .messages_in
            .entry(channel.to_owned())
            .or_default() += 1;
    }

    /// Counts runs and times them, from the gateway's run events.
    pub fn on_run_event(&self, event: &RunEvent) {
        let mut counters = self.lock();
        let outcome = match &event.kind {
            RunEventKind::Started { .. } => {
                if counters.started.len() >= MAX_RUNS_TIMED {
                    counters.started.clear();
                }
                counters
                    .started
                    .insert(event.run_id.clone(), Instant::now());
                return;
            }
            RunEventKind::Finished { .. } => "answered",
            RunEventKind::Failed { .. } => "failed",
            RunEventKind::Agent(_) => return,
        };
        *counters
            .runs
            .entry((event.channel.clone(), outcome))
            .or_default() += 1;
        if let Some(started) = counters.started.remove(&event.run_id) {
            let seconds = started.elapsed().as_secs_f64();
            let histogram = counters
                .run_seconds
                .entry(event.channel.clone())
                .or_default();
            if let Some(bucket) = prometheus::bucket_of(seconds) {
                histogram.0[bucket] += 1;
            }
            histogram.1 += 1;
            histogram.2 += seconds;
        }
    }

    /// The page: these counters, then `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let counters = self.lock();
        let mut out = String::new();
        let channel = |name: &str| format!("channel=\"{}\"", escape(name));
        prometheus::header(
            &mut out,
            "molt_messages_in_total",
            "Messages delivered by each channel.",
            "counter",
        );
        for (name, count) in &counters.messages_in {
            prometheus::sample(&mut out, "molt_messages_in_total", &channel(name), count);
        }
        prometheus::header(
            &mut out,
            "molt_runs_total",
            "Runs by channel and outcome: answered (the reply was delivered: a message out) or failed.",
            "counter",
        );
        for ((name, outcome), count) in &counters.runs {
            let labels = format!("{},outcome=\"{outcome}\"", channel(name));
            prometheus::sample(&mut out, "molt_runs_total", &labels, count);
        }
        prometheus::header(
            &mut out,
            "molt_run_duration_seconds",
            "Run latency, from the start of the run to the reply.",
            "histogram",
        );
        for (name, (buckets, count, sum)) in &counters.run_seconds {
            prometheus::histogram(
                &mut out,
                "molt_run_duration_seconds",
                &channel(name),
                buckets,
                *count,
                *sum,
            );
        }
        let gauges_list = [
            (
                "molt_sessions_busy",
                "Sessions with a run in progress or waiting.",
                Some(gauges.busy_sessions as f64),
            ),
            (
                "molt_messages_queued",
                "Messages waiting behind the runs in progress.",
                Some(gauges.queued_messages as f64),
            ),
            (
                "molt_clients_connected",
                "Connected WebSocket clients.",
                Some(gauges.clients as f64),
            ),
            (
                "molt_backup_lag_seconds",
                "Seconds since the last successful backup.",
                gauges.backup_lag_seconds,
            ),
            (
                "molt_backup_pending",
                "1 when changes wait to be backed up.",
                gauges.backup_pending.map(|p| f64::from(u8::from(p))),
            ),
        ];
        for (name, help, value) in gauges_list {
            if let Some(value) = value {
                prometheus::header(&mut out, name, help, "gauge");
                prometheus::sample(&mut out, name, "", value);
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A channel's deliveries, counted as they pass.
pub struct CountedIngress {
    inner: Box<dyn ChannelIngress>,
    metrics: Arc<GatewayMetrics>,
}

impl CountedIngress {
    /// Counts `inner`'s deliveries in `metrics`.
    pub fn new(inner: Box<dyn ChannelIngress>, metrics: Arc<GatewayMetrics>) -> Self {
        Self { inner, metrics }
    }
}

impl ChannelIngress for CountedIngress {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>> {
        let metrics = self.metrics;
        self.inner
            .deliveries()
            .inspect(move |item| {
                if let Ok(delivery) = item {
                    metrics.message_in(&delivery.message.channel);
                }
            })
            .boxed()
    }
}
