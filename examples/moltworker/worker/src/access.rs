//! Cloudflare Access at the edge: the same check as the container's
//! ([`molt_core::access`]), with the team's signing keys fetched and held
//! by the Worker.

use crate::net::{now_ms, within};
use crate::settings::Settings;
use molt_core::access::{self, AccessConfig, AccessError, AccessIdentity, AccessKeys};
use std::cell::RefCell;
use std::time::Duration;
use worker::{Fetch, Request};

/// How long fetched keys are used before they are read again.
const KEYS_TTL_MS: u64 = 60 * 60 * 1000;
/// The least time between two fetches forced by an unknown key.
const REFETCH_GAP_MS: u64 = 30 * 1000;
/// How long the certs endpoint has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct HeldKeys {
    url: String,
    keys: AccessKeys,
    fetched_ms: u64,
}

thread_local! {
    static KEYS: RefCell<Option<HeldKeys>> = const { RefCell::new(None) };
}

/// The Access identity of `req`, checked against the team's keys.
pub async fn identity(
    req: &Request,
    config: &AccessConfig,
    settings: &Settings,
) -> Result<AccessIdentity, AccessError> {
    let headers = req.headers();
    let assertion = headers.get(access::ASSERTION_HEADER).ok().flatten();
    let cookie = headers.get("cookie").ok().flatten();
    let token = access::token_from_request(assertion.as_deref(), cookie.as_deref())
        .ok_or(AccessError::Missing)?
        .to_owned();
    let url = (settings.access_certs_url.clone()).unwrap_or_else(|| config.certs_url());
    let now = now_ms();
    let keys = keys(&url, now, false).await?;
    match access::verify(&token, config, &keys, now / 1000) {
        Err(AccessError::UnknownKey) => {
            // Keys rotate: read them again (not more often than every 30 s).
            let keys = keys_again(&url, now).await?;
            access::verify(&token, config, &keys, now / 1000)
        }
        result => result,
    }
}

async fn keys(url: &str, now: u64, force: bool) -> Result<AccessKeys, AccessError> {
    let held = KEYS.with_borrow(|held| {
        held.as_ref()
            .filter(|held| held.url == url && (!force && now < held.fetched_ms + KEYS_TTL_MS))
            .map(|held| held.keys.clone())
    });
    if let Some(keys) = held {
        return Ok(keys);
    }
    let keys = fetch_keys(url).await?;
    KEYS.with_borrow_mut(|held| {
        *held = Some(HeldKeys {
            url: url.to_owned(),
            keys: keys.clone(),
            fetched_ms: now,
        })
    });
    Ok(keys)
}

async fn keys_again(url: &str, now: u64) -> Result<AccessKeys, AccessError> {
    let recent = KEYS.with_borrow(|held| {
        held.as_ref()
            .is_some_and(|held| held.url == url && now < held.fetched_ms + REFETCH_GAP_MS)
    });
    if recent {
        return Err(AccessError::UnknownKey);
    }
    keys(url, now, true).await
}

async fn fetch_keys(url: &str) -> Result<AccessKeys, AccessError> {
    let unreadable = |reason: String| AccessError::Keys(reason);
    let url = worker::Url::parse(url).map_err(|err| unreadable(err.to_string()))?;
    let read = async {
        let mut response = Fetch::Url(url).send().await?;
        if response.status_code() != 200 {
            return Err(worker::Error::RustError(format!(
                "the certs endpoint answered {}",
                response.status_code()
            )));
        }
        response.bytes().await
    };
    let body = within(FETCH_TIMEOUT, read)
        .await
        .map_err(|err| unreadable(err.to_string()))?
        .map_err(|err| unreadable(err.to_string()))?;
    AccessKeys::from_jwks(&body)
}
