//! Chat platforms' webhook deliveries (`/hooks/*`), checked at the edge with
//! the gateway's own code ([`molt_core::webhook`]): one without its
//! platform's proof, or for a channel not in webhook mode, is refused here,
//! so a stranger cannot wake a sleeping container. The gateway checks again.

use crate::settings::value;
use molt_core::Secret;
use molt_core::webhook::{
    SLACK_PATH, SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER, TELEGRAM_PATH,
    TELEGRAM_SECRET_HEADER, telegram_secret, verify_slack_signature,
};
use worker::{Env, Method, Request, Response, Result};

/// The largest body a platform's delivery may have (Telegram's and Slack's
/// are a few kilobytes).
const MAX_BODY: usize = 1024 * 1024;

/// `None` when the delivery may go on to the gateway, else the refusal.
pub async fn refusal(req: &Request, env: &Env, path: &str) -> Result<Option<Response>> {
    let refuse = |status: u16, message: &str| Response::error(message, status).map(Some);
    if path != TELEGRAM_PATH && path != SLACK_PATH {
        return refuse(404, "Not Found");
    }
    if req.method() != Method::Post {
        return refuse(405, "Method Not Allowed");
    }
    if path == TELEGRAM_PATH {
        // Webhook mode needs both; otherwise the gateway polls Telegram.
        let (Some(token), Some(_)) = (value(env, "TELEGRAM_BOT_TOKEN"), value(env, "WORKER_URL"))
        else {
            return refuse(404, "Telegram is not in webhook mode");
        };
        let given = req
            .headers()
            .get(TELEGRAM_SECRET_HEADER)?
            .unwrap_or_default();
        return match telegram_secret(&Secret::new(token)).matches(&given) {
            true => Ok(None),
            false => refuse(403, "Forbidden"),
        };
    }
    // The Events API: the signing secret without Socket Mode's app token.
    let (Some(secret), None) = (
        value(env, "SLACK_SIGNING_SECRET"),
        value(env, "SLACK_APP_TOKEN"),
    ) else {
        return refuse(404, "Slack is not on the Events API");
    };
    let declared = req.headers().get("content-length")?;
    if declared.and_then(|n| n.parse::<usize>().ok()).unwrap_or(0) > MAX_BODY {
        return refuse(413, "Payload Too Large");
    }
    // A copy is read; the request itself goes on with its body.
    let body = req.clone()?.bytes().await?;
    if body.len() > MAX_BODY {
        return refuse(413, "Payload Too Large");
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (timestamp, signature) = (
        header(SLACK_TIMESTAMP_HEADER),
        header(SLACK_SIGNATURE_HEADER),
    );
    let now = crate::net::now_ms() / 1000;
    match verify_slack_signature(
        &Secret::new(secret),
        timestamp.as_deref(),
        signature.as_deref(),
        &body,
        now,
    ) {
        Ok(()) => Ok(None),
        Err(err) => {
            worker::console_warn!("slack: a request not signed by Slack was refused: {err}");
            refuse(401, "not signed by Slack")
        }
    }
}
