//! Anthropic Messages API.
//!
//! `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`; the
//! system prompt is a top-level field; messages hold content blocks (`text`,
//! `tool_use`, `tool_result`) and must alternate roles, so consecutive turns of
//! one role are merged; `max_tokens` is required. The API has no JSON mode: a
//! JSON-only instruction is appended to the system prompt instead.
//!
//! Streaming events: `message_start` (input tokens), `content_block_start`,
//! `content_block_delta` (`text_delta`, `input_json_delta`), `content_block_stop`,
//! `message_delta` (stop reason, cumulative token counts), `message_stop`, `ping`, `error`.
//!
//! Token counts: Anthropic's `input_tokens` are only the prompt tokens after
//! the last cache breakpoint; `cache_read_input_tokens` and
//! `cache_creation_input_tokens` come apart from it, so the three are added
//! up into [`Usage::input_tokens`]. Thinking is billed inside `output_tokens`
//! and not counted apart, so `reasoning_tokens` stays 0.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::transport::{
    HttpCall, StreamAssembler, StreamStep, WireFormat, build_client, normalize_base_url,
    parse_body, parse_tool_arguments, push_turn,
};
use super::{LlmError, LlmRequest, LlmResponse, Message, TokenSink, ToolCall, Usage};

/// The vendor's URL, used when `llm.base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version this implementation speaks.
pub const API_VERSION: &str = "2023-06-01";
/// Added to the system prompt when the request asks for JSON output.
const JSON_INSTRUCTION: &str = "Reply with a single JSON object and nothing else.";

pub struct AnthropicProvider {
    client: reqwest::Client,
    /// Without the trailing slash and without `/v1`.
    base_url: String,
    api_key: String,
}

impl AnthropicProvider {
    pub fn new(api_key: String, base_url: Option<&str>) -> Result<Self, LlmError> {
        Ok(Self {
            client: build_client()?,
            base_url: normalize_base_url("anthropic", base_url.unwrap_or(DEFAULT_BASE_URL))?,
            api_key,
        })
    }
}

impl WireFormat for AnthropicProvider {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn provider(&self) -> &str {
        "anthropic"
    }

    fn api_key(&self) -> Option<&str> {
        Some(&self.api_key)
    }

    fn prepare(&self, request: &LlmRequest, stream: bool) -> Result<HttpCall, LlmError> {
        let mut turns = Vec::new();
        for message in &request.messages {
            match message {
                Message::User(text) => {
                    push_turn(
                        &mut turns,
                        "user",
                        "content",
                        json!({"type": "text", "text": text}),
                    );
                }
                Message::Assistant { text, tool_calls } => {
                    // The API refuses a text block without visible text; a
                    // turn with nothing else is left out (the user turns
                    // around it merge).
                    if !text.trim().is_empty() {
                        push_turn(
                            &mut turns,
                            "assistant",
                            "content",
                            json!({"type": "text", "text": text}),
                        );
                    }
                    for call in tool_calls {
                        push_turn(
                            &mut turns,
                            "assistant",
                            "content",
                            json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}),
                        );
                    }
                }
                Message::ToolResult {
                    call_id,
                    content,
                    is_error,
                    ..
                } => {
                    let mut result =
                        json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
                    if *is_error {
                        result["is_error"] = json!(true);
                    }
                    push_turn(&mut turns, "user", "content", result);
                }
            }
        }
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens,
        });
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        body["messages"] = json!(turns);
        let system = match (&request.system, request.json_output) {
            (Some(system), true) => Some(format!("{system}\n\n{JSON_INSTRUCTION}")),
            (Some(system), false) => Some(system.clone()),
            (None, true) => Some(JSON_INSTRUCTION.to_string()),
            (None, false) => None,
        };
        if let Some(system) = system {
            body["system"] = json!(system);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
        }
        if stream {
            body["stream"] = json!(true);
        }
        Ok(HttpCall {
            url: format!("{}/v1/messages", self.base_url),
            headers: vec![
                ("x-api-key", self.api_key.clone()),
                ("anthropic-version", API_VERSION.to_string()),
            ],
            body,
        })
    }

    fn parse_reply(&self, body: &str, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let reply: MessageReply = parse_body("anthropic", body)?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in reply.content {
            match block {
                Block::Text { text: t } => text.push_str(&t),
                Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input,
                    signature: None,
                }),
                Block::Other => {}
            }
        }
        refused(reply.stop_reason.as_deref())?;
        Ok(LlmResponse {
            text,
            tool_calls,
            usage: reply.usage.into(),
            model: reply.model.unwrap_or_else(|| request.model.clone()),
            finish_reason: reply.stop_reason,
        })
    }

    fn stream_assembler(&self, request: &LlmRequest) -> Box<dyn StreamAssembler> {
        Box::new(EventAssembler {
            model: request.model.clone(),
            blocks: BTreeMap::new(),
            usage: AnthropicUsage::default(),
            stop_reason: None,
            stopped: false,
        })
    }
}

/// A content block being streamed.
enum BlockState {
    Text(String),
    /// id, name, and the `partial_json` pieces so far.
    Tool(String, String, String),
}

struct EventAssembler {
    model: String,
    /// Blocks by their `index`, so the final text keeps the vendor's order.
    blocks: BTreeMap<usize, BlockState>,
    /// The vendor's counts as last reported; normalised at the end.
    usage: AnthropicUsage,
    stop_reason: Option<String>,
    /// `message_stop` was seen.
    stopped: bool,
}

impl StreamAssembler for EventAssembler {
    fn on_event(&mut self, event: SseEvent, emit: &TokenSink) -> Result<StreamStep, LlmError> {
        match parse_body::<StreamEvent>("anthropic", &event.data)? {
            StreamEvent::MessageStart { message } => {
                if let Some(model) = message.model {
                    self.model = model;
                }
                self.usage = message.usage;
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let state = match content_block {
                    Block::ToolUse { id, name, .. } => BlockState::Tool(id, name, String::new()),
                    Block::Text { text } => {
                        if !text.is_empty() {
                            emit(&text);
                        }
                        BlockState::Text(text)
                    }
                    Block::Other => return Ok(StreamStep::Continue),
                };
                self.blocks.insert(index, state);
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                match (self.blocks.get_mut(&index), delta) {
                    (Some(BlockState::Text(text)), Delta::TextDelta { text: piece }) => {
                        emit(&piece);
                        text.push_str(&piece);
                    }
                    (
                        Some(BlockState::Tool(_, _, json)),
                        Delta::InputJsonDelta { partial_json },
                    ) => {
                        json.push_str(&partial_json);
                    }
                    // Thinking and signature deltas, or deltas for blocks we skip.
                    _ => {}
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.usage.absorb(usage);
                }
            }
            StreamEvent::MessageStop => {
                self.stopped = true;
                return Ok(StreamStep::Done);
            }
            StreamEvent::Error { error } => return Err(stream_error(error)),
            StreamEvent::Other => {}
        }
        Ok(StreamStep::Continue)
    }

    fn finish(self: Box<Self>) -> Result<LlmResponse, LlmError> {
        if !self.stopped && self.stop_reason.is_none() {
            return Err(LlmError::Network {
                provider: "anthropic".into(),
                message: "the stream ended before the reply was complete (no message_stop)".into(),
            });
        }
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in self.blocks.into_values() {
            match block {
                BlockState::Text(t) => text.push_str(&t),
                BlockState::Tool(id, name, json) => tool_calls.push(ToolCall {
                    arguments: parse_tool_arguments("anthropic", &name, &json)?,
                    id,
                    name,
                    signature: None,
                }),
            }
        }
        refused(self.stop_reason.as_deref())?;
        Ok(LlmResponse {
            text,
            tool_calls,
            usage: self.usage.into(),
            model: self.model,
            finish_reason: self.stop_reason,
        })
    }
}

/// A reply the model stopped because it declined (`stop_reason: refusal`):
/// what it wrote before is not an answer.
fn refused(stop_reason: Option<&str>) -> Result<(), LlmError> {
    match stop_reason {
        Some("refusal") => Err(LlmError::ContentBlocked {
            provider: "anthropic".into(),
            reason: "stop_reason refusal".into(),
        }),
        _ => Ok(()),
    }
}

/// An `error` event in the middle of a stream (the status was already 200).
fn stream_error(error: ErrorBody) -> LlmError {
    let provider = "anthropic".to_string();
    let message = format!("{} [{}]", error.message, error.kind);
    match error.kind.as_str() {
        "rate_limit_error" => LlmError::RateLimited {
            provider,
            retry_after: None,
            message,
        },
        "overloaded_error" => LlmError::Server {
            provider,
            status: 529,
            retry_after: None,
            message,
        },
        "authentication_error" | "permission_error" => LlmError::Auth {
            provider,
            status: 401,
            message,
        },
        "invalid_request_error" => LlmError::BadRequest {
            provider,
            status: 400,
            message,
        },
        _ => LlmError::Server {
            provider,
            status: 500,
            retry_after: None,
            message,
        },
    }
}

#[derive(Deserialize)]
struct MessageReply {
    model: Option<String>,
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, redacted thinking, server tool blocks: not part of the reply text.
    #[serde(other)]
    Other,
}

/// `usage` of a message (or of `message_start`). The cache counts are
/// `null` or absent when caching was not used.
#[derive(Deserialize, Default, Clone, Copy)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Takes the cumulative counts of a `message_delta`: the output count
    /// always, the others when it carries them.
    fn absorb(&mut self, delta: DeltaUsage) {
        self.output_tokens = delta.output_tokens;
        if let Some(input) = delta.input_tokens {
            self.input_tokens = input;
        }
        if delta.cache_creation_input_tokens.is_some() {
            self.cache_creation_input_tokens = delta.cache_creation_input_tokens;
        }
        if delta.cache_read_input_tokens.is_some() {
            self.cache_read_input_tokens = delta.cache_read_input_tokens;
        }
    }
}

impl From<AnthropicUsage> for Usage {
    fn from(u: AnthropicUsage) -> Self {
        let cache_read = u.cache_read_input_tokens.unwrap_or(0);
        let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
        Self {
            input_tokens: u
                .input_tokens
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            output_tokens: u.output_tokens,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0,
            estimated: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Option<DeltaUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    /// `ping`, `content_block_stop`, and event types added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    model: Option<String>,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// Variant names follow the wire names (`text_delta`, `input_json_delta`).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)]
enum Delta {
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

/// The cumulative counts a `message_delta` carries; only `output_tokens` is sure to be there.
#[derive(Deserialize)]
struct DeltaUsage {
    #[serde(default)]
    output_tokens: u64,
    input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}
