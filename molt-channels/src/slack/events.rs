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
use hmac::{KeyInit, Mac};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use molt_core::Secret;
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// The header carrying the request's signature (`v0=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The header carrying when Slack sent the request (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// The header numbering Slack's retries of a request (absent on the first).
pub const RETRY_NUM_HEADER: &str = "x-slack-retry-num";
/// The header that tells Slack not to retry a request answered with an error.
pub const NO_RETRY_HEADER: &str = "x-slack-no-retry";

/// How far a request's timestamp may be from now, either way.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);

/// How long a request waits for the gateway to take its message. Slack
/// stops waiting at 3 s; the rest is left for the way there and back.
const ACK_WINDOW: Duration = Duration::from_secs(2);
/// A message the gateway did not take is offered again after this long.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);

/// Why a request is not taken as Slack's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Slack-Request-Timestamp`, or not a number.
    #[error("no readable X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    /// No `X-Slack-Signature`, or not `v0=` and hex.
    #[error("no readable X-Slack-Signature header")]
    MissingSignature,
    /// The timestamp is more than five minutes from now: a replay, or a
    /// clock that is off.
    #[error("the request timestamp is {seconds} s away from now (the limit is 300 s)")]
    Stale {
        /// How far from now, in seconds.
        seconds: u64,
    },
    /// The signature is not the signing secret's for this body.
    #[error("the signature does not match the signing secret")]
    Mismatch,
}

/// Checks that a request is Slack's: its `v0` signature over
/// `v0:<timestamp>:<body>` with `signing_secret` (compared in constant
/// time), and its timestamp within [`TIMESTAMP_WINDOW`] of `now` (Unix
/// seconds).
pub fn verify_signature(
    signing_secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = text(TIMESTAMP_HEADER)
        .and_then(|t| t.trim().parse::<u64>().ok())
        .ok_or(SignatureError::MissingTimestamp)?;
    let signature = text(SIGNATURE_HEADER)
        .and_then(|s| s.trim().strip_prefix("v0="))
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .ok_or(SignatureError::MissingSignature)?;
    let seconds = now.abs_diff(timestamp);
    if seconds > TIMESTAMP_WINDOW.as_secs() {
        return Err(SignatureError::Stale { seconds });
    }
    mac(signing_secret, timestamp, body)
        .verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// The HMAC-SHA256 of `v0:<timestamp>:<body>` under the signing secret.
fn mac(signing_secret: &Secret, timestamp: u64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(signing_secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac
}

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
        if let Err(error) = verify_signature(&self.signing_secret, headers, body, unix_now()) {
            tracing::warn!(%error, "slack: an events request that is not Slack's was refused");
            return answer(StatusCode::UNAUTHORIZED, error.to_string());
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
        let mut taken = {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            if ledger.taken.contains(&event_id) {
                return answer(StatusCode::OK, String::new());
            }
            match ledger.pending.get(&event_id) {
                Some(taken) => taken.clone(),
                None => {
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
        match tokio::time::timeout(ACK_WINDOW, taken.wait_for(|taken| *taken)).await {
            Ok(Ok(_)) => answer(StatusCode::OK, String::new()),
            _ => {
                tracing::warn!(
                    "slack: the gateway did not take an event in time; Slack sends it again"
                );
                answer(StatusCode::SERVICE_UNAVAILABLE, "not taken yet".into())
            }
        }
    }

    /// Offers `message` to the gateway until it is taken, then records it.
    async fn offer(
        self,
        event_id: String,
        message: molt_core::message::InboundMessage,
        taken: watch::Sender<bool>,
    ) {
        let ledger = self.ledger.clone();
        let id = event_id.clone();
        let alive = offer(&self.out, message, REDELIVERY_DELAY, move || {
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.pending.remove(&id);
            ledger.taken.insert(id);
            let _ = taken.send(true);
        })
        .await;
        if !alive {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.pending.remove(&event_id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in Slack's "Verifying requests from Slack".
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: u64 = 1_531_420_618;
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers
    }

    #[test]
    fn slacks_worked_example_verifies() {
        let secret = Secret::new(SECRET);
        let signed = headers(&TIMESTAMP.to_string(), SIGNATURE);
        assert_eq!(
            verify_signature(&secret, &signed, BODY.as_bytes(), TIMESTAMP + 10),
            Ok(())
        );
    }

    #[test]
    fn wrong_bodies_secrets_times_and_headers_are_refused() {
        let secret = Secret::new(SECRET);
        let signed = headers(&TIMESTAMP.to_string(), SIGNATURE);
        let check = |secret: &Secret, headers: &HeaderMap, body: &str, now: u64| {
            verify_signature(secret, headers, body.as_bytes(), now)
        };
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            check(&secret, &signed, &tampered, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&Secret::new("another"), &signed, BODY, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&secret, &signed, BODY, TIMESTAMP + 301),
            Err(SignatureError::Stale { seconds: 301 })
        );
        assert_eq!(
            check(&secret, &signed, BODY, TIMESTAMP - 301),
            Err(SignatureError::Stale { seconds: 301 })
        );
        assert_eq!(check(&secret, &signed, BODY, TIMESTAMP + 300), Ok(()));
        let later = headers(&(TIMESTAMP + 1).to_string(), SIGNATURE);
        assert_eq!(
            check(&secret, &later, BODY, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        let v1 = headers(&TIMESTAMP.to_string(), &SIGNATURE.replace("v0=", "v1="));
        assert_eq!(
            check(&secret, &v1, BODY, TIMESTAMP),
            Err(SignatureError::MissingSignature)
        );
        let short = headers(&TIMESTAMP.to_string(), &SIGNATURE[..41]);
        assert_eq!(
            check(&secret, &short, BODY, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        let mut unsigned = signed.clone();
        unsigned.remove(SIGNATURE_HEADER);
        assert_eq!(
            check(&secret, &unsigned, BODY, TIMESTAMP),
            Err(SignatureError::MissingSignature)
        );
        let undated = headers("yesterday", SIGNATURE);
        assert_eq!(
            check(&secret, &undated, BODY, TIMESTAMP),
            Err(SignatureError::MissingTimestamp)
        );
    }
}
