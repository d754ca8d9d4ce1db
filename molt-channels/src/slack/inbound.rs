//! Events API payloads turned into channel-neutral inbound messages.

use super::format::unescape;
use molt_core::message::{Attachment, ChatKind, InboundMessage, Sender};
use molt_core::platform::Timestamp;
use serde::Deserialize;

/// The channel name messages carry.
pub const CHANNEL: &str = "slack";

/// Who the bot is, from `auth.test`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct BotIdentity {
    pub user_id: String,
    #[serde(default)]
    pub team_id: String,
}

/// The inner event of an `event_callback`, as far as the adapter reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct Event {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    user: Option<String>,
    bot_id: Option<String>,
    #[serde(default)]
    text: String,
    channel: Option<String>,
    channel_type: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
    #[serde(default)]
    files: Vec<SlackFile>,
}

/// A file shared with a message. Slack leaves fields out of files the bot
/// may not see (`file_access: check_file_info`, `mode: hidden_by_limit`).
#[derive(Debug, Deserialize)]
struct SlackFile {
    id: String,
    name: Option<String>,
    mimetype: Option<String>,
    size: Option<u64>,
    url_private: Option<String>,
}

/// The inbound message an event holds, or `None` for events the gateway does
/// not answer: other event types, edits and other subtypes, bots (itself included).
pub(crate) fn normalize(event: Event, bot: &BotIdentity) -> Option<InboundMessage> {
    let plain_message =
        event.kind == "message" && event.subtype.as_deref().is_none_or(|s| s == "file_share");
    if !(plain_message || event.kind == "app_mention") || event.bot_id.is_some() {
        return None;
    }
    let user = event.user?;
    if user == bot.user_id {
        return None;
    }
    let (channel, ts) = (event.channel?, event.ts?);
    let mention = format!("<@{}>", bot.user_id);
    let chat_kind = match event.channel_type.as_deref() {
        Some("im") => ChatKind::Direct,
        _ if event.thread_ts.is_some() => ChatKind::Thread,
        _ => ChatKind::Group,
    };
    let mentioned = chat_kind == ChatKind::Direct
        || event.kind == "app_mention"
        || event.text.contains(&mention);
    let text = unescape(event.text.replace(&mention, "").trim());
    let attachments: Vec<Attachment> = (event.files.into_iter())
        .map(|file| Attachment {
            id: file.id,
            url: file.url_private,
            media_type: file.mimetype,
            name: file.name,
            size: file.size,
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    let seconds: f64 = ts.parse().unwrap_or_default();
    Some(InboundMessage {
        channel: CHANNEL.into(),
        account: bot.user_id.clone(),
        sender: Sender {
            id: user,
            name: None,
        },
        // The same message can come as `message` and as `app_mention`: one key.
        message_id: format!("{channel}:{ts}"),
        chat_id: channel,
        chat_kind,
        thread_id: event.thread_ts,
        text,
        attachments,
        mentioned,
        sent_at: Timestamp((seconds * 1000.0) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot() -> BotIdentity {
        BotIdentity {
            user_id: "UBOT".into(),
            team_id: "T1".into(),
        }
    }

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn direct_messages_and_mentions_are_taken_the_rest_skipped() {
        let dm = event(
            json!({ "type": "message", "channel": "D1", "channel_type": "im",
            "user": "U1", "text": "a &lt;b&gt;", "ts": "1355517523.000005" }),
        );
        let dm = normalize(dm, &bot()).unwrap();
        assert_eq!((dm.chat_kind, dm.mentioned), (ChatKind::Direct, true));
        assert_eq!(
            (dm.text.as_str(), dm.message_id.as_str()),
            ("a <b>", "D1:1355517523.000005")
        );
        assert_eq!(dm.sent_at, Timestamp(1_355_517_523_000));
        let mention = event(
            json!({ "type": "app_mention", "channel": "C1", "user": "U1",
            "text": "<@UBOT> is it everything?", "ts": "1.2", "thread_ts": "1.1" }),
        );
        let mention = normalize(mention, &bot()).unwrap();
        assert_eq!(mention.text, "is it everything?");
        assert_eq!(
            (mention.chat_kind, mention.thread_id.as_deref()),
            (ChatKind::Thread, Some("1.1"))
        );
        for skipped in [
            json!({ "type": "message", "subtype": "message_changed", "channel": "D1", "ts": "1.0" }),
            json!({ "type": "message", "channel": "D1", "channel_type": "im", "user": "UBOT", "bot_id": "BBOT", "text": "mine", "ts": "1.0" }),
            json!({ "type": "message", "channel": "D1", "channel_type": "im", "user": "UBOT", "text": "mine", "ts": "1.0" }),
            json!({ "type": "reaction_added", "user": "U1" }),
            json!({ "type": "message", "channel": "D1", "channel_type": "im", "user": "U1", "text": " ", "ts": "1.0" }),
        ] {
            assert!(
                normalize(event(skipped.clone()), &bot()).is_none(),
                "{skipped}"
            );
        }
    }
}
