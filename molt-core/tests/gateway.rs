//! The message path: durable inbox, session queues, restarts, pairing, compaction.

mod support;

use molt_core::channel::ChannelEgress;
use molt_core::echo::EchoModel;
use molt_core::gateway::{Gateway, GatewayError, MAX_QUEUED_PER_SESSION, RunEventKind};
use molt_core::inbox::Admission;
use molt_core::message::Role;
use molt_core::session::{SessionKey, SessionScope};
use molt_core::store::{MemoryStore, PutOutcome, Store, StoreError};
use molt_core::transcript::CompactionPolicy;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::setup::Setup;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_message_sent_during_a_busy_run_is_answered_after_it() {
    let setup = Setup::new();
    let model = Arc::new(GatedModel::default());
    let (gateway, egress) = setup.gateway(model.clone());
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "1", "first"))).unwrap();
    wait_until(LIMIT, || model.waiting_texts() == ["first"]);
    // The history can be read while the run is in progress.
    let during = block_on_within(
        Duration::from_secs(2),
        gateway.history(&SessionKey::new("test:dm:alice")),
    )
    .unwrap();
    assert_eq!(
        during.messages.iter().map(|m| m.text()).collect::<Vec<_>>(),
        ["first"]
    );
    // The session is busy: these queue behind the first run.
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "2", "second"))).unwrap();
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "3", "third"))).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        model.waiting_texts(),
        ["first"],
        "a session runs one message at a time"
    );
    // Release runs one by one until all three are answered.
    wait_until(LIMIT, || {
        model.release_all();
        egress.texts().len() == 3
    });
    assert_eq!(egress.texts(), ["re: first", "re: second", "re: third"]);
    let history =
        block_on_within(LIMIT, gateway.history(&SessionKey::new("test:dm:alice"))).unwrap();
    let texts: Vec<_> = history.messages.iter().map(|m| m.text()).collect();
    assert_eq!(
        texts,
        [
            "first",
            "re: first",
            "second",
            "re: second",
            "third",
            "re: third"
        ]
    );
}

#[test]
fn two_sessions_run_concurrently() {
    let setup = Setup::new();
    let model = Arc::new(GatedModel::default());
    let (gateway, egress) = setup.gateway(model.clone());
    block_on_within(
        LIMIT,
        gateway.accept(dm("test", "alice", "1", "from alice")),
    )
    .unwrap();
    block_on_within(LIMIT, gateway.accept(dm("test", "bob", "2", "from bob"))).unwrap();
    // Both runs are inside the model at once.
    wait_until(LIMIT, || model.started.load(Ordering::SeqCst) == 2);
    assert_eq!(gateway.busy_sessions(), 2);
    model.release_all();
    block_on_within(LIMIT, gateway.idle());
    let mut texts = egress.texts();
    texts.sort();
    assert_eq!(texts, ["re: from alice", "re: from bob"]);
}

#[test]
fn a_duplicate_platform_message_is_answered_once() {
    let setup = Setup::new();
    let (gateway, egress) = setup.gateway(Arc::new(EchoModel));
    let message = dm("test", "alice", "42", "hello");
    assert!(matches!(
        block_on_within(LIMIT, gateway.accept(message.clone())).unwrap(),
        Admission::Accepted(_)
    ));
    // Redelivered while pending, and again after it was answered.
    assert!(matches!(
        block_on_within(LIMIT, gateway.accept(message.clone())).unwrap(),
        Admission::Duplicate(_)
    ));
    block_on_within(LIMIT, gateway.idle());
    assert!(matches!(
        block_on_within(LIMIT, gateway.accept(message.clone())).unwrap(),
        Admission::Duplicate(_)
    ));
    // The same id on another channel is a different message.
    let mut elsewhere = message;
    elsewhere.channel = "telegram".into();
    elsewhere.chat_kind = molt_core::message::ChatKind::Group;
    elsewhere.mentioned = true;
    assert!(matches!(
        block_on_within(LIMIT, gateway.accept(elsewhere)).unwrap(),
        Admission::Accepted(_)
    ));
    block_on_within(LIMIT, gateway.idle());
    assert_eq!(egress.texts(), ["echo: hello", "echo: hello"]);
}

#[test]
fn unfinished_messages_are_answered_after_a_restart() {
    let setup = Setup::new();
    let stuck = Arc::new(GatedModel::default());
    let (crashed, crashed_egress) = setup.gateway(stuck.clone());
    block_on_within(
        LIMIT,
        crashed.accept(dm("test", "alice", "1", "before the crash")),
    )
    .unwrap();
    block_on_within(
        LIMIT,
        crashed.accept(dm("test", "alice", "2", "queued behind it")),
    )
    .unwrap();
    wait_until(LIMIT, || stuck.waiting_texts().len() == 1);
    // The process "dies" here: the run never finishes, nothing was sent.
    drop(crashed);
    assert!(crashed_egress.texts().is_empty());

    let (restarted, egress) = setup.gateway(Arc::new(EchoModel));
    assert_eq!(
        block_on_within(LIMIT, restarted.resume_pending()).unwrap(),
        2
    );
    block_on_within(LIMIT, restarted.idle());
    assert_eq!(
        egress.texts(),
        ["echo: before the crash", "echo: queued behind it"]
    );
    // The user message written before the crash is not duplicated in the transcript.
    let history =
        block_on_within(LIMIT, restarted.history(&SessionKey::new("test:dm:alice"))).unwrap();
    let user_texts: Vec<_> = history
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.text())
        .collect();
    assert_eq!(user_texts, ["before the crash", "queued behind it"]);
    // Nothing is pending any more: a second restart answers nothing.
    let (again, again_egress) = setup.gateway(Arc::new(EchoModel));
    assert_eq!(block_on_within(LIMIT, again.resume_pending()).unwrap(), 0);
    assert!(again_egress.texts().is_empty());
    stuck.release_all();
}

#[test]
fn a_run_cut_short_is_answered_as_itself_before_later_messages() {
    // One session for everybody (the default scope); the message in its run
    // at the crash sorts after the one waiting behind it by platform time.
    let mut setup = Setup::new();
    setup.scope = SessionScope::Main;
    let stuck = Arc::new(GatedModel::default());
    let (crashed, _) = setup.gateway(stuck.clone());
    let mut first = dm("test", "alice", "1", "first, in its run at the crash");
    first.sent_at = molt_core::platform::Timestamp(20);
    let mut second = dm("test", "bob", "2", "second, waiting");
    second.sent_at = molt_core::platform::Timestamp(10);
    block_on_within(LIMIT, crashed.accept(first)).unwrap();
    wait_until(LIMIT, || stuck.waiting_texts().len() == 1);
    block_on_within(LIMIT, crashed.accept(second)).unwrap();
    drop(crashed);

    let (restarted, egress) = setup.gateway(Arc::new(EchoModel));
    assert_eq!(
        block_on_within(LIMIT, restarted.resume_pending()).unwrap(),
        2
    );
    block_on_within(LIMIT, restarted.idle());
    let sent = egress.0.lock().unwrap().clone();
    let answered: Vec<_> = sent
        .iter()
        .map(|m| (m.chat_id.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(
        answered,
        [
            ("chat-alice", "echo: first, in its run at the crash"),
            ("chat-bob", "echo: second, waiting"),
        ]
    );
    stuck.release_all();
}

#[test]
fn unknown_senders_under_pairing_never_reach_the_model() {
    let setup = Setup::new();
    let model = Arc::new(ScriptedModel::new(vec![]));
    let (gateway, egress) = setup.gateway(model.clone());
    // "telegram" has no policy configured, so it gets the default: pairing.
    block_on_within(
        LIMIT,
        gateway.accept(dm("telegram", "mallory", "1", "let me in")),
    )
    .unwrap();
    block_on_within(
        LIMIT,
        gateway.accept(dm("telegram", "mallory", "2", "please")),
    )
    .unwrap();
    block_on_within(LIMIT, gateway.idle());
    let texts = egress.texts();
    assert_eq!(texts.len(), 1, "one reply with the code: {texts:?}");
    let pending = block_on_within(LIMIT, gateway.pairing().pending("telegram")).unwrap();
    assert!(texts[0].contains(&pending[0].code));
    assert!(model.requests.lock().unwrap().is_empty());

    // Once approved, the sender is answered.
    block_on_within(
        LIMIT,
        gateway.pairing().approve("telegram", &pending[0].code),
    )
    .unwrap();
    model
        .answers
        .lock()
        .unwrap()
        .push_back(text_answer("welcome"));
    block_on_within(
        LIMIT,
        gateway.accept(dm("telegram", "mallory", "3", "hi again")),
    )
    .unwrap();
    block_on_within(LIMIT, gateway.idle());
    assert_eq!(egress.texts().last().unwrap(), "welcome");
}

#[test]
fn transcripts_reload_and_compact() {
    let mut setup = Setup::new();
    setup.scope = SessionScope::Main;
    setup.compaction = CompactionPolicy {
        token_budget: 40,
        keep_recent: 2,
    };
    let (gateway, _) = setup.gateway(Arc::new(EchoModel));
    for i in 0..4 {
        let text = format!("message number {i} with enough words to fill the budget quickly");
        block_on_within(
            LIMIT,
            gateway.accept(dm("test", "alice", &i.to_string(), &text)),
        )
        .unwrap();
    }
    block_on_within(LIMIT, gateway.idle());
    let live = block_on_within(LIMIT, gateway.history(&SessionKey::new("main"))).unwrap();
    let summary = live.summary.clone().expect("history was compacted");
    assert!(summary.contains("message number 0"), "{summary}");
    assert!(live.messages.len() < 8);

    let (restarted, _) = setup.gateway(Arc::new(EchoModel));
    let reloaded = block_on_within(LIMIT, restarted.history(&SessionKey::new("main"))).unwrap();
    assert_eq!(
        (reloaded.summary, reloaded.messages),
        (live.summary, live.messages)
    );
    let finished = setup
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, RunEventKind::Finished { .. }))
        .count();
    assert_eq!(finished, 4);
}

/// Restarts on `setup`'s store: the one pending message gets "the one
/// answer", decided before the restart, without the model being asked.
fn restart_answering_once(setup: &Setup) -> Gateway {
    let model = Arc::new(ScriptedModel::new(vec![]));
    let (restarted, egress) = setup.gateway(model.clone());
    assert_eq!(
        block_on_within(LIMIT, restarted.resume_pending()).unwrap(),
        1
    );
    block_on_within(LIMIT, restarted.idle());
    assert_eq!(egress.texts(), ["the one answer"]);
    assert!(
        model.requests.lock().unwrap().is_empty(),
        "the model is not asked again"
    );
    let history =
        block_on_within(LIMIT, restarted.history(&SessionKey::new("test:dm:alice"))).unwrap();
    let texts: Vec<String> = history.messages.iter().map(|m| m.text()).collect();
    assert_eq!(texts, ["question", "the one answer"]);
    restarted
}

#[test]
fn a_reply_decided_before_a_crash_is_resent_not_recomputed() {
    let setup = Setup::new();
    // The platform is down: the reply is decided but cannot be delivered.
    let down = setup.gateway_with(
        Arc::new(ScriptedModel::new(vec![text_answer("the one answer")])),
        Arc::new(FailingEgress),
    );
    block_on_within(LIMIT, down.accept(dm("test", "alice", "1", "question"))).unwrap();
    block_on_within(LIMIT, down.idle());
    let failed = setup
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e.kind, RunEventKind::Failed { .. }));
    assert!(failed, "observers learn the run did not deliver");
    drop(down);

    // After a restart the stored reply goes out; the model is not asked again.
    let restarted = restart_answering_once(&setup);
    assert_eq!(
        block_on_within(LIMIT, restarted.resume_pending()).unwrap(),
        0
    );
}

/// Accepts `ok` sends, then its platform goes down.
struct GoesDownAfter {
    ok: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl ChannelEgress for GoesDownAfter {
    fn capabilities(&self) -> molt_core::channel::Capabilities {
        RecordingEgress::default().capabilities()
    }

    async fn send(
        &self,
        message: molt_core::message::OutboundMessage,
    ) -> Result<(), molt_core::channel::ChannelError> {
        let left = self.ok.load(Ordering::SeqCst);
        if left == 0 {
            return FailingEgress.send(message).await;
        }
        self.ok.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_split_reply_cut_short_resends_only_the_pieces_not_delivered() {
    let setup = Setup::new();
    let paragraphs: Vec<String> = (0..3).map(|n| format!("{n}").repeat(4_000)).collect();
    let long = paragraphs.join("\n\n");
    let down = setup.gateway_with(
        Arc::new(ScriptedModel::new(vec![text_answer(&long)])),
        Arc::new(GoesDownAfter { ok: 1.into() }),
    );
    block_on_within(LIMIT, down.accept(dm("test", "alice", "1", "question"))).unwrap();
    block_on_within(LIMIT, down.idle());
    drop(down);

    let (restarted, egress) = setup.gateway(Arc::new(ScriptedModel::new(vec![])));
    block_on_within(LIMIT, restarted.resume_pending()).unwrap();
    let sent: Vec<(usize, bool, String)> = egress
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.piece, m.possibly_delivered, m.text.clone()))
        .collect();
    assert_eq!(
        sent,
        [
            (1, true, paragraphs[1].clone()),
            (2, false, paragraphs[2].clone())
        ],
        "the first piece went out before the platform went down; the second may have"
    );
    assert_eq!(
        block_on_within(LIMIT, restarted.resume_pending()).unwrap(),
        0
    );
}

/// The inbox's store, whose disk fails when a reply is about to be stored
/// (as a crash there would leave it).
struct FailsToStoreReplies(Arc<MemoryStore>);

#[async_trait::async_trait]
impl Store for FailsToStoreReplies {
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, value: bytes::Bytes) -> Result<(), StoreError> {
        if value.starts_with(br#"{"state":"answered""#) {
            let source = std::io::Error::other("disk gone");
            return Err(StoreError::Io {
                key: key.into(),
                source,
            });
        }
        self.0.put(key, value).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        value: bytes::Bytes,
    ) -> Result<PutOutcome, StoreError> {
        self.0.put_if_absent(key, value).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
}

#[test]
fn a_run_recorded_before_a_crash_sends_its_reply_without_asking_again() {
    let mut setup = Setup::new();
    let inbox = Arc::new(MemoryStore::new());
    setup.state = Some(Arc::new(FailsToStoreReplies(inbox.clone())));
    let first = setup.gateway_with(
        Arc::new(ScriptedModel::new(vec![text_answer("the one answer")])),
        Arc::new(FailingEgress),
    );
    block_on_within(LIMIT, first.accept(dm("test", "alice", "1", "question"))).unwrap();
    block_on_within(LIMIT, first.idle());
    drop(first);

    // The run is in the transcript; the inbox still says pending.
    setup.state = Some(inbox);
    restart_answering_once(&setup);
}

#[test]
fn a_pairing_code_that_could_not_be_sent_is_sent_after_a_restart() {
    let setup = Setup::new();
    let down = setup.gateway_with(
        Arc::new(ScriptedModel::new(vec![])),
        Arc::new(FailingEgress),
    );
    block_on_within(LIMIT, down.accept(dm("telegram", "mallory", "1", "hi"))).unwrap();
    let code = block_on_within(LIMIT, down.pairing().pending("telegram")).unwrap()[0]
        .code
        .clone();
    drop(down);

    let (restarted, egress) = setup.gateway(Arc::new(ScriptedModel::new(vec![])));
    block_on_within(LIMIT, restarted.resume_pending()).unwrap();
    let texts = egress.texts();
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains(&code), "{texts:?}");
}

/// One run of alice's in progress (held by the model) and the most messages queued behind it.
fn fill_alices_session(gateway: &Gateway, model: &GatedModel) {
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "run", "running"))).unwrap();
    wait_until(LIMIT, || model.waiting_texts().len() == 1);
    for i in 0..MAX_QUEUED_PER_SESSION {
        let message = dm("test", "alice", &format!("q{i}"), "queued");
        block_on_within(LIMIT, gateway.accept(message)).unwrap();
    }
}

#[test]
fn a_full_session_queue_refuses_before_accepting() {
    let setup = Setup::new();
    let model = Arc::new(GatedModel::default());
    let (gateway, egress) = setup.gateway(model.clone());
    fill_alices_session(&gateway, &model);
    let refused = block_on_within(
        LIMIT,
        gateway.accept(dm("test", "alice", "over", "one too many")),
    );
    assert!(
        matches!(refused, Err(GatewayError::SessionBusy { queued, .. }) if queued == MAX_QUEUED_PER_SESSION),
        "{refused:?}"
    );
    // Another session is unaffected, and the refused message was not stored: it can come again.
    block_on_within(LIMIT, gateway.accept(dm("test", "bob", "b1", "hello"))).unwrap();
    wait_until(LIMIT, || {
        model.release_all();
        egress.texts().len() == MAX_QUEUED_PER_SESSION + 2
    });
    assert!(matches!(
        block_on_within(LIMIT, gateway.accept(dm("test", "alice", "over", "again"))).unwrap(),
        Admission::Accepted(_)
    ));
    wait_until(LIMIT, || {
        model.release_all();
        egress.texts().len() == MAX_QUEUED_PER_SESSION + 3
    });
}

/// An egress that records typing indicators and asks for them every 20 ms.
#[derive(Default)]
struct TypingEgress {
    sent: RecordingEgress,
    typing: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ChannelEgress for TypingEgress {
    fn capabilities(&self) -> molt_core::channel::Capabilities {
        molt_core::channel::Capabilities {
            typing_refresh: Some(Duration::from_millis(20)),
            ..self.sent.capabilities()
        }
    }

    async fn send(
        &self,
        message: molt_core::message::OutboundMessage,
    ) -> Result<(), molt_core::channel::ChannelError> {
        self.sent.send(message).await
    }

    async fn typing(&self, chat_id: &str) -> Result<(), molt_core::channel::ChannelError> {
        self.typing.lock().unwrap().push(chat_id.to_owned());
        Ok(())
    }
}

#[test]
fn the_typing_indicator_is_renewed_while_a_run_lasts_and_stops_after() {
    let setup = Setup::new();
    let model = Arc::new(GatedModel::default());
    let egress = Arc::new(TypingEgress::default());
    let gateway = setup.gateway_with(model.clone(), egress.clone());
    let typed = || egress.typing.lock().unwrap().len();
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "1", "slow"))).unwrap();
    wait_until(LIMIT, || typed() >= 3);
    assert!(
        egress
            .typing
            .lock()
            .unwrap()
            .iter()
            .all(|c| c == "chat-alice"),
        "typing goes to the chat being answered"
    );
    model.release_all();
    wait_until(LIMIT, || egress.sent.texts() == ["re: slow"]);
    let after_reply = typed();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(typed(), after_reply, "typing stops with the run");
}

/// An ingress that plays back a fixed list of deliveries.
struct ListIngress(Vec<Result<molt_core::channel::Delivery, molt_core::channel::ChannelError>>);

impl molt_core::channel::ChannelIngress for ListIngress {
    fn deliveries(
        self: Box<Self>,
    ) -> futures::stream::BoxStream<
        'static,
        Result<molt_core::channel::Delivery, molt_core::channel::ChannelError>,
    > {
        Box::pin(futures::stream::iter(self.0))
    }
}

#[test]
fn receive_acknowledges_only_what_the_gateway_took() {
    use molt_core::channel::{Ack, ChannelError, Delivery};
    use std::sync::atomic::AtomicBool;

    let setup = Setup::new();
    let model = Arc::new(GatedModel::default());
    let (gateway, egress) = setup.gateway(model.clone());
    // One more message from alice cannot be taken now.
    fill_alices_session(&gateway, &model);
    let acked: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    let delivery = |n: usize, message| {
        let flag = acked[n].clone();
        Ok(Delivery {
            message,
            ack: Ack::new(move || flag.store(true, Ordering::SeqCst)),
        })
    };
    let ingress = ListIngress(vec![
        delivery(0, dm("test", "alice", "over", "one too many")),
        Err(ChannelError::Transport {
            channel: "test".into(),
            reason: "a bad frame".into(),
        }),
        delivery(1, dm("test", "bob", "b1", "hello")),
        delivery(2, dm("test", "bob", "b1", "hello")),
    ]);
    let summary = block_on_within(LIMIT, gateway.receive(Box::new(ingress)));
    assert_eq!(
        (summary.accepted, summary.duplicates, summary.deferred),
        (1, 1, 1)
    );
    assert_eq!(summary.channel_errors, 1);
    assert!(matches!(
        summary.last_error,
        Some(ChannelError::Transport { .. })
    ));
    let flags: Vec<bool> = acked.iter().map(|f| f.load(Ordering::SeqCst)).collect();
    assert_eq!(
        flags,
        [false, true, true],
        "the deferred message stays unacknowledged"
    );
    wait_until(LIMIT, || {
        model.release_all();
        egress.texts().len() == MAX_QUEUED_PER_SESSION + 2
    });
}
