//! The Control UI's channel: run events become `chat` events for every
//! connected WebSocket, and replies arrive through the channel egress.

use async_trait::async_trait;
use molt_core::agent::AgentEvent;
use molt_core::channel::{Capabilities, ChannelEgress, ChannelError, FormatDialect, LengthUnit};
use molt_core::gateway::{RunEvent, RunEventKind};
use molt_core::message::{ChatKind, InboundMessage, OutboundMessage, Role, Sender};
use molt_core::platform::Timestamp;
use molt_core::session::{SessionKey, SessionScope};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The channel name of the Control UI.
pub const CHANNEL: &str = "webchat";
const ACCOUNT: &str = "control-ui";
const OPERATOR: &str = "operator";

#[derive(Default)]
struct RunBuffer {
    seq: u64,
    text: String,
}

/// Streams chat events to the Control UI's connections.
#[derive(Clone)]
pub struct ChatStream {
    session: SessionKey,
    events: broadcast::Sender<Value>,
    runs: Arc<Mutex<HashMap<String, RunBuffer>>>,
}

impl ChatStream {
    /// A stream for the operator's session under `scope`.
    pub fn new(scope: SessionScope) -> Self {
        let session =
            SessionKey::for_message(scope, &inbound(String::new(), String::new(), Timestamp(0)));
        Self {
            session,
            events: broadcast::channel(1024).0,
            runs: Arc::default(),
        }
    }

    /// The session the Control UI talks to.
    pub fn session(&self) -> &SessionKey {
        &self.session
    }

    /// A receiver of `chat` event payloads.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    /// The inbound message for text the operator sent from the Control UI.
    pub fn message(&self, idempotency_key: String, text: String, now: Timestamp) -> InboundMessage {
        inbound(idempotency_key, text, now)
    }

    /// Handles a run event from the gateway. Every run ends with exactly one
    /// `final` or `error` event: the reply through the egress, or, when no
    /// reply was delivered, the run's end here.
    pub fn on_run_event(&self, event: RunEvent) {
        if event.channel != CHANNEL {
            return;
        }
        let run_id = &event.run_id;
        match event.kind {
            RunEventKind::Started { .. } => {
                self.lock().insert(run_id.clone(), RunBuffer::default());
            }
            RunEventKind::Agent(AgentEvent::TextDelta(delta)) => {
                let mut runs = self.lock();
                let Some(run) = runs.get_mut(run_id) else {
                    return;
                };
                run.text.push_str(&delta);
                run.seq += 1;
                let mut payload = self.payload(run_id, run.seq, "delta", Some(&run.text), None);
                // Protocol 4's deltas say what was added; version 3 clients read the message.
                payload["deltaText"] = json!(delta);
                drop(runs);
                self.publish(payload);
            }
            // The next step's text starts afresh.
            RunEventKind::Agent(AgentEvent::Message(message))
                if message.role == Role::Assistant =>
            {
                if let Some(run) = self.lock().get_mut(run_id) {
                    run.text.clear();
                }
            }
            RunEventKind::Finished { reply } => self.finish(run_id, "final", Some(&reply), None),
            RunEventKind::Failed { error } => self.finish(run_id, "error", None, Some(&error)),
            RunEventKind::Agent(_) => {}
        }
    }

    /// Publishes the run's last event, unless it already had one.
    fn finish(&self, run_id: &str, state: &str, text: Option<&str>, error: Option<&str>) {
        if let Some(seq) = self.close(run_id) {
            self.publish(self.payload(run_id, seq, state, text, error));
        }
    }

    /// Closes an open run, returning the sequence number of its last event.
    fn close(&self, run_id: &str) -> Option<u64> {
        self.lock().remove(run_id).map(|run| run.seq + 1)
    }

    fn payload(
        &self,
        run_id: &str,
        seq: u64,
        state: &str,
        text: Option<&str>,
        error: Option<&str>,
    ) -> Value {
        let mut payload = json!({ "runId": run_id, "sessionKey": self.session.as_str(), "seq": seq, "state": state });
        if let Some(text) = text {
            payload["message"] =
                json!({ "role": "assistant", "content": [{ "type": "text", "text": text }] });
        }
        if let Some(error) = error {
            payload["errorMessage"] = json!(error);
        }
        payload
    }

    /// Tells watchers of `session` that `text` was added to it without a run
    /// (OpenClaw's `chat.inject`): a `final` event with `seq` 0.
    pub fn injected(&self, session: &SessionKey, run_id: &str, text: &str) {
        let mut payload = self.payload(run_id, 0, "final", Some(text), None);
        payload["sessionKey"] = json!(session.as_str());
        self.publish(payload);
    }

    fn publish(&self, payload: Value) {
        // No subscriber is fine: nobody is watching.
        let _ = self.events.send(payload);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunBuffer>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn inbound(message_id: String, text: String, sent_at: Timestamp) -> InboundMessage {
    InboundMessage {
        channel: CHANNEL.to_owned(),
        account: ACCOUNT.to_owned(),
        sender: Sender {
            id: OPERATOR.to_owned(),
            name: Some("Operator".to_owned()),
        },
        chat_id: ACCOUNT.to_owned(),
        chat_kind: ChatKind::Direct,
        thread_id: None,
        message_id,
        text,
        attachments: Vec::new(),
        mentioned: true,
        sent_at,
    }
}

#[async_trait]
impl ChannelEgress for ChatStream {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: 1_000_000,
            length_unit: LengthUnit::Chars,
            format: FormatDialect::Markdown,
            typing_refresh: None,
        }
    }

    /// A reply is the run's `final` chat event.
    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let run_id = message.reply_to.unwrap_or_default();
        // A reply resent after a restart has no open run: it is the run's first event.
        let seq = self.close(&run_id).unwrap_or(1);
        self.publish(self.payload(&run_id, seq, "final", Some(&message.text), None));
        Ok(())
    }
}
