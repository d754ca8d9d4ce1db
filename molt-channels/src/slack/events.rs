//! The Events API: Slack POSTs each event to the app's Request URL, signed
//! with the app's signing secret. Unlike Socket Mode this needs no live
//! connection, so a gateway that sleeps can be woken by Slack.
//!
//! [`SlackEvents::handle`] is the endpoint's logic, independent of the HTTP
//! server. A request is Slack's only when its `v0` signature matches and its
//! timestamp is within five minutes (401 otherwise). `url_verification` is
//! answered with its challenge. An event is answered 200 once the gateway
//! has durably taken its message, and Slack's retries (same `event_id`,
//! `X-Slack-Retry-Num`) are recognised: one still being taken waits with the
//! first, one already taken is answered at once. Slack gives up on a request
//! after 3 s and sends it again at once without waiting for the answer, so
//! the wait is bounded below that: a message not taken in time is answered
//! 503 and stays offered to the gateway, and Slack's next retry finds it.

use super::REMEMBERED_EVENTS;
use super::inbound::{BotIdentity, Event, normalize};
use crate::delivery::{Outbox, RecentIds, offer, receiver_stream};
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use molt_core::Secret;
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use molt_core::webhook::{SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER, verify_slack_signature};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// The header numbering Slack's retries of a request (absent on the first).
pub const RETRY_NUM_HEADER: &str = "x-slack-retry-num";
/// The header that tells Slack not to retry a request answered with an error.
pub const NO_RETRY_HEADER: &str = "x-slack-no-retry";

/// How long a request waits for the gateway to take its message. Slack
/// stops waiting at 3 s; the rest is left for the way there and back.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The outer payloads Slack POSTs, as far as the endpoint reads them.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Request {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event_id: String,
        event: serde_json::Value,
    },
    AppRateLimited {
        #[serde(default)]
        minute_rate_limited: u64,
    },
    #[serde(other)]
    Other,
}

/// Events being taken, and events already taken, by `event_id`.
struct Ledger {
    pending: HashMap<String, watch::Receiver<bool>>,
    taken: RecentIds,
}

/// The endpoint's logic. Cheap to clone (clones share what was taken);
/// mount it at the app's Request URL (Event Subscriptions).
#[derive(Clone)]
pub struct SlackEvents {
    pub(super) bot: BotIdentity,
    pub(super) signing_secret: Secret,
    pub(super) out: Outbox,
    ledger: Arc<Mutex<Ledger>>,
}

/// The receiving half over the Events API: the messages the endpoint took
/// in. The stream ends when every [`SlackEvents`] clone is dropped.
pub struct SlackEventsIngress {
    receiver: mpsc::Receiver<Result<Delivery, ChannelError>>,
}

impl ChannelIngress for SlackEventsIngress {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>> {
        receiver_stream(self.receiver)
    }
}

impl SlackEvents {
    /// The endpoint for the bot `bot`, checking requests with `signing_secret`.
    pub(super) fn new(bot: BotIdentity, signing_secret: Secret) -> (Self, SlackEventsIngress) {
        let (out, receiver) = mpsc::channel(100);
        let ledger = Ledger {
            pending: HashMap::new(),
            taken: RecentIds::new(REMEMBERED_EVENTS),
        };
        let endpoint = Self {
            bot,
            signing_secret,
            out,
            ledger: Arc::new(Mutex::new(ledger)),
        };
        (endpoint, SlackEventsIngress { receiver })
    }

    /// Handles one POST from Slack and says what to answer:
    /// - 401 when the signature or its timestamp is wrong;
    /// - 400 (and no retry) for a signed body that is not an Events API payload;
    /// - 200 with the challenge, as plain text, for `url_verification`;
    /// - 200 once the gateway has taken the event's message, for an event
    ///   already taken (a retry), and for events it does not answer;
    /// - 503 when the message was not taken in time: it stays offered to the
    ///   gateway, and Slack's retry is answered once it is taken.
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Response<String> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (timestamp, signature) = (text(SLACK_TIMESTAMP_HEADER), text(SLACK_SIGNATURE_HEADER));
        if let Err(error) =
            verify_slack_signature(&self.signing_secret, timestamp, signature, body, unix_now())
        {
            // The reason is for the log, not for whoever sent it.
            tracing::warn!(%error, "slack: an events request that is not Slack's was refused");
            return answer(StatusCode::UNAUTHORIZED, "not signed by Slack".into());
        }
        let request = match serde_json::from_slice::<Request>(body) {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!(%err, "slack: a signed events request is not an Events API payload");
                let mut response = answer(StatusCode::BAD_REQUEST, format!("unreadable: {err}"));
                (response.headers_mut()).insert(NO_RETRY_HEADER, HeaderValue::from_static("1"));
                return response;
            }
        };
        match request {
            Request::UrlVerification { challenge } => {
                tracing::info!("slack: the Request URL was verified");
                answer(StatusCode::OK, challenge)
            }
            Request::EventCallback { event_id, event } => {
                let retry = headers.get(RETRY_NUM_HEADER).and_then(|v| v.to_str().ok());
                tracing::debug!(event_id, retry, "slack: event");
                self.event(event_id, event).await
            }
            Request::AppRateLimited {
                minute_rate_limited,
            } => {
                tracing::warn!(
                    minute_rate_limited,
                    "slack: Slack is holding back events for this app (over 30,000 an hour)"
                );
                answer(StatusCode::OK, String::new())
            }
            Request::Other => answer(StatusCode::OK, String::new()),
        }
    }

    /// Takes one event, or joins the wait of the request already taking it.
    async fn event(&self, event_id: String, event: serde_json::Value) -> Response<String> {
        let key = event_id.clone();
        let mut taken = {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            if ledger.taken.contains(&event_id) {
                return answer(StatusCode::OK, String::new());
            }
            // A wait whose offer ended untaken (the stream went) is not joined.
            match ledger.pending.get(&event_id) {
                Some(taken) if taken.has_changed().is_ok() => taken.clone(),
                _ => {
                    let message = serde_json::from_value::<Event>(event)
                        .inspect_err(|err| tracing::warn!(%err, "slack: skipping an event that does not parse"))
                        .ok()
                        .and_then(|event| normalize(event, &self.bot));
                    let Some(message) = message else {
                        ledger.taken.insert(event_id);
                        return answer(StatusCode::OK, String::new());
                    };
                    let (sender, taken) = watch::channel(false);
                    ledger.pending.insert(event_id.clone(), taken.clone());
                    // Not tied to this request: Slack may drop it at 3 s.
                    tokio::spawn(self.clone().offer(event_id, message, sender));
                    taken
                }
            }
        };
        match tokio::time::timeout(ACK_TIMEOUT, taken.wait_for(|taken| *taken)).await {
            Ok(Ok(_)) => answer(StatusCode::OK, String::new()),
            _ => {
                tracing::warn!(
                    event_id = key,
                    "slack: the gateway did not take an event in time; Slack sends it again"
                );
                answer(StatusCode::SERVICE_UNAVAILABLE, "not taken yet".into())
            }
        }
    }

    /// Offers `message` to the gateway until it is taken, then records it
    /// (if the stream goes first, `taken` is dropped unsent).
    async fn offer(
        self,
        event_id: String,
        message: molt_core::message::InboundMessage,
        taken: watch::Sender<bool>,
    ) {
        let ledger = self.ledger.clone();
        let _ = offer(&self.out, message, move || {
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.pending.remove(&event_id);
            ledger.taken.insert(event_id);
            let _ = taken.send(true);
        })
        .await;
    }
}

fn answer(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    (response.headers_mut()).insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn unix_now() -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH))
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
