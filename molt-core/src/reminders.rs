//! Reminders: jobs the agent schedules for the person who asked, kept in
//! the store (`cron/<id>.json`, so they are backed up and restored with the
//! rest of the state), each due once at a time (`at`) or whenever a cron
//! expression matches in a time zone (`cron`).
//!
//! A job that comes due is turned into an inbound message from the person
//! who set it, in the chat where they did ([`Job::occurrence`]), whose
//! platform id names the job and the occurrence (`cron:<id>:<ms>`): the
//! gateway's inbox takes each id once, so an occurrence is answered once
//! even if the host crashes between handing it over and moving the job on.
//! One due while the host was stopped comes due at start, and says it is
//! late.
//!
//! Times are computed with `jiff` (the IANA time-zone database bundled, so
//! a container without `/usr/share/zoneinfo` knows every zone) and cron
//! expressions with `croner`.

use crate::message::{ChatKind, InboundMessage, Sender};
use crate::platform::{Clock, Timestamp};
use crate::store::{PutOutcome, Store, StoreError};
use crate::tool::{RunContext, SideEffect, Tool, ToolError};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::str::FromStr;
use std::sync::Arc;

/// Where jobs are kept in the store.
pub const PREFIX: &str = "cron/";
/// How late an occurrence may come before its message says it is late.
pub const LATE_AFTER_MS: u64 = 60_000;

/// Why a schedule or a job is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReminderError {
    /// The time is not one this understands.
    #[error(
        "{0:?} is not a time: give an RFC 3339 time (2026-12-08T09:00:00+01:00), a local time with tz, or a delay such as 20m, 2h or 1d"
    )]
    BadTime(String),
    /// The time zone is not an IANA name.
    #[error("{0:?} is not a time zone: give an IANA name such as Europe/Lisbon")]
    BadZone(String),
    /// The cron expression does not parse.
    #[error("{expr:?} is not a cron expression: {reason}")]
    BadCron {
        /// The expression.
        expr: String,
        /// Why.
        reason: String,
    },
    /// A one-time reminder in the past.
    #[error("that time has passed")]
    InThePast,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// When a job comes due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Schedule {
    /// Once: an RFC 3339 time, a local time in `tz`, or a delay from when
    /// it is set (`20m`, `2h`, `1d`).
    At {
        /// The time.
        at: String,
        /// The IANA time zone of a local time (UTC unless given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
    /// Whenever the cron expression matches, in `tz` (UTC unless given).
    Cron {
        /// Five fields (minute hour day month weekday), or six with seconds.
        expr: String,
        /// The IANA time zone the expression reads in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
}

fn zone(tz: Option<&str>) -> Result<jiff::tz::TimeZone, ReminderError> {
    match tz.map(str::trim).filter(|tz| !tz.is_empty()) {
        None => Ok(jiff::tz::TimeZone::UTC),
        Some(name) => {
            jiff::tz::TimeZone::get(name).map_err(|_| ReminderError::BadZone(name.to_owned()))
        }
    }
}

fn instant(at: Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(at.0 as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn millis(at: jiff::Timestamp) -> Timestamp {
    Timestamp(at.as_millisecond().max(0) as u64)
}

/// A delay such as `20m`, `90s`, `2h` or `1d`.
fn delay(text: &str) -> Option<u64> {
    let text = text.trim().trim_start_matches('+');
    let unit = text.chars().last()?;
    let count: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    count.checked_mul(seconds * 1000)
}

impl Schedule {
    /// The first time the job comes due after `after` (exclusive), if it
    /// ever does again; `set_at` is when the job was set (for delays).
    pub fn next_after(
        &self,
        after: Timestamp,
        set_at: Timestamp,
    ) -> Result<Option<Timestamp>, ReminderError> {
        match self {
            Schedule::At { at, tz } => {
                let due = Self::at_time(at, tz.as_deref(), set_at)?;
                Ok((due > after).then_some(due))
            }
            Schedule::Cron { expr, tz } => {
                let cron = croner::Cron::from_str(expr).map_err(|err| ReminderError::BadCron {
                    expr: expr.clone(),
                    reason: err.to_string(),
                })?;
                let start = instant(after).to_zoned(zone(tz.as_deref())?);
                let next = cron.find_next_occurrence(&start, false).map_err(|err| {
                    ReminderError::BadCron {
                        expr: expr.clone(),
                        reason: err.to_string(),
                    }
                })?;
                Ok(Some(millis(next.timestamp())))
            }
        }
    }

    /// When an `at` schedule is due.
    fn at_time(at: &str, tz: Option<&str>, set_at: Timestamp) -> Result<Timestamp, ReminderError> {
        if let Some(ms) = delay(at) {
            return Ok(Timestamp(set_at.0.saturating_add(ms)));
        }
        let bad = || ReminderError::BadTime(at.to_owned());
        if let Ok(instant) = at.parse::<jiff::Timestamp>() {
            return Ok(millis(instant));
        }
        if let Ok(zoned) = at.parse::<jiff::Zoned>() {
            return Ok(millis(zoned.timestamp()));
        }
        let local: jiff::civil::DateTime = at.parse().map_err(|_| bad())?;
        let zoned = local.to_zoned(zone(tz)?).map_err(|_| bad())?;
        Ok(millis(zoned.timestamp()))
    }
}

/// Where a job's occurrences go: the chat it was set in, from the person
/// who set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The channel.
    pub channel: String,
    /// The bot account on it.
    pub account: String,
    /// The chat.
    pub chat_id: String,
    /// Its kind.
    pub chat_kind: ChatKind,
    /// The thread, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Who set the job.
    pub sender: Sender,
}

impl Route {
    /// The route back to whoever sent `inbound`, where they sent it.
    pub fn back_to(inbound: &InboundMessage) -> Self {
        Self {
            channel: inbound.channel.clone(),
            account: inbound.account.clone(),
            chat_id: inbound.chat_id.clone(),
            chat_kind: inbound.chat_kind,
            thread_id: inbound.thread_id.clone(),
            sender: inbound.sender.clone(),
        }
    }
}

/// A scheduled job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Its id (letters and digits).
    pub id: String,
    /// A short name.
    pub name: String,
    /// What the agent is told when it comes due.
    pub message: String,
    /// When.
    pub schedule: Schedule,
    /// Where its occurrences go.
    pub route: Route,
    /// When it was set.
    pub created_at: Timestamp,
    /// When it next comes due (`None` once a one-time job has come due).
    pub next_at: Option<Timestamp>,
}

impl Job {
    /// The inbound message of the occurrence due at `due`, handed over at
    /// `now` (which says it is late when it is).
    pub fn occurrence(&self, due: Timestamp, now: Timestamp) -> InboundMessage {
        let when = instant(due).strftime("%Y-%m-%d %H:%M UTC");
        let late = match now.0.saturating_sub(due.0) {
            late if late > LATE_AFTER_MS => {
                format!(
                    "; it is late by {} minutes, the gateway was not running",
                    late / 60_000
                )
            }
            _ => String::new(),
        };
        let text = format!(
            "[Reminder \"{}\" (job {}), due {when}{late}]\n{}",
            self.name, self.id, self.message
        );
        InboundMessage {
            channel: self.route.channel.clone(),
            account: self.route.account.clone(),
            sender: self.route.sender.clone(),
            message_id: format!("cron:{}:{}", self.id, due.0),
            chat_id: self.route.chat_id.clone(),
            chat_kind: self.route.chat_kind,
            thread_id: self.route.thread_id.clone(),
            text,
            attachments: Vec::new(),
            mentioned: true,
            sent_at: due,
        }
    }
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}.json")
}

fn corrupt(key: &str, err: serde_json::Error) -> ReminderError {
    ReminderError::Store(StoreError::Corrupt {
        key: key.to_owned(),
        reason: err.to_string(),
    })
}

/// The jobs in a store.
pub struct JobBook<'a> {
    store: &'a dyn Store,
}

impl<'a> JobBook<'a> {
    /// The jobs kept in `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    /// Adds a job set at `now`, naming it with a fresh id. A one-time job
    /// whose time has passed is refused.
    pub async fn add(
        &self,
        name: &str,
        message: &str,
        schedule: Schedule,
        route: Route,
        now: Timestamp,
    ) -> Result<Job, ReminderError> {
        let next_at = schedule.next_after(now, now)?;
        if next_at.is_none() {
            return Err(ReminderError::InThePast);
        }
        let mut n = now.0;
        loop {
            let job = Job {
                id: format!("{n:x}"),
                name: name.to_owned(),
                message: message.to_owned(),
                schedule: schedule.clone(),
                route: route.clone(),
                created_at: now,
                next_at,
            };
            let json = serde_json::to_vec(&job).expect("a job serializes");
            match self
                .store
                .put_if_absent(&key(&job.id), Bytes::from(json))
                .await?
            {
                PutOutcome::Created => return Ok(job),
                PutOutcome::AlreadyExists => n += 1,
            }
        }
    }

    /// Every job, oldest first.
    pub async fn list(&self) -> Result<Vec<Job>, ReminderError> {
        let mut jobs = Vec::new();
        for key in self.store.list(PREFIX).await? {
            if let Some(bytes) = self.store.get(&key).await? {
                jobs.push(serde_json::from_slice(&bytes).map_err(|err| corrupt(&key, err))?);
            }
        }
        jobs.sort_by_key(|job: &Job| job.created_at);
        Ok(jobs)
    }

    /// Removes the job `id`; whether there was one.
    pub async fn remove(&self, id: &str) -> Result<bool, ReminderError> {
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid || self.store.get(&key(id)).await?.is_none() {
            return Ok(false);
        }
        self.store.delete(&key(id)).await?;
        Ok(true)
    }

    /// Moves `job` past its occurrence due at `due`: to its next time, or
    /// away once a one-time job has come due.
    pub async fn advance(&self, job: &Job, due: Timestamp) -> Result<(), ReminderError> {
        match job.schedule.next_after(due, job.created_at)? {
            Some(next) => {
                let moved = Job {
                    next_at: Some(next),
                    ..job.clone()
                };
                let json = serde_json::to_vec(&moved).expect("a job serializes");
                Ok(self.store.put(&key(&job.id), Bytes::from(json)).await?)
            }
            None => Ok(self.store.delete(&key(&job.id)).await?),
        }
    }
}

/// The `cron` tool (OpenClaw's `automations`, by its other name): the agent
/// sets (`add`), lists and cancels (`remove`) reminders for the person it
/// is talking to, delivered in the chat where they were set.
pub struct CronTool {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    changed: Arc<dyn Fn() + Send + Sync>,
}

impl CronTool {
    /// The tool over the jobs in `store`; `changed` is called after each
    /// change, so the scheduler looks again.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        changed: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            store,
            clock,
            changed,
        }
    }
}

fn describe(job: &Job) -> Value {
    let next = job.next_at.map(|at| instant(at).to_string());
    json!({ "jobId": job.id, "name": job.name, "message": job.message,
            "schedule": job.schedule, "nextRunAt": next })
}

#[async_trait]
impl Tool for CronTool {
    fn name(&self) -> &str {
        "cron"
    }

    fn description(&self) -> &str {
        "Schedules reminders for the person you are talking to, delivered here when due: action add (name, message: what you will be told then, schedule: {kind: at, at: an RFC 3339 time, a local time with tz, or a delay like 20m} or {kind: cron, expr, tz}), list, or remove (jobId)."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "action": { "enum": ["add", "list", "remove"] },
                "name": { "type": "string", "maxLength": 200 },
                "message": { "type": "string", "maxLength": 4000 },
                "schedule": {
                    "type": "object",
                    "properties": {
                        "kind": { "enum": ["at", "cron"] },
                        "at": { "type": "string" },
                        "expr": { "type": "string" },
                        "tz": { "type": "string" }
                    },
                    "required": ["kind"]
                },
                "jobId": { "type": "string" }
            },
            "required": ["action"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::LocalWrite
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        self.call_in(input, &RunContext::default()).await
    }

    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        let book = JobBook::new(self.store.as_ref());
        let failed = |err: ReminderError| ToolError::new(err.to_string());
        match input["action"].as_str().unwrap_or_default() {
            "add" => {
                let inbound = (context.inbound.as_ref())
                    .ok_or_else(|| ToolError::new("reminders need a chat to be delivered in"))?;
                let schedule: Schedule = serde_json::from_value(input["schedule"].clone())
                    .map_err(|err| ToolError::new(format!("schedule: {err}")))?;
                let message = input["message"].as_str().unwrap_or_default();
                if message.trim().is_empty() {
                    return Err(ToolError::new(
                        "give the message you will be told when it is due",
                    ));
                }
                let name = input["name"].as_str().unwrap_or("reminder");
                let route = Route::back_to(inbound);
                let now = self.clock.now();
                let job = (book.add(name, message, schedule, route, now).await).map_err(failed)?;
                (self.changed)();
                Ok(json!({ "added": describe(&job) }).to_string())
            }
            "list" => {
                let jobs = book.list().await.map_err(failed)?;
                let mine = |job: &&Job| match &context.inbound {
                    Some(inbound) => {
                        job.route.sender.id == inbound.sender.id
                            && job.route.channel == inbound.channel
                    }
                    None => true,
                };
                let jobs: Vec<Value> = jobs.iter().filter(mine).map(describe).collect();
                Ok(json!({ "jobs": jobs }).to_string())
            }
            "remove" => {
                let id = input["jobId"].as_str().unwrap_or_default();
                let mine = (book.list().await.map_err(failed)?).into_iter().any(|job| {
                    job.id == id
                        && (context.inbound.as_ref()).is_none_or(|inbound| {
                            job.route.sender.id == inbound.sender.id
                                && job.route.channel == inbound.channel
                        })
                });
                if !mine || !book.remove(id).await.map_err(failed)? {
                    return Err(ToolError::new(format!("no reminder {id:?} of yours")));
                }
                (self.changed)();
                Ok(json!({ "removed": id }).to_string())
            }
            other => Err(ToolError::new(format!(
                "unknown action {other:?}: add, list or remove"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 00:00 UTC.
    const MIDNIGHT: Timestamp = Timestamp(1_796_601_600_000);

    #[test]
    fn one_time_schedules_read_delays_offsets_and_zones() {
        let at = |at: &str, tz: Option<&str>| Schedule::At {
            at: at.into(),
            tz: tz.map(str::to_owned),
        };
        let next = |schedule: Schedule| schedule.next_after(MIDNIGHT, MIDNIGHT).unwrap();
        assert_eq!(
            next(at("20m", None)),
            Some(Timestamp(MIDNIGHT.0 + 20 * 60_000))
        );
        assert_eq!(
            next(at("2026-12-07T09:00:00+01:00", None)),
            Some(Timestamp(MIDNIGHT.0 + 8 * 3_600_000))
        );
        // Lisbon is on UTC in December; New York five hours behind.
        assert_eq!(
            next(at("2026-12-07T09:00", Some("America/New_York"))),
            Some(Timestamp(MIDNIGHT.0 + 14 * 3_600_000))
        );
        assert_eq!(next(at("2026-12-06T09:00:00Z", None)), None, "past");
        assert!(matches!(
            at("tomorrowish", None).next_after(MIDNIGHT, MIDNIGHT),
            Err(ReminderError::BadTime(_))
        ));
        assert!(matches!(
            at("2026-12-07T09:00", Some("Mars/Olympus")).next_after(MIDNIGHT, MIDNIGHT),
            Err(ReminderError::BadZone(_))
        ));
    }

    #[test]
    fn cron_schedules_follow_their_zone_across_daylight_saving() {
        let daily = Schedule::Cron {
            expr: "0 9 * * *".into(),
            tz: Some("Europe/Berlin".into()),
        };
        // 09:00 in Berlin is 08:00 UTC in winter.
        let first = daily.next_after(MIDNIGHT, MIDNIGHT).unwrap().unwrap();
        assert_eq!(first, Timestamp(MIDNIGHT.0 + 8 * 3_600_000));
        // In summer (2027-07-01), 07:00 UTC.
        let summer = Timestamp(1_814_400_000_000);
        let next = daily.next_after(summer, MIDNIGHT).unwrap().unwrap();
        assert_eq!((next.0 - summer.0) % 86_400_000, 7 * 3_600_000);
        let bad = Schedule::Cron {
            expr: "every tuesday".into(),
            tz: None,
        };
        assert!(matches!(
            bad.next_after(MIDNIGHT, MIDNIGHT),
            Err(ReminderError::BadCron { .. })
        ));
    }
}
