//! Fires the reminders the agent set (`molt_core::reminders`): sleeps until
//! the next comes due (or a job changes), hands each occurrence to the
//! gateway's inbox, which takes each occurrence once, then moves the job
//! on. A job due while the gateway was stopped fires at start, once, saying
//! it is late; a recurring job then moves to its next time after now.

use molt_core::gateway::Gateway;
use molt_core::platform::{Clock, Timestamp};
use molt_core::reminders::JobBook;
use molt_core::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The longest sleep between two looks at the jobs.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// The wait after a failure (the store, or a busy session) before trying again.
const RETRY: Duration = Duration::from_secs(5);

/// Runs until aborted: fires the jobs in `store` as they come due.
/// `changed` wakes it when a job is added or removed.
pub async fn run(
    gateway: Gateway,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    changed: Arc<Notify>,
) {
    loop {
        let wait = match fire_due(&gateway, store.as_ref(), clock.as_ref()).await {
            Ok(Some(next)) => Duration::from_millis(next.0.saturating_sub(clock.now().0)),
            Ok(None) => MAX_SLEEP,
            Err(err) => {
                tracing::warn!(%err, "reminders: trying again shortly");
                RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
            () = changed.notified() => {}
        }
    }
}

/// Fires every job due now; returns when the next one is due, if any.
pub async fn fire_due(
    gateway: &Gateway,
    store: &dyn Store,
    clock: &dyn Clock,
) -> Result<Option<Timestamp>, String> {
    let book = JobBook::new(store);
    let jobs = book.list().await.map_err(|err| err.to_string())?;
    let now = clock.now();
    let mut next: Option<Timestamp> = None;
    for job in jobs {
        let Some(due) = job.next_at else { continue };
        if due > now {
            next = Some(next.map_or(due, |next| next.min(due)));
            continue;
        }
        let occurrence = job.occurrence(due, now);
        let admission = gateway
            .accept(occurrence)
            .await
            .map_err(|err| err.to_string())?;
        tracing::info!(job = %job.id, ?admission, late_ms = now.0 - due.0, "reminders: fired");
        // Past now, so a backlog of missed occurrences fires once.
        book.advance(&job, due.max(now))
            .await
            .map_err(|err| err.to_string())?;
        // Look again at once: the job's next time may be near.
        next = Some(now);
    }
    Ok(next)
}
