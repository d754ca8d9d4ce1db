//! Who may reach each path of the gateway: one table, which the container
//! (moltworker) applies to its routes and the Worker applies at the edge.
//!
//! ```
//! use molt_core::routes::{Guard, guard};
//! assert_eq!(guard("/api/admin/devices"), Guard::Operator);
//! assert_eq!(guard("/health"), Guard::Public);
//! ```

/// What a request to a path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Nothing: liveness, and pages that hold no secret.
    Public,
    /// The operator: a valid Cloudflare Access token when Access is
    /// configured, else the gateway token. Never open.
    Operator,
    /// The `/cdp` secret, checked in constant time.
    CdpSecret,
    /// The gateway protocol, whose handshake admits the client (the gateway
    /// token or a paired device); the Control UI page at `/` holds no secret.
    Protocol,
    /// A chat platform's webhook (under [`WEBHOOKS`]), which checks the
    /// platform's secret token or request signature itself.
    Webhook,
}

/// Where chat platforms deliver: `/hooks/<channel>`.
pub const WEBHOOKS: &str = "/hooks";

/// The paths that are the operator's: exactly, or as a prefix followed by `/`.
pub const OPERATOR_PATHS: [&str; 4] = ["/_admin", "/api", "/debug", "/metrics"];

/// The guard of `path` (the request's path, without its query).
pub fn guard(path: &str) -> Guard {
    let under = |root: &str| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if OPERATOR_PATHS.iter().any(|root| under(root)) {
        return Guard::Operator;
    }
    match path {
        "/" | "/ws" => Guard::Protocol,
        _ if under("/cdp") => Guard::CdpSecret,
        _ if under(WEBHOOKS) => Guard::Webhook,
        _ => Guard::Public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_path_is_guarded_and_nothing_else_by_accident() {
        for path in [
            "/_admin",
            "/_admin/",
            "/_admin/x",
            "/api",
            "/api/status",
            "/api/admin/devices",
            "/debug/logs",
            "/debug",
            "/metrics",
        ] {
            assert_eq!(guard(path), Guard::Operator, "{path}");
        }
        for path in [
            "/health",
            "/sandbox-health",
            "/apis",
            "/metricsx",
            "/_administrator",
        ] {
            assert_eq!(guard(path), Guard::Public, "{path}");
        }
        assert_eq!(guard("/"), Guard::Protocol);
        assert_eq!(guard("/ws"), Guard::Protocol);
        assert_eq!(guard("/cdp"), Guard::CdpSecret);
        assert_eq!(guard("/cdp/json/version"), Guard::CdpSecret);
        assert_eq!(guard("/hooks/telegram"), Guard::Webhook);
        assert_eq!(guard("/hooksx"), Guard::Public);
    }
}
