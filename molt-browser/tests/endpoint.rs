//! The authenticated `/cdp` endpoint in front of real headless Chromium.

mod support;

use molt_browser::error::ProtocolErrorCode;
use molt_browser::launch::LaunchOptions;
use molt_browser::{
    Browser, BrowserSource, CdpEndpoint, CdpError, EgressPolicy, SharedBrowser, Timeouts,
};
use molt_core::Secret;
use std::net::SocketAddr;
use std::sync::Arc;

async fn serve(endpoint: CdpEndpoint) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, endpoint.router()).await.unwrap() });
    addr
}

fn launched() -> Option<Arc<SharedBrowser>> {
    Some(Arc::new(SharedBrowser::new(BrowserSource::Launch(
        LaunchOptions::default(),
    ))))
}

async fn status(url: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new().get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn refuses_without_configuration_or_with_a_wrong_secret() {
    let unconfigured = serve(CdpEndpoint::new(None, launched())).await;
    assert_eq!(
        status(
            &format!("http://{unconfigured}/cdp/json/version?secret=x"),
            None
        )
        .await
        .0,
        503
    );
    let no_browser = serve(CdpEndpoint::new(Some(Secret::new("s3cret")), None)).await;
    assert_eq!(
        status(
            &format!("http://{no_browser}/cdp/json/version?secret=s3cret"),
            None
        )
        .await
        .0,
        503
    );

    let endpoint = serve(CdpEndpoint::new(Some(Secret::new("s3cret")), launched())).await;
    for path in [
        "/cdp/json/version",
        "/cdp/json/list",
        "/cdp/json/version?secret=wrong",
        "/cdp/json/list?secret=s3cre",
    ] {
        assert_eq!(
            status(&format!("http://{endpoint}{path}"), None).await.0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        status(
            &format!("http://{endpoint}/cdp/json/version"),
            Some("wrong")
        )
        .await
        .0,
        401
    );
    // The WebSocket itself refuses before upgrading.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{endpoint}/cdp?secret=wrong")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cdp_client_drives_the_browser_through_the_relay() {
    let site = support::serve_site().await;
    // The whole browser obeys a policy that opens the site's address only.
    let policy = EgressPolicy::default().allow_network("127.0.0.1/32".parse().unwrap());
    let policed = SharedBrowser::policed(
        BrowserSource::Launch(LaunchOptions::default()),
        Arc::new(policy),
    );
    let endpoint = serve(CdpEndpoint::new(
        Some(Secret::new("s3cret")),
        Some(Arc::new(policed)),
    ))
    .await;

    let (code, version) = status(
        &format!("http://{endpoint}/cdp/json/version?secret=s3cret"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        version["webSocketDebuggerUrl"],
        format!("ws://{endpoint}/cdp?secret=s3cret")
    );
    assert!(version["Browser"].as_str().unwrap().contains("Chrome"));
    // Presented as a header, the secret is not written into the URLs.
    let (_, by_header) = status(
        &format!("http://{endpoint}/cdp/json/version"),
        Some("s3cret"),
    )
    .await;
    assert_eq!(
        by_header["webSocketDebuggerUrl"],
        format!("ws://{endpoint}/cdp")
    );

    // Our own client, discovering through the endpoint.
    let browser = Browser::discover(
        &format!("http://{endpoint}/cdp/?secret=s3cret"),
        Timeouts::default(),
    )
    .await;
    // discover() joins json/version onto the path, dropping the query: the
    // secret must then come in the URL given to connect().
    assert!(
        matches!(browser, Err(CdpError::Http(_))),
        "401 without the secret"
    );
    let browser = Browser::connect(
        version["webSocketDebuggerUrl"].as_str().unwrap(),
        Timeouts::default(),
    )
    .await
    .unwrap();
    let page = browser.new_page().await.unwrap();
    page.goto(&format!("http://{site}/article")).await.unwrap();
    assert_eq!(page.title().await.unwrap(), "Molt test article");
    // What the relay refuses comes back as a protocol error, and the
    // connection goes on.
    for (url, reason) in [
        ("file:///etc/hostname", "only http(s)"),
        ("http://169.254.169.254/", "egress policy"),
    ] {
        match page.goto(url).await {
            Err(CdpError::Protocol { code, message, .. }) => {
                assert_eq!(code, ProtocolErrorCode::ServerError);
                assert!(message.contains(reason), "{message}");
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    let refused = browser
        .connection()
        .call("SystemInfo.getInfo", serde_json::json!({}), None)
        .await;
    assert!(
        matches!(
            &refused,
            Err(CdpError::Protocol {
                code: ProtocolErrorCode::MethodNotFound,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(page.title().await.unwrap(), "Molt test article");

    let (code, list) = status(
        &format!("http://{endpoint}/cdp/json/list?secret=s3cret"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == page.target_id())
        .expect("the page is listed");
    assert_eq!(entry["type"], "page");
    assert_eq!(entry["title"], "Molt test article");
    let page_url = entry["webSocketDebuggerUrl"].as_str().unwrap();
    assert_eq!(
        page_url,
        format!(
            "ws://{endpoint}/cdp/devtools/page/{}?secret=s3cret",
            page.target_id()
        )
    );
    // A page-level socket through the relay: commands without a session id.
    let direct = molt_browser::connection::Connection::connect(
        page_url,
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    let title = direct
        .call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": "document.title", "returnByValue": true }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(title["result"]["value"], "Molt test article");
}

/// A stand-in for the browser's CDP socket that answers context creation
/// and download settings, and records every request in arrival order.
async fn recording_browser() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use futures::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/devtools/browser/fake",
        listener.local_addr().unwrap()
    );
    let seen: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(message)) = socket.next().await {
                    let Ok(text) = message.into_text() else {
                        continue;
                    };
                    let request: serde_json::Value = serde_json::from_str(&text).unwrap();
                    record.lock().unwrap().push(request.clone());
                    let result = match request["method"].as_str() {
                        Some("Target.createBrowserContext") => {
                            serde_json::json!({ "browserContextId": "CTX1" })
                        }
                        _ => serde_json::json!({}),
                    };
                    let answer = serde_json::json!({ "id": request["id"], "result": result });
                    let message = tokio_tungstenite::tungstenite::Message::text(answer.to_string());
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_context_a_client_creates_refuses_downloads_before_the_client_hears_of_it() {
    use futures::{SinkExt, StreamExt};
    let (browser_url, seen) = recording_browser().await;
    let browser = SharedBrowser::new(BrowserSource::Connect {
        url: browser_url,
        timeouts: Timeouts::default(),
    });
    let endpoint = serve(CdpEndpoint::new(
        Some(Secret::new("s3cret")),
        Some(Arc::new(browser)),
    ))
    .await;
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{endpoint}/cdp?secret=s3cret"))
            .await
            .unwrap();
    let create = serde_json::json!({ "id": 1, "method": "Target.createBrowserContext",
        "params": { "disposeOnDetach": true, "proxyServer": "direct://" } });
    client
        .send(tokio_tungstenite::tungstenite::Message::text(
            create.to_string(),
        ))
        .await
        .unwrap();
    let answer = loop {
        let message = client.next().await.unwrap().unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(&message.into_text().unwrap()).unwrap();
        if answer["id"] == 1 {
            break answer;
        }
    };
    assert_eq!(answer["result"]["browserContextId"], "CTX1");
    // By the time the client has its context, downloads in it are denied,
    // and the proxy it asked for never reached the browser.
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().filter_map(|r| r["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["Target.createBrowserContext", "Browser.setDownloadBehavior"]
    );
    assert_eq!(
        seen[0]["params"],
        serde_json::json!({ "disposeOnDetach": true })
    );
    assert_eq!(
        seen[1]["params"],
        serde_json::json!({ "behavior": "deny", "browserContextId": "CTX1" })
    );
    assert!(seen[1]["id"].as_u64().unwrap() >= molt_browser::firewall::RELAY_ID_BASE);
}
