//! What a `/cdp` client may ask of the browser: a CDP method allowlist that
//! Playwright's `connectOverCDP` and Puppeteer's `connect` need, with the
//! parameters that would reach past the egress policy or into the host
//! rewritten or refused.
//!
//! - Each message is parsed as a request (`id`, `method`, `sessionId`,
//!   `params`, each at most once, nothing else) and sent on as parsed, so
//!   the browser never reads anything the firewall did not.
//! - Whole domains that act inside pages (`Page`, `Runtime`, `DOM`,
//!   `Network`, `Fetch`, `Emulation`, ...) are allowed; `Browser`, `Target`,
//!   `Input`, `Storage` and `Tracing` only method by method. Anything else
//!   (`SystemInfo`, `Memory`, `Tethering`, `Extensions`, `PWA`,
//!   `Browser.close`, `Target.exposeDevToolsProtocol`, ...) gets a CDP error.
//! - Navigation (`Page.navigate`, `Target.createTarget`,
//!   `Network.loadNetworkResource`, `Fetch.continueRequest`) is to `http(s)`
//!   URLs the egress policy's host lists allow (and, for literal addresses
//!   and `localhost`, its address rules), or `about:blank`: never `file:`,
//!   `chrome:` or another scheme.
//! - Downloads are always denied, whatever the client asks
//!   (`setDownloadBehavior` is answered, with `deny` in effect), and in every
//!   context a client creates (the relay denies them before it answers).
//! - A new browser context never gets a proxy of the client's choosing.
//! - Nothing opens files on the browser's host: `DOM.setFileInputFiles` is
//!   refused, and `Input.dispatchDragEvent` may carry no files.
//!
//! The egress of the pages themselves is the browser's proxy's business (see
//! [`Browser::launch_policed`](crate::browser::Browser::launch_policed)): a
//! method filter cannot see what a script in a page asks for, nor where a
//! name resolves.

use crate::egress::EgressPolicy;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use url::{Host, Url};

/// Domains whose every method acts inside pages and is allowed.
const ALLOWED_DOMAINS: [&str; 29] = [
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
];

/// Methods allowed one by one, in domains that also hold methods reaching
/// outside the pages (or taking paths on the browser's host).
const ALLOWED_METHODS: [&str; 39] = [
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
    "Tracing.end",
    "Tracing.getCategories",
    "Input.cancelDragging",
    "Input.dispatchKeyEvent",
    "Input.dispatchMouseEvent",
    "Input.dispatchTouchEvent",
    "Input.emulateTouchFromMouseEvent",
    "Input.imeSetComposition",
    "Input.insertText",
    "Input.setIgnoreInputEvents",
    "Input.setInterceptDrags",
    "Input.synthesizePinchGesture",
    "Input.synthesizeScrollGesture",
    "Input.synthesizeTapGesture",
    "Storage.getCookies",
    "Storage.setCookies",
    "Storage.clearCookies",
    "Storage.clearDataForOrigin",
];

/// Methods refused although their domain is allowed.
const REFUSED_IN_ALLOWED_DOMAINS: [(&str, &str); 3] = [
    (
        "DOM.setFileInputFiles",
        "it opens files on the browser's host",
    ),
    ("Page.addCompilationCache", "it feeds code caches to V8"),
    ("Page.produceCompilationCache", "it feeds code caches to V8"),
];

/// Ids from this number up are the relay's own requests to the browser; a
/// client's ids stay below it.
pub const RELAY_ID_BASE: u64 = 2_000_000_000;

/// The CDP error code for a method the relay does not offer.
const METHOD_REFUSED: i64 = -32601;
/// The CDP error code for parameters the relay refuses.
const PARAMS_REFUSED: i64 = -32000;
/// The CDP error code for a message that is not a request.
const INVALID_REQUEST: i64 = -32600;

/// What to do with one message from a `/cdp` client.
#[derive(Clone, Debug, PartialEq)]
pub enum Inspected {
    /// Send this text on to the browser (the request as parsed, rewritten
    /// where the rules say).
    Forward(String),
    /// Send this on, a `Target.createBrowserContext` with this session (empty
    /// for the browser's own) and id: the relay denies downloads in the new
    /// context before its answer reaches the client.
    ForwardContext(String, String, u64),
    /// Answer the client with this error response; the browser sees nothing.
    Refuse(String),
}

/// The filter between a `/cdp` client and the browser.
#[derive(Clone, Debug)]
pub struct CdpFirewall {
    policy: Arc<EgressPolicy>,
}

/// A request as a client sends it: only these fields, each once (a
/// duplicate is refused, so the browser can never read another one).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<'a> {
    id: u64,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// A request as the relay sends it on.
#[derive(Serialize)]
struct Outgoing<'a> {
    id: u64,
    method: &'a str,
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    params: &'a RawValue,
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
    /// A drag may carry no files (Chromium would read them from its host).
    NoFiles,
    /// Traces stay in the browser (no system tracing backend or Perfetto config).
    InBrowserTrace,
}

#[derive(Deserialize)]
struct UrlParam {
    url: Option<String>,
}

#[derive(Deserialize)]
struct DragParams {
    data: Option<DragData>,
}

#[derive(Deserialize)]
struct DragData {
    files: Option<Vec<Value>>,
}

impl CdpFirewall {
    /// A firewall checking URLs against `policy`.
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }

    /// Inspects one text message from the client. Synchronous: it never
    /// waits on the network, so it never holds back the messages behind it.
    pub fn inspect(&self, text: &str) -> Inspected {
        let request: Request = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(err) => {
                let id = lenient_id(text);
                let reason = format!("not a CDP request ({err})");
                return Inspected::Refuse(error(id, None, INVALID_REQUEST, &reason));
            }
        };
        let session = request.session_id.as_deref();
        let refuse =
            |code, reason: &str| Inspected::Refuse(error(request.id, session, code, reason));
        if request.id >= RELAY_ID_BASE {
            return refuse(INVALID_REQUEST, "request ids must be below 2000000000");
        }
        let method = request.method.as_ref();
        if !is_method_name(method) {
            return refuse(METHOD_REFUSED, "not a CDP method name");
        }
        let empty = RawValue::from_string("{}".into()).expect("{} is JSON");
        let params = request.params.unwrap_or(&empty);
        if !params.get().trim_start().starts_with('{') {
            return refuse(PARAMS_REFUSED, "params must be an object");
        }
        let rewritten = match rule(method) {
            Rule::Allow => None,
            Rule::Refuse(why) => {
                tracing::info!(%method, "refused a /cdp request");
                let reason = format!("{method} is not available through Molt's /cdp: {why}");
                return refuse(METHOD_REFUSED, &reason);
            }
            Rule::CheckUrl => {
                let url = serde_json::from_str::<UrlParam>(params.get()).map(|p| p.url);
                match url {
                    Ok(Some(url)) => {
                        if let Err(reason) = self.check_url(&url) {
                            tracing::info!(%method, "refused a /cdp navigation");
                            return refuse(PARAMS_REFUSED, &format!("{method}: {reason}"));
                        }
                    }
                    Ok(None) => {}
                    Err(_) => {
                        return refuse(
                            PARAMS_REFUSED,
                            "params must be an object with a string url",
                        );
                    }
                }
                None
            }
            Rule::NoFiles => {
                let files = serde_json::from_str::<DragParams>(params.get())
                    .map(|p| p.data.and_then(|d| d.files).unwrap_or_default());
                match files {
                    Ok(files) if files.is_empty() => None,
                    _ => {
                        return refuse(
                            PARAMS_REFUSED,
                            &format!("{method}: a drag may carry no files through Molt's /cdp"),
                        );
                    }
                }
            }
            rule @ (Rule::DenyDownloads | Rule::OwnContext | Rule::InBrowserTrace) => {
                let Ok(mut object) = serde_json::from_str::<Map<String, Value>>(params.get())
                else {
                    return refuse(PARAMS_REFUSED, "params must be an object");
                };
                match rule {
                    Rule::DenyDownloads => {
                        object.insert("behavior".into(), json!("deny"));
                        object.remove("downloadPath");
                    }
                    Rule::OwnContext => {
                        for field in [
                            "proxyServer",
                            "proxyBypassList",
                            "originsWithUniversalNetworkAccess",
                        ] {
                            object.remove(field);
                        }
                    }
                    _ => {
                        object.remove("tracingBackend");
                        object.remove("perfettoConfig");
                    }
                }
                Some(serde_json::value::to_raw_value(&object).expect("a map serializes"))
            }
        };
        let outgoing = Outgoing {
            id: request.id,
            method,
            session_id: session,
            params: rewritten.as_deref().unwrap_or(params),
        };
        let text = serde_json::to_string(&outgoing).expect("a request serializes");
        match method {
            "Target.createBrowserContext" => {
                Inspected::ForwardContext(text, session.unwrap_or_default().to_owned(), request.id)
            }
            _ => Inspected::Forward(text),
        }
    }

    /// `about:blank`, or an `http(s)` URL the egress policy allows by its
    /// host lists and, for a literal address or a name Chromium keeps for
    /// loopback (`localhost`, `*.localhost`), by that address. Names are
    /// resolved by the browser's proxy, which checks every address.
    fn check_url(&self, url: &str) -> Result<(), String> {
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
        let refused =
            |err: crate::egress::EgressError| format!("refused by the egress policy: {err}");
        self.policy.check_url(&parsed).map_err(refused)?;
        if let Some(Host::Domain(name)) = parsed.host()
            && (name == "localhost" || name.ends_with(".localhost"))
        {
            self.policy
                .check_address(name, IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map_err(refused)?;
        }
        Ok(())
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
        "Input.dispatchDragEvent" => Rule::NoFiles,
        "Tracing.start" => Rule::InBrowserTrace,
        method if ALLOWED_METHODS.contains(&method) => Rule::Allow,
        method => {
            if let Some((_, why)) = REFUSED_IN_ALLOWED_DOMAINS
                .iter()
                .find(|(m, _)| *m == method)
            {
                return Rule::Refuse(why);
            }
            match method.split_once('.') {
                Some((domain, _)) if ALLOWED_DOMAINS.contains(&domain) => Rule::Allow,
                _ => Rule::Refuse("it reaches outside the browser's pages"),
            }
        }
    }
}

/// `Domain.method`: ASCII letters around one dot, at most 64 bytes.
fn is_method_name(method: &str) -> bool {
    method.len() <= 64
        && method.split_once('.').is_some_and(|(domain, name)| {
            !domain.is_empty()
                && !name.is_empty()
                && domain
                    .bytes()
                    .chain(name.bytes())
                    .all(|b| b.is_ascii_alphabetic())
        })
}

/// The id of a message that did not parse as a request, if it has one.
fn lenient_id(text: &str) -> u64 {
    #[derive(Deserialize)]
    struct Id {
        id: u64,
    }
    serde_json::from_str::<Id>(text).map_or(0, |found| found.id)
}

/// An error response to request `id`, in its session, as clients require
/// (Playwright fails on an error it cannot match to a session).
fn error(id: u64, session: Option<&str>, code: i64, message: &str) -> String {
    let mut response = json!({
        "id": id,
        "error": { "code": code, "message": message },
    });
    if let Some(session) = session {
        response["sessionId"] = json!(session);
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
        firewall().inspect(&message.to_string())
    }

    fn refused(inspected: Inspected) -> Value {
        match inspected {
            Inspected::Refuse(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn forwarded(inspected: Inspected) -> Value {
        match inspected {
            Inspected::Forward(text) | Inspected::ForwardContext(text, ..) => {
                serde_json::from_str(&text).unwrap()
            }
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
            "Page.addCompilationCache",
            "Storage.getStorageKey",
            "page.navigate",
            "Page.navigate\n",
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
    fn nothing_opens_files_on_the_browsers_host() {
        let drag = |data: Value| {
            json!({ "id": 8, "method": "Input.dispatchDragEvent", "params": {
                "type": "drop", "x": 1, "y": 1, "data": data } })
        };
        let with_files =
            drag(json!({ "items": [], "files": ["/etc/hostname"], "dragOperationsMask": 1 }));
        assert_eq!(
            refused(inspect(with_files))["error"]["code"],
            PARAMS_REFUSED
        );
        let plain = drag(
            json!({ "items": [{ "mimeType": "text/plain", "data": "hi" }], "dragOperationsMask": 1 }),
        );
        forwarded(inspect(plain));
        let trace = json!({ "id": 9, "method": "Tracing.start", "params": {
            "tracingBackend": "system", "perfettoConfig": "x", "categories": "v8" } });
        assert_eq!(
            forwarded(inspect(trace))["params"],
            json!({ "categories": "v8" })
        );
    }

    #[test]
    fn localhost_names_are_loopback_and_names_are_left_to_the_proxy() {
        for url in ["http://localhost:18789/", "http://api.localhost/"] {
            let message = json!({ "id": 1, "method": "Page.navigate", "params": { "url": url } });
            refused(inspect(message));
        }
        let public = json!({ "id": 1, "method": "Page.navigate", "params": { "url": "https://example.com/" } });
        forwarded(inspect(public));
    }

    #[test]
    fn malformed_requests_are_answered_not_forwarded() {
        for text in [
            "not json",
            "[1]",
            r#"{"id":1}"#,
            r#"{"method":"Page.enable"}"#,
            r#"{"id":1,"method":"Page.enable","params":[]}"#,
            r#"{"id":1,"method":"Page.enable","method":"Browser.close"}"#,
            r#"{"id":1,"method":"Page.navigate","params":{"url":"https://example.com/","url":"file:///etc/passwd"}}"#,
            r#"{"id":1,"method":"Page.enable","extra":true}"#,
            r#"{"id":2000000000,"method":"Page.enable"}"#,
            r#"{"id":-1,"method":"Page.enable"}"#,
        ] {
            assert!(
                matches!(firewall().inspect(text), Inspected::Refuse(_)),
                "{text}"
            );
        }
        let answer = refused(firewall().inspect(r#"{"id":5,"method":"Page.enable","extra":1}"#));
        assert_eq!(answer["id"], 5, "the client can match the refusal");
    }
}
