//! A page (tab) attached through a flattened session, and what can be done
//! with it: navigate and wait, read, capture, and set up its environment.

use crate::connection::{Connection, Event, EventStream};
use crate::egress::{EgressError, EgressPolicy};
use crate::error::{CdpError, NetError};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The state a navigation waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitUntil {
    /// The HTML is parsed (`DOMContentLoaded`).
    #[serde(rename = "domcontentloaded")]
    DomContentLoaded,
    /// The page and its subresources loaded (`load`).
    #[default]
    #[serde(rename = "load")]
    Load,
    /// No network request for 500 ms after loading.
    #[serde(rename = "networkidle")]
    NetworkIdle,
}

impl WaitUntil {
    /// Chromium's lifecycle event name for this state.
    fn lifecycle_name(self) -> &'static str {
        match self {
            Self::DomContentLoaded => "DOMContentLoaded",
            Self::Load => "load",
            Self::NetworkIdle => "networkIdle",
        }
    }
}

impl fmt::Display for WaitUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lifecycle_name())
    }
}

/// How to navigate.
#[derive(Clone, Copy, Debug)]
pub struct NavigateOptions {
    /// The state to wait for.
    pub wait_until: WaitUntil,
    /// The most the whole navigation may take.
    pub timeout: Duration,
}

impl Default for NavigateOptions {
    fn default() -> Self {
        Self {
            wait_until: WaitUntil::Load,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Where a navigation ended.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Navigation {
    /// The page's URL after redirects.
    pub url: String,
    /// The HTTP status of the document, when the browser reports one.
    pub status: Option<u16>,
}

/// The image format of a screenshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageFormat {
    /// Lossless PNG.
    #[default]
    Png,
    /// JPEG at a quality from 0 to 100.
    Jpeg {
        /// The quality, 0 to 100.
        quality: u8,
    },
}

/// A rectangle of the page, in CSS pixels from the document's top left.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// The most HTML read from a page, in UTF-16 code units (JavaScript string
/// length): a page can build a DOM far larger than anything worth reading,
/// and an answer over the connection's message limit would end it.
pub const MAX_HTML_CHARS: usize = 16 << 20;

/// The longest side of a screenshot, in CSS pixels: a longer page or
/// element is cut there (a page can be arbitrarily tall, and its bitmap is
/// held in memory whole).
pub const MAX_SCREENSHOT_SIDE: f64 = 16_384.0;

/// What part of the page a screenshot shows, and how it is encoded.
#[derive(Clone, Debug, Default)]
pub struct ScreenshotOptions {
    /// PNG or JPEG.
    pub format: ImageFormat,
    /// The whole scrollable page instead of the viewport.
    pub full_page: bool,
    /// Only the first element matching this CSS selector.
    pub selector: Option<String>,
    /// Only this rectangle.
    pub clip: Option<Clip>,
}

impl Clip {
    /// Whether `other` lies wholly inside this rectangle.
    pub fn contains(&self, other: &Clip) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.x + other.width <= self.x + self.width
            && other.y + other.height <= self.y + self.height
    }
}

/// The size of the viewport a page is laid out in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Viewport {
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
    /// Device pixels per CSS pixel.
    pub device_scale_factor: f64,
    /// Emulate a mobile device (meta viewport, touch).
    pub mobile: bool,
}

impl Viewport {
    /// A desktop viewport of this size at scale 1.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            device_scale_factor: 1.0,
            mobile: false,
        }
    }
}

/// How to print a PDF.
#[derive(Clone, Copy, Debug)]
pub struct PdfOptions {
    /// Landscape instead of portrait.
    pub landscape: bool,
    /// Print background colours and images.
    pub print_background: bool,
    /// Paper width and height in inches (US Letter by default).
    pub paper_inches: (f64, f64),
}

impl Default for PdfOptions {
    fn default() -> Self {
        Self {
            landscape: false,
            print_background: true,
            paper_inches: (8.5, 11.0),
        }
    }
}

/// A link on a page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The absolute URL it points to.
    pub url: String,
    /// Its visible text, trimmed.
    pub text: String,
}

/// One element found by a CSS selector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScrapedElement {
    /// Its rendered text.
    pub text: String,
    /// Its inner HTML.
    pub html: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Where it is, in CSS pixels from the document's top left.
    pub rect: Clip,
}

/// The elements one selector matched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scraped {
    /// The CSS selector.
    pub selector: String,
    /// The matching elements, in document order.
    pub elements: Vec<ScrapedElement>,
}

/// A cookie, as `Network.setCookies` takes it and `Network.getCookies` returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// The URL it is set for (instead of a domain and path), when setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Its domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only sent over HTTPS.
    #[serde(default)]
    pub secure: bool,
    /// Hidden from JavaScript.
    #[serde(default)]
    pub http_only: bool,
    /// Expiry in seconds since the epoch; `None` for a session cookie
    /// (Chromium reports those as `-1`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "session_is_none"
    )]
    pub expires: Option<f64>,
    /// `Strict`, `Lax` or `None`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

/// Reads a cookie expiry, where a negative value means a session cookie.
fn session_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    let expires = Option::<f64>::deserialize(deserializer)?;
    Ok(expires.filter(|seconds| *seconds >= 0.0))
}

/// The last request the egress policy refused on a page, to explain a
/// navigation that failed with `net::ERR_BLOCKED_BY_CLIENT`.
pub(crate) type LastDenial = Arc<Mutex<Option<EgressError>>>;

/// A page (tab) of a browser.
///
/// Closing it (or dropping it) closes the tab, and disposes of its browser
/// context if it had its own.
pub struct Page {
    connection: Arc<Connection>,
    target_id: String,
    session_id: String,
    context_id: Option<String>,
    interception: Option<AbortHandle>,
    policy: Option<Arc<EgressPolicy>>,
    last_denial: LastDenial,
    /// The egress proxy of the page's context, which lives as long as it.
    proxy: Option<crate::proxy::EgressProxy>,
    closed: bool,
}

impl Page {
    pub(crate) async fn attach(
        connection: Arc<Connection>,
        target_id: String,
        session_id: String,
        context_id: Option<String>,
    ) -> Result<Self, CdpError> {
        let page = Self {
            connection,
            target_id,
            session_id,
            context_id,
            interception: None,
            policy: None,
            last_denial: Arc::default(),
            proxy: None,
            closed: false,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await?;
        Ok(page)
    }

    /// The target id of this page.
    pub fn target_id(&self) -> &str {
        &self.target_id
    }

    /// The flattened session id commands for this page carry.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The browser connection this page's session runs on.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// Sends any CDP command to this page's session.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.connection
            .call(method, params, Some(&self.session_id))
            .await
    }

    /// Checks every request this page makes (navigations, redirects,
    /// subresources, and those of the frames and workers it starts) against
    /// `policy` from now on; refused requests fail with
    /// `net::ERR_BLOCKED_BY_CLIENT` and navigations with [`CdpError::Egress`].
    /// A page is policed once: a second call is [`CdpError::AlreadyPoliced`].
    ///
    /// This checks requests, not connections: WebSocket handshakes are not
    /// seen, and the browser resolves names again after the check. Pages
    /// from [`Browser::new_policed_page`](crate::Browser::new_policed_page)
    /// in a launched browser also go through the egress proxy, which closes
    /// both gaps.
    pub async fn enforce_egress(&mut self, policy: Arc<EgressPolicy>) -> Result<(), CdpError> {
        if self.policy.is_some() {
            return Err(CdpError::AlreadyPoliced);
        }
        let task = crate::intercept::start(
            self.connection.clone(),
            self.session_id.clone(),
            self.target_id.clone(),
            policy.clone(),
            self.last_denial.clone(),
        )
        .await?;
        self.interception = Some(task);
        self.policy = Some(policy);
        Ok(())
    }

    /// Keeps the egress proxy of this page's context running while it lives.
    pub(crate) fn keep_proxy(&mut self, proxy: crate::proxy::EgressProxy) {
        self.proxy = Some(proxy);
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<Navigation, CdpError> {
        self.goto_with(url, NavigateOptions::default()).await
    }

    /// Navigates and waits for the state `options` asks for, within its timeout.
    pub async fn goto_with(
        &self,
        url: &str,
        options: NavigateOptions,
    ) -> Result<Navigation, CdpError> {
        // Under a policy, only http(s) URLs it allows are navigated to at all
        // (never file:, chrome: or view-source:).
        if let Some(policy) = &self.policy {
            let parsed = url::Url::parse(url).map_err(|_| EgressError::InvalidUrl(url.into()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(EgressError::Scheme {
                    scheme: parsed.scheme().to_owned(),
                }
                .into());
            }
            policy.check_url(&parsed)?;
        }
        let deadline = Instant::now()
            .checked_add(options.timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let timed_out = || CdpError::NavigationTimeout {
            url: url.to_owned(),
            wait_until: options.wait_until,
            after: options.timeout,
        };
        // Subscribed before navigating, so no lifecycle event is missed.
        let mut events = self.connection.subscribe(
            Some(&self.session_id),
            &["Page.lifecycleEvent", "Inspector.targetCrashed"],
        );
        let mut detached = self
            .connection
            .subscribe(None, &["Target.detachedFromTarget"]);
        self.last_denial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let navigating = self.connection.call_within(
            "Page.navigate",
            json!({ "url": url }),
            Some(&self.session_id),
            options.timeout,
        );
        let navigated = tokio::select! {
            navigated = navigating => navigated,
            Some(_) = self.detached(&mut detached) => return Err(CdpError::PageClosed),
        };
        let navigated = match navigated {
            Ok(navigated) => navigated,
            Err(CdpError::Timeout { .. }) => {
                self.stop_loading();
                return Err(timed_out());
            }
            Err(err) => return Err(err),
        };
        if let Some(error_text) = navigated["errorText"].as_str().filter(|t| !t.is_empty()) {
            let error = NetError::parse(error_text);
            if error == NetError::BlockedByClient {
                let denial = self
                    .last_denial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(denial) = denial {
                    return Err(CdpError::Egress(denial));
                }
            }
            return Err(CdpError::Navigation {
                url: url.to_owned(),
                error,
            });
        }
        let frame_id = navigated["frameId"].as_str().unwrap_or_default();
        // A same-document navigation (a #fragment) has no loader to wait for.
        if let Some(loader_id) = navigated["loaderId"].as_str() {
            let awaited = options.wait_until.lifecycle_name();
            loop {
                let next = async {
                    tokio::select! {
                        event = events.next() => event,
                        event = self.detached(&mut detached) => event,
                    }
                };
                let event = match tokio::time::timeout_at(deadline, next).await {
                    Err(_) => {
                        self.stop_loading();
                        return Err(timed_out());
                    }
                    Ok(None) => return Err(self.connection.closed_error()),
                    Ok(Some(event)) => event,
                };
                if event.method == "Target.detachedFromTarget" {
                    return Err(CdpError::PageClosed);
                }
                if event.method == "Inspector.targetCrashed" {
                    return Err(CdpError::TargetCrashed);
                }
                let params = &event.params;
                if params["frameId"] == frame_id
                    && params["loaderId"] == loader_id
                    && params["name"] == awaited
                {
                    break;
                }
            }
        }
        self.evaluate(
            "({ url: location.href, status: performance.getEntriesByType('navigation')[0]?.responseStatus || null })",
        )
        .await
    }

    /// The event that says this page's session ended, from browser-level
    /// detach events.
    async fn detached(&self, detached: &mut EventStream) -> Option<Event> {
        loop {
            let event = detached.next().await?;
            if event.params["sessionId"] == self.session_id.as_str() {
                return Some(event);
            }
        }
    }

    fn stop_loading(&self) {
        self.connection
            .notify("Page.stopLoading", json!({}), Some(&self.session_id));
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its
    /// value, converted from JSON.
    pub async fn evaluate<T: DeserializeOwned>(&self, expression: &str) -> Result<T, CdpError> {
        let evaluated = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                }),
            )
            .await?;
        if let Some(details) = evaluated.get("exceptionDetails") {
            let message = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("an exception");
            return Err(CdpError::JavaScript(message.to_owned()));
        }
        let value = evaluated["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|err| {
            CdpError::UnexpectedResponse(format!("the value of {expression:?}: {err}"))
        })
    }

    /// Calls a JavaScript function (its source) with JSON arguments.
    async fn call_function<T: DeserializeOwned>(
        &self,
        function: &str,
        args: &impl Serialize,
    ) -> Result<T, CdpError> {
        let args = serde_json::to_string(args)
            .map_err(|err| CdpError::UnexpectedResponse(err.to_string()))?;
        self.evaluate(&format!("({function})(...{args})")).await
    }

    /// The page's URL.
    pub async fn url(&self) -> Result<String, CdpError> {
        self.evaluate("location.href").await
    }

    /// The document's title.
    pub async fn title(&self) -> Result<String, CdpError> {
        self.evaluate("document.title").await
    }

    /// The rendered HTML (the DOM as it is now, after scripts ran), at most
    /// [`MAX_HTML_CHARS`] of it.
    pub async fn html(&self) -> Result<String, CdpError> {
        self.evaluate(&format!(
            "((document.doctype ? '<!DOCTYPE ' + document.doctype.name + '>\\n' : '') + \
             (document.documentElement ? document.documentElement.outerHTML : '')).slice(0, {MAX_HTML_CHARS}).toWellFormed()"
        ))
        .await
    }

    /// The page as Markdown, readable for a model: its title as a heading,
    /// then its rendered content without scripts, styles or navigation
    /// chrome, with absolute link URLs. At most [`MAX_HTML_CHARS`] of the
    /// page's HTML are read.
    pub async fn markdown(&self) -> Result<String, CdpError> {
        #[derive(Deserialize)]
        struct Document {
            title: String,
            html: String,
        }
        // Links and images made absolute, so the model can follow them; the
        // title comes in the same round trip.
        let document: Document = self
            .evaluate(&format!(
                "(() => {{ const root = document.documentElement?.cloneNode(true); \
                 if (root) {{ \
                   root.querySelectorAll('a[href]').forEach(a => a.setAttribute('href', a.href)); \
                   root.querySelectorAll('img[src]').forEach(i => i.setAttribute('src', i.src)); }} \
                 return {{ title: document.title.slice(0, 1000).toWellFormed(), \
                   html: root ? root.outerHTML.slice(0, {MAX_HTML_CHARS}).toWellFormed() : '' }}; }})()"
            ))
            .await?;
        Ok(crate::markdown::page_to_markdown(
            &document.title,
            &document.html,
        ))
    }

    /// The links on the page (`a[href]`), with absolute URLs.
    pub async fn links(&self) -> Result<Vec<Link>, CdpError> {
        self.evaluate(
            "Array.from(document.querySelectorAll('a[href]'), a => \
             ({ url: a.href, text: (a.innerText || a.textContent || '').trim() }))",
        )
        .await
    }

    /// The elements each CSS selector matches: text, inner HTML, attributes
    /// and position.
    pub async fn scrape(&self, selectors: &[&str]) -> Result<Vec<Scraped>, CdpError> {
        #[derive(Deserialize)]
        struct Found {
            selector: String,
            error: Option<String>,
            #[serde(default)]
            elements: Vec<ScrapedElement>,
        }
        const SCRAPE: &str = "(selectors) => selectors.map(selector => {
            let nodes;
            try { nodes = document.querySelectorAll(selector); }
            catch (e) { return { selector, error: String(e.message) }; }
            return { selector, elements: Array.from(nodes, el => {
                const r = el.getBoundingClientRect();
                return {
                    text: (el.innerText ?? el.textContent ?? '').trim(),
                    html: el.innerHTML,
                    attributes: Object.fromEntries(Array.from(el.attributes, a => [a.name, a.value])),
                    rect: { x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height },
                };
            }) };
        })";
        let found: Vec<Found> = self.call_function(SCRAPE, &[selectors]).await?;
        found
            .into_iter()
            .map(|found| match found.error {
                Some(reason) => Err(CdpError::InvalidSelector {
                    selector: found.selector,
                    reason,
                }),
                None => Ok(Scraped {
                    selector: found.selector,
                    elements: found.elements,
                }),
            })
            .collect()
    }

    /// Where the first element matching `selector` is, in document coordinates.
    pub async fn element_rect(&self, selector: &str) -> Result<Clip, CdpError> {
        const RECT: &str = "(selector) => {
            let el;
            try { el = document.querySelector(selector); }
            catch (e) { return { error: String(e.message) }; }
            if (!el) return null;
            const r = el.getBoundingClientRect();
            return { x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height };
        }";
        let rect: Option<Value> = self.call_function(RECT, &[selector]).await?;
        let rect = rect.ok_or_else(|| CdpError::NoSuchElement(selector.to_owned()))?;
        if let Some(reason) = rect["error"].as_str() {
            return Err(CdpError::InvalidSelector {
                selector: selector.to_owned(),
                reason: reason.to_owned(),
            });
        }
        serde_json::from_value(rect).map_err(|err| CdpError::UnexpectedResponse(err.to_string()))
    }

    /// Takes a screenshot: the viewport, the full page, a clip or one element,
    /// at most [`MAX_SCREENSHOT_SIDE`] on each side.
    pub async fn screenshot(&self, options: &ScreenshotOptions) -> Result<Vec<u8>, CdpError> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let number = |value: &Value| value.as_f64().unwrap_or_default();
        let visual = &metrics["cssVisualViewport"];
        let viewport = Clip {
            x: number(&visual["pageX"]),
            y: number(&visual["pageY"]),
            width: number(&visual["clientWidth"]),
            height: number(&visual["clientHeight"]),
        };
        let clip = match (&options.selector, options.clip) {
            (Some(selector), _) => self.element_rect(selector).await?,
            (None, Some(clip)) => clip,
            (None, None) if options.full_page => {
                let content = &metrics["cssContentSize"];
                Clip {
                    x: 0.0,
                    y: 0.0,
                    width: number(&content["width"]).ceil(),
                    height: number(&content["height"]).ceil(),
                }
            }
            (None, None) => viewport,
        };
        let clip = Clip {
            width: clip.width.min(MAX_SCREENSHOT_SIDE),
            height: clip.height.min(MAX_SCREENSHOT_SIDE),
            ..clip
        };
        if clip.width <= 0.0 || clip.height <= 0.0 {
            return Err(CdpError::NoSuchElement(format!(
                "{} (it has no size)",
                options.selector.as_deref().unwrap_or("the clip")
            )));
        }
        let mut params = match options.format {
            ImageFormat::Png => json!({ "format": "png" }),
            ImageFormat::Jpeg { quality } => {
                json!({ "format": "jpeg", "quality": quality.min(100) })
            }
        };
        // Always an explicit clip, so the image is exactly the region asked
        // for. Capturing beyond the viewport costs a relayout, so only a clip
        // that leaves the viewport asks for it.
        params["clip"] = json!({
            "x": clip.x, "y": clip.y, "width": clip.width, "height": clip.height, "scale": 1,
        });
        params["captureBeyondViewport"] = json!(!viewport.contains(&clip));
        let shot = self.call("Page.captureScreenshot", params).await?;
        decode_data(&shot)
    }

    /// Prints the page to PDF.
    pub async fn pdf(&self, options: &PdfOptions) -> Result<Vec<u8>, CdpError> {
        let printed = self
            .call(
                "Page.printToPDF",
                json!({
                    "landscape": options.landscape,
                    "printBackground": options.print_background,
                    "paperWidth": options.paper_inches.0,
                    "paperHeight": options.paper_inches.1,
                }),
            )
            .await?;
        decode_data(&printed)
    }

    /// Lays the page out in a viewport of this size.
    pub async fn set_viewport(&self, viewport: Viewport) -> Result<(), CdpError> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": viewport.width,
                "height": viewport.height,
                "deviceScaleFactor": viewport.device_scale_factor,
                "mobile": viewport.mobile,
            }),
        )
        .await?;
        Ok(())
    }

    /// Sends this user agent (and reports it to scripts) from now on.
    pub async fn set_user_agent(&self, user_agent: &str) -> Result<(), CdpError> {
        self.call(
            "Emulation.setUserAgentOverride",
            json!({ "userAgent": user_agent }),
        )
        .await?;
        Ok(())
    }

    /// Adds these headers to every request the page makes from now on.
    pub async fn set_extra_headers(
        &self,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), CdpError> {
        self.call("Network.enable", json!({})).await?;
        self.call("Network.setExtraHTTPHeaders", json!({ "headers": headers }))
            .await?;
        Ok(())
    }

    /// Sets cookies (each with a `url`, or a `domain` and `path`).
    pub async fn set_cookies(&self, cookies: &[Cookie]) -> Result<(), CdpError> {
        self.call("Network.setCookies", json!({ "cookies": cookies }))
            .await?;
        Ok(())
    }

    /// The cookies the page's current URL would send.
    pub async fn cookies(&self) -> Result<Vec<Cookie>, CdpError> {
        let got = self.call("Network.getCookies", json!({})).await?;
        serde_json::from_value(got["cookies"].clone())
            .map_err(|err| CdpError::UnexpectedResponse(err.to_string()))
    }

    /// Closes the tab (and its own browser context, if it has one).
    pub async fn close(mut self) -> Result<(), CdpError> {
        self.closed = true;
        let result = match &self.context_id {
            Some(context_id) => {
                self.connection
                    .call(
                        "Target.disposeBrowserContext",
                        json!({ "browserContextId": context_id }),
                        None,
                    )
                    .await
            }
            None => {
                self.connection
                    .call(
                        "Target.closeTarget",
                        json!({ "targetId": self.target_id }),
                        None,
                    )
                    .await
            }
        };
        match result {
            Ok(_) | Err(CdpError::Closed { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        if let Some(task) = self.interception.take() {
            task.abort();
        }
        if self.closed || !self.connection.is_open() {
            return;
        }
        match &self.context_id {
            Some(context_id) => self.connection.notify(
                "Target.disposeBrowserContext",
                json!({ "browserContextId": context_id }),
                None,
            ),
            None => self.connection.notify(
                "Target.closeTarget",
                json!({ "targetId": self.target_id }),
                None,
            ),
        }
    }
}

/// Decodes the base64 `data` field of a screenshot or PDF answer.
pub(crate) fn decode_data(answer: &Value) -> Result<Vec<u8>, CdpError> {
    let data = answer["data"]
        .as_str()
        .ok_or_else(|| CdpError::UnexpectedResponse("no data in the answer".into()))?;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|err| CdpError::UnexpectedResponse(format!("data is not base64: {err}")))
}
