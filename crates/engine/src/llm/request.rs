//! The vendor-neutral shape of one LLM call: what the engine asks ([`LlmRequest`])
//! and what it gets back ([`LlmResponse`]).
//!
//! Every provider translates these to and from its own wire format, so the rest
//! of the engine never sees a vendor's JSON. The types are plain serde data:
//! the replay store hashes requests and writes responses to disk with them.

use serde::{Deserialize, Serialize};

/// One call to a chat model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    /// The vendor's model name (`gpt-4o-mini`, `claude-sonnet-4-5`, `gemini-2.0-flash`…).
    pub model: String,
    /// The system prompt; each vendor places it where its API expects it
    /// (a `system` message, a top-level field, a `systemInstruction`).
    pub system: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// `None`: no temperature is sent, so the vendor's default applies.
    pub temperature: Option<f64>,
    /// Upper bound on the reply's length, in tokens.
    pub max_tokens: u32,
    /// Functions the model may call; empty means plain text completion.
    pub tools: Vec<ToolDefinition>,
    /// Ask for a reply that is one JSON object, where the vendor has a switch for
    /// it (OpenAI `response_format`, Gemini `responseMimeType`); Anthropic has
    /// none, so the instruction is added to its system prompt instead.
    pub json_output: bool,
    /// With `json_output`: the JSON Schema the reply's `data` field must
    /// match (an agent's `output_schema`). Vendors see it in the prompt; the
    /// mock provider builds a minimal matching value from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
}

impl LlmRequest {
    /// A request with one user message and no tools, the common case.
    pub fn new(model: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            system: None,
            messages: vec![Message::User(user.into())],
            temperature: Some(0.2),
            max_tokens: 2000,
            tools: Vec::new(),
            json_output: false,
            output_schema: None,
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role", content = "content")]
pub enum Message {
    User(String),
    /// An earlier reply of the model, including the tools it asked to call,
    /// so the vendor can match the [`Message::ToolResult`]s that follow.
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of running a tool the model asked for.
    ToolResult {
        /// The [`ToolCall::id`] this answers.
        call_id: String,
        /// The tool's name (Gemini matches results by name, not id).
        name: String,
        content: String,
        /// The tool failed and `content` says why (Anthropic's `is_error`,
        /// Gemini's `error` key; OpenAI has no such mark).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// The model's request to call a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The vendor's id for the call (generated when the vendor has none, as
    /// Gemini may), echoed back in [`Message::ToolResult::call_id`].
    pub id: String,
    pub name: String,
    /// The arguments object, already parsed from the vendor's JSON text.
    pub arguments: serde_json::Value,
    /// An opaque token the vendor attached to the call and wants back with
    /// it in the conversation's later turns: Gemini's `thoughtSignature`
    /// (Gemini 3 refuses a history whose calls lack theirs). `None` for the
    /// other vendors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Token counts of one call, the same whatever the vendor (SPEC 8.4).
///
/// Vendors split their counts differently; each provider folds its own into
/// this shape, so that cost and budgets need no vendor knowledge: the cache
/// counts are parts of `input_tokens` and `reasoning_tokens` is a part of
/// `output_tokens`. A count the vendor did not report is 0. The three newer
/// fields default to 0 so that recordings made before them still replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every prompt token, cache reads and writes included.
    pub input_tokens: u64,
    /// Every billed output token, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens served from the vendor's prompt cache (billed at a lower rate).
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the vendor's prompt cache (billed at a higher rate).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Output tokens the model spent thinking, not shown in the reply.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// True when the counts are an estimate from the text (the mock provider,
    /// or a compatible server that reported no usage) rather than the vendor's count.
    #[serde(default)]
    pub estimated: bool,
}

impl Usage {
    /// Rough token count of a text: about four tokens for every three words.
    pub fn estimate_tokens(text: &str) -> u64 {
        let words = text.split_whitespace().count() as u64;
        words * 4 / 3 + u64::from(!words.is_multiple_of(3))
    }

    /// An estimate for a call whose vendor reported no counts.
    pub fn estimate(request: &LlmRequest, reply: &str) -> Self {
        let message_tokens: u64 = request
            .messages
            .iter()
            .map(|m| match m {
                Message::User(text) => Self::estimate_tokens(text),
                Message::Assistant { text, tool_calls } => {
                    Self::estimate_tokens(text)
                        + tool_calls
                            .iter()
                            .map(|c| Self::estimate_tokens(&c.arguments.to_string()))
                            .sum::<u64>()
                }
                Message::ToolResult { content, .. } => Self::estimate_tokens(content),
            })
            .sum();
        Self {
            input_tokens: message_tokens
                + request.system.as_deref().map_or(0, Self::estimate_tokens),
            output_tokens: Self::estimate_tokens(reply),
            estimated: true,
            ..Self::default()
        }
    }
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    /// The reply text (the concatenation of all text parts; empty when the
    /// model only called tools).
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// The model that answered, as the vendor names it (may be more specific
    /// than the requested one, e.g. a dated snapshot).
    pub model: String,
    /// The vendor's reason for stopping (`stop`, `end_turn`, `STOP`, `tool_calls`…), verbatim.
    pub finish_reason: Option<String>,
}

/// A limit that cut a reply off before the model was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// The request's `max_tokens`: OpenAI's and compatible servers'
    /// `length`, Anthropic's `max_tokens`, Gemini's `MAX_TOKENS`.
    MaxTokens,
    /// The model's context window, which the prompt and the reply filled
    /// together (Anthropic's `model_context_window_exceeded`).
    ContextWindow,
}

impl LlmResponse {
    /// The limit the reply stopped at, if it did not stop because the
    /// model was done.
    pub fn cutoff(&self) -> Option<Cutoff> {
        let reason = self.finish_reason.as_deref()?;
        if reason.eq_ignore_ascii_case("length") || reason.eq_ignore_ascii_case("max_tokens") {
            Some(Cutoff::MaxTokens)
        } else if reason == "model_context_window_exceeded" {
            Some(Cutoff::ContextWindow)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_grows_with_words() {
        assert_eq!(Usage::estimate_tokens(""), 0);
        assert_eq!(Usage::estimate_tokens("one two three"), 4);
        assert!(Usage::estimate_tokens("a b c d e f g") > 7);
    }

    #[test]
    fn usage_recorded_before_the_cache_and_reasoning_counts_still_reads() {
        let old = serde_json::json!({"input_tokens": 5, "output_tokens": 2});
        let usage: Usage = serde_json::from_value(old).unwrap_or_default();
        assert_eq!(
            usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn each_vendors_limit_reason_is_a_cutoff() {
        let reply = |reason: &str| LlmResponse {
            text: "cut".into(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            model: "m".into(),
            finish_reason: Some(reason.into()),
        };
        for reason in ["length", "max_tokens", "MAX_TOKENS"] {
            assert_eq!(reply(reason).cutoff(), Some(Cutoff::MaxTokens), "{reason}");
        }
        let window = reply("model_context_window_exceeded");
        assert_eq!(window.cutoff(), Some(Cutoff::ContextWindow));
        for reason in ["stop", "end_turn", "STOP", "tool_calls", "pause_turn"] {
            assert_eq!(reply(reason).cutoff(), None, "{reason}");
        }
    }

    #[test]
    fn messages_serialise_with_a_role_tag() {
        let json = serde_json::to_value(Message::User("hi".into())).unwrap_or_default();
        assert_eq!(json, serde_json::json!({"role": "user", "content": "hi"}));
    }
}
