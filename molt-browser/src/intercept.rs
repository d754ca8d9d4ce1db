//! Applies an egress policy inside a browser page: every request the page
//! makes (the navigation, each redirect hop, every subresource) is paused
//! with the `Fetch` domain, checked, and then continued or failed. Frames
//! and workers in other processes are attached to as they start, paused
//! until their own requests are policed the same way.

use crate::connection::{Connection, EventStream};
use crate::egress::EgressPolicy;
use crate::error::CdpError;
use crate::page::LastDenial;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::task::{AbortHandle, JoinSet};
use url::Url;

/// Schemes that never reach the network.
const LOCAL_SCHEMES: [&str; 3] = ["data", "blob", "about"];

/// Starts policing one page's session and, through auto-attach, every
/// frame and worker it starts in another process; the returned task runs
/// until aborted or the connection closes.
pub(crate) async fn start(
    connection: Arc<Connection>,
    session_id: String,
    main_frame_id: String,
    policy: Arc<EgressPolicy>,
    last_denial: LastDenial,
) -> Result<AbortHandle, CdpError> {
    let events = police(&connection, &session_id).await?;
    // Weak, so a page left undropped does not keep the socket open.
    let warden = Warden {
        connection: Arc::downgrade(&connection),
        main_frame_id,
        policy,
        last_denial,
    };
    let task = tokio::spawn(warden.watch(session_id, events));
    Ok(task.abort_handle())
}

/// What the tasks policing one page share.
#[derive(Clone)]
struct Warden {
    connection: Weak<Connection>,
    main_frame_id: String,
    policy: Arc<EgressPolicy>,
    last_denial: LastDenial,
}

/// Subscribes to a session's paused requests and attached targets, then
/// pauses its every request and attaches (paused) to every frame or worker
/// it starts.
async fn police(connection: &Connection, session_id: &str) -> Result<EventStream, CdpError> {
    let events = connection.subscribe(
        Some(session_id),
        &[
            "Fetch.requestPaused",
            "Target.attachedToTarget",
            "Target.detachedFromTarget",
        ],
    );
    let enabled = connection
        .call(
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": "*", "requestStage": "Request" }] }),
            Some(session_id),
        )
        .await;
    match enabled {
        // Without an answer it may still have taken effect: keep deciding.
        Ok(_) | Err(CdpError::Timeout { .. }) => {}
        Err(err) => return Err(err),
    }
    // Requests already pause from here on, so the events are watched
    // whatever happens next.
    let attached = connection
        .call(
            "Target.setAutoAttach",
            json!({ "autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true }),
            Some(session_id),
        )
        .await;
    if let Err(err) = attached {
        tracing::warn!(%err, "frames and workers of another process will not be policed by request");
    }
    Ok(events)
}

impl Warden {
    /// Decides each paused request of one session, and polices the targets
    /// it attaches to until they detach.
    fn watch(self, session_id: String, mut events: EventStream) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut children = JoinSet::new();
            let mut child_tasks: HashMap<String, AbortHandle> = HashMap::new();
            while let Some(event) = events.next().await {
                match event.method.as_str() {
                    // Each request is decided on its own task: a slow DNS
                    // answer for one must not hold up the others.
                    "Fetch.requestPaused" => {
                        tokio::spawn(self.clone().decide(session_id.clone(), event.params));
                    }
                    "Target.attachedToTarget" => {
                        let Some(child) = event.params["sessionId"].as_str() else {
                            continue;
                        };
                        let task = children.spawn(self.clone().adopt(child.to_owned()));
                        child_tasks.insert(child.to_owned(), task);
                    }
                    _ => {
                        if let Some(task) = event.params["sessionId"]
                            .as_str()
                            .and_then(|child| child_tasks.remove(child))
                        {
                            task.abort();
                        }
                    }
                }
                while children.try_join_next().is_some() {}
            }
        })
    }

    /// Polices a frame or worker that started paused, then lets it run.
    async fn adopt(self, session_id: String) {
        let Some(connection) = self.connection.upgrade() else {
            return;
        };
        let policed = police(&connection, &session_id).await;
        // Resumed whatever happened: a target left paused would hang its page.
        connection.notify(
            "Runtime.runIfWaitingForDebugger",
            json!({}),
            Some(&session_id),
        );
        drop(connection);
        match policed {
            Ok(events) => self.watch(session_id, events).await,
            // Some targets (dedicated workers) have no Fetch domain; their
            // requests pause in the page that started them.
            Err(err) => tracing::debug!(%err, "an attached target is not policed itself"),
        }
    }

    async fn decide(self, session_id: String, params: Value) {
        let request_id = params["requestId"].clone();
        let url = params["request"]["url"].as_str().unwrap_or_default();
        let verdict = match Url::parse(url) {
            Ok(url) if LOCAL_SCHEMES.contains(&url.scheme()) => Ok(()),
            Ok(url) => self.policy.check(&url).await,
            Err(_) => Err(crate::egress::EgressError::InvalidUrl(url.to_owned())),
        };
        let Some(connection) = self.connection.upgrade() else {
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
                if params["resourceType"] == "Document"
                    && params["frameId"] == self.main_frame_id.as_str()
                {
                    *self.last_denial.lock().unwrap_or_else(|p| p.into_inner()) = Some(denied);
                }
                connection.notify(
                    "Fetch.failRequest",
                    json!({ "requestId": request_id, "errorReason": "BlockedByClient" }),
                    Some(&session_id),
                );
            }
        }
    }
}
