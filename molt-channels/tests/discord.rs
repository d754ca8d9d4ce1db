//! The Discord adapter against a Discord fake on loopback.

mod support;

use support::{Deliveries, next, wait_until};

use futures::StreamExt;
use molt_channels::discord::{Discord, DiscordConfig};
use molt_core::Secret;
use molt_core::channel::{ChannelEgress, ChannelError, ChannelIngress};
use molt_core::message::{Attachment, ChatKind, OutboundMessage};
use molt_core::store::{MemoryStore, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::discord::{BOT_ID, FakeDiscord, TOKEN};

fn config(fake: &FakeDiscord) -> DiscordConfig {
    let mut config = DiscordConfig::new(Secret::new(TOKEN));
    config.api_base = fake.base.clone();
    config.request_timeout = Duration::from_secs(5);
    config
}

async fn connect_with(config: DiscordConfig, fake: &FakeDiscord) -> (Discord, Deliveries) {
    let discord = Discord::connect(config).await.unwrap();
    let deliveries = Box::new(discord.ingress()).deliveries();
    wait_until("the gateway session is live", || fake.is_live()).await;
    (discord, deliveries)
}

#[tokio::test]
async fn direct_and_guild_messages_arrive_with_mention_gating() {
    let fake = FakeDiscord::start().await;
    let (_discord, mut deliveries) = connect_with(config(&fake), &fake).await;
    let id = fake.direct_message("42", "hello");
    let dm = next(&mut deliveries).await.unwrap();
    assert_eq!(dm.message.message_id, id);
    assert_eq!(
        (dm.message.chat_kind, dm.message.mentioned),
        (ChatKind::Direct, true)
    );
    fake.guild_message("43", "700", "just chatting", &[]);
    fake.guild_message("43", "700", &format!("<@{BOT_ID}> help"), &[BOT_ID]);
    let chatting = next(&mut deliveries).await.unwrap();
    assert!(!chatting.message.mentioned);
    let asked = next(&mut deliveries).await.unwrap();
    assert_eq!(
        (asked.message.text.as_str(), asked.message.mentioned),
        ("help", true)
    );
    // Unknown events and bad payloads are skipped; the connection goes on.
    fake.dispatch("SOMETHING_NEW", json!({ "x": 1 }));
    fake.send_frame(json!({ "op": 0, "t": "MESSAGE_CREATE", "s": null, "d": { "id": 5 } }));
    fake.direct_message("42", "still here");
    assert_eq!(
        next(&mut deliveries).await.unwrap().message.text,
        "still here"
    );
    assert_eq!(fake.recorded(|r| r.identifies), 1);
}

#[tokio::test]
async fn a_4000_close_is_resumed_with_the_last_confirmed_sequence() {
    let fake = FakeDiscord::start().await;
    let (_discord, mut deliveries) = connect_with(config(&fake), &fake).await;
    fake.direct_message("42", "one");
    next(&mut deliveries).await.unwrap().ack.confirm();
    fake.direct_message("42", "two");
    // Received, not yet acknowledged, when the connection drops.
    let two = next(&mut deliveries).await.unwrap();
    fake.close(4000);
    wait_until("the connection is down", || !fake.is_live()).await;
    // Sent while the bot was away: Discord replays it on RESUME.
    fake.direct_message("42", "three");
    wait_until("the session is resumed", || fake.is_live()).await;
    // READY is 1, "one" 2, "two" 3: "one" was the last confirmed.
    assert_eq!(fake.recorded(|r| r.resumes.clone()), [2]);
    assert_eq!(fake.recorded(|r| r.identifies), 1);
    let replayed = next(&mut deliveries).await.unwrap();
    assert_eq!(
        replayed.message.text, "two",
        "an unconfirmed message comes again"
    );
    let three = next(&mut deliveries).await.unwrap();
    assert_eq!(three.message.text, "three");
    drop(two);
}

#[tokio::test]
async fn a_zombie_connection_is_closed_and_resumed() {
    let fake = FakeDiscord::start().await;
    fake.recorded(|r| r.heartbeat_ms = 200);
    let (_discord, mut deliveries) = connect_with(config(&fake), &fake).await;
    wait_until("heartbeats flow", || {
        fake.recorded(|r| r.heartbeats.len() >= 2)
    })
    .await;
    // The server stops answering heartbeats: the next beat finds no ACK.
    fake.recorded(|r| r.ack_heartbeats = false);
    wait_until("the adapter resumes", || {
        fake.recorded(|r| r.resumes.len() == 1)
    })
    .await;
    fake.recorded(|r| r.ack_heartbeats = true);
    fake.direct_message("42", "after the zombie");
    assert_eq!(
        next(&mut deliveries).await.unwrap().message.text,
        "after the zombie"
    );
    assert_eq!(fake.recorded(|r| (r.connections, r.identifies)), (2, 1));
    // Heartbeats carry the last sequence number seen.
    assert!(fake.recorded(|r| r.heartbeats.iter().any(|d| d == &json!(1))));
}

#[tokio::test]
async fn reconnect_requests_and_invalid_sessions_are_followed() {
    let fake = FakeDiscord::start().await;
    let (_discord, mut deliveries) = connect_with(config(&fake), &fake).await;
    fake.send_frame(json!({ "op": 7, "d": null, "s": null, "t": null }));
    wait_until("op 7 leads to a resume", || {
        fake.recorded(|r| r.resumes.len() == 1)
    })
    .await;
    wait_until("live again", || fake.is_live()).await;
    fake.send_frame(json!({ "op": 9, "d": false, "s": null, "t": null }));
    wait_until("op 9 false leads to a new identify", || {
        fake.recorded(|r| r.identifies == 2)
    })
    .await;
    fake.direct_message("42", "new session");
    assert_eq!(
        next(&mut deliveries).await.unwrap().message.text,
        "new session"
    );
}

#[tokio::test]
async fn a_disallowed_intent_is_fatal_with_the_remedy() {
    let fake = FakeDiscord::start().await;
    fake.recorded(|r| r.message_content_enabled = false);
    let discord = Discord::connect(config(&fake)).await.unwrap();
    let mut deliveries = Box::new(discord.ingress()).deliveries();
    let error = next(&mut deliveries).await.err().unwrap();
    assert!(
        matches!(&error, ChannelError::Rejected { reason, .. } if reason.contains("4014") && reason.contains("Message Content Intent")),
        "{error}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), deliveries.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the stream ends: no reconnect loop"
    );
    assert_eq!(fake.recorded(|r| r.connections), 1);

    // Without the privileged intent, the same bot connects.
    let mut without = config(&fake);
    without.message_content = false;
    let (_discord, _deliveries) = connect_with(without, &fake).await;
}

#[tokio::test]
async fn a_bad_token_is_an_auth_error() {
    let fake = FakeDiscord::start().await;
    let mut wrong = config(&fake);
    wrong.token = Secret::new("not-the-token");
    let error = Discord::connect(wrong).await.err().unwrap();
    assert!(matches!(error, ChannelError::Auth { .. }), "{error}");
    assert!(!error.to_string().contains("not-the-token"));
}

/// A reply to message 1234, as piece `piece` of its answer.
fn reply(chat_id: &str, piece: usize, text: &str) -> OutboundMessage {
    OutboundMessage {
        channel: "discord".into(),
        account: BOT_ID.into(),
        chat_id: chat_id.into(),
        thread_id: None,
        reply_to: Some("1234".into()),
        text: text.into(),
        piece,
        possibly_delivered: false,
    }
}

#[tokio::test]
async fn sending_follows_the_announced_buckets_and_waits_out_a_429() {
    let fake = FakeDiscord::start().await;
    let discord = Discord::connect(config(&fake)).await.unwrap();
    let egress = discord.egress();
    // Twelve messages through a bucket of five per 500 ms: the adapter waits
    // as the headers say, so Discord never has to refuse one.
    for n in 0..12 {
        egress
            .send(reply("700", n, &format!("m{n}")))
            .await
            .unwrap();
    }
    assert_eq!(
        fake.recorded(|r| (r.sent.len(), r.too_many_requests)),
        (12, 0)
    );
    let first = fake.recorded(|r| r.sent[0].clone());
    assert_eq!(first["message_reference"]["message_id"], "1234");
    assert_eq!(first["allowed_mentions"]["parse"], json!([]));
    // A global 429 is waited out, then the message goes.
    fake.rate_limit_next("create_message", 0.3, true);
    let started = Instant::now();
    egress
        .send(reply("701", 0, "after the wait"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(fake.recorded(|r| r.sent.len()), 13);
    // The same piece again (as after a restart) is not created twice: the
    // nonce is enforced.
    let mut again = reply("701", 0, "after the wait");
    again.possibly_delivered = true;
    egress.send(again).await.unwrap();
    assert_eq!(fake.recorded(|r| (r.sent.len(), r.nonce_repeats)), (13, 1));
    assert_eq!(fake.recorded(|r| r.sent[12]["nonce"].clone()), "1234.0");
    // Typing goes to the channel.
    egress.typing("700").await.unwrap();
    assert_eq!(fake.recorded(|r| r.typing.clone()), ["700"]);
}

#[tokio::test]
async fn a_restarted_process_resumes_its_saved_session_and_gets_what_it_missed() {
    let fake = FakeDiscord::start().await;
    let store = Arc::new(MemoryStore::new());
    let mut with_store = config(&fake);
    with_store.session_store = Some(store.clone());
    let (discord, mut deliveries) = connect_with(with_store.clone(), &fake).await;
    fake.direct_message("42", "one");
    next(&mut deliveries).await.unwrap().ack.confirm();
    fake.direct_message("42", "two");
    let _unconfirmed = next(&mut deliveries).await.unwrap();
    // The process stops (its stream is dropped); a message arrives meanwhile.
    drop(deliveries);
    drop(discord);
    wait_until("the connection is down", || !fake.is_live()).await;
    fake.direct_message("42", "three");

    let (_discord, mut deliveries) = connect_with(with_store, &fake).await;
    assert_eq!(
        fake.recorded(|r| (r.identifies, r.resumes.clone())),
        (1, vec![2])
    );
    let texts = [
        next(&mut deliveries).await.unwrap().message.text,
        next(&mut deliveries).await.unwrap().message.text,
    ];
    assert_eq!(texts, ["two", "three"]);
}

#[tokio::test]
async fn a_stored_session_that_resumes_off_discord_is_dropped_and_never_gets_the_token() {
    // A session file restored from a bucket that someone else wrote: a RESUME
    // would hand the bot token to whatever host it names.
    let planted = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let planted_url = format!("ws://{}", planted.local_addr().unwrap());
    let store = Arc::new(MemoryStore::new());
    let session = json!({ "session_id": "stolen", "resume_url": planted_url, "seq": 7 });
    store
        .put(
            "channels/discord/session",
            session.to_string().into_bytes().into(),
        )
        .await
        .unwrap();
    let fake = FakeDiscord::start().await;
    let mut with_store = config(&fake);
    with_store.session_store = Some(store);
    let (_discord, _deliveries) = connect_with(with_store, &fake).await;
    assert_eq!(
        fake.recorded(|r| (r.identifies, r.resumes.clone())),
        (1, vec![])
    );
    let knocked = tokio::time::timeout(Duration::from_millis(300), planted.accept()).await;
    assert!(knocked.is_err(), "the planted host was contacted");
}

#[tokio::test]
async fn end_to_end_an_unknown_user_pairs_and_then_gets_a_split_reply() {
    use support::gateway::{RepeatModel, gateway, pairing_code};

    let fake = FakeDiscord::start().await;
    let discord = Discord::connect(config(&fake)).await.unwrap();
    let gateway = gateway(
        Arc::new(MemoryStore::new()),
        Arc::new(RepeatModel {
            times: 300,
            delay: Duration::from_millis(300),
        }),
    );
    gateway.register_egress(molt_channels::discord::CHANNEL, discord.egress());
    let receiving = tokio::spawn({
        let gateway = gateway.clone();
        let ingress = Box::new(discord.ingress());
        async move { gateway.receive(ingress).await }
    });
    wait_until("the gateway session is live", || fake.is_live()).await;
    let contents = |fake: &FakeDiscord| -> Vec<String> {
        fake.recorded(|r| {
            r.sent
                .iter()
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect()
        })
    };
    fake.direct_message("42", "hello?");
    wait_until("the pairing code is sent", || contents(&fake).len() == 1).await;
    let code = pairing_code(&contents(&fake)[0]);
    assert_eq!(
        gateway.pairing().approve("discord", &code).await.unwrap(),
        "42"
    );

    let said = "**bold** and `code`, 12 ";
    let id = fake.direct_message("42", said);
    wait_until("the reply arrives in parts", || contents(&fake).len() == 5).await;
    let parts = contents(&fake)[1..].to_vec();
    assert!(parts.iter().all(|p| p.chars().count() <= 2000));
    let squeeze = |text: &str| text.split_whitespace().collect::<String>();
    assert!(
        squeeze(&parts.concat()) == squeeze(&said.repeat(300)),
        "the parts hold the whole reply"
    );
    let first = fake.recorded(|r| r.sent[1].clone());
    assert_eq!(first["message_reference"]["message_id"], id);
    assert_eq!(first["channel_id"], "dm-42");
    assert!(fake.recorded(|r| r.typing.contains(&"dm-42".to_owned())));
    receiving.abort();
}

#[tokio::test]
async fn doctor_reports_the_bot_the_identify_and_a_missing_intent() {
    let fake = FakeDiscord::start().await;
    let report = molt_channels::discord::doctor(config(&fake)).await;
    assert!(report.healthy(), "{report}");
    assert!(report.to_string().contains("identify accepted"), "{report}");
    fake.recorded(|r| r.message_content_enabled = false);
    let report = molt_channels::discord::doctor(config(&fake)).await;
    assert!(!report.healthy());
    assert!(
        report
            .to_string()
            .contains("fix: enable Message Content Intent"),
        "{report}"
    );
    let mut wrong = config(&fake);
    wrong.token = Secret::new("nope");
    let report = molt_channels::discord::doctor(wrong).await;
    assert!(
        report.to_string().contains("fix: check DISCORD_BOT_TOKEN"),
        "{report}"
    );
}

#[tokio::test]
async fn an_attachment_comes_from_the_cdn_without_the_token_and_never_from_elsewhere() {
    let fake = FakeDiscord::start().await;
    let (discord, mut deliveries) = connect_with(config(&fake), &fake).await;
    let upload = fake.upload("dm-7", "pixel.png", "image/png", support::PNG);
    fake.direct_message_with("7", "", vec![upload]);
    let delivery = next(&mut deliveries).await.unwrap();
    let attachment = delivery.message.attachments[0].clone();
    assert_eq!(attachment.media_type.as_deref(), Some("image/png"));
    assert_eq!(attachment.name.as_deref(), Some("pixel.png"));
    let egress = discord.egress();
    assert_eq!(
        egress.download(&attachment, 1 << 20).await.unwrap(),
        support::PNG
    );

    // The CDN streams without a length: the limit holds while reading.
    let sizeless = Attachment {
        size: None,
        ..attachment.clone()
    };
    let limit = support::PNG.len() as u64 - 1;
    let refused = egress.download(&sizeless, limit).await;
    assert!(
        matches!(refused, Err(ChannelError::TooLarge { .. })),
        "{refused:?}"
    );

    // A URL off Discord's CDN is never fetched; an unsigned one is Discord's 404.
    let elsewhere = support::Elsewhere::start().await;
    let off_cdn = Attachment {
        url: Some(format!("{}/attachments/dm-7/1/pixel.png", elsewhere.base)),
        ..attachment.clone()
    };
    let refused = egress.download(&off_cdn, 1 << 20).await;
    assert!(
        matches!(refused, Err(ChannelError::Rejected { .. })),
        "{refused:?}"
    );
    let unsigned = Attachment {
        url: attachment
            .url
            .as_deref()
            .map(|url| url.split('?').next().unwrap().to_owned()),
        ..attachment
    };
    let refused = egress.download(&unsigned, 1 << 20).await;
    assert!(
        matches!(refused, Err(ChannelError::Rejected { .. })),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(elsewhere.connections(), 0);
    let requests = fake.recorded(|r| r.cdn_requests.clone());
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|(_, auth)| auth.is_none()),
        "{requests:?}"
    );
}
