//! No message lost or answered twice across crashes: 1,000 messages spread
//! over the Telegram, Discord and Slack fakes while the real `moltworker`
//! binary is killed with SIGKILL at random points (in the middle of a burst,
//! so messages are being accepted, acknowledged, answered and sent) and
//! started again. Every message must be answered, counted by its platform id,
//! and exactly once on Discord (its nonce) and Slack (reply metadata read
//! back). Telegram's Bot API has no idempotent send and no way to read a chat
//! back, so a reply cut between Telegram's answer and our record of it may be
//! sent twice: that is allowed only for replies the process says, in its log,
//! it is resending in doubt.

#[path = "../../../molt-channels/tests/support/discord.rs"]
mod discord;
#[path = "../../../molt-channels/tests/support/slack.rs"]
mod slack;
mod support;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::Gateway;

const MESSAGES: usize = 1_000;
const KILLS: usize = 5;
/// Senders per platform (all in one session under the default scope).
const USERS: usize = 8;

/// The three fakes, alive for the whole test (the platforms outlive the process).
struct Platforms {
    telegram: telegram::FakeTelegram,
    discord: discord::FakeDiscord,
    slack: slack::FakeSlack,
}

impl Platforms {
    async fn start() -> Self {
        let platforms = Self {
            telegram: telegram::FakeTelegram::start().await,
            discord: discord::FakeDiscord::start().await,
            slack: slack::FakeSlack::start().await,
        };
        // Many senders at once: the fake's per-channel bucket is per DM here.
        platforms.discord.recorded(|r| r.heartbeat_ms = 500);
        platforms
    }

    /// The environment that points moltworker's three channels at the fakes.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TELEGRAM_BOT_TOKEN", telegram::TOKEN.into()),
            ("TELEGRAM_API_BASE", self.telegram.base.clone()),
            ("TELEGRAM_DM_POLICY", "open".into()),
            ("DISCORD_BOT_TOKEN", discord::TOKEN.into()),
            ("DISCORD_API_BASE", self.discord.base.clone()),
            ("DISCORD_DM_POLICY", "open".into()),
            ("SLACK_BOT_TOKEN", slack::BOT_TOKEN.into()),
            ("SLACK_APP_TOKEN", slack::APP_TOKEN.into()),
            ("SLACK_API_BASE", self.slack.base.clone()),
            ("SLACK_DM_POLICY", "open".into()),
            // The default scope: every DM in one session, so a run resumed
            // after a crash must not see messages that came after it.
        ]
    }

    /// Sends message `n` on the platform it falls to; returns its text (its
    /// key here) and what its reply must carry: its platform id (Slack's DMs
    /// are not linked to their replies, so Slack messages are told apart by
    /// text alone) and the chat it was sent in.
    fn send(&self, n: usize) -> (String, Sent) {
        let user = n / 3 % USERS;
        match n % 3 {
            0 => {
                let key = format!("tg-{n}");
                let message_id = n as i64 + 1;
                let chat = 5_000 + user as i64;
                self.telegram.private_message(chat, message_id, &key);
                (key, Sent::new(message_id.to_string(), chat.to_string()))
            }
            1 => {
                let key = format!("dc-{n}");
                let user_id = format!("80000000000000{user:04}");
                let id = self.discord.direct_message(&user_id, &key);
                (key, Sent::new(id, format!("dm-{user_id}")))
            }
            _ => {
                let key = format!("sl-{n}");
                let user_id = format!("U{user:04}");
                self.slack.direct_message(&user_id, &key);
                (key, Sent::new(String::new(), format!("D{user_id}")))
            }
        }
    }

    /// How many replies each message got, keyed as `send` keys them.
    fn answers(&self) -> HashMap<String, usize> {
        let mut answers = HashMap::new();
        let mut texts = self.telegram.recorded(|r| {
            r.sent
                .iter()
                .map(|sent| sent["visible_text"].clone())
                .collect::<Vec<_>>()
        });
        texts.extend(self.discord.recorded(|r| {
            r.sent
                .iter()
                .map(|sent| sent["content"].clone())
                .collect::<Vec<_>>()
        }));
        texts.extend(self.slack.recorded(|r| {
            r.posted
                .iter()
                .map(|posted| posted["text"].clone())
                .collect::<Vec<_>>()
        }));
        for text in texts {
            if let Some(key) = text.as_str().and_then(|t| t.strip_prefix("echo: ")) {
                *answers.entry(key.to_owned()).or_insert(0) += 1;
            }
        }
        answers
    }

    /// Every reply echoes a message that was sent, goes to that message's
    /// chat, and answers it by platform id where the platform links them
    /// (Telegram's `reply_parameters`, Discord's `message_reference`).
    fn assert_replies_answer_their_message(&self, sent: &HashMap<String, Sent>) {
        let echoed = |reply: &Value, text: &str| -> Sent {
            let key = text.strip_prefix("echo: ").unwrap_or(text);
            match sent.get(key) {
                Some(message) => message.clone(),
                None => panic!("a reply to no message that was sent: {reply}"),
            }
        };
        self.telegram.recorded(|r| {
            for reply in &r.sent {
                let message = echoed(reply, reply["visible_text"].as_str().unwrap_or_default());
                let linked = reply["reply_parameters"]["message_id"].as_i64();
                assert_eq!(linked.map(|id| id.to_string()), Some(message.id), "{reply}");
                assert_eq!(
                    reply["chat_id"].to_string().trim_matches('"'),
                    message.chat,
                    "{reply}"
                );
            }
        });
        self.discord.recorded(|r| {
            for reply in &r.sent {
                let message = echoed(reply, reply["content"].as_str().unwrap_or_default());
                let linked = reply["message_reference"]["message_id"].as_str();
                assert_eq!(linked, Some(message.id.as_str()), "{reply}");
                assert_eq!(
                    reply["channel_id"].as_str(),
                    Some(message.chat.as_str()),
                    "{reply}"
                );
            }
        });
        self.slack.recorded(|r| {
            for reply in &r.posted {
                let message = echoed(reply, reply["text"].as_str().unwrap_or_default());
                assert_eq!(
                    reply["channel"].as_str(),
                    Some(message.chat.as_str()),
                    "{reply}"
                );
            }
        });
    }
}

/// What the reply to a sent message must carry.
#[derive(Clone, Debug)]
struct Sent {
    /// The platform's message id (empty on Slack).
    id: String,
    /// The chat it was sent in.
    chat: String,
}

impl Sent {
    fn new(id: String, chat: String) -> Self {
        Self { id, chat }
    }
}

/// A small deterministic generator, seeded per run (the seed is printed).
struct Random(u64);

impl Random {
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

/// Starts moltworker on `state`, its log appended to `log`.
async fn start(state: &Path, env: &[(&'static str, String)], log: &Path) -> Gateway {
    let (state, env) = (state.to_owned(), env.to_vec());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Gateway::start_logging(&state, &env, log)
    })
    .await
    .unwrap()
}

/// The Telegram message ids whose replies the log says were resent in doubt.
fn resent_in_doubt(log: &Path) -> HashSet<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("may have been delivered before the restart"))
        .filter_map(|line| {
            let (_, rest) = line.split_once("reply_to=")?;
            let id = rest.split_whitespace().next()?.trim_matches('"');
            // Telegram's message ids here are `<chat>:<message>`.
            Some(id.rsplit(':').next()?.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_survive_sigkill_each_answered_once() {
    let platforms = Platforms::start().await;
    let env = platforms.env();
    let _ = std::fs::remove_dir_all("/tmp/noloss-state");
    std::fs::create_dir_all("/tmp/noloss-state").unwrap();
    let state = tempfile::TempDir::new_in("/tmp/noloss-state")
        .unwrap()
        .keep();
    struct P(std::path::PathBuf);
    impl P {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    let state = P(state);
    let seed = std::env::var("NO_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let mut bytes = [0; 8];
            getrandom::fill(&mut bytes).unwrap();
            u64::from_le_bytes(bytes) | 1
        });
    eprintln!("no-loss seed {seed} (NO_LOSS_SEED={seed} repeats this run)");
    let mut random = Random(seed);

    let log = std::path::PathBuf::from("/tmp/noloss.log");
    let _ = std::fs::remove_file(&log);
    let mut gateway = start(state.path(), &env, &log).await;
    while platforms.discord.recorded(|r| r.identifies == 0) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut sent_ids = HashMap::new();
    let mut send = |n: usize| {
        let (key, sent) = platforms.send(n);
        sent_ids.insert(key, sent);
    };
    let mut next = 0;
    let mut in_flight_at_kills = Vec::new();
    for kill in 0..KILLS {
        // Steady traffic for a while, then a burst with the kill inside it.
        let until = Instant::now() + Duration::from_millis(random.between(200, 1_500));
        while Instant::now() < until && next < MESSAGES {
            for _ in 0..random.between(1, 6).min((MESSAGES - next) as u64) {
                send(next);
                next += 1;
            }
            tokio::time::sleep(Duration::from_millis(random.between(5, 40))).await;
        }
        for _ in 0..random.between(10, 40).min((MESSAGES - next) as u64) {
            send(next);
            next += 1;
        }
        // The first kill lands at once, while the burst is surely unanswered;
        // the others after a random pause, at any stage of handling it.
        let pause = if kill == 0 { 0 } else { random.between(0, 60) };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        drop(gateway); // SIGKILL, then wait for the process to end.
        in_flight_at_kills.push(next - platforms.answers().len());
        tokio::time::sleep(Duration::from_millis(random.between(0, 300))).await;
        gateway = start(state.path(), &env, &log).await;
    }
    while next < MESSAGES {
        send(next);
        next += 1;
        if next % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(sent_ids.len(), MESSAGES);

    let deadline = Instant::now() + Duration::from_secs(120);
    while platforms.answers().len() < MESSAGES {
        if Instant::now() > deadline {
            let answers = platforms.answers();
            let missing: Vec<_> = sent_ids
                .keys()
                .filter(|key| !answers.contains_key(*key))
                .collect();
            panic!(
                "{} of {MESSAGES} answered after {KILLS} kills; never answered: {missing:?}",
                answers.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing late: replies still in flight would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(gateway);

    let answers = platforms.answers();
    assert_eq!(answers.len(), MESSAGES, "no reply to anything not sent");
    platforms.assert_replies_answer_their_message(&sent_ids);
    let in_doubt = resent_in_doubt(&log);
    let twice: Vec<(&String, &usize)> = answers.iter().filter(|(_, n)| **n > 1).collect();
    for (key, times) in &twice {
        assert!(
            key.starts_with("tg-") && **times == 2 && in_doubt.contains(&sent_ids[*key].id),
            "{key} answered {times} times; only a Telegram reply resent in doubt may arrive twice (in doubt: {in_doubt:?})"
        );
    }
    let repeats = platforms.discord.recorded(|r| r.nonce_repeats);
    let slack_reads = platforms.slack.recorded(|r| r.history_reads);
    eprintln!(
        "no-loss: {MESSAGES} messages, {KILLS} kills with {in_flight_at_kills:?} unanswered at each; \
         Telegram: {} resent in doubt, {} arrived twice; Discord: {repeats} resends absorbed by the nonce; \
         Slack: {slack_reads} history reads",
        in_doubt.len(),
        twice.len()
    );
    assert!(
        in_flight_at_kills.iter().any(|n| *n > 0),
        "at least one kill landed with messages unanswered: {in_flight_at_kills:?}"
    );
}
