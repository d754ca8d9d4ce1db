//! The gateway's typed errors, and the HTTP status each one answers with.

use molt_core::model::ModelError;
use std::fmt;
use std::time::Duration;

/// Which time limit a call ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// No output arrived within the time-to-first-token limit.
    FirstToken,
    /// One attempt (including its stream) took too long.
    Attempt,
    /// The call as a whole, retries included, took too long.
    Total,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::FirstToken => "time to first token",
            TimeoutKind::Attempt => "attempt",
            TimeoutKind::Total => "request",
        })
    }
}

/// A spending period with its own cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetPeriod {
    /// A UTC day.
    Daily,
    /// A UTC calendar month.
    Monthly,
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Monthly => "monthly",
        })
    }
}

/// Why a call through the gateway failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GatewayError {
    /// The provider answered with an error status (or an error event in a stream).
    #[error("{provider} answered {status} ({error_type}): {message}")]
    Upstream {
        /// The provider's name.
        provider: String,
        /// The HTTP status (Anthropic's `overloaded_error` is 529).
        status: u16,
        /// The provider's error type, such as `rate_limit_error`.
        error_type: String,
        /// The provider's message.
        message: String,
        /// How long the provider asked to wait, from `retry-after`.
        retry_after: Option<Duration>,
    },
    /// The provider refused the gateway's own credentials (HTTP 401 or 403).
    #[error("{provider} refused the gateway's credentials ({status})")]
    ProviderAuth {
        /// The provider's name.
        provider: String,
        /// Its status.
        status: u16,
    },
    /// A time limit ran out.
    #[error("{0} timed out")]
    Timeout(TimeoutKind),
    /// The connection failed or broke.
    #[error("connection to {provider} failed: {message}")]
    Connection {
        /// The provider's name.
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// The provider's answer broke its own protocol.
    #[error("{provider} broke the protocol: {message}")]
    Protocol {
        /// The provider's name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// A gateway rate limit refused the call.
    #[error("rate limit {limit} reached; retry in {retry_after:?}")]
    RateLimited {
        /// The limit's name.
        limit: String,
        /// When a call would be accepted again.
        retry_after: Duration,
    },
    /// A spending cap is reached.
    #[error("the {period} budget of ${cap_usd:.2} is spent")]
    BudgetExceeded {
        /// Which cap.
        period: BudgetPeriod,
        /// The cap in US dollars.
        cap_usd: f64,
        /// When the period ends.
        retry_after: Duration,
    },
    /// No route or provider serves this model.
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    /// A budget is set and this model has no price, so its spending could
    /// not be counted.
    #[error(
        "model {0:?} has no price and a budget is set: add its price under [prices] (or budget.default_price)"
    )]
    Unpriced(String),
    /// The request cannot be served as written.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl GatewayError {
    /// Whether trying again (or trying the next fallback step) may help:
    /// 408, 409, 429, 5xx, Anthropic's 529, timeouts and connection errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::Upstream { status, .. } => {
                matches!(status, 408 | 409 | 429) || *status >= 500
            }
            GatewayError::Timeout(_) | GatewayError::Connection { .. } => true,
            _ => false,
        }
    }

    /// Whether another fallback step may answer: a retryable failure, or a
    /// provider that refused the gateway's credentials.
    pub fn is_fallback_eligible(&self) -> bool {
        self.is_retryable() || matches!(self, GatewayError::ProviderAuth { .. })
    }

    /// The HTTP status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::Upstream { status, .. } => *status,
            GatewayError::Timeout(_) => 504,
            GatewayError::Connection { .. }
            | GatewayError::Protocol { .. }
            | GatewayError::ProviderAuth { .. } => 502,
            GatewayError::RateLimited { .. } | GatewayError::BudgetExceeded { .. } => 429,
            GatewayError::UnknownModel(_) => 404,
            GatewayError::Unpriced(_) => 403,
            GatewayError::InvalidRequest(_) => 400,
        }
    }

    /// How long the caller should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Upstream { retry_after, .. } => *retry_after,
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::BudgetExceeded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short label for logs and analytics (`ok` is never returned).
    pub fn label(&self) -> String {
        match self {
            GatewayError::Upstream { status, .. } => status.to_string(),
            GatewayError::Timeout(_) => "timeout".into(),
            GatewayError::ProviderAuth { .. } => "provider_auth".into(),
            GatewayError::Connection { .. } => "connection".into(),
            GatewayError::Protocol { .. } => "protocol".into(),
            GatewayError::RateLimited { .. } => "rate_limited".into(),
            GatewayError::BudgetExceeded { .. } => "budget".into(),
            GatewayError::UnknownModel(_) => "unknown_model".into(),
            GatewayError::Unpriced(_) => "unpriced".into(),
            GatewayError::InvalidRequest(_) => "invalid_request".into(),
        }
    }
}

impl From<GatewayError> for ModelError {
    fn from(error: GatewayError) -> Self {
        let text = error.to_string();
        match error {
            GatewayError::Upstream {
                status: 429,
                retry_after,
                ..
            } => ModelError::RateLimited { retry_after },
            GatewayError::Upstream {
                status: 401 | 403, ..
            } => ModelError::Auth(text),
            GatewayError::Upstream { status, .. } if status < 500 => {
                ModelError::InvalidRequest(text)
            }
            GatewayError::Upstream { .. } | GatewayError::BudgetExceeded { .. } => {
                ModelError::Unavailable(text)
            }
            GatewayError::RateLimited { retry_after, .. } => ModelError::RateLimited {
                retry_after: Some(retry_after),
            },
            GatewayError::Timeout(_) | GatewayError::Connection { .. } => {
                ModelError::Transport(text)
            }
            GatewayError::Protocol { .. } => ModelError::Protocol(text),
            GatewayError::ProviderAuth { .. } => ModelError::Auth(text),
            GatewayError::UnknownModel(_)
            | GatewayError::Unpriced(_)
            | GatewayError::InvalidRequest(_) => ModelError::InvalidRequest(text),
        }
    }
}
