//! A small Bot API client: one method call is one HTTPS POST with a JSON
//! body, answered by an envelope that says `ok` or why not.

use super::types::Envelope;
use molt_core::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a Bot API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Telegram refused the call (`ok: false`).
    #[error("{method}: {code} {description}")]
    Refused {
        /// The method called.
        method: String,
        /// The error code (the HTTP status).
        code: u16,
        /// Telegram's description, such as `Bad Request: chat not found`.
        description: String,
        /// Flood control: how long to wait before calling again.
        retry_after: Option<Duration>,
        /// The group became this supergroup: send there instead.
        migrate_to_chat_id: Option<i64>,
    },
    /// The request did not complete (connection, timeout, unreadable answer).
    #[error("{method}: {reason}")]
    Transport {
        /// The method called.
        method: String,
        /// What failed (never the URL: it holds the token).
        reason: String,
    },
}

impl ApiError {
    /// The error code Telegram gave, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            Self::Transport { .. } => None,
        }
    }

    /// Telegram's description, if it answered.
    pub fn description(&self) -> &str {
        match self {
            Self::Refused { description, .. } => description,
            Self::Transport { reason, .. } => reason,
        }
    }
}

/// Calls Bot API methods for one bot.
#[derive(Clone)]
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi").field("base", &self.base).finish()
    }
}

impl BotApi {
    /// A client for the bot with `token` at `base` (`https://api.telegram.org`,
    /// or a local Bot API server or test double).
    pub fn new(http: reqwest::Client, base: &str, token: Secret) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Calls `method` with `params`; `timeout` bounds the whole request.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &impl Serialize,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let transport = |reason: String| ApiError::Transport {
            method: method.to_string(),
            reason,
        };
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let body = serde_json::to_vec(params).map_err(|err| transport(err.to_string()))?;
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            // `without_url`: the URL holds the token.
            .map_err(|err| transport(molt_core::error::chain(&err.without_url())))?;
        let status = response.status().as_u16();
        let header_retry = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let body = response
            .bytes()
            .await
            .map_err(|err| transport(molt_core::error::chain(&err.without_url())))?;
        let envelope: Envelope<T> = serde_json::from_slice(&body)
            .map_err(|err| transport(format!("HTTP {status}: unreadable answer ({err})")))?;
        match envelope {
            Envelope {
                ok: true,
                result: Some(result),
                ..
            } => Ok(result),
            envelope => {
                let parameters = envelope.parameters.unwrap_or_default();
                Err(ApiError::Refused {
                    method: method.to_string(),
                    code: envelope.error_code.unwrap_or(status),
                    description: envelope
                        .description
                        .unwrap_or_else(|| format!("HTTP {status}")),
                    retry_after: parameters
                        .retry_after
                        .or(header_retry)
                        .map(Duration::from_secs),
                    migrate_to_chat_id: parameters.migrate_to_chat_id,
                })
            }
        }
    }

    /// A request for a file by its `file_path` (from `getFile`). The URL
    /// holds the token: send it only through a path that never logs or shows it.
    pub(crate) fn file_request(
        &self,
        file_path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}/file/bot{}/{file_path}", self.base, self.token.expose());
        self.http.get(url).timeout(timeout)
    }
}
