//! The CDP client against real headless Chromium.

mod support;

use molt_browser::page::MAX_HTML_CHARS;
use molt_browser::{
    Browser, CdpError, ImageFormat, NavigateOptions, NetError, PdfOptions, ProtocolErrorCode,
    ScreenshotOptions, Timeouts, Viewport, WaitUntil,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{article_markdown, launch, serve_site};

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).expect("PNG pixels decode");
    (frame.width, frame.height)
}

#[tokio::test]
async fn reads_a_page_as_markdown_html_links_and_scraped_elements() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser.new_page().await.unwrap();

    let navigation = page.goto(&format!("http://{site}/article")).await.unwrap();
    assert_eq!(navigation.url, format!("http://{site}/article"));
    assert_eq!(navigation.status, Some(200));
    assert_eq!(page.markdown().await.unwrap(), article_markdown(site));
    let html = page.html().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>\n<html>"), "{html}");
    assert!(
        html.contains("<p>Added by script.</p>"),
        "rendered, not raw"
    );

    page.goto(&format!("http://{site}/links")).await.unwrap();
    let links = page.links().await.unwrap();
    let pairs: Vec<(&str, &str)> = links
        .iter()
        .map(|l| (l.url.as_str(), l.text.as_str()))
        .collect();
    let article = format!("http://{site}/article");
    assert_eq!(
        pairs,
        [
            (article.as_str(), "The article"),
            ("https://example.com/x?y=1", "Example")
        ]
    );

    let scraped = page.scrape(&[".price", "#missing"]).await.unwrap();
    assert_eq!(scraped[0].selector, ".price");
    let prices: Vec<(&str, &str)> = scraped[0]
        .elements
        .iter()
        .map(|e| (e.text.as_str(), e.attributes["data-currency"].as_str()))
        .collect();
    assert_eq!(prices, [("12.50", "EUR"), ("3", "USD")]);
    assert!(scraped[1].elements.is_empty());
    assert!(matches!(
        page.scrape(&["p[[["]).await,
        Err(CdpError::InvalidSelector { .. })
    ));

    let sum: f64 = page.evaluate("Promise.resolve(20 + 22)").await.unwrap();
    assert_eq!(sum, 42.0);
    assert!(matches!(
        page.evaluate::<serde_json::Value>("null.boom").await,
        Err(CdpError::JavaScript(message)) if message.contains("TypeError")
    ));

    // A string that is not valid Unicode (a lone surrogate) still reads.
    let lone: String = page.evaluate("'a' + '\\uD800' + 'b'").await.unwrap();
    assert_eq!(lone, "a\u{FFFD}b");

    // A page that grows past what is worth reading is cut, not fatal.
    page.evaluate::<()>("void document.body.append('x'.repeat(20 << 20))")
        .await
        .unwrap();
    assert_eq!(page.html().await.unwrap().len(), MAX_HTML_CHARS);
    assert!(page.markdown().await.unwrap().contains("xxxx"));
}

#[tokio::test]
async fn screenshots_come_in_the_requested_size_and_format_and_pdfs_print() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser.new_page().await.unwrap();
    page.set_viewport(Viewport::new(800, 600)).await.unwrap();
    page.goto(&format!("http://{site}/links")).await.unwrap();

    let viewport = page
        .screenshot(&ScreenshotOptions::default())
        .await
        .unwrap();
    assert_eq!(png_size(&viewport), (800, 600));

    let element = ScreenshotOptions {
        selector: Some("#box".into()),
        ..Default::default()
    };
    assert_eq!(
        png_size(&page.screenshot(&element).await.unwrap()),
        (200, 100)
    );

    page.goto(&format!("http://{site}/tall")).await.unwrap();
    let full = ScreenshotOptions {
        full_page: true,
        ..Default::default()
    };
    assert_eq!(
        png_size(&page.screenshot(&full).await.unwrap()),
        (800, 3000)
    );

    page.evaluate::<()>("void (document.body.firstChild.style.height = '40000px')")
        .await
        .unwrap();
    // A longer page is cut at the largest side a screenshot has.
    assert_eq!(
        png_size(&page.screenshot(&full).await.unwrap()),
        (800, molt_browser::page::MAX_SCREENSHOT_SIDE as u32)
    );

    let jpeg = ScreenshotOptions {
        format: ImageFormat::Jpeg { quality: 50 },
        ..Default::default()
    };
    let jpeg = page.screenshot(&jpeg).await.unwrap();
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");

    let missing = ScreenshotOptions {
        selector: Some("#nothing".into()),
        ..Default::default()
    };
    assert!(matches!(
        page.screenshot(&missing).await,
        Err(CdpError::NoSuchElement(_))
    ));

    let pdf = page.pdf(&PdfOptions::default()).await.unwrap();
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
}

#[tokio::test]
async fn user_agent_headers_and_cookies_reach_the_server() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser.new_isolated_page().await.unwrap();
    page.set_user_agent("MoltTest/1.0").await.unwrap();
    let headers = BTreeMap::from([("x-molt-test".to_owned(), "yes".to_owned())]);
    page.set_extra_headers(&headers).await.unwrap();
    let url = format!("http://{site}/headers");
    page.set_cookies(&[molt_browser::Cookie {
        name: "flavour".into(),
        value: "salt".into(),
        url: Some(url.clone()),
        ..Default::default()
    }])
    .await
    .unwrap();

    page.goto(&url).await.unwrap();
    let echoed: serde_json::Value = page
        .evaluate("JSON.parse(document.getElementById('headers').textContent)")
        .await
        .unwrap();
    assert_eq!(echoed["user-agent"], "MoltTest/1.0");
    assert_eq!(echoed["x-molt-test"], "yes");
    assert_eq!(echoed["cookie"], "flavour=salt");
    let cookies = page.cookies().await.unwrap();
    assert_eq!(cookies.len(), 1);
    assert_eq!(
        (cookies[0].name.as_str(), cookies[0].value.as_str()),
        ("flavour", "salt")
    );
}

#[tokio::test]
async fn navigation_failures_and_protocol_errors_are_typed() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser.new_page().await.unwrap();

    // A port nobody listens on: bind one, then free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = page.goto(&format!("http://{closed}/")).await;
    assert!(
        matches!(
            &refused,
            Err(CdpError::Navigation {
                error: NetError::ConnectionRefused,
                ..
            })
        ),
        "{refused:?}"
    );

    let options = NavigateOptions {
        wait_until: WaitUntil::Load,
        timeout: Duration::from_millis(1500),
    };
    let hanging = page
        .goto_with(&format!("http://{site}/hang"), options)
        .await;
    assert!(
        matches!(
            &hanging,
            Err(CdpError::NavigationTimeout {
                wait_until: WaitUntil::Load,
                ..
            })
        ),
        "{hanging:?}"
    );
    // The same page reaches DOMContentLoaded, and the page is still usable.
    let options = NavigateOptions {
        wait_until: WaitUntil::DomContentLoaded,
        ..options
    };
    page.goto_with(&format!("http://{site}/hang"), options)
        .await
        .unwrap();
    let options = NavigateOptions {
        wait_until: WaitUntil::NetworkIdle,
        timeout: Duration::from_secs(10),
    };
    page.goto_with(&format!("http://{site}/article"), options)
        .await
        .unwrap();
    assert_eq!(page.title().await.unwrap(), "Molt test article");

    // A download is not a page: the navigation is aborted, at once, and
    // nothing is saved where Chromium saves downloads when allowed to: its
    // HOME, which is its temporary profile, never the gateway's.
    let downloads = browser.profile_dir().unwrap().join("Downloads");
    let name = |n: u32| format!("molt-test-{}-{n}.bin", std::process::id());
    for (n, page) in [(1, &page), (2, &browser.new_isolated_page().await.unwrap())] {
        let download = page
            .goto(&format!("http://{site}/download?name={}", name(n)))
            .await;
        assert!(
            matches!(
                &download,
                Err(CdpError::Navigation {
                    error: NetError::Aborted,
                    ..
                })
            ),
            "{download:?}"
        );
    }
    // Allowed again, the same download is saved: the check looks in the right place.
    browser
        .connection()
        .call(
            "Browser.setDownloadBehavior",
            json!({ "behavior": "default" }),
            None,
        )
        .await
        .unwrap();
    let _ = page
        .goto(&format!("http://{site}/download?name={}", name(3)))
        .await;
    let saved = downloads.join(name(3));
    for _ in 0..100 {
        if saved.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saved.exists(), "{}", saved.display());
    std::fs::remove_file(saved).unwrap();
    assert!(!downloads.join(name(1)).exists() && !downloads.join(name(2)).exists());

    // A page closed while loading ends the wait with its own error, not a
    // timeout; and a command given up on is forgotten.
    let closing = browser.new_page().await.unwrap();
    let target = json!({ "targetId": closing.target_id() });
    let hang = NavigateOptions {
        timeout: Duration::from_secs(60),
        ..NavigateOptions::default()
    };
    let hanging = format!("http://{site}/hang");
    let (waited, _) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(20), closing.goto_with(&hanging, hang)),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            browser
                .connection()
                .call("Target.closeTarget", target, None)
                .await
        }
    );
    assert!(
        matches!(waited, Ok(Err(CdpError::PageClosed))),
        "{waited:?}"
    );
    let never = page.evaluate::<()>("new Promise(() => {})");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), never)
            .await
            .is_err()
    );
    assert_eq!(browser.connection().pending_commands(), 0);

    let unknown = page.call("Molt.noSuchMethod", json!({})).await;
    assert!(
        matches!(
            &unknown,
            Err(CdpError::Protocol {
                code: ProtocolErrorCode::MethodNotFound,
                ..
            })
        ),
        "{unknown:?}"
    );
    let bad_params = page.call("Page.navigate", json!({ "url": 42 })).await;
    assert!(
        matches!(
            &bad_params,
            Err(CdpError::Protocol {
                code: ProtocolErrorCode::InvalidParams,
                ..
            })
        ),
        "{bad_params:?}"
    );
    let server_error = page
        .call(
            "Runtime.evaluate",
            json!({ "expression": "1", "contextId": 987654 }),
        )
        .await;
    assert!(
        matches!(
            &server_error,
            Err(CdpError::Protocol {
                code: ProtocolErrorCode::ServerError,
                ..
            })
        ),
        "{server_error:?}"
    );
}

#[tokio::test]
async fn a_killed_browser_gives_a_typed_error_and_relaunches() {
    let site = serve_site().await;
    let mut browser = launch().await;
    let page = browser.new_page().await.unwrap();
    page.goto(&format!("http://{site}/article")).await.unwrap();

    let pid = browser.pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after_kill = page.goto(&format!("http://{site}/links")).await;
    assert!(
        matches!(after_kill, Err(CdpError::Closed { .. })),
        "{after_kill:?}"
    );
    assert!(!browser.is_connected());
    assert!(matches!(
        browser.new_page().await,
        Err(CdpError::Closed { .. })
    ));

    browser.relaunch().await.unwrap();
    assert_ne!(browser.pid(), Some(pid));
    let page = browser.new_page().await.unwrap();
    page.goto(&format!("http://{site}/article")).await.unwrap();
    assert_eq!(page.title().await.unwrap(), "Molt test article");
}

#[tokio::test]
async fn dropping_the_handle_leaves_no_chromium_process_or_profile() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser.new_page().await.unwrap();
    page.goto(&format!("http://{site}/article")).await.unwrap();
    let pid = browser.pid().unwrap();
    let profile = browser.profile_dir().unwrap().to_owned();
    let group = support::processes_in_group(pid);
    assert!(
        group.len() > 1,
        "a browser, its zygote and a renderer: {group:?}"
    );
    assert!(!support::processes_mentioning(&profile.to_string_lossy()).is_empty());

    drop(page);
    drop(browser);
    // Killed with SIGKILL: a renderer may take a moment to be gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !support::processes_in_group(pid).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(support::processes_in_group(pid), Vec::<u32>::new());
    assert_eq!(
        support::processes_mentioning(&profile.to_string_lossy()),
        Vec::<u32>::new()
    );
    assert!(!profile.exists(), "the temporary profile is removed");
}

#[tokio::test]
async fn connects_to_a_running_browser_by_websocket_or_by_discovery() {
    let site = serve_site().await;
    let launched = launch().await;
    let http = launched.http_url().unwrap().to_string();

    let discovered = Browser::discover(&http, Timeouts::default()).await.unwrap();
    assert_eq!(discovered.ws_url(), launched.ws_url());
    assert!(
        discovered
            .version()
            .await
            .unwrap()
            .product
            .contains("Chrome")
    );
    let page = discovered.new_page().await.unwrap();
    page.goto(&format!("http://{site}/article")).await.unwrap();
    assert_eq!(page.title().await.unwrap(), "Molt test article");

    let direct = Browser::connect(launched.ws_url(), Timeouts::default())
        .await
        .unwrap();
    assert!(
        direct
            .version()
            .await
            .unwrap()
            .protocol_version
            .starts_with('1')
    );

    let nothing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(matches!(
        Browser::discover(&format!("http://{nothing}"), Timeouts::default()).await,
        Err(CdpError::Http(_))
    ));
}
