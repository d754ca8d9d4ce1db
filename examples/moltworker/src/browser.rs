//! The browser side of the gateway: the agent's web tools and the
//! authenticated `/cdp` endpoint, under one egress policy. Each starts its
//! own browser lazily, so a `/cdp` client never sees the agent's pages, and
//! a locally launched `/cdp` browser sends every connection through the
//! egress proxy.
//!
//! - `MOLT_BROWSER`: unset starts a local Chromium on first use when one is
//!   installed; `off` disables the browser; a `ws://`, `wss://` or `http://`
//!   URL connects to a running browser; anything else is a Chromium binary.
//! - `CDP_SECRET`: the secret `/cdp` requires (503 without it).
//! - `MOLT_EGRESS_ALLOW_HOSTS`, `MOLT_EGRESS_DENY_HOSTS` (comma-separated,
//!   `*.example.com` for subdomains) and `MOLT_EGRESS_ALLOW_NETWORKS` (CIDRs
//!   such as `10.0.0.0/8`, for private addresses the tools may reach).

use axum::Router;
use molt_browser::egress::{EgressPolicy, IpNet};
use molt_browser::launch::LaunchOptions;
use molt_browser::{BrowserSource, CdpEndpoint, SharedBrowser, Timeouts, ToolOptions, WebTools};
use molt_core::Secret;
use molt_core::tool::ToolRegistry;
use std::path::PathBuf;
use std::sync::Arc;

/// The browser (if any) and the policy its tools obey.
pub struct BrowserSetup {
    /// The agent's browser, started on first use.
    pub browser: Option<Arc<SharedBrowser>>,
    /// The `/cdp` endpoint's browser, started on first use: policed as a
    /// whole when launched here.
    pub cdp_browser: Option<Arc<SharedBrowser>>,
    /// The egress policy of every web tool.
    pub policy: Arc<EgressPolicy>,
    /// The `/cdp` secret.
    pub cdp_secret: Option<Secret>,
}

impl BrowserSetup {
    /// Reads the setup from the environment (`env` looks a variable up).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let source = match env("MOLT_BROWSER").as_deref().map(str::trim) {
            Some("off") => None,
            Some(url) if url.contains("://") => {
                tracing::warn!(
                    "MOLT_BROWSER is a remote browser: the tools' pages are checked request by \
                     request only; WebSockets, pop-ups and the names it resolves itself pass \
                     unchecked (a local Chromium has none of these gaps)"
                );
                Some(BrowserSource::Connect {
                    url: url.to_owned(),
                    timeouts: Timeouts::default(),
                })
            }
            Some(path) if !path.is_empty() => Some(BrowserSource::Launch(LaunchOptions {
                executable: Some(PathBuf::from(path)),
                ..LaunchOptions::default()
            })),
            _ => {
                let options = LaunchOptions::default();
                options
                    .find_executable()
                    .is_some()
                    .then_some(BrowserSource::Launch(options))
            }
        };
        let list = |name: &str| -> Vec<String> {
            env(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut policy = EgressPolicy::default();
        for host in list("MOLT_EGRESS_ALLOW_HOSTS") {
            policy = policy.allow_host(&host);
        }
        for host in list("MOLT_EGRESS_DENY_HOSTS") {
            policy = policy.deny_host(&host);
        }
        for network in list("MOLT_EGRESS_ALLOW_NETWORKS") {
            let network: IpNet = network
                .parse()
                .map_err(|_| format!("MOLT_EGRESS_ALLOW_NETWORKS: {network:?} is not a CIDR"))?;
            policy = policy.allow_network(network);
        }
        let policy = Arc::new(policy);
        let cdp_secret = env("CDP_SECRET").filter(|s| !s.is_empty()).map(Secret::new);
        // Only a browser launched here can be given the egress proxy and kept
        // apart from the agent's pages; a remote one is not offered at /cdp.
        let cdp_browser = match (&source, &cdp_secret) {
            (Some(source @ BrowserSource::Launch(_)), Some(_)) => Some(Arc::new(
                SharedBrowser::policed(source.clone(), policy.clone()),
            )),
            (Some(BrowserSource::Connect { .. }), Some(_)) => {
                tracing::warn!(
                    "CDP_SECRET is set but MOLT_BROWSER is a remote browser: /cdp is off, since a                      remote browser can be neither policed as a whole nor kept apart from the                      agent's pages"
                );
                None
            }
            _ => None,
        };
        Ok(Self {
            browser: source.map(|source| Arc::new(SharedBrowser::new(source))),
            cdp_browser,
            policy,
            cdp_secret: env("CDP_SECRET").filter(|s| !s.is_empty()).map(Secret::new),
        })
    }

    /// Registers the web tools (`web_fetch` always; the browser tools when
    /// there is a browser).
    pub fn register_tools(&self, tools: &mut ToolRegistry) -> Result<(), String> {
        let web = WebTools::new(
            self.browser.clone(),
            self.policy.clone(),
            ToolOptions::default(),
        )
        .map_err(|err| err.to_string())?;
        for tool in web.all() {
            tools.register(tool).map_err(|err| err.to_string())?;
        }
        Ok(())
    }

    /// The `/cdp` routes.
    pub fn cdp_routes(&self) -> Router {
        CdpEndpoint::new(self.cdp_secret.clone(), self.cdp_browser.clone()).router()
    }
}
