//! Managing sessions from outside a run: list, describe, reset, delete,
//! compact and inject, and what each leaves after a restart.

mod support;

use futures::StreamExt;
use molt_core::message::{Message, Role};
use molt_core::model::{LanguageModel, ModelError, ModelRequest, ModelStream};
use molt_core::session::SessionKey;
use molt_core::transcript::CompactionPolicy;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::setup::Setup;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

fn alice() -> SessionKey {
    SessionKey::new("test:dm:alice")
}

#[test]
fn a_session_is_listed_once_a_message_reaches_it_and_after_a_restart() {
    let setup = Setup::new();
    let model = ScriptedModel::new(vec![text_answer("hello"), text_answer("again")]);
    let (gateway, _egress) = setup.gateway(Arc::new(model));
    assert!(
        block_on_within(LIMIT, gateway.sessions())
            .unwrap()
            .is_empty()
    );
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "1", "hi"))).unwrap();
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "2", "hi again"))).unwrap();
    block_on_within(LIMIT, gateway.idle());

    let (restarted, _) = setup.gateway(Arc::new(ScriptedModel::new(vec![])));
    let sessions = block_on_within(LIMIT, restarted.sessions()).unwrap();
    assert_eq!(sessions.len(), 1);
    let listed = &sessions[0];
    assert_eq!(listed.key, alice());
    assert_eq!(
        (listed.channel.as_str(), listed.chat_id.as_str()),
        ("test", "chat-alice")
    );
    assert_eq!(listed.message_count, 4, "two questions and two answers");
    assert!(listed.updated_at.is_some() && !listed.running && !listed.summarized);
    let described = block_on_within(LIMIT, restarted.session_info(&alice())).unwrap();
    assert_eq!(described.as_ref(), Some(listed));
    // Counting and the recent list read no transcript: only what is loaded shows.
    assert_eq!(
        block_on_within(LIMIT, restarted.session_count()).unwrap(),
        1
    );
    assert!(restarted.recent_sessions(10).is_empty());
    block_on_within(LIMIT, restarted.history(&alice())).unwrap();
    assert_eq!(
        restarted.recent_sessions(10),
        [(alice(), listed.updated_at)]
    );
    let unknown = SessionKey::new("test:dm:nobody");
    assert_eq!(
        block_on_within(LIMIT, restarted.session_info(&unknown)).unwrap(),
        None
    );
}

#[test]
fn after_a_reset_the_model_no_longer_sees_the_earlier_conversation() {
    let setup = Setup::new();
    let model = Arc::new(ScriptedModel::new(vec![
        text_answer("one"),
        text_answer("two"),
    ]));
    let (gateway, egress) = setup.gateway(model.clone());
    block_on_within(
        LIMIT,
        gateway.accept(dm("test", "alice", "1", "remember 42")),
    )
    .unwrap();
    block_on_within(LIMIT, gateway.idle());
    block_on_within(LIMIT, gateway.reset_session(&alice())).unwrap();
    assert!(
        block_on_within(LIMIT, gateway.history(&alice()))
            .unwrap()
            .messages
            .is_empty()
    );

    block_on_within(
        LIMIT,
        gateway.accept(dm("test", "alice", "2", "what number?")),
    )
    .unwrap();
    block_on_within(LIMIT, gateway.idle());
    let seen = model.requests.lock().unwrap()[1].messages.clone();
    assert_eq!(seen.len(), 1, "only the question after the reset: {seen:?}");
    assert_eq!(seen[0].text(), "what number?");
    assert_eq!(egress.texts(), ["one", "two"]);

    // A restart replays the reset; the session is still listed.
    let (restarted, _) = setup.gateway(Arc::new(ScriptedModel::new(vec![])));
    let history = block_on_within(LIMIT, restarted.history(&alice())).unwrap();
    assert_eq!(history.messages.len(), 2);
    assert_eq!(
        block_on_within(LIMIT, restarted.sessions()).unwrap().len(),
        1
    );
}

/// Calls a tool first, then waits at its second step until released.
#[derive(Default)]
struct ToolThenGate {
    calls: std::sync::atomic::AtomicUsize,
    gate: GatedModel,
}

#[async_trait::async_trait]
impl LanguageModel for ToolThenGate {
    fn name(&self) -> &str {
        "tool-then-gate"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let events = tool_answer(&[("c1", "missing_tool", "{}")]);
            return Ok(futures::stream::iter(events.into_iter().map(Ok)).boxed());
        }
        self.gate.stream(request).await
    }
}

#[test]
fn a_run_in_progress_during_a_reset_is_stopped_and_does_not_join_the_new_conversation() {
    let setup = Setup::new();
    let model = Arc::new(ToolThenGate::default());
    let (gateway, egress) = setup.gateway(model.clone());
    block_on_within(
        LIMIT,
        gateway.accept(dm("test", "alice", "1", "slow question")),
    )
    .unwrap();
    // The run has made its tool call and waits in its second step.
    wait_until(LIMIT, || model.gate.waiting_texts().len() == 1);
    block_on_within(LIMIT, gateway.reset_session(&alice())).unwrap();
    block_on_within(LIMIT, gateway.idle());
    assert_eq!(egress.texts(), ["(Stopped.)"], "the asker is told");
    let history = block_on_within(LIMIT, gateway.history(&alice())).unwrap();
    assert!(history.messages.is_empty(), "{:?}", history.messages);
    // Not in the new conversation after a restart either, and not answered again.
    let (restarted, again) = setup.gateway(Arc::new(ScriptedModel::new(vec![])));
    assert_eq!(
        block_on_within(LIMIT, restarted.resume_pending()).unwrap(),
        0
    );
    assert!(
        block_on_within(LIMIT, restarted.history(&alice()))
            .unwrap()
            .messages
            .is_empty()
    );
    assert!(again.texts().is_empty());
    model.gate.release_all();
}

#[test]
fn a_deleted_session_is_gone_from_the_list_and_the_transcript() {
    let setup = Setup::new();
    let model = ScriptedModel::new(vec![text_answer("one"), text_answer("two")]);
    let (gateway, _egress) = setup.gateway(Arc::new(model));
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "1", "secret"))).unwrap();
    block_on_within(LIMIT, gateway.accept(dm("test", "bob", "2", "hi"))).unwrap();
    block_on_within(LIMIT, gateway.idle());
    assert!(block_on_within(LIMIT, gateway.delete_session(&alice())).unwrap());
    assert!(!block_on_within(LIMIT, gateway.delete_session(&alice())).unwrap());

    let (restarted, _) = setup.gateway(Arc::new(ScriptedModel::new(vec![text_answer("new")])));
    let keys: Vec<String> = (block_on_within(LIMIT, restarted.sessions()).unwrap())
        .into_iter()
        .map(|info| info.key.as_str().to_owned())
        .collect();
    assert_eq!(keys, ["test:dm:bob"]);
    assert!(
        block_on_within(LIMIT, restarted.history(&alice()))
            .unwrap()
            .messages
            .is_empty()
    );
    // A later message starts a new session under the same key.
    block_on_within(LIMIT, restarted.accept(dm("test", "alice", "3", "hello"))).unwrap();
    block_on_within(LIMIT, restarted.idle());
    let info = block_on_within(LIMIT, restarted.session_info(&alice())).unwrap();
    assert_eq!(info.map(|info| info.message_count), Some(2));
}

#[test]
fn compacting_on_demand_summarises_all_but_the_recent_turns() {
    let mut setup = Setup::new();
    setup.compaction = CompactionPolicy {
        token_budget: 1_000_000,
        keep_recent: 2,
    };
    let answers = vec![
        text_answer("a1"),
        text_answer("a2"),
        text_answer("the summary"),
    ];
    let (gateway, _egress) = setup.gateway(Arc::new(ScriptedModel::new(answers)));
    assert!(!block_on_within(LIMIT, gateway.compact_session(&alice())).unwrap());
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "1", "q1"))).unwrap();
    block_on_within(LIMIT, gateway.accept(dm("test", "alice", "2", "q2"))).unwrap();
    block_on_within(LIMIT, gateway.idle());
    assert!(block_on_within(LIMIT, gateway.compact_session(&alice())).unwrap());
    let history = block_on_within(LIMIT, gateway.history(&alice())).unwrap();
    assert_eq!(history.summary.as_deref(), Some("the summary"));
    let texts: Vec<String> = history.messages.iter().map(Message::text).collect();
    assert_eq!(texts, ["q2", "a2"]);
    let info = block_on_within(LIMIT, gateway.session_info(&alice()))
        .unwrap()
        .unwrap();
    assert!(info.summarized);
}

#[test]
fn an_injected_message_joins_the_conversation_without_a_run() {
    let setup = Setup::new();
    let model = Arc::new(ScriptedModel::new(vec![text_answer("ok")]));
    let (gateway, egress) = setup.gateway(model.clone());
    let note = Message::assistant("Note from the operator: the meeting moved to 3pm.");
    block_on_within(LIMIT, gateway.inject(&alice(), note.clone())).unwrap();
    assert!(egress.texts().is_empty() && model.requests.lock().unwrap().is_empty());
    block_on_within(
        LIMIT,
        gateway.accept(dm("test", "alice", "1", "when is it?")),
    )
    .unwrap();
    block_on_within(LIMIT, gateway.idle());
    let seen = model.requests.lock().unwrap()[0].messages.clone();
    assert_eq!(seen[0], note);
    assert_eq!(seen[1].role, Role::User);
}
