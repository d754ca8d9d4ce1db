//! The operator's page at `/_admin/`: one static page with no external
//! resources, driving the admin API from the browser.
//!
//! It is guarded like the API ([`crate::admin::authorize`]). Without
//! Cloudflare Access, the operator opens `/_admin/?token=<gateway token>`
//! once: the answer is a redirect to `/_admin/` that drops the token from the
//! address and sets an HttpOnly, SameSite=Strict session cookie (a hash of the
//! token and the time, see [`crate::auth::session_value`]; it lasts 12 hours)
//! that the page's API calls carry.

use crate::admin::TokenQuery;
use crate::auth::{SESSION_COOKIE, session_value};
use crate::server::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::sync::Arc;

const PAGE: &str = include_str!("../ui/admin.html");

/// The page may run its own inline script and style, and talk to this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /_admin/` (the guard has let the operator through): the page, or,
/// signed in with `?token=` (without Access), a redirect that trades the
/// token in the address for a session cookie.
pub async fn page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if query.token.is_some() && state.access.is_none() {
        let https = headers
            .get("x-forwarded-proto")
            .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
        let secure = if https { "; Secure" } else { "" };
        let issued = crate::protocol::now_ms() / 1000;
        let cookie = format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            session_value(&state.token, issued),
            crate::auth::SESSION_TTL.as_secs()
        );
        let headers = [
            (header::LOCATION, "/_admin/".to_owned()),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ];
        return (StatusCode::SEE_OTHER, headers).into_response();
    }
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, Html(PAGE)).into_response()
}

/// `GET /_admin`: on to `/_admin/`, keeping the query.
pub async fn without_slash(request: axum::extract::Request) -> Redirect {
    match request.uri().query() {
        Some(query) => Redirect::to(&format!("/_admin/?{query}")),
        None => Redirect::to("/_admin/"),
    }
}
