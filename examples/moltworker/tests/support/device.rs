//! A device as OpenClaw's clients hold one (an Ed25519 key), and its
//! `connect` as openclaw-node sends it.
#![allow(dead_code)]

use super::{Client, Gateway};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::Digest;

/// A device: an Ed25519 key, as OpenClaw's clients hold one.
pub struct Device {
    key: SigningKey,
}

impl Device {
    pub fn new(seed: u8) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    pub fn id(&self) -> String {
        let digest = sha2::Sha256::digest(self.key.verifying_key().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `connect` parameters as openclaw-node sends them (`gateway-client`,
    /// `backend`, read and write, a v2 signature), with `auth` and the
    /// signing time given.
    pub fn connect(&self, nonce: &str, auth: Value, signed_at: u64) -> Value {
        self.connect_for(nonce, auth, signed_at, &["operator.read", "operator.write"])
    }

    /// [`Device::connect`] asking for `scopes`.
    pub fn connect_for(&self, nonce: &str, auth: Value, signed_at: u64, scopes: &[&str]) -> Value {
        let token = auth["token"]
            .as_str()
            .or(auth["deviceToken"].as_str())
            .unwrap_or("");
        let payload = format!(
            "v2|{}|gateway-client|backend|operator|{}|{signed_at}|{token}|{nonce}",
            self.id(),
            scopes.join(",")
        );
        json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": { "id": "gateway-client", "version": "0.3.0", "platform": "linux", "mode": "backend" },
            "role": "operator", "scopes": scopes, "caps": [], "commands": [], "permissions": {},
            "auth": auth, "locale": "en-US", "userAgent": "openclaw-node/0.2.1",
            "device": self.proof(&payload, nonce, signed_at),
        })
    }

    pub fn proof(&self, payload: &str, nonce: &str, signed_at: u64) -> Value {
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        json!({ "id": self.id(), "publicKey": self.public_key(), "signature": signature,
                "signedAt": signed_at, "nonce": nonce })
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Connects `device` with `auth`; returns the response.
pub async fn connect(gateway: &Gateway, device: &Device, auth: Value) -> (Client, Value) {
    let mut client = gateway.socket(None, None).await;
    let params = device.connect(&client.nonce, auth, now_ms());
    let (response, _) = client.request("connect", params).await;
    (client, response)
}

/// Connects `device` asking for `scopes`; returns the response.
pub async fn connect_for(
    gateway: &Gateway,
    device: &Device,
    auth: Value,
    scopes: &[&str],
) -> (Client, Value) {
    let mut client = gateway.socket(None, None).await;
    let params = device.connect_for(&client.nonce, auth, now_ms(), scopes);
    let (response, _) = client.request("connect", params).await;
    (client, response)
}
