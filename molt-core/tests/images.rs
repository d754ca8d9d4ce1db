//! Images through the gateway: downloaded through their channel (a rate limit
//! waited out), kept once, inlined into every model call that carries the
//! conversation; an image that cannot be had is named with the reason; a run
//! stopped while an image downloads stops.

mod support;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use molt_core::agent::{Agent, AgentOptions};
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError};
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::message::{Attachment, ContentBlock, InboundMessage, OutboundMessage};
use molt_core::model::LanguageModel;
use molt_core::policy::{ChannelPolicy, DmPolicy};
use molt_core::session::{SessionKey, SessionScope};
use molt_core::store::MemoryStore;
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

/// A real PNG, 16×16 pixels.
const PNG: &[u8] = include_bytes!("../../molt-channels/tests/support/files/pixel.png");

/// A channel that serves files by id: some after one rate limit, one never.
#[derive(Default)]
struct FileEgress {
    sent: RecordingEgress,
    files: HashMap<String, Bytes>,
    rate_limited_once: Mutex<HashSet<String>>,
    downloads: Mutex<Vec<String>>,
}

#[async_trait]
impl ChannelEgress for FileEgress {
    fn capabilities(&self) -> Capabilities {
        self.sent.capabilities()
    }

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        self.sent.send(message).await
    }

    async fn download(&self, attachment: &Attachment, limit: u64) -> Result<Bytes, ChannelError> {
        let id = attachment.id.clone();
        self.downloads.lock().unwrap().push(id.clone());
        if id == "stuck" {
            futures::future::pending::<()>().await;
        }
        if self.rate_limited_once.lock().unwrap().remove(&id) {
            let retry_after = Duration::from_millis(20);
            let channel = "test".into();
            return Err(ChannelError::RateLimited {
                channel,
                retry_after,
            });
        }
        match self.files.get(&id) {
            Some(bytes) if bytes.len() as u64 <= limit => Ok(bytes.clone()),
            Some(_) => Err(ChannelError::TooLarge {
                channel: "test".into(),
                limit,
            }),
            None => Err(ChannelError::Rejected {
                channel: "test".into(),
                reason: "invalid file_id".into(),
            }),
        }
    }
}

fn gateway(model: Arc<dyn LanguageModel>, egress: Arc<FileEgress>) -> Gateway {
    let platform = platform().0;
    let agent = Agent::new(
        model,
        Arc::new(ToolRegistry::new()),
        platform.timer.clone(),
        AgentOptions::default(),
    );
    let open = ChannelPolicy {
        dm_policy: DmPolicy::Open,
        ..ChannelPolicy::default()
    };
    let store = Arc::new(MemoryStore::new());
    let gateway = Gateway::new(GatewayParts {
        store: store.clone(),
        logs: store,
        agent,
        platform,
        system_prompt: std::sync::Arc::new("test".to_owned()),
        notebook: None,
        scope: SessionScope::PerChannelPeer,
        compaction: CompactionPolicy::default(),
        policies: BTreeMap::from([("test".to_owned(), open)]),
        observer: None,
    });
    gateway.register_egress("test", egress);
    gateway
}

fn image(id: &str, media_type: &str) -> Attachment {
    Attachment {
        id: id.into(),
        media_type: Some(media_type.into()),
        name: Some(format!("{id}.png")),
        ..Attachment::default()
    }
}

fn with_attachments(id: &str, text: &str, attachments: Vec<Attachment>) -> InboundMessage {
    InboundMessage {
        attachments,
        ..dm("test", "alice", id, text)
    }
}

/// The images of a content list, decoded from their `data:` URLs.
fn inlined(content: &[ContentBlock]) -> Vec<Vec<u8>> {
    let data = |url: &str| {
        url.strip_prefix("data:image/png;base64,")
            .map(str::to_owned)
    };
    content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Image { url, .. } => data(url),
            _ => None,
        })
        .map(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap()
        })
        .collect()
}

#[test]
fn an_image_reaches_every_later_call_and_one_that_cannot_be_had_is_named() {
    let egress = Arc::new(FileEgress {
        files: HashMap::from([("photo".to_owned(), Bytes::from_static(PNG))]),
        rate_limited_once: Mutex::new(HashSet::from(["photo".to_owned()])),
        ..FileEgress::default()
    });
    let answers = vec![text_answer("a blue square"), text_answer("still blue")];
    let model = Arc::new(ScriptedModel::new(answers));
    let gateway = gateway(model.clone(), egress.clone());
    let attachments = vec![
        image("photo", "image/png"),
        image("gone", "image/png"),
        Attachment {
            id: "report".into(),
            media_type: Some("application/pdf".into()),
            ..Attachment::default()
        },
    ];
    let first = with_attachments("1", "look", attachments);
    block_on_within(LIMIT, gateway.accept(first)).unwrap();
    block_on_within(LIMIT, gateway.idle());
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "2", "and now?"))).unwrap();
    block_on_within(LIMIT, gateway.idle());

    assert_eq!(egress.sent.texts(), ["a blue square", "still blue"]);
    // Downloaded once (after waiting out the rate limit); the PDF is only named.
    assert_eq!(
        *egress.downloads.lock().unwrap(),
        ["photo", "photo", "gone"]
    );
    let requests = model.requests.lock().unwrap();
    let first_turn = &requests[0].messages[0];
    assert_eq!(inlined(&first_turn.content), [PNG.to_vec()]);
    let text = first_turn.text();
    assert!(
        text.starts_with("look[attached image: photo.png, image/png]"),
        "{text}"
    );
    assert!(text.contains("[attached file: application/pdf]"), "{text}");
    assert!(
        text.ends_with(
            "[attached image: gone.png, image/png could not be shown: test: request refused: invalid file_id]"
        ),
        "{text}"
    );
    // The next call carries the conversation with the image in it.
    let later: Vec<Vec<u8>> = (requests[1].messages.iter())
        .flat_map(|message| inlined(&message.content))
        .collect();
    assert_eq!(later, [PNG.to_vec()]);
}

#[test]
fn a_run_stopped_while_an_image_downloads_stops() {
    let egress = Arc::new(FileEgress::default());
    let model = Arc::new(ScriptedModel::new(vec![text_answer("never asked")]));
    let gateway = gateway(model.clone(), egress.clone());
    let message = with_attachments("1", "look", vec![image("stuck", "image/png")]);
    block_on_within(LIMIT, gateway.accept(message)).unwrap();
    wait_until(LIMIT, || !egress.downloads.lock().unwrap().is_empty());
    assert!(gateway.abort(&SessionKey::new("test:dm:alice")));
    block_on_within(LIMIT, gateway.idle());
    assert_eq!(egress.sent.texts(), ["(Stopped.)"]);
    assert!(model.requests.lock().unwrap().is_empty());
    assert!(
        !gateway.abort(&SessionKey::new("test:dm:alice")),
        "the run is no longer registered"
    );
}
