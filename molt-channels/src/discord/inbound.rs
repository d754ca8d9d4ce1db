//! `MESSAGE_CREATE` events turned into channel-neutral inbound messages.

use molt_core::message::{Attachment, ChatKind, InboundMessage, Sender};
use molt_core::platform::Timestamp;
use serde::Deserialize;

/// The channel name messages carry.
pub const CHANNEL: &str = "discord";

/// Discord's epoch (2015-01-01) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A Discord user, as far as the adapter reads it.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct User {
    pub id: String,
    #[serde(default)]
    pub username: String,
    pub global_name: Option<String>,
    #[serde(default)]
    pub bot: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessageCreate {
    id: String,
    channel_id: String,
    guild_id: Option<String>,
    author: User,
    #[serde(default)]
    content: String,
    #[serde(default)]
    mentions: Vec<User>,
    referenced_message: Option<Box<Referenced>>,
    #[serde(default)]
    attachments: Vec<DiscordAttachment>,
    #[serde(rename = "type", default)]
    kind: u8,
    webhook_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Referenced {
    author: User,
}

#[derive(Debug, Deserialize)]
struct DiscordAttachment {
    id: String,
    url: String,
    filename: Option<String>,
    size: Option<u64>,
    content_type: Option<String>,
}

/// Message types a person writes: a plain message (0) and a reply (19).
const ANSWERED_TYPES: [u8; 2] = [0, 19];

/// The inbound message a `MESSAGE_CREATE` holds, or `None` for messages the
/// gateway does not answer (bots, webhooks, system messages, empty ones).
pub(crate) fn normalize(event: MessageCreate, bot: &User) -> Option<InboundMessage> {
    if event.author.bot || event.author.id == bot.id || event.webhook_id.is_some() {
        return None;
    }
    if !ANSWERED_TYPES.contains(&event.kind) {
        return None;
    }
    let chat_kind = match event.guild_id {
        None => ChatKind::Direct,
        Some(_) => ChatKind::Group,
    };
    let mentioned = chat_kind == ChatKind::Direct
        || event.mentions.iter().any(|user| user.id == bot.id)
        || event
            .referenced_message
            .as_ref()
            .is_some_and(|replied| replied.author.id == bot.id);
    let text = without_mention(&event.content, &bot.id);
    let attachments: Vec<Attachment> = event
        .attachments
        .into_iter()
        .map(|file| Attachment {
            id: file.id,
            url: Some(file.url),
            media_type: file.content_type,
            name: file.filename,
            size: file.size,
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    let name = event
        .author
        .global_name
        .clone()
        .unwrap_or_else(|| event.author.username.clone());
    Some(InboundMessage {
        channel: CHANNEL.into(),
        account: bot.id.clone(),
        sender: Sender {
            id: event.author.id,
            name: Some(name),
        },
        chat_id: event.channel_id,
        chat_kind,
        thread_id: None,
        sent_at: snowflake_time(&event.id),
        // Snowflakes are unique across Discord.
        message_id: event.id,
        text,
        attachments,
        mentioned,
    })
}

/// `content` without the bot's own mention (`<@id>` or `<@!id>`).
fn without_mention(content: &str, bot_id: &str) -> String {
    content
        .replace(&format!("<@{bot_id}>"), "")
        .replace(&format!("<@!{bot_id}>"), "")
        .trim()
        .to_owned()
}

/// When a snowflake was made: its top 42 bits are milliseconds since 2015.
pub(crate) fn snowflake_time(id: &str) -> Timestamp {
    let id: u64 = id.parse().unwrap_or_default();
    Timestamp((id >> 22) + DISCORD_EPOCH_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot() -> User {
        serde_json::from_value(json!({ "id": "900", "username": "molt", "bot": true })).unwrap()
    }

    fn event(extra: serde_json::Value) -> MessageCreate {
        let mut value = json!({
            "id": "1100000000000000001", "channel_id": "77", "type": 0,
            "author": { "id": "42", "username": "ada", "global_name": "Ada", "bot": false },
            "content": "hello", "mentions": [], "attachments": [],
            "timestamp": "2024-05-01T12:00:00.000000+00:00",
        });
        for (key, item) in extra.as_object().unwrap() {
            value[key] = item.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn direct_and_guild_messages_with_mention_gating() {
        let dm = normalize(event(json!({})), &bot()).unwrap();
        assert_eq!((dm.chat_kind, dm.mentioned), (ChatKind::Direct, true));
        assert_eq!(dm.sender.name.as_deref(), Some("Ada"));
        let guild = normalize(event(json!({ "guild_id": "5" })), &bot()).unwrap();
        assert_eq!((guild.chat_kind, guild.mentioned), (ChatKind::Group, false));
        let mention = event(json!({
            "guild_id": "5", "content": "<@900> what time is it?",
            "mentions": [{ "id": "900", "username": "molt", "bot": true }],
        }));
        let mention = normalize(mention, &bot()).unwrap();
        assert!(mention.mentioned);
        assert_eq!(mention.text, "what time is it?");
        let reply = event(json!({
            "guild_id": "5", "type": 19,
            "referenced_message": { "author": { "id": "900", "username": "molt", "bot": true } },
        }));
        assert!(normalize(reply, &bot()).unwrap().mentioned);
    }

    #[test]
    fn bots_webhooks_system_and_empty_messages_are_skipped() {
        let from_bot = json!({ "author": { "id": "43", "username": "b", "bot": true } });
        assert!(normalize(event(from_bot), &bot()).is_none());
        assert!(normalize(event(json!({ "webhook_id": "1" })), &bot()).is_none());
        assert!(normalize(event(json!({ "type": 7 })), &bot()).is_none());
        assert!(normalize(event(json!({ "content": "" })), &bot()).is_none());
        // A snowflake's time: 175928847299117063 was made at 1462015105796.
        assert_eq!(
            snowflake_time("175928847299117063"),
            Timestamp(1_462_015_105_796)
        );
    }
}
