//! A Telegram photo without a caption, through the real binary to a
//! provider as strict as Anthropic (which refuses an empty text block, and
//! then every later call of that conversation): the photo reaches the model
//! as a line naming it, and the conversation goes on.

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
mod support;
#[path = "../../../molt-channels/tests/support/telegram.rs"]
mod telegram;

use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_without_a_caption_reaches_the_model_and_the_session_goes_on() {
    let provider = fake::FakeProvider::start().await;
    let platform = telegram::FakeTelegram::start().await;
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
            { "file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960, "file_size": 120_000 },
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
            "You said: [attached image: image/jpeg, 117 KiB]",
            "You said: what do you think of it?"
        ]
    );
    let received = provider.state.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "the provider refused nothing");
}
