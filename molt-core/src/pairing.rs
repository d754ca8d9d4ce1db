//! Pairing: codes issued to unknown senders, and the senders an operator approved.
//!
//! Each request and each approval is its own object in the store:
//! `pairing/<channel>/pending/<CODE>.json` and
//! `pairing/<channel>/approved/<sender>.json`. Nothing is cached, so a
//! decision taken by another process on the same state (the
//! `moltworker pairing approve` command, say) counts at once, and two writers
//! never overwrite each other's changes.

use crate::platform::{Clock, Entropy, Timestamp};
use crate::store::{PutOutcome, Store, StoreError, key_segment};
use bytes::Bytes;
use futures::lock::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a pairing code is valid.
pub const PAIRING_CODE_TTL: Duration = Duration::from_secs(3600);
/// The most pending pairing requests per channel.
pub const MAX_PENDING_PER_CHANNEL: usize = 3;
/// Pairing-code characters: upper-case letters and digits without look-alikes (no 0, O, 1, I).
pub const PAIRING_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;
const ROOT: &str = "pairing/";

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

/// A sender an operator approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedSender {
    /// Their sender id.
    pub sender: String,
    /// Their display name when they asked, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When they were approved.
    pub approved_at: Timestamp,
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

/// Pairing requests and approved senders, per channel, kept in a store.
pub struct PairingBook {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    /// Serialises this process's requests, so the per-channel limit and the
    /// one-code-per-sender rule hold against concurrent messages.
    issuing: Mutex<()>,
}

impl PairingBook {
    /// A pairing book kept in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        Self {
            store,
            clock,
            entropy,
            issuing: Mutex::new(()),
        }
    }

    /// Whether `sender` was approved on `channel`.
    pub async fn is_approved(&self, channel: &str, sender: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(&approved_key(channel, sender))
            .await?
            .is_some())
    }

    /// Issues a code for `sender` unless they hold one or the channel is full.
    /// Expired requests are removed on the way.
    pub async fn request(
        &self,
        channel: &str,
        sender: &str,
        name: Option<&str>,
    ) -> Result<PairingRequest, StoreError> {
        let _issuing = self.issuing.lock().await;
        let now = self.clock.now();
        let mut live = 0;
        for (key, pending) in self
            .read_all::<PendingPairing>(&pending_prefix(channel))
            .await?
        {
            if expired(&pending, now) {
                self.store.delete(&key).await?;
            } else if pending.sender == sender {
                return Ok(PairingRequest::AlreadyPending);
            } else {
                live += 1;
            }
        }
        if live >= MAX_PENDING_PER_CHANNEL {
            return Ok(PairingRequest::Full);
        }
        loop {
            let request = PendingPairing {
                code: self.new_code(),
                sender: sender.to_owned(),
                name: name.map(str::to_owned),
                issued_at: now,
            };
            let key = pending_key(channel, &request.code);
            let value = encode(&key, &request)?;
            // A code still held by someone else is never reused.
            if self.store.put_if_absent(&key, value).await? == PutOutcome::Created {
                return Ok(PairingRequest::Issued(request.code));
            }
        }
    }

    /// Unexpired requests on `channel`, oldest first.
    pub async fn pending(&self, channel: &str) -> Result<Vec<PendingPairing>, StoreError> {
        let now = self.clock.now();
        let mut pending: Vec<PendingPairing> = self
            .read_all::<PendingPairing>(&pending_prefix(channel))
            .await?
            .into_values()
            .filter(|pending| !expired(pending, now))
            .collect();
        pending.sort_by(|a, b| (a.issued_at, &a.code).cmp(&(b.issued_at, &b.code)));
        Ok(pending)
    }

    /// Senders approved on `channel`.
    pub async fn approved(&self, channel: &str) -> Result<Vec<ApprovedSender>, StoreError> {
        let prefix = format!("{ROOT}{}/approved/", key_segment(channel));
        Ok(self
            .read_all::<ApprovedSender>(&prefix)
            .await?
            .into_values()
            .collect())
    }

    /// The channels with pending requests or approved senders, sorted.
    pub async fn channels(&self) -> Result<Vec<String>, StoreError> {
        let mut channels = BTreeSet::new();
        for key in self.store.list(ROOT).await? {
            let mut segments = key[ROOT.len()..].split('/');
            if let (Some(channel), Some("pending" | "approved")) =
                (segments.next(), segments.next())
            {
                channels.insert(percent_decode(channel));
            }
        }
        Ok(channels.into_iter().collect())
    }

    /// Approves the sender holding `code` (any case); returns their sender id.
    pub async fn approve(&self, channel: &str, code: &str) -> Result<String, PairingError> {
        let (key, request) = self.take(channel, code).await?;
        let approved = ApprovedSender {
            sender: request.sender.clone(),
            name: request.name,
            approved_at: self.clock.now(),
        };
        let approved_key = approved_key(channel, &approved.sender);
        self.store
            .put(&approved_key, encode(&approved_key, &approved)?)
            .await?;
        self.store.delete(&key).await?;
        Ok(request.sender)
    }

    /// Rejects the request holding `code` (any case); returns the sender id.
    pub async fn reject(&self, channel: &str, code: &str) -> Result<String, PairingError> {
        let (key, request) = self.take(channel, code).await?;
        self.store.delete(&key).await?;
        Ok(request.sender)
    }

    /// Removes an approval; returns whether `sender` was approved.
    pub async fn revoke(&self, channel: &str, sender: &str) -> Result<bool, StoreError> {
        let key = approved_key(channel, sender);
        let was = self.store.get(&key).await?.is_some();
        self.store.delete(&key).await?;
        Ok(was)
    }

    /// The unexpired request holding `code`, and its key.
    async fn take(
        &self,
        channel: &str,
        code: &str,
    ) -> Result<(String, PendingPairing), PairingError> {
        let code = code.trim().to_ascii_uppercase();
        let unknown = || PairingError::UnknownCode(code.clone());
        if code.len() != CODE_LEN || !code.bytes().all(|b| PAIRING_ALPHABET.contains(&b)) {
            return Err(unknown());
        }
        let key = pending_key(channel, &code);
        let request: PendingPairing = match self.store.get(&key).await? {
            Some(bytes) => decode(&key, &bytes)?,
            None => return Err(unknown()),
        };
        if expired(&request, self.clock.now()) {
            return Err(unknown());
        }
        Ok((key, request))
    }

    /// Every readable object under `prefix`; an unreadable one is reported and skipped.
    async fn read_all<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, T>, StoreError> {
        let mut out = BTreeMap::new();
        for key in self.store.list(prefix).await? {
            let Some(bytes) = self.store.get(&key).await? else {
                continue; // removed since the listing
            };
            match decode(&key, &bytes) {
                Ok(value) => {
                    out.insert(key, value);
                }
                Err(err) => tracing::warn!(%err, "skipping an unreadable pairing record"),
            }
        }
        Ok(out)
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

fn expired(request: &PendingPairing, now: Timestamp) -> bool {
    request.issued_at.plus(PAIRING_CODE_TTL) <= now
}

fn pending_prefix(channel: &str) -> String {
    format!("{ROOT}{}/pending/", key_segment(channel))
}

fn pending_key(channel: &str, code: &str) -> String {
    format!("{}{}.json", pending_prefix(channel), key_segment(code))
}

fn approved_key(channel: &str, sender: &str) -> String {
    format!(
        "{ROOT}{}/approved/{}.json",
        key_segment(channel),
        key_segment(sender)
    )
}

/// Undoes [`key_segment`]'s percent-encoding.
fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Bytes, StoreError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|err| StoreError::Corrupt {
            key: key.to_owned(),
            reason: err.to_string(),
        })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Corrupt {
        key: key.to_owned(),
        reason: err.to_string(),
    })
}
