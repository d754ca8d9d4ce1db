//! Between the client and its sandbox: requests are passed through (a
//! WebSocket's frames, close codes and reasons included, without a copy in
//! the Worker), a browser gets the loading page while the container starts,
//! and a failure becomes a message a person can act on.

use crate::pages;
use crate::sandbox::{FAILED_HEADER, OP_HEADER, USER_HEADER};
use worker::wasm_bindgen::JsCast;
use worker::{Request, Response, Result, Stub, WebSocketPair};

/// The longest close reason a WebSocket close frame carries, in bytes.
pub const MAX_CLOSE_REASON: usize = 123;

/// `req` with the URL `url`: same method, headers and body.
pub fn retarget(req: &Request, url: &str) -> Result<Request> {
    let init: &worker::web_sys::RequestInit = req.inner().unchecked_ref();
    let inner = worker::web_sys::Request::new_with_str_and_init(url, init)?;
    Ok(inner.into())
}

/// `response` with header `name` set. A response that came from elsewhere
/// (its headers immutable) is rebuilt around the same body; a WebSocket
/// upgrade is left as it is.
pub fn with_header(mut response: Response, name: &str, value: &str) -> Result<Response> {
    if response.status_code() == 101 || response.headers_mut().set(name, value).is_ok() {
        return Ok(response);
    }
    let rebuilt: worker::web_sys::Response = response.into();
    let mut response = Response::from(rebuilt);
    response.headers_mut().set(name, value)?;
    Ok(response)
}

/// Whether `req` asks to upgrade to a WebSocket.
pub fn is_websocket(req: &Request) -> bool {
    (req.headers().get("upgrade").ok().flatten())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether `req` is a browser navigating (it wants a page).
pub fn wants_html(req: &Request) -> bool {
    req.method() == worker::Method::Get
        && (req.headers().get("accept").ok().flatten()).is_some_and(|v| v.contains("text/html"))
}

/// Asks `user`'s sandbox to do `op` (`status`, `wake`, `backup`).
pub async fn sandbox_op(stub: &Stub, user: &str, op: &str) -> Result<Response> {
    let req = Request::new("http://sandbox/", worker::Method::Get)?;
    req.headers().set(OP_HEADER, op)?;
    req.headers().set(USER_HEADER, user)?;
    stub.fetch_with_request(req).await
}

/// The gateway state `user`'s sandbox reports.
pub async fn gateway_state(stub: &Stub, user: &str) -> Result<String> {
    let mut response = sandbox_op(stub, user, "status").await?;
    let body: serde_json::Value = response.json().await?;
    Ok(body["gateway"].as_str().unwrap_or("not_running").to_owned())
}

/// Passes `req` to `user`'s sandbox, as client `client_ip`.
pub async fn pass_through(
    req: Request,
    stub: &Stub,
    user: &str,
    client_ip: Option<&str>,
    request_id: &str,
) -> Result<Response> {
    let websocket = is_websocket(&req);
    let forwarded = retarget(&req, req.url()?.as_ref())?;
    let headers = forwarded.headers();
    // Only the Worker speaks for the client: its own claims about who it is
    // (forwarded addresses) and the Worker's internal headers are dropped.
    let claimed = |name: &String| {
        name.starts_with("x-molt-") || name == "x-forwarded-for" || name == "forwarded"
    };
    for name in headers.keys().filter(claimed).collect::<Vec<_>>() {
        headers.delete(&name)?;
    }
    headers.set(USER_HEADER, user)?;
    headers.set("x-request-id", request_id)?;
    if let Some(ip) = client_ip {
        headers.set("x-forwarded-for", ip)?;
    }
    let response = stub.fetch_with_request(forwarded).await;
    if !websocket {
        return response;
    }
    match response {
        Ok(response) if response.status_code() == 101 => Ok(response),
        Ok(mut response) => {
            let reason = match response.headers().get(FAILED_HEADER)? {
                Some(failed) => failed,
                None => format!(
                    "the gateway refused the connection ({})",
                    response.status_code()
                ),
            };
            let _ = response.text().await;
            close_at_once(1011, &reason)
        }
        Err(err) => close_at_once(1011, &format!("the gateway is unreachable: {err}")),
    }
}

/// Accepts a WebSocket and closes it at once with `code` and `reason` (cut
/// to 123 bytes): how a WebSocket client hears why it cannot be served.
pub fn close_at_once(code: u16, reason: &str) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    pair.server.close(Some(code), Some(close_reason(reason)))?;
    Response::from_websocket(pair.client)
}

/// `reason` cut to [`MAX_CLOSE_REASON`] bytes, on a character boundary.
pub fn close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The loading page, never cached.
pub fn loading_page() -> Result<Response> {
    let mut response = Response::from_html(pages::LOADING)?;
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.len() >= 122);
        assert!(long.starts_with(cut));
    }
}
