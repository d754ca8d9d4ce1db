//! OpenAI's Chat Completions API (`POST /v1/chat/completions`), also spoken by
//! OpenAI-compatible servers (Groq, Mistral, OpenRouter, Ollama, vLLM, Workers AI).

use super::{error_message, parse_json};
use crate::error::GatewayError;
use molt_core::message::{ContentBlock, Message, Role, Usage};
use molt_core::model::{ModelEvent, ModelRequest, ModelResponse, StopReason, ToolChoice};
use molt_core::tool::ToolSpec;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A parsed client request: the neutral request and how to stream it back.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedRequest {
    /// The request in `molt-core`'s shape.
    pub request: ModelRequest,
    /// Whether the client asked for server-sent events.
    pub stream: bool,
    /// Whether the client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<ChatToolChoice>,
    parallel_tool_calls: Option<bool>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<OneOrMany>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    user: Option<String>,
    n: Option<u32>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum ChatMessage {
    System {
        content: ChatContent,
    },
    Developer {
        content: ChatContent,
    },
    User {
        content: ChatContent,
    },
    Assistant {
        content: Option<ChatContent>,
        tool_calls: Option<Vec<InToolCall>>,
    },
    Tool {
        content: ChatContent,
        tool_call_id: String,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ChatContent {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct InToolCall {
    id: String,
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct ChatTool {
    function: FunctionDef,
}

#[derive(Deserialize)]
struct FunctionDef {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ChatToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Deserialize)]
struct NamedFunction {
    name: String,
}

fn blocks_of(content: ChatContent) -> Vec<ContentBlock> {
    match content {
        ChatContent::Text(text) => vec![ContentBlock::Text { text }],
        ChatContent::Parts(parts) => parts
            .into_iter()
            .map(|part| match part {
                Part::Text { text } => ContentBlock::Text { text },
                Part::ImageUrl { image_url } => ContentBlock::Image {
                    media_type: super::split_data_url(&image_url.url)
                        .map(|(kind, _)| kind.to_string()),
                    url: image_url.url,
                },
            })
            .collect(),
    }
}

fn text_of(content: ChatContent) -> String {
    blocks_of(content)
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Appends `blocks` to the conversation, merging them into the last message when it has the same role.
fn push_blocks(messages: &mut Vec<Message>, role: Role, blocks: Vec<ContentBlock>) {
    match messages.last_mut() {
        Some(last) if last.role == role && role == Role::User => last.content.extend(blocks),
        _ => messages.push(Message {
            role,
            content: blocks,
        }),
    }
}

/// Parses a Chat Completions request body.
pub fn parse_request(body: &[u8]) -> Result<ParsedRequest, GatewayError> {
    let parsed: ChatRequest = parse_json(body)?;
    if parsed.n.is_some_and(|n| n != 1) {
        return Err(GatewayError::InvalidRequest(
            "n: only one choice is supported".into(),
        ));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::with_capacity(parsed.messages.len());
    for message in parsed.messages {
        match message {
            ChatMessage::System { content } | ChatMessage::Developer { content } => {
                system.push(text_of(content))
            }
            ChatMessage::User { content } => {
                push_blocks(&mut messages, Role::User, blocks_of(content))
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = content.map(blocks_of).unwrap_or_default();
                blocks.retain(
                    |block| !matches!(block, ContentBlock::Text { text } if text.is_empty()),
                );
                for call in tool_calls.unwrap_or_default() {
                    let arguments = call.function.arguments.trim();
                    let input = if arguments.is_empty() {
                        Value::Object(Map::new())
                    } else {
                        serde_json::from_str(arguments).map_err(|err| {
                            GatewayError::InvalidRequest(format!(
                                "tool call {}: arguments are not JSON ({err})",
                                call.id
                            ))
                        })?
                    };
                    blocks.push(ContentBlock::ToolUse {
                        id: call.id,
                        name: call.function.name,
                        input,
                    });
                }
                push_blocks(&mut messages, Role::Assistant, blocks);
            }
            ChatMessage::Tool {
                content,
                tool_call_id,
            } => push_blocks(
                &mut messages,
                Role::User,
                vec![ContentBlock::ToolResult {
                    tool_use_id: tool_call_id,
                    content: text_of(content),
                    is_error: false,
                }],
            ),
        }
    }
    let tools = parsed
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|tool| ToolSpec {
            name: tool.function.name,
            description: tool.function.description.unwrap_or_default(),
            input_schema: tool
                .function
                .parameters
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
        })
        .collect();
    let tool_choice = match parsed.tool_choice {
        None => None,
        Some(ChatToolChoice::Mode(mode)) => Some(match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Any,
            "none" => ToolChoice::None,
            other => {
                return Err(GatewayError::InvalidRequest(format!(
                    "tool_choice: unknown mode {other:?}"
                )));
            }
        }),
        Some(ChatToolChoice::Named { function }) => Some(ToolChoice::Tool {
            name: function.name,
        }),
    };
    let mut request = ModelRequest {
        system: system.join("\n\n"),
        messages,
        tools,
        ..ModelRequest::default()
    };
    let options = &mut request.options;
    options.model = Some(parsed.model);
    options.max_tokens = parsed.max_completion_tokens.or(parsed.max_tokens);
    options.temperature = parsed.temperature;
    options.top_p = parsed.top_p;
    options.stop_sequences = match parsed.stop {
        None => Vec::new(),
        Some(OneOrMany::One(stop)) => vec![stop],
        Some(OneOrMany::Many(stops)) => stops,
    };
    options.tool_choice = tool_choice;
    options.parallel_tool_calls = parsed.parallel_tool_calls;
    options.user = parsed.user;
    options.provider_fields = super::provider_fields(super::OPENAI, parsed.rest);
    Ok(ParsedRequest {
        request,
        stream: parsed.stream,
        include_usage: parsed
            .stream_options
            .is_some_and(|options| options.include_usage),
    })
}

/// Encodes a neutral request as a streaming Chat Completions body for `model`.
/// `max_completion_tokens` names the output limit as OpenAI now does (its
/// reasoning models refuse `max_tokens`); compatible servers expect `max_tokens`.
/// Fails when the request carries Anthropic-only fields that cannot be translated.
pub fn encode_request(
    request: &ModelRequest,
    model: &str,
    max_completion_tokens: bool,
) -> Result<Value, GatewayError> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({ "role": "system", "content": request.system }));
    }
    for message in &request.messages {
        match message.role {
            Role::User => {
                let mut parts = Vec::new();
                for block in &message.content {
                    match block {
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => {
                            let content = if *is_error {
                                format!("Error: {content}")
                            } else {
                                content.clone()
                            };
                            messages.push(json!({ "role": "tool", "tool_call_id": tool_use_id, "content": content }));
                        }
                        ContentBlock::Text { text } => {
                            parts.push(json!({ "type": "text", "text": text }))
                        }
                        ContentBlock::Image { url, .. } => {
                            parts.push(json!({ "type": "image_url", "image_url": { "url": url } }))
                        }
                        ContentBlock::ToolUse { .. } => {}
                    }
                }
                match parts.as_slice() {
                    [] => {}
                    [only] if only["type"] == "text" => {
                        messages.push(json!({ "role": "user", "content": only["text"] }))
                    }
                    _ => messages.push(json!({ "role": "user", "content": parts })),
                }
            }
            Role::Assistant => {
                let text = message.text();
                let calls: Vec<Value> = message
                    .tool_uses()
                    .map(|(id, name, input)| {
                        json!({ "id": id, "type": "function", "function": { "name": name, "arguments": input.to_string() } })
                    })
                    .collect();
                let mut turn = json!({ "role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) } });
                if !calls.is_empty() {
                    turn["tool_calls"] = Value::Array(calls);
                }
                messages.push(turn);
            }
        }
    }
    let options = &request.options;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({ "type": "function", "function": { "name": tool.name, "description": tool.description, "parameters": tool.input_schema } })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(parallel) = options.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }
    if let Some(choice) = &options.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Any => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool { name } => {
                json!({ "type": "function", "function": { "name": name } })
            }
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(max_tokens) = options.max_tokens {
        let field = if max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(field.into(), json!(max_tokens));
    }
    super::insert_sampling(&mut body, options);
    if !options.stop_sequences.is_empty() {
        body.insert("stop".into(), json!(options.stop_sequences));
    }
    if let Some(user) = &options.user {
        body.insert("user".into(), json!(user));
    }
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    super::merge_provider_fields(&mut body, request, super::OPENAI)?;
    Ok(Value::Object(body))
}

/// The finish reason as OpenAI spells it.
pub fn finish_reason_name(reason: &StopReason) -> &str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ToolUse => "tool_calls",
        StopReason::MaxTokens => "length",
        StopReason::Other(other) if other == "refusal" => "content_filter",
        StopReason::Other(other) => other,
    }
}

fn stop_reason_from(name: &str) -> StopReason {
    match name {
        "stop" => StopReason::EndTurn,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "length" => StopReason::MaxTokens,
        other => StopReason::Other(other.to_string()),
    }
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

impl WireUsage {
    /// OpenAI's `prompt_tokens` includes cached tokens; ours does not.
    fn to_usage(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0);
        Usage {
            input_tokens: self.prompt_tokens.saturating_sub(cached),
            output_tokens: self.completion_tokens,
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        }
    }
}

/// Usage in OpenAI's shape: `prompt_tokens` counts every input token, cached or not.
fn usage_to_wire(usage: &Usage) -> Value {
    let prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": { "cached_tokens": usage.cache_read_tokens },
    })
}

#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<ChunkChoice>>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<usize>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<Value>,
}

impl WireError {
    fn into_error(self, provider: &str, status: u16) -> GatewayError {
        let code = match &self.code {
            Some(Value::String(code)) => Some(code.as_str()),
            _ => None,
        };
        let error_type = code
            .or(self.kind.as_deref())
            .unwrap_or("api_error")
            .to_string();
        GatewayError::Upstream {
            provider: provider.to_string(),
            status,
            error_type,
            message: self.message,
            retry_after: None,
        }
    }
}

/// Reads an error response (`{"error":{"message","type","param","code"}}`) from `provider`.
pub fn parse_error(provider: &str, status: u16, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    struct Envelope {
        error: WireError,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope.error.into_error(provider, status),
        Err(_) => GatewayError::Upstream {
            provider: provider.to_string(),
            status,
            error_type: error_type_for_status(status).to_string(),
            message: String::from_utf8_lossy(body).chars().take(500).collect(),
            retry_after: None,
        },
    }
}

/// The OpenAI error type for an HTTP status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    }
}

fn error_code(error: &GatewayError) -> Value {
    match error {
        GatewayError::UnknownModel(_) => json!("model_not_found"),
        GatewayError::RateLimited { .. } => json!("rate_limit_exceeded"),
        GatewayError::BudgetExceeded { .. } => json!("insufficient_quota"),
        GatewayError::Timeout(_) => json!("timeout"),
        GatewayError::Upstream { error_type, .. } => json!(error_type),
        _ => Value::Null,
    }
}

/// An error body in OpenAI's shape.
pub fn error_body(error: &GatewayError) -> Value {
    json!({
        "error": {
            "message": error_message(error),
            "type": error_type_for_status(error.status()),
            "param": null,
            "code": error_code(error),
        }
    })
}

/// Turns a Chat Completions chunk stream into model events.
///
/// Tool calls are told apart by `index`, and also by `id`: some compatible
/// servers number every call 0 (or omit the index), so a new id starts a new call.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    provider: String,
    /// The current call id at each index.
    calls: Vec<(usize, String)>,
    open_call: Option<String>,
    calls_started: usize,
    refused: bool,
    finish: Option<String>,
    done: bool,
}

impl StreamDecoder {
    /// A decoder for a stream from `provider`.
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            ..Self::default()
        }
    }

    fn close_call(&mut self, out: &mut Vec<ModelEvent>) {
        if let Some(id) = self.open_call.take() {
            out.push(ModelEvent::ToolCallEnd { id });
        }
    }

    fn tool_call(&mut self, position: usize, call: ToolCallDelta, out: &mut Vec<ModelEvent>) {
        let index = call.index.unwrap_or(position);
        let known = self
            .calls
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, id)| id.clone());
        let new_id = call.id.filter(|id| !id.is_empty());
        let (name, arguments) = match call.function {
            Some(function) => (function.name, function.arguments),
            None => (None, None),
        };
        let id = match (known, new_id) {
            (Some(known), Some(id)) if known != id => self.start_call(index, id, name, out),
            (Some(known), _) => known,
            (None, id) => {
                let id = id.unwrap_or_else(|| format!("call_{}", self.calls_started));
                self.start_call(index, id, name, out)
            }
        };
        if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
            out.push(ModelEvent::ToolCallDelta { id, arguments });
        }
    }

    fn start_call(
        &mut self,
        index: usize,
        id: String,
        name: Option<String>,
        out: &mut Vec<ModelEvent>,
    ) -> String {
        self.close_call(out);
        self.calls.retain(|(i, _)| *i != index);
        self.calls.push((index, id.clone()));
        self.calls_started += 1;
        self.open_call = Some(id.clone());
        out.push(ModelEvent::ToolCallStart {
            id: id.clone(),
            name: name.unwrap_or_default(),
        });
        id
    }

    /// Takes one chunk's data (or `[DONE]`).
    pub fn push(&mut self, data: &str, out: &mut Vec<ModelEvent>) -> Result<(), GatewayError> {
        if data.trim() == "[DONE]" {
            return self.end(out);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|err| GatewayError::Protocol {
            provider: self.provider.clone(),
            message: format!("unreadable chunk ({err})"),
        })?;
        if let Some(error) = chunk.error {
            let status = match error.kind.as_deref() {
                Some("rate_limit_error" | "tokens" | "requests") => 429,
                Some("invalid_request_error") => 400,
                _ => 500,
            };
            return Err(error.into_error(&self.provider, status));
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                    self.close_call(out);
                    out.push(ModelEvent::TextDelta(text));
                }
                // A refusal is text the caller should see, and it ends as one.
                if let Some(text) = delta.refusal.filter(|text| !text.is_empty()) {
                    self.refused = true;
                    out.push(ModelEvent::TextDelta(text));
                }
                for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    self.tool_call(position, call, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.close_call(out);
                self.finish = Some(reason);
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(ModelEvent::Usage(usage.to_usage()));
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), GatewayError> {
        if self.done {
            return Ok(());
        }
        self.close_call(out);
        let reason = self.finish.take().ok_or_else(|| GatewayError::Protocol {
            provider: self.provider.clone(),
            message: "the stream ended without a finish_reason".into(),
        })?;
        self.done = true;
        // Some servers finish tool calls with "stop"; the caller still has to run them.
        let stop = match stop_reason_from(&reason) {
            StopReason::EndTurn if self.refused => StopReason::Other("refusal".into()),
            StopReason::EndTurn if self.calls_started > 0 => StopReason::ToolUse,
            other => other,
        };
        out.push(ModelEvent::Stop(stop));
        Ok(())
    }

    /// Ends the stream: servers that omit `[DONE]` after a finish reason are tolerated.
    pub fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), GatewayError> {
        self.end(out)
    }
}

/// Turns model events into Chat Completions chunks (JSON data lines; `[DONE]` last).
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    /// Each call's id, and whether any of its arguments were sent.
    tool_indexes: Vec<(String, bool)>,
    usage: Usage,
}

impl StreamEncoder {
    /// An encoder for completion `id` by `model`, created at `created` (Unix seconds).
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        include_usage: bool,
    ) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            started: false,
            tool_indexes: Vec::new(),
            usage: Usage::default(),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> String {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        })
        .to_string()
    }

    fn arguments_chunk(&self, index: usize, arguments: &str) -> String {
        let call = json!({ "index": index, "function": { "arguments": arguments } });
        self.chunk(json!({ "tool_calls": [call] }), None)
    }

    /// A call that got no arguments at all gets `{}`, as OpenAI sends for a
    /// tool without parameters (an empty string is not JSON).
    fn close_arguments(&mut self, index: usize, out: &mut Vec<String>) {
        if !self.tool_indexes[index].1 {
            self.tool_indexes[index].1 = true;
            out.push(self.arguments_chunk(index, "{}"));
        }
    }

    /// Encodes one item; an error becomes an `{"error":...}` chunk.
    pub fn encode(&mut self, item: &Result<ModelEvent, GatewayError>, out: &mut Vec<String>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                out.push(error_body(error).to_string());
                return;
            }
        };
        if !self.started && !matches!(event, ModelEvent::Usage(_)) {
            self.started = true;
            out.push(self.chunk(json!({ "role": "assistant", "content": "" }), None));
        }
        match event {
            ModelEvent::TextDelta(text) => out.push(self.chunk(json!({ "content": text }), None)),
            ModelEvent::ToolCallStart { id, name } => {
                let index = self.tool_indexes.len();
                self.tool_indexes.push((id.clone(), false));
                let call = json!({ "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": "" } });
                out.push(self.chunk(json!({ "tool_calls": [call] }), None));
            }
            ModelEvent::ToolCallDelta { id, arguments } => {
                if let Some(index) = self.tool_indexes.iter().position(|(known, _)| known == id) {
                    self.tool_indexes[index].1 |= !arguments.is_empty();
                    out.push(self.arguments_chunk(index, arguments));
                }
            }
            ModelEvent::ToolCallEnd { id } => {
                if let Some(index) = self.tool_indexes.iter().position(|(known, _)| known == id) {
                    self.close_arguments(index, out);
                }
            }
            ModelEvent::Usage(usage) => self.usage = *usage,
            ModelEvent::Stop(reason) => {
                for index in 0..self.tool_indexes.len() {
                    self.close_arguments(index, out);
                }
                out.push(self.chunk(json!({}), Some(finish_reason_name(reason))));
                if self.include_usage {
                    let usage = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                        "choices": [], "usage": usage_to_wire(&self.usage),
                    });
                    out.push(usage.to_string());
                }
                out.push("[DONE]".into());
            }
        }
    }
}

/// A complete (non-streamed) Chat Completions response.
pub fn encode_response(response: &ModelResponse, id: &str, model: &str, created: u64) -> Value {
    let text = response.message.text();
    let calls: Vec<Value> = response
        .message
        .tool_uses()
        .map(|(id, name, input)| {
            json!({ "id": id, "type": "function", "function": { "name": name, "arguments": input.to_string() } })
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason_name(&response.stop_reason) }],
        "usage": usage_to_wire(&response.usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&str]) -> Result<Vec<ModelEvent>, GatewayError> {
        let mut decoder = StreamDecoder::new("test");
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk, &mut out)?;
        }
        decoder.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn usage_on_the_finish_chunk_counts_as_much_as_usage_in_its_own_chunk() {
        let on_finish = decode(&[
            r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":10}}}"#,
            "[DONE]",
        ])
        .unwrap();
        let separate = decode(&[
            r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":10}}}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(on_finish, separate);
        let usage = Usage {
            input_tokens: 20,
            output_tokens: 2,
            cache_read_tokens: 10,
            cache_write_tokens: 0,
        };
        assert!(
            on_finish.contains(&ModelEvent::Usage(usage)),
            "{on_finish:?}"
        );
        assert_eq!(
            on_finish.last(),
            Some(&ModelEvent::Stop(StopReason::EndTurn))
        );
    }

    #[test]
    fn a_stream_without_a_finish_reason_is_an_error_and_a_missing_done_is_tolerated() {
        assert!(decode(&[r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#]).is_err());
        let events = decode(&[
            r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"length"}]}"#,
        ])
        .unwrap();
        assert_eq!(
            events.last(),
            Some(&ModelEvent::Stop(StopReason::MaxTokens))
        );
    }

    #[test]
    fn a_refusal_is_shown_and_ends_as_one() {
        let events = decode(&[
            r#"{"choices":[{"index":0,"delta":{"refusal":"I can't help with that."},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ])
        .unwrap();
        assert_eq!(
            events[0],
            ModelEvent::TextDelta("I can't help with that.".into())
        );
        assert_eq!(
            events.last(),
            Some(&ModelEvent::Stop(StopReason::Other("refusal".into())))
        );
    }

    #[test]
    fn a_tool_call_without_arguments_streams_an_empty_object() {
        let mut encoder = StreamEncoder::new("id", "m", 0, false);
        let mut out = Vec::new();
        for event in [
            ModelEvent::ToolCallStart {
                id: "t".into(),
                name: "now".into(),
            },
            ModelEvent::ToolCallEnd { id: "t".into() },
            ModelEvent::Stop(StopReason::ToolUse),
        ] {
            encoder.encode(&Ok(event), &mut out);
        }
        let arguments: String = out
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(arguments, "{}");
    }

    #[test]
    fn tool_calls_without_an_index_are_numbered_by_position() {
        let events = decode(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}},{"id":"b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap();
        let starts: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, ModelEvent::ToolCallStart { .. }))
            .collect();
        assert_eq!(starts.len(), 2);
    }
}
