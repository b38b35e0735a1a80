//! OpenAI Chat Completions, which also serves every OpenAI-compatible server
//! (Ollama, vLLM, llama.cpp server, LM Studio…): one type, two names.
//!
//! `POST {base}/chat/completions` with a Bearer key; the system prompt is the
//! first message; tools are `function` tools and come back as `tool_calls`
//! whose arguments are JSON text. Streaming uses `stream: true` with
//! `stream_options.include_usage`, so the last chunk (with empty `choices`)
//! carries the token counts; the stream ends with `data: [DONE]`. A server
//! that refuses `stream_options` (Mistral's API, some Azure deployments,
//! with a 4xx naming it) is asked again without it, and is not sent it
//! again; its replies' counts are then estimated unless it sends usage
//! on its own.
//!
//! Compatible servers stray from OpenAI's replies in known ways, read as
//! they mean: streamed tool calls without their `index` (Ollama, Gemini's
//! compatible endpoint), calls without an `id` (given `call_<n>`), and
//! arguments sent as a JSON object instead of JSON text.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::error_in_stream;
use super::sse::SseEvent;
use super::transport::{
    HttpCall, StreamAssembler, StreamStep, WireFormat, build_client, normalize_base_url,
    parse_body, parse_tool_arguments,
};
use super::{LlmError, LlmRequest, LlmResponse, Message, TokenSink, ToolCall, Usage};

/// The vendor's URL, used when `llm.base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A Chat Completions endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    /// `openai` or `openai_compatible`: used in errors and the replay key.
    name: &'static str,
    /// Without the trailing slash, e.g. `https://api.openai.com/v1`.
    base_url: String,
    /// Optional for compatible servers, which often need none.
    api_key: Option<String>,
    /// Whether streamed requests carry `stream_options`: until the server refuses it.
    stream_options: AtomicBool,
}

impl OpenAiProvider {
    /// OpenAI itself; `base_url` overrides [`DEFAULT_BASE_URL`] (a proxy, a test server).
    pub fn openai(api_key: String, base_url: Option<&str>) -> Result<Self, LlmError> {
        Self::build(
            "openai",
            base_url.unwrap_or(DEFAULT_BASE_URL),
            Some(api_key),
        )
    }

    /// Any server speaking the same API at `base_url` (including its `/v1`).
    pub fn compatible(base_url: &str, api_key: Option<String>) -> Result<Self, LlmError> {
        Self::build("openai_compatible", base_url, api_key)
    }

    fn build(
        name: &'static str,
        base_url: &str,
        api_key: Option<String>,
    ) -> Result<Self, LlmError> {
        Ok(Self {
            client: build_client()?,
            name,
            base_url: normalize_base_url(name, base_url)?,
            api_key: api_key.filter(|k| !k.is_empty()),
            stream_options: AtomicBool::new(true),
        })
    }

    fn message_json(message: &Message) -> Value {
        match message {
            Message::User(text) => json!({"role": "user", "content": text}),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({"role": "assistant", "content": text})
            }
            Message::Assistant { text, tool_calls } => json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text) },
                "tool_calls": tool_calls.iter().map(|c| json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })).collect::<Vec<_>>(),
            }),
            Message::ToolResult {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        }
    }
}

impl WireFormat for OpenAiProvider {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn provider(&self) -> &str {
        self.name
    }

    fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    fn prepare(&self, request: &LlmRequest, stream: bool) -> Result<HttpCall, LlmError> {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(request.messages.iter().map(Self::message_json));
        let mut body = json!({
            "model": request.model,
            "messages": messages,
        });
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        // OpenAI deprecated `max_tokens` (reasoning models reject it); compatible
        // servers mostly know only `max_tokens`.
        let max_key = if self.name == "openai" {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[max_key] = json!(request.max_tokens);
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters,
                    }})
                })
                .collect();
        }
        if request.json_output {
            body["response_format"] = json!({"type": "json_object"});
        }
        if stream {
            body["stream"] = json!(true);
            if self.stream_options.load(Ordering::Relaxed) {
                body["stream_options"] = json!({"include_usage": true});
            }
        }
        let headers = self
            .api_key
            .iter()
            .map(|key| ("authorization", format!("Bearer {key}")))
            .collect();
        Ok(HttpCall {
            url: format!("{}/chat/completions", self.base_url),
            headers,
            body,
        })
    }

    fn parse_reply(&self, body: &str, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let reply: Completion = parse_body(self.name, body)?;
        let Some(choice) = reply.choices.into_iter().next() else {
            return Err(LlmError::Malformed {
                provider: self.name.to_string(),
                message: "the reply has no choices".into(),
            });
        };
        let text = choice.message.content.unwrap_or_default();
        if choice.message.tool_calls.is_empty()
            && let Some(error) = declined(
                self.name,
                &text,
                choice.message.refusal.as_deref(),
                choice.finish_reason.as_deref(),
            )
        {
            return Err(error);
        }
        let tool_calls = choice
            .message
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(position, c)| {
                let arguments = match c.function.arguments {
                    Value::String(text) => {
                        parse_tool_arguments(self.name, &c.function.name, &text)?
                    }
                    Value::Null => json!({}),
                    object => object,
                };
                Ok(ToolCall {
                    arguments,
                    id: call_id(c.id, position),
                    name: c.function.name,
                    signature: None,
                })
            })
            .collect::<Result<_, LlmError>>()?;
        Ok(LlmResponse {
            usage: reply
                .usage
                .map_or_else(|| Usage::estimate(request, &text), Usage::from),
            text,
            tool_calls,
            model: reply.model.unwrap_or_else(|| request.model.clone()),
            finish_reason: choice.finish_reason,
        })
    }

    fn drop_refused_option(&self, error: &LlmError) -> bool {
        matches!(error, LlmError::BadRequest { message, .. } if message.contains("stream_options"))
            && self.stream_options.swap(false, Ordering::Relaxed)
    }

    fn stream_assembler(&self, request: &LlmRequest) -> Box<dyn StreamAssembler> {
        Box::new(ChunkAssembler {
            provider: self.name,
            request: request.clone(),
            text: String::new(),
            refusal: String::new(),
            tools: Vec::new(),
            usage: None,
            model: None,
            finish_reason: None,
            done: false,
        })
    }
}

/// Accumulates `chat.completion.chunk`s.
struct ChunkAssembler {
    provider: &'static str,
    /// For the model-name fallback and a usage estimate when the server sends none.
    request: LlmRequest,
    text: String,
    /// What the model said instead of answering, when it declined.
    refusal: String,
    /// Tool calls by their `index`, in the order they began.
    tools: Vec<StreamedCall>,
    usage: Option<OpenAiUsage>,
    model: Option<String>,
    finish_reason: Option<String>,
    /// `[DONE]` was seen.
    done: bool,
}

impl StreamAssembler for ChunkAssembler {
    fn on_event(&mut self, event: SseEvent, emit: &TokenSink) -> Result<StreamStep, LlmError> {
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return Ok(StreamStep::Done);
        }
        let chunk: Chunk = parse_body(self.provider, &event.data)?;
        if chunk.error.is_some() {
            return Err(error_in_stream(
                self.provider,
                &self.request.model,
                &event.data,
            ));
        }
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta.content.filter(|d| !d.is_empty()) {
                emit(&delta);
                self.text.push_str(&delta);
            }
            if let Some(refusal) = choice.delta.refusal {
                self.refusal.push_str(&refusal);
            }
            for (position, call) in choice.delta.tool_calls.into_iter().enumerate() {
                let entry = self.streamed_call(&call, position);
                if let Some(id) = call.id.filter(|id| !id.is_empty()) {
                    entry.id = id;
                }
                if let Some(function) = call.function {
                    // Some proxies repeat the whole name on every delta.
                    if let Some(name) = function.name.filter(|n| *n != entry.name) {
                        entry.name.push_str(&name);
                    }
                    match function.arguments {
                        Some(Value::String(piece)) => entry.arguments.push_str(&piece),
                        Some(Value::Null) | None => {}
                        Some(object) => entry.arguments.push_str(&object.to_string()),
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(StreamStep::Continue)
    }

    fn finish(self: Box<Self>) -> Result<LlmResponse, LlmError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(LlmError::Network {
                provider: self.provider.to_string(),
                message: "the stream ended before the reply was complete (no [DONE])".into(),
            });
        }
        let refusal = (!self.refusal.is_empty()).then_some(self.refusal.as_str());
        if self.tools.is_empty()
            && let Some(error) = declined(
                self.provider,
                &self.text,
                refusal,
                self.finish_reason.as_deref(),
            )
        {
            return Err(error);
        }
        let tool_calls = self
            .tools
            .into_iter()
            .enumerate()
            .map(|(position, call)| {
                Ok(ToolCall {
                    arguments: parse_tool_arguments(self.provider, &call.name, &call.arguments)?,
                    id: call_id(call.id, position),
                    name: call.name,
                    signature: None,
                })
            })
            .collect::<Result<_, LlmError>>()?;
        Ok(LlmResponse {
            usage: self
                .usage
                .map_or_else(|| Usage::estimate(&self.request, &self.text), Usage::from),
            text: self.text,
            tool_calls,
            model: self.model.unwrap_or(self.request.model),
            finish_reason: self.finish_reason,
        })
    }
}

impl ChunkAssembler {
    /// The call a streamed tool-call delta continues or begins. With an
    /// `index`, the call of that index. Without one, the last call when the
    /// delta opens its chunk and either repeats that call's id or, naming
    /// no id, names no function either (a call's later deltas carry only
    /// arguments); else a new call.
    fn streamed_call(&mut self, delta: &ChunkToolCall, position: usize) -> &mut StreamedCall {
        let id = delta.id.as_deref().filter(|id| !id.is_empty());
        let names_function = delta
            .function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .is_some_and(|name| !name.is_empty());
        let found = match delta.index {
            Some(index) => self.tools.iter().position(|c| c.index == Some(index)),
            None => match self.tools.last() {
                Some(last)
                    if last.index.is_none()
                        && position == 0
                        && match id {
                            Some(id) => id == last.id,
                            None => !names_function,
                        } =>
                {
                    Some(self.tools.len() - 1)
                }
                _ => None,
            },
        };
        let at = found.unwrap_or_else(|| {
            self.tools.push(StreamedCall {
                index: delta.index,
                ..StreamedCall::default()
            });
            self.tools.len() - 1
        });
        &mut self.tools[at]
    }
}

/// A tool call being streamed: what its deltas said so far.
#[derive(Default)]
struct StreamedCall {
    /// The vendor's `index`, when it sends one.
    index: Option<usize>,
    id: String,
    name: String,
    /// The arguments' JSON text so far.
    arguments: String,
}

/// The vendor's id of a call, or `call_<position>` when it sent none.
fn call_id(id: String, position: usize) -> String {
    if id.is_empty() {
        format!("call_{position}")
    } else {
        id
    }
}

/// The error for a reply in which the model declined instead of answering:
/// no text and a `refusal`, or a `content_filter` finish.
fn declined(
    provider: &str,
    text: &str,
    refusal: Option<&str>,
    finish_reason: Option<&str>,
) -> Option<LlmError> {
    if !text.is_empty() {
        return None;
    }
    let reason = match (refusal, finish_reason) {
        (Some(refusal), _) => format!("the model refused: {refusal}"),
        (None, Some("content_filter")) => "finish_reason content_filter".to_string(),
        _ => return None,
    };
    Some(LlmError::ContentBlocked {
        provider: provider.to_string(),
        reason,
    })
}

#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    choices: Vec<CompletionChoice>,
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: CompletionMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CompletionMessage {
    content: Option<String>,
    /// Set instead of `content` when the model declines.
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CompletionToolCall>,
}

#[derive(Deserialize)]
struct CompletionToolCall {
    #[serde(default)]
    id: String,
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    /// JSON text (OpenAI), or the object itself (some compatible servers).
    #[serde(default)]
    arguments: Value,
}

/// `usage` of a completion or of the last chunk. `prompt_tokens` already
/// counts the cached tokens and `completion_tokens` the reasoning tokens, so
/// both map as they are; OpenAI reports no cache writes. The details objects
/// are absent or `null` on older models and on many compatible servers.
#[derive(Deserialize, Clone, Copy)]
struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptTokensDetails>,
    completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Deserialize, Clone, Copy)]
struct PromptTokensDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
struct CompletionTokensDetails {
    reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cache_read_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            estimated: false,
        }
    }
}

#[derive(Deserialize)]
struct Chunk {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<OpenAiUsage>,
    /// Some servers report a failure inside the stream instead of with a status.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    delta: ChunkDelta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta {
    content: Option<String>,
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ChunkToolCall>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    /// Absent or `null` on some compatible servers.
    index: Option<usize>,
    id: Option<String>,
    function: Option<ChunkFunction>,
}

#[derive(Deserialize)]
struct ChunkFunction {
    name: Option<String>,
    /// A piece of JSON text, or (some compatible servers) the whole object.
    arguments: Option<Value>,
}
