//! Slack's Events API: the adapter's endpoint, mounted in an HTTP server on
//! loopback, against the Slack fake, which verifies the Request URL, signs
//! every request and retries as Slack does.

mod support;

use futures::StreamExt;
use molt_channels::slack::{Slack, SlackConfig, SlackEvents};
use molt_core::Secret;
use molt_core::channel::ChannelIngress;
use serde_json::json;
use std::time::{Duration, Instant};
use support::slack::{
    BOT_TOKEN, BOT_USER, EventsAttempt, FakeSlack, SIGNING_SECRET, sign, unix_now,
};
use support::{Deliveries, next, wait_until};

/// The endpoint served on loopback, and the gateway's side of it.
struct Endpoint {
    url: String,
    deliveries: Deliveries,
    _server: tokio::task::JoinHandle<()>,
}

async fn serve(fake: &FakeSlack, signing_secret: &str) -> Endpoint {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = SlackConfig::events_api(Secret::new(BOT_TOKEN), Secret::new(signing_secret));
    config.api_base = fake.base.clone();
    let slack = Slack::connect(config).await.unwrap();
    let (endpoint, ingress) = slack.events().unwrap();
    let handler = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
        let endpoint: SlackEvents = endpoint.clone();
        async move {
            endpoint
                .handle(&headers, &body)
                .await
                .map(axum::body::Body::from)
        }
    };
    let router = axum::Router::new().route("/slack/events", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack/events", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Endpoint {
        url,
        deliveries: Box::new(ingress).deliveries(),
        _server: server,
    }
}

fn attempts(fake: &FakeSlack, event_id: &str) -> Vec<(u64, Result<u16, &'static str>)> {
    fake.recorded(|r| {
        (r.events_attempts.iter())
            .filter(|a| a.event_id == event_id)
            .map(
                |EventsAttempt {
                     retry_num, outcome, ..
                 }| (*retry_num, *outcome),
            )
            .collect()
    })
}

/// An `event_callback` as Slack sends it, for a DM from U42.
fn callback(event_id: &str, text: &str, user: &str) -> String {
    json!({
        "token": "verification-token", "team_id": "T111", "api_app_id": "A111",
        "event": { "type": "message", "channel": "DU42", "channel_type": "im", "user": user,
                   "text": text, "ts": "1700000100.000001", "event_ts": "1700000100.000001" },
        "type": "event_callback", "event_id": event_id, "event_time": 1_700_000_100u64,
        "authorizations": [{ "team_id": "T111", "user_id": BOT_USER, "is_bot": true }],
    })
    .to_string()
}

/// POSTs `body` signed with `secret` at `timestamp`.
async fn post(url: &str, body: &str, secret: &str, timestamp: u64) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", sign(secret, timestamp, body))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn nothing_more(deliveries: &mut Deliveries) {
    let more = tokio::time::timeout(Duration::from_millis(500), deliveries.next()).await;
    assert!(more.is_err(), "no other delivery");
}

#[tokio::test]
async fn the_request_url_is_verified_and_an_event_is_answered_once_taken() {
    let fake = FakeSlack::start().await;
    let mut endpoint = serve(&fake, SIGNING_SECRET).await;
    fake.set_request_url(&endpoint.url).await.unwrap();

    let event = fake.direct_message("U42", "hello &lt;over http&gt;");
    let delivery = next(&mut endpoint.deliveries).await.unwrap();
    assert_eq!(delivery.message.text, "hello <over http>");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        attempts(&fake, &event),
        [],
        "not answered before it is taken"
    );
    delivery.ack.confirm();
    wait_until("answered", || !attempts(&fake, &event).is_empty()).await;
    assert_eq!(attempts(&fake, &event), [(0, Ok(200))]);

    // Slack's retry of an event already taken is answered at once, unseen.
    let body = callback(&event, "hello", "U42");
    let started = Instant::now();
    let again = post(&endpoint.url, &body, SIGNING_SECRET, unix_now()).await;
    assert_eq!(again.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    nothing_more(&mut endpoint.deliveries).await;
}

#[tokio::test]
async fn a_message_not_taken_in_time_is_answered_when_slack_retries() {
    let fake = FakeSlack::start().await;
    let mut endpoint = serve(&fake, SIGNING_SECRET).await;
    fake.set_request_url(&endpoint.url).await.unwrap();
    let event = fake.direct_message("U42", "slow to take");

    // The gateway holds the message past the endpoint's wait: the first
    // request is answered 503 within Slack's 3 s, and Slack retries at once.
    let delivery = next(&mut endpoint.deliveries).await.unwrap();
    wait_until("Slack retries", || attempts(&fake, &event).len() == 1).await;
    assert_eq!(
        attempts(&fake, &event),
        [(0, Ok(503))],
        "answered before Slack's 3 s"
    );
    delivery.ack.confirm();
    wait_until("the retry is answered", || {
        attempts(&fake, &event).len() == 2
    })
    .await;
    assert_eq!(attempts(&fake, &event), [(0, Ok(503)), (1, Ok(200))]);
    nothing_more(&mut endpoint.deliveries).await;

    // A delivery the gateway dropped is offered to it again; Slack's next
    // retry is answered once that one is taken.
    let event = fake.direct_message("U42", "dropped once");
    drop(next(&mut endpoint.deliveries).await.unwrap());
    let offered_again = next(&mut endpoint.deliveries).await.unwrap();
    assert_eq!(offered_again.message.text, "dropped once");
    offered_again.ack.confirm();
    wait_until("answered", || {
        attempts(&fake, &event)
            .last()
            .is_some_and(|(_, outcome)| *outcome == Ok(200))
    })
    .await;
    nothing_more(&mut endpoint.deliveries).await;
}

#[tokio::test]
async fn requests_not_signed_by_slack_are_refused_and_take_nothing() {
    let fake = FakeSlack::start().await;
    let mut endpoint = serve(&fake, SIGNING_SECRET).await;
    let body = callback("Ev0FORGED1", "let me in", "U42");
    let now = unix_now();
    let forged = post(&endpoint.url, &body, "not-the-signing-secret", now).await;
    assert_eq!(forged.status(), 401);
    let stale = post(&endpoint.url, &body, SIGNING_SECRET, now - 310).await;
    assert_eq!(stale.status(), 401);
    assert_eq!(
        stale.text().await.unwrap(),
        "not signed by Slack",
        "the reason is not told"
    );
    let future = post(&endpoint.url, &body, SIGNING_SECRET, now + 310).await;
    assert_eq!(future.status(), 401);
    let unsigned = reqwest::Client::new()
        .post(&endpoint.url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // Signed, but not an Events API payload: refused, and not to be retried.
    let garbage = post(&endpoint.url, "{not json", SIGNING_SECRET, now).await;
    assert_eq!(garbage.status(), 400);
    assert_eq!(garbage.headers()["x-slack-no-retry"], "1");
    // The bot's own message is answered and not taken.
    let own = post(
        &endpoint.url,
        &callback("Ev0OWN1", "mine", BOT_USER),
        SIGNING_SECRET,
        now,
    )
    .await;
    assert_eq!(own.status(), 200);
    nothing_more(&mut endpoint.deliveries).await;

    // A Request URL whose signing secret is not the app's fails Slack's check.
    let other = serve(&fake, "another-apps-secret").await;
    let refused = fake.set_request_url(&other.url).await.unwrap_err();
    assert!(refused.contains("challenge"), "{refused}");
    // The challenge is answered as plain text.
    let challenge =
        json!({ "type": "url_verification", "challenge": "c-123", "token": "t" }).to_string();
    let answer = post(&endpoint.url, &challenge, SIGNING_SECRET, now).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "c-123");
}

#[tokio::test]
async fn doctor_reports_the_events_api_and_socket_mode_needs_its_token() {
    let fake = FakeSlack::start().await;
    let mut config = SlackConfig::events_api(Secret::new(BOT_TOKEN), Secret::new(SIGNING_SECRET));
    config.api_base = fake.base.clone();
    let report = molt_channels::slack::doctor(config.clone()).await;
    assert!(report.healthy(), "{report}");
    assert!(report.to_string().contains("Events API"), "{report}");
    assert!(!report.to_string().contains(SIGNING_SECRET));
    let slack = Slack::connect(config.clone()).await.unwrap();
    let error = slack
        .ingress()
        .err()
        .expect("no Socket Mode without the app token");
    assert!(error.to_string().contains("SLACK_APP_TOKEN"), "{error}");
    // Neither the app token nor the signing secret: refused at connect.
    config.signing_secret = None;
    let error = Slack::connect(config).await.err().unwrap();
    assert!(
        error.to_string().contains("SLACK_SIGNING_SECRET"),
        "{error}"
    );
}
