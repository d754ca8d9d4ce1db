//! Applies an egress policy inside a browser page: every request the page
//! makes (the navigation, each redirect hop, every subresource) is paused
//! with the `Fetch` domain, checked, and then continued or failed.

use crate::connection::Connection;
use crate::egress::EgressPolicy;
use crate::error::CdpError;
use crate::page::LastDenial;
use serde_json::{Value, json};
use std::sync::{Arc, Weak};
use tokio::task::AbortHandle;
use url::Url;

/// Schemes that never reach the network.
const LOCAL_SCHEMES: [&str; 3] = ["data", "blob", "about"];

/// Starts policing one page's session; the returned task runs until aborted
/// or the connection closes.
pub(crate) async fn start(
    connection: Arc<Connection>,
    session_id: String,
    main_frame_id: String,
    policy: Arc<EgressPolicy>,
    last_denial: LastDenial,
) -> Result<AbortHandle, CdpError> {
    let mut paused = connection.subscribe(Some(&session_id), &["Fetch.requestPaused"]);
    connection
        .call(
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": "*", "requestStage": "Request" }] }),
            Some(&session_id),
        )
        .await?;
    // Weak, so a page left undropped does not keep the socket open.
    let connection = Arc::downgrade(&connection);
    let task = tokio::spawn(async move {
        while let Some(event) = paused.next().await {
            // Each request is decided on its own task: a slow DNS answer for
            // one must not hold up the others.
            tokio::spawn(decide(
                connection.clone(),
                session_id.clone(),
                main_frame_id.clone(),
                policy.clone(),
                last_denial.clone(),
                event.params,
            ));
        }
    });
    Ok(task.abort_handle())
}

async fn decide(
    connection: Weak<Connection>,
    session_id: String,
    main_frame_id: String,
    policy: Arc<EgressPolicy>,
    last_denial: LastDenial,
    params: Value,
) {
    let request_id = params["requestId"].clone();
    let url = params["request"]["url"].as_str().unwrap_or_default();
    let verdict = match Url::parse(url) {
        Ok(url) if LOCAL_SCHEMES.contains(&url.scheme()) => Ok(()),
        Ok(url) => policy.check(&url).await,
        Err(_) => Err(crate::egress::EgressError::InvalidUrl(url.to_owned())),
    };
    let Some(connection) = connection.upgrade() else {
        return;
    };
    match verdict {
        Ok(()) => connection.notify(
            "Fetch.continueRequest",
            json!({ "requestId": request_id }),
            Some(&session_id),
        ),
        Err(denied) => {
            tracing::info!(reason = %denied, "a page's request was refused by the egress policy");
            // A page target's main frame has the target's id.
            if params["resourceType"] == "Document" && params["frameId"] == main_frame_id {
                *last_denial.lock().unwrap_or_else(|p| p.into_inner()) = Some(denied);
            }
            connection.notify(
                "Fetch.failRequest",
                json!({ "requestId": request_id, "errorReason": "BlockedByClient" }),
                Some(&session_id),
            );
        }
    }
}
