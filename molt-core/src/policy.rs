//! Who may talk to the assistant: DM policies, pairing codes and group mention gating.

use crate::message::{ChatKind, InboundMessage};
use crate::platform::{Clock, Entropy, Timestamp};
use crate::store::{Store, StoreError, key_segment};
use bytes::Bytes;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How a channel treats direct messages from people it does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; an operator approves them.
    #[default]
    Pairing,
    /// Only senders on the allowlist (or approved earlier) are answered.
    Allowlist,
    /// Everyone is answered.
    Open,
    /// Direct messages are ignored.
    Disabled,
}

impl std::str::FromStr for DmPolicy {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "pairing" => Ok(Self::Pairing),
            "allowlist" => Ok(Self::Allowlist),
            "open" => Ok(Self::Open),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "expected pairing, allowlist, open or disabled, got {other:?}"
            )),
        }
    }
}

/// One channel's access rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelPolicy {
    /// Direct-message policy.
    pub dm_policy: DmPolicy,
    /// Sender ids always allowed (`*` allows everyone).
    pub allow_from: Vec<String>,
    /// In groups, answer only when the bot is mentioned.
    pub require_mention: bool,
}

impl Default for ChannelPolicy {
    fn default() -> Self {
        Self {
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            require_mention: true,
        }
    }
}

/// Why a message is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The channel's DM policy is `disabled`.
    DmDisabled,
    /// The sender is not on the allowlist.
    NotAllowed,
    /// The sender already has a pending pairing code.
    PairingPending,
    /// The channel has the most pending pairing requests it allows.
    PairingFull,
    /// A group message that does not mention the bot.
    NotMentioned,
}

/// What to do with an inbound message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give it to the agent.
    Allow,
    /// Reply with this pairing code; the message never reaches the model.
    ReplyPairingCode(String),
    /// Do not answer.
    Ignore(IgnoreReason),
}

/// The reply an unknown sender gets under the `pairing` policy.
pub fn pairing_reply(code: &str) -> String {
    format!(
        "Hi! I don't know you yet. Your pairing code is {code}. Ask my operator to approve it; it is valid for one hour."
    )
}

/// Decides what to do with `message` under `policy`, issuing a pairing code when due.
pub async fn evaluate(
    policy: &ChannelPolicy,
    pairing: &PairingBook,
    message: &InboundMessage,
) -> Result<Verdict, StoreError> {
    if message.chat_kind != ChatKind::Direct {
        return Ok(if policy.require_mention && !message.mentioned {
            Verdict::Ignore(IgnoreReason::NotMentioned)
        } else {
            Verdict::Allow
        });
    }
    let sender = &message.sender.id;
    let listed = policy
        .allow_from
        .iter()
        .any(|allowed| allowed == "*" || allowed == sender);
    Ok(match policy.dm_policy {
        DmPolicy::Disabled => Verdict::Ignore(IgnoreReason::DmDisabled),
        DmPolicy::Open => Verdict::Allow,
        _ if listed || pairing.is_approved(&message.channel, sender).await? => Verdict::Allow,
        DmPolicy::Allowlist => Verdict::Ignore(IgnoreReason::NotAllowed),
        DmPolicy::Pairing => match pairing
            .request(&message.channel, sender, message.sender.name.as_deref())
            .await?
        {
            PairingRequest::Issued(code) => Verdict::ReplyPairingCode(code),
            PairingRequest::AlreadyPending => Verdict::Ignore(IgnoreReason::PairingPending),
            PairingRequest::Full => Verdict::Ignore(IgnoreReason::PairingFull),
        },
    })
}

/// How long a pairing code is valid.
pub const PAIRING_CODE_TTL: Duration = Duration::from_secs(3600);
/// The most pending pairing requests per channel.
pub const MAX_PENDING_PER_CHANNEL: usize = 3;
/// Pairing-code characters: upper-case letters and digits without look-alikes (no 0, O, 1, I).
pub const PAIRING_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;

/// A sender waiting for approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPairing {
    /// The code they were given.
    pub code: String,
    /// Their sender id.
    pub sender: String,
    /// Their display name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the code was issued.
    pub issued_at: Timestamp,
}

/// The result of asking for a pairing code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingRequest {
    /// A new code was issued.
    Issued(String),
    /// The sender already holds a valid code.
    AlreadyPending,
    /// The channel has [`MAX_PENDING_PER_CHANNEL`] valid codes out.
    Full,
}

/// Why approving or rejecting a code failed.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// No pending request has this code (it may have expired).
    #[error("no pending pairing request with code {0:?} (codes expire after one hour)")]
    UnknownCode(String),
    /// Persisting the change failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ChannelPairing {
    pending: Vec<PendingPairing>,
    approved: BTreeSet<String>,
}

/// Pairing requests and approved senders, per channel, persisted in a store
/// at `pairing/<channel>.json`.
pub struct PairingBook {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    channels: Mutex<HashMap<String, ChannelPairing>>,
}

impl PairingBook {
    /// A pairing book kept in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        Self {
            store,
            clock,
            entropy,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `sender` was approved on `channel`.
    pub async fn is_approved(&self, channel: &str, sender: &str) -> Result<bool, StoreError> {
        self.with(channel, false, |book, _| book.approved.contains(sender))
            .await
    }

    /// Issues a code for `sender` unless they hold one or the channel is full.
    pub async fn request(
        &self,
        channel: &str,
        sender: &str,
        name: Option<&str>,
    ) -> Result<PairingRequest, StoreError> {
        let code = self.new_code();
        let name = name.map(str::to_owned);
        self.with(channel, true, move |book, now| {
            if book.pending.iter().any(|p| p.sender == sender) {
                return PairingRequest::AlreadyPending;
            }
            if book.pending.len() >= MAX_PENDING_PER_CHANNEL {
                return PairingRequest::Full;
            }
            book.pending.push(PendingPairing {
                code: code.clone(),
                sender: sender.to_owned(),
                name,
                issued_at: now,
            });
            PairingRequest::Issued(code)
        })
        .await
    }

    /// Unexpired requests on `channel`.
    pub async fn pending(&self, channel: &str) -> Result<Vec<PendingPairing>, StoreError> {
        self.with(channel, false, |book, _| book.pending.clone())
            .await
    }

    /// Senders approved on `channel`.
    pub async fn approved(&self, channel: &str) -> Result<Vec<String>, StoreError> {
        self.with(channel, false, |book, _| {
            book.approved.iter().cloned().collect()
        })
        .await
    }

    /// Approves the sender holding `code`; returns their sender id.
    pub async fn approve(&self, channel: &str, code: &str) -> Result<String, PairingError> {
        self.resolve(channel, code, true).await
    }

    /// Rejects the request holding `code`; returns the sender id.
    pub async fn reject(&self, channel: &str, code: &str) -> Result<String, PairingError> {
        self.resolve(channel, code, false).await
    }

    async fn resolve(
        &self,
        channel: &str,
        code: &str,
        approve: bool,
    ) -> Result<String, PairingError> {
        let code = code.trim().to_ascii_uppercase();
        let sender = self
            .with(channel, true, |book, _| {
                let index = book.pending.iter().position(|p| p.code == code)?;
                let request = book.pending.remove(index);
                if approve {
                    book.approved.insert(request.sender.clone());
                }
                Some(request.sender)
            })
            .await?;
        sender.ok_or(PairingError::UnknownCode(code))
    }

    /// Runs `change` on the channel's book (loaded on first use, expired codes
    /// dropped) and persists it when `write` is set. The lock is held across the
    /// write, so concurrent changes never overwrite each other.
    async fn with<T>(
        &self,
        channel: &str,
        write: bool,
        change: impl FnOnce(&mut ChannelPairing, Timestamp) -> T,
    ) -> Result<T, StoreError> {
        let mut channels = self.channels.lock().await;
        let key = format!("pairing/{}.json", key_segment(channel));
        if !channels.contains_key(channel) {
            let loaded = match self.store.get(&key).await? {
                Some(bytes) => {
                    serde_json::from_slice(&bytes).map_err(|err| StoreError::Corrupt {
                        key: key.clone(),
                        reason: err.to_string(),
                    })?
                }
                None => ChannelPairing::default(),
            };
            channels.insert(channel.to_owned(), loaded);
        }
        let book = channels.get_mut(channel).expect("inserted above");
        let now = self.clock.now();
        book.pending
            .retain(|p| p.issued_at.plus(PAIRING_CODE_TTL) > now);
        // Change a copy, so a failed write leaves memory and store in agreement.
        let mut draft = book.clone();
        let result = change(&mut draft, now);
        if write {
            let bytes = serde_json::to_vec(&draft).map_err(|err| StoreError::Corrupt {
                key: key.clone(),
                reason: err.to_string(),
            })?;
            self.store.put(&key, Bytes::from(bytes)).await?;
        }
        *book = draft;
        Ok(result)
    }

    fn new_code(&self) -> String {
        let mut bytes = [0u8; CODE_LEN];
        self.entropy.fill(&mut bytes);
        // 32 symbols divide 256 evenly, so masking keeps the code uniform.
        bytes
            .iter()
            .map(|b| PAIRING_ALPHABET[usize::from(b & 31)] as char)
            .collect()
    }
}
