//! The Slack adapter against a Slack fake on loopback.

mod support;

use support::{Deliveries, next, wait_until};

use futures::StreamExt;
use molt_channels::slack::{Slack, SlackConfig};
use molt_core::Secret;
use molt_core::channel::{ChannelEgress, ChannelError, ChannelIngress};
use molt_core::message::{Attachment, ChatKind, OutboundMessage};
use molt_core::store::MemoryStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::slack::{APP_TOKEN, BOT_TOKEN, FakeSlack};

fn config(fake: &FakeSlack) -> SlackConfig {
    let mut config = SlackConfig::new(Secret::new(BOT_TOKEN), Secret::new(APP_TOKEN));
    config.api_base = fake.base.clone();
    config.request_timeout = Duration::from_secs(5);
    config
}

async fn connect(fake: &FakeSlack) -> (Slack, Deliveries) {
    let slack = Slack::connect(config(fake)).await.unwrap();
    let deliveries = Box::new(slack.ingress().unwrap()).deliveries();
    wait_until("the socket is open", || fake.live() == 1).await;
    (slack, deliveries)
}

fn acked(fake: &FakeSlack, event_id: &str) -> usize {
    fake.recorded(|r| r.acks.iter().filter(|(_, e)| e == event_id).count())
}

#[tokio::test]
async fn an_envelope_is_acknowledged_once_the_gateway_took_its_message() {
    let fake = FakeSlack::start().await;
    let (_slack, mut deliveries) = connect(&fake).await;
    let event = fake.direct_message("U42", "hello &lt;world&gt;");
    let delivery = next(&mut deliveries).await.unwrap();
    assert_eq!(delivery.message.text, "hello <world>");
    assert_eq!(delivery.message.chat_kind, ChatKind::Direct);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(acked(&fake, &event), 0, "not before the gateway took it");
    delivery.ack.confirm();
    wait_until("the envelope is acknowledged", || acked(&fake, &event) == 1).await;

    // Not taken: offered again, and acknowledged only then.
    let event = fake.direct_message("U42", "second");
    drop(next(&mut deliveries).await.unwrap());
    let again = next(&mut deliveries).await.unwrap();
    assert_eq!(again.message.text, "second");
    assert_eq!(acked(&fake, &event), 0);
    again.ack.confirm();
    wait_until("acknowledged after the second offer", || {
        acked(&fake, &event) == 1
    })
    .await;
}

#[tokio::test]
async fn a_redelivery_is_recognised_by_its_event_id() {
    let fake = FakeSlack::start().await;
    fake.recorded(|r| r.ack_timeout = Duration::from_millis(300));
    let (_slack, mut deliveries) = connect(&fake).await;
    let event = fake.direct_message("U42", "slow to take");
    let delivery = next(&mut deliveries).await.unwrap();
    // Slack gives up waiting and sends the event again, under a new envelope.
    wait_until("Slack redelivers", || {
        fake.recorded(|r| {
            r.envelopes
                .iter()
                .any(|(_, e, attempt)| *e == event && *attempt == 1)
        })
    })
    .await;
    delivery.ack.confirm();
    wait_until("both envelopes are acknowledged", || {
        acked(&fake, &event) == 2
    })
    .await;
    // The gateway saw the message once.
    let more = tokio::time::timeout(Duration::from_millis(500), deliveries.next()).await;
    assert!(more.is_err(), "no second delivery");
    // A redelivery after the message was taken is acknowledged at once.
    fake.recorded(|r| r.ack_timeout = Duration::from_secs(3));
}

#[tokio::test]
async fn link_disabled_stops_with_a_typed_error_and_no_reconnect_loop() {
    let fake = FakeSlack::start().await;
    let (_slack, mut deliveries) = connect(&fake).await;
    fake.disconnect("link_disabled");
    let error = next(&mut deliveries).await.err().unwrap();
    assert!(
        matches!(&error, ChannelError::Rejected { reason, .. } if reason.contains("Socket Mode is turned off")),
        "{error}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), deliveries.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends");
    assert_eq!(fake.recorded(|r| r.connections_opened), 1);
}

#[tokio::test]
async fn a_half_open_socket_is_noticed_and_replaced() {
    let fake = FakeSlack::start().await;
    let mut config = config(&fake);
    config.ping_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(500);
    let slack = Slack::connect(config).await.unwrap();
    let mut deliveries = Box::new(slack.ingress().unwrap()).deliveries();
    wait_until("open", || fake.live() == 1).await;
    wait_until("pings are sent", || fake.recorded(|r| r.pings >= 2)).await;
    fake.silence();
    wait_until("a new connection", || {
        fake.recorded(|r| r.connections_opened == 2) && fake.live() == 1
    })
    .await;
    fake.direct_message("U42", "after");
    assert_eq!(next(&mut deliveries).await.unwrap().message.text, "after");
}

#[tokio::test]
async fn tokens_of_the_wrong_kind_or_refused_are_auth_errors() {
    let fake = FakeSlack::start().await;
    let mut swapped = config(&fake);
    let app_token = swapped.app_token.replace(swapped.bot_token.clone());
    swapped.bot_token = app_token.unwrap();
    assert!(matches!(
        Slack::connect(swapped).await,
        Err(ChannelError::Auth { .. })
    ));
    let mut wrong_app = config(&fake);
    wrong_app.app_token = Some(Secret::new("xapp-1-revoked"));
    let slack = Slack::connect(wrong_app).await.unwrap();
    let mut deliveries = Box::new(slack.ingress().unwrap()).deliveries();
    let error = next(&mut deliveries).await.err().unwrap();
    assert!(
        matches!(&error, ChannelError::Auth { reason, .. } if reason.contains("SLACK_APP_TOKEN")),
        "{error}"
    );
    assert!(
        !error.to_string().contains("revoked"),
        "the token is not shown"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), deliveries.next()).await;
    assert!(matches!(end, Ok(None)));
}

/// Piece `piece` of the reply to the DM at `ts` in `D42`.
fn dm_reply(ts: &str, piece: usize, possibly_delivered: bool) -> OutboundMessage {
    OutboundMessage {
        channel: "slack".into(),
        account: "UBOT0001".into(),
        chat_id: "D42".into(),
        thread_id: None,
        // As the adapter names Slack messages: `<channel>:<ts>`.
        reply_to: Some(format!("D42:{ts}")),
        text: format!("piece {piece}"),
        piece,
        possibly_delivered,
    }
}

#[tokio::test]
async fn a_reply_that_went_out_before_a_restart_is_not_posted_again() {
    let fake = FakeSlack::start().await;
    let slack = Slack::connect(config(&fake)).await.unwrap();
    let egress = slack.egress();
    let ts = "1700000000.000042";
    egress.send(dm_reply(ts, 0, false)).await.unwrap();
    // Other talk in the conversation pages the history.
    for n in 0..250 {
        let mut other = dm_reply("1700000000.000043", n, false);
        other.text = format!("another reply {n}");
        egress.send(other).await.unwrap();
    }
    assert_eq!(
        fake.recorded(|r| r.history_reads),
        0,
        "a first send does not look"
    );

    // After a restart: piece 0 is found (on the second page) and not posted
    // again; piece 1 is not found, so it goes out.
    egress.send(dm_reply(ts, 0, true)).await.unwrap();
    egress.send(dm_reply(ts, 1, true)).await.unwrap();
    let texts: Vec<String> = fake.recorded(|r| {
        r.posted
            .iter()
            .filter(|p| p["metadata"]["event_payload"]["reply_to"] == format!("D42:{ts}"))
            .map(|p| p["text"].as_str().unwrap().to_owned())
            .collect()
    });
    assert_eq!(texts, ["piece 0", "piece 1"]);
    assert!(
        fake.recorded(|r| r.history_reads) >= 3,
        "paged through the history"
    );
    assert_eq!(
        fake.recorded(|r| r.posted[0]["metadata"]["event_type"].clone()),
        "molt_reply"
    );
}

#[tokio::test]
async fn replies_go_in_the_thread_escaped_and_a_429_is_waited_out() {
    let fake = FakeSlack::start().await;
    let slack = Slack::connect(config(&fake)).await.unwrap();
    let egress = slack.egress();
    fake.rate_limit_next(1);
    let started = Instant::now();
    egress
        .send(OutboundMessage {
            channel: "slack".into(),
            account: "UBOT0001".into(),
            chat_id: "C1".into(),
            thread_id: Some("1700000000.000001".into()),
            reply_to: None,
            text: "**done** <!channel> & [docs](https://example.com)".into(),
            piece: 0,
            possibly_delivered: false,
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let posted = fake.recorded(|r| r.posted.clone());
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["thread_ts"], "1700000000.000001");
    assert_eq!(
        posted[0]["text"],
        "*done* &lt;!channel&gt; &amp; <https://example.com|docs>"
    );
}

fn posted_texts(fake: &FakeSlack) -> Vec<String> {
    fake.recorded(|r| {
        r.posted
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    })
}

#[tokio::test]
async fn end_to_end_pairing_then_a_split_reply_and_a_threaded_mention() {
    use support::gateway::{RepeatModel, gateway, pairing_code};

    let fake = FakeSlack::start().await;
    let slack = Slack::connect(config(&fake)).await.unwrap();
    let gateway = gateway(
        Arc::new(MemoryStore::new()),
        Arc::new(RepeatModel {
            times: 900,
            delay: Duration::ZERO,
        }),
    );
    gateway.register_egress(molt_channels::slack::CHANNEL, slack.egress());
    let receiving = tokio::spawn({
        let gateway = gateway.clone();
        let ingress = Box::new(slack.ingress().unwrap());
        async move { gateway.receive(ingress).await }
    });
    wait_until("open", || fake.live() == 1).await;
    fake.direct_message("U42", "hello?");
    wait_until("the pairing code is posted", || {
        posted_texts(&fake).len() == 1
    })
    .await;
    let code = pairing_code(&posted_texts(&fake)[0]);
    assert_eq!(
        gateway.pairing().approve("slack", &code).await.unwrap(),
        "U42"
    );

    // "a<b &" × 900 = 4,500 characters: two messages, each escaped.
    fake.direct_message("U42", "a&lt;b &amp; ");
    wait_until("the reply arrives in two parts", || {
        posted_texts(&fake).len() == 3
    })
    .await;
    let parts = posted_texts(&fake)[1..].to_vec();
    assert!(
        parts
            .iter()
            .all(|p| p.contains("a&lt;b &amp;") && !p.contains("a<b"))
    );
    let shown: usize = parts
        .iter()
        .map(|p| molt_channels::slack::unescape(p).chars().count())
        .sum();
    assert!(shown >= 5 * 900 - 10, "the whole reply is shown");
    assert_eq!(fake.recorded(|r| r.posted[1]["channel"].clone()), "DU42");

    // In a channel the approved user mentions the bot in a thread: the reply goes there.
    fake.mention_in_thread("U42", "C9", "1699999999.000100", "in a thread");
    wait_until("the threaded reply", || posted_texts(&fake).len() >= 4).await;
    let reply = fake.recorded(|r| r.posted.last().unwrap().clone());
    assert_eq!(
        (reply["channel"].as_str(), reply["thread_ts"].as_str()),
        (Some("C9"), Some("1699999999.000100"))
    );
    receiving.abort();
}

#[tokio::test]
async fn a_refresh_in_the_middle_of_a_burst_loses_nothing_and_answers_nothing_twice() {
    use support::gateway::{RepeatModel, gateway};

    let fake = FakeSlack::start().await;
    let slack = Slack::connect(config(&fake)).await.unwrap();
    let gateway = gateway(
        Arc::new(MemoryStore::new()),
        Arc::new(RepeatModel {
            times: 1,
            delay: Duration::ZERO,
        }),
    );
    gateway.register_egress(molt_channels::slack::CHANNEL, slack.egress());
    // Everyone may talk to the bot in this test.
    let request = gateway
        .pairing()
        .request("slack", "U42", None)
        .await
        .unwrap();
    let molt_core::policy::PairingRequest::Issued(code) = request else {
        panic!("a code is issued");
    };
    gateway.pairing().approve("slack", &code).await.unwrap();
    let receiving = tokio::spawn({
        let gateway = gateway.clone();
        let ingress = Box::new(slack.ingress().unwrap());
        async move { gateway.receive(ingress).await }
    });
    wait_until("open", || fake.live() == 1).await;
    for n in 0..60 {
        if n == 20 {
            fake.disconnect("refresh_requested");
        }
        fake.direct_message("U42", &format!("message {n}"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until("every message is answered", || {
        posted_texts(&fake).len() >= 60
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answers: HashMap<String, usize> = HashMap::new();
    for text in posted_texts(&fake) {
        *answers.entry(text).or_default() += 1;
    }
    assert_eq!(answers.len(), 60, "every message answered");
    assert!(
        answers.values().all(|&count| count == 1),
        "none twice: {answers:?}"
    );
    assert_eq!(fake.recorded(|r| r.connections_opened), 2);
    assert_eq!(
        fake.recorded(|r| r.max_live),
        2,
        "the replacement opened before the old one closed"
    );
    receiving.abort();
}

#[tokio::test]
async fn doctor_reports_both_tokens() {
    let fake = FakeSlack::start().await;
    let report = molt_channels::slack::doctor(config(&fake)).await;
    assert!(report.healthy(), "{report}");
    assert!(
        report.to_string().contains("Socket Mode connection opened"),
        "{report}"
    );
    let mut wrong = config(&fake);
    wrong.app_token = Some(Secret::new("xapp-1-wrong"));
    let report = molt_channels::slack::doctor(wrong).await;
    assert!(!report.healthy());
    let text = report.to_string();
    assert!(text.contains("fix: create an app-level token"), "{text}");
    assert!(!text.contains("xapp-1-wrong"));
}

#[tokio::test]
async fn a_shared_file_arrives_and_is_fetched_with_the_token_only_from_slack() {
    let fake = FakeSlack::start().await;
    let (slack, mut deliveries) = connect(&fake).await;
    let file = fake.upload("pixel.png", "image/png", support::PNG);
    fake.direct_message_with_files("U42", "", vec![file]);
    let delivery = next(&mut deliveries).await.unwrap();
    delivery.ack.confirm();
    let attachment = delivery.message.attachments[0].clone();
    assert_eq!(
        (attachment.name.as_deref(), attachment.media_type.as_deref()),
        (Some("pixel.png"), Some("image/png"))
    );
    let egress = slack.egress();
    assert_eq!(
        egress.download(&attachment, 1 << 20).await.unwrap(),
        support::PNG
    );

    // Without files:read Slack redirects to its sign-in page: a clear refusal.
    fake.recorded(|r| r.files_read = false);
    let refused = egress.download(&attachment, 1 << 20).await;
    assert!(
        matches!(refused, Err(ChannelError::Rejected { .. })),
        "{refused:?}"
    );
    fake.recorded(|r| r.files_read = true);

    let too_large = egress
        .download(&attachment, support::PNG.len() as u64 - 1)
        .await;
    assert!(
        matches!(too_large, Err(ChannelError::TooLarge { .. })),
        "{too_large:?}"
    );

    // A url_private off Slack's file host never gets the token.
    let elsewhere = support::Elsewhere::start().await;
    let forged = Attachment {
        url: Some(format!("{}/files-pri/T111-F1/pixel.png", elsewhere.base)),
        size: None,
        ..attachment
    };
    let refused = egress.download(&forged, 1 << 20).await;
    assert!(
        matches!(refused, Err(ChannelError::Rejected { .. })),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(elsewhere.connections(), 0);
    let requests = fake.recorded(|r| r.file_requests.clone());
    assert_eq!(
        requests.len(),
        2,
        "the oversized file was refused on its declared size"
    );
    assert!(requests.iter().all(|(_, token)| token == BOT_TOKEN));
}
