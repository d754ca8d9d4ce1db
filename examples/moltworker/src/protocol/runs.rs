//! Runs as OpenClaw's `agent` events tell them (what openclaw-node streams
//! from): each `chat` event of a run becomes `agent` events (`lifecycle`
//! start and end, `assistant` text with its delta), and an `agent` request
//! waiting on the run gets its final response right after the run's last event.

use super::frames::RpcError;
use serde_json::{Value, json};
use std::collections::HashMap;

/// What one connection follows of the runs it hears about.
#[derive(Default)]
pub struct AgentRuns {
    /// Runs an `agent` request of this connection waits on: run id to request id.
    waiting: HashMap<String, String>,
    /// Runs under way: how much of their text `assistant` events carried.
    streamed: HashMap<String, usize>,
}

/// What a `chat` event brings: `agent` event payloads, and maybe a final response.
pub struct Translated {
    /// `agent` event payloads, in order.
    pub events: Vec<Value>,
    /// The request id and final response of an `agent` request whose run ended.
    pub response: Option<(String, Result<Value, RpcError>)>,
}

/// The most runs a connection follows at once; past it, the oldest are forgotten.
pub const MAX_FOLLOWED_RUNS: usize = 256;

impl AgentRuns {
    /// Forgets every run (the connection missed events): returns the
    /// requests that were waiting, to be told their run's end was missed.
    pub fn abandon(&mut self) -> Vec<String> {
        self.streamed.clear();
        self.waiting.drain().map(|(_, request)| request).collect()
    }

    /// Stops waiting for the run request `request_id` waits on; returns the
    /// run's id, if the request was waiting.
    pub fn cancel(&mut self, request_id: &str) -> Option<String> {
        let run_id = (self.waiting.iter())
            .find(|(_, request)| request.as_str() == request_id)
            .map(|(run, _)| run.clone())?;
        self.waiting.remove(&run_id);
        Some(run_id)
    }

    /// Request `request_id` waits for run `run_id` to end.
    pub fn wait_for(&mut self, run_id: String, request_id: String) {
        self.waiting.insert(run_id, request_id);
    }

    /// Translates `chat` event `payload` (`runId`, `sessionKey`, `seq`,
    /// `state`, cumulative `message`, `errorMessage`).
    pub fn on_chat(&mut self, payload: &Value, now_ms: u64) -> Translated {
        let run_id = payload["runId"].as_str().unwrap_or_default().to_owned();
        let state = payload["state"].as_str().unwrap_or_default();
        let event = |stream: &str, data: Value| {
            json!({ "runId": run_id, "seq": payload["seq"], "stream": stream, "ts": now_ms,
                    "sessionKey": payload["sessionKey"], "data": data })
        };
        let mut events = Vec::new();
        let sent = match self.streamed.get(&run_id) {
            Some(&sent) => sent,
            None => {
                events.push(event(
                    "lifecycle",
                    json!({ "phase": "start", "startedAt": now_ms }),
                ));
                0
            }
        };
        let text = payload["message"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        if matches!(state, "delta" | "final") && !text.is_empty() && text.len() != sent {
            // A new step's text starts afresh: then the delta is all of it.
            let delta = match text.get(sent..) {
                Some(rest) if text.len() > sent => rest,
                _ => text,
            };
            events.push(event("assistant", json!({ "text": text, "delta": delta })));
        }
        let terminal = matches!(state, "final" | "error" | "aborted");
        if !terminal {
            if self.streamed.len() >= MAX_FOLLOWED_RUNS && !self.streamed.contains_key(&run_id) {
                // Runs whose end never came through: their text restarts if they go on.
                self.streamed.clear();
            }
            self.streamed.insert(run_id, text.len());
            return Translated {
                events,
                response: None,
            };
        }
        self.streamed.remove(&run_id);
        let error = payload["errorMessage"].as_str().unwrap_or("the run failed");
        let (phase, outcome) = match state {
            "final" => ("end", Ok(("ok", "completed"))),
            "aborted" => ("end", Ok(("timeout", "aborted"))),
            _ => ("error", Err(error)),
        };
        let mut data = json!({ "phase": phase, "endedAt": now_ms });
        if phase == "error" {
            data["error"] = json!(error);
        }
        events.push(event("lifecycle", data));
        let response = self.waiting.remove(&run_id).map(|request_id| {
            let result = match outcome {
                Ok((status, summary)) => Ok(json!({
                    "runId": run_id, "status": status, "summary": summary,
                    "result": { "payloads": [{ "text": text }] },
                })),
                Err(error) => Err(RpcError::unavailable(error)),
            };
            (request_id, result)
        });
        Translated { events, response }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(seq: u64, state: &str, text: Option<&str>) -> Value {
        let mut payload = json!({ "runId": "k1", "sessionKey": "s", "seq": seq, "state": state });
        if let Some(text) = text {
            payload["message"] =
                json!({ "role": "assistant", "content": [{ "type": "text", "text": text }] });
        }
        payload
    }

    #[test]
    fn a_run_becomes_lifecycle_and_assistant_events_then_its_final_response() {
        let mut runs = AgentRuns::default();
        runs.wait_for("k1".into(), "req-1".into());
        let first = runs.on_chat(&chat(1, "delta", Some("Hel")), 5);
        let streams: Vec<_> = first.events.iter().map(|e| e["stream"].clone()).collect();
        assert_eq!(streams, ["lifecycle", "assistant"]);
        assert_eq!(first.events[1]["data"]["delta"], "Hel");
        let second = runs.on_chat(&chat(2, "delta", Some("Hello")), 6);
        assert_eq!(
            second.events[0]["data"],
            json!({ "text": "Hello", "delta": "lo" })
        );
        // The final text adds nothing: no assistant event, the lifecycle ends, the request is answered.
        let last = runs.on_chat(&chat(3, "final", Some("Hello")), 7);
        assert_eq!(last.events.len(), 1);
        assert_eq!(last.events[0]["data"]["phase"], "end");
        let (request, result) = last.response.unwrap();
        assert_eq!(request, "req-1");
        assert_eq!(result.unwrap()["status"], "ok");
        // A run that only ends (a reply resent after a restart) still carries its text.
        let resent = runs.on_chat(&chat(1, "final", Some("again")), 8);
        assert_eq!(resent.events.len(), 3);
        assert_eq!(resent.events[1]["data"]["delta"], "again");
        assert!(resent.response.is_none(), "nobody waits on it");
    }

    #[test]
    fn a_failed_run_ends_in_error() {
        let mut runs = AgentRuns::default();
        runs.wait_for("k1".into(), "req-2".into());
        let mut failed = chat(1, "error", None);
        failed["errorMessage"] = json!("the provider refused");
        let out = runs.on_chat(&failed, 1);
        assert_eq!(out.events[1]["data"]["error"], "the provider refused");
        let (_, result) = out.response.unwrap();
        assert_eq!(result.unwrap_err().message, "the provider refused");
    }
}
