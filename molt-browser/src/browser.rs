//! A browser: a local Chromium this process started, or a remote CDP
//! endpoint; and the pages (tabs) opened in it.

use crate::connection::Connection;
use crate::egress::EgressPolicy;
use crate::error::CdpError;
use crate::launch::{ChromiumProcess, LaunchOptions};
use crate::page::Page;
use crate::proxy::{EgressProxy, PROXY_LOOPBACK};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How long the egress proxy waits for a connection to a checked address.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait for a remote endpoint, and for each command.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Opening the WebSocket (and the `/json/version` request).
    pub connect: Duration,
    /// Each CDP command.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            command: Duration::from_secs(30),
        }
    }
}

/// What `Browser.getVersion` reports.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrowserVersion {
    /// The DevTools protocol version, such as `1.3`.
    pub protocol_version: String,
    /// The product, such as `HeadlessChrome/156.0.8078.79`.
    pub product: String,
    /// The browser's default user agent.
    pub user_agent: String,
    /// The V8 version.
    pub js_version: String,
}

/// A connected browser.
///
/// A launched browser is ended (its whole process group, and its temporary
/// profile removed) when this handle drops.
pub struct Browser {
    connection: Arc<Connection>,
    http_url: Option<Url>,
    process: Option<ChromiumProcess>,
    /// Kept for [`Browser::relaunch`], even after a failed relaunch.
    launch_options: Option<LaunchOptions>,
    /// For a browser launched with [`Browser::launch_policed`]: its policy,
    /// and the proxy every one of its connections goes through.
    egress: Option<(Arc<EgressPolicy>, EgressProxy)>,
}

impl Browser {
    /// Connects to a browser's WebSocket URL (`ws://…/devtools/browser/…`, or
    /// a remote CDP endpoint such as Cloudflare Browser Rendering's).
    pub async fn connect(ws_url: &str, timeouts: Timeouts) -> Result<Self, CdpError> {
        let connection = Connection::connect(ws_url, timeouts.connect, timeouts.command).await?;
        Ok(Self {
            connection: Arc::new(connection),
            http_url: None,
            process: None,
            launch_options: None,
            egress: None,
        })
    }

    /// Finds the WebSocket URL from a browser's HTTP endpoint
    /// (`http://127.0.0.1:9222` serves `/json/version`) and connects to it.
    pub async fn discover(http_url: &str, timeouts: Timeouts) -> Result<Self, CdpError> {
        let ws_url = discover_ws_url(http_url, timeouts.connect).await?;
        let mut browser = Self::connect(&ws_url, timeouts).await?;
        browser.http_url = Url::parse(http_url).ok();
        Ok(browser)
    }

    /// Starts a local Chromium and connects to it.
    pub async fn launch(options: LaunchOptions) -> Result<Self, CdpError> {
        let (process, ws_url) = ChromiumProcess::start(&options).await?;
        let timeouts = Timeouts {
            connect: options.startup_timeout,
            command: options.command_timeout,
        };
        let connection = Connection::connect(&ws_url, timeouts.connect, timeouts.command).await?;
        let browser = Self {
            connection: Arc::new(connection),
            http_url: http_url_of(&ws_url),
            process: Some(process),
            launch_options: Some(options),
            egress: None,
        };
        browser.deny_downloads(None).await;
        Ok(browser)
    }

    /// Starts a local Chromium whose every connection, in every browser
    /// context (the default one, contexts created later, pop-ups, frames,
    /// workers, WebSockets), goes through an egress proxy in this process
    /// that applies `policy`: it checks each host, resolves it itself and
    /// connects only to addresses it checked. Loopback is proxied too, and
    /// WebRTC sends no UDP unless `options.webrtc_udp`. A browser context
    /// created with a `proxyServer` of its own escapes it: the `/cdp` relay
    /// never lets a client ask for one.
    pub async fn launch_policed(
        mut options: LaunchOptions,
        policy: Arc<EgressPolicy>,
    ) -> Result<Self, CdpError> {
        let proxy = EgressProxy::start(policy.clone(), PROXY_CONNECT_TIMEOUT).await?;
        options.proxy_server = Some(proxy.server());
        let mut browser = Self::launch(options).await?;
        browser.egress = Some((policy, proxy));
        Ok(browser)
    }

    /// Ends a launched browser (if still running) and starts a fresh one with
    /// the same options. Pages of the old browser answer with
    /// [`CdpError::Closed`] from then on.
    pub async fn relaunch(&mut self) -> Result<(), CdpError> {
        let Some(options) = self.launch_options.clone() else {
            return Err(CdpError::Launch(
                "only a browser started by launch() can be relaunched".into(),
            ));
        };
        // End the old browser before starting the new one.
        self.process = None;
        // The policy stays with the handle, even if this launch fails.
        let policy = self.egress.as_ref().map(|(policy, _)| policy.clone());
        *self = match policy {
            Some(policy) => Self::launch_policed(options, policy).await?,
            None => Self::launch(options).await?,
        };
        Ok(())
    }

    /// The connection, to send any CDP command.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The browser-level WebSocket URL.
    pub fn ws_url(&self) -> &str {
        self.connection.url()
    }

    /// The browser's HTTP endpoint (for `/json/version` and `/json/list`):
    /// known for a launched or discovered browser.
    pub fn http_url(&self) -> Option<&Url> {
        self.http_url.as_ref()
    }

    /// The process id of a launched browser (also its process group).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChromiumProcess::pid)
    }

    /// The temporary profile directory of a launched browser.
    pub fn profile_dir(&self) -> Option<&Path> {
        self.process.as_ref().map(ChromiumProcess::profile)
    }

    /// Whether the connection is still open (false once the browser exited,
    /// crashed, or was killed).
    pub fn is_connected(&self) -> bool {
        self.connection.is_open()
    }

    /// The browser's version.
    pub async fn version(&self) -> Result<BrowserVersion, CdpError> {
        let version = self
            .connection
            .call("Browser.getVersion", json!({}), None)
            .await?;
        serde_json::from_value(version).map_err(|err| CdpError::UnexpectedResponse(err.to_string()))
    }

    /// Opens a new page (tab) in the browser's default context, which shares
    /// cookies and storage with other such pages.
    pub async fn new_page(&self) -> Result<Page, CdpError> {
        self.open_page(None).await
    }

    /// Opens a new page in a fresh browser context of its own: no cookies,
    /// storage or cache shared with any other page. The context is disposed
    /// of when the page closes.
    pub async fn new_isolated_page(&self) -> Result<Page, CdpError> {
        let context_id = self
            .create_context(json!({ "disposeOnDetach": true }))
            .await?;
        self.open_page(Some(context_id)).await
    }

    /// Opens a new page in a fresh browser context of its own whose every
    /// request passes `policy` (see [`Page::enforce_egress`]); navigations it
    /// refuses fail with [`CdpError::Egress`].
    ///
    /// In a launched browser the whole context (frames of other sites,
    /// workers, pop-ups, WebSockets, whatever opens a connection) also goes
    /// through a proxy in this process that checks each host, resolves it
    /// itself and connects only to the addresses it checked, so a name
    /// cannot be rebound to a private address after its check. A connection
    /// only the proxy refuses answers `403` with the reason. A browser
    /// reached with [`Browser::connect`] or [`Browser::discover`] may not
    /// reach this process, so it gets the request checks only.
    pub async fn new_policed_page(&self, policy: Arc<EgressPolicy>) -> Result<Page, CdpError> {
        let mut context = json!({ "disposeOnDetach": true });
        let proxy = match self.process {
            Some(_) => {
                let proxy = EgressProxy::start(policy.clone(), PROXY_CONNECT_TIMEOUT).await?;
                context["proxyServer"] = json!(proxy.server());
                context["proxyBypassList"] = json!(PROXY_LOOPBACK);
                Some(proxy)
            }
            None => None,
        };
        let context_id = self.create_context(context).await?;
        let mut page = self.open_page(Some(context_id)).await?;
        page.enforce_egress(policy).await?;
        if let Some(proxy) = proxy {
            page.keep_proxy(proxy);
        }
        Ok(page)
    }

    async fn create_context(&self, params: serde_json::Value) -> Result<String, CdpError> {
        let context = self
            .connection
            .call("Target.createBrowserContext", params, None)
            .await?;
        let context_id = string_field(&context, "browserContextId")?;
        self.deny_downloads(Some(&context_id)).await;
        Ok(context_id)
    }

    /// Makes a context (`None`: the default one) refuse downloads, which
    /// would otherwise be written to the user's download folder. A client
    /// that wants them sets `Browser.setDownloadBehavior` itself.
    async fn deny_downloads(&self, context_id: Option<&str>) {
        let mut params = json!({ "behavior": "deny" });
        if let Some(context_id) = context_id {
            params["browserContextId"] = json!(context_id);
        }
        let denied = self
            .connection
            .call("Browser.setDownloadBehavior", params, None)
            .await;
        if let Err(err) = denied {
            tracing::warn!(%err, "the browser may save downloads: refusing them failed");
        }
    }

    async fn open_page(&self, context_id: Option<String>) -> Result<Page, CdpError> {
        let mut params = json!({ "url": "about:blank" });
        if let Some(context_id) = &context_id {
            params["browserContextId"] = json!(context_id);
        }
        let created = self
            .connection
            .call("Target.createTarget", params, None)
            .await?;
        let target_id = string_field(&created, "targetId")?;
        let attached = self
            .connection
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
                None,
            )
            .await?;
        let session_id = string_field(&attached, "sessionId")?;
        Page::attach(self.connection.clone(), target_id, session_id, context_id).await
    }

    /// Asks the browser to close, then ends a launched browser's processes.
    pub async fn close(self) -> Result<(), CdpError> {
        let closing = self
            .connection
            .call_within("Browser.close", json!({}), None, Duration::from_secs(5))
            .await;
        match closing {
            Ok(_) | Err(CdpError::Closed { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// Reads a string field of a CDP answer.
pub(crate) fn string_field(value: &serde_json::Value, field: &str) -> Result<String, CdpError> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CdpError::UnexpectedResponse(format!("no {field} in {value}")))
}

/// `ws://host:port/devtools/…` → `http://host:port/` (`wss` → `https`).
fn http_url_of(ws_url: &str) -> Option<Url> {
    let mut url = Url::parse(ws_url).ok()?;
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    url.set_path("/");
    url.set_query(None);
    Some(url)
}

/// Asks `/json/version` for the browser's WebSocket URL.
pub async fn discover_ws_url(http_url: &str, timeout: Duration) -> Result<String, CdpError> {
    #[derive(Deserialize)]
    struct Version {
        #[serde(rename = "webSocketDebuggerUrl")]
        ws_url: String,
    }
    // Errors name the endpoint without credentials or query, which may hold a secret.
    let base = Url::parse(http_url)
        .map_err(|err| CdpError::Http(format!("the endpoint URL does not parse: {err}")))?;
    let url = base
        .join("json/version")
        .map_err(|err| CdpError::Http(err.to_string()))?;
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    let client = crate::http::plain_client(timeout).map_err(CdpError::Http)?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| CdpError::Http(format!("{shown}: {}", err.without_url())))?;
    if !response.status().is_success() {
        return Err(CdpError::Http(format!(
            "{shown}: HTTP {}",
            response.status()
        )));
    }
    let version: Version = response
        .json()
        .await
        .map_err(|err| CdpError::UnexpectedResponse(format!("{shown}: {}", err.without_url())))?;
    Ok(version.ws_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_endpoint_is_derived_from_the_websocket_url() {
        let http = http_url_of("ws://127.0.0.1:9222/devtools/browser/abc").unwrap();
        assert_eq!(http.as_str(), "http://127.0.0.1:9222/");
    }
}
