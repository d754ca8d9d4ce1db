//! Anthropic's Messages API (`POST /v1/messages`).

use super::{error_message, parse_json, split_data_url};
use crate::error::GatewayError;
use molt_core::message::{ContentBlock, Message, Role, Usage};
use molt_core::model::{
    CacheBreakpoint, ModelEvent, ModelRequest, ModelResponse, PromptPart, StopReason, ToolChoice,
};
use molt_core::tool::ToolSpec;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// The API version this crate speaks (`anthropic-version`).
pub const API_VERSION: &str = "2023-06-01";

/// A parsed client request: the neutral request and whether a stream was asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedRequest {
    /// The request in `molt-core`'s shape.
    pub request: ModelRequest,
    /// Whether the client asked for server-sent events.
    pub stream: bool,
}

#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    max_tokens: Option<u32>,
    system: Option<TextOrBlocks>,
    messages: Vec<InMessage>,
    #[serde(default)]
    tools: Vec<InTool>,
    tool_choice: Option<InToolChoice>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    #[serde(default)]
    stop_sequences: Vec<String>,
    #[serde(default)]
    stream: bool,
    metadata: Option<InMetadata>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct InMetadata {
    user_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrBlocks {
    Text(String),
    Blocks(Vec<InBlock>),
}

#[derive(Deserialize)]
struct InMessage {
    role: Role,
    content: TextOrBlocks,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InBlock {
    Text {
        text: String,
        cache_control: Option<CacheControl>,
    },
    Image {
        source: ImageSource,
        cache_control: Option<CacheControl>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        cache_control: Option<CacheControl>,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<TextOrBlocks>,
        #[serde(default)]
        is_error: bool,
        cache_control: Option<CacheControl>,
    },
}

impl InBlock {
    fn cache_control(&self) -> Option<&CacheControl> {
        match self {
            InBlock::Text { cache_control, .. }
            | InBlock::Image { cache_control, .. }
            | InBlock::ToolUse { cache_control, .. }
            | InBlock::ToolResult { cache_control, .. } => cache_control.as_ref(),
        }
    }
}

/// A prompt-cache breakpoint as Anthropic writes it (`{"type":"ephemeral","ttl":"1h"}`).
#[derive(Deserialize)]
struct CacheControl {
    ttl: Option<String>,
}

impl CacheControl {
    fn breakpoint(&self, after: PromptPart) -> CacheBreakpoint {
        CacheBreakpoint {
            after,
            ttl: self.ttl.clone(),
        }
    }
}

fn cache_control_to_wire(breakpoint: &CacheBreakpoint) -> Value {
    match &breakpoint.ttl {
        Some(ttl) => json!({ "type": "ephemeral", "ttl": ttl }),
        None => json!({ "type": "ephemeral" }),
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Deserialize)]
struct InTool {
    name: String,
    description: Option<String>,
    input_schema: Option<Value>,
    cache_control: Option<CacheControl>,
}

#[derive(Deserialize)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    disable_parallel_tool_use: Option<bool>,
}

/// Parses a Messages API request body.
pub fn parse_request(body: &[u8]) -> Result<ParsedRequest, GatewayError> {
    let parsed: MessagesRequest = parse_json(body)?;
    let mut breakpoints = Vec::new();
    let system = match parsed.system {
        None => String::new(),
        Some(TextOrBlocks::Text(text)) => text,
        Some(TextOrBlocks::Blocks(blocks)) => {
            if let Some(control) = blocks.iter().rev().find_map(InBlock::cache_control) {
                breakpoints.push(control.breakpoint(PromptPart::System));
            }
            text_of(blocks, "system")?
        }
    };
    let mut messages = Vec::with_capacity(parsed.messages.len());
    for (message_index, message) in parsed.messages.into_iter().enumerate() {
        let content = match message.content {
            TextOrBlocks::Text(text) => vec![ContentBlock::Text { text }],
            TextOrBlocks::Blocks(blocks) => {
                for (block, wire) in blocks.iter().enumerate() {
                    if let Some(control) = wire.cache_control() {
                        let after = PromptPart::Block {
                            message: message_index,
                            block,
                        };
                        breakpoints.push(control.breakpoint(after));
                    }
                }
                blocks
                    .into_iter()
                    .map(block_from_wire)
                    .collect::<Result<_, _>>()?
            }
        };
        messages.push(Message {
            role: message.role,
            content,
        });
    }
    let tools = parsed
        .tools
        .into_iter()
        .enumerate()
        .map(|(index, tool)| {
            if let Some(control) = &tool.cache_control {
                breakpoints.push(control.breakpoint(PromptPart::Tool { index }));
            }
            let input_schema = tool.input_schema.ok_or_else(|| {
                GatewayError::InvalidRequest(format!(
                    "tool {:?}: server tools are not supported; give an input_schema",
                    tool.name
                ))
            })?;
            Ok(ToolSpec {
                name: tool.name,
                description: tool.description.unwrap_or_default(),
                input_schema,
            })
        })
        .collect::<Result<_, GatewayError>>()?;
    let (tool_choice, parallel_tool_calls) = match parsed.tool_choice {
        None => (None, None),
        Some(choice) => {
            let parallel = choice.disable_parallel_tool_use.map(|disable| !disable);
            let choice = match (choice.kind.as_str(), choice.name) {
                ("auto", _) => ToolChoice::Auto,
                ("any", _) => ToolChoice::Any,
                ("none", _) => ToolChoice::None,
                ("tool", Some(name)) => ToolChoice::Tool { name },
                (kind, _) => {
                    return Err(GatewayError::InvalidRequest(format!(
                        "tool_choice: unknown type {kind:?} (or a tool choice without a name)"
                    )));
                }
            };
            (Some(choice), parallel)
        }
    };
    let mut request = ModelRequest {
        system,
        messages,
        tools,
        cache_breakpoints: breakpoints,
        ..ModelRequest::default()
    };
    let options = &mut request.options;
    options.model = Some(parsed.model);
    options.max_tokens = parsed.max_tokens;
    options.temperature = parsed.temperature;
    options.top_p = parsed.top_p;
    options.stop_sequences = parsed.stop_sequences;
    options.tool_choice = tool_choice;
    options.parallel_tool_calls = parallel_tool_calls;
    options.user = parsed.metadata.and_then(|metadata| metadata.user_id);
    if parsed.rest.contains_key("thinking") {
        // Thinking blocks would be dropped from answers and refused in history,
        // which breaks tool use with thinking: refuse it plainly instead.
        return Err(GatewayError::InvalidRequest(
            "thinking: extended thinking is not supported by this gateway yet".into(),
        ));
    }
    options.provider_fields = super::provider_fields(super::ANTHROPIC, parsed.rest);
    Ok(ParsedRequest {
        request,
        stream: parsed.stream,
    })
}

fn text_of(blocks: Vec<InBlock>, place: &str) -> Result<String, GatewayError> {
    let mut text = String::new();
    for block in blocks {
        match block {
            InBlock::Text { text: part, .. } => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&part);
            }
            _ => {
                return Err(GatewayError::InvalidRequest(format!(
                    "{place}: only text blocks are supported here"
                )));
            }
        }
    }
    Ok(text)
}

fn block_from_wire(block: InBlock) -> Result<ContentBlock, GatewayError> {
    Ok(match block {
        InBlock::Text { text, .. } => ContentBlock::Text { text },
        InBlock::Image { source, .. } => match source {
            ImageSource::Base64 { media_type, data } => ContentBlock::Image {
                url: format!("data:{media_type};base64,{data}"),
                media_type: Some(media_type),
            },
            ImageSource::Url { url } => ContentBlock::Image {
                url,
                media_type: None,
            },
        },
        InBlock::ToolUse {
            id, name, input, ..
        } => ContentBlock::ToolUse { id, name, input },
        InBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
            ..
        } => ContentBlock::ToolResult {
            tool_use_id,
            content: match content {
                None => String::new(),
                Some(TextOrBlocks::Text(text)) => text,
                Some(TextOrBlocks::Blocks(blocks)) => text_of(blocks, "tool_result")?,
            },
            is_error,
        },
    })
}

/// Encodes a neutral request as a streaming Messages API body for `model`.
/// Anthropic requires `max_tokens`; `default_max_tokens` fills it when unset.
/// Fails when the request carries OpenAI-only fields that cannot be translated.
pub fn encode_request(
    request: &ModelRequest,
    model: &str,
    default_max_tokens: u32,
) -> Result<Value, GatewayError> {
    let breakpoint = |part: PromptPart| {
        request
            .cache_breakpoints
            .iter()
            .find(|breakpoint| breakpoint.after == part)
            .map(cache_control_to_wire)
    };
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
    let mut last_role = None;
    let empty = [ContentBlock::Text {
        text: String::new(),
    }];
    for (message_index, message) in request.messages.iter().enumerate() {
        // A message without blocks is refused too: it says so in words.
        let content = match message.content.as_slice() {
            [] => &empty[..],
            content => content,
        };
        let blocks = content.iter().enumerate().map(|(block, content)| {
            let mut wire = block_to_wire(content);
            let part = PromptPart::Block {
                message: message_index,
                block,
            };
            if let Some(control) = breakpoint(part) {
                wire["cache_control"] = control;
            }
            wire
        });
        if last_role == Some(message.role)
            && let Some(Value::Array(content)) =
                messages.last_mut().and_then(|m| m.get_mut("content"))
        {
            content.extend(blocks);
            continue;
        }
        messages.push(json!({ "role": message.role, "content": blocks.collect::<Vec<_>>() }));
        last_role = Some(message.role);
    }
    let options = &request.options;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(options.max_tokens.unwrap_or(default_max_tokens)),
    );
    if !request.system.is_empty() {
        let system = match breakpoint(PromptPart::System) {
            Some(control) => {
                json!([{ "type": "text", "text": request.system, "cache_control": control }])
            }
            None => json!(request.system),
        };
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .enumerate()
            .map(|(index, tool)| {
                let mut wire = json!({ "name": tool.name, "description": tool.description, "input_schema": tool.input_schema });
                if let Some(control) = breakpoint(PromptPart::Tool { index }) {
                    wire["cache_control"] = control;
                }
                wire
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &options.tool_choice {
        None if options.parallel_tool_calls == Some(false) => Some(json!({ "type": "auto" })),
        None => None,
        Some(ToolChoice::Auto) => Some(json!({ "type": "auto" })),
        Some(ToolChoice::Any) => Some(json!({ "type": "any" })),
        Some(ToolChoice::None) => Some(json!({ "type": "none" })),
        Some(ToolChoice::Tool { name }) => Some(json!({ "type": "tool", "name": name })),
    };
    if let (Some(choice), Some(false)) = (choice.as_mut(), options.parallel_tool_calls)
        && choice["type"] != "none"
    {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
    super::insert_sampling(&mut body, options);
    if !options.stop_sequences.is_empty() {
        body.insert("stop_sequences".into(), json!(options.stop_sequences));
    }
    if let Some(user) = &options.user {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    body.insert("stream".into(), json!(true));
    super::merge_provider_fields(&mut body, request, super::ANTHROPIC)?;
    Ok(Value::Object(body))
}

fn block_to_wire(block: &ContentBlock) -> Value {
    match block {
        // Anthropic refuses blank text blocks: say so in words, keeping block positions.
        ContentBlock::Text { text } if text.trim().is_empty() => {
            json!({ "type": "text", "text": molt_core::message::EMPTY_MESSAGE })
        }
        ContentBlock::Text { text } => json!({ "type": "text", "text": text }),
        ContentBlock::Image { url, media_type } => match split_data_url(url) {
            Some((inline_type, data)) => json!({
                "type": "image",
                "source": { "type": "base64", "media_type": media_type.as_deref().unwrap_or(inline_type), "data": data }
            }),
            None => json!({ "type": "image", "source": { "type": "url", "url": url } }),
        },
        ContentBlock::ToolUse { id, name, input } => {
            json!({ "type": "tool_use", "id": id, "name": name, "input": input })
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut result =
                json!({ "type": "tool_result", "tool_use_id": tool_use_id, "content": content });
            if *is_error {
                result["is_error"] = json!(true);
            }
            result
        }
    }
}

/// The stop reason as Anthropic spells it.
pub fn stop_reason_name(reason: &StopReason) -> &str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::Other(other) if other == "content_filter" => "refusal",
        StopReason::Other(other) => other,
    }
}

fn stop_reason_from(name: &str) -> StopReason {
    match name {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        other => StopReason::Other(other.to_string()),
    }
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    fn merge_into(&self, usage: &mut Usage) {
        let fields = [
            (self.input_tokens, &mut usage.input_tokens),
            (self.output_tokens, &mut usage.output_tokens),
            (self.cache_read_input_tokens, &mut usage.cache_read_tokens),
            (
                self.cache_creation_input_tokens,
                &mut usage.cache_write_tokens,
            ),
        ];
        for (value, slot) in fields {
            if let Some(value) = value {
                *slot = value;
            }
        }
    }
}

fn usage_to_wire(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: DeltaKind,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeltaKind {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// The HTTP status Anthropic uses for an error type.
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The Anthropic error type for an HTTP status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

/// Reads an error response (`{"type":"error","error":{...}}`) from `provider`.
pub fn parse_error(provider: &str, status: u16, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    let (error_type, message) = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => (envelope.error.kind, envelope.error.message),
        Err(_) => (
            error_type_for_status(status).to_string(),
            String::from_utf8_lossy(body).chars().take(500).collect(),
        ),
    };
    GatewayError::Upstream {
        provider: provider.to_string(),
        status,
        error_type,
        message,
        retry_after: None,
    }
}

/// An error body in Anthropic's shape.
pub fn error_body(error: &GatewayError) -> Value {
    json!({
        "type": "error",
        "error": { "type": error_type_for_status(error.status()), "message": error_message(error) }
    })
}

/// Turns a Messages API event stream into model events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    provider: String,
    tool_blocks: HashMap<usize, String>,
    usage: Usage,
    stop: Option<StopReason>,
    finished: bool,
}

impl StreamDecoder {
    /// A decoder for a stream from `provider`.
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            ..Self::default()
        }
    }

    fn protocol(&self, message: String) -> GatewayError {
        GatewayError::Protocol {
            provider: self.provider.clone(),
            message,
        }
    }

    /// Takes one event's data; unknown events (and `ping`) yield nothing.
    pub fn push(&mut self, data: &str, out: &mut Vec<ModelEvent>) -> Result<(), GatewayError> {
        let event: StreamEvent = serde_json::from_str(data)
            .map_err(|err| self.protocol(format!("unreadable event ({err})")))?;
        match event {
            StreamEvent::MessageStart { message } => {
                message.usage.merge_into(&mut self.usage);
                out.push(ModelEvent::Usage(self.usage));
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block: StartBlock::ToolUse { id, name },
            } => {
                self.tool_blocks.insert(index, id.clone());
                out.push(ModelEvent::ToolCallStart { id, name });
            }
            StreamEvent::ContentBlockStart { .. } => {}
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                DeltaKind::TextDelta { text } => out.push(ModelEvent::TextDelta(text)),
                DeltaKind::InputJsonDelta { partial_json } => {
                    let id = self.tool_blocks.get(&index).ok_or_else(|| {
                        self.protocol(format!(
                            "input_json_delta for block {index}, which is not a tool call"
                        ))
                    })?;
                    out.push(ModelEvent::ToolCallDelta {
                        id: id.clone(),
                        arguments: partial_json,
                    });
                }
                DeltaKind::Other => {}
            },
            StreamEvent::ContentBlockStop { index } => {
                if let Some(id) = self.tool_blocks.remove(&index) {
                    out.push(ModelEvent::ToolCallEnd { id });
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    usage.merge_into(&mut self.usage);
                    out.push(ModelEvent::Usage(self.usage));
                }
                if let Some(reason) = delta.stop_reason {
                    self.stop = Some(stop_reason_from(&reason));
                }
            }
            StreamEvent::MessageStop => {
                let reason = self.stop.take().unwrap_or(StopReason::EndTurn);
                self.finished = true;
                out.push(ModelEvent::Stop(reason));
            }
            StreamEvent::Error { error } => {
                return Err(GatewayError::Upstream {
                    provider: self.provider.clone(),
                    status: status_for_error_type(&error.kind),
                    error_type: error.kind,
                    message: error.message,
                    retry_after: None,
                });
            }
            StreamEvent::Other => {}
        }
        Ok(())
    }

    /// Checks the stream ended properly (with `message_stop`).
    pub fn finish(&self) -> Result<(), GatewayError> {
        if self.finished {
            Ok(())
        } else {
            Err(self.protocol("the stream ended before message_stop".into()))
        }
    }
}

/// Turns model events into a Messages API event stream (event name, JSON data).
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    started: bool,
    open_block: Option<(usize, bool)>,
    next_index: usize,
    tool_blocks: HashMap<String, usize>,
    usage: Usage,
}

impl StreamEncoder {
    /// An encoder for message `id` answered by `model`.
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            started: false,
            open_block: None,
            next_index: 0,
            tool_blocks: HashMap::new(),
            usage: Usage::default(),
        }
    }

    fn start(&mut self, out: &mut Vec<(&'static str, String)>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "type": "message_start",
            "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage_to_wire(&self.usage),
            }
        });
        out.push(("message_start", message.to_string()));
    }

    fn close_block(&mut self, out: &mut Vec<(&'static str, String)>) {
        if let Some((index, _)) = self.open_block.take() {
            out.push((
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": index }).to_string(),
            ));
        }
    }

    fn open_block(
        &mut self,
        block: Value,
        is_text: bool,
        out: &mut Vec<(&'static str, String)>,
    ) -> usize {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open_block = Some((index, is_text));
        out.push((
            "content_block_start",
            json!({ "type": "content_block_start", "index": index, "content_block": block })
                .to_string(),
        ));
        index
    }

    /// Encodes one item; an error becomes an `error` event.
    pub fn encode(
        &mut self,
        item: &Result<ModelEvent, GatewayError>,
        out: &mut Vec<(&'static str, String)>,
    ) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                self.start(out);
                out.push(("error", error_body(error).to_string()));
                return;
            }
        };
        if let ModelEvent::Usage(usage) = event {
            self.usage = *usage;
            if !self.started {
                self.start(out);
            }
            return;
        }
        self.start(out);
        match event {
            ModelEvent::TextDelta(text) => {
                let index = match self.open_block {
                    Some((index, true)) => index,
                    _ => self.open_block(json!({ "type": "text", "text": "" }), true, out),
                };
                let delta = json!({ "type": "content_block_delta", "index": index, "delta": { "type": "text_delta", "text": text } });
                out.push(("content_block_delta", delta.to_string()));
            }
            ModelEvent::ToolCallStart { id, name } => {
                let block = json!({ "type": "tool_use", "id": id, "name": name, "input": {} });
                let index = self.open_block(block, false, out);
                self.tool_blocks.insert(id.clone(), index);
            }
            // Each call's arguments go to its own block, even if another one opened since.
            ModelEvent::ToolCallDelta { id, arguments } => {
                if let Some(index) = self.tool_blocks.get(id) {
                    let delta = json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": arguments } });
                    out.push(("content_block_delta", delta.to_string()));
                }
            }
            ModelEvent::ToolCallEnd { id } => {
                if self.open_block.map(|(index, _)| index) == self.tool_blocks.get(id).copied() {
                    self.close_block(out);
                }
            }
            ModelEvent::Stop(reason) => {
                self.close_block(out);
                let delta = json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": stop_reason_name(reason), "stop_sequence": null },
                    "usage": usage_to_wire(&self.usage),
                });
                out.push(("message_delta", delta.to_string()));
                out.push((
                    "message_stop",
                    json!({ "type": "message_stop" }).to_string(),
                ));
            }
            ModelEvent::Usage(_) => {}
        }
    }
}

/// A complete (non-streamed) Messages API response.
pub fn encode_response(response: &ModelResponse, id: &str, model: &str) -> Value {
    let content: Vec<Value> = response
        .message
        .content
        .iter()
        .filter(|block| {
            matches!(
                block,
                ContentBlock::Text { .. } | ContentBlock::ToolUse { .. }
            )
        })
        .map(block_to_wire)
        .collect();
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": stop_reason_name(&response.stop_reason),
        "stop_sequence": null,
        "usage": usage_to_wire(&response.usage),
    })
}
