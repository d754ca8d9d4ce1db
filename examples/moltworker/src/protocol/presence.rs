//! Who is connected (OpenClaw's presence), the gateway's health snapshot,
//! and the two versions clients use to order snapshots against events.

use super::frames::ClientInfo;
use super::now_ms;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The connected clients, and the presence and health versions.
pub struct Presence {
    clients: Mutex<BTreeMap<String, Value>>,
    presence_version: AtomicU64,
    health_version: AtomicU64,
    instance_id: String,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            clients: Mutex::default(),
            presence_version: AtomicU64::new(1),
            health_version: AtomicU64::new(1),
            instance_id: super::uuid(&crate::platform::random_token()),
        }
    }
}

/// What presence keeps of a connection.
pub struct Joining<'a> {
    /// The connection's id.
    pub conn_id: &'a str,
    /// The client, as it described itself in `connect`.
    pub client: &'a ClientInfo,
    /// Its role.
    pub role: &'a str,
    /// Its scopes.
    pub scopes: &'a [String],
    /// Its device, when it has one.
    pub device_id: Option<&'a str>,
}

impl Presence {
    /// Records a connection; returns the new versions.
    pub fn join(&self, joining: Joining<'_>) -> Value {
        let now = now_ms();
        let client = joining.client;
        let mut entry = json!({
            "clientId": client.id, "version": client.version, "platform": client.platform,
            "mode": client.mode, "roles": [joining.role], "scopes": joining.scopes,
            "ts": now, "onlineSince": now,
            "text": format!("{} · {} · {}", client.display_name.as_deref().unwrap_or(&client.id), client.platform, client.mode),
        });
        let optional = [
            ("deviceFamily", client.device_family.as_deref()),
            ("modelIdentifier", client.model_identifier.as_deref()),
            ("timeZone", client.time_zone.as_deref()),
            ("instanceId", client.instance_id.as_deref()),
            ("deviceId", joining.device_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                entry[name] = json!(value);
            }
        }
        self.lock().insert(joining.conn_id.to_owned(), entry);
        self.bump_presence()
    }

    /// Forgets a connection; returns the new versions.
    pub fn leave(&self, conn_id: &str) -> Value {
        self.lock().remove(conn_id);
        self.bump_presence()
    }

    /// The gateway's own entry, then the clients', newest first.
    pub fn entries(&self) -> Vec<Value> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "moltworker".to_owned());
        let version = env!("CARGO_PKG_VERSION");
        let gateway = json!({
            "host": host, "version": version, "platform": std::env::consts::OS,
            "mode": "gateway", "reason": "self", "instanceId": self.instance_id, "ts": now_ms(),
            "text": format!("Gateway: {host} · app {version} · mode gateway · reason self"),
        });
        let mut clients: Vec<Value> = self.lock().values().cloned().collect();
        clients.sort_by_key(|entry| std::cmp::Reverse(entry["ts"].as_u64()));
        std::iter::once(gateway).chain(clients).collect()
    }

    /// How many clients are connected.
    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    /// The current versions, `{presence, health}`.
    pub fn versions(&self) -> Value {
        json!({
            "presence": self.presence_version.load(Ordering::SeqCst),
            "health": self.health_version.load(Ordering::SeqCst),
        })
    }

    /// Counts a new health snapshot; returns the new versions.
    pub fn bump_health(&self) -> Value {
        self.health_version.fetch_add(1, Ordering::SeqCst);
        self.versions()
    }

    fn bump_presence(&self) -> Value {
        self.presence_version.fetch_add(1, Ordering::SeqCst);
        self.versions()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}
