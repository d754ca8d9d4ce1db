//! The errors of the CDP client and of the page operations.

use std::fmt;
use std::time::Duration;

/// What went wrong talking to a browser.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    /// The browser answered a command with a protocol error.
    #[error("{method} failed: {code} ({message})")]
    Protocol {
        /// The command.
        method: String,
        /// The JSON-RPC error code, typed.
        code: ProtocolErrorCode,
        /// The browser's message.
        message: String,
    },
    /// No answer came within the command timeout.
    #[error("{method} got no answer within {after:?}")]
    Timeout {
        /// The command.
        method: String,
        /// How long it waited.
        after: Duration,
    },
    /// The connection to the browser is closed: the browser exited, crashed,
    /// was killed, or the remote endpoint hung up.
    #[error("the browser connection is closed: {reason}")]
    Closed {
        /// What ended it, as far as is known.
        reason: String,
    },
    /// The page's renderer crashed.
    #[error("the page crashed")]
    TargetCrashed,
    /// The page already has an egress policy; a page keeps the one it got.
    #[error("the page already has an egress policy")]
    AlreadyPoliced,
    /// The page was closed (by the browser, a script, or another client)
    /// while waiting on it.
    #[error("the page was closed")]
    PageClosed,
    /// A navigation failed before a document loaded.
    #[error("navigation to {url} failed: {error}")]
    Navigation {
        /// The URL asked for.
        url: String,
        /// Chromium's network error.
        error: NetError,
    },
    /// A navigation did not reach the awaited state in time.
    #[error("navigation to {url} did not reach {wait_until} within {after:?}")]
    NavigationTimeout {
        /// The URL asked for.
        url: String,
        /// The state waited for.
        wait_until: crate::page::WaitUntil,
        /// How long it waited.
        after: Duration,
    },
    /// The egress policy refused a request the page or a tool wanted to make.
    #[error(transparent)]
    Egress(#[from] crate::egress::EgressError),
    /// JavaScript evaluated in the page threw.
    #[error("JavaScript threw: {0}")]
    JavaScript(String),
    /// No element matches a CSS selector.
    #[error("no element matches {0:?}")]
    NoSuchElement(String),
    /// A CSS selector does not parse.
    #[error("invalid CSS selector {selector:?}: {reason}")]
    InvalidSelector {
        /// The selector.
        selector: String,
        /// The browser's complaint.
        reason: String,
    },
    /// A local browser could not be started.
    #[error("could not launch the browser: {0}")]
    Launch(String),
    /// The WebSocket could not be opened or broke.
    #[error("WebSocket to the browser: {0}")]
    WebSocket(String),
    /// An HTTP request (endpoint discovery) failed.
    #[error("HTTP request to the browser failed: {0}")]
    Http(String),
    /// The browser sent something this client could not read.
    #[error("unexpected answer from the browser: {0}")]
    UnexpectedResponse(String),
    /// `ffmpeg` is needed (to assemble a video) but was not found.
    #[error("ffmpeg was not found on PATH (set FFMPEG_PATH); it is needed to assemble a video")]
    FfmpegMissing,
    /// `ffmpeg` ran but failed.
    #[error("ffmpeg failed: {0}")]
    Ffmpeg(String),
    /// A local file operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The JSON-RPC error codes Chromium answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolErrorCode {
    /// `-32000`: the command was understood but failed (the usual CDP error).
    ServerError,
    /// `-32600`: the message was not a valid request.
    InvalidRequest,
    /// `-32601`: no such method (an unknown domain or command).
    MethodNotFound,
    /// `-32602`: the parameters are wrong.
    InvalidParams,
    /// `-32603`: the browser failed internally.
    InternalError,
    /// `-32700`: the message was not JSON.
    ParseError,
    /// Any other code.
    Other(i64),
}

impl From<i64> for ProtocolErrorCode {
    fn from(code: i64) -> Self {
        match code {
            -32000 => Self::ServerError,
            -32600 => Self::InvalidRequest,
            -32601 => Self::MethodNotFound,
            -32602 => Self::InvalidParams,
            -32603 => Self::InternalError,
            -32700 => Self::ParseError,
            other => Self::Other(other),
        }
    }
}

impl ProtocolErrorCode {
    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            Self::ServerError => -32000,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::InternalError => -32603,
            Self::ParseError => -32700,
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for ProtocolErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::ServerError => "server error",
            Self::InvalidRequest => "invalid request",
            Self::MethodNotFound => "method not found",
            Self::InvalidParams => "invalid params",
            Self::InternalError => "internal error",
            Self::ParseError => "parse error",
            Self::Other(_) => "error",
        };
        write!(f, "{name} {}", self.code())
    }
}

/// A Chromium network error, as `Page.navigate` reports it in `errorText`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// `net::ERR_CONNECTION_REFUSED`.
    ConnectionRefused,
    /// `net::ERR_CONNECTION_RESET` or `net::ERR_CONNECTION_CLOSED`.
    ConnectionReset,
    /// `net::ERR_NAME_NOT_RESOLVED`.
    NameNotResolved,
    /// `net::ERR_TIMED_OUT` or `net::ERR_CONNECTION_TIMED_OUT`.
    TimedOut,
    /// `net::ERR_ADDRESS_UNREACHABLE` or `net::ERR_INTERNET_DISCONNECTED`.
    Unreachable,
    /// `net::ERR_BLOCKED_BY_CLIENT`: refused by this client (the egress policy).
    BlockedByClient,
    /// `net::ERR_ABORTED`: the navigation was cancelled (often a download).
    Aborted,
    /// `net::ERR_TOO_MANY_REDIRECTS`.
    TooManyRedirects,
    /// One of the `net::ERR_CERT_*` errors.
    Certificate(String),
    /// `net::ERR_INVALID_URL` or `net::ERR_UNKNOWN_URL_SCHEME`.
    InvalidUrl,
    /// Any other error, as Chromium spelled it.
    Other(String),
}

impl NetError {
    /// Reads Chromium's `errorText`.
    pub fn parse(error_text: &str) -> Self {
        match error_text {
            "net::ERR_CONNECTION_REFUSED" => Self::ConnectionRefused,
            "net::ERR_CONNECTION_RESET" | "net::ERR_CONNECTION_CLOSED" => Self::ConnectionReset,
            "net::ERR_NAME_NOT_RESOLVED" => Self::NameNotResolved,
            "net::ERR_TIMED_OUT" | "net::ERR_CONNECTION_TIMED_OUT" => Self::TimedOut,
            "net::ERR_ADDRESS_UNREACHABLE" | "net::ERR_INTERNET_DISCONNECTED" => Self::Unreachable,
            "net::ERR_BLOCKED_BY_CLIENT" => Self::BlockedByClient,
            "net::ERR_ABORTED" => Self::Aborted,
            "net::ERR_TOO_MANY_REDIRECTS" => Self::TooManyRedirects,
            "net::ERR_INVALID_URL" | "net::ERR_UNKNOWN_URL_SCHEME" => Self::InvalidUrl,
            cert if cert.starts_with("net::ERR_CERT_") => Self::Certificate(cert.to_owned()),
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionRefused => f.write_str("net::ERR_CONNECTION_REFUSED"),
            Self::ConnectionReset => f.write_str("net::ERR_CONNECTION_RESET"),
            Self::NameNotResolved => f.write_str("net::ERR_NAME_NOT_RESOLVED"),
            Self::TimedOut => f.write_str("net::ERR_TIMED_OUT"),
            Self::Unreachable => f.write_str("net::ERR_ADDRESS_UNREACHABLE"),
            Self::BlockedByClient => f.write_str("net::ERR_BLOCKED_BY_CLIENT"),
            Self::Aborted => f.write_str("net::ERR_ABORTED"),
            Self::TooManyRedirects => f.write_str("net::ERR_TOO_MANY_REDIRECTS"),
            Self::InvalidUrl => f.write_str("net::ERR_INVALID_URL"),
            Self::Certificate(text) | Self::Other(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_net_errors_are_typed_both_ways() {
        for code in [-32000, -32600, -32601, -32602, -32603, -32700, -1] {
            assert_eq!(ProtocolErrorCode::from(code).code(), code);
        }
        assert_eq!(
            ProtocolErrorCode::from(-32601),
            ProtocolErrorCode::MethodNotFound
        );
        for text in [
            "net::ERR_CONNECTION_REFUSED",
            "net::ERR_NAME_NOT_RESOLVED",
            "net::ERR_BLOCKED_BY_CLIENT",
            "net::ERR_CERT_DATE_INVALID",
            "net::ERR_SOMETHING_NEW",
        ] {
            assert_eq!(NetError::parse(text).to_string(), text);
        }
        assert_eq!(
            NetError::parse("net::ERR_CERT_DATE_INVALID"),
            NetError::Certificate("net::ERR_CERT_DATE_INVALID".into())
        );
    }
}
