//! Discord's REST API: authenticated JSON requests that respect the rate
//! limits Discord announces, and wait out a 429 before trying again.

use super::ratelimit::{RateLimits, Route, seconds};
use molt_core::Secret;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Why a REST request failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Discord refused the request.
    #[error("{route}: HTTP {status}, code {code}: {message}")]
    Refused {
        /// The route called.
        route: &'static str,
        /// The HTTP status.
        status: u16,
        /// Discord's JSON error code (`50013`, `10003`, ...; 0 when none).
        code: u64,
        /// Discord's message, such as `Missing Permissions`.
        message: String,
    },
    /// The request did not complete (connection, timeout, unreadable answer).
    #[error("{route}: {reason}")]
    Transport {
        /// The route called.
        route: &'static str,
        /// What failed.
        reason: String,
    },
}

/// Attempts per request: rate-limit waits and server errors count.
const MAX_ATTEMPTS: usize = 5;

/// The hosts Discord serves attachments from.
const CDN_HOSTS: [&str; 2] = ["cdn.discordapp.com", "media.discordapp.net"];

/// A REST client for one bot.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    token: Secret,
    limits: Arc<RateLimits>,
    timeout: Duration,
}

impl Rest {
    /// A client for `base` (`https://discord.com/api/v10`); `timeout` bounds each attempt.
    pub fn new(http: reqwest::Client, base: &str, token: Secret, timeout: Duration) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            limits: Arc::default(),
            timeout,
        }
    }

    /// A request for an attachment at `url`, when it is on Discord's CDN (or
    /// the configured API base's host); it carries no token, as the CDN needs none.
    pub(crate) fn file_request(&self, url: &str) -> Option<reqwest::RequestBuilder> {
        let url = url::Url::parse(url).ok()?;
        crate::http::is_platform_url(&url, &CDN_HOSTS, &self.base)
            .then(|| self.http.get(url).timeout(self.timeout * 6))
    }

    /// Sends one request to `path` (which `route` names) and returns the JSON
    /// answer (`Null` for an empty one, such as a 204).
    pub async fn request(
        &self,
        method: Method,
        route: &Route,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        let transport = |reason: String| RestError::Transport {
            route: route.template,
            reason,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limits.acquire(route).await;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("authorization", format!("Bot {}", self.token.expose()))
                .header(
                    "user-agent",
                    concat!(
                        "DiscordBot (https://github.com/molt-rs/molt, ",
                        env!("CARGO_PKG_VERSION"),
                        ")"
                    ),
                )
                .timeout(self.timeout);
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            let response = request
                .send()
                .await
                .map_err(|err| transport(molt_core::error::chain(&err)))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            self.limits.update(route, &headers);
            let bytes = response
                .bytes()
                .await
                .map_err(|err| transport(molt_core::error::chain(&err)))?;
            let answer: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|err| transport(format!("HTTP {status}: unreadable answer ({err})")))?
            };
            if (200..300).contains(&status) {
                return Ok(answer);
            }
            let retry = attempt < MAX_ATTEMPTS;
            if status == 429 {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let wait = answer["retry_after"]
                    .as_f64()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .or_else(|| header("retry-after").and_then(seconds))
                    .unwrap_or(Duration::from_secs(1));
                let global = answer["global"].as_bool().unwrap_or(false)
                    || header("x-ratelimit-global") == Some("true");
                tracing::warn!(
                    route = route.template,
                    ?wait,
                    global,
                    "discord: rate limited"
                );
                self.limits.limited(route, wait, global);
                if retry {
                    continue;
                }
            } else if status >= 500 && retry {
                tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
                continue;
            }
            return Err(RestError::Refused {
                route: route.template,
                status,
                code: answer["code"].as_u64().unwrap_or(0),
                message: answer["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_owned(),
            });
        }
    }
}
