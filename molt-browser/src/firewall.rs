//! What a `/cdp` client may ask of the browser: a CDP method allowlist that
//! Playwright's `connectOverCDP` and Puppeteer's `connect` need, with the
//! parameters that would reach past the egress policy or into the host
//! rewritten or refused.
//!
//! - Whole domains that act inside pages (`Page`, `Runtime`, `DOM`, `Input`,
//!   `Network`, `Fetch`, `Emulation`, ...) are allowed; `Browser` and
//!   `Target` only method by method. Anything else (`SystemInfo`, `Memory`,
//!   `Tethering`, `Extensions`, `PWA`, `Browser.close`,
//!   `Target.exposeDevToolsProtocol`, ...) gets a CDP error.
//! - Navigation (`Page.navigate`, `Target.createTarget`,
//!   `Network.loadNetworkResource`, `Fetch.continueRequest`) is to `http(s)`
//!   URLs the egress policy allows, or `about:blank`: never `file:`,
//!   `chrome:` or another scheme.
//! - Downloads are always denied, whatever the client asks
//!   (`setDownloadBehavior` is answered, with `deny` in effect).
//! - A new browser context never gets a proxy of the client's choosing.
//! - `DOM.setFileInputFiles` is refused: it opens files on the browser's host.
//!
//! The egress of the pages themselves is the browser's proxy's business (see
//! [`Browser::launch_policed`](crate::browser::Browser::launch_policed)): a
//! method filter cannot see what a script in a page asks for.

use crate::egress::EgressPolicy;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use url::Url;

/// Domains whose every method acts inside pages and is allowed.
const ALLOWED_DOMAINS: [&str; 31] = [
    "Accessibility",
    "Animation",
    "Audits",
    "CSS",
    "CacheStorage",
    "Console",
    "DOM",
    "DOMDebugger",
    "DOMSnapshot",
    "DOMStorage",
    "Debugger",
    "Emulation",
    "Fetch",
    "HeadlessExperimental",
    "HeapProfiler",
    "IO",
    "IndexedDB",
    "Input",
    "Inspector",
    "LayerTree",
    "Log",
    "Media",
    "Network",
    "Overlay",
    "Page",
    "Performance",
    "PerformanceTimeline",
    "Profiler",
    "Runtime",
    "Security",
    "Storage",
];

/// `Browser` and `Target` methods the clients use and that stay inside the
/// browser's pages.
const ALLOWED_METHODS: [&str; 23] = [
    "Browser.getVersion",
    "Browser.cancelDownload",
    "Browser.grantPermissions",
    "Browser.resetPermissions",
    "Browser.setPermission",
    "Browser.getWindowForTarget",
    "Browser.getWindowBounds",
    "Browser.setWindowBounds",
    "Browser.setContentsSize",
    "Target.activateTarget",
    "Target.attachToBrowserTarget",
    "Target.attachToTarget",
    "Target.autoAttachRelated",
    "Target.closeTarget",
    "Target.detachFromTarget",
    "Target.disposeBrowserContext",
    "Target.getBrowserContexts",
    "Target.getTargetInfo",
    "Target.getTargets",
    "Target.setAutoAttach",
    "Target.setDiscoverTargets",
    "Tracing.start",
    "Tracing.end",
];

/// The CDP error code for a method the relay does not offer.
const METHOD_REFUSED: i64 = -32601;
/// The CDP error code for parameters the relay refuses.
const PARAMS_REFUSED: i64 = -32000;

/// What to do with one message from a `/cdp` client.
#[derive(Clone, Debug, PartialEq)]
pub enum Inspected {
    /// Send this text on to the browser (the message, or its rewrite).
    Forward(String),
    /// Answer the client with this error response; the browser sees nothing.
    Refuse(String),
}

/// The filter between a `/cdp` client and the browser.
#[derive(Clone, Debug)]
pub struct CdpFirewall {
    policy: Arc<EgressPolicy>,
}

/// What a method needs before it may pass.
enum Rule {
    Allow,
    Refuse(&'static str),
    /// Its `url` parameter (when present) must be allowed.
    CheckUrl,
    /// Downloads stay denied.
    DenyDownloads,
    /// No proxy (or universal network access) of the client's choosing.
    OwnContext,
}

impl CdpFirewall {
    /// A firewall checking URLs against `policy`.
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }

    /// Inspects one text message from the client.
    pub async fn inspect(&self, text: &str) -> Inspected {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Inspected::Refuse(error(&Map::new(), -32700, "not a JSON object"));
        };
        let Some(method) = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Inspected::Refuse(error(&message, -32600, "a request needs a method"));
        };
        if !message.get("id").is_some_and(Value::is_u64) {
            return Inspected::Refuse(error(&message, -32600, "a request needs a numeric id"));
        }
        let params = message.entry("params").or_insert_with(|| json!({}));
        let Some(params) = params.as_object_mut() else {
            return Inspected::Refuse(error(&message, -32602, "params must be an object"));
        };
        match rule(&method) {
            Rule::Allow => return Inspected::Forward(text.to_owned()),
            Rule::Refuse(why) => {
                let reason = format!("{method} is not available through Molt's /cdp: {why}");
                tracing::info!(%method, "refused a /cdp request");
                return Inspected::Refuse(error(&message, METHOD_REFUSED, &reason));
            }
            Rule::CheckUrl => {
                if let Some(url) = params.get("url").and_then(Value::as_str)
                    && let Err(reason) = self.check_url(url).await
                {
                    tracing::info!(%method, "refused a /cdp navigation");
                    let reason = format!("{method}: {reason}");
                    return Inspected::Refuse(error(&message, PARAMS_REFUSED, &reason));
                }
                return Inspected::Forward(text.to_owned());
            }
            Rule::DenyDownloads => {
                params.insert("behavior".into(), json!("deny"));
                params.remove("downloadPath");
            }
            Rule::OwnContext => {
                for field in [
                    "proxyServer",
                    "proxyBypassList",
                    "originsWithUniversalNetworkAccess",
                ] {
                    params.remove(field);
                }
            }
        }
        Inspected::Forward(Value::Object(message).to_string())
    }

    /// `about:blank`, or an `http(s)` URL the egress policy allows (its host
    /// resolved and every address checked).
    async fn check_url(&self, url: &str) -> Result<(), String> {
        if url.is_empty() || url == "about:blank" {
            return Ok(());
        }
        let parsed = Url::parse(url).map_err(|_| "not a valid URL".to_owned())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "only http(s) pages may be opened, not {}:",
                parsed.scheme()
            ));
        }
        self.policy
            .check(&parsed)
            .await
            .map_err(|err| format!("refused by the egress policy: {err}"))
    }
}

fn rule(method: &str) -> Rule {
    match method {
        "Page.navigate"
        | "Target.createTarget"
        | "Network.loadNetworkResource"
        | "Fetch.continueRequest" => Rule::CheckUrl,
        "Browser.setDownloadBehavior" | "Page.setDownloadBehavior" => Rule::DenyDownloads,
        "Target.createBrowserContext" => Rule::OwnContext,
        "DOM.setFileInputFiles" => Rule::Refuse("it opens files on the browser's host"),
        method if ALLOWED_METHODS.contains(&method) => Rule::Allow,
        method => match method.split_once('.') {
            Some((domain, _)) if ALLOWED_DOMAINS.contains(&domain) => Rule::Allow,
            _ => Rule::Refuse("it reaches outside the browser's pages"),
        },
    }
}

/// An error response to `request`, carrying its id and session as clients
/// require (Playwright fails on an error it cannot match to a session).
fn error(request: &Map<String, Value>, code: i64, message: &str) -> String {
    let mut response = json!({
        "id": request.get("id").cloned().unwrap_or(json!(0)),
        "error": { "code": code, "message": message },
    });
    if let Some(session) = request.get("sessionId") {
        response["sessionId"] = session.clone();
    }
    response.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall() -> CdpFirewall {
        CdpFirewall::new(Arc::new(EgressPolicy::default()))
    }

    fn inspect(message: Value) -> Inspected {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(firewall().inspect(&message.to_string()))
    }

    fn refused(inspected: Inspected) -> Value {
        match inspected {
            Inspected::Refuse(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn forwarded(inspected: Inspected) -> Value {
        match inspected {
            Inspected::Forward(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected it forwarded, got {other:?}"),
        }
    }

    #[test]
    fn methods_outside_the_pages_are_refused_with_their_id_and_session() {
        for method in [
            "SystemInfo.getProcessInfo",
            "Browser.close",
            "Browser.getBrowserCommandLine",
            "Target.exposeDevToolsProtocol",
            "Target.sendMessageToTarget",
            "Tethering.bind",
            "Memory.getDOMCounters",
            "DOM.setFileInputFiles",
            "Extensions.loadUnpacked",
            "page.navigate",
        ] {
            let answer = refused(inspect(
                json!({ "id": 7, "sessionId": "S1", "method": method, "params": {} }),
            ));
            assert_eq!(
                (
                    &answer["id"],
                    &answer["sessionId"],
                    &answer["error"]["code"]
                ),
                (&json!(7), &json!("S1"), &json!(METHOD_REFUSED)),
                "{method}"
            );
        }
        for method in [
            "Runtime.evaluate",
            "Target.setAutoAttach",
            "Browser.getVersion",
        ] {
            let message = json!({ "id": 1, "method": method, "params": { "x": 1 } });
            assert_eq!(forwarded(inspect(message.clone())), message);
        }
    }

    #[test]
    fn navigation_stays_on_allowed_http_pages() {
        for url in [
            "file:///etc/hostname",
            "chrome://version",
            "view-source:http://example.com/",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:18789/api/status",
            "http://[::ffff:127.0.0.1]/",
            "javascript:alert(1)",
        ] {
            for method in [
                "Page.navigate",
                "Target.createTarget",
                "Network.loadNetworkResource",
            ] {
                let answer = refused(inspect(
                    json!({ "id": 2, "method": method, "params": { "url": url } }),
                ));
                assert_eq!(answer["error"]["code"], PARAMS_REFUSED, "{method} {url}");
            }
        }
        let blank =
            json!({ "id": 3, "method": "Target.createTarget", "params": { "url": "about:blank" } });
        assert_eq!(forwarded(inspect(blank.clone())), blank);
        let plain =
            json!({ "id": 4, "method": "Fetch.continueRequest", "params": { "requestId": "r" } });
        assert_eq!(forwarded(inspect(plain.clone())), plain);
    }

    #[test]
    fn downloads_stay_denied_and_contexts_keep_the_browsers_proxy() {
        let asked = json!({ "id": 5, "method": "Browser.setDownloadBehavior", "params": {
            "behavior": "allowAndName", "downloadPath": "/state", "eventsEnabled": true } });
        assert_eq!(
            forwarded(inspect(asked))["params"],
            json!({ "behavior": "deny", "eventsEnabled": true })
        );
        let context = json!({ "id": 6, "method": "Target.createBrowserContext", "params": {
            "disposeOnDetach": true, "proxyServer": "direct://", "proxyBypassList": "*" } });
        assert_eq!(
            forwarded(inspect(context))["params"],
            json!({ "disposeOnDetach": true })
        );
    }

    #[test]
    fn malformed_requests_are_answered_not_forwarded() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for text in [
            "not json",
            "[1]",
            r#"{"id":1}"#,
            r#"{"method":"Page.enable"}"#,
            r#"{"id":1,"method":"Page.enable","params":[]}"#,
        ] {
            assert!(
                matches!(
                    runtime.block_on(firewall().inspect(text)),
                    Inspected::Refuse(_)
                ),
                "{text}"
            );
        }
    }
}
