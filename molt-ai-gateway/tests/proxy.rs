//! The proxy over HTTP: both API shapes, streaming and not, Cloudflare's
//! headers, and provider-shaped errors for bad input.

mod support;

use serde_json::{Value, json};
use support::fake::FakeProvider;
use support::{GATEWAY_KEY, RunningProxy, gateway_toml, start_proxy};

fn client() -> reqwest::Client {
    molt_ai_gateway::provider::http_client(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(30),
    )
    .unwrap()
}

async fn post(
    proxy: &RunningProxy,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client()
        .post(proxy.url(path))
        .bearer_auth(GATEWAY_KEY)
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The proxy answers a plain request: bad input before did it no harm.
async fn assert_still_serves(proxy: &RunningProxy) {
    let response = post(
        proxy,
        "/v1/chat/completions",
        chat("openai/echo", "hi", false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }], "stream": stream, "stream_options": if stream { json!({ "include_usage": true }) } else { Value::Null } })
}

fn message(model: &str, text: &str, stream: bool) -> Value {
    json!({ "model": model, "max_tokens": 100, "messages": [{ "role": "user", "content": text }], "stream": stream })
}

/// The `data:` payloads of an SSE body, with their event names.
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_string();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = value.to_string();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn openai_clients_reach_an_anthropic_provider_and_back() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let response = post(
        &proxy,
        "/v1/chat/completions",
        chat("anthropic/echo", "hi there", false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cf-aig-cache-status"], "MISS");
    assert_eq!(response.headers()["cf-aig-step"], "0");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You said: hi there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(body["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn anthropic_clients_stream_from_an_openai_provider() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let response = post(
        &proxy,
        "/v1/messages",
        message("openai/echo", "hi there", true),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        &names[names.len() - 2..],
        &["message_delta", "message_stop"]
    );
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| {
            serde_json::from_str::<Value>(data).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "You said: hi there");
    let delta: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn a_fallback_route_reports_the_step_that_answered() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let response = post(
        &proxy,
        "/v1/chat/completions",
        chat("fallback", "hi", false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cf-aig-step"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "echo");
}

#[tokio::test]
async fn cloudflare_cache_headers_work_and_a_cached_answer_replays_as_a_stream() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let ask =
        |text: &'static str, stream: bool, headers: &'static [(&'static str, &'static str)]| {
            post(
                &proxy,
                "/v1/chat/completions",
                chat("openai/echo", text, stream),
                headers,
            )
        };
    let status = |response: &reqwest::Response| {
        response.headers()["cf-aig-cache-status"]
            .to_str()
            .unwrap()
            .to_string()
    };
    const TTL: &[(&str, &str)] = &[("cf-aig-cache-ttl", "60")];
    assert_eq!(status(&ask("cache me", false, TTL).await), "MISS");
    assert_eq!(status(&ask("cache me", false, TTL).await), "HIT");
    let streamed = ask("cache me", true, TTL).await;
    assert_eq!(status(&streamed), "HIT");
    let events = sse_events(&streamed.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let skip = &[("cf-aig-cache-ttl", "60"), ("cf-aig-skip-cache", "true")];
    assert_eq!(status(&ask("cache me", false, skip).await), "MISS");
    let keyed = &[("cf-aig-cache-ttl", "60"), ("cf-aig-cache-key", "k")];
    ask("one", false, keyed).await;
    assert_eq!(status(&ask("two", false, keyed).await), "HIT");
    assert_eq!(fake.state.requests_for("echo"), 3);
}

#[tokio::test]
async fn bad_input_gets_the_providers_error_shape_and_status() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 4096).await;
    // Malformed JSON.
    for (path, shape_check) in [
        ("/v1/chat/completions", "/error/message"),
        ("/v1/messages", "/error/type"),
    ] {
        let response = client()
            .post(proxy.url(path))
            .bearer_auth(GATEWAY_KEY)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body.pointer(shape_check).is_some(), "{path}: {body}");
    }
    // Unknown model.
    let response = post(
        &proxy,
        "/v1/chat/completions",
        chat("nope", "hi", false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let response = post(&proxy, "/v1/messages", message("nope", "hi", false), &[]).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error"))
    );
    // Too large.
    let response = post(
        &proxy,
        "/v1/messages",
        message("openai/echo", &"x".repeat(10_000), false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "request_too_large");
    // Missing and wrong keys.
    let response = client()
        .post(proxy.url("/v1/messages"))
        .json(&message("openai/echo", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let response = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth("wrong")
        .json(&chat("openai/echo", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Bad Cloudflare headers.
    let response = post(
        &proxy,
        "/v1/chat/completions",
        chat("openai/echo", "hi", false),
        &[("cf-aig-cache-ttl", "soon")],
    )
    .await;
    assert_eq!(response.status(), 400);
    // The proxy still serves after all that.
    assert_still_serves(&proxy).await;
}

#[tokio::test]
async fn a_rate_limited_call_gets_429_with_retry_after() {
    let fake = FakeProvider::start().await;
    let limits = r#"
[[rate_limits]]
name = "per-gateway"
scope = "gateway"
unit = "requests"
limit = 1
period = "1h"
window = "fixed"
"#;
    let proxy = start_proxy(&gateway_toml(&fake, limits), 1 << 20).await;
    assert_eq!(
        post(
            &proxy,
            "/v1/messages",
            message("openai/echo", "hi", false),
            &[("x-api-key", GATEWAY_KEY)]
        )
        .await
        .status(),
        200
    );
    let response = post(
        &proxy,
        "/v1/messages",
        message("openai/echo", "hi", false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_failure_mid_stream_ends_with_an_explicit_error_not_a_clean_end() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    for model in ["anthropic/error-mid-stream", "openai/cut-mid-stream"] {
        let body = post(
            &proxy,
            "/v1/chat/completions",
            chat(model, "one two three", true),
            &[],
        )
        .await
        .text()
        .await
        .unwrap();
        let events = sse_events(&body);
        assert!(
            !events.iter().any(|(_, data)| data == "[DONE]"),
            "{model}: {body}"
        );
        let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
        assert!(last["error"]["message"].is_string(), "{model}: {body}");
        let body = post(
            &proxy,
            "/v1/messages",
            message(model, "one two three", true),
            &[],
        )
        .await
        .text()
        .await
        .unwrap();
        let events = sse_events(&body);
        assert!(
            !events.iter().any(|(name, _)| name == "message_stop"),
            "{model}: {body}"
        );
        assert_eq!(events.last().unwrap().0, "error", "{model}: {body}");
    }
    // A non-streaming client gets an error status instead of a partial answer.
    let response = post(
        &proxy,
        "/v1/chat/completions",
        chat("openai/error-mid-stream", "one two three", false),
        &[],
    )
    .await;
    assert_eq!(response.status(), 500);
}

#[tokio::test]
async fn models_and_metrics_are_listed_behind_the_key() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let models: Value = client()
        .get(proxy.url("/v1/models"))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"fallback") && ids.contains(&"openai/echo"),
        "{ids:?}"
    );
    let anthropic: Value = client()
        .get(proxy.url("/v1/models"))
        .header("x-api-key", GATEWAY_KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(
        client()
            .get(proxy.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    post(
        &proxy,
        "/v1/chat/completions",
        chat("openai/echo", "hi", false),
        &[],
    )
    .await;
    let metrics = client()
        .get(proxy.url("/metrics"))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "molt_ai_requests_total{provider=\"openai\",model=\"echo\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(proxy.gateway.recent().records().len(), 1);
}

#[tokio::test]
async fn parallel_tool_calls_from_an_openai_provider_stream_to_anthropic_clients_intact() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let body = post(
        &proxy,
        "/v1/messages",
        message("openai/parallel-tools", "two things", true),
        &[],
    )
    .await
    .text()
    .await
    .unwrap();
    let mut blocks: Vec<(String, String)> = Vec::new();
    for (name, data) in sse_events(&body) {
        let data: Value = serde_json::from_str(&data).unwrap();
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(data["index"], blocks.len());
                blocks.push((
                    data["content_block"]["name"].as_str().unwrap().to_string(),
                    String::new(),
                ));
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                blocks[index]
                    .1
                    .push_str(data["delta"]["partial_json"].as_str().unwrap());
            }
            _ => {}
        }
    }
    let parsed: Vec<(String, Value)> = blocks
        .into_iter()
        .map(|(name, json)| (name, serde_json::from_str(&json).unwrap()))
        .collect();
    assert_eq!(
        parsed,
        vec![
            ("get_weather".to_string(), json!({ "city": "Paris" })),
            ("get_time".to_string(), json!({ "zone": "Asia/Tokyo" }))
        ]
    );
    assert!(body.contains("\"stop_reason\":\"tool_use\""), "{body}");
}

#[tokio::test]
async fn fields_one_api_cannot_express_are_refused_clearly() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let mut body = chat("anthropic/echo", "hi", false);
    body["response_format"] = json!({ "type": "json_object" });
    let response = post(&proxy, "/v1/chat/completions", body.clone(), &[]).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("response_format"),
        "{error}"
    );
    body["model"] = json!("openai/echo");
    assert_eq!(
        post(&proxy, "/v1/chat/completions", body, &[])
            .await
            .status(),
        200,
        "the same API takes it"
    );
}

#[tokio::test]
async fn unsupported_anthropic_features_and_absurd_ttls_are_refused_by_name() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let mut body = message("anthropic/echo", "hi", false);
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 1024 });
    let response = post(&proxy, "/v1/messages", body, &[]).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("thinking"),
        "{error}"
    );
    let response = post(
        &proxy,
        "/v1/chat/completions",
        chat("openai/echo", "hi", false),
        &[("cf-aig-cache-ttl", "18446744073709551615")],
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_still_serves(&proxy).await;
}

#[tokio::test]
async fn prompt_cache_breakpoints_reach_anthropic_where_the_client_put_them() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let ephemeral = json!({ "type": "ephemeral" });
    let hour = json!({ "type": "ephemeral", "ttl": "1h" });
    let body = json!({
        "model": "anthropic/echo",
        "max_tokens": 100,
        "system": [{ "type": "text", "text": "You are terse.", "cache_control": hour }],
        "tools": [{ "name": "get_weather", "input_schema": { "type": "object" }, "cache_control": ephemeral }],
        "messages": [
            { "role": "user", "content": "first" },
            { "role": "assistant", "content": "ok" },
            { "role": "user", "content": [{ "type": "text", "text": "second", "cache_control": ephemeral }] },
        ],
    });
    assert_eq!(
        post(&proxy, "/v1/messages", body.clone(), &[])
            .await
            .status(),
        200
    );
    let sent = fake
        .state
        .received
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .body
        .clone();
    assert_eq!(
        sent["system"],
        json!([{ "type": "text", "text": "You are terse.", "cache_control": hour }])
    );
    assert_eq!(sent["tools"][0]["cache_control"], ephemeral);
    assert_eq!(
        sent["messages"][2]["content"][0]["cache_control"],
        ephemeral
    );
    assert!(
        sent["messages"][0]["content"][0]
            .get("cache_control")
            .is_none()
    );
    // OpenAI caches prompts by itself: the markers are simply not sent there.
    let mut to_openai = body;
    to_openai["model"] = json!("openai/echo");
    assert_eq!(
        post(&proxy, "/v1/messages", to_openai, &[]).await.status(),
        200
    );
    let sent = fake
        .state
        .received
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .body
        .to_string();
    assert!(!sent.contains("cache_control"), "{sent}");
}

/// Sends `head` (a request line and headers, no body) and reads the answer's
/// status line, within `limit`; `None` when no answer came.
async fn status_after_headers_only(
    proxy: &RunningProxy,
    head: &str,
    limit: std::time::Duration,
) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(limit, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line.trim().to_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn the_key_is_checked_before_the_body_is_read_and_wrong_keys_are_throttled() {
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let head = |key: &str, length: usize| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let quick = std::time::Duration::from_secs(2);
    // A stranger announces 8 MiB and sends none of it: refused at once.
    let answer = status_after_headers_only(&proxy, &head("wrong", 8 << 20), quick).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    // The right key with more than the limit: refused before any of it is read.
    let answer = status_after_headers_only(&proxy, &head(GATEWAY_KEY, 8 << 20), quick).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 413 Payload Too Large"));
    // Ten wrong keys in a minute (one above): the address is held off.
    for _ in 0..9 {
        let answer = status_after_headers_only(&proxy, &head("wrong", 0), quick).await;
        assert_eq!(answer.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    }
    let answer = status_after_headers_only(&proxy, &head(GATEWAY_KEY, 0), quick).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 429 Too Many Requests"));
}
