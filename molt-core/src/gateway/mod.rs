//! The path of a message: inbox, policy, session queue, agent, transcript, outbound.

use crate::agent::{Agent, AgentError, AgentEvent, RunEnd};
use crate::cancel::CancelToken;
use crate::channel::{ChannelEgress, ChannelError, ChannelIngress, split_text};
use crate::inbox::{Admission, Inbox, InboxId, PendingEntry};
use crate::media::{MAX_IMAGE_BYTES, MediaError, MediaStore};
use crate::message::{Attachment, ContentBlock, InboundMessage, Message, OutboundMessage};
use crate::platform::Platform;
use crate::policy::{ChannelPolicy, PairingBook, Verdict, evaluate, pairing_reply};
use crate::prompt::SystemPrompt;
use crate::session::{SessionKey, SessionQueues, SessionScope};
use crate::store::{LogStore, Store, StoreError};
use crate::tool::RunContext;
use crate::transcript::{self, CompactionPolicy, History, TranscriptError, TranscriptRecord};
use crate::workspace::memory::Notebook;
use futures::future::{Either, select};
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

mod sessions;
pub use sessions::{SESSION_INDEX_PREFIX, SessionInfo};

/// What observers see of a run: which session and message it is for, and what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEvent {
    /// The session.
    pub session: SessionKey,
    /// The inbound message being answered (its platform message id).
    pub run_id: String,
    /// The channel it came from.
    pub channel: String,
    /// What happened.
    pub kind: RunEventKind,
}

/// The kinds of [`RunEvent`].
#[derive(Clone, Debug, PartialEq)]
pub enum RunEventKind {
    /// The agent starts on the message.
    Started {
        /// The text the user sent.
        text: String,
    },
    /// Something happened inside the agent run.
    Agent(AgentEvent),
    /// The reply was handed to the channel.
    Finished {
        /// The reply text.
        reply: String,
    },
    /// The run failed; the user was told so.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// Receives run events (for streaming to a UI, or metrics).
pub type RunObserver = Arc<dyn Fn(RunEvent) + Send + Sync>;

/// Everything a [`Gateway`] is made of.
pub struct GatewayParts {
    /// Where the inbox and pairing state live.
    pub store: Arc<dyn Store>,
    /// Where transcripts live.
    pub logs: Arc<dyn LogStore>,
    /// The agent that answers.
    pub agent: Agent,
    /// Host services.
    pub platform: Platform,
    /// The system prompt of each run (fixed text, or assembled per run
    /// from the workspace: [`crate::workspace::bootstrap::WorkspacePrompt`]).
    pub system_prompt: Arc<dyn SystemPrompt>,
    /// Where compaction keeps the summaries it writes (the workspace's
    /// daily notes: [`crate::workspace::memory::Memory`]), if anywhere.
    pub notebook: Option<Arc<dyn Notebook>>,
    /// How direct messages map to sessions.
    pub scope: SessionScope,
    /// When to compact history.
    pub compaction: CompactionPolicy,
    /// Access rules per channel; channels not listed get [`ChannelPolicy::default`].
    pub policies: BTreeMap<String, ChannelPolicy>,
    /// Run events go here.
    pub observer: Option<RunObserver>,
}

/// The most messages that may wait behind a session's current run.
pub const MAX_QUEUED_PER_SESSION: usize = 100;

/// Attempts to download an image when the platform is rate limiting or unreachable.
pub const DOWNLOAD_ATTEMPTS: usize = 3;

/// The longest wait between two attempts to download an image.
pub const MAX_DOWNLOAD_WAIT: Duration = Duration::from_secs(10);

/// Why the gateway could not take a message.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The store failed; the message was not accepted and must not be acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many messages wait in this session; the message was not accepted
    /// (leave it unacknowledged so the platform delivers it again later).
    #[error("session {session} has {queued} messages waiting; try again later")]
    SessionBusy {
        /// The session.
        session: SessionKey,
        /// How many wait.
        queued: usize,
    },
}

/// What [`Gateway::receive`] did with a channel's deliveries, once its stream ended.
#[derive(Debug, Default)]
pub struct ReceiveSummary {
    /// Messages stored for the first time (and acknowledged).
    pub accepted: usize,
    /// Redeliveries recognised (and acknowledged again).
    pub duplicates: usize,
    /// Messages left unacknowledged, so the platform delivers them again.
    pub deferred: usize,
    /// Errors the channel reported.
    pub channel_errors: usize,
    /// The last error the channel reported (often why the stream ended).
    pub last_error: Option<ChannelError>,
}

type SessionSlot = Arc<futures::lock::Mutex<Option<History>>>;

struct Inner {
    parts: GatewayParts,
    inbox: Inbox,
    media: MediaStore,
    pairing: PairingBook,
    queues: SessionQueues,
    egress: RwLock<HashMap<String, Arc<dyn ChannelEgress>>>,
    sessions: Mutex<HashMap<SessionKey, SessionSlot>>,
    runs: Mutex<HashMap<SessionKey, RunningRun>>,
    /// Runs stopped before they started: (session, message id).
    stopped_early: Mutex<std::collections::HashSet<(SessionKey, String)>>,
    /// Sessions known to be in the session index.
    indexed: Mutex<std::collections::HashSet<SessionKey>>,
}

/// The message pipeline. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// A gateway made of `parts`. Call [`Gateway::resume_pending`] once channels are registered.
    pub fn new(parts: GatewayParts) -> Self {
        let platform = &parts.platform;
        let pairing = PairingBook::new(
            parts.store.clone(),
            platform.clock.clone(),
            platform.entropy.clone(),
        );
        let inner = Inner {
            inbox: Inbox::new(parts.store.clone()),
            media: MediaStore::new(parts.store.clone()),
            queues: SessionQueues::new(platform.spawner.clone()),
            pairing,
            parts,
            egress: RwLock::default(),
            sessions: Mutex::default(),
            runs: Mutex::default(),
            stopped_early: Mutex::default(),
            indexed: Mutex::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Registers the sending half of channel `name`.
    pub fn register_egress(&self, name: impl Into<String>, egress: Arc<dyn ChannelEgress>) {
        self.inner
            .egress
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), egress);
    }

    /// Takes an inbound message. When this returns `Ok`, the message is durable
    /// and may be acknowledged to its platform; it will be answered once (also
    /// across restarts). A duplicate is recognised and not answered again.
    pub async fn accept(&self, message: InboundMessage) -> Result<Admission, GatewayError> {
        let session = SessionKey::for_message(self.inner.parts.scope, &message);
        let queued = self.inner.queues.queued(&session);
        if queued >= MAX_QUEUED_PER_SESSION {
            return Err(GatewayError::SessionBusy { session, queued });
        }
        let admission = self.inner.inbox.accept(&message).await?;
        if let Admission::Accepted(id) = &admission {
            self.dispatch(PendingEntry {
                id: id.clone(),
                message,
                reply: None,
                pieces_sent: 0,
            })
            .await;
        }
        Ok(admission)
    }

    /// Feeds every delivery of `ingress` into the gateway until its stream
    /// ends. A message is acknowledged to its platform only once it is durable
    /// (or recognised as a duplicate); one the gateway cannot take now is left
    /// unacknowledged, so the platform delivers it again.
    pub async fn receive(&self, ingress: Box<dyn ChannelIngress>) -> ReceiveSummary {
        let mut summary = ReceiveSummary::default();
        let mut deliveries = ingress.deliveries();
        while let Some(item) = deliveries.next().await {
            let delivery = match item {
                Ok(delivery) => delivery,
                Err(err) => {
                    tracing::warn!(%err, "channel error");
                    summary.channel_errors += 1;
                    summary.last_error = Some(err);
                    continue;
                }
            };
            let channel = delivery.message.channel.clone();
            match self.accept(delivery.message).await {
                Ok(admission) => {
                    delivery.ack.confirm();
                    match admission {
                        Admission::Accepted(_) => summary.accepted += 1,
                        Admission::Duplicate(_) => summary.duplicates += 1,
                    }
                }
                Err(err) => {
                    tracing::warn!(%channel, %err, "message not accepted; it will be delivered again");
                    summary.deferred += 1;
                }
            }
        }
        summary
    }

    /// Finishes messages accepted before a restart but never delivered; returns how many.
    ///
    /// A message whose run was cut short already has its user turn in the
    /// transcript: it goes first, so its run sees the history up to and
    /// including it, and not messages that arrived after it.
    pub async fn resume_pending(&self) -> Result<usize, GatewayError> {
        let pending = self.inner.inbox.pending().await?;
        let count = pending.len();
        let mut interrupted = Vec::new();
        let mut waiting = Vec::new();
        for entry in pending {
            // A transcript that cannot be read is the run's problem, not the start's.
            let interrupted_run = entry.reply.is_none()
                && self.in_transcript(&entry).await.unwrap_or_else(|err| {
                    tracing::warn!(inbox = entry.id.key(), %err, "cannot read the transcript of a pending message");
                    false
                });
            if interrupted_run {
                interrupted.push(entry);
            } else {
                waiting.push(entry);
            }
        }
        for entry in interrupted.into_iter().chain(waiting) {
            self.dispatch(entry).await;
        }
        Ok(count)
    }

    /// Whether the user turn of `entry` is already in its session's transcript.
    async fn in_transcript(&self, entry: &PendingEntry) -> Result<bool, StoreError> {
        let session = SessionKey::for_message(self.inner.parts.scope, &entry.message);
        let slot = self.inner.session(&session);
        let mut guard = slot.lock().await;
        let history = self.inner.loaded(&session, &mut guard).await?;
        Ok(history.inbox_ids.contains(entry.id.key()))
    }

    /// Pairing requests and approvals.
    pub fn pairing(&self) -> &PairingBook {
        &self.inner.pairing
    }

    /// The name of the model answering.
    pub fn model_name(&self) -> &str {
        self.inner.parts.agent.model_name()
    }

    /// A session's history (loaded from its transcript on first use).
    pub async fn history(&self, session: &SessionKey) -> Result<History, StoreError> {
        let slot = self.inner.session(session);
        let mut guard = slot.lock().await;
        Ok(self.inner.loaded(session, &mut guard).await?.clone())
    }

    /// Cancels the run in progress in `session`; returns whether one was running.
    pub fn abort(&self, session: &SessionKey) -> bool {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.get(session).map(|run| run.cancel.cancel()).is_some()
    }

    /// Stops the run answering message `message_id` (its platform id) in
    /// `session`: now if it is in progress, else as soon as it starts (it
    /// then answers that it was stopped, without asking the model).
    pub fn abort_run(&self, session: &SessionKey, message_id: &str) {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) = runs.get(session).filter(|run| run.message_id == message_id) {
            run.cancel.cancel();
            return;
        }
        drop(runs);
        let mut stopped = (self.inner.stopped_early.lock()).unwrap_or_else(|e| e.into_inner());
        if stopped.len() >= MAX_STOPPED_EARLY {
            stopped.clear();
        }
        stopped.insert((session.clone(), message_id.to_owned()));
    }

    /// Sessions with a run in progress or waiting.
    pub fn busy_sessions(&self) -> usize {
        self.inner.queues.busy_sessions()
    }

    /// Messages waiting behind the runs in progress, in all sessions.
    pub fn queued_messages(&self) -> usize {
        self.inner.queues.waiting()
    }

    /// Sessions loaded since start.
    pub fn known_sessions(&self) -> usize {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Completes when every accepted message has been processed.
    pub async fn idle(&self) {
        self.inner.queues.idle().await
    }

    async fn dispatch(&self, entry: PendingEntry) {
        let id = entry.id.clone();
        if let Err(err) = self.try_dispatch(entry).await {
            // The entry stays pending and is retried after a restart.
            tracing::error!(inbox = id.key(), %err, "could not dispatch message");
        }
    }

    async fn try_dispatch(&self, entry: PendingEntry) -> Result<(), StoreError> {
        let PendingEntry {
            id,
            message,
            reply,
            pieces_sent,
        } = entry;
        // Decided before a crash: deliver the rest, never ask the model twice.
        // The first piece not known delivered may have gone out before the stop.
        if let Some(reply) = reply {
            let resume = Resume {
                pieces_sent,
                possibly_delivered: true,
            };
            return self
                .inner
                .deliver(&id, &message, &reply, resume)
                .await
                .map(drop);
        }
        let parts = &self.inner.parts;
        let policy = parts
            .policies
            .get(&message.channel)
            .cloned()
            .unwrap_or_default();
        match evaluate(&policy, &self.inner.pairing, &message).await? {
            Verdict::Allow => {
                let session = SessionKey::for_message(parts.scope, &message);
                let (inner, key) = (self.inner.clone(), session.clone());
                self.inner.queues.submit(
                    session,
                    async move { inner.answer(key, id, message).await }.boxed(),
                );
            }
            Verdict::ReplyPairingCode(code) => {
                tracing::info!(channel = %message.channel, sender = %message.sender.id, "pairing code issued");
                self.inner
                    .reply(&id, &message, &pairing_reply(&code))
                    .await?;
            }
            Verdict::Ignore(reason) => {
                tracing::debug!(channel = %message.channel, ?reason, "message not answered");
                self.inner.inbox.mark_done(&id).await?;
            }
        }
        Ok(())
    }
}

/// The run in progress in a session: the message it answers, and its stop.
struct RunningRun {
    message_id: String,
    cancel: CancelToken,
}

/// The most runs remembered as stopped before they started; past it, the
/// oldest requests are forgotten (their runs then go ahead).
const MAX_STOPPED_EARLY: usize = 1024;

/// A session's run, cancellable through [`Gateway::abort`] until dropped.
struct RegisteredRun<'a> {
    runs: &'a Mutex<HashMap<SessionKey, RunningRun>>,
    session: &'a SessionKey,
}

impl<'a> RegisteredRun<'a> {
    fn new(
        runs: &'a Mutex<HashMap<SessionKey, RunningRun>>,
        session: &'a SessionKey,
        message_id: &str,
        cancel: &CancelToken,
    ) -> Self {
        let mut map = runs.lock().unwrap_or_else(|e| e.into_inner());
        let run = RunningRun {
            message_id: message_id.to_owned(),
            cancel: cancel.clone(),
        };
        map.insert(session.clone(), run);
        Self { runs, session }
    }
}

impl Drop for RegisteredRun<'_> {
    fn drop(&mut self) {
        let mut map = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(self.session);
    }
}

/// Where a delivery starts: after the pieces already sent, and whether the
/// first of the rest may have gone out already.
#[derive(Clone, Copy, Default)]
struct Resume {
    pieces_sent: usize,
    possibly_delivered: bool,
}

impl Inner {
    fn egress(&self, channel: &str) -> Option<Arc<dyn ChannelEgress>> {
        let egress = self.egress.read().unwrap_or_else(|e| e.into_inner());
        egress.get(channel).cloned()
    }

    /// Keeps the chat's typing indicator on, renewing it as the channel asks;
    /// never completes. Failures only cost the indicator.
    async fn keep_typing(&self, inbound: &InboundMessage) -> Infallible {
        let refreshed = self.egress(&inbound.channel).and_then(|e| {
            let every = e.capabilities().typing_refresh?;
            Some((e, every))
        });
        match refreshed {
            None => futures::future::pending::<Infallible>().await,
            Some((egress, every)) => loop {
                if let Err(err) = egress.typing(&inbound.chat_id).await {
                    tracing::debug!(channel = %inbound.channel, %err, "typing indicator failed");
                }
                self.parts.platform.timer.sleep(every).await;
            },
        }
    }

    fn session(&self, key: &SessionKey) -> SessionSlot {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.entry(key.clone()).or_default().clone()
    }

    async fn loaded<'a>(
        &self,
        key: &SessionKey,
        slot: &'a mut Option<History>,
    ) -> Result<&'a mut History, StoreError> {
        if slot.is_none() {
            *slot = Some(transcript::load(self.parts.logs.as_ref(), key).await?);
        }
        Ok(slot.as_mut().expect("loaded above"))
    }

    /// Stores `reply` in the inbox, then delivers it. Returns whether it was
    /// delivered; when not, the entry keeps the reply and it is sent again after a restart.
    async fn reply(
        &self,
        id: &InboxId,
        inbound: &InboundMessage,
        reply: &str,
    ) -> Result<bool, StoreError> {
        self.inbox.record_reply(id, inbound, reply, 0).await?;
        self.deliver(id, inbound, reply, Resume::default()).await
    }

    /// Sends a stored reply split to the channel's limit, from the first piece
    /// not yet delivered, recording each piece as it goes, and marks the
    /// message done. Returns whether it was delivered.
    async fn deliver(
        &self,
        id: &InboxId,
        inbound: &InboundMessage,
        reply: &str,
        resume: Resume,
    ) -> Result<bool, StoreError> {
        let Some(egress) = self.egress(&inbound.channel) else {
            tracing::error!(channel = %inbound.channel, "no egress registered; the reply stays pending");
            return Ok(false);
        };
        let caps = egress.capabilities();
        let pieces = split_text(reply, caps.max_message_len, caps.length_unit);
        for (index, text) in pieces.iter().enumerate().skip(resume.pieces_sent) {
            let mut piece = OutboundMessage::reply_to(inbound, text.clone());
            piece.piece = index;
            piece.possibly_delivered = resume.possibly_delivered && index == resume.pieces_sent;
            if let Err(err) = egress.send(piece).await {
                tracing::error!(channel = %inbound.channel, %err, "sending a reply failed; it stays pending");
                return Ok(false);
            }
            if index + 1 < pieces.len() {
                self.inbox
                    .record_reply(id, inbound, reply, index + 1)
                    .await?;
            }
        }
        self.inbox.mark_done(id).await?;
        Ok(true)
    }

    fn emit(&self, session: &SessionKey, inbound: &InboundMessage, kind: RunEventKind) {
        if let Some(observer) = &self.parts.observer {
            let run_id = inbound.message_id.clone();
            observer(RunEvent {
                session: session.clone(),
                run_id,
                channel: inbound.channel.clone(),
                kind,
            });
        }
    }

    /// Runs the agent on one message inside its session's queue. Observers
    /// always see the run end, with `Finished` or `Failed`.
    async fn answer(self: Arc<Self>, session: SessionKey, id: InboxId, inbound: InboundMessage) {
        let text = inbound.text.clone();
        self.emit(&session, &inbound, RunEventKind::Started { text });
        self.index(&session, &inbound).await;
        let end = match self.try_answer(&session, &id, &inbound).await {
            Ok(end) => end,
            Err(err) => {
                tracing::error!(%session, inbox = id.key(), %err, "answering failed; the message stays pending");
                RunEventKind::Failed {
                    error: err.to_string(),
                }
            }
        };
        self.emit(&session, &inbound, end);
    }

    async fn try_answer(
        &self,
        session: &SessionKey,
        id: &InboxId,
        inbound: &InboundMessage,
    ) -> Result<RunEventKind, StoreError> {
        let parts = &self.parts;
        let slot = self.session(session);
        // A run recorded before a crash whose reply was not stored yet: send
        // that reply; the model is never asked twice.
        let decided = {
            let mut guard = slot.lock().await;
            let history = self.loaded(session, &mut guard).await?;
            history.replies.get(id.key()).cloned()
        };
        if let Some(reply) = decided {
            return self.send_decided(id, inbound, reply, Ok(())).await;
        }
        let cancel = CancelToken::new();
        let registered = RegisteredRun::new(&self.runs, session, &inbound.message_id, &cancel);
        let key = (session.clone(), inbound.message_id.clone());
        if (self.stopped_early.lock().unwrap_or_else(|e| e.into_inner())).remove(&key) {
            cancel.cancel();
        }
        // After a crash the user message may already be in the transcript.
        // Its images are fetched outside the session's lock.
        let recorded = {
            let mut guard = slot.lock().await;
            let history = self.loaded(session, &mut guard).await?;
            history.inbox_ids.contains(id.key())
        };
        let mut user_message = match recorded {
            true => None,
            false => Some(self.user_message(inbound, &cancel).await?),
        };
        let base_system = parts.system_prompt.for_run(inbound).await;
        // Under the session's lock only while its history changes; the session
        // queue keeps runs serial, so readers (chat.history) never wait for a run.
        let (system, messages, epoch) = {
            let mut guard = slot.lock().await;
            let history = self.loaded(session, &mut guard).await?;
            let now = parts.platform.clock.now();
            if let Some(message) = user_message.take() {
                let record = TranscriptRecord::Message {
                    at: now,
                    inbox: Some(id.key().to_owned()),
                    message,
                };
                transcript::append(parts.logs.as_ref(), session, &record).await?;
                history.apply(record);
            }
            self.compact(session, history, &cancel).await;
            let mut system = base_system;
            if let Some(summary) = &history.summary {
                system.push_str(&format!(
                    "\n\n# Summary of the earlier conversation\n{summary}"
                ));
            }
            (system, history.messages_for_model(), history.epoch)
        };
        let messages = self.media.inline_images(messages).await?;

        let mut produced = Vec::new();
        let mut on_event = |event| {
            if let AgentEvent::Message(message) = &event {
                produced.push(message.clone());
            }
            self.emit(session, inbound, RunEventKind::Agent(event));
        };
        let context = RunContext::answering(inbound);
        let run = (parts.agent).run_in(&context, &system, &messages, &cancel, &mut on_event);
        let typing = self.keep_typing(inbound);
        let result = match select(Box::pin(run), Box::pin(typing)).await {
            Either::Left((result, _)) => result,
            Either::Right((never, _)) => match never {},
        };
        drop(registered);

        // A run cut short may end on tool calls without results: keep the history valid.
        if produced
            .last()
            .is_some_and(|m| m.tool_uses().next().is_some())
        {
            produced.pop();
        }
        let reply = match &result {
            Ok(outcome) if outcome.end == RunEnd::MaxSteps && outcome.reply.trim().is_empty() => {
                format!(
                    "(I stopped after {} steps without finishing.)",
                    outcome.steps
                )
            }
            Ok(outcome) => outcome.reply.clone(),
            Err(AgentError::Cancelled) => "(Stopped.)".to_owned(),
            Err(err) => format!("Sorry, I could not answer: {err}"),
        };
        if !produced.is_empty() {
            let mut guard = slot.lock().await;
            let history = self.loaded(session, &mut guard).await?;
            if history.epoch != epoch {
                // The session was reset during the run: the reply is still
                // recorded (it is sent), but the new conversation does not get the run.
                produced.clear();
            }
            let record = TranscriptRecord::Run {
                at: parts.platform.clock.now(),
                inbox: Some(id.key().to_owned()),
                reply: Some(reply.clone()),
                messages: produced,
            };
            transcript::append(parts.logs.as_ref(), session, &record).await?;
            history.apply(record);
        }
        self.send_decided(id, inbound, reply, result.map(drop))
            .await
    }

    /// The user turn for `inbound`: its text, a line naming each attachment,
    /// then each image itself, downloaded through its channel and kept in the
    /// store. An image that cannot be had (or not before the run is stopped)
    /// is named as such, with the reason, and the run goes on.
    async fn user_message(
        &self,
        inbound: &InboundMessage,
        cancel: &CancelToken,
    ) -> Result<Message, StoreError> {
        let mut message = inbound.to_user_message();
        let egress = self.egress(&inbound.channel);
        for attachment in inbound.attachments.iter().filter(|a| a.is_image()) {
            let kept = match &egress {
                None => Err(MediaError::Channel(ChannelError::Closed {
                    channel: inbound.channel.clone(),
                })),
                Some(egress) => {
                    let fetch = self.fetch_image(egress.as_ref(), attachment);
                    match select(Box::pin(fetch), cancel.cancelled()).await {
                        Either::Left((kept, _)) => kept,
                        Either::Right(_) => Err(MediaError::Stopped),
                    }
                }
            };
            match kept {
                Ok(image) => message.content.push(image),
                Err(MediaError::Store(err)) => return Err(err),
                Err(err) => {
                    tracing::warn!(channel = %inbound.channel, attachment = %attachment.id, %err, "an image could not be fetched");
                    let text = format!("[{} could not be shown: {err}]", attachment.summary());
                    message.content.push(ContentBlock::Text { text });
                }
            }
        }
        Ok(message)
    }

    /// Downloads an image and keeps it, trying again after a rate limit or a
    /// network failure (at most [`DOWNLOAD_ATTEMPTS`] times, waiting at most
    /// [`MAX_DOWNLOAD_WAIT`] between them).
    async fn fetch_image(
        &self,
        egress: &dyn ChannelEgress,
        attachment: &Attachment,
    ) -> Result<ContentBlock, MediaError> {
        let mut attempt = 1;
        loop {
            let err = match egress.download(attachment, MAX_IMAGE_BYTES).await {
                Ok(bytes) => return self.media.keep_image(bytes).await,
                Err(err) => err,
            };
            let wait = match &err {
                ChannelError::RateLimited { retry_after, .. } => *retry_after,
                ChannelError::Transport { .. } => Duration::from_secs(1),
                _ => return Err(err.into()),
            };
            if attempt == DOWNLOAD_ATTEMPTS {
                return Err(err.into());
            }
            attempt += 1;
            self.parts
                .platform
                .timer
                .sleep(wait.min(MAX_DOWNLOAD_WAIT))
                .await;
        }
    }

    /// Stores and delivers the reply a run decided; `outcome` is how the run ended.
    async fn send_decided(
        &self,
        id: &InboxId,
        inbound: &InboundMessage,
        reply: String,
        outcome: Result<(), AgentError>,
    ) -> Result<RunEventKind, StoreError> {
        if !self.reply(id, inbound, &reply).await? {
            return Ok(RunEventKind::Failed {
                error: "the reply could not be delivered yet; it will be retried".into(),
            });
        }
        Ok(match outcome {
            Ok(()) => RunEventKind::Finished { reply },
            Err(err) => RunEventKind::Failed {
                error: err.to_string(),
            },
        })
    }

    /// Compacts the history when it is over budget, within the run timeout and
    /// the run's cancellation; a failure only means the full history is used.
    async fn compact(&self, session: &SessionKey, history: &mut History, cancel: &CancelToken) {
        let policy = self.parts.compaction;
        match self
            .compact_within(session, history, policy, cancel.cancelled())
            .await
        {
            Ok(_) => {}
            Err(TranscriptError::TimedOut) => {
                tracing::warn!(%session, "compaction timed out or was cancelled; using the full history")
            }
            Err(err) => {
                tracing::warn!(%session, %err, "compaction failed; using the full history")
            }
        }
    }
}
