//! The Telegram adapter against a Bot API fake on loopback.

mod support;

use support::{Deliveries, next, wait_until};

use futures::StreamExt;
use molt_channels::telegram::{Telegram, TelegramConfig};
use molt_core::Secret;
use molt_core::channel::{ChannelEgress, ChannelError, ChannelIngress};
use molt_core::message::{Attachment, ChatKind, OutboundMessage};
use serde_json::json;
use std::time::{Duration, Instant};
use support::telegram::{BOT_ID, BOT_USERNAME, FakeTelegram, TOKEN};

fn config(fake: &FakeTelegram) -> TelegramConfig {
    let mut config = TelegramConfig::new(Secret::new(TOKEN));
    config.api_base = fake.base.clone();
    config.poll_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(5);
    config
}

async fn connect(fake: &FakeTelegram) -> (Telegram, Deliveries) {
    let telegram = Telegram::connect(config(fake)).await.unwrap();
    let deliveries = Box::new(telegram.ingress()).deliveries();
    (telegram, deliveries)
}

#[tokio::test]
async fn an_update_is_confirmed_only_after_the_gateway_acknowledges_it() {
    let fake = FakeTelegram::start().await;
    let first = fake.private_message(42, 1, "one");
    let second = fake.private_message(42, 2, "two");
    let third = fake.private_message(42, 3, "three");
    let (_telegram, mut deliveries) = connect(&fake).await;

    let one = next(&mut deliveries).await.unwrap();
    assert_eq!(
        (one.message.text.as_str(), one.message.message_id.as_str()),
        ("one", "42:1")
    );
    assert_eq!(one.message.chat_kind, ChatKind::Direct);
    assert!(one.message.mentioned);
    one.ack.confirm();
    next(&mut deliveries).await.unwrap().ack.confirm();
    // The third is never acknowledged (the gateway could not take it).
    let three = next(&mut deliveries).await.unwrap();
    assert_eq!(three.message.text, "three");
    drop(three);
    // Only the first two are confirmed; the third comes again.
    let again = next(&mut deliveries).await.unwrap();
    assert_eq!(again.message.message_id, "42:3");
    again.ack.confirm();
    wait_until("the third is confirmed", || {
        fake.recorded(|r| r.offsets.contains(&Some(third + 1)))
    })
    .await;
    let offsets = fake.recorded(|r| r.offsets.clone());
    assert_eq!(offsets[0], None);
    assert!(offsets.contains(&Some(second + 1)), "{offsets:?}");
    assert!(
        !offsets.contains(&Some(first + 1)),
        "confirmed in one go: {offsets:?}"
    );
}

#[tokio::test]
async fn conflict_then_flood_control_are_reported_and_polling_goes_on() {
    let fake = FakeTelegram::start().await;
    fake.fail_next(
        "getUpdates",
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
        serde_json::Value::Null,
    );
    fake.fail_next(
        "getUpdates",
        429,
        "Too Many Requests: retry after 1",
        json!({ "retry_after": 1 }),
    );
    fake.private_message(7, 10, "still there?");
    let (_telegram, mut deliveries) = connect(&fake).await;
    match next(&mut deliveries).await {
        Err(ChannelError::Conflict { remedy, .. }) => {
            assert!(remedy.contains("another process polls"), "{remedy}")
        }
        other => panic!("expected a conflict, got {:?}", other.map(|d| d.message)),
    }
    let limited_at = Instant::now();
    match next(&mut deliveries).await {
        Err(ChannelError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Duration::from_secs(1))
        }
        other => panic!("expected flood control, got {:?}", other.map(|d| d.message)),
    }
    let delivery = next(&mut deliveries).await.unwrap();
    assert_eq!(delivery.message.text, "still there?");
    assert!(
        limited_at.elapsed() >= Duration::from_secs(1),
        "retry_after was honoured"
    );
}

#[tokio::test]
async fn a_second_poller_displaces_the_first_with_a_conflict() {
    let fake = FakeTelegram::start().await;
    let (_first, mut first) = connect(&fake).await;
    // Let the first poll start and wait, then poll with the same token.
    wait_until("the first poll", || {
        fake.recorded(|r| !r.offsets.is_empty())
    })
    .await;
    let (_second, _second_deliveries) = connect(&fake).await;
    match next(&mut first).await {
        Err(ChannelError::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {:?}", other.map(|d| d.message)),
    }
}

#[tokio::test]
async fn a_revoked_token_ends_the_stream_with_an_auth_error() {
    let fake = FakeTelegram::start().await;
    let (_telegram, mut deliveries) = connect(&fake).await;
    fake.fail_next("getUpdates", 401, "Unauthorized", serde_json::Value::Null);
    // The first poll may already be waiting: give it an update to end it.
    fake.private_message(1, 1, "x");
    let mut saw_auth = false;
    while let Ok(Some(item)) =
        tokio::time::timeout(Duration::from_secs(10), deliveries.next()).await
    {
        match item {
            Ok(delivery) => delivery.ack.confirm(),
            Err(ChannelError::Auth { reason, .. }) => {
                assert!(reason.contains("TELEGRAM_BOT_TOKEN"));
                assert!(!reason.contains(TOKEN), "the token is never shown");
                saw_auth = true;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(saw_auth, "the stream ended after the auth error");
}

#[tokio::test]
async fn group_messages_say_whether_the_bot_was_mentioned_and_bad_updates_are_skipped() {
    let fake = FakeTelegram::start().await;
    let group = json!({ "id": -100_200, "type": "supergroup", "title": "Team" });
    let from = json!({ "id": 5, "is_bot": false, "first_name": "Grace" });
    // "😀 @molt_test_bot hi": the mention starts after a surrogate pair (offset 3).
    let text = format!("😀 @{BOT_USERNAME} hi");
    fake.push_message(json!({
        "message_id": 1, "from": from, "chat": group, "date": 1_760_000_000, "text": text,
        "entities": [{ "type": "mention", "offset": 3, "length": BOT_USERNAME.len() + 1 }],
    }));
    fake.push_update(|id| json!({ "update_id": id, "message": { "message_id": "not a number" } }));
    fake.push_message(json!({
        "message_id": 2, "from": from, "chat": group, "date": 1_760_000_001, "text": "just chatting",
    }));
    fake.push_message(json!({
        "message_id": 3, "from": from, "chat": group, "date": 1_760_000_002, "text": "and this?",
        "reply_to_message": {
            "message_id": 99, "from": { "id": BOT_ID, "is_bot": true, "first_name": "Molt" },
            "chat": group, "date": 1_760_000_000, "text": "earlier answer",
        },
    }));
    fake.push_message(json!({
        "message_id": 4, "from": from, "chat": group, "date": 1_760_000_003,
        "caption": "look", "photo": [
            { "file_id": "small", "file_unique_id": "s", "width": 90, "height": 90 },
            { "file_id": "large", "file_unique_id": "l", "width": 1280, "height": 1280, "file_size": 120_000 },
        ],
    }));
    let (_telegram, mut deliveries) = connect(&fake).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let delivery = next(&mut deliveries).await.unwrap();
        seen.push(delivery.message.clone());
        delivery.ack.confirm();
    }
    let mentioned: Vec<(&str, bool)> = seen
        .iter()
        .map(|m| (m.message_id.as_str(), m.mentioned))
        .collect();
    assert_eq!(
        mentioned,
        [
            ("-100200:1", true),
            ("-100200:2", false),
            ("-100200:3", true),
            ("-100200:4", false)
        ]
    );
    assert_eq!(seen[0].chat_kind, ChatKind::Group);
    assert_eq!(seen[3].text, "look");
    assert_eq!(seen[3].attachments[0].id, "large");
    assert_eq!(seen[3].attachments[0].size, Some(120_000));
}

fn reply(chat_id: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        channel: "telegram".into(),
        account: BOT_USERNAME.into(),
        chat_id: chat_id.into(),
        thread_id: None,
        reply_to: Some(format!("{chat_id}:7")),
        text: text.into(),
        piece: 0,
        possibly_delivered: false,
    }
}

#[tokio::test]
async fn replies_are_escaped_for_markdown_v2_and_show_the_text_as_written() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    let egress = telegram.egress();
    let text = "Done! 1+1=2. See **the list** (below) - and `a.b()` #tag {x} | > ~";
    egress.send(reply("42", text)).await.unwrap();
    let sent = fake.recorded(|r| r.sent.clone());
    assert_eq!(sent[0]["parse_mode"], "MarkdownV2");
    assert_eq!(sent[0]["reply_parameters"]["message_id"], 7);
    assert_eq!(
        sent[0]["visible_text"],
        "Done! 1+1=2. See the list (below) - and a.b() #tag {x} | > ~"
    );
}

#[tokio::test]
async fn refused_formatting_is_sent_again_as_plain_text() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    fake.fail_next(
        "sendMessage",
        400,
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 3",
        serde_json::Value::Null,
    );
    telegram
        .egress()
        .send(reply("42", "a **b** c."))
        .await
        .unwrap();
    let sent = fake.recorded(|r| r.sent.clone());
    assert_eq!(sent.len(), 1);
    assert!(sent[0].get("parse_mode").is_none());
    assert_eq!(sent[0]["text"], "a **b** c.");
}

#[tokio::test]
async fn flood_control_is_waited_out_and_a_migrated_group_is_followed() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    let egress = telegram.egress();
    fake.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        json!({ "retry_after": 1 }),
    );
    let started = Instant::now();
    egress.send(reply("42", "after the wait")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));

    fake.migrate(-300, -100_300);
    egress
        .send(reply("-300", "to the new group"))
        .await
        .unwrap();
    egress.send(reply("-300", "and again")).await.unwrap();
    let chats: Vec<String> = fake.recorded(|r| {
        r.sent
            .iter()
            .map(|sent| sent["chat_id"].to_string())
            .collect()
    });
    assert_eq!(chats, ["\"42\"", "\"-100300\"", "\"-100300\""]);

    egress.typing("42").await.unwrap();
    assert_eq!(fake.recorded(|r| r.actions[0]["action"].clone()), "typing");
}

#[tokio::test]
async fn a_wrong_token_fails_to_connect_with_an_auth_error() {
    let fake = FakeTelegram::start().await;
    let mut config = config(&fake);
    config.token = Secret::new("999:wrong");
    match Telegram::connect(config).await {
        Err(ChannelError::Auth { reason, .. }) => assert!(!reason.contains("999:wrong")),
        Err(other) => panic!("expected an auth error, got {other}"),
        Ok(_) => panic!("connected with a wrong token"),
    }
}

/// Serves `webhook` at `http://127.0.0.1:<port>/telegram` until the test ends.
async fn serve_webhook(webhook: molt_channels::telegram::TelegramWebhook) -> String {
    let app = axum::Router::new().route(
        "/telegram",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                webhook.handle(&headers, &body).await
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/telegram", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_webhook_update_is_answered_200_only_once_the_gateway_took_it() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    let secret = Secret::new("s3cret_for-the-webhook");
    let (webhook, ingress) = telegram.webhook(secret.clone()).unwrap();
    let mut deliveries = Box::new(ingress).deliveries();
    let url = serve_webhook(webhook).await;
    telegram.set_webhook(&url, &secret).await.unwrap();
    // Polling and a webhook exclude each other, as on Telegram.
    let mut polling = Box::new(telegram.ingress()).deliveries();
    assert!(matches!(
        next(&mut polling).await,
        Err(ChannelError::Conflict { remedy, .. }) if remedy.contains("webhook")
    ));
    drop(polling);

    let first = fake.private_message(42, 1, "one");
    let one = next(&mut deliveries).await.unwrap();
    assert_eq!(one.message.message_id, "42:1");
    // Telegram's request waits for the gateway: nothing answered yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.recorded(|r| r.webhook_answers.is_empty()));
    one.ack.confirm();
    wait_until("the update is answered 200", || {
        fake.recorded(|r| r.webhook_answers == [(first, 200)] && r.queue.is_empty())
    })
    .await;

    // Not taken: Telegram is told to come again, and the message comes again.
    let second = fake.private_message(42, 2, "two");
    drop(next(&mut deliveries).await.unwrap());
    let again = next(&mut deliveries).await.unwrap();
    assert_eq!(again.message.message_id, "42:2");
    again.ack.confirm();
    wait_until("the redelivery is answered 200", || {
        fake.recorded(|r| {
            r.webhook_answers.ends_with(&[(second, 503), (second, 200)]) && r.queue.is_empty()
        })
    })
    .await;
}

#[tokio::test]
async fn a_webhook_request_without_the_right_secret_is_refused() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    assert!(matches!(
        telegram.webhook(Secret::new("no spaces allowed")),
        Err(ChannelError::Rejected { .. })
    ));
    let (webhook, ingress) = telegram.webhook(Secret::new("right")).unwrap();
    let mut deliveries = Box::new(ingress).deliveries();
    let url = serve_webhook(webhook).await;
    let update = json!({ "update_id": 1, "message": {
        "message_id": 1, "date": 1_760_000_000, "text": "hi",
        "from": { "id": 42, "is_bot": false, "first_name": "Ada" },
        "chat": { "id": 42, "type": "private" },
    }});
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let post = |secret: Option<&'static str>, body: String| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.header(molt_channels::telegram::SECRET_HEADER, secret);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None, update.to_string()).await, 403);
    assert_eq!(post(Some("wrong"), update.to_string()).await, 403);
    assert_eq!(post(Some("righ"), update.to_string()).await, 403);
    // Bad input is skipped with a 200, so Telegram does not send it forever.
    assert_eq!(post(Some("right"), "{not json".into()).await, 200);
    let accepted = tokio::spawn(post(Some("right"), update.to_string()));
    next(&mut deliveries).await.unwrap().ack.confirm();
    assert_eq!(accepted.await.unwrap(), 200);
}

#[tokio::test]
async fn end_to_end_an_unknown_user_pairs_and_then_gets_a_split_escaped_reply() {
    use molt_core::store::MemoryStore;
    use std::sync::Arc;
    use support::gateway::{RepeatModel, gateway, pairing_code};

    let fake = FakeTelegram::start().await;
    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    let gateway = gateway(
        Arc::new(MemoryStore::new()),
        Arc::new(RepeatModel {
            times: 300,
            delay: Duration::from_millis(300),
        }),
    );
    gateway.register_egress(molt_channels::telegram::CHANNEL, telegram.egress());
    let receiving = tokio::spawn({
        let gateway = gateway.clone();
        let ingress = Box::new(telegram.ingress());
        async move { gateway.receive(ingress).await }
    });
    let visible = |fake: &FakeTelegram| -> Vec<String> {
        fake.recorded(|r| {
            r.sent
                .iter()
                .map(|m| m["visible_text"].as_str().unwrap().to_owned())
                .collect()
        })
    };

    fake.private_message(42, 1, "hello?");
    wait_until("the pairing code is sent", || visible(&fake).len() == 1).await;
    let code = pairing_code(&visible(&fake)[0]);
    let approved = gateway.pairing().approve("telegram", &code).await.unwrap();
    assert_eq!(approved, "42");

    // 16 characters, 7 of them reserved in MarkdownV2, 300 times: 4,800
    // characters, so two messages, each escaped and within 4,096.
    let said = "(1+1=2)! a_b.c# ";
    fake.private_message(42, 2, said);
    wait_until("the reply arrives in two parts", || {
        visible(&fake).len() == 3
    })
    .await;
    let parts = visible(&fake)[1..].to_vec();
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
    let joined: String = parts.join(" ");
    assert_eq!(joined.trim(), said.repeat(300).trim());
    let sent = fake.recorded(|r| r.sent[1].clone());
    assert_eq!(sent["parse_mode"], "MarkdownV2");
    assert_eq!(sent["reply_parameters"]["message_id"], 2);
    // Typing was shown while the run lasted.
    assert!(fake.recorded(|r| !r.actions.is_empty()));
    // Every update was confirmed: the next poll's offset is past them.
    wait_until("both updates are confirmed", || {
        fake.recorded(|r| r.queue.is_empty())
    })
    .await;
    receiving.abort();
}

#[tokio::test]
async fn doctor_reports_the_bot_a_webhook_in_the_way_and_a_bad_token() {
    let fake = FakeTelegram::start().await;
    let report = molt_channels::telegram::doctor(config(&fake)).await;
    assert!(report.healthy(), "{report}");
    assert!(report.to_string().contains(BOT_USERNAME), "{report}");

    let telegram = Telegram::connect(config(&fake)).await.unwrap();
    let secret = Secret::new("s");
    telegram
        .set_webhook("http://127.0.0.1:9/x", &secret)
        .await
        .unwrap();
    let report = molt_channels::telegram::doctor(config(&fake)).await;
    assert!(!report.healthy());
    assert!(report.to_string().contains("409"), "{report}");

    let mut wrong = config(&fake);
    wrong.token = Secret::new("1:wrong");
    let report = molt_channels::telegram::doctor(wrong).await;
    let text = report.to_string();
    assert!(text.contains("fix: check TELEGRAM_BOT_TOKEN"), "{text}");
    assert!(!text.contains("1:wrong"));
}

#[tokio::test]
async fn a_photo_is_fetched_through_get_file_in_the_largest_size_a_model_takes() {
    let fake = FakeTelegram::start().await;
    fake.add_file("photo-m", support::JPEG);
    fake.push_message(json!({
        "message_id": 9, "date": 1_760_000_000,
        "from": { "id": 42, "is_bot": false, "first_name": "Ada" },
        "chat": { "id": 42, "type": "private", "first_name": "Ada" },
        "photo": [
            { "file_id": "photo-s", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 300 },
            { "file_id": "photo-m", "file_unique_id": "m", "width": 16, "height": 16,
              "file_size": support::JPEG.len() },
            { "file_id": "photo-l", "file_unique_id": "l", "width": 4000, "height": 3000,
              "file_size": 9_000_000 },
        ],
    }));
    let (telegram, mut deliveries) = connect(&fake).await;
    let delivery = next(&mut deliveries).await.unwrap();
    let attachment = delivery.message.attachments[0].clone();
    assert_eq!(
        attachment.id, "photo-m",
        "the largest size under the image limit"
    );
    let egress = telegram.egress();
    let bytes = egress.download(&attachment, 1 << 20).await.unwrap();
    assert_eq!(bytes, support::JPEG);

    // Over the limit: refused on getFile's size, before any download.
    let sizeless = Attachment {
        size: None,
        ..attachment.clone()
    };
    let limit = support::JPEG.len() as u64 - 1;
    let refused = egress.download(&sizeless, limit).await;
    assert!(
        matches!(refused, Err(ChannelError::TooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(fake.recorded(|r| r.downloads.len()), 1);

    // An id Telegram does not know is its refusal, and the token never shows.
    let unknown = Attachment {
        id: "gone".into(),
        ..attachment
    };
    let refused = egress.download(&unknown, 1 << 20).await.unwrap_err();
    assert!(
        matches!(refused, ChannelError::Rejected { .. }),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains(TOKEN), "{refused}");
}
