//! Host services for tests: a thread-pool spawner, thread-backed timers, a
//! clock the test moves by hand, and scripted models.
#![allow(dead_code)]

pub mod setup;

use async_trait::async_trait;
use futures::channel::oneshot;
use futures::executor::ThreadPool;
use futures::future::BoxFuture;
use futures::task::SpawnExt;
use futures::{FutureExt, StreamExt};
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::message::{ChatKind, InboundMessage, OutboundMessage, Sender};
use molt_core::model::{
    LanguageModel, ModelError, ModelEvent, ModelRequest, ModelStream, StopReason,
};
use molt_core::platform::{Clock, Entropy, Platform, Spawner, Timer, Timestamp};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A clock that moves only when told.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(1_700_000_000_000 + self.0.load(Ordering::SeqCst))
    }
}

/// Real timers, each on its own thread.
pub struct ThreadTimer;

impl Timer for ThreadTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let (sender, receiver) = oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            let _ = sender.send(());
        });
        receiver.map(|_| ()).boxed()
    }
}

pub struct PoolSpawner(pub ThreadPool);

impl Spawner for PoolSpawner {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.spawn(task).expect("thread pool is running");
    }
}

/// Pseudo-random bytes (xorshift): tests need variety, not secrecy.
pub struct TestEntropy(AtomicU64);

impl Entropy for TestEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for byte in buf {
            let mut x = self.0.load(Ordering::SeqCst);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0.store(x, Ordering::SeqCst);
            *byte = (x >> 24) as u8;
        }
    }
}

pub fn platform() -> (Platform, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let platform = Platform {
        clock: clock.clone(),
        timer: Arc::new(ThreadTimer),
        spawner: Arc::new(PoolSpawner(
            ThreadPool::builder().pool_size(4).create().unwrap(),
        )),
        entropy: Arc::new(TestEntropy(AtomicU64::new(0x9E37_79B9_7F4A_7C15))),
    };
    (platform, clock)
}

/// Runs a future with a deadline, so a deadlock fails the test instead of hanging it.
pub fn block_on_within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> T {
    let deadline = ThreadTimer.sleep(limit);
    match futures::executor::block_on(futures::future::select(Box::pin(future), deadline)) {
        futures::future::Either::Left((value, _)) => value,
        futures::future::Either::Right(_) => panic!("did not finish within {limit:?}"),
    }
}

pub fn dm(channel: &str, sender: &str, id: &str, text: &str) -> InboundMessage {
    InboundMessage {
        channel: channel.to_owned(),
        account: "bot".to_owned(),
        sender: Sender {
            id: sender.to_owned(),
            name: None,
        },
        chat_id: format!("chat-{sender}"),
        chat_kind: ChatKind::Direct,
        thread_id: None,
        message_id: id.to_owned(),
        text: text.to_owned(),
        attachments: Vec::new(),
        mentioned: false,
        sent_at: Timestamp(1),
    }
}

/// An egress that records what it sends.
#[derive(Default)]
pub struct RecordingEgress(pub Mutex<Vec<OutboundMessage>>);

impl RecordingEgress {
    pub fn texts(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }
}

#[async_trait]
impl ChannelEgress for RecordingEgress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: 4096,
            length_unit: LengthUnit::Utf16,
            format: FormatDialect::Plain,
            typing_refresh: None,
        }
    }

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}

/// An egress whose platform is down.
pub struct FailingEgress;

#[async_trait]
impl ChannelEgress for FailingEgress {
    fn capabilities(&self) -> Capabilities {
        RecordingEgress::default().capabilities()
    }

    async fn send(&self, _: OutboundMessage) -> Result<(), ChannelError> {
        Err(ChannelError::Transport {
            channel: "test".into(),
            reason: "connection refused".into(),
        })
    }
}

/// A model that plays back scripted answers, one per call, and records requests.
#[derive(Default)]
pub struct ScriptedModel {
    pub answers: Mutex<VecDeque<Vec<ModelEvent>>>,
    pub requests: Mutex<Vec<ModelRequest>>,
}

impl ScriptedModel {
    pub fn new(answers: Vec<Vec<ModelEvent>>) -> Self {
        Self {
            answers: Mutex::new(answers.into()),
            requests: Mutex::default(),
        }
    }
}

pub fn text_answer(text: &str) -> Vec<ModelEvent> {
    vec![
        ModelEvent::TextDelta(text.to_owned()),
        ModelEvent::Stop(StopReason::EndTurn),
    ]
}

pub fn tool_answer(calls: &[(&str, &str, &str)]) -> Vec<ModelEvent> {
    let mut events = Vec::new();
    for (id, name, args) in calls {
        events.push(ModelEvent::ToolCallStart {
            id: id.to_string(),
            name: name.to_string(),
        });
        events.push(ModelEvent::ToolCallDelta {
            id: id.to_string(),
            arguments: args.to_string(),
        });
        events.push(ModelEvent::ToolCallEnd { id: id.to_string() });
    }
    events.push(ModelEvent::Stop(StopReason::ToolUse));
    events
}

#[async_trait]
impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        self.requests.lock().unwrap().push(request);
        let answer = self.answers.lock().unwrap().pop_front();
        let answer = answer.ok_or_else(|| ModelError::Unavailable("script exhausted".into()))?;
        Ok(futures::stream::iter(answer.into_iter().map(Ok)).boxed())
    }
}

/// A model that holds each call until the test releases it, then echoes.
#[derive(Default)]
pub struct GatedModel {
    pub waiting: Mutex<Vec<(String, oneshot::Sender<()>)>>,
    pub started: AtomicU64,
}

impl GatedModel {
    /// Texts of the calls waiting now.
    pub fn waiting_texts(&self) -> Vec<String> {
        self.waiting
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Lets every waiting call answer.
    pub fn release_all(&self) {
        for (_, gate) in self.waiting.lock().unwrap().drain(..) {
            let _ = gate.send(());
        }
    }
}

#[async_trait]
impl LanguageModel for GatedModel {
    fn name(&self) -> &str {
        "gated"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let text = request
            .messages
            .last()
            .map(|m| m.text())
            .unwrap_or_default();
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock().unwrap().push((text.clone(), sender));
        self.started.fetch_add(1, Ordering::SeqCst);
        let _ = receiver.await;
        Ok(futures::stream::iter(text_answer(&format!("re: {text}")).into_iter().map(Ok)).boxed())
    }
}

/// Polls `condition` until it holds (or panics after `limit`).
pub fn wait_until(limit: Duration, condition: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
