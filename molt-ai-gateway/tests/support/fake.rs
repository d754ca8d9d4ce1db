//! Fake Anthropic and OpenAI servers, faithful to the published API reference:
//! the same SSE event sequences, error bodies, status codes and rate-limit
//! headers. The model name picks the behaviour:
//!
//! | model | behaviour |
//! |---|---|
//! | `echo` (or anything else) | streams "You said: <last user text>" |
//! | `tool` | calls `get_weather` with `{"city":"Paris","days":3}` |
//! | `cached` | reports prompt-cache usage (100 cached input tokens) |
//! | `rate-limited` | 429 with `retry-after: 1` and the provider's rate-limit headers |
//! | `flaky` | 429 with `retry-after: 0` twice, then answers |
//! | `overloaded` | Anthropic 529 `overloaded_error`, OpenAI 503 |
//! | `error-before-output` | HTTP 200, then an error event before any text |
//! | `error-mid-stream` | HTTP 200, some text, then an error event |
//! | `cut-mid-stream` | HTTP 200, some text, then the connection is cut |
//! | `redirect` | Anthropic only: 307 to `/elsewhere`, which counts who follows |
//! | `slow-first-token` | waits `first_token_delay` before the first event |
//! | `parallel-tools` | two tool calls (`get_weather` for Paris, then `get_time` for Tokyo) |
//! | `stall-mid-stream` | some text, then a pause of `first_token_delay`, then the rest |
//! | `same-index-tools` | OpenAI only: two calls both at index 0, told apart by id (as some compatible servers send) |
//! | `browse` | Anthropic only: when the user's text holds an `http` URL, calls `browser_markdown` on it; then (or else) echoes |

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key the fake Anthropic accepts.
pub const ANTHROPIC_KEY: &str = "sk-ant-fake-key";
/// The key the fake OpenAI accepts.
pub const OPENAI_KEY: &str = "sk-openai-fake-key";

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `anthropic` or `openai`.
    pub api: &'static str,
    /// The JSON body.
    pub body: Value,
    /// The `cf-aig-authorization` header, when sent.
    pub gateway_authorization: Option<String>,
}

/// Shared state: what arrived, and per-model counters.
#[derive(Default)]
pub struct FakeState {
    pub received: Mutex<Vec<Received>>,
    counters: Mutex<HashMap<String, u32>>,
    pub first_token_delay: Mutex<Duration>,
    /// Keep no request log (for benchmarks).
    pub quiet: std::sync::atomic::AtomicBool,
    /// Requests that followed a redirect to `/elsewhere`.
    pub redirected: std::sync::atomic::AtomicUsize,
}

impl FakeState {
    fn count(&self, model: &str) -> u32 {
        let mut counters = self.counters.lock().unwrap();
        let count = counters.entry(model.to_string()).or_default();
        *count += 1;
        *count
    }

    /// How many requests asked for `model`.
    pub fn requests_for(&self, model: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body["model"] == model)
            .count()
    }
}

/// A running fake provider.
pub struct FakeProvider {
    pub address: SocketAddr,
    pub state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts both APIs on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(FakeState {
            first_token_delay: Mutex::new(Duration::from_secs(2)),
            ..FakeState::default()
        });
        let app = axum::Router::new()
            .route("/v1/messages", post(anthropic))
            .route("/v1/chat/completions", post(openai))
            .route(
                "/elsewhere",
                post(|State(state): State<Arc<FakeState>>| async move {
                    state
                        .redirected
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "followed"
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            address,
            state,
            task,
        }
    }

    /// The Anthropic base URL (as the Anthropic SDK expects it: no `/v1`).
    pub fn anthropic_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The OpenAI base URL (with `/v1`).
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn last_user_text(messages: &Value) -> String {
    let Some(last) = messages.as_array().and_then(|m| {
        m.iter()
            .rev()
            .find(|m| m["role"] == "user" || m["role"] == "tool")
    }) else {
        return String::new();
    };
    match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str().or_else(|| b["content"].as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The first `http` URL of the user's last message, unless that message
/// answers a tool call (then the model replies).
fn url_to_browse(messages: &Value) -> Option<String> {
    let last = messages.as_array()?.last()?;
    let answers_tool = (last["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    if answers_tool {
        return None;
    }
    (last_user_text(messages).split_whitespace())
        .find(|word| word.starts_with("http"))
        .map(str::to_owned)
}

fn reply_pieces(body: &Value) -> Vec<String> {
    let text = format!("You said: {}", last_user_text(&body["messages"]));
    text.split_inclusive(' ').map(str::to_string).collect()
}

fn input_tokens(body: &Value) -> u64 {
    (body["messages"].to_string().len() / 4) as u64 + 1
}

const TOOL_ARGUMENT_PIECES: [&str; 4] = ["", "{\"city\": \"Pa", "ris\", \"days\"", ": 3}"];

/// In a list of stream items: pause for `STALL_FOR` here.
const STALL: &str = "\u{0}stall";
const STALL_FOR: Duration = Duration::from_secs(2);

/// A stream body: `items` then, when `cut`, a broken connection.
fn sse(items: Vec<String>, delay: Option<Duration>, cut: bool) -> Response {
    let stream = futures::stream::iter(items).then(|item| async move {
        if item == STALL {
            tokio::time::sleep(STALL_FOR).await;
            return Ok::<_, std::io::Error>(Bytes::new());
        }
        Ok(Bytes::from(item))
    });
    let stream = match delay {
        Some(delay) => futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok(Bytes::new())
        })
        .chain(stream)
        .boxed(),
        None => stream.boxed(),
    };
    let stream = if cut {
        // Let what came before reach the client, then break the connection.
        let cut = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("connection cut"))
        });
        stream.chain(cut).boxed()
    } else {
        stream
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn record(state: &FakeState, api: &'static str, headers: &HeaderMap, body: &Value) {
    if !state.quiet.load(std::sync::atomic::Ordering::Relaxed) {
        let gateway_authorization = headers
            .get("cf-aig-authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        state.received.lock().unwrap().push(Received {
            api,
            body: body.clone(),
            gateway_authorization,
        });
    }
}

// ---------------------------------------------------------------- Anthropic

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({ "type": "error", "error": { "type": kind, "message": message }, "request_id": "req_011CFakeRequestId" });
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert("request-id", "req_011CFakeRequestId".parse().unwrap());
    response
}

fn anthropic_event(data: Value) -> String {
    format!(
        "event: {}\ndata: {}\n\n",
        data["type"].as_str().unwrap(),
        data
    )
}

/// Anthropic's checks on message content: every message but a final
/// assistant one has content, and no text block is empty or only whitespace.
fn anthropic_content_refusal(messages: &Value) -> Option<String> {
    let messages = messages.as_array()?;
    for (index, message) in messages.iter().enumerate() {
        let last_assistant = index + 1 == messages.len() && message["role"] == "assistant";
        let empty = match &message["content"] {
            Value::String(text) => text.is_empty(),
            Value::Array(blocks) => blocks.is_empty(),
            _ => true,
        };
        if empty && !last_assistant {
            return Some(format!(
                "messages.{index}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        for (block_index, block) in message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if block["type"] == "image" {
                if let Some(refusal) = anthropic_image_refusal(block, message, index, block_index) {
                    return Some(refusal);
                }
                continue;
            }
            if block["type"] != "text" {
                continue;
            }
            let text = block["text"].as_str().unwrap_or_default();
            if text.is_empty() {
                return Some(format!(
                    "messages.{index}.content.{block_index}.text: text content blocks must be non-empty"
                ));
            }
            if text.trim().is_empty() {
                return Some(format!(
                    "messages.{index}.content.{block_index}.text: text content blocks must contain non-whitespace text"
                ));
            }
        }
    }
    None
}

/// Anthropic's checks on an image block, in its words: images only in user
/// turns; base64 sources of the four formats it takes, whose bytes are of the
/// media type they claim, at most 5 MiB of base64 and 8000 pixels a side
/// each; URL sources over HTTPS.
fn anthropic_image_refusal(
    block: &Value,
    message: &Value,
    index: usize,
    block_index: usize,
) -> Option<String> {
    use base64::Engine;
    let at = format!("messages.{index}.content.{block_index}.image.source");
    if message["role"] != "user" {
        return Some(format!(
            "messages.{index}: image content is only allowed in user messages"
        ));
    }
    let source = &block["source"];
    match source["type"].as_str() {
        Some("url") => {
            let url = source["url"].as_str().unwrap_or_default();
            return (!url.starts_with("https://"))
                .then(|| format!("{at}.url.url: URL must use https"));
        }
        Some("base64") => {}
        _ => {
            return Some(format!(
                "{at}: Input tag does not match any of the expected tags"
            ));
        }
    }
    let media_type = source["media_type"].as_str().unwrap_or_default();
    const TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
    if !TYPES.contains(&media_type) {
        return Some(format!(
            "{at}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        ));
    }
    let data = source["data"].as_str().unwrap_or_default();
    if data.len() > 5 * 1024 * 1024 {
        return Some(format!(
            "{at}.base64: image exceeds 5 MB maximum: {} bytes > 5242880 bytes",
            data.len()
        ));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
        return Some(format!("{at}.base64.data: invalid base64 data"));
    };
    let actual = match bytes.as_slice() {
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        _ => return Some(format!("{at}.base64.data: Could not process image")),
    };
    if actual != media_type {
        return Some(format!(
            "{at}.base64.data: Image does not match the provided media type {media_type}"
        ));
    }
    let Ok(size) = imagesize::blob_size(&bytes) else {
        return Some(format!("{at}.base64.data: Could not process image"));
    };
    (size.width.max(size.height) > 8000).then(|| {
        format!("{at}.base64.data: At least one of the image dimensions exceed max allowed size: 8000 pixels")
    })
}

async fn anthropic(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(ANTHROPIC_KEY) {
        return anthropic_error(401, "authentication_error", "invalid x-api-key");
    }
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(
            400,
            "invalid_request_error",
            "There was an error parsing the body of your request.",
        );
    };
    if body["max_tokens"].as_u64().is_none() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return anthropic_error(
            400,
            "invalid_request_error",
            "messages: at least one message is required",
        );
    }
    if let Some(refusal) = anthropic_content_refusal(&body["messages"]) {
        return anthropic_error(400, "invalid_request_error", &refusal);
    }
    record(&state, "anthropic", &headers, &body);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let count = state.count(&format!("anthropic/{model}"));
    match model.as_str() {
        "rate-limited" => {
            let mut response = anthropic_error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            );
            let headers = response.headers_mut();
            headers.insert("retry-after", "1".parse().unwrap());
            headers.insert("anthropic-ratelimit-requests-limit", "50".parse().unwrap());
            headers.insert(
                "anthropic-ratelimit-requests-remaining",
                "0".parse().unwrap(),
            );
            headers.insert(
                "anthropic-ratelimit-requests-reset",
                "2026-11-22T12:00:01Z".parse().unwrap(),
            );
            return response;
        }
        "flaky" if count <= 2 => {
            let mut response = anthropic_error(429, "rate_limit_error", "rate limited");
            response
                .headers_mut()
                .insert("retry-after", "0".parse().unwrap());
            return response;
        }
        "overloaded" => return anthropic_error(529, "overloaded_error", "Overloaded"),
        "redirect" => {
            return Response::builder()
                .status(307)
                .header("location", "/elsewhere")
                .body(Body::empty())
                .unwrap();
        }
        _ => {}
    }
    if body["stream"] != true {
        return anthropic_error(
            400,
            "invalid_request_error",
            "this fake serves streams only",
        );
    }
    let (input, cache_read, cache_write) = if model == "cached" {
        (20, 100, 50)
    } else {
        (input_tokens(&body), 0, 0)
    };
    let mut events = vec![anthropic_event(json!({
        "type": "message_start",
        "message": {
            "id": "msg_01FakeMessageId", "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": input, "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read, "output_tokens": 1 }
        }
    }))];
    if model == "error-before-output" {
        events.push(anthropic_event(json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })));
        return sse(events, None, false);
    }
    let (stop, output) = if model == "parallel-tools" {
        let calls = [
            (
                "toolu_01Weather",
                "get_weather",
                ["{\"city\": ", "\"Paris\"}"],
            ),
            (
                "toolu_02Time",
                "get_time",
                ["{\"zone\": \"Asia/", "Tokyo\"}"],
            ),
        ];
        for (index, (id, name, pieces)) in calls.iter().enumerate() {
            events.push(anthropic_event(json!({ "type": "content_block_start", "index": index, "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } })));
            for piece in pieces {
                events.push(anthropic_event(json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": piece } })));
            }
            events.push(anthropic_event(
                json!({ "type": "content_block_stop", "index": index }),
            ));
        }
        ("tool_use", 20)
    } else if let Some(url) = (model == "browse")
        .then(|| url_to_browse(&body["messages"]))
        .flatten()
    {
        events.push(anthropic_event(json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "tool_use", "id": "toolu_01Browse", "name": "browser_markdown", "input": {} } })));
        let input = json!({ "url": url }).to_string();
        events.push(anthropic_event(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "input_json_delta", "partial_json": input } })));
        events.push(anthropic_event(
            json!({ "type": "content_block_stop", "index": 0 }),
        ));
        ("tool_use", 10)
    } else if model == "tool" {
        events.push(anthropic_event(json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } })));
        events.push(anthropic_event(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "Let me check." } })));
        events.push(anthropic_event(
            json!({ "type": "content_block_stop", "index": 0 }),
        ));
        events.push(anthropic_event(json!({ "type": "content_block_start", "index": 1, "content_block": { "type": "tool_use", "id": "toolu_01FakeToolUse", "name": "get_weather", "input": {} } })));
        for piece in TOOL_ARGUMENT_PIECES {
            events.push(anthropic_event(json!({ "type": "content_block_delta", "index": 1, "delta": { "type": "input_json_delta", "partial_json": piece } })));
        }
        events.push(anthropic_event(
            json!({ "type": "content_block_stop", "index": 1 }),
        ));
        ("tool_use", 12)
    } else {
        let pieces = reply_pieces(&body);
        events.push(anthropic_event(json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } })));
        events.push(anthropic_event(json!({ "type": "ping" })));
        events.push(anthropic_event(
            json!({ "type": "future_event_kind", "detail": "unknown events must be tolerated" }),
        ));
        for (index, piece) in pieces.iter().enumerate() {
            events.push(anthropic_event(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": piece } })));
            if index == 1 {
                match model.as_str() {
                    "error-mid-stream" => {
                        events.push(anthropic_event(json!({ "type": "error", "error": { "type": "api_error", "message": "Internal server error" } })));
                        return sse(events, None, false);
                    }
                    "cut-mid-stream" => return sse(events, None, true),
                    "stall-mid-stream" => events.push(STALL.into()),
                    _ => {}
                }
            }
        }
        events.push(anthropic_event(
            json!({ "type": "content_block_stop", "index": 0 }),
        ));
        ("end_turn", pieces.len() as u64)
    };
    events.push(anthropic_event(json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop, "stop_sequence": null },
        "usage": { "output_tokens": output }
    })));
    events.push(anthropic_event(json!({ "type": "message_stop" })));
    let delay = (model == "slow-first-token").then(|| *state.first_token_delay.lock().unwrap());
    sse(events, delay, false)
}

// ---------------------------------------------------------------- OpenAI

fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Response {
    let body =
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert("x-request-id", "req_fakerequestid".parse().unwrap());
    response
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let data = json!({
        "id": "chatcmpl-FakeCompletionId", "object": "chat.completion.chunk", "created": 1_790_000_000, "model": model,
        "system_fingerprint": "fp_fake", "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        "usage": null,
    });
    format!("data: {data}\n\n")
}

async fn openai(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: Bytes) -> Response {
    let expected = format!("Bearer {OPENAI_KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided: sk-w****. You can find your API key at https://platform.openai.com/account/api-keys.",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "We could not parse the JSON body of your request.",
        );
    };
    if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "[] is too short - 'messages'",
        );
    }
    record(&state, "openai", &headers, &body);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let count = state.count(&format!("openai/{model}"));
    match model.as_str() {
        "rate-limited" => {
            let mut response = openai_error(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s.",
            );
            let headers = response.headers_mut();
            headers.insert("retry-after", "1".parse().unwrap());
            headers.insert("x-ratelimit-limit-requests", "3".parse().unwrap());
            headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
            headers.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
            return response;
        }
        "flaky" if count <= 2 => {
            let mut response = openai_error(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached",
            );
            response
                .headers_mut()
                .insert("retry-after", "0".parse().unwrap());
            return response;
        }
        "overloaded" => {
            return openai_error(
                503,
                "server_error",
                None,
                "The engine is currently overloaded, please try again later",
            );
        }
        _ => {}
    }
    if body["stream"] != true {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "this fake serves streams only",
        );
    }
    let include_usage = body["stream_options"]["include_usage"] == true;
    let mut chunks = vec![chunk(
        &model,
        json!({ "role": "assistant", "content": "", "refusal": null }),
        None,
    )];
    if model == "error-before-output" {
        chunks.push(format!("data: {}\n\n", json!({ "error": { "message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null } })));
        return sse(chunks, None, false);
    }
    let (finish, output) = if model == "parallel-tools" || model == "same-index-tools" {
        let same_index = model == "same-index-tools";
        let calls = [
            ("call_Weather", "get_weather", ["{\"city\": ", "\"Paris\"}"]),
            ("call_Time", "get_time", ["{\"zone\": \"Asia/", "Tokyo\"}"]),
        ];
        for (index, (id, name, pieces)) in calls.iter().enumerate() {
            let index = if same_index { 0 } else { index };
            let start = json!({ "tool_calls": [{ "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": "" } }] });
            chunks.push(chunk(&model, start, None));
            for piece in pieces {
                chunks.push(chunk(&model, json!({ "tool_calls": [{ "index": index, "function": { "arguments": piece } }] }), None));
            }
        }
        // Compatible servers that number every call 0 often finish with "stop".
        (if same_index { "stop" } else { "tool_calls" }, 20)
    } else if model == "tool" {
        let start = json!({ "tool_calls": [{ "index": 0, "id": "call_FakeToolCall", "type": "function", "function": { "name": "get_weather", "arguments": "" } }] });
        chunks.push(chunk(&model, start, None));
        for piece in TOOL_ARGUMENT_PIECES.iter().skip(1) {
            chunks.push(chunk(
                &model,
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                None,
            ));
        }
        ("tool_calls", 12)
    } else {
        let pieces = reply_pieces(&body);
        for (index, piece) in pieces.iter().enumerate() {
            chunks.push(chunk(&model, json!({ "content": piece }), None));
            if index == 1 {
                match model.as_str() {
                    "error-mid-stream" => {
                        chunks.push(format!("data: {}\n\n", json!({ "error": { "message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null } })));
                        return sse(chunks, None, false);
                    }
                    "cut-mid-stream" => return sse(chunks, None, true),
                    "stall-mid-stream" => chunks.push(STALL.into()),
                    _ => {}
                }
            }
        }
        ("stop", pieces.len() as u64)
    };
    chunks.push(chunk(&model, json!({}), Some(finish)));
    if include_usage {
        let (prompt, cached) = if model == "cached" {
            (120, 100)
        } else {
            (input_tokens(&body), 0)
        };
        let usage = json!({
            "id": "chatcmpl-FakeCompletionId", "object": "chat.completion.chunk", "created": 1_790_000_000, "model": model,
            "system_fingerprint": "fp_fake", "choices": [],
            "usage": {
                "prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
                "prompt_tokens_details": { "cached_tokens": cached, "audio_tokens": 0 },
                "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
            }
        });
        chunks.push(format!("data: {usage}\n\n"));
    }
    chunks.push("data: [DONE]\n\n".into());
    let delay = (model == "slow-first-token").then(|| *state.first_token_delay.lock().unwrap());
    sse(chunks, delay, false)
}
