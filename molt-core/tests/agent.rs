//! The agent loop: tool round trips, limits, bad input, failing tools, cancellation.

mod support;

use async_trait::async_trait;
use futures::channel::oneshot;
use molt_core::agent::{Agent, AgentError, AgentEvent, AgentOptions, RunEnd};
use molt_core::cancel::CancelToken;
use molt_core::echo::WordCountTool;
use molt_core::message::{ContentBlock, Message, Role};
use molt_core::model::{LanguageModel, PromptPart};
use molt_core::tool::{SideEffect, Tool, ToolError, ToolRegistry};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

fn agent(model: Arc<dyn LanguageModel>, tools: Vec<Arc<dyn Tool>>, options: AgentOptions) -> Agent {
    let mut registry = ToolRegistry::new();
    for tool in tools {
        registry.register(tool).unwrap();
    }
    Agent::new(model, Arc::new(registry), Arc::new(ThreadTimer), options)
}

fn tool_results(message: &Message) -> Vec<(String, bool)> {
    message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult {
                content, is_error, ..
            } => Some((content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

#[test]
fn tool_call_round_trip() {
    let model = Arc::new(ScriptedModel::new(vec![
        tool_answer(&[("call-1", "word_count", r#"{"text": "one two three"}"#)]),
        text_answer("That is three words."),
    ]));
    let agent = agent(
        model.clone(),
        vec![Arc::new(WordCountTool)],
        AgentOptions::default(),
    );
    let mut events = Vec::new();
    let outcome = block_on_within(
        LIMIT,
        agent.run(
            "sys",
            &[Message::user("count")],
            &CancelToken::new(),
            &mut |e| events.push(e),
        ),
    )
    .unwrap();

    assert_eq!(
        (outcome.reply.as_str(), outcome.steps, outcome.end),
        ("That is three words.", 2, RunEnd::Completed)
    );
    assert_eq!(outcome.messages.len(), 3);
    assert_eq!(
        tool_results(&outcome.messages[1]),
        [("3 words".to_owned(), false)]
    );
    // The second model call saw the tool result, and the tool was offered with its schema.
    let requests = model.requests.lock().unwrap();
    assert_eq!(requests[1].messages.len(), 3);
    assert_eq!(requests[0].tools[0].name, "word_count");
    assert_eq!(requests[0].system, "sys");
    // The prompt is marked cacheable after the tools and after the newest message.
    let cached = |request: &molt_core::model::ModelRequest| -> Vec<PromptPart> {
        request.cache_breakpoints.iter().map(|b| b.after).collect()
    };
    assert_eq!(
        cached(&requests[1]),
        [
            PromptPart::Tool { index: 0 },
            PromptPart::Block {
                message: 2,
                block: 0
            }
        ]
    );
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolStart { name, .. } => Some(format!("start {name}")),
            AgentEvent::ToolEnd { name, is_error, .. } => Some(format!("end {name} {is_error}")),
            AgentEvent::TextDelta(t) => Some(format!("text {t}")),
            AgentEvent::Message(_) => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start word_count",
            "end word_count false",
            "text That is three words."
        ]
    );
}

#[test]
fn stops_at_max_steps_with_a_valid_history() {
    let answers = (0..5)
        .map(|i| tool_answer(&[(&format!("c{i}"), "word_count", r#"{"text": "a"}"#)]))
        .collect();
    let model = Arc::new(ScriptedModel::new(answers));
    let options = AgentOptions {
        max_steps: 3,
        ..AgentOptions::default()
    };
    let agent = agent(model.clone(), vec![Arc::new(WordCountTool)], options);
    let outcome = block_on_within(
        LIMIT,
        agent.run(
            "",
            &[Message::user("loop")],
            &CancelToken::new(),
            &mut |_| {},
        ),
    )
    .unwrap();
    assert_eq!((outcome.end, outcome.steps), (RunEnd::MaxSteps, 3));
    assert_eq!(model.requests.lock().unwrap().len(), 3);
    // Every tool call has an answer, the last one saying why it did not run.
    let last = outcome.messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    let results = tool_results(last);
    assert!(
        results[0].1 && results[0].0.contains("limit of 3"),
        "{results:?}"
    );
}

#[test]
fn invalid_input_and_unknown_tools_become_error_results() {
    let model = Arc::new(ScriptedModel::new(vec![
        tool_answer(&[
            ("a", "word_count", r#"{"text": 5}"#),
            ("b", "word_count", r#"{"text": "x", "extra": true}"#),
            ("c", "word_count", r#"{"text": "#),
            ("d", "no_such_tool", "{}"),
        ]),
        text_answer("sorry"),
    ]));
    let agent = agent(
        model.clone(),
        vec![Arc::new(WordCountTool)],
        AgentOptions::default(),
    );
    let outcome = block_on_within(
        LIMIT,
        agent.run("", &[Message::user("x")], &CancelToken::new(), &mut |_| {}),
    )
    .unwrap();
    let results = tool_results(&outcome.messages[1]);
    assert!(results.iter().all(|(_, is_error)| *is_error), "{results:?}");
    assert!(results[0].0.contains("/text"), "{}", results[0].0);
    assert!(results[1].0.contains("extra"), "{}", results[1].0);
    assert!(results[2].0.contains("not valid JSON"), "{}", results[2].0);
    assert!(results[3].0.contains("unknown tool"), "{}", results[3].0);
    assert_eq!(outcome.reply, "sorry");
}

struct FailingTool;

#[async_trait]
impl Tool for FailingTool {
    fn name(&self) -> &str {
        "flaky"
    }
    fn description(&self) -> &str {
        "Always fails."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::External
    }
    async fn call(&self, _: Value) -> Result<String, ToolError> {
        Err(ToolError::new("upstream returned 503"))
    }
}

#[test]
fn a_failing_tool_does_not_end_the_run() {
    let model = Arc::new(ScriptedModel::new(vec![
        tool_answer(&[("a", "flaky", "{}")]),
        text_answer("it failed"),
    ]));
    let agent = agent(model, vec![Arc::new(FailingTool)], AgentOptions::default());
    let outcome = block_on_within(
        LIMIT,
        agent.run("", &[Message::user("x")], &CancelToken::new(), &mut |_| {}),
    )
    .unwrap();
    assert_eq!(
        tool_results(&outcome.messages[1]),
        [("flaky failed: upstream returned 503".to_owned(), true)]
    );
    assert_eq!(outcome.reply, "it failed");
}

/// Two tools that each wait for the other: they finish only if run concurrently.
struct Rendezvous {
    name: &'static str,
    mine: Mutex<Option<oneshot::Sender<()>>>,
    theirs: Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait]
impl Tool for Rendezvous {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "Waits for its partner."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn side_effect(&self) -> SideEffect {
        SideEffect::ReadOnly
    }
    async fn call(&self, _: Value) -> Result<String, ToolError> {
        let _ = self.mine.lock().unwrap().take().unwrap().send(());
        let theirs = self.theirs.lock().unwrap().take().unwrap();
        theirs
            .await
            .map_err(|_| ToolError::new("partner vanished"))?;
        Ok(format!("{} met its partner", self.name))
    }
}

#[test]
fn tool_calls_in_one_step_run_in_parallel() {
    let (a_tx, a_rx) = oneshot::channel();
    let (b_tx, b_rx) = oneshot::channel();
    let left = Rendezvous {
        name: "left",
        mine: Mutex::new(Some(a_tx)),
        theirs: Mutex::new(Some(b_rx)),
    };
    let right = Rendezvous {
        name: "right",
        mine: Mutex::new(Some(b_tx)),
        theirs: Mutex::new(Some(a_rx)),
    };
    let model = Arc::new(ScriptedModel::new(vec![
        tool_answer(&[("1", "left", "{}"), ("2", "right", "{}")]),
        text_answer("ok"),
    ]));
    let agent = agent(
        model,
        vec![Arc::new(left), Arc::new(right)],
        AgentOptions::default(),
    );
    let outcome = block_on_within(
        LIMIT,
        agent.run("", &[Message::user("x")], &CancelToken::new(), &mut |_| {}),
    )
    .unwrap();
    let results = tool_results(&outcome.messages[1]);
    assert_eq!(
        results,
        [
            ("left met its partner".to_owned(), false),
            ("right met its partner".to_owned(), false)
        ]
    );
}

#[test]
fn cancellation_and_timeout_end_a_run() {
    let gated = Arc::new(GatedModel::default());
    let agent_ = agent(gated.clone(), vec![], AgentOptions::default());
    let cancel = CancelToken::new();
    let canceller = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        canceller.cancel();
    });
    let result = block_on_within(
        LIMIT,
        agent_.run("", &[Message::user("x")], &cancel, &mut |_| {}),
    );
    assert!(matches!(result, Err(AgentError::Cancelled)), "{result:?}");
    assert!(cancel.is_cancelled());

    let options = AgentOptions {
        run_timeout: Duration::from_millis(50),
        ..AgentOptions::default()
    };
    let agent_ = agent(gated.clone(), vec![], options);
    let result = block_on_within(
        LIMIT,
        agent_.run("", &[Message::user("x")], &CancelToken::new(), &mut |_| {}),
    );
    assert!(matches!(result, Err(AgentError::Timeout(_))), "{result:?}");
    gated.release_all();
}
