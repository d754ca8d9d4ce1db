//! Who the real `moltworker` binary answers, tried from outside as a stranger
//! would: pairing codes approved with `moltworker pairing` while the gateway
//! runs, and group chats on Telegram, Discord and Slack under their group
//! policies (a stranger's group never reaches the model).

#[path = "../../../molt-channels/tests/support/discord.rs"]
mod discord;
#[path = "../../../molt-channels/tests/support/slack.rs"]
mod slack;
mod support;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::Gateway;

async fn start(state: &Path, env: Vec<(&'static str, String)>) -> Gateway {
    let state = state.to_owned();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Gateway::start(&state, &env)
    })
    .await
    .unwrap()
}

/// Runs `moltworker pairing <args>` on `state`; returns the exit code and stdout + stderr.
fn pairing(state: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .arg("pairing")
        .args(args)
        .env("MOLT_STATE_DIR", state)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The texts Telegram was asked to send to `chat`.
fn telegram_texts(fake: &telegram::FakeTelegram, chat: i64) -> Vec<String> {
    fake.recorded(|r| {
        r.sent
            .iter()
            .filter(|sent| sent["chat_id"].to_string().trim_matches('"') == chat.to_string())
            .map(|sent| sent["visible_text"].as_str().unwrap_or_default().to_owned())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_answered_once_the_operator_approves_their_code_while_the_gateway_runs() {
    let fake = telegram::FakeTelegram::start().await;
    let state = tempfile::tempdir().unwrap();
    let env = vec![
        ("TELEGRAM_BOT_TOKEN", telegram::TOKEN.to_owned()),
        ("TELEGRAM_API_BASE", fake.base.clone()),
    ];
    let _gateway = start(state.path(), env).await;
    assert_eq!(
        pairing(state.path(), &["list"]),
        (0, "no pending pairing requests\n".to_owned())
    );

    // Two strangers write; the default DM policy gives each a code.
    fake.private_message(501, 1, "hello?");
    fake.private_message(502, 2, "me too");
    let code_of = |chat| {
        telegram_texts(&fake, chat).first().map(|reply| {
            let code = reply
                .split("pairing code is ")
                .nth(1)
                .expect("a pairing reply");
            code[..8].to_owned()
        })
    };
    let ada = wait_for("Ada's code", || code_of(501)).await;
    let bob = wait_for("Bob's code", || code_of(502)).await;
    let (status, listed) = pairing(state.path(), &["list"]);
    assert_eq!(status, 0, "{listed}");
    for (code, sender) in [(&ada, "501"), (&bob, "502")] {
        assert!(
            listed.contains(&format!("moltworker pairing approve telegram {code}"))
                && listed.contains(&format!("sender {sender}")),
            "{listed}"
        );
    }

    // The operator approves Ada (in lower case) and rejects Bob.
    let (status, said) = pairing(state.path(), &["approve", "telegram", &ada.to_lowercase()]);
    assert_eq!(
        (status, said.contains("approved telegram sender 501")),
        (0, true),
        "{said}"
    );
    let (status, said) = pairing(state.path(), &["reject", "telegram", &bob]);
    assert_eq!(
        (status, said.contains("rejected telegram sender 502")),
        (0, true),
        "{said}"
    );
    let (status, said) = pairing(state.path(), &["approve", "telegram", &bob]);
    assert_eq!(
        (status, said.contains("no pending pairing request")),
        (1, true),
        "{said}"
    );
    let (status, said) = pairing(state.path(), &["approve", "telegram"]);
    assert_eq!((status, said.contains("usage")), (2, true), "{said}");
    let elsewhere = state.path().join("not-the-state");
    let (status, said) = pairing(&elsewhere, &["list"]);
    assert_eq!(
        (status, said.contains("no gateway state in")),
        (1, true),
        "{said}"
    );
    let (_, listed) = pairing(state.path(), &["list"]);
    assert!(
        listed.starts_with("no pending pairing requests\napproved senders:\n")
            && listed.contains("sender 501"),
        "{listed}"
    );

    // Without a restart: Ada's next message is answered, Bob's is not.
    fake.private_message(502, 3, "and now?");
    fake.private_message(501, 4, "am I in?");
    wait_for("Ada's answer", || {
        (telegram_texts(&fake, 501).len() == 2).then_some(())
    })
    .await;
    assert_eq!(telegram_texts(&fake, 501)[1], "echo: am I in?");
    // A rejection is not a ban: Bob may ask again, and gets a new code only.
    let bob_texts = wait_for("Bob's new code", || {
        let texts = telegram_texts(&fake, 502);
        (texts.len() == 2).then_some(texts)
    })
    .await;
    assert!(
        bob_texts.iter().all(|t| t.contains("pairing code is")),
        "{bob_texts:?}"
    );
    assert!(!bob_texts[1].contains(bob.as_str()), "{bob_texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_in_an_unlisted_group_never_reaches_the_model() {
    let telegram = telegram::FakeTelegram::start().await;
    let discord = discord::FakeDiscord::start().await;
    let slack = slack::FakeSlack::start().await;
    let state = tempfile::tempdir().unwrap();
    let env = vec![
        ("TELEGRAM_BOT_TOKEN", telegram::TOKEN.to_owned()),
        ("TELEGRAM_API_BASE", telegram.base.clone()),
        ("DISCORD_BOT_TOKEN", discord::TOKEN.to_owned()),
        ("DISCORD_API_BASE", discord.base.clone()),
        ("SLACK_BOT_TOKEN", slack::BOT_TOKEN.to_owned()),
        ("SLACK_APP_TOKEN", slack::APP_TOKEN.to_owned()),
        ("SLACK_API_BASE", slack.base.clone()),
        // DMs closed everywhere; each channel lists one group of its owner.
        ("TELEGRAM_DM_POLICY", "disabled".to_owned()),
        ("DISCORD_DM_POLICY", "allowlist".to_owned()),
        ("DISCORD_DM_ALLOW_FROM", "800000000000000001".to_owned()),
        ("SLACK_DM_POLICY", "disabled".to_owned()),
        ("TELEGRAM_GROUP_ALLOW_FROM", "-100111".to_owned()),
        ("DISCORD_GROUP_ALLOW_FROM", "700".to_owned()),
        ("SLACK_GROUP_ALLOW_FROM", "C9".to_owned()),
    ];
    let _gateway = start(state.path(), env).await;
    wait_for("Discord's identify", || {
        (discord.recorded(|r| r.identifies) > 0).then_some(())
    })
    .await;
    wait_for("Slack's socket", || (slack.live() > 0).then_some(())).await;

    // Telegram: the stranger's group first, then the owner's group.
    let group_message = |chat: i64, id: i64, user: i64, text: &str| -> Value {
        let text = format!("@{} {text}", telegram::BOT_USERNAME);
        json!({
            "message_id": id, "date": 1_760_000_000, "text": text,
            "from": { "id": user, "is_bot": false, "first_name": "Eve" },
            "chat": { "id": chat, "type": "supergroup", "title": "A group" },
            "entities": [{ "type": "mention", "offset": 0, "length": telegram::BOT_USERNAME.len() + 1 }],
        })
    };
    telegram.push_message(group_message(-100666, 1, 666, "stranger's group"));
    telegram.push_message(group_message(-100111, 2, 666, "owner's group"));
    // Discord: a guild channel of the stranger's, then the listed one.
    let mention = format!("<@{}>", discord::BOT_ID);
    discord.guild_message(
        "666",
        "766",
        &format!("{mention} stranger's group"),
        &[discord::BOT_ID],
    );
    discord.guild_message(
        "666",
        "700",
        &format!("{mention} owner's group"),
        &[discord::BOT_ID],
    );
    // Slack: an app mention in a channel of the stranger's, then in the listed one.
    slack.mention_in_thread("U666", "C666", "1699999999.000100", "stranger's group");
    slack.mention_in_thread("U666", "C9", "1699999999.000200", "owner's group");

    // Each channel takes its messages in order, so once the listed group is
    // answered, the stranger's message has had its verdict.
    let replies = || {
        let mut replies: Vec<String> = telegram.recorded(|r| {
            r.sent
                .iter()
                .map(|s| format!("telegram {} {}", s["chat_id"], s["visible_text"]))
                .collect()
        });
        replies.extend(discord.recorded(|r| {
            r.sent
                .iter()
                .map(|s| format!("discord {} {}", s["channel_id"], s["content"]))
                .collect::<Vec<_>>()
        }));
        replies.extend(slack.recorded(|r| {
            r.posted
                .iter()
                .map(|s| format!("slack {} {}", s["channel"], s["text"]))
                .collect::<Vec<_>>()
        }));
        replies
    };
    wait_for("the listed groups' answers", || {
        (replies().len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut replies = replies();
    replies.sort();
    assert_eq!(
        replies,
        [
            "discord \"700\" \"echo: owner's group\"",
            "slack \"C9\" \"echo: owner's group\"",
            "telegram \"-100111\" \"echo: @molt_test_bot owner's group\"",
        ]
    );
}
