//! A Telegram photo without a caption, through the real binary to a
//! provider as strict as Anthropic (which refuses an empty text block, and
//! then every later call of that conversation, and checks every image): the
//! photo reaches the model as an image block holding its bytes, with a line
//! naming it, and the conversation goes on with the photo in its history.

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
mod support;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use base64::Engine;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_without_a_caption_reaches_the_model_and_the_session_goes_on() {
    let provider = fake::FakeProvider::start().await;
    let platform = telegram::FakeTelegram::start().await;
    platform.add_file("large", PHOTO);
    let state = tempfile::tempdir().unwrap();
    let (base_url, api_base) = (provider.anthropic_url(), platform.base.clone());
    let _gateway = tokio::task::spawn_blocking(move || {
        support::Gateway::start(
            state.path(),
            &[
                ("ANTHROPIC_API_KEY", fake::ANTHROPIC_KEY),
                ("ANTHROPIC_BASE_URL", &base_url),
                ("MOLT_MODEL", "echo"),
                ("TELEGRAM_BOT_TOKEN", telegram::TOKEN),
                ("TELEGRAM_API_BASE", &api_base),
                ("TELEGRAM_DM_POLICY", "open"),
            ],
        )
    })
    .await
    .unwrap();

    platform.push_message(json!({
        "message_id": 1, "date": 1_760_000_000,
        "from": { "id": 77, "is_bot": false, "first_name": "Ada" },
        "chat": { "id": 77, "type": "private", "first_name": "Ada" },
        "photo": [
            { "file_id": "small", "file_unique_id": "s", "width": 90, "height": 90 },
            { "file_id": "large", "file_unique_id": "l", "width": 16, "height": 16, "file_size": PHOTO.len() },
        ],
    }));
    platform.private_message(77, 2, "what do you think of it?");
    let replies = || {
        platform.recorded(|r| {
            r.sent
                .iter()
                .map(|sent| sent["visible_text"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while replies().len() < 2 {
        assert!(Instant::now() < deadline, "replies so far: {:?}", replies());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        replies(),
        [
            "You said: [attached image: image/jpeg, 704 bytes]",
            "You said: what do you think of it?"
        ]
    );
    let received = provider.state.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "the provider refused nothing");
    for call in &received {
        let images = images_in(&call.body);
        assert_eq!(images.len(), 1, "{}", call.body);
        assert_eq!(images[0], ("image/jpeg".to_owned(), PHOTO.to_vec()));
    }
}

/// The Telegram photo: a real JPEG.
const PHOTO: &[u8] = include_bytes!("../../../molt-channels/tests/support/files/pixel.jpg");

/// Every base64 image block of an Anthropic request: media type and bytes.
fn images_in(body: &Value) -> Vec<(String, Vec<u8>)> {
    let blocks = body["messages"].as_array().unwrap().iter();
    blocks
        .flat_map(|message| message["content"].as_array().cloned().unwrap_or_default())
        .filter(|block| block["type"] == "image")
        .map(|block| {
            let source = &block["source"];
            let data = source["data"].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            (source["media_type"].as_str().unwrap().to_owned(), bytes)
        })
        .collect()
}
