//! Entry points for fuzzing the parsers that face the network (feature
//! `fuzzing`, used by the `fuzz/` crate): each takes raw bytes as the
//! platform would send them and runs them through the adapter's parsing and
//! normalizing, which must never panic, hang or allocate without bound.

use serde::de::DeserializeOwned;
use serde_json::Value;

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

/// A Telegram `Update` (a webhook body, or one item of `getUpdates`).
pub fn telegram_update(bytes: &[u8]) {
    let bot: crate::telegram::types::User = serde_json::from_value(serde_json::json!({
        "id": 42, "is_bot": true, "first_name": "Molt", "username": "molt_bot"
    }))
    .expect("a valid bot user");
    if let Some(update) = parse(bytes) {
        let _ = crate::telegram::inbound::normalize(update, &bot);
    }
}

/// A Slack Socket Mode envelope (`events_api` and its inner event).
pub fn slack_envelope(bytes: &[u8]) {
    let bot: crate::slack::inbound::BotIdentity =
        serde_json::from_value(serde_json::json!({ "user_id": "UBOT", "team_id": "T1" }))
            .expect("a valid bot identity");
    let Some(frame) = parse::<Value>(bytes) else {
        return;
    };
    let event = frame["payload"]["event"].clone();
    if let Ok(event) = serde_json::from_value(event) {
        let _ = crate::slack::inbound::normalize(event, &bot);
    }
}

/// A Discord gateway payload (`{op, d, s, t}`), a `MESSAGE_CREATE` normalized.
pub fn discord_payload(bytes: &[u8]) {
    let bot: crate::discord::inbound::User =
        serde_json::from_value(serde_json::json!({ "id": "900", "username": "molt", "bot": true }))
            .expect("a valid bot user");
    let Some(payload) = parse::<Value>(bytes) else {
        return;
    };
    if payload["t"] == "MESSAGE_CREATE"
        && let Ok(message) = serde_json::from_value(payload["d"].clone())
    {
        let _ = crate::discord::inbound::normalize(message, &bot);
    }
}
