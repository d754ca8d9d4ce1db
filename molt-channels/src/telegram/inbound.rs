//! Telegram updates turned into channel-neutral inbound messages.

use super::types::{Message, MessageEntity, Update, User};
use molt_core::media::MAX_IMAGE_BYTES;
use molt_core::message::{Attachment, ChatKind, InboundMessage, Sender};
use molt_core::platform::Timestamp;

/// The channel name messages carry.
pub const CHANNEL: &str = "telegram";

/// The inbound message an update holds, or `None` for updates the gateway
/// does not answer (edits, service messages, other bots, empty messages).
pub(crate) fn normalize(update: Update, bot: &User) -> Option<InboundMessage> {
    let message = update.message?;
    if message.migrate_to_chat_id.is_some() {
        return None;
    }
    let from = message.from.as_ref()?;
    if from.is_bot {
        return None;
    }
    let chat_kind = match (message.chat.kind.as_str(), message.message_thread_id) {
        ("private", _) => ChatKind::Direct,
        ("supergroup", Some(_)) => ChatKind::Thread,
        ("group" | "supergroup", _) => ChatKind::Group,
        _ => return None,
    };
    let attachments = attachments(&message);
    let (text, entities) = match (&message.text, &message.caption) {
        (Some(text), _) => (text.clone(), &message.entities),
        (None, Some(caption)) => (caption.clone(), &message.caption_entities),
        (None, None) => (String::new(), &message.entities),
    };
    if text.trim().is_empty() && attachments.is_empty() {
        return None;
    }
    let mentioned = chat_kind == ChatKind::Direct
        || entities
            .iter()
            .any(|entity| mentions_bot(&text, entity, bot))
        || message
            .reply_to_message
            .as_ref()
            .and_then(|replied| replied.from.as_ref())
            .is_some_and(|author| author.id == bot.id);
    Some(InboundMessage {
        channel: CHANNEL.into(),
        account: bot.username.clone().unwrap_or_else(|| bot.id.to_string()),
        sender: Sender {
            id: from.id.to_string(),
            name: Some(display_name(from)),
        },
        chat_id: message.chat.id.to_string(),
        chat_kind,
        thread_id: message.message_thread_id.map(|id| id.to_string()),
        // Message ids are unique within a chat only.
        message_id: message_key(message.chat.id, message.message_id),
        text,
        attachments,
        mentioned,
        // Seconds from the platform; a date past the end of time must not overflow.
        sent_at: Timestamp(
            u64::try_from(message.date)
                .unwrap_or_default()
                .saturating_mul(1000),
        ),
    })
}

/// The key of a message: `<chat id>:<message id>`.
pub fn message_key(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

/// The message id part of a key made by [`message_key`].
pub fn message_id_of(key: &str) -> Option<i64> {
    key.rsplit_once(':')?.1.parse().ok()
}

fn display_name(user: &User) -> String {
    match (&user.last_name, &user.username) {
        (Some(last), _) => format!("{} {last}", user.first_name),
        (None, Some(username)) => format!("{} (@{username})", user.first_name),
        (None, None) => user.first_name.clone(),
    }
}

/// Whether `entity` in `text` names the bot: `@botname`, a mention of its
/// account, or a command addressed to it (`/start@botname`).
fn mentions_bot(text: &str, entity: &MessageEntity, bot: &User) -> bool {
    let Some(username) = &bot.username else {
        return entity.user.as_ref().is_some_and(|user| user.id == bot.id);
    };
    let slice = utf16_slice(text, entity.offset, entity.length);
    match entity.kind.as_str() {
        "mention" => slice.eq_ignore_ascii_case(&format!("@{username}")),
        "bot_command" => slice
            .split_once('@')
            .is_some_and(|(_, to)| to.eq_ignore_ascii_case(username)),
        "text_mention" => entity.user.as_ref().is_some_and(|user| user.id == bot.id),
        _ => false,
    }
}

/// The part of `text` at `offset` for `length`, both in UTF-16 code units.
fn utf16_slice(text: &str, offset: usize, length: usize) -> String {
    let units: Vec<u16> = text.encode_utf16().skip(offset).take(length).collect();
    String::from_utf16_lossy(&units)
}

fn attachments(message: &Message) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    // Sizes of one photo, smallest first: the largest a model takes is enough.
    let fits = |size: Option<u64>| size.is_some_and(|size| size <= MAX_IMAGE_BYTES);
    let photo = (message
        .photo
        .iter()
        .rev()
        .find(|photo| fits(photo.file_size)))
    .or(message.photo.last());
    if let Some(photo) = photo {
        attachments.push(Attachment {
            id: photo.file_id.clone(),
            media_type: Some("image/jpeg".into()),
            size: photo.file_size,
            ..Attachment::default()
        });
    }
    if let Some(document) = &message.document {
        attachments.push(Attachment {
            id: document.file_id.clone(),
            media_type: document.mime_type.clone(),
            name: document.file_name.clone(),
            size: document.file_size,
            ..Attachment::default()
        });
    }
    attachments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_past_the_end_of_time_does_not_overflow() {
        // Found by the telegram_update fuzz target: `date * 1000` overflowed.
        let update: Update = serde_json::from_value(serde_json::json!({
            "update_id": 1,
            "message": { "message_id": 7, "date": 176_120_717_580_000_000_i64,
                "from": { "id": 5, "is_bot": false, "first_name": "Ada" },
                "chat": { "id": 5, "type": "private" }, "text": "hi" }
        }))
        .unwrap();
        let bot: User = serde_json::from_value(serde_json::json!({
            "id": 42, "is_bot": true, "first_name": "Molt", "username": "molt_bot"
        }))
        .unwrap();
        let message = normalize(update, &bot).unwrap();
        assert_eq!(message.sent_at, Timestamp(u64::MAX));
    }
}
