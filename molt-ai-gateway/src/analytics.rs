//! One record per call, sent to sinks: an in-memory ring, a JSONL file, and
//! running aggregates (by model, provider and day) with Prometheus text metrics.

use crate::clock::Date;
use crate::error::GatewayError;
use crate::pricing::PriceTable;
use crate::prometheus::{self, LATENCY_BUCKETS, escape};
use crate::service::{
    Answer, AnswerInfo, Call, ModelService, SharedService, StreamEnd, watch_stream,
};
use async_trait::async_trait;
use molt_core::message::Usage;
use molt_core::model::ModelEvent;
use molt_core::platform::{Clock, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

/// What happened to one call.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestRecord {
    /// When it started (milliseconds since the Unix epoch).
    pub time_ms: u64,
    /// The model or route the caller asked for.
    pub requested: String,
    /// The provider that answered (empty when none did).
    pub provider: String,
    /// The provider's model id that answered.
    pub model: String,
    /// `200`, or the error status the caller saw.
    pub status: u16,
    /// A short error label (`429`, `timeout`, ...), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From start to the end of the answer, in milliseconds.
    pub latency_ms: f64,
    /// From start to the first output, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Tokens used.
    pub usage: Usage,
    /// The cost in US dollars (0 for cache hits and unpriced models).
    pub cost_usd: f64,
    /// `HIT`, `MISS` or `BYPASS`.
    pub cache: &'static str,
    /// The fallback step that answered.
    pub step: usize,
    /// The end user, when named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The gateway key's name, when one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The call's metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Where records go.
pub trait AnalyticsSink: Send + Sync {
    /// Takes one record; must not block for long.
    fn record(&self, record: &RequestRecord);
}

/// The most recent records, in memory.
pub struct MemoryRing {
    capacity: usize,
    records: Mutex<VecDeque<RequestRecord>>,
}

impl MemoryRing {
    /// Keeps the last `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            records: Mutex::new(VecDeque::new()),
        }
    }

    /// The kept records, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl AnalyticsSink for MemoryRing {
    fn record(&self, record: &RequestRecord) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(record.clone());
    }
}

/// Appends records as JSON lines to a file, from a background thread.
pub struct JsonlFile {
    sender: Mutex<mpsc::Sender<String>>,
}

impl JsonlFile {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (sender, receiver) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("molt-analytics-jsonl".into())
            .spawn(move || {
                let mut writer = std::io::BufWriter::new(file);
                while let Ok(line) = receiver.recv() {
                    let mut result = writer.write_all(line.as_bytes());
                    // Write what is queued, then flush once.
                    while let Ok(more) = receiver.try_recv() {
                        result = result.and_then(|()| writer.write_all(more.as_bytes()));
                    }
                    if let Err(err) = result.and_then(|()| writer.flush()) {
                        tracing::warn!(%err, "could not write analytics records");
                    }
                }
            })?;
        Ok(Self {
            sender: Mutex::new(sender),
        })
    }
}

impl AnalyticsSink for JsonlFile {
    fn record(&self, record: &RequestRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        let _ = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(line);
    }
}

/// Totals for one group of calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Calls.
    pub requests: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls served from the cache.
    pub cache_hits: u64,
    /// Tokens used upstream (cache hits excluded).
    pub usage: Usage,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Sum of latencies, in milliseconds.
    pub latency_ms_sum: f64,
}

impl Totals {
    fn add(&mut self, record: &RequestRecord) {
        self.requests += 1;
        self.errors += u64::from(record.error.is_some());
        let hit = record.cache == "HIT";
        self.cache_hits += u64::from(hit);
        // A cache hit's tokens were counted when it was first answered.
        if !hit {
            self.usage.add(&record.usage);
        }
        self.cost_usd += record.cost_usd;
        self.latency_ms_sum += record.latency_ms;
    }

    fn merge(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.usage.add(&other.usage);
        self.cost_usd += other.cost_usd;
        self.latency_ms_sum += other.latency_ms_sum;
    }
}

/// Latency bucket bounds for the Prometheus histogram, in seconds.

#[derive(Default)]
struct MetricsState {
    by_day: BTreeMap<(Date, String, String), Totals>,
    by_status: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), ([u64; LATENCY_BUCKETS.len()], u64, f64)>,
}

/// Running aggregates and Prometheus metrics.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<MetricsState>,
}

impl Metrics {
    /// Empty aggregates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Totals by (day, provider, model).
    pub fn by_day_provider_model(&self) -> BTreeMap<(Date, String, String), Totals> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_day
            .clone()
    }

    fn rollup<K: Ord>(&self, key: impl Fn(&(Date, String, String)) -> K) -> BTreeMap<K, Totals> {
        let mut out = BTreeMap::new();
        for (group, totals) in self.by_day_provider_model() {
            out.entry(key(&group))
                .or_insert_with(Totals::default)
                .merge(&totals);
        }
        out
    }

    /// Totals by model.
    pub fn by_model(&self) -> BTreeMap<String, Totals> {
        self.rollup(|(_, _, model)| model.clone())
    }

    /// Totals by provider.
    pub fn by_provider(&self) -> BTreeMap<String, Totals> {
        self.rollup(|(_, provider, _)| provider.clone())
    }

    /// Totals by UTC day.
    pub fn by_day(&self) -> BTreeMap<Date, Totals> {
        self.rollup(|(day, _, _)| *day)
    }

    /// The metrics in Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut totals: BTreeMap<(&str, &str), Totals> = BTreeMap::new();
        for ((_, provider, model), day) in &state.by_day {
            totals.entry((provider, model)).or_default().merge(day);
        }
        let mut out = String::new();
        out.push_str("# HELP molt_ai_requests_total Model calls by provider, model and status.\n# TYPE molt_ai_requests_total counter\n");
        for ((provider, model, status), count) in &state.by_status {
            let _ = writeln!(
                out,
                "molt_ai_requests_total{{provider=\"{}\",model=\"{}\",status=\"{status}\"}} {count}",
                escape(provider),
                escape(model)
            );
        }
        out.push_str("# HELP molt_ai_cache_hits_total Calls served from the cache.\n# TYPE molt_ai_cache_hits_total counter\n");
        for ((provider, model), t) in &totals {
            let _ = writeln!(
                out,
                "molt_ai_cache_hits_total{{provider=\"{}\",model=\"{}\"}} {}",
                escape(provider),
                escape(model),
                t.cache_hits
            );
        }
        out.push_str("# HELP molt_ai_tokens_total Tokens by provider, model and kind.\n# TYPE molt_ai_tokens_total counter\n");
        for ((provider, model), t) in &totals {
            let kinds = [
                ("input", t.usage.input_tokens),
                ("output", t.usage.output_tokens),
                ("cache_read", t.usage.cache_read_tokens),
                ("cache_write", t.usage.cache_write_tokens),
            ];
            for (kind, count) in kinds {
                let _ = writeln!(
                    out,
                    "molt_ai_tokens_total{{provider=\"{}\",model=\"{}\",kind=\"{kind}\"}} {count}",
                    escape(provider),
                    escape(model)
                );
            }
        }
        out.push_str("# HELP molt_ai_cost_usd_total Spending in US dollars.\n# TYPE molt_ai_cost_usd_total counter\n");
        for ((provider, model), t) in &totals {
            let _ = writeln!(
                out,
                "molt_ai_cost_usd_total{{provider=\"{}\",model=\"{}\"}} {}",
                escape(provider),
                escape(model),
                t.cost_usd
            );
        }
        prometheus::header(
            &mut out,
            "molt_ai_request_duration_seconds",
            "Call latency to the end of the answer.",
            "histogram",
        );
        for ((provider, model), (buckets, count, sum)) in &state.latency {
            let labels = format!(
                "provider=\"{}\",model=\"{}\"",
                escape(provider),
                escape(model)
            );
            prometheus::histogram(
                &mut out,
                "molt_ai_request_duration_seconds",
                &labels,
                buckets,
                *count,
                *sum,
            );
        }
        out
    }
}

impl AnalyticsSink for Metrics {
    fn record(&self, record: &RequestRecord) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let day = Date::of(Timestamp(record.time_ms));
        state
            .by_day
            .entry((day, record.provider.clone(), record.model.clone()))
            .or_default()
            .add(record);
        *state
            .by_status
            .entry((record.provider.clone(), record.model.clone(), record.status))
            .or_default() += 1;
        let seconds = record.latency_ms / 1000.0;
        let (buckets, count, sum) = state
            .latency
            .entry((record.provider.clone(), record.model.clone()))
            .or_insert(([0; LATENCY_BUCKETS.len()], 0, 0.0));
        if let Some(bucket) = prometheus::bucket_of(seconds) {
            buckets[bucket] += 1;
        }
        *count += 1;
        *sum += seconds;
    }
}

/// The analytics layer: records every call, answered or not.
pub struct Analytics {
    inner: SharedService,
    sinks: Arc<[Arc<dyn AnalyticsSink>]>,
    prices: Arc<PriceTable>,
    clock: Arc<dyn Clock>,
}

impl Analytics {
    /// Records calls to `inner` into `sinks`, priced by `prices`.
    pub fn new(
        inner: SharedService,
        sinks: Vec<Arc<dyn AnalyticsSink>>,
        prices: Arc<PriceTable>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            sinks: sinks.into(),
            prices,
            clock,
        }
    }
}

fn emit(sinks: &[Arc<dyn AnalyticsSink>], record: &RequestRecord) {
    for sink in sinks {
        sink.record(record);
    }
}

/// A call that never reached a provider keeps empty provider and model labels
/// (its `requested` name stays in the record): metrics must not grow a series
/// for every name a caller makes up.
fn failed(record: &mut RequestRecord, error: &GatewayError) {
    record.status = error.status();
    record.error = Some(error.label());
}

fn fill_from(record: &mut RequestRecord, info: &AnswerInfo) {
    record.provider = info.provider.clone();
    record.model = info.model.clone();
    record.cache = info.cache.as_str();
    record.step = info.step;
}

/// A call whose answer has not started; dropped unanswered, it is recorded as abandoned (499).
struct Pending {
    record: Option<RequestRecord>,
    sinks: Arc<[Arc<dyn AnalyticsSink>]>,
    started: Instant,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.status = 499;
            record.error = Some("abandoned".into());
            record.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            emit(&self.sinks, &record);
        }
    }
}

#[async_trait]
impl ModelService for Analytics {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let started = Instant::now();
        let record = RequestRecord {
            time_ms: self.clock.now().0,
            requested: call.model().to_string(),
            status: 200,
            cache: "BYPASS",
            user: call.request.options.user.clone(),
            key_id: call.context.key_id.clone(),
            metadata: call.context.metadata.clone(),
            ..RequestRecord::default()
        };
        // Records the call even if the caller gives up before the answer starts.
        let mut pending = Pending {
            record: Some(record),
            sinks: self.sinks.clone(),
            started,
        };
        let result = self.inner.call(call).await;
        let mut record = pending.record.take().expect("taken once");
        let mut answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                failed(&mut record, &error);
                record.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                emit(&self.sinks, &record);
                return Err(error);
            }
        };
        fill_from(&mut record, &answer.info);
        let shared = Arc::new(Mutex::new(record));
        let on_event = {
            let shared = shared.clone();
            move |event: &ModelEvent| {
                let mut record = shared.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    ModelEvent::Usage(usage) => record.usage = *usage,
                    _ if record.ttft_ms.is_none() => {
                        record.ttft_ms = Some(started.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => {}
                }
            }
        };
        let (sinks, prices) = (self.sinks.clone(), self.prices.clone());
        let on_end = move |end: StreamEnd| {
            let mut record = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
            record.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match &end {
                StreamEnd::Complete => {}
                StreamEnd::Failed(error) => failed(&mut record, error),
                StreamEnd::Abandoned => {
                    record.status = 499;
                    record.error = Some("abandoned".into());
                }
            }
            if record.cache != "HIT" {
                record.cost_usd = prices.cost(&record.model, &record.usage).unwrap_or(0.0);
            }
            emit(&sinks, &record);
        };
        answer.events = watch_stream(answer.events, on_event, on_end);
        Ok(answer)
    }
}
