//! The mock provider: a deterministic stand-in for a vendor, for tests, demos
//! and benchmarks that must run offline.
//!
//! Its reply is derived from a digest of the request, so the same request
//! always gets the same reply, and different requests get different ones:
//! `mock reply <12 hex of sha256>: <start of the last user message>`. With
//! `json_output` it answers `{"content": …, "summary": …}`. It can be made slow
//! (`latency_ms`, a tokio sleep, so tests with a paused clock run instantly) and
//! flaky (`failure_rate`, drawn from an RNG seeded with `seed`, so one seed
//! always gives the same sequence of failures; failures look like a vendor's 503).
//!
//! Offered the `ask_human` tool, it asks once per conversation (a free-text
//! question echoing the request) before it replies, so that a run of the
//! built-in example can show a question and its resume offline.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use bmad2pf_compiler::config::MockConfig;

use super::{LlmError, LlmProvider, LlmRequest, LlmResponse, Message, TokenSink, ToolCall, Usage};
use crate::runs::interrupts::ASK_HUMAN;

/// How much of the last user message the reply echoes, in characters.
const ECHO_CHARS: usize = 80;
/// How many pieces a streamed reply is cut into.
const STREAM_PIECES: usize = 4;

pub struct MockProvider {
    latency: Duration,
    failure_rate: f64,
    /// Shared by all calls, so the failure sequence depends only on the seed and
    /// the order of calls.
    rng: Mutex<StdRng>,
}

impl MockProvider {
    /// Fails when `failure_rate` is not a probability.
    pub fn new(config: &MockConfig) -> Result<Self, LlmError> {
        if !(0.0..=1.0).contains(&config.failure_rate) {
            return Err(LlmError::Config(format!(
                "llm.mock.failure_rate must be between 0 and 1, got {}",
                config.failure_rate
            )));
        }
        Ok(Self {
            latency: Duration::from_millis(config.latency_ms),
            failure_rate: config.failure_rate,
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
        })
    }

    /// The reply text for `request`: a pure function of it.
    pub fn reply_text(request: &LlmRequest) -> String {
        let digest = request_digest(request);
        let echo: String = request
            .messages
            .iter()
            .rev()
            .find_map(|m| match m {
                Message::User(text) => Some(text.as_str()),
                _ => None,
            })
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut short: String = echo.chars().take(ECHO_CHARS).collect();
        if short.len() < echo.len() {
            short.push('…');
        }
        let text = if short.is_empty() {
            format!("mock reply {digest}")
        } else {
            format!("mock reply {digest}: {short}")
        };
        if request.json_output {
            let mut envelope =
                serde_json::json!({"content": text, "summary": format!("mock summary {digest}")});
            if let Some(schema) = &request.output_schema {
                envelope["data"] = minimal_instance(schema, 0);
            }
            envelope.to_string()
        } else {
            text
        }
    }

    /// The `ask_human` call it makes: when the tool is offered and the
    /// conversation has not asked yet.
    fn question(request: &LlmRequest) -> Option<ToolCall> {
        let offered = request.tools.iter().any(|t| t.name == ASK_HUMAN);
        let asked = request
            .messages
            .iter()
            .any(|m| matches!(m, Message::ToolResult { name, .. } if name == ASK_HUMAN));
        if !offered || asked {
            return None;
        }
        let digest = request_digest(request);
        Some(ToolCall {
            id: format!("mock-ask-{digest}"),
            name: ASK_HUMAN.into(),
            arguments: serde_json::json!({
                "kind": "ask",
                "prompt": format!("mock question {digest}: what should I know before I start?"),
                "assume": "nothing beyond the input",
            }),
            signature: None,
        })
    }

    fn draw_failure(&self) -> bool {
        if self.failure_rate <= 0.0 {
            return false;
        }
        // A poisoned lock only means another call panicked mid-draw; the RNG is still usable.
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        rng.random::<f64>() < self.failure_rate
    }
}

/// The simplest value that matches `schema`: the first `enum`/`const` value,
/// or for its `type` an object with its `required` properties, an empty
/// list (or `minItems` items), `minimum` or 0, `false`, or a string of
/// `minLength` letters. Enough for agents whose output has a schema to run
/// on the mock; not a general JSON Schema solver.
fn minimal_instance(schema: &serde_json::Value, depth: usize) -> serde_json::Value {
    use serde_json::{Value, json};
    if depth > 16 {
        return Value::Null;
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    {
        return first.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    let count = |field: &str| schema.get(field).and_then(Value::as_u64).unwrap_or(0);
    match kind {
        "object" => {
            let properties = schema.get("properties");
            let mut object = serde_json::Map::new();
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = name.as_str() {
                    let sub = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                    object.insert(name.to_string(), minimal_instance(sub, depth + 1));
                }
            }
            Value::Object(object)
        }
        "array" => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            (0..count("minItems").min(16))
                .map(|_| minimal_instance(items, depth + 1))
                .collect()
        }
        "string" => {
            Value::String("x".repeat(usize::try_from(count("minLength").min(256)).unwrap_or(0)))
        }
        "integer" => json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(0)),
        "number" => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}

/// First 12 hex digits of sha256 over the model, system prompt and messages.
fn request_digest(request: &LlmRequest) -> String {
    let mut hasher = Sha256::new();
    hasher.update(request.model.as_bytes());
    hasher.update([0]);
    hasher.update(request.system.as_deref().unwrap_or_default().as_bytes());
    hasher.update([0]);
    // Serialising our own plain data cannot fail; an empty fallback keeps this total.
    hasher.update(serde_json::to_vec(&request.messages).unwrap_or_default());
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(12);
    hex
}

/// Cuts `text` into at most `pieces` parts on char boundaries, keeping every byte.
fn split_for_streaming(text: &str, pieces: usize) -> Vec<&str> {
    let step = text.len().div_ceil(pieces).max(1);
    let mut parts = Vec::with_capacity(pieces);
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        parts.push(&text[start..end]);
        start = end;
    }
    parts
}

#[async_trait]
impl LlmProvider for MockProvider {
    fn name(&self) -> &str {
        "mock"
    }

    async fn complete(
        &self,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.draw_failure() {
            return Err(LlmError::Server {
                provider: "mock".into(),
                status: 503,
                retry_after: None,
                message: format!(
                    "simulated failure (llm.mock.failure_rate = {})",
                    self.failure_rate
                ),
            });
        }
        if let Some(question) = Self::question(request) {
            return Ok(LlmResponse {
                usage: Usage::estimate(request, ""),
                text: String::new(),
                tool_calls: vec![question],
                model: request.model.clone(),
                finish_reason: Some("tool_calls".into()),
            });
        }
        let text = Self::reply_text(request);
        if let Some(sink) = on_token {
            for piece in split_for_streaming(&text, STREAM_PIECES) {
                sink(piece);
            }
        }
        Ok(LlmResponse {
            usage: Usage::estimate(request, &text),
            text,
            tool_calls: Vec::new(),
            model: request.model.clone(),
            finish_reason: Some("stop".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_replies_carry_data_matching_the_schema() {
        let schema = serde_json::json!({"type": "object", "required": ["action", "changes", "score"],
            "properties": {"action": {"enum": ["*approve", "*revise"]},
                           "changes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                           "score": {"type": "integer", "minimum": 3}}});
        let mut request = LlmRequest::new("m", "review this");
        request.json_output = true;
        request.output_schema = Some(schema);
        let reply: serde_json::Value =
            serde_json::from_str(&MockProvider::reply_text(&request)).unwrap_or_default();
        assert_eq!(
            reply["data"],
            serde_json::json!({"action": "*approve", "changes": [""], "score": 3})
        );
        assert!(
            reply["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("mock reply"))
        );
    }

    #[test]
    fn streaming_pieces_rebuild_the_text() {
        for text in ["", "a", "mock reply abc: héllo wörld ✓✓✓", "xyz"] {
            let parts = split_for_streaming(text, STREAM_PIECES);
            assert!(parts.len() <= STREAM_PIECES);
            assert_eq!(parts.concat(), text);
        }
    }

    #[test]
    fn failure_rate_must_be_a_probability() {
        for rate in [-0.1, 1.5, f64::NAN] {
            let config = MockConfig {
                failure_rate: rate,
                ..MockConfig::default()
            };
            assert!(MockProvider::new(&config).is_err(), "{rate}");
        }
    }
}
