//! The durable inbox: a message is stored before its platform is told it arrived.
//!
//! One object per message at `inbox/<channel>/<platform message id>`, created
//! with put-if-absent so a redelivered message is recognised. Its state moves
//! from `pending` to `answered` (the reply is stored before it is sent) to
//! `done` (the reply was delivered). An answered entry also counts the pieces
//! of a split reply already delivered. After a restart, pending entries are
//! processed again and answered ones have the rest of their stored reply sent,
//! so the model is never asked twice for the same message.

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

/// A message accepted but not yet delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingEntry {
    /// Its inbox id.
    pub id: InboxId,
    /// The message.
    pub message: InboundMessage,
    /// The reply, when it was decided but perhaps not delivered.
    pub reply: Option<String>,
    /// How many pieces of the reply were delivered (a long reply is split).
    pub pieces_sent: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    Pending {
        message: Box<InboundMessage>,
    },
    Answered {
        message: Box<InboundMessage>,
        reply: String,
        #[serde(default, skip_serializing_if = "is_zero")]
        pieces_sent: usize,
    },
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

    /// Stores the reply before it is sent, so a crash resends it instead of
    /// asking the model again. `pieces_sent` counts the pieces of a split
    /// reply already delivered (0 before the first send), so a restart sends
    /// only the rest.
    pub async fn record_reply(
        &self,
        id: &InboxId,
        message: &InboundMessage,
        reply: &str,
        pieces_sent: usize,
    ) -> Result<(), StoreError> {
        let entry = Entry::Answered {
            message: Box::new(message.clone()),
            reply: reply.to_owned(),
            pieces_sent,
        };
        self.store.put(id.key(), encode(id.key(), &entry)?).await
    }

    /// Records that the reply was delivered (or that none is due).
    pub async fn mark_done(&self, id: &InboxId) -> Result<(), StoreError> {
        self.store
            .put(id.key(), encode(id.key(), &Entry::Done)?)
            .await
    }

    /// Messages accepted but not delivered, oldest first. An entry that cannot
    /// be decoded is reported and skipped, so one bad file cannot stop a start.
    pub async fn pending(&self) -> Result<Vec<PendingEntry>, StoreError> {
        let mut pending = Vec::new();
        for key in self.store.list("inbox/").await? {
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            let (message, reply, pieces_sent) = match serde_json::from_slice(&bytes) {
                Ok(Entry::Pending { message }) => (message, None, 0),
                Ok(Entry::Answered {
                    message,
                    reply,
                    pieces_sent,
                }) => (message, Some(reply), pieces_sent),
                Ok(Entry::Done) => continue,
                Err(err) => {
                    tracing::error!(%key, %err, "skipping an unreadable inbox entry");
                    continue;
                }
            };
            pending.push(PendingEntry {
                id: InboxId(key),
                message: *message,
                reply,
                pieces_sent,
            });
        }
        pending.sort_by(|a, b| (a.message.sent_at, &a.id).cmp(&(b.message.sent_at, &b.id)));
        Ok(pending)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn encode(key: &str, entry: &Entry) -> Result<Bytes, StoreError> {
    serde_json::to_vec(entry)
        .map(Bytes::from)
        .map_err(|err| StoreError::Corrupt {
            key: key.to_owned(),
            reason: err.to_string(),
        })
}
