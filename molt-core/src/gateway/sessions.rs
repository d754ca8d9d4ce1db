//! Managing sessions from outside a run: listing, describing, resetting,
//! deleting, compacting, and adding a message without running the agent.
//!
//! Each session a message reaches is recorded in the store under
//! `sessions/<key>.json` (where it came from and when it started), so that
//! sessions can be listed without reading every transcript. The transcript
//! holds the rest.

use super::{Gateway, Inner};
use crate::message::{InboundMessage, Message};
use crate::platform::Timestamp;
use crate::session::SessionKey;
use crate::store::{PutOutcome, StoreError, key_segment};
use crate::transcript::{self, CompactionPolicy, History, TranscriptError, TranscriptRecord};
use bytes::Bytes;
use futures::future::{Either, select};
use serde::{Deserialize, Serialize};

/// The store prefix of the session index.
pub const SESSION_INDEX_PREFIX: &str = "sessions/";

/// What the index keeps of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    key: SessionKey,
    channel: String,
    chat_id: String,
    created_at: Timestamp,
}

/// A session as [`Gateway::sessions`] lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    /// The session.
    pub key: SessionKey,
    /// The channel its first message came from.
    pub channel: String,
    /// The chat (on that channel) its first message came from.
    pub chat_id: String,
    /// When its first message was answered.
    pub created_at: Timestamp,
    /// When its transcript last changed.
    pub updated_at: Option<Timestamp>,
    /// Messages the model sees (after the summary).
    pub message_count: usize,
    /// Whether older turns were compacted into a summary.
    pub summarized: bool,
    /// Whether a run is in progress or messages wait for one.
    pub running: bool,
}

fn index_key(session: &SessionKey) -> String {
    format!(
        "{SESSION_INDEX_PREFIX}{}.json",
        key_segment(session.as_str())
    )
}

impl Gateway {
    /// Every session a message has reached, oldest first. An index entry
    /// that cannot be read is skipped with a warning.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let store = &self.inner.parts.store;
        let mut sessions = Vec::new();
        for key in store.list(SESSION_INDEX_PREFIX).await? {
            match self.inner.index_entry(&key).await {
                Ok(Some(entry)) => sessions.push(self.inner.info(entry).await?),
                Ok(None) => {}
                Err(err) => tracing::warn!(%key, %err, "skipping an unreadable session entry"),
            }
        }
        sessions.sort_by_key(|info| info.created_at);
        Ok(sessions)
    }

    /// How many sessions messages have reached (the index is listed; no
    /// transcript is read).
    pub async fn session_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .inner
            .parts
            .store
            .list(SESSION_INDEX_PREFIX)
            .await?
            .len())
    }

    /// Up to `limit` of the sessions loaded in memory, most recently changed
    /// first, with when each last changed. Reads nothing from the store, and
    /// skips a session whose history is being changed right now.
    pub fn recent_sessions(&self, limit: usize) -> Vec<(SessionKey, Option<Timestamp>)> {
        let slots: Vec<_> = {
            let sessions = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            sessions
                .iter()
                .map(|(key, slot)| (key.clone(), slot.clone()))
                .collect()
        };
        let mut recent: Vec<(SessionKey, Option<Timestamp>)> = (slots.into_iter())
            .filter_map(|(key, slot)| {
                let guard = slot.try_lock()?;
                let updated = guard.as_ref()?.updated_at;
                Some((key, updated))
            })
            .collect();
        recent.sort_by_key(|(_, updated)| std::cmp::Reverse(*updated));
        recent.truncate(limit);
        recent
    }

    /// One session, if a message has reached it.
    pub async fn session_info(
        &self,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>, StoreError> {
        match self.inner.index_entry(&index_key(session)).await? {
            Some(entry) => Ok(Some(self.inner.info(entry).await?)),
            None => Ok(None),
        }
    }

    /// Starts the session's conversation afresh: its run (if any) is stopped
    /// and the model no longer sees what came before. The transcript keeps
    /// its records, and the session stays listed.
    pub async fn reset_session(&self, session: &SessionKey) -> Result<(), StoreError> {
        self.abort(session);
        let at = self.inner.parts.platform.clock.now();
        self.inner
            .record(session, TranscriptRecord::Reset { at })
            .await
    }

    /// Removes the session: its run (if any) is stopped, its transcript and
    /// index entry deleted. Returns whether it was listed. A later message
    /// to it starts a new session under the same key.
    pub async fn delete_session(&self, session: &SessionKey) -> Result<bool, StoreError> {
        self.abort(session);
        let inner = &self.inner;
        let slot = inner.session(session);
        let mut guard = slot.lock().await;
        let history = inner.loaded(session, &mut guard).await?;
        let index = index_key(session);
        let listed = inner.parts.store.get(&index).await?.is_some();
        let transcript_key = transcript::transcript_key(session);
        inner.parts.logs.delete_log(&transcript_key).await?;
        inner.parts.store.delete(&index).await?;
        inner.unindexed(session);
        // Replies already decided stay known in memory, so a message still
        // waiting is never answered twice; a run in progress adds nothing.
        *history = History {
            inbox_ids: std::mem::take(&mut history.inbox_ids),
            replies: std::mem::take(&mut history.replies),
            epoch: history.epoch + 1,
            ..History::default()
        };
        Ok(listed)
    }

    /// Compacts the session's older turns into a summary now, keeping the
    /// policy's recent messages. Returns whether there was anything to compact.
    /// Waits for the session's history to be free, and gives up after the
    /// agent's run timeout.
    pub async fn compact_session(&self, session: &SessionKey) -> Result<bool, TranscriptError> {
        let inner = &self.inner;
        let slot = inner.session(session);
        let mut guard = slot.lock().await;
        let history = inner.loaded(session, &mut guard).await?;
        let policy = CompactionPolicy {
            token_budget: 0,
            keep_recent: inner.parts.compaction.keep_recent,
        };
        let never = futures::future::pending::<()>();
        inner.compact_within(session, history, policy, never).await
    }

    /// Adds `message` to the session's conversation without running the
    /// agent (a note from an operator, or an assistant message from elsewhere).
    pub async fn inject(&self, session: &SessionKey, message: Message) -> Result<(), StoreError> {
        let at = self.inner.parts.platform.clock.now();
        let record = TranscriptRecord::Message {
            at,
            inbox: None,
            message,
        };
        self.inner.record(session, record).await
    }
}

impl Inner {
    /// Compacts `history` under `policy`, giving up after the agent's run
    /// timeout or when `stop` completes ([`TranscriptError::TimedOut`]).
    /// Returns whether it compacted.
    pub(super) async fn compact_within(
        &self,
        session: &SessionKey,
        history: &mut History,
        policy: CompactionPolicy,
        stop: impl std::future::Future<Output = ()> + Unpin,
    ) -> Result<bool, TranscriptError> {
        let parts = &self.parts;
        let now = parts.platform.clock.now();
        let model = parts.agent.model().as_ref();
        let compaction = transcript::compact_if_needed(
            parts.logs.as_ref(),
            session,
            history,
            policy,
            model,
            parts.notebook.as_deref(),
            now,
        );
        let timeout = parts
            .platform
            .timer
            .sleep(parts.agent.options().run_timeout);
        match select(Box::pin(compaction), select(timeout, stop)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(TranscriptError::TimedOut),
        }
    }

    /// Appends `record` to the session's transcript and applies it to its
    /// history, under the session's lock.
    async fn record(
        &self,
        session: &SessionKey,
        record: TranscriptRecord,
    ) -> Result<(), StoreError> {
        let slot = self.session(session);
        let mut guard = slot.lock().await;
        let history = self.loaded(session, &mut guard).await?;
        transcript::append(self.parts.logs.as_ref(), session, &record).await?;
        history.apply(record);
        Ok(())
    }

    /// Records `session` in the index the first time a message reaches it.
    /// A failure only costs the listing, so it is logged, not returned.
    pub(super) async fn index(&self, session: &SessionKey, inbound: &InboundMessage) {
        if self.is_indexed(session) {
            return;
        }
        let entry = IndexEntry {
            key: session.clone(),
            channel: inbound.channel.clone(),
            chat_id: inbound.chat_id.clone(),
            created_at: self.parts.platform.clock.now(),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else {
            return;
        };
        match self
            .parts
            .store
            .put_if_absent(&index_key(session), Bytes::from(bytes))
            .await
        {
            Ok(PutOutcome::Created | PutOutcome::AlreadyExists) => {
                let mut indexed = self.indexed.lock().unwrap_or_else(|e| e.into_inner());
                indexed.insert(session.clone());
            }
            Err(err) => tracing::warn!(%session, %err, "cannot record the session in the index"),
        }
    }

    fn is_indexed(&self, session: &SessionKey) -> bool {
        let indexed = self.indexed.lock().unwrap_or_else(|e| e.into_inner());
        indexed.contains(session)
    }

    fn unindexed(&self, session: &SessionKey) {
        let mut indexed = self.indexed.lock().unwrap_or_else(|e| e.into_inner());
        indexed.remove(session);
    }

    async fn index_entry(&self, key: &str) -> Result<Option<IndexEntry>, StoreError> {
        let Some(bytes) = self.parts.store.get(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StoreError::Corrupt {
                key: key.to_owned(),
                reason: err.to_string(),
            })
    }

    async fn info(&self, entry: IndexEntry) -> Result<SessionInfo, StoreError> {
        let history = self.peek(&entry.key).await?;
        let running = self.queues.is_busy(&entry.key);
        Ok(SessionInfo {
            updated_at: history.updated_at,
            message_count: history.messages.len(),
            summarized: history.summary.is_some(),
            running,
            key: entry.key,
            channel: entry.channel,
            chat_id: entry.chat_id,
            created_at: entry.created_at,
        })
    }

    /// The session's history, from memory when it is loaded, else read from
    /// its transcript without keeping it (listing does not load every session).
    async fn peek(&self, session: &SessionKey) -> Result<History, StoreError> {
        let slot = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.get(session).cloned()
        };
        if let Some(slot) = slot
            && let Some(history) = slot.lock().await.as_ref()
        {
            return Ok(history.clone());
        }
        transcript::load(self.parts.logs.as_ref(), session).await
    }
}
