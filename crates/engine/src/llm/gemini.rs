//! Google Gemini `generateContent`.
//!
//! `POST {base}/v1beta/models/{model}:generateContent` with the key in the
//! `x-goog-api-key` header (never in the URL, so it cannot leak into logs);
//! `contents` with roles `user` and `model`, a `systemInstruction`,
//! `generationConfig` (temperature, maxOutputTokens, `responseMimeType` for
//! JSON output), tools as `functionDeclarations`, replies with `functionCall`
//! parts. Streaming uses `:streamGenerateContent?alt=sse`: every event is a
//! partial `GenerateContentResponse`, the last one with `finishReason` and the
//! final `usageMetadata`; there is no end marker, and a failure after the
//! stream began is an event holding Google's error body. A `functionCall` part's
//! `thoughtSignature` is kept on its [`ToolCall`] and sent back beside the
//! call in later turns, as Gemini 3 requires; so is the call's `id`, when
//! Gemini gave one, in the call and in its `functionResponse`.
//!
//! What Gemini refuses, and so is never sent:
//! - a tool's `parameters` outside the OpenAPI subset of Gemini's `Schema`
//!   (an `additionalProperties`, a `$ref`, a property without a `type`, an
//!   object without properties…): such a schema goes as
//!   `parametersJsonSchema`, which takes JSON Schema, and a tool that takes
//!   no arguments declares none;
//! - `responseMimeType: application/json` beside function declarations
//!   ("Function calling with a response mime type … is unsupported"): with
//!   tools, the JSON-only instruction of the prompt is what asks for JSON;
//! - an empty text part: a model turn with no text and no calls is left out.
//!
//! Token counts: `promptTokenCount` already includes `cachedContentTokenCount`,
//! but `candidatesTokenCount` leaves out `thoughtsTokenCount`, which is billed
//! as output too, so the thoughts are added into [`Usage::output_tokens`].
//! Gemini reports no cache writes (a cache is created by its own call).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::error_in_stream;
use super::sse::SseEvent;
use super::transport::{
    HttpCall, StreamAssembler, StreamStep, WireFormat, build_client, normalize_base_url,
    parse_body, push_turn,
};
use super::{
    LlmError, LlmRequest, LlmResponse, Message, TokenSink, ToolCall, ToolDefinition, Usage,
};

/// The vendor's URL, used when `llm.base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Starts the ids given to the calls Gemini sent without one: those are
/// never sent back, since Gemini did not name the call.
const UNNAMED_CALL_PREFIX: &str = "gemini-unnamed-call-";

/// Finish reasons that mean the vendor withheld the reply.
const BLOCKED_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
];

pub struct GeminiProvider {
    client: reqwest::Client,
    /// Without the trailing slash and without `/v1beta`.
    base_url: String,
    api_key: String,
}

impl GeminiProvider {
    pub fn new(api_key: String, base_url: Option<&str>) -> Result<Self, LlmError> {
        Ok(Self {
            client: build_client()?,
            base_url: normalize_base_url("gemini", base_url.unwrap_or(DEFAULT_BASE_URL))?,
            api_key,
        })
    }

    /// `models/gemini-2.0-flash` for a bare name; `tunedModels/x` or `models/x` as given.
    fn model_path(model: &str) -> Result<String, LlmError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._/".contains(c);
        let bad_segment = model
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
        if bad_segment || !model.chars().all(allowed) {
            return Err(LlmError::Config(format!(
                "gemini: model name {model:?} may only contain letters, digits, '-', '.', '_' and '/' separating non-empty names"
            )));
        }
        Ok(if model.contains('/') {
            model.to_string()
        } else {
            format!("models/{model}")
        })
    }
}

impl WireFormat for GeminiProvider {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn provider(&self) -> &str {
        "gemini"
    }

    fn api_key(&self) -> Option<&str> {
        Some(&self.api_key)
    }

    fn prepare(&self, request: &LlmRequest, stream: bool) -> Result<HttpCall, LlmError> {
        let mut contents = Vec::new();
        for message in &request.messages {
            match message {
                Message::User(text) => {
                    push_turn(&mut contents, "user", "parts", json!({"text": text}))
                }
                Message::Assistant { text, tool_calls } => {
                    if !text.trim().is_empty() {
                        push_turn(&mut contents, "model", "parts", json!({"text": text}));
                    }
                    for call in tool_calls {
                        let mut function_call = json!({"name": call.name, "args": call.arguments});
                        if let Some(id) = vendor_call_id(&call.id) {
                            function_call["id"] = json!(id);
                        }
                        let mut part = json!({ "functionCall": function_call });
                        if let Some(signature) = &call.signature {
                            part["thoughtSignature"] = json!(signature);
                        }
                        push_turn(&mut contents, "model", "parts", part);
                    }
                }
                Message::ToolResult {
                    call_id,
                    name,
                    content,
                    is_error,
                } => {
                    // Gemini reads a failure from the response's `error` key.
                    let key = if *is_error { "error" } else { "content" };
                    let mut response = json!({"name": name, "response": { key: content }});
                    if let Some(id) = vendor_call_id(call_id) {
                        response["id"] = json!(id);
                    }
                    push_turn(
                        &mut contents,
                        "user",
                        "parts",
                        json!({ "functionResponse": response }),
                    );
                }
            }
        }
        let mut generation = json!({});
        if let Some(temperature) = request.temperature {
            generation["temperature"] = json!(temperature);
        }
        generation["maxOutputTokens"] = json!(request.max_tokens);
        if request.json_output && request.tools.is_empty() {
            generation["responseMimeType"] = json!("application/json");
        }
        let mut body = json!({"contents": contents, "generationConfig": generation});
        if let Some(system) = &request.system {
            body["systemInstruction"] = json!({"parts": [{"text": system}]});
        }
        if !request.tools.is_empty() {
            let declarations: Vec<Value> = request.tools.iter().map(declaration).collect();
            body["tools"] = json!([{ "functionDeclarations": declarations }]);
        }
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        Ok(HttpCall {
            url: format!(
                "{}/v1beta/{}:{method}",
                self.base_url,
                Self::model_path(&request.model)?
            ),
            headers: vec![("x-goog-api-key", self.api_key.clone())],
            body,
        })
    }

    fn parse_reply(&self, body: &str, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let reply: GenerateReply = parse_body("gemini", body)?;
        let mut assembler = ReplyAssembler::new(request);
        assembler.absorb(reply, None)?;
        if !assembler.saw_candidate {
            return Err(LlmError::Malformed {
                provider: "gemini".into(),
                message: "the reply has no candidates".into(),
            });
        }
        Box::new(assembler).finish()
    }

    fn stream_assembler(&self, request: &LlmRequest) -> Box<dyn StreamAssembler> {
        Box::new(ReplyAssembler::new(request))
    }
}

/// Folds one or more `GenerateContentResponse`s (one when not streaming) into a reply.
struct ReplyAssembler {
    model: String,
    text: String,
    tool_calls: Vec<ToolCall>,
    usage: Usage,
    finish_reason: Option<String>,
    saw_candidate: bool,
}

impl ReplyAssembler {
    fn new(request: &LlmRequest) -> Self {
        Self {
            model: request.model.clone(),
            text: String::new(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            finish_reason: None,
            saw_candidate: false,
        }
    }

    fn absorb(&mut self, reply: GenerateReply, emit: Option<&TokenSink>) -> Result<(), LlmError> {
        if let Some(reason) = reply.prompt_feedback.and_then(|f| f.block_reason) {
            return Err(LlmError::ContentBlocked {
                provider: "gemini".into(),
                reason: format!("prompt blocked: {reason}"),
            });
        }
        if let Some(version) = reply.model_version {
            self.model = version;
        }
        // Counts are cumulative: the last report wins.
        if let Some(usage) = reply.usage_metadata {
            self.usage = usage.into();
        }
        let Some(candidate) = reply.candidates.into_iter().next() else {
            return Ok(());
        };
        self.saw_candidate = true;
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if part.thought {
                continue;
            }
            if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                if let Some(emit) = emit {
                    emit(&text);
                }
                self.text.push_str(&text);
            }
            if let Some(call) = part.function_call {
                let id = call
                    .id
                    .unwrap_or_else(|| format!("{UNNAMED_CALL_PREFIX}{}", self.tool_calls.len()));
                self.tool_calls.push(ToolCall {
                    id,
                    name: call.name,
                    arguments: call.args.unwrap_or_else(|| json!({})),
                    signature: part.thought_signature,
                });
            }
        }
        if candidate.finish_reason.is_some() {
            self.finish_reason = candidate.finish_reason;
        }
        Ok(())
    }
}

impl StreamAssembler for ReplyAssembler {
    fn on_event(&mut self, event: SseEvent, emit: &TokenSink) -> Result<StreamStep, LlmError> {
        let reply: GenerateReply = parse_body("gemini", &event.data)?;
        if reply.error.is_some() {
            return Err(error_in_stream("gemini", &self.model, &event.data));
        }
        self.absorb(reply, Some(emit))?;
        Ok(StreamStep::Continue)
    }

    fn finish(self: Box<Self>) -> Result<LlmResponse, LlmError> {
        let Some(finish_reason) = self.finish_reason else {
            return Err(LlmError::Network {
                provider: "gemini".into(),
                message: "the reply ended without a finishReason (cut short)".into(),
            });
        };
        if self.text.is_empty()
            && self.tool_calls.is_empty()
            && BLOCKED_FINISH_REASONS.contains(&finish_reason.as_str())
        {
            return Err(LlmError::ContentBlocked {
                provider: "gemini".into(),
                reason: format!("finishReason {finish_reason}"),
            });
        }
        Ok(LlmResponse {
            text: self.text,
            tool_calls: self.tool_calls,
            usage: self.usage,
            model: self.model,
            finish_reason: Some(finish_reason),
        })
    }
}

/// The id Gemini gave a call, to send back with it; `None` for the ids
/// made up for calls it sent without one.
fn vendor_call_id(id: &str) -> Option<&str> {
    (!id.starts_with(UNNAMED_CALL_PREFIX)).then_some(id)
}

/// A tool's `functionDeclarations` entry: its arguments as `parameters`
/// when their schema fits Gemini's `Schema`, else as `parametersJsonSchema`,
/// and neither when it takes none.
fn declaration(tool: &ToolDefinition) -> Value {
    let mut declaration = json!({"name": tool.name, "description": tool.description});
    let schema = &tool.parameters;
    if takes_no_arguments(schema) {
        return declaration;
    }
    let key = if fits_schema(schema) {
        "parameters"
    } else {
        "parametersJsonSchema"
    };
    declaration[key] = schema.clone();
    declaration
}

/// An object schema with no properties and nothing else that would admit an argument.
fn takes_no_arguments(schema: &Value) -> bool {
    let Some(schema) = schema.as_object() else {
        return false;
    };
    schema.iter().all(|(key, value)| match key.as_str() {
        "type" => value == "object",
        "properties" => value.as_object().is_some_and(Map::is_empty),
        "required" => value.as_array().is_some_and(Vec::is_empty),
        "additionalProperties" => value == false,
        "$schema" | "title" | "description" => true,
        _ => false,
    })
}

/// Whether `schema` stays inside the OpenAPI subset that Gemini's `Schema`
/// type describes: a `type` on every node, only the keywords it lists, an
/// `enum` and `format` only where it allows them, and no empty object.
fn fits_schema(schema: &Value) -> bool {
    let Some(node) = schema.as_object() else {
        return false;
    };
    let Some(kind) = node.get("type").and_then(Value::as_str) else {
        return false;
    };
    let kind = kind.to_ascii_lowercase();
    if !["string", "number", "integer", "boolean", "array", "object"].contains(&kind.as_str()) {
        return false;
    }
    if kind == "object" && !node.contains_key("properties") {
        return false;
    }
    node.iter().all(|(key, value)| match key.as_str() {
        "type" | "title" | "description" | "nullable" | "required" | "minItems" | "maxItems"
        | "minProperties" | "maxProperties" | "minLength" | "maxLength" | "pattern" | "minimum"
        | "maximum" | "default" | "example" | "propertyOrdering" => true,
        "enum" => {
            kind == "string"
                && value
                    .as_array()
                    .is_some_and(|v| v.iter().all(Value::is_string))
        }
        "format" => matches!(
            (kind.as_str(), value.as_str()),
            ("string", Some("enum" | "date-time"))
                | ("number", Some("float" | "double"))
                | ("integer", Some("int32" | "int64"))
        ),
        "properties" => value
            .as_object()
            .is_some_and(|p| !p.is_empty() && p.values().all(fits_schema)),
        "items" => fits_schema(value),
        "anyOf" => value.as_array().is_some_and(|a| a.iter().all(fits_schema)),
        _ => false,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateReply {
    #[serde(default)]
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    prompt_feedback: Option<PromptFeedback>,
    /// Set instead of the rest in a stream that failed after it began.
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    function_call: Option<FunctionCall>,
    /// A thought summary, not part of the answer.
    #[serde(default)]
    thought: bool,
    /// Sent back with a `functionCall` part (see [`ToolCall::signature`]).
    thought_signature: Option<String>,
}

#[derive(Deserialize)]
struct FunctionCall {
    id: Option<String>,
    name: String,
    args: Option<Value>,
}

/// `usageMetadata`; a count is absent when it is zero.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

impl From<UsageMetadata> for Usage {
    fn from(u: UsageMetadata) -> Self {
        Self {
            input_tokens: u.prompt_token_count,
            output_tokens: u
                .candidates_token_count
                .saturating_add(u.thoughts_token_count),
            cache_read_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: u.thoughts_token_count,
            estimated: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}
