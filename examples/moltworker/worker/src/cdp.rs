//! `/cdp`: the Chrome DevTools Protocol of a Browser Rendering session, for
//! the container's browser tools and any CDP client (Playwright's
//! `connectOverCDP`, Puppeteer's `connect`), behind `CDP_SECRET`.
//!
//! The Worker acquires a session from the `BROWSER` binding and hands the
//! client the binding's own WebSocket: CDP's text frames pass through as
//! they are. A session ends when its client sends `Browser.close`, or a
//! minute after its last command.

use crate::net::within;
use crate::settings::{BROWSER_BINDING, Settings};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use worker::{Env, Fetcher, Method, Request, RequestInit, Response, Result};

/// How long Browser Rendering has to give a session.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// A session's life without a command, in milliseconds.
const KEEP_ALIVE_MS: u32 = 60_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Acquired {
    session_id: String,
}

/// Serves a `/cdp*` request.
pub async fn handle(req: Request, env: &Env, settings: &Settings) -> Result<Response> {
    let Some(secret) = &settings.cdp_secret else {
        return refuse(
            503,
            "CDP endpoint not configured",
            Some("Set CDP_SECRET with: npx wrangler secret put CDP_SECRET"),
        );
    };
    let url = req.url()?;
    let given = (url.query_pairs())
        .find(|(key, _)| key == "secret")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !secret.matches(&given) {
        return refuse(401, "Unauthorized", None);
    }
    let Ok(browser) = env.get_binding::<Fetcher>(BROWSER_BINDING) else {
        return refuse(
            503,
            "Browser Rendering not configured",
            Some("Add \"browser\": { \"binding\": \"BROWSER\" } to wrangler.jsonc"),
        );
    };
    match url.path().trim_end_matches('/') {
        "/cdp" if crate::proxy::is_websocket(&req) => connect(&browser).await,
        "/cdp" => refuse(
            426,
            "Upgrade Required",
            Some("Connect with a WebSocket (CDP) client"),
        ),
        "/cdp/json/version" => {
            let ws = format!(
                "{}://{}/cdp?secret={}",
                if url.scheme() == "https" { "wss" } else { "ws" },
                url.authority(),
                worker::url::form_urlencoded::byte_serialize(given.as_bytes()).collect::<String>(),
            );
            Response::from_json(&json!({
                "Browser": "Cloudflare Browser Rendering",
                "Protocol-Version": "1.3",
                "webSocketDebuggerUrl": ws,
            }))
        }
        // Targets belong to a session, and a session starts with its connection.
        "/cdp/json/list" | "/cdp/json" => Response::from_json(&json!([])),
        _ => refuse(
            404,
            "Not found",
            Some("/cdp, /cdp/json/version, /cdp/json/list"),
        ),
    }
}

/// Acquires a session and returns its devtools WebSocket to the client.
async fn connect(browser: &Fetcher) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let acquire = browser.fetch(
        format!("https://browser/v1/devtools/browser?keep_alive={KEEP_ALIVE_MS}"),
        Some(init),
    );
    let mut acquired = match within(ACQUIRE_TIMEOUT, acquire).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return unavailable(&err.to_string()),
        Err(err) => return unavailable(&err.to_string()),
    };
    if acquired.status_code() != 200 {
        let status = acquired.status_code();
        let body = acquired.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        return unavailable(&format!("{status}: {body}"));
    }
    let Acquired { session_id } = acquired.json().await?;
    let req = Request::new(
        &format!("https://browser/v1/devtools/browser/{session_id}"),
        Method::Get,
    )?;
    req.headers().set("upgrade", "websocket")?;
    let response = match within(ACQUIRE_TIMEOUT, browser.fetch_request(req)).await {
        Ok(response) => response?,
        Err(err) => return unavailable(&format!("the session's devtools: {err}")),
    };
    if response.status_code() != 101 {
        return unavailable(&format!(
            "the session's devtools answered {}",
            response.status_code()
        ));
    }
    Ok(response)
}

fn unavailable(details: &str) -> Result<Response> {
    let body = json!({
        "error": "Browser Rendering gave no session",
        "details": details,
        "hint": "Check the account's Browser Rendering limits (concurrent sessions, new sessions per minute).",
    });
    Ok(Response::from_json(&body)?.with_status(503))
}

fn refuse(status: u16, error: &str, hint: Option<&str>) -> Result<Response> {
    let body = match hint {
        Some(hint) => json!({ "error": error, "hint": hint }),
        None => json!({ "error": error }),
    };
    Ok(Response::from_json(&body)?.with_status(status))
}
