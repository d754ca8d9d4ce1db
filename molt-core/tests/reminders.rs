//! Reminders: jobs kept in the store, and an occurrence taken by the
//! gateway's inbox once, however often it is handed over (as after a crash
//! between handing it over and moving the job on).

mod support;

use molt_core::echo::EchoModel;
use molt_core::inbox::Admission;
use molt_core::platform::Timestamp;
use molt_core::reminders::{JobBook, ReminderError, Route, Schedule};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn an_occurrence_is_taken_once_and_the_job_moves_on() {
    let setup = setup::Setup::new();
    let (gateway, egress) = setup.gateway(Arc::new(EchoModel));
    let book = JobBook::new(setup.store.as_ref());
    let asked = dm("test", "alice", "m1", "remind me daily");
    let now = Timestamp(1_796_601_600_000);
    let daily = Schedule::Cron {
        expr: "30 8 * * *".into(),
        tz: None,
    };
    let job = block_on_within(
        LIMIT,
        book.add(
            "walk",
            "time for a walk",
            daily,
            Route::back_to(&asked),
            now,
        ),
    )
    .unwrap();
    let due = job.next_at.unwrap();
    assert_eq!(due, Timestamp(now.0 + 8 * 3_600_000 + 30 * 60_000));

    let occurrence = job.occurrence(due, due);
    assert_eq!(
        (occurrence.sender.id.as_str(), occurrence.chat_id.as_str()),
        ("alice", asked.chat_id.as_str())
    );
    let first = block_on_within(LIMIT, gateway.accept(occurrence.clone())).unwrap();
    let again = block_on_within(
        LIMIT,
        gateway.accept(job.occurrence(due, Timestamp(due.0 + 5_000))),
    )
    .unwrap();
    assert!(matches!(first, Admission::Accepted(_)));
    assert!(
        matches!(again, Admission::Duplicate(_)),
        "handed over twice, taken once"
    );
    block_on_within(LIMIT, gateway.idle());
    assert_eq!(egress.texts().len(), 1, "{:?}", egress.texts());
    assert!(egress.texts()[0].contains("time for a walk"));

    block_on_within(LIMIT, book.advance(&job, due)).unwrap();
    let moved = block_on_within(LIMIT, book.list()).unwrap();
    assert_eq!(moved[0].next_at, Some(Timestamp(due.0 + 86_400_000)));

    // A one-time job in the past is refused; removing works once.
    let past = Schedule::At {
        at: "2020-01-01T00:00:00Z".into(),
        tz: None,
    };
    let refused = block_on_within(
        LIMIT,
        book.add("old", "x", past, Route::back_to(&asked), now),
    );
    assert!(matches!(refused, Err(ReminderError::InThePast)));
    assert!(block_on_within(LIMIT, book.remove(&job.id)).unwrap());
    assert!(!block_on_within(LIMIT, book.remove(&job.id)).unwrap());
    assert!(!block_on_within(LIMIT, book.remove("../../etc")).unwrap());
}
