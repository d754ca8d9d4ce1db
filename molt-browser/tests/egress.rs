//! The egress policy inside a real headless Chromium: every way a page can
//! reach the network passes it, not only the page's own subresources.

mod support;

use molt_browser::{Browser, EgressPolicy, LaunchOptions, Timeouts};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{serve_site_on, serve_site_recording};

/// What reached the sink at 127.0.0.2.
#[derive(Debug)]
struct Leaks {
    /// HTTP requests (WebSocket handshakes included), by path.
    requests: Vec<String>,
    /// Whether a UDP packet (WebRTC's STUN) arrived.
    udp: bool,
}

/// Opens `/leaky` in a page policed by `policy` and waits until every
/// attempt it makes has settled.
async fn leaks(browser: &Browser, policy: EgressPolicy) -> Leaks {
    let site: SocketAddr = serve_site_recording(Arc::default()).await;
    let hits = Arc::new(Mutex::new(Vec::new()));
    let sink = serve_site_on([127, 0, 0, 2].into(), hits.clone()).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let stun = udp.local_addr().unwrap().port();

    let page = browser.new_policed_page(Arc::new(policy)).await.unwrap();
    let url = format!(
        "http://{site}/leaky?stun={stun}&to={}&frame={}",
        urlencode(&format!("http://{sink}")),
        urlencode(&format!("http://localhost:{}", site.port())),
    );
    page.goto(&url).await.unwrap();
    let settled: Vec<String> =
        tokio::time::timeout(Duration::from_secs(20), page.evaluate("window.settled"))
            .await
            .expect("every attempt settles")
            .unwrap();
    assert_eq!(settled.len(), 4, "{settled:?}");

    let requests = hits.lock().unwrap().clone();
    Leaks {
        requests,
        udp: tokio::time::timeout(Duration::from_millis(500), udp.recv(&mut [0; 1500]))
            .await
            .is_ok(),
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The page's own origin and the iframe's (`localhost`) are allowed; the sink
/// on 127.0.0.2 is a loopback address no rule allows.
fn page_and_frame_allowed() -> EgressPolicy {
    EgressPolicy::default()
        .allow_network("127.0.0.1/32".parse().unwrap())
        .allow_network("::1/128".parse().unwrap())
}

async fn launch(webrtc_udp: bool) -> Browser {
    Browser::launch(LaunchOptions {
        webrtc_udp,
        ..LaunchOptions::default()
    })
    .await
    .expect("Chromium starts (./scripts/test installs it)")
}

#[tokio::test]
async fn frames_workers_websockets_and_webrtc_cannot_reach_a_denied_address() {
    // With the sink allowed (and WebRTC's UDP let out), every attempt
    // arrives: the page really makes them.
    let open = launch(true).await;
    let sink_allowed = page_and_frame_allowed().allow_network("127.0.0.2/32".parse().unwrap());
    let arrived = leaks(&open, sink_allowed).await;
    for path in [
        "/from-frame-image",
        "/from-frame-fetch",
        "/from-worker",
        "/socket",
    ] {
        assert!(
            arrived.requests.iter().any(|hit| hit == path),
            "{path}: {arrived:?}"
        );
    }
    assert!(arrived.udp, "{arrived:?}");
    drop(open);

    // Denied, in a browser launched as by default, none arrives.
    let browser = launch(false).await;
    let denied = leaks(&browser, page_and_frame_allowed()).await;
    assert!(denied.requests.is_empty() && !denied.udp, "{denied:?}");
}

#[tokio::test]
async fn a_name_that_resolves_differently_for_the_browser_reaches_only_the_checked_address() {
    // The browser's resolver maps `localhost` to 127.0.0.2 while the
    // policy's resolver sees 127.0.0.1: what DNS rebinding does between a
    // check and the connection.
    let browser = Browser::launch(LaunchOptions {
        extra_args: vec!["--host-resolver-rules=MAP localhost 127.0.0.2".into()],
        ..LaunchOptions::default()
    })
    .await
    .expect("Chromium starts");
    let hits = Arc::new(Mutex::new(Vec::new()));
    let sink = serve_site_on([127, 0, 0, 2].into(), hits.clone()).await;
    let rebound = |marker: &str| format!("http://localhost:{}/text?{marker}", sink.port());
    let policy = Arc::new(page_and_frame_allowed());

    // Checking each request and letting the browser connect: it reaches the
    // address the check never saw.
    let mut checked_only = browser.new_isolated_page().await.unwrap();
    checked_only.enforce_egress(policy.clone()).await.unwrap();
    checked_only.goto(&rebound("checked")).await.unwrap();
    assert!(hits.lock().unwrap().contains(&"/text?checked".to_owned()));

    // A policed page's connections are made by the proxy, to the address it
    // checked (where nothing listens on that port).
    let policed = browser.new_policed_page(policy).await.unwrap();
    let _ = policed.goto(&rebound("proxied")).await;
    let hits = hits.lock().unwrap().clone();
    assert!(!hits.iter().any(|hit| hit.contains("proxied")), "{hits:?}");
}

#[tokio::test]
async fn a_remote_browser_polices_frames_and_workers_request_by_request() {
    // Connected over CDP only, as to a remote browser: no proxy can be set,
    // and each frame or worker is policed through the Fetch domain.
    let local = launch(false).await;
    let remote = Browser::connect(local.ws_url(), Timeouts::default())
        .await
        .unwrap();
    let sink_allowed = page_and_frame_allowed().allow_network("127.0.0.2/32".parse().unwrap());
    let arrived = leaks(&remote, sink_allowed).await;
    let from_frame_or_worker = ["/from-frame-image", "/from-frame-fetch", "/from-worker"];
    for path in from_frame_or_worker {
        assert!(
            arrived.requests.iter().any(|hit| hit == path),
            "{path}: {arrived:?}"
        );
    }

    let denied = leaks(&remote, page_and_frame_allowed()).await;
    for path in from_frame_or_worker {
        assert!(
            !denied.requests.iter().any(|hit| hit == path),
            "{path}: {denied:?}"
        );
    }
}
