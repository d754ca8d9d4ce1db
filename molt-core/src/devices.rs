//! Device pairing, as OpenClaw's gateway keeps it: a client's device (an
//! Ed25519 key, see [`crate::device`]) asks to be paired for a role and
//! scopes; an operator approves or rejects the request; a paired device gets
//! a device token per role, which it presents on later connects, and which
//! can be rotated or revoked.
//!
//! Each request, each paired device and each of its tokens is its own object
//! in the store: `devices/pending/<requestId>.json`,
//! `devices/paired/<deviceId>.json` and `devices/tokens/<deviceId>/<role>.json`.
//! Nothing is cached, so a decision taken by another process on the same
//! state (`moltworker devices approve`) counts at once. Device tokens are
//! kept as issued (clients get them back on every connect), so the state
//! directory holding them must stay private, as it does (mode 0600).

use crate::platform::{Clock, Entropy, Timestamp};
use crate::store::{Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::lock::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a pairing request waits for an operator.
pub const PENDING_TTL: Duration = Duration::from_secs(300);

/// The most requests waiting at once; the oldest goes when another comes.
pub const MAX_PENDING: usize = 50;

const PENDING: &str = "devices/pending/";
const PAIRED: &str = "devices/paired/";
const TOKENS: &str = "devices/tokens/";

/// What a client says of itself when it connects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMeta {
    /// `client.id`, such as `gateway-client`.
    pub client_id: String,
    /// `client.mode`, such as `backend`.
    pub client_mode: String,
    /// `client.platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.deviceFamily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The client's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
}

/// A device waiting for an operator (OpenClaw's pending request shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingDevice {
    /// The request's id, which an operator approves or rejects.
    pub request_id: String,
    /// The device id.
    pub device_id: String,
    /// The device's public key (canonical base64url).
    pub public_key: String,
    /// The role asked for.
    pub role: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// What the client said of itself.
    #[serde(flatten)]
    pub meta: DeviceMeta,
    /// Whether the device id is paired with another key.
    #[serde(default)]
    pub is_repair: bool,
    /// When the request was made (milliseconds; OpenClaw's `ts`).
    pub ts: Timestamp,
}

/// A device token for one role.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceToken {
    /// The token (32 random bytes, base64url).
    pub token: String,
    /// The scopes it grants.
    pub scopes: Vec<String>,
    /// When it was issued.
    pub created_at_ms: Timestamp,
    /// When it was last replaced, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at_ms: Option<Timestamp>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<Timestamp>,
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceToken")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .finish()
    }
}

/// A device an operator approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    /// The device id.
    pub device_id: String,
    /// Its public key (canonical base64url): a connect with another key is not this device.
    pub public_key: String,
    /// The roles approved.
    pub roles: Vec<String>,
    /// The scopes approved.
    pub scopes: Vec<String>,
    /// What the client said of itself when approved.
    #[serde(flatten)]
    pub meta: DeviceMeta,
    /// Its tokens, by role (each kept in its own object, see [`DeviceBook`]).
    #[serde(default, skip_serializing)]
    pub tokens: BTreeMap<String, DeviceToken>,
    /// When it was approved.
    pub approved_at_ms: Timestamp,
}

/// Where a device stands when it connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Paired for this role and these scopes.
    Paired(Box<PairedDevice>),
    /// Not paired (or paired with another key: `repair`).
    NotPaired {
        /// Whether the id is paired with another key.
        repair: bool,
    },
    /// Paired, but not for this role.
    RoleUpgrade,
    /// Paired for this role, but not for all these scopes.
    ScopeUpgrade,
}

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// No pending request has this id (it may have expired).
    #[error("unknown requestId")]
    UnknownRequest,
    /// No paired device has this id.
    #[error("unknown deviceId")]
    UnknownDevice,
    /// The device holds no token for this role, or asks for scopes it was not approved.
    #[error("the device is not approved for this role and these scopes")]
    NotApproved,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a device token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Not this device's token for the role, or revoked.
    #[error("device token mismatch")]
    Mismatch,
    /// The token does not cover the scopes asked for.
    #[error("device token scope mismatch")]
    ScopeMismatch,
}

/// Whether `granted` scopes cover `required`, with OpenClaw's implications:
/// `operator.admin` covers every scope; `operator.write` covers
/// `operator.read`, `operator.talk` and the session scopes; `operator.read`
/// and `operator.sessions.write` cover `operator.sessions.read`.
pub fn scope_satisfied(required: &str, granted: &[String]) -> bool {
    granted.iter().any(|scope| {
        scope == required
            || scope == "operator.admin"
            || (scope == "operator.write"
                && matches!(
                    required,
                    "operator.read"
                        | "operator.talk"
                        | "operator.sessions.read"
                        | "operator.sessions.write"
                ))
            || (matches!(scope.as_str(), "operator.read" | "operator.sessions.write")
                && required == "operator.sessions.read")
    })
}

/// Whether `granted` covers every scope of `required`.
pub fn scopes_satisfied(required: &[String], granted: &[String]) -> bool {
    required.iter().all(|scope| scope_satisfied(scope, granted))
}

/// Pairing requests and paired devices, kept in a store.
pub struct DeviceBook {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    /// Serialises this process's changes, so read-modify-write holds.
    writing: Mutex<()>,
}

impl DeviceBook {
    /// A device book kept in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        Self {
            store,
            clock,
            entropy,
            writing: Mutex::new(()),
        }
    }

    /// Where device `device_id` with `public_key` stands for `role` and `scopes`.
    pub async fn standing(
        &self,
        device_id: &str,
        public_key: &str,
        role: &str,
        scopes: &[String],
    ) -> Result<Standing, StoreError> {
        let Some(paired) = self.paired_device(device_id).await? else {
            return Ok(Standing::NotPaired { repair: false });
        };
        Ok(if paired.public_key != public_key {
            Standing::NotPaired { repair: true }
        } else if !paired.roles.iter().any(|approved| approved == role) {
            Standing::RoleUpgrade
        } else if !scopes_satisfied(scopes, &paired.scopes) {
            Standing::ScopeUpgrade
        } else {
            Standing::Paired(Box::new(paired))
        })
    }

    /// Files (or refreshes) the device's request for `role` and `scopes`: one
    /// request per device, which keeps its id while it waits and asks the
    /// same; a request for another role, scopes or key replaces it under a
    /// new id, so an operator never approves what it did not see.
    pub async fn request(
        &self,
        device_id: &str,
        public_key: &str,
        role: &str,
        scopes: &[String],
        meta: DeviceMeta,
    ) -> Result<PendingDevice, StoreError> {
        let _writing = self.writing.lock().await;
        let now = self.clock.now();
        let pending = self.live_pending(now).await?;
        let repair = (self.paired_device(device_id).await?)
            .is_some_and(|paired| paired.public_key != public_key);
        let same = |p: &&PendingDevice| {
            p.device_id == device_id
                && p.public_key == public_key
                && p.role == role
                && p.scopes == scopes
        };
        for superseded in pending
            .iter()
            .filter(|p| p.device_id == device_id && !same(p))
        {
            self.store
                .delete(&pending_key(&superseded.request_id))
                .await?;
        }
        let pending: Vec<PendingDevice> = pending
            .into_iter()
            .filter(|p| p.device_id != device_id || same(&p))
            .collect();
        let earlier = pending.iter().find(same);
        let request = PendingDevice {
            request_id: earlier.map_or_else(|| self.new_id(), |p| p.request_id.clone()),
            device_id: device_id.to_owned(),
            public_key: public_key.to_owned(),
            role: role.to_owned(),
            scopes: scopes.to_vec(),
            meta,
            is_repair: repair,
            ts: now,
        };
        if earlier.is_none() && pending.len() >= MAX_PENDING {
            let oldest = pending.iter().min_by_key(|p| p.ts).expect("not empty");
            self.store.delete(&pending_key(&oldest.request_id)).await?;
        }
        self.put(&pending_key(&request.request_id), &request)
            .await?;
        Ok(request)
    }

    /// Requests still waiting, oldest first (expired ones are removed).
    pub async fn pending(&self) -> Result<Vec<PendingDevice>, StoreError> {
        let _writing = self.writing.lock().await;
        let mut pending = self.live_pending(self.clock.now()).await?;
        pending.sort_by(|a, b| (a.ts, &a.request_id).cmp(&(b.ts, &b.request_id)));
        Ok(pending)
    }

    /// Paired devices, by device id.
    pub async fn paired(&self) -> Result<Vec<PairedDevice>, StoreError> {
        Ok(self
            .read_all::<PairedDevice>(PAIRED)
            .await?
            .into_values()
            .collect())
    }

    /// Approves request `request_id`: the device is paired for its role and
    /// scopes (added to any approved before), with a token for that role.
    /// With `grantor` scopes given, a request for scopes they do not cover is
    /// refused ([`DevicesError::NotApproved`]): an operator grants only what it holds.
    pub async fn approve(
        &self,
        request_id: &str,
        grantor: Option<&[String]>,
    ) -> Result<PairedDevice, DevicesError> {
        let _writing = self.writing.lock().await;
        let request = self.take_pending(request_id).await?;
        if grantor.is_some_and(|granted| !scopes_satisfied(&request.scopes, granted)) {
            return Err(DevicesError::NotApproved);
        }
        let now = self.clock.now();
        let mut device = match self.paired_device(&request.device_id).await? {
            Some(paired) if paired.public_key == request.public_key => paired,
            _ => PairedDevice {
                device_id: request.device_id.clone(),
                public_key: request.public_key.clone(),
                roles: Vec::new(),
                scopes: Vec::new(),
                meta: request.meta.clone(),
                tokens: BTreeMap::new(),
                approved_at_ms: now,
            },
        };
        if !device.roles.contains(&request.role) {
            device.roles.push(request.role.clone());
        }
        for scope in &request.scopes {
            if !device.scopes.contains(scope) {
                device.scopes.push(scope.clone());
            }
        }
        device.meta = request.meta;
        device.approved_at_ms = now;
        let token = self.new_token(request.scopes, now, None);
        self.put(&paired_key(&device.device_id), &device).await?;
        self.put(&token_key(&device.device_id, &request.role), &token)
            .await?;
        device.tokens.insert(request.role, token);
        self.store.delete(&pending_key(request_id)).await?;
        Ok(device)
    }

    /// Rejects request `request_id`; returns it.
    pub async fn reject(&self, request_id: &str) -> Result<PendingDevice, DevicesError> {
        let _writing = self.writing.lock().await;
        let request = self.take_pending(request_id).await?;
        self.store.delete(&pending_key(request_id)).await?;
        Ok(request)
    }

    /// Unpairs device `device_id`, its tokens with it.
    pub async fn remove(&self, device_id: &str) -> Result<(), DevicesError> {
        let _writing = self.writing.lock().await;
        self.paired_device(device_id)
            .await?
            .ok_or(DevicesError::UnknownDevice)?;
        // The record first: from then on the device is unknown, whatever tokens remain.
        self.store.delete(&paired_key(device_id)).await?;
        for key in self.store.list(&token_prefix(device_id)).await? {
            self.store.delete(&key).await?;
        }
        Ok(())
    }

    /// The device's token for `role`, issued anew when it has none that is
    /// live and covers `scopes`; `None` when the device is not approved for them.
    pub async fn ensure_token(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
    ) -> Result<Option<DeviceToken>, StoreError> {
        let _writing = self.writing.lock().await;
        let Some(device) = self.paired_device(device_id).await? else {
            return Ok(None);
        };
        if !device.roles.iter().any(|r| r == role) || !scopes_satisfied(scopes, &device.scopes) {
            return Ok(None);
        }
        let current = device.tokens.get(role);
        if let Some(token) = current
            && token.revoked_at_ms.is_none()
            && scopes_satisfied(scopes, &token.scopes)
        {
            return Ok(Some(token.clone()));
        }
        let now = self.clock.now();
        let rotated = current.map(|_| now);
        let token = self.new_token(scopes.to_vec(), now, rotated);
        self.put(&token_key(device_id, role), &token).await?;
        Ok(Some(token))
    }

    /// Checks a device token presented for `role` and `scopes` (in constant time).
    pub async fn check_token(
        &self,
        device_id: &str,
        role: &str,
        presented: &str,
        scopes: &[String],
    ) -> Result<Result<(), TokenRefusal>, StoreError> {
        let device = self.paired_device(device_id).await?;
        let Some((token, approved)) = device
            .as_ref()
            .and_then(|d| Some((d.tokens.get(role)?, &d.scopes)))
        else {
            return Ok(Err(TokenRefusal::Mismatch));
        };
        let same: bool = token.token.as_bytes().ct_eq(presented.as_bytes()).into();
        if !same || token.revoked_at_ms.is_some() {
            return Ok(Err(TokenRefusal::Mismatch));
        }
        if !scopes_satisfied(scopes, &token.scopes) || !scopes_satisfied(scopes, approved) {
            return Ok(Err(TokenRefusal::ScopeMismatch));
        }
        Ok(Ok(()))
    }

    /// Replaces the device's token for `role` (with `scopes`, within those
    /// approved; the old token's when `None`); returns the new one.
    pub async fn rotate_token(
        &self,
        device_id: &str,
        role: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<DeviceToken, DevicesError> {
        let _writing = self.writing.lock().await;
        let device = (self.paired_device(device_id).await?).ok_or(DevicesError::UnknownDevice)?;
        let current = device.tokens.get(role).ok_or(DevicesError::NotApproved)?;
        let scopes = scopes.unwrap_or_else(|| current.scopes.clone());
        if !scopes_satisfied(&scopes, &device.scopes) {
            return Err(DevicesError::NotApproved);
        }
        let now = self.clock.now();
        let token = self.new_token(scopes, current.created_at_ms, Some(now));
        self.put(&token_key(device_id, role), &token).await?;
        Ok(token)
    }

    /// Revokes the device's token for `role`; returns when.
    pub async fn revoke_token(
        &self,
        device_id: &str,
        role: &str,
    ) -> Result<Timestamp, DevicesError> {
        let _writing = self.writing.lock().await;
        let mut device =
            (self.paired_device(device_id).await?).ok_or(DevicesError::UnknownDevice)?;
        let token = device
            .tokens
            .get_mut(role)
            .ok_or(DevicesError::NotApproved)?;
        let now = self.clock.now();
        token.revoked_at_ms = Some(now);
        self.put(&token_key(device_id, role), &*token).await?;
        Ok(now)
    }

    /// The paired device `device_id`, if there is one.
    pub async fn device(&self, device_id: &str) -> Result<Option<PairedDevice>, StoreError> {
        self.paired_device(device_id).await
    }

    async fn paired_device(&self, device_id: &str) -> Result<Option<PairedDevice>, StoreError> {
        if !is_device_id(device_id) {
            return Ok(None);
        }
        let key = paired_key(device_id);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let mut device: PairedDevice = decode(&key, &bytes)?;
        let prefix = token_prefix(device_id);
        for (key, token) in self.read_all::<DeviceToken>(&prefix).await? {
            let role = key[prefix.len()..].trim_end_matches(".json").to_owned();
            device.tokens.insert(role, token);
        }
        Ok(Some(device))
    }

    /// The live request `request_id`.
    async fn take_pending(&self, request_id: &str) -> Result<PendingDevice, DevicesError> {
        if !is_request_id(request_id) {
            return Err(DevicesError::UnknownRequest);
        }
        let key = pending_key(request_id);
        let request: PendingDevice = match self.store.get(&key).await? {
            Some(bytes) => decode(&key, &bytes)?,
            None => return Err(DevicesError::UnknownRequest),
        };
        if expired(&request, self.clock.now()) {
            self.store.delete(&key).await?;
            return Err(DevicesError::UnknownRequest);
        }
        Ok(request)
    }

    /// Unexpired requests; expired ones are removed on the way.
    async fn live_pending(&self, now: Timestamp) -> Result<Vec<PendingDevice>, StoreError> {
        let mut live = Vec::new();
        for (key, request) in self.read_all::<PendingDevice>(PENDING).await? {
            if expired(&request, now) {
                self.store.delete(&key).await?;
            } else {
                live.push(request);
            }
        }
        Ok(live)
    }

    async fn read_all<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, T>, StoreError> {
        let mut out = BTreeMap::new();
        for key in self.store.list(prefix).await? {
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            match decode(&key, &bytes) {
                Ok(value) => {
                    out.insert(key, value);
                }
                Err(err) => tracing::warn!(%err, "skipping an unreadable device record"),
            }
        }
        Ok(out)
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|err| StoreError::Corrupt {
            key: key.to_owned(),
            reason: err.to_string(),
        })?;
        self.store.put(key, Bytes::from(bytes)).await
    }

    fn new_token(
        &self,
        scopes: Vec<String>,
        created: Timestamp,
        rotated: Option<Timestamp>,
    ) -> DeviceToken {
        let mut bytes = [0u8; 32];
        self.entropy.fill(&mut bytes);
        DeviceToken {
            token: URL_SAFE_NO_PAD.encode(bytes),
            scopes,
            created_at_ms: created,
            rotated_at_ms: rotated,
            revoked_at_ms: None,
        }
    }

    /// A request id in the form of a random UUID (version 4).
    fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        self.entropy.fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

fn expired(request: &PendingDevice, now: Timestamp) -> bool {
    now.0.saturating_sub(request.ts.0) > PENDING_TTL.as_millis() as u64
}

fn is_device_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_request_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

fn pending_key(request_id: &str) -> String {
    format!("{PENDING}{request_id}.json")
}

fn paired_key(device_id: &str) -> String {
    format!("{PAIRED}{device_id}.json")
}

/// Where a device's tokens live: one object per role, apart from its record,
/// so writing a token never brings back a record another process removed.
fn token_prefix(device_id: &str) -> String {
    format!("{TOKENS}{device_id}/")
}

fn token_key(device_id: &str, role: &str) -> String {
    format!(
        "{}{}.json",
        token_prefix(device_id),
        crate::store::key_segment(role)
    )
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Corrupt {
        key: key.to_owned(),
        reason: err.to_string(),
    })
}
