//! The provider clients against protocol-faithful fake Anthropic and OpenAI servers.

mod support;

use molt_ai_gateway::error::TimeoutKind;
use molt_ai_gateway::layers::retry::{Retry, RetryPolicy, Timeouts};
use molt_ai_gateway::service::ModelService;
use molt_ai_gateway::{GatewayError, Provider};
use molt_core::model::{ModelEvent, ResponseBuilder, StopReason};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::fake::FakeProvider;
use support::{call, drain, text};

async fn both(fake: &FakeProvider) -> [Provider; 2] {
    [support::anthropic(fake), support::openai(fake)]
}

#[tokio::test]
async fn both_apis_stream_text_with_usage_and_a_stop_reason() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let answer = provider.call(call("echo", "hello there")).await.unwrap();
        assert_eq!(answer.info.provider, provider.name());
        assert_eq!(answer.info.model, "echo");
        let (events, error) = drain(answer).await;
        assert!(error.is_none(), "{}: {error:?}", provider.name());
        assert_eq!(text(&events), "You said: hello there");
        assert_eq!(events.last(), Some(&ModelEvent::Stop(StopReason::EndTurn)));
        let usage = events
            .iter()
            .rev()
            .find_map(|e| match e {
                ModelEvent::Usage(u) => Some(*u),
                _ => None,
            })
            .unwrap();
        assert!(
            usage.input_tokens > 0 && usage.output_tokens == 4,
            "{}: {usage:?}",
            provider.name()
        );
    }
}

#[tokio::test]
async fn tool_call_arguments_survive_streaming_from_both_apis() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let answer = provider.call(call("tool", "weather?")).await.unwrap();
        let (events, error) = drain(answer).await;
        assert!(error.is_none());
        let mut builder = ResponseBuilder::default();
        for event in events {
            builder.push(event).unwrap();
        }
        let response = builder.finish().unwrap();
        assert_eq!(
            response.stop_reason,
            StopReason::ToolUse,
            "{}",
            provider.name()
        );
        assert_eq!(response.tool_calls.len(), 1);
        assert_eq!(response.tool_calls[0].name, "get_weather");
        assert_eq!(
            response.tool_calls[0].input,
            Ok(json!({ "city": "Paris", "days": 3 })),
            "{}",
            provider.name()
        );
    }
}

fn tool_calls(events: Vec<ModelEvent>) -> (StopReason, Vec<(String, serde_json::Value)>) {
    let mut builder = ResponseBuilder::default();
    for event in events {
        builder.push(event).unwrap();
    }
    let response = builder.finish().unwrap();
    let calls = response
        .tool_calls
        .into_iter()
        .map(|call| (call.name, call.input.unwrap()))
        .collect();
    (response.stop_reason, calls)
}

#[tokio::test]
async fn parallel_tool_calls_keep_their_own_arguments() {
    let fake = FakeProvider::start().await;
    let expected = vec![
        ("get_weather".to_string(), json!({ "city": "Paris" })),
        ("get_time".to_string(), json!({ "zone": "Asia/Tokyo" })),
    ];
    for provider in both(&fake).await {
        let (events, error) = drain(
            provider
                .call(call("parallel-tools", "two things"))
                .await
                .unwrap(),
        )
        .await;
        assert!(error.is_none());
        assert_eq!(
            tool_calls(events),
            (StopReason::ToolUse, expected.clone()),
            "{}",
            provider.name()
        );
    }
    // Servers that number every call 0 and finish with "stop" (seen from some compatible servers).
    let (events, _) = drain(
        support::openai(&fake)
            .call(call("same-index-tools", "two things"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tool_calls(events), (StopReason::ToolUse, expected));
}

#[tokio::test]
async fn cached_tokens_mean_the_same_thing_from_both_apis() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let (events, _) = drain(provider.call(call("cached", "hi")).await.unwrap()).await;
        let usage = events
            .iter()
            .rev()
            .find_map(|e| match e {
                ModelEvent::Usage(u) => Some(*u),
                _ => None,
            })
            .unwrap();
        // Anthropic reports 20 uncached + 100 read + 50 written; OpenAI reports
        // prompt_tokens 120 of which 100 cached (it has no cache writes).
        let written = if provider.name() == "anthropic" {
            50
        } else {
            0
        };
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens
            ),
            (20, 100, written),
            "{}: {usage:?}",
            provider.name()
        );
    }
}

#[tokio::test]
async fn a_cloudflare_gateway_token_is_sent_as_cf_aig_authorization() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let config = provider
            .config()
            .clone()
            .with_gateway_token(molt_core::Secret::new("cf-token"));
        drain(
            Provider::new(config)
                .unwrap()
                .call(call("echo", "hi"))
                .await
                .unwrap(),
        )
        .await;
    }
    let received = fake.state.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    assert!(
        received
            .iter()
            .all(|r| r.gateway_authorization.as_deref() == Some("Bearer cf-token"))
    );
}

#[tokio::test]
async fn the_attempt_and_total_limits_end_streams_and_retries() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let name = provider.name().to_string();
        let provider: Arc<Provider> = Arc::new(provider);
        // The attempt limit passes while the stream stalls: it ends in a timeout error, not a clean end.
        let limited = Retry::new(
            provider.clone(),
            RetryPolicy::default(),
            Timeouts {
                attempt: Some(Duration::from_millis(500)),
                ..Timeouts::default()
            },
        );
        let answer = limited
            .call(call("stall-mid-stream", "one two three"))
            .await
            .unwrap();
        let (events, error) = drain(answer).await;
        assert_eq!(text(&events), "You said: ", "{name}");
        assert!(
            matches!(error, Some(GatewayError::Timeout(TimeoutKind::Attempt))),
            "{name}: {error:?}"
        );
        // The total limit stops retries too.
        let total = Retry::new(
            provider,
            RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            Timeouts {
                total: Some(Duration::from_millis(300)),
                ..Timeouts::default()
            },
        );
        let error = total
            .call(call("slow-first-token", "hi"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, GatewayError::Timeout(TimeoutKind::Total)),
            "{name}: {error:?}"
        );
    }
    assert_eq!(
        fake.state.requests_for("slow-first-token"),
        2,
        "one attempt per API: the total limit ran out during it"
    );
}

#[tokio::test]
async fn images_reach_each_api_in_its_own_form() {
    use base64::Engine;
    let fake = FakeProvider::start().await;
    // A real PNG: the fake, as Anthropic, refuses bytes that are not an image.
    let png = include_bytes!("../../molt-channels/tests/support/files/pixel.png");
    let png = base64::engine::general_purpose::STANDARD.encode(png);
    let data_url = format!("data:image/png;base64,{png}");
    let mut request = call("echo", "");
    request.request.messages = vec![molt_core::message::Message {
        role: molt_core::message::Role::User,
        content: vec![
            molt_core::message::ContentBlock::Text {
                text: "what is this?".into(),
            },
            molt_core::message::ContentBlock::Image {
                url: data_url.clone(),
                media_type: Some("image/png".into()),
            },
            molt_core::message::ContentBlock::Image {
                url: "https://example.com/cat.jpg".into(),
                media_type: None,
            },
        ],
    }];
    for provider in both(&fake).await {
        drain(provider.call(request.clone()).await.unwrap()).await;
    }
    let received = fake.state.received.lock().unwrap().clone();
    let anthropic =
        &received.iter().find(|r| r.api == "anthropic").unwrap().body["messages"][0]["content"];
    assert_eq!(
        anthropic[1]["source"],
        json!({ "type": "base64", "media_type": "image/png", "data": png })
    );
    assert_eq!(
        anthropic[2]["source"],
        json!({ "type": "url", "url": "https://example.com/cat.jpg" })
    );
    let openai =
        &received.iter().find(|r| r.api == "openai").unwrap().body["messages"][0]["content"];
    assert_eq!(
        openai[1],
        json!({ "type": "image_url", "image_url": { "url": data_url } })
    );
    assert_eq!(openai[2]["image_url"]["url"], "https://example.com/cat.jpg");
    // And back: an OpenAI client's image becomes Anthropic's base64 source.
    let parsed = molt_ai_gateway::wire::openai::parse_request(
        br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]}]}"#,
    )
    .unwrap();
    let body = molt_ai_gateway::wire::anthropic::encode_request(&parsed.request, "m", 10).unwrap();
    assert_eq!(
        body["messages"][0]["content"][0]["source"],
        json!({ "type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ" })
    );
}

#[tokio::test]
async fn error_statuses_become_typed_errors_with_retry_after() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let error = provider.call(call("rate-limited", "hi")).await.unwrap_err();
        match &error {
            GatewayError::Upstream {
                status: 429,
                retry_after,
                message,
                ..
            } => {
                assert_eq!(*retry_after, Some(Duration::from_secs(1)));
                assert!(
                    message.contains("rate limit") || message.contains("Rate limit"),
                    "{message}"
                );
            }
            other => panic!("{}: {other:?}", provider.name()),
        }
        assert!(error.is_retryable());
        let overloaded = provider.call(call("overloaded", "hi")).await.unwrap_err();
        assert!(overloaded.is_retryable(), "{overloaded:?}");
    }
    let overloaded = support::anthropic(&fake)
        .call(call("overloaded", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(overloaded, GatewayError::Upstream { status: 529, ref error_type, .. } if error_type == "overloaded_error")
    );
}

#[tokio::test]
async fn a_refused_provider_key_is_the_gateways_problem_not_the_callers() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let mut config = provider.config().clone();
        config.api_key = Some(molt_core::Secret::new("sk-wrong"));
        let provider = Provider::new(config).unwrap();
        let error = provider.call(call("echo", "hi")).await.unwrap_err();
        assert!(
            matches!(error, GatewayError::ProviderAuth { status: 401, .. }),
            "{error:?}"
        );
        // Not retried against the same provider, but another fallback step may answer; the caller sees 502.
        assert!(!error.is_retryable() && error.is_fallback_eligible());
        assert_eq!(error.status(), 502);
        assert!(!error.to_string().contains("sk-"), "{error}");
    }
}

#[tokio::test]
async fn an_error_event_before_any_output_fails_the_call_so_it_can_be_retried() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let error = provider
            .call(call("error-before-output", "hi"))
            .await
            .unwrap_err();
        assert!(error.is_retryable(), "{}: {error:?}", provider.name());
    }
}

#[tokio::test]
async fn an_error_event_after_output_ends_the_stream_with_that_error() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let answer = provider
            .call(call("error-mid-stream", "one two three four"))
            .await
            .unwrap();
        let (events, error) = drain(answer).await;
        assert_eq!(text(&events), "You said: ");
        assert!(
            matches!(error, Some(GatewayError::Upstream { status: 500, .. })),
            "{}: {error:?}",
            provider.name()
        );
        assert!(
            !events.iter().any(|e| matches!(e, ModelEvent::Stop(_))),
            "no clean end"
        );
    }
}

#[tokio::test]
async fn a_connection_cut_mid_stream_is_an_error_not_a_clean_end() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let answer = provider
            .call(call("cut-mid-stream", "one two three four"))
            .await
            .unwrap();
        let (events, error) = drain(answer).await;
        assert_eq!(text(&events), "You said: ");
        assert!(
            matches!(
                error,
                Some(GatewayError::Connection { .. } | GatewayError::Protocol { .. })
            ),
            "{}: {error:?}",
            provider.name()
        );
    }
}

#[tokio::test]
async fn a_slow_first_token_times_out_and_is_retried_then_given_up() {
    let fake = FakeProvider::start().await;
    for provider in both(&fake).await {
        let timeouts = Timeouts {
            first_token: Some(Duration::from_millis(200)),
            ..Timeouts::default()
        };
        let policy = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let name = provider.name().to_string();
        let retry = Retry::new(Arc::new(provider), policy, timeouts);
        let error = retry
            .call(call("slow-first-token", "hi"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, GatewayError::Timeout(TimeoutKind::FirstToken)),
            "{name}: {error:?}"
        );
    }
    // Two APIs, two attempts each.
    assert_eq!(fake.state.requests_for("slow-first-token"), 4);
}

#[tokio::test]
async fn requests_reach_the_provider_in_its_own_shape() {
    let fake = FakeProvider::start().await;
    let mut conversation = call("echo", "");
    conversation.request.system = "Be brief.".into();
    conversation.request.messages = vec![
        molt_core::message::Message::user("weather in Paris?"),
        molt_core::message::Message {
            role: molt_core::message::Role::Assistant,
            content: vec![molt_core::message::ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({ "city": "Paris", "units": { "temp": "C" } }),
            }],
        },
        molt_core::message::Message {
            role: molt_core::message::Role::User,
            content: vec![molt_core::message::ContentBlock::ToolResult {
                tool_use_id: "call_1".into(),
                content: "18 C".into(),
                is_error: false,
            }],
        },
    ];
    conversation.request.tools = vec![molt_core::tool::ToolSpec {
        name: "get_weather".into(),
        description: "Weather".into(),
        input_schema: json!({ "type": "object" }),
    }];
    conversation.request.options.tool_choice = Some(molt_core::model::ToolChoice::Tool {
        name: "get_weather".into(),
    });
    for provider in both(&fake).await {
        drain(provider.call(conversation.clone()).await.unwrap()).await;
    }
    let received = fake.state.received.lock().unwrap().clone();
    let anthropic = &received.iter().find(|r| r.api == "anthropic").unwrap().body;
    assert_eq!(anthropic["system"], "Be brief.");
    assert_eq!(
        anthropic["messages"][1]["content"][0]["input"],
        json!({ "city": "Paris", "units": { "temp": "C" } })
    );
    assert_eq!(
        anthropic["messages"][2]["content"][0]["tool_use_id"],
        "call_1"
    );
    assert_eq!(
        anthropic["tool_choice"],
        json!({ "type": "tool", "name": "get_weather" })
    );
    assert_eq!(anthropic["max_tokens"], 4096);
    let openai = &received.iter().find(|r| r.api == "openai").unwrap().body;
    assert_eq!(
        openai["messages"][0],
        json!({ "role": "system", "content": "Be brief." })
    );
    let arguments: serde_json::Value = serde_json::from_str(
        openai["messages"][2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        arguments,
        json!({ "city": "Paris", "units": { "temp": "C" } })
    );
    assert_eq!(
        openai["messages"][3],
        json!({ "role": "tool", "tool_call_id": "call_1", "content": "18 C" })
    );
    assert_eq!(
        openai["tool_choice"],
        json!({ "type": "function", "function": { "name": "get_weather" } })
    );
    assert_eq!(openai["stream_options"], json!({ "include_usage": true }));
}

#[tokio::test]
async fn api_specific_fields_pass_to_their_own_api_and_are_refused_across() {
    let fake = FakeProvider::start().await;
    let mut request = call("echo", "json please");
    let fields = json!({ "response_format": { "type": "json_object" }, "seed": 7 });
    request.request.options.provider_fields = Some(molt_core::model::ProviderFields {
        api: "openai".into(),
        fields: fields.as_object().unwrap().clone(),
    });
    request.request.options.max_tokens = Some(50);
    drain(support::openai(&fake).call(request.clone()).await.unwrap()).await;
    let body = fake
        .state
        .received
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .body
        .clone();
    assert_eq!(body["response_format"], json!({ "type": "json_object" }));
    assert_eq!(
        (body["seed"].clone(), body["max_tokens"].clone()),
        (json!(7), json!(50))
    );
    let error = support::anthropic(&fake)
        .call(request.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GatewayError::InvalidRequest(message) if message.contains("response_format") && !message.contains("seed")),
        "{error:?}"
    );
    // Sampling-only fields are dropped on the way to the other API.
    request
        .request
        .options
        .provider_fields
        .as_mut()
        .unwrap()
        .fields
        .remove("response_format");
    drain(support::anthropic(&fake).call(request).await.unwrap()).await;
    let body = fake
        .state
        .received
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .body
        .clone();
    assert!(body.get("seed").is_none());
}

#[test]
fn openai_itself_gets_max_completion_tokens_and_compatible_servers_max_tokens() {
    let mut request = molt_core::model::ModelRequest::default();
    request.options.max_tokens = Some(99);
    let current = molt_ai_gateway::wire::openai::encode_request(&request, "gpt-5", true).unwrap();
    assert_eq!(
        (
            current["max_completion_tokens"].clone(),
            current.get("max_tokens")
        ),
        (json!(99), None)
    );
    let compatible =
        molt_ai_gateway::wire::openai::encode_request(&request, "llama", false).unwrap();
    assert_eq!(compatible["max_tokens"], 99);
    assert!(
        molt_ai_gateway::ProviderConfig::openai(molt_core::Secret::new("k")).max_completion_tokens
    );
}

#[tokio::test]
async fn redirects_are_not_followed_so_keys_stay_with_the_provider() {
    let fake = FakeProvider::start().await;
    let error = support::anthropic(&fake)
        .call(call("redirect", "hi"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 307, "{error:?}");
    assert_eq!(
        fake.state
            .redirected
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
