//! Session keys, and the queues that keep each session serial.

use crate::message::{ChatKind, InboundMessage};
use crate::platform::Spawner;
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

/// How direct messages map to sessions. Group chats always get a session per chat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionScope {
    /// Every direct message, on every channel, shares one session.
    #[default]
    Main,
    /// One session per sender, shared across channels.
    PerPeer,
    /// One session per sender on each channel.
    PerChannelPeer,
}

impl std::str::FromStr for SessionScope {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "main" => Ok(Self::Main),
            "per-peer" => Ok(Self::PerPeer),
            "per-channel-peer" => Ok(Self::PerChannelPeer),
            other => Err(format!(
                "expected main, per-peer or per-channel-peer, got {other:?}"
            )),
        }
    }
}

/// Names one conversation with the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionKey(String);

impl SessionKey {
    /// A key from its string form.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key of the session `message` belongs to under `scope`.
    pub fn for_message(scope: SessionScope, message: &InboundMessage) -> Self {
        let chat = |kind| {
            let thread = message
                .thread_id
                .as_deref()
                .map(|t| format!(":thread:{t}"))
                .unwrap_or_default();
            format!("{}:{kind}:{}{thread}", message.channel, message.chat_id)
        };
        Self(match (message.chat_kind, scope) {
            (ChatKind::Group | ChatKind::Thread, _) => chat("group"),
            (ChatKind::Direct, SessionScope::Main) => "main".to_owned(),
            (ChatKind::Direct, SessionScope::PerPeer) => format!("dm:{}", message.sender.id),
            (ChatKind::Direct, SessionScope::PerChannelPeer) => {
                format!("{}:dm:{}", message.channel, message.sender.id)
            }
        })
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Job = BoxFuture<'static, ()>;

#[derive(Default)]
struct State {
    /// A key is present while its session has a worker; the deque holds what waits.
    queues: HashMap<SessionKey, VecDeque<Job>>,
    in_flight: usize,
    idle_waiters: Vec<oneshot::Sender<()>>,
}

/// Runs jobs one at a time per session, and sessions concurrently.
///
/// A job submitted while its session is busy waits its turn; nothing is dropped.
#[derive(Clone)]
pub struct SessionQueues {
    spawner: Arc<dyn Spawner>,
    state: Arc<Mutex<State>>,
}

impl SessionQueues {
    /// Queues that start session workers with `spawner`.
    pub fn new(spawner: Arc<dyn Spawner>) -> Self {
        Self {
            spawner,
            state: Arc::default(),
        }
    }

    /// Runs `job` after the jobs already queued for `key`.
    pub fn submit(&self, key: SessionKey, job: Job) {
        let mut state = self.lock();
        state.in_flight += 1;
        if let Some(queue) = state.queues.get_mut(&key) {
            queue.push_back(job);
            return;
        }
        state.queues.insert(key.clone(), VecDeque::new());
        drop(state);
        let this = self.clone();
        self.spawner
            .spawn(async move { this.work(key, job).await }.boxed());
    }

    /// Jobs waiting behind the running one in `key`'s session.
    pub fn queued(&self, key: &SessionKey) -> usize {
        self.lock().queues.get(key).map_or(0, VecDeque::len)
    }

    /// Jobs waiting behind the running ones, in all sessions.
    pub fn waiting(&self) -> usize {
        self.lock().queues.values().map(VecDeque::len).sum()
    }

    /// Whether `key`'s session has a job running or waiting.
    pub fn is_busy(&self, key: &SessionKey) -> bool {
        self.lock().queues.contains_key(key)
    }

    /// Sessions with a job running or waiting.
    pub fn busy_sessions(&self) -> usize {
        self.lock().queues.len()
    }

    /// Completes when no job is running or waiting.
    pub fn idle(&self) -> BoxFuture<'static, ()> {
        let mut state = self.lock();
        if state.in_flight == 0 {
            return futures::future::ready(()).boxed();
        }
        let (sender, receiver) = oneshot::channel();
        state.idle_waiters.push(sender);
        receiver.map(|_| ()).boxed()
    }

    async fn work(self, key: SessionKey, mut job: Job) {
        loop {
            // A panicking job must not wedge its session's queue.
            if std::panic::AssertUnwindSafe(job)
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(session = %key, "a session job panicked");
            }
            let mut state = self.lock();
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.idle_waiters.drain(..).for_each(|waiter| {
                    let _ = waiter.send(());
                });
            }
            let next = state.queues.get_mut(&key).and_then(VecDeque::pop_front);
            match next {
                Some(next) => job = next,
                None => {
                    state.queues.remove(&key);
                    return;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Sender;
    use crate::platform::Timestamp;

    fn message(channel: &str, kind: ChatKind, thread: Option<&str>) -> InboundMessage {
        InboundMessage {
            channel: channel.to_owned(),
            account: "bot".to_owned(),
            sender: Sender {
                id: "42".to_owned(),
                name: None,
            },
            chat_id: "c1".to_owned(),
            chat_kind: kind,
            thread_id: thread.map(str::to_owned),
            message_id: "m".to_owned(),
            text: String::new(),
            attachments: Vec::new(),
            mentioned: false,
            sent_at: Timestamp(0),
        }
    }

    #[test]
    fn keys_follow_the_scope_for_direct_messages_only() {
        let dm = message("telegram", ChatKind::Direct, None);
        assert_eq!(
            SessionKey::for_message(SessionScope::Main, &dm).as_str(),
            "main"
        );
        assert_eq!(
            SessionKey::for_message(SessionScope::PerPeer, &dm).as_str(),
            "dm:42"
        );
        assert_eq!(
            SessionKey::for_message(SessionScope::PerChannelPeer, &dm).as_str(),
            "telegram:dm:42"
        );
        let group = message("discord", ChatKind::Group, None);
        assert_eq!(
            SessionKey::for_message(SessionScope::Main, &group).as_str(),
            "discord:group:c1"
        );
        let thread = message("slack", ChatKind::Thread, Some("t9"));
        assert_eq!(
            SessionKey::for_message(SessionScope::PerPeer, &thread).as_str(),
            "slack:group:c1:thread:t9"
        );
        assert_eq!(
            "per-channel-peer".parse::<SessionScope>(),
            Ok(SessionScope::PerChannelPeer)
        );
        assert!("everyone".parse::<SessionScope>().is_err());
    }
}
