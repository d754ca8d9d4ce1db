//! Where a run's system prompt comes from: fixed text, or text assembled for
//! each run (from the agent's workspace, say), so edits are seen at once.

use crate::message::InboundMessage;
use async_trait::async_trait;

/// The system prompt of each run.
#[async_trait]
pub trait SystemPrompt: Send + Sync {
    /// The system prompt for the run answering `inbound`.
    async fn for_run(&self, inbound: &InboundMessage) -> String;
}

/// The same text for every run.
#[async_trait]
impl SystemPrompt for String {
    async fn for_run(&self, _inbound: &InboundMessage) -> String {
        self.clone()
    }
}
