//! The agent's web tools, implementing `molt-core`'s tool contract:
//! `web_fetch`, `browser_markdown`, `browser_links`, `browser_scrape` and
//! `browser_screenshot`. Every request they make passes one egress policy.

use crate::egress::EgressPolicy;
use crate::error::CdpError;
use crate::fetch::{FetchError, FetchOptions, Fetched, WebFetcher};
use crate::page::{ImageFormat, NavigateOptions, Page, ScreenshotOptions, Viewport, WaitUntil};
use crate::shared::SharedBrowser;
use async_trait::async_trait;
use molt_core::tool::{SideEffect, Tool, ToolError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Settings of the web tools.
#[derive(Clone, Debug)]
pub struct ToolOptions {
    /// Where screenshots are written (created if missing).
    pub screenshot_dir: PathBuf,
    /// How many screenshots are kept there (at least the newest); older ones
    /// are removed.
    pub max_screenshots: usize,
    /// The most text a tool returns to the model, in characters.
    pub max_output_chars: usize,
    /// The most a page may take to load.
    pub navigation_timeout: Duration,
    /// Limits of `web_fetch`.
    pub fetch: FetchOptions,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            screenshot_dir: std::env::temp_dir().join("molt-screenshots"),
            max_screenshots: 50,
            max_output_chars: 20_000,
            navigation_timeout: Duration::from_secs(30),
            fetch: FetchOptions::default(),
        }
    }
}

/// What every web tool shares: the browser, the policy, the fetcher.
struct Context {
    browser: Option<Arc<SharedBrowser>>,
    policy: Arc<EgressPolicy>,
    fetcher: WebFetcher,
    options: ToolOptions,
    screenshots_taken: AtomicU64,
}

/// The five web tools, sharing one browser and one egress policy.
pub struct WebTools {
    context: Arc<Context>,
}

impl WebTools {
    /// Web tools over `browser` (without one, only `web_fetch` is offered),
    /// every request checked against `policy`.
    pub fn new(
        browser: Option<Arc<SharedBrowser>>,
        policy: Arc<EgressPolicy>,
        options: ToolOptions,
    ) -> Result<Self, FetchError> {
        let fetcher = WebFetcher::new(policy.clone(), options.fetch.clone())?;
        Ok(Self {
            context: Arc::new(Context {
                browser,
                policy,
                fetcher,
                options,
                screenshots_taken: AtomicU64::new(0),
            }),
        })
    }

    /// The tools, ready to register: `web_fetch`, and the four browser
    /// tools when there is a browser.
    pub fn all(&self) -> Vec<Arc<dyn Tool>> {
        let context = &self.context;
        let mut tools: Vec<Arc<dyn Tool>> = vec![Arc::new(WebFetch(context.clone()))];
        if context.browser.is_some() {
            tools.extend([
                Arc::new(BrowserMarkdown(context.clone())) as Arc<dyn Tool>,
                Arc::new(BrowserLinks(context.clone())),
                Arc::new(BrowserScrape(context.clone())),
                Arc::new(BrowserScreenshot(context.clone())),
            ]);
        }
        tools
    }
}

impl Context {
    /// Opens a policed page, applies the viewport, loads `url`, runs `read`
    /// on it, and closes it whatever happened.
    async fn with_page<T>(
        &self,
        url: &str,
        wait_until: WaitUntil,
        viewport: Option<Viewport>,
        read: impl AsyncFnOnce(&Page) -> Result<T, CdpError>,
    ) -> Result<T, ToolError> {
        let browser = self
            .browser
            .as_ref()
            .ok_or_else(|| ToolError::new("no browser is configured"))?;
        let page = browser
            .policed_page(&self.policy)
            .await
            .map_err(tool_error)?;
        let result = async {
            if let Some(viewport) = viewport {
                page.set_viewport(viewport).await?;
            }
            let options = NavigateOptions {
                wait_until,
                timeout: self.options.navigation_timeout,
            };
            page.goto_with(url, options).await?;
            read(&page).await
        }
        .await;
        let _ = page.close().await;
        result.map_err(tool_error)
    }

    fn truncate(&self, text: &str) -> String {
        truncate(text, self.options.max_output_chars)
    }
}

fn tool_error(err: impl std::fmt::Display) -> ToolError {
    ToolError::new(err.to_string())
}

/// At most `max` characters, with a note when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!(
            "{}\n\n[truncated: {} more characters]",
            &text[..cut],
            text[cut..].chars().count()
        ),
    }
}

/// The input fields most tools share.
#[derive(Deserialize)]
struct PageInput {
    url: String,
    #[serde(default)]
    wait_until: WaitUntil,
}

fn parse<T: for<'de> Deserialize<'de>>(input: Value) -> Result<T, ToolError> {
    serde_json::from_value(input).map_err(|err| ToolError::new(format!("invalid input: {err}")))
}

fn page_schema(extra: Value, required: &[&str]) -> Value {
    let mut properties = json!({
        "url": { "type": "string", "description": "The http(s) URL to open." },
        "wait_until": {
            "type": "string",
            "enum": ["load", "domcontentloaded", "networkidle"],
            "description": "What to wait for before reading (default: load)."
        }
    });
    if let (Some(properties), Some(extra)) = (properties.as_object_mut(), extra.as_object()) {
        properties.extend(extra.clone());
    }
    let mut required_fields = vec!["url"];
    required_fields.extend_from_slice(required);
    json!({
        "type": "object",
        "properties": properties,
        "required": required_fields,
        "additionalProperties": false
    })
}

/// `web_fetch`: a plain HTTP GET, HTML turned into Markdown.
struct WebFetch(Arc<Context>);

#[async_trait]
impl Tool for WebFetch {
    fn name(&self) -> &str {
        "web_fetch"
    }
    fn description(&self) -> &str {
        "Fetches a URL over HTTP without a browser (no JavaScript) and returns it as \
         Markdown (HTML) or text. Fast; use browser_markdown for pages built by scripts."
    }
    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "url": { "type": "string", "description": "The http(s) URL to fetch." } },
            "required": ["url"],
            "additionalProperties": false
        })
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::External
    }
    async fn call(&self, input: Value) -> Result<String, ToolError> {
        #[derive(Deserialize)]
        struct Input {
            url: String,
        }
        let Input { url } = parse(input)?;
        let fetched = self.0.fetcher.fetch(&url).await.map_err(tool_error)?;
        Ok(self.0.truncate(&describe_fetched(&fetched)))
    }
}

/// A fetched response as the model reads it: a short header, then the body
/// as Markdown or text (binary bodies are only described).
fn describe_fetched(fetched: &Fetched) -> String {
    let content_type = fetched.content_type.as_deref().unwrap_or("unknown");
    let mut out = format!(
        "URL: {}\nStatus: {}\nContent-Type: {content_type}\n\n",
        fetched.url, fetched.status
    );
    let text = String::from_utf8_lossy(&fetched.body);
    let lower = content_type.to_ascii_lowercase();
    let head = text
        .trim_start()
        .get(..15)
        .unwrap_or("")
        .to_ascii_lowercase();
    if lower.contains("html") || head.starts_with("<!doctype html") || head.starts_with("<html") {
        out.push_str(&crate::markdown::html_to_markdown(&text));
    } else if lower.starts_with("text/")
        || lower.contains("json")
        || lower.contains("xml")
        || (fetched.content_type.is_none() && std::str::from_utf8(&fetched.body).is_ok())
    {
        out.push_str(&text);
    } else {
        out.push_str(&format!(
            "[{} bytes of binary content, not shown]",
            fetched.body.len()
        ));
    }
    if fetched.truncated {
        out.push_str("\n\n[the body was cut off at the size limit]");
    }
    out
}

/// `browser_markdown`: the rendered page as Markdown.
struct BrowserMarkdown(Arc<Context>);

#[async_trait]
impl Tool for BrowserMarkdown {
    fn name(&self) -> &str {
        "browser_markdown"
    }
    fn description(&self) -> &str {
        "Opens a URL in a headless browser (JavaScript runs) and returns the rendered \
         page as Markdown."
    }
    fn input_schema(&self) -> Value {
        page_schema(json!({}), &[])
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::External
    }
    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let PageInput { url, wait_until } = parse(input)?;
        let markdown = self
            .0
            .with_page(&url, wait_until, None, async |page| page.markdown().await)
            .await?;
        Ok(self.0.truncate(&markdown))
    }
}

/// `browser_links`: the links of the rendered page.
struct BrowserLinks(Arc<Context>);

#[async_trait]
impl Tool for BrowserLinks {
    fn name(&self) -> &str {
        "browser_links"
    }
    fn description(&self) -> &str {
        "Opens a URL in a headless browser and lists its links, one per line as \
         `text <url>`."
    }
    fn input_schema(&self) -> Value {
        page_schema(json!({}), &[])
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::External
    }
    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let PageInput { url, wait_until } = parse(input)?;
        let links = self
            .0
            .with_page(&url, wait_until, None, async |page| page.links().await)
            .await?;
        if links.is_empty() {
            return Ok("(no links)".into());
        }
        let lines: Vec<String> = links
            .iter()
            .map(|link| format!("{} <{}>", link.text, link.url))
            .collect();
        Ok(self.0.truncate(&lines.join("\n")))
    }
}

/// `browser_scrape`: elements by CSS selector.
struct BrowserScrape(Arc<Context>);

#[async_trait]
impl Tool for BrowserScrape {
    fn name(&self) -> &str {
        "browser_scrape"
    }
    fn description(&self) -> &str {
        "Opens a URL in a headless browser and returns, for each CSS selector, the \
         matching elements' text, inner HTML and attributes, as JSON."
    }
    fn input_schema(&self) -> Value {
        page_schema(
            json!({
                "selectors": {
                    "type": "array",
                    "items": { "type": "string", "minLength": 1 },
                    "minItems": 1,
                    "maxItems": 20,
                    "description": "CSS selectors, such as \"h1\" or \".price\"."
                }
            }),
            &["selectors"],
        )
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::External
    }
    async fn call(&self, input: Value) -> Result<String, ToolError> {
        #[derive(Deserialize)]
        struct Input {
            #[serde(flatten)]
            page: PageInput,
            selectors: Vec<String>,
        }
        let Input { page, selectors } = parse(input)?;
        let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
        let scraped = self
            .0
            .with_page(&page.url, page.wait_until, None, async |page| {
                page.scrape(&selectors).await
            })
            .await?;
        let results: Vec<Value> = scraped
            .iter()
            .map(|found| {
                let elements: Vec<Value> = found
                    .elements
                    .iter()
                    .map(|e| json!({ "text": e.text, "html": e.html, "attributes": e.attributes }))
                    .collect();
                json!({ "selector": found.selector, "elements": elements })
            })
            .collect();
        Ok(self.0.truncate(&Value::Array(results).to_string()))
    }
}

/// `browser_screenshot`: an image of the page, saved to a file.
struct BrowserScreenshot(Arc<Context>);

#[async_trait]
impl Tool for BrowserScreenshot {
    fn name(&self) -> &str {
        "browser_screenshot"
    }
    fn description(&self) -> &str {
        "Opens a URL in a headless browser and saves a screenshot (the viewport, the \
         full page, or one element) as PNG or JPEG; returns the file's path."
    }
    fn input_schema(&self) -> Value {
        page_schema(
            json!({
                "full_page": { "type": "boolean", "description": "The whole page, not just the viewport." },
                "selector": { "type": "string", "minLength": 1, "description": "Only the first element matching this CSS selector." },
                "format": { "type": "string", "enum": ["png", "jpeg"] },
                "quality": { "type": "integer", "minimum": 0, "maximum": 100, "description": "JPEG quality." },
                "width": { "type": "integer", "minimum": 100, "maximum": 3840, "description": "Viewport width (default 1280)." },
                "height": { "type": "integer", "minimum": 100, "maximum": 2160, "description": "Viewport height (default 720)." }
            }),
            &[],
        )
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::External
    }
    async fn call(&self, input: Value) -> Result<String, ToolError> {
        #[derive(Deserialize)]
        struct Input {
            #[serde(flatten)]
            page: PageInput,
            #[serde(default)]
            full_page: bool,
            selector: Option<String>,
            format: Option<String>,
            quality: Option<u8>,
            width: Option<u32>,
            height: Option<u32>,
        }
        let input: Input = parse(input)?;
        let (format, extension) = match input.format.as_deref() {
            Some("jpeg") => (
                ImageFormat::Jpeg {
                    quality: input.quality.unwrap_or(80),
                },
                "jpg",
            ),
            _ => (ImageFormat::Png, "png"),
        };
        let viewport = Viewport::new(input.width.unwrap_or(1280), input.height.unwrap_or(720));
        let options = ScreenshotOptions {
            format,
            full_page: input.full_page,
            selector: input.selector,
            clip: None,
        };
        let image = self
            .0
            .with_page(
                &input.page.url,
                input.page.wait_until,
                Some(viewport),
                async |page| page.screenshot(&options).await,
            )
            .await?;
        let dir = &self.0.options.screenshot_dir;
        tokio::fs::create_dir_all(dir).await.map_err(tool_error)?;
        let number = self.0.screenshots_taken.fetch_add(1, Ordering::Relaxed);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let path = dir.join(format!(
            "{SCREENSHOT_PREFIX}{millis:013}-{number:06}.{extension}"
        ));
        tokio::fs::write(&path, &image).await.map_err(tool_error)?;
        if let Err(err) = prune_screenshots(dir, self.0.options.max_screenshots).await {
            tracing::warn!(%err, dir = %dir.display(), "old screenshots could not be removed");
        }
        Ok(format!(
            "Saved a {} screenshot of {} ({} bytes) to {}",
            extension.to_ascii_uppercase(),
            input.page.url,
            image.len(),
            path.display()
        ))
    }
}

/// How every screenshot's file name starts; the rest sorts oldest first.
const SCREENSHOT_PREFIX: &str = "screenshot-";

/// Removes all but the newest `keep` screenshots in `dir`.
async fn prune_screenshots(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(SCREENSHOT_PREFIX) {
            names.push(name);
        }
    }
    names.sort_unstable();
    // The newest is the one just written, whose path the tool returns.
    let excess = names.len().saturating_sub(keep.max(1));
    for name in &names[..excess] {
        match tokio::fs::remove_file(dir.join(name)).await {
            // Another process sharing the folder removed it first.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_newest_screenshots_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "screenshot-0000000000002-000000.png",
            "screenshot-0000000000001-000009.png",
            "screenshot-0000000000001-000010.jpg",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune_screenshots(dir.path(), 2).await.unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "screenshot-0000000000001-000010.jpg",
                "screenshot-0000000000002-000000.png"
            ]
        );
    }

    #[test]
    fn truncation_counts_characters_and_says_so() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(
            truncate("héllo wörld", 5),
            "héllo\n\n[truncated: 6 more characters]"
        );
    }
}
