//! The durable inbox: a message is stored before its platform is told it arrived.
//!
//! One object per message at `inbox/<channel>/<platform message id>`, created
//! with put-if-absent so a redelivered message is recognised, and rewritten as
//! `done` once its reply has been sent. After a restart, entries still pending
//! are processed again.

use crate::message::InboundMessage;
use crate::store::{PutOutcome, Store, StoreError, key_segment};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Identifies a message in the inbox: its channel and platform message id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboxId(String);

impl InboxId {
    /// The id of `message`.
    pub fn of(message: &InboundMessage) -> Self {
        Self(format!(
            "inbox/{}/{}",
            key_segment(&message.channel),
            key_segment(&message.message_id)
        ))
    }

    /// The store key of the entry.
    pub fn key(&self) -> &str {
        &self.0
    }
}

/// What [`Inbox::accept`] did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Stored for the first time: acknowledge it upstream, then process it.
    Accepted(InboxId),
    /// Seen before (pending or done): acknowledge it upstream, do not process it again.
    Duplicate(InboxId),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    Pending { message: Box<InboundMessage> },
    Done,
}

/// The durable inbox.
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn Store>,
}

impl Inbox {
    /// An inbox kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Stores `message` durably unless the same (channel, message id) was seen before.
    pub async fn accept(&self, message: &InboundMessage) -> Result<Admission, StoreError> {
        let id = InboxId::of(message);
        let entry = encode(
            id.key(),
            &Entry::Pending {
                message: Box::new(message.clone()),
            },
        )?;
        Ok(match self.store.put_if_absent(id.key(), entry).await? {
            PutOutcome::Created => Admission::Accepted(id),
            PutOutcome::AlreadyExists => Admission::Duplicate(id),
        })
    }

    /// Records that the message was answered (or deliberately not answered).
    pub async fn mark_done(&self, id: &InboxId) -> Result<(), StoreError> {
        self.store
            .put(id.key(), encode(id.key(), &Entry::Done)?)
            .await
    }

    /// Messages accepted but not done, oldest first.
    pub async fn pending(&self) -> Result<Vec<(InboxId, InboundMessage)>, StoreError> {
        let mut pending = Vec::new();
        for key in self.store.list("inbox/").await? {
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            let entry: Entry =
                serde_json::from_slice(&bytes).map_err(|err| StoreError::Corrupt {
                    key: key.clone(),
                    reason: err.to_string(),
                })?;
            if let Entry::Pending { message } = entry {
                pending.push((InboxId(key), *message));
            }
        }
        pending.sort_by(|(a_id, a), (b_id, b)| (a.sent_at, a_id).cmp(&(b.sent_at, b_id)));
        Ok(pending)
    }
}

fn encode(key: &str, entry: &Entry) -> Result<Bytes, StoreError> {
    serde_json::to_vec(entry)
        .map(Bytes::from)
        .map_err(|err| StoreError::Corrupt {
            key: key.to_owned(),
            reason: err.to_string(),
        })
}
