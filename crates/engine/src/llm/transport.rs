//! The HTTP exchange every vendor shares: send the request, turn an error
//! status into an [`LlmError`], then read either a JSON reply or an SSE stream.
//!
//! What differs between vendors (URL, headers, body, how replies and stream
//! events look) is a [`WireFormat`]; [`execute`] drives it. Streaming is used
//! when the caller passes a token sink; a server that answers a streaming
//! request with plain JSON (some OpenAI-compatible servers do) is read as JSON
//! and its text handed to the sink in one piece.

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{error_from_http, scrub, truncate};
use super::sse::{SseDecoder, SseEvent};
use super::{LlmError, LlmProvider, LlmRequest, LlmResponse, TokenSink};
use crate::outbound;
use async_trait::async_trait;

/// How much of a body that is not an event stream is quoted in the error.
const BODY_HEAD_BYTES: usize = 200;

/// One HTTP request to a vendor, built by a [`WireFormat`].
pub(crate) struct HttpCall {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

/// Whether a stream has more to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamStep {
    Continue,
    /// The vendor's end marker (`[DONE]`, `message_stop`) was seen.
    Done,
}

/// A vendor's wire format: how to ask, and how to read the answer.
pub(crate) trait WireFormat: Send + Sync {
    /// The HTTP client the provider keeps for its lifetime.
    fn client(&self) -> &reqwest::Client;
    fn provider(&self) -> &str;
    /// The key, so it can be scrubbed from error messages.
    fn api_key(&self) -> Option<&str>;
    fn prepare(&self, request: &LlmRequest, stream: bool) -> Result<HttpCall, LlmError>;
    /// Reads a complete (non-streamed) success body.
    fn parse_reply(&self, body: &str, request: &LlmRequest) -> Result<LlmResponse, LlmError>;
    /// A fresh assembler for one streamed reply.
    fn stream_assembler(&self, request: &LlmRequest) -> Box<dyn StreamAssembler>;
    /// Told the error of a refused request: `true` when the format left out,
    /// from now on, an optional field the server refused, so the request is
    /// worth sending again (once).
    fn drop_refused_option(&self, _error: &LlmError) -> bool {
        false
    }
}

/// Every vendor is a provider: one attempt is one HTTP exchange in its wire format.
#[async_trait]
impl<W: WireFormat> LlmProvider for W {
    fn name(&self) -> &str {
        self.provider()
    }

    async fn complete(
        &self,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        execute(self.client(), self, request, on_token).await
    }
}

/// Builds a [`LlmResponse`] from a vendor's stream events.
pub(crate) trait StreamAssembler: Send {
    /// Takes one event, passing any text delta to `emit`.
    fn on_event(&mut self, event: SseEvent, emit: &TokenSink) -> Result<StreamStep, LlmError>;
    /// The stream ended: the complete reply, or an error if it was cut short.
    fn finish(self: Box<Self>) -> Result<LlmResponse, LlmError>;
}

/// Builds the HTTP client a provider keeps for its lifetime (connection reuse, rustls).
pub(crate) fn build_client() -> Result<reqwest::Client, LlmError> {
    outbound::client().map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Checks a configured base URL and drops its trailing slashes, so paths can be appended.
pub(crate) fn normalize_base_url(provider: &str, url: &str) -> Result<String, LlmError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| {
        LlmError::Config(format!(
            "{provider}: llm.base_url {url:?} is not a URL: {e}"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(LlmError::Config(format!(
            "{provider}: llm.base_url {url:?} must start with http:// or https://"
        )));
    }
    Ok(trimmed.to_string())
}

/// Makes one HTTP attempt for `wire` and reads the reply.
pub(crate) async fn execute(
    client: &reqwest::Client,
    wire: &dyn WireFormat,
    request: &LlmRequest,
    on_token: Option<&TokenSink>,
) -> Result<LlmResponse, LlmError> {
    let stream = on_token.is_some();
    let response = match send(client, wire, request, stream).await {
        Err(error) if wire.drop_refused_option(&error) => {
            send(client, wire, request, stream).await?
        }
        sent => sent?,
    };
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let reply = match on_token {
        Some(sink) if !is_json => read_stream(wire, request, response, sink).await?,
        _ => {
            let body = response.text().await.map_err(|e| network_error(wire, &e))?;
            let reply = wire.parse_reply(&body, request)?;
            if let Some(sink) = on_token.filter(|_| !reply.text.is_empty()) {
                sink(&reply.text);
            }
            reply
        }
    };
    // An empty reply cut off at a limit is reported as that (the caller
    // reads the cutoff); one the model simply ended is no answer.
    if reply.text.trim().is_empty() && reply.tool_calls.is_empty() && reply.cutoff().is_none() {
        return Err(LlmError::EmptyReply {
            provider: wire.provider().to_string(),
            finish_reason: reply.finish_reason.unwrap_or_else(|| "none".into()),
        });
    }
    Ok(reply)
}

/// Sends the request; a status other than success is the vendor's error.
async fn send(
    client: &reqwest::Client,
    wire: &dyn WireFormat,
    request: &LlmRequest,
    stream: bool,
) -> Result<reqwest::Response, LlmError> {
    let call = wire.prepare(request, stream)?;
    let mut builder = client.post(&call.url).json(&call.body);
    for (name, value) in call.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.map_err(|e| network_error(wire, &e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The status alone is still worth reporting if the body cannot be read.
    let body = response.text().await.unwrap_or_default();
    Err(error_from_http(
        wire.provider(),
        &request.model,
        status.as_u16(),
        retry_after.as_deref(),
        &body,
        wire.api_key(),
    ))
}

async fn read_stream(
    wire: &dyn WireFormat,
    request: &LlmRequest,
    response: reqwest::Response,
    sink: &TokenSink,
) -> Result<LlmResponse, LlmError> {
    let mut assembler = wire.stream_assembler(request);
    let mut decoder = SseDecoder::new();
    let mut body = response.bytes_stream();
    // The start of the body, to show what came instead of events if none do.
    let mut head: Vec<u8> = Vec::new();
    let mut saw_event = false;
    'read: loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                if !saw_event && head.len() < BODY_HEAD_BYTES {
                    head.extend(chunk.iter().take(BODY_HEAD_BYTES - head.len()));
                }
                for event in decoder.push(&chunk) {
                    saw_event = true;
                    if assembler.on_event(event, sink)? == StreamStep::Done {
                        break 'read;
                    }
                }
            }
            Some(Err(e)) => return Err(network_error(wire, &e)),
            None => {
                if let Some(event) = decoder.finish() {
                    saw_event = true;
                    assembler.on_event(event, sink)?;
                }
                break;
            }
        }
    }
    if !saw_event {
        return Err(LlmError::Malformed {
            provider: wire.provider().to_string(),
            message: format!(
                "expected an event stream, got: {:?}",
                String::from_utf8_lossy(&head).trim()
            ),
        });
    }
    assembler.finish()
}

/// A transport failure, with the causes reqwest wraps ("connection refused"…).
fn network_error(wire: &dyn WireFormat, error: &reqwest::Error) -> LlmError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    LlmError::Network {
        provider: wire.provider().to_string(),
        message: scrub(&message, wire.api_key()),
    }
}

/// Parses a success body into the vendor's reply type; anything else is `Malformed`.
pub(crate) fn parse_body<T: DeserializeOwned>(provider: &str, body: &str) -> Result<T, LlmError> {
    serde_json::from_str(body).map_err(|e| LlmError::Malformed {
        provider: provider.to_string(),
        message: format!(
            "{e}; the body starts with: {:?}",
            truncate(body.trim(), 200)
        ),
    })
}

/// Parses a tool call's JSON arguments text; no text at all means no arguments.
pub(crate) fn parse_tool_arguments(
    provider: &str,
    tool: &str,
    raw: &str,
) -> Result<Value, LlmError> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(raw).map_err(|e| LlmError::Malformed {
        provider: provider.to_string(),
        message: format!(
            "the arguments of tool call {tool:?} are not valid JSON ({e}): {:?}",
            truncate(raw, 200)
        ),
    })
}

/// Appends a content part to the conversation, merging it into the previous
/// turn when that has the same role (Anthropic and Gemini want alternating
/// roles; consecutive tool results become one turn). `parts_key` is where the
/// parts live (`content` for Anthropic, `parts` for Gemini).
pub(crate) fn push_turn(turns: &mut Vec<Value>, role: &str, parts_key: &str, part: Value) {
    if let Some(last) = turns.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(parts) = last.get_mut(parts_key).and_then(Value::as_array_mut)
    {
        parts.push(part);
        return;
    }
    turns.push(serde_json::json!({ "role": role, parts_key: [part] }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            normalize_base_url("openai", " http://127.0.0.1:8080/v1/ ").ok(),
            Some("http://127.0.0.1:8080/v1".to_string())
        );
        assert!(normalize_base_url("openai", "localhost:11434").is_err());
        assert!(normalize_base_url("openai", "ftp://x").is_err());
    }

    #[test]
    fn same_role_turns_merge() {
        let mut turns = Vec::new();
        push_turn(&mut turns, "user", "parts", json!({"text": "a"}));
        push_turn(&mut turns, "user", "parts", json!({"text": "b"}));
        push_turn(&mut turns, "model", "parts", json!({"text": "c"}));
        assert_eq!(
            Value::Array(turns),
            json!([{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                   {"role": "model", "parts": [{"text": "c"}]}])
        );
    }

    #[test]
    fn tool_arguments_must_be_json() {
        assert_eq!(parse_tool_arguments("p", "t", "").ok(), Some(json!({})));
        assert_eq!(
            parse_tool_arguments("p", "t", "{\"a\":1}").ok(),
            Some(json!({"a": 1}))
        );
        let err = parse_tool_arguments("p", "t", "{\"a\":").err();
        assert!(matches!(err, Some(LlmError::Malformed { .. })));
    }
}
