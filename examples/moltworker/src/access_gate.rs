//! Cloudflare Access in front of the operator's routes: the check is
//! `molt_core::access` (shared with the Worker); this holds the team's keys,
//! fetched from its certs endpoint, and fetches them again when a token names
//! a key not held (at most once every [`REFRESH_AT_MOST_EVERY`]).

use molt_core::access::{self, AccessConfig, AccessError, AccessIdentity, AccessKeys};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two fetches of the keys.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Access, configured.
pub struct AccessGate {
    config: AccessConfig,
    certs_url: String,
    http: reqwest::Client,
    keys: Mutex<(AccessKeys, Option<Instant>)>,
}

impl AccessGate {
    /// Access from `CF_ACCESS_TEAM_DOMAIN` and `CF_ACCESS_AUD` (both, or
    /// neither); `MOLT_ACCESS_CERTS_URL` replaces the team's certs URL (for
    /// a proxy, or a test's key server).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let value = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let (domain, audience) = match (value("CF_ACCESS_TEAM_DOMAIN"), value("CF_ACCESS_AUD")) {
            (None, None) => return Ok(None),
            (Some(domain), Some(audience)) => (domain, audience),
            _ => return Err("set both CF_ACCESS_TEAM_DOMAIN and CF_ACCESS_AUD, or neither".into()),
        };
        let config = AccessConfig::new(&domain, &audience);
        let certs_url = value("MOLT_ACCESS_CERTS_URL").unwrap_or_else(|| config.certs_url());
        // rustls with Mozilla's roots, no redirects, bounded waits.
        let http = molt_ai_gateway::provider::http_client(FETCH_TIMEOUT, FETCH_TIMEOUT)
            .map_err(|err| format!("Cloudflare Access: {err}"))?;
        Ok(Some(Self {
            config,
            certs_url,
            http,
            keys: Mutex::new((AccessKeys::default(), None)),
        }))
    }

    /// The team domain (for sign-in links).
    pub fn team_domain(&self) -> &str {
        &self.config.team_domain
    }

    /// Checks `token`, fetching the keys when it names one not held.
    pub async fn verify(&self, token: &str) -> Result<AccessIdentity, AccessError> {
        let now = crate::protocol::now_ms() / 1000;
        let keys = self.lock().0.clone();
        match access::verify(token, &self.config, &keys, now) {
            Err(AccessError::UnknownKey) if self.may_refresh() => {
                let keys = self.fetch().await?;
                access::verify(token, &self.config, &keys, now)
            }
            other => other,
        }
    }

    fn may_refresh(&self) -> bool {
        let mut keys = self.lock();
        let due = keys
            .1
            .is_none_or(|at| at.elapsed() >= REFRESH_AT_MOST_EVERY);
        if due {
            keys.1 = Some(Instant::now());
        }
        due
    }

    async fn fetch(&self) -> Result<AccessKeys, AccessError> {
        let failed = |reason: String| {
            tracing::warn!(%reason, "could not fetch Cloudflare Access's keys");
            AccessError::Keys(reason)
        };
        let response = (self.http.get(&self.certs_url).send().await)
            .map_err(|err| failed(molt_core::error::chain(&err.without_url())))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| failed(err.to_string()))?;
        let keys = AccessKeys::from_jwks(&body)?;
        self.lock().0 = keys.clone();
        Ok(keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (AccessKeys, Option<Instant>)> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}
