//! The agent's web tools through molt-core's tool registry, against real
//! headless Chromium, and the egress policy they all pass.

mod support;

use molt_browser::egress::EgressPolicy;
use molt_browser::launch::LaunchOptions;
use molt_browser::{BrowserSource, SharedBrowser, ToolOptions, WebTools};
use molt_core::tool::{ToolOutcome, ToolRegistry};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use support::{article_markdown, serve_site, serve_site_recording};

fn registry(policy: EgressPolicy, screenshot_dir: &std::path::Path) -> ToolRegistry {
    let browser = Arc::new(SharedBrowser::new(BrowserSource::Launch(
        LaunchOptions::default(),
    )));
    let options = ToolOptions {
        screenshot_dir: screenshot_dir.to_owned(),
        ..Default::default()
    };
    let tools = WebTools::new(Some(browser), Arc::new(policy), options).unwrap();
    let mut registry = ToolRegistry::new();
    for tool in tools.all() {
        registry.register(tool).unwrap();
    }
    registry
}

fn loopback_allowed() -> EgressPolicy {
    EgressPolicy::default().allow_network("127.0.0.0/8".parse().unwrap())
}

async fn call(registry: &ToolRegistry, name: &str, input: serde_json::Value) -> ToolOutcome {
    registry.invoke(name, Ok(input)).await
}

fn ok(outcome: ToolOutcome) -> String {
    assert!(!outcome.is_error, "{}", outcome.content);
    outcome.content
}

#[tokio::test]
async fn each_tool_reads_a_local_page_in_chromium() {
    let site = serve_site().await;
    let dir = tempfile::tempdir().unwrap();
    let tools = registry(loopback_allowed(), dir.path());
    let article = format!("http://{site}/article");

    let markdown = ok(call(&tools, "browser_markdown", json!({ "url": article })).await);
    assert_eq!(markdown, article_markdown(site));

    // Without a browser the script does not run, and the title stays in <head>.
    let fetched = ok(call(&tools, "web_fetch", json!({ "url": article })).await);
    assert_eq!(
        fetched,
        format!(
            "URL: {article}\nStatus: 200\nContent-Type: text/html; charset=utf-8\n\n\
             # Crabs\n\nCrabs walk *sideways*.\n\n## Kinds\n\n*   Hermit\n*   Coconut\n\nRead [more](/links)."
        )
    );
    let text = ok(call(
        &tools,
        "web_fetch",
        json!({ "url": format!("http://{site}/text") }),
    )
    .await);
    assert!(text.ends_with("\n\nplain text body"), "{text}");

    let links = ok(call(
        &tools,
        "browser_links",
        json!({ "url": format!("http://{site}/links") }),
    )
    .await);
    assert_eq!(
        links,
        format!("The article <http://{site}/article>\nExample <https://example.com/x?y=1>")
    );

    let scraped = ok(call(
        &tools,
        "browser_scrape",
        json!({ "url": format!("http://{site}/links"), "selectors": [".price"] }),
    )
    .await);
    let scraped: serde_json::Value = serde_json::from_str(&scraped).unwrap();
    assert_eq!(scraped[0]["elements"][0]["text"], "12.50");
    assert_eq!(
        scraped[0]["elements"][1]["attributes"]["data-currency"],
        "USD"
    );

    let saved = ok(call(
        &tools,
        "browser_screenshot",
        json!({ "url": format!("http://{site}/tall"), "width": 640, "height": 480 }),
    )
    .await);
    let path = saved.rsplit(" to ").next().unwrap();
    let image = std::fs::read(path).unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(&image[..]))
        .read_info()
        .unwrap();
    assert_eq!((reader.info().width, reader.info().height), (640, 480));

    let invalid = call(
        &tools,
        "browser_scrape",
        json!({ "url": article, "selectors": [] }),
    )
    .await;
    assert!(
        invalid.is_error,
        "the schema refuses an empty selector list"
    );
}

/// The same check for the browser tools and the plain fetch.
async fn assert_denied(tools: &ToolRegistry, url: &str, reason: &str) {
    for name in ["browser_markdown", "web_fetch"] {
        let outcome = call(tools, name, json!({ "url": url })).await;
        assert!(outcome.is_error, "{name} {url}: {}", outcome.content);
        assert!(
            outcome.content.contains(reason),
            "{name} {url}: {}",
            outcome.content
        );
    }
}

#[tokio::test]
async fn the_egress_policy_refuses_loopback_private_and_metadata_addresses_even_through_redirects()
{
    let site = serve_site().await;
    let dir = tempfile::tempdir().unwrap();
    let strict = registry(EgressPolicy::default(), dir.path());
    assert_denied(
        &strict,
        &format!("http://{site}/article"),
        "a loopback address",
    )
    .await;
    assert_denied(
        &strict,
        &format!("http://localhost:{}/article", site.port()),
        "a loopback address",
    )
    .await;
    assert_denied(&strict, "http://10.0.0.1/", "a private address").await;
    assert_denied(
        &strict,
        "http://169.254.169.254/latest/meta-data/",
        "a cloud metadata address",
    )
    .await;
    assert_denied(
        &strict,
        "http://[::ffff:169.254.169.254]/",
        "a cloud metadata address",
    )
    .await;
    assert_denied(&strict, "file:///etc/passwd", "scheme is not allowed").await;

    // Loopback allowed: the page loads, but a redirect to the metadata
    // service, or to a host on the deny list, is refused all the same.
    let allowed = registry(loopback_allowed().deny_host("localhost"), dir.path());
    let to_metadata = format!("http://{site}/redirect?to=http://169.254.169.254/latest/meta-data/");
    assert_denied(&allowed, &to_metadata, "a cloud metadata address").await;
    let to_denied = format!(
        "http://{site}/redirect?to=http://localhost:{}/article",
        site.port()
    );
    assert_denied(&allowed, &to_denied, "localhost is on the deny list").await;
    let fine = format!("http://{site}/redirect?to=/article");
    ok(call(&allowed, "browser_markdown", json!({ "url": fine })).await);
    ok(call(&allowed, "web_fetch", json!({ "url": fine })).await);
}

#[tokio::test]
async fn a_page_cannot_send_data_to_a_denied_host() {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let site: SocketAddr = serve_site_recording(hits.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let tools = registry(loopback_allowed().deny_host("localhost"), dir.path());
    // The page at 127.0.0.1 embeds an image from localhost (the same server,
    // reachable, but denied by name): the request must never arrive.
    let leak = format!("http://localhost:{}/text?secret=42", site.port());
    let page = format!("http://{site}/exfiltrate?to={leak}");
    let markdown = ok(call(&tools, "browser_markdown", json!({ "url": page })).await);
    assert!(markdown.contains("Hello"), "{markdown}");
    let hits = hits.lock().unwrap().clone();
    assert!(
        hits.iter().any(|h| h.starts_with("/exfiltrate")),
        "{hits:?}"
    );
    assert!(!hits.iter().any(|h| h.starts_with("/text")), "{hits:?}");
}
