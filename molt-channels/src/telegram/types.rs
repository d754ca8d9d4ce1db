//! The parts of the Bot API's objects the adapter reads. Every field a
//! message may lack is optional, and unknown fields are ignored: new ones
//! arrive with most Bot API releases.

use serde::Deserialize;

/// The envelope of every Bot API response.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    pub ok: bool,
    pub result: Option<T>,
    pub error_code: Option<u16>,
    pub description: Option<String>,
    pub parameters: Option<ResponseParameters>,
}

/// Why a request failed, beyond its description.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseParameters {
    pub retry_after: Option<u64>,
    pub migrate_to_chat_id: Option<i64>,
}

/// One incoming update; at most one of its payloads is set.
#[derive(Debug, Deserialize)]
pub(crate) struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
}

/// A message in a chat.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub message_id: i64,
    pub message_thread_id: Option<i64>,
    pub from: Option<User>,
    pub chat: Chat,
    pub date: i64,
    pub text: Option<String>,
    pub caption: Option<String>,
    #[serde(default)]
    pub entities: Vec<MessageEntity>,
    #[serde(default)]
    pub caption_entities: Vec<MessageEntity>,
    pub reply_to_message: Option<Box<Message>>,
    #[serde(default)]
    pub photo: Vec<PhotoSize>,
    pub document: Option<Document>,
    pub migrate_to_chat_id: Option<i64>,
}

/// A user or bot.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
}

/// A chat: private, group, supergroup or channel.
#[derive(Debug, Deserialize)]
pub(crate) struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A special span of a message's text; offsets count UTF-16 code units.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageEntity {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: usize,
    pub length: usize,
    pub user: Option<User>,
}

/// One size of a photo.
#[derive(Debug, Deserialize)]
pub(crate) struct PhotoSize {
    pub file_id: String,
    pub file_size: Option<u64>,
}

/// A general file.
#[derive(Debug, Deserialize)]
pub(crate) struct Document {
    pub file_id: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub file_size: Option<u64>,
}

/// A file ready to download.
#[derive(Debug, Deserialize)]
pub(crate) struct File {
    pub file_size: Option<u64>,
    pub file_path: Option<String>,
}
