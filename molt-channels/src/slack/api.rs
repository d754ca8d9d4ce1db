//! Slack's Web API: one method call is one HTTPS POST with a JSON (or, for
//! read methods, form) body and a bearer token, answered by `{"ok": true, ...}` or `{"ok": false, "error": ...}`.
//! A 429 carries `Retry-After`, which is waited out before trying again.

use molt_core::Secret;
use serde_json::Value;
use std::time::Duration;

/// Why a Web API call failed.
#[derive(Debug, thiserror::Error)]
pub enum SlackApiError {
    /// Slack refused the call (`ok: false`), such as `invalid_auth` or `channel_not_found`.
    #[error("{method}: {error}")]
    Refused {
        /// The method called.
        method: String,
        /// Slack's error code.
        error: String,
    },
    /// Still rate limited after the last attempt.
    #[error("{method}: rate limited, retry after {retry_after:?}")]
    RateLimited {
        /// The method called.
        method: String,
        /// What Slack asked for.
        retry_after: Duration,
    },
    /// The request did not complete (connection, timeout, unreadable answer).
    #[error("{method}: {reason}")]
    Transport {
        /// The method called.
        method: String,
        /// What failed.
        reason: String,
    },
}

/// Attempts per call; 429 waits count.
const MAX_ATTEMPTS: usize = 4;

/// The host Slack serves files from.
const FILE_HOSTS: [&str; 1] = ["files.slack.com"];

/// A Web API client.
#[derive(Clone)]
pub struct WebApi {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl WebApi {
    /// A client for `base` (`https://slack.com/api`); `timeout` bounds each attempt.
    pub fn new(http: reqwest::Client, base: &str, timeout: Duration) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// A request for a file's `url_private` with `token`, when it is on
    /// Slack's file host (or the configured API base's host): the token
    /// never goes anywhere else.
    pub(crate) fn file_request(
        &self,
        url: &str,
        token: &Secret,
    ) -> Option<reqwest::RequestBuilder> {
        let url = url::Url::parse(url).ok()?;
        crate::http::is_platform_url(&url, &FILE_HOSTS, &self.base).then(|| {
            self.http
                .get(url)
                .bearer_auth(token.expose())
                .timeout(self.timeout * 6)
        })
    }

    /// Calls `method` with `token` and a JSON `body`; returns the whole answer.
    pub async fn call(
        &self,
        method: &str,
        token: &Secret,
        body: &Value,
    ) -> Result<Value, SlackApiError> {
        let body = body.to_string();
        self.request(method, token, |request| {
            request
                .header("content-type", "application/json; charset=utf-8")
                .body(body.clone())
        })
        .await
    }

    /// Calls a method that takes form fields, as Slack's read methods
    /// (`conversations.history`) do; returns the whole answer.
    pub async fn call_form(
        &self,
        method: &str,
        token: &Secret,
        fields: &[(&str, &str)],
    ) -> Result<Value, SlackApiError> {
        self.request(method, token, |request| request.form(fields))
            .await
    }

    async fn request(
        &self,
        method: &str,
        token: &Secret,
        with_body: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Value, SlackApiError> {
        let transport = |reason: String| SlackApiError::Transport {
            method: method.to_owned(),
            reason,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self
                .http
                .post(format!("{}/{method}", self.base))
                .bearer_auth(token.expose());
            let response = with_body(request)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|err| transport(molt_core::error::chain(&err)))?;
            if response.status().as_u16() == 429 {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                tracing::warn!(method, ?retry_after, "slack: rate limited");
                if attempt == MAX_ATTEMPTS {
                    return Err(SlackApiError::RateLimited {
                        method: method.to_owned(),
                        retry_after,
                    });
                }
                tokio::time::sleep(retry_after).await;
                continue;
            }
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|err| transport(molt_core::error::chain(&err)))?;
            let answer: Value = serde_json::from_slice(&bytes)
                .map_err(|err| transport(format!("HTTP {status}: unreadable answer ({err})")))?;
            if answer["ok"].as_bool() == Some(true) {
                return Ok(answer);
            }
            return Err(SlackApiError::Refused {
                method: method.to_owned(),
                error: answer["error"]
                    .as_str()
                    .unwrap_or("unknown_error")
                    .to_owned(),
            });
        }
    }
}
