//! A gateway over a memory store, with the `test` channel open to anyone
//! and `telegram` under pairing, its run events recorded.

use super::{RecordingEgress, platform};
use molt_core::agent::{Agent, AgentOptions};
use molt_core::channel::ChannelEgress;
use molt_core::gateway::{Gateway, GatewayParts, RunEvent};
use molt_core::model::LanguageModel;
use molt_core::platform::Platform;
use molt_core::policy::{ChannelPolicy, DmPolicy, GroupPolicy};
use molt_core::session::SessionScope;
use molt_core::store::{MemoryStore, Store};
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a test gateway is made of; a second [`Setup::gateway`] is a restart.
pub struct Setup {
    pub store: Arc<MemoryStore>,
    /// Where the inbox and pairing live, when not in `store`.
    pub state: Option<Arc<dyn Store>>,
    pub platform: Platform,
    pub scope: SessionScope,
    pub compaction: CompactionPolicy,
    pub events: Arc<Mutex<Vec<RunEvent>>>,
    pub notebook: Option<Arc<dyn molt_core::workspace::memory::Notebook>>,
}

impl Setup {
    pub fn new() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            state: None,
            platform: platform().0,
            scope: SessionScope::PerChannelPeer,
            compaction: CompactionPolicy::default(),
            events: Arc::default(),
            notebook: None,
        }
    }

    /// A gateway over this setup's store (a second call is a restart) with a recording egress.
    pub fn gateway(&self, model: Arc<dyn LanguageModel>) -> (Gateway, Arc<RecordingEgress>) {
        let egress = Arc::new(RecordingEgress::default());
        (self.gateway_with(model, egress.clone()), egress)
    }

    pub fn gateway_with(
        &self,
        model: Arc<dyn LanguageModel>,
        egress: Arc<dyn ChannelEgress>,
    ) -> Gateway {
        let agent = Agent::new(
            model,
            Arc::new(ToolRegistry::new()),
            self.platform.timer.clone(),
            AgentOptions::default(),
        );
        let mut policies = BTreeMap::new();
        policies.insert(
            "test".to_owned(),
            ChannelPolicy {
                dm_policy: DmPolicy::Open,
                ..ChannelPolicy::default()
            },
        );
        // Telegram keeps the default DM policy (pairing) and answers any group.
        policies.insert(
            "telegram".to_owned(),
            ChannelPolicy {
                group_policy: GroupPolicy::Open,
                ..ChannelPolicy::default()
            },
        );
        let events = self.events.clone();
        let state: Arc<dyn Store> = match &self.state {
            Some(state) => state.clone(),
            None => self.store.clone(),
        };
        let gateway = Gateway::new(GatewayParts {
            store: state,
            logs: self.store.clone(),
            agent,
            platform: self.platform.clone(),
            system_prompt: std::sync::Arc::new("test".to_owned()),
            notebook: self.notebook.clone(),
            scope: self.scope,
            compaction: self.compaction,
            policies,
            observer: Some(Arc::new(move |event| events.lock().unwrap().push(event))),
        });
        gateway.register_egress("test", egress.clone());
        gateway.register_egress("telegram", egress);
        gateway
    }
}
