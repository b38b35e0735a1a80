//! [`LlmError`]: everything that can go wrong in one LLM call, and the one
//! function that turns a vendor's HTTP error reply into it.
//!
//! Variants are what a caller acts on: retry ([`LlmError::is_retryable`], with
//! [`LlmError::retry_after`]), fix the configuration (auth, model, key), or give
//! up. Messages name the provider, the HTTP status and the vendor's own error
//! message, and never contain the API key: `error_from_http` scrubs it out of
//! anything the vendor echoes back.

use crate::failure::error_codes;
use std::time::{Duration, SystemTime};

/// The longest vendor error text kept in a message (HTML error pages from
/// proxies can be kilobytes long).
const MAX_VENDOR_MESSAGE: usize = 400;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// HTTP 401/403, or a vendor's "API key not valid" reply.
    #[error(
        "{provider}: authentication failed (HTTP {status}): {message} (check the API key variable)"
    )]
    Auth {
        provider: String,
        status: u16,
        message: String,
    },
    /// HTTP 404: the model does not exist for this key, or the base URL is wrong.
    #[error(
        "{provider}: model {model:?} not found (HTTP 404): {message} (check llm.model, and llm.base_url if set)"
    )]
    ModelNotFound {
        provider: String,
        model: String,
        message: String,
    },
    /// HTTP 429.
    #[error("{provider}: rate limited (HTTP 429){}: {message}", fmt_retry_after(*.retry_after))]
    RateLimited {
        provider: String,
        /// From the `Retry-After` header (or Gemini's `RetryInfo`), when the vendor said.
        retry_after: Option<Duration>,
        message: String,
    },
    /// HTTP 5xx, 408 or 409 (which the vendors' own SDKs retry too), or an
    /// error the vendor reported in the middle of a stream.
    #[error("{provider}: server error (HTTP {status}){}: {message}", fmt_retry_after(*.retry_after))]
    Server {
        provider: String,
        status: u16,
        /// From `Retry-After`, which vendors also send with 503 and 529 (overloaded).
        retry_after: Option<Duration>,
        message: String,
    },
    /// Any other 4xx: the request itself was refused.
    #[error("{provider}: request rejected (HTTP {status}): {message}")]
    BadRequest {
        provider: String,
        status: u16,
        message: String,
    },
    /// The attempt did not finish within its time limit (no answer, or a stream that stalled).
    #[error("{provider}: no complete reply within {}s", after.as_secs_f64())]
    Timeout { provider: String, after: Duration },
    /// Could not connect, or the connection broke.
    #[error("{provider}: network error: {message}")]
    Network { provider: String, message: String },
    /// The vendor answered 200 but not in its documented format.
    #[error("{provider}: malformed response: {message}")]
    Malformed { provider: String, message: String },
    /// The vendor answered with no text and no tool call, and did not stop
    /// at a limit: nothing to use. Gemini does this now and then, and a
    /// compatible server may, so another attempt is worth it.
    #[error(
        "{provider}: the model's reply was empty (no text, no tool call; finish reason {finish_reason})"
    )]
    EmptyReply {
        provider: String,
        finish_reason: String,
    },
    /// The vendor withheld the answer (Gemini's `blockReason` and blocked
    /// finish reasons, OpenAI's `refusal` and `content_filter`, Anthropic's
    /// `refusal` stop reason).
    #[error("{provider}: the vendor withheld the reply: {reason}")]
    ContentBlocked { provider: String, reason: String },
    #[error(
        "{provider}: no API key: set the environment variable {env_var} (or name another one in llm.api_key_env)"
    )]
    MissingApiKey { provider: String, env_var: String },
    /// The `llm:` or `replay:` configuration cannot work.
    #[error("llm configuration: {0}")]
    Config(String),
    /// Replay mode found no recording for this request.
    #[error(
        "replay: no recorded response for this request (key {key}) in {dir}; record it first with replay.mode: record"
    )]
    ReplayMiss { key: String, dir: String },
    /// A replay recording could not be read or written.
    #[error("replay: {path}: {message}")]
    ReplayStore { path: String, message: String },
}

fn fmt_retry_after(after: Option<Duration>) -> String {
    after
        .map(|d| format!(", retry after {}s", d.as_secs_f64()))
        .unwrap_or_default()
}

impl LlmError {
    /// Whether trying the same request again may succeed: rate limits, server
    /// errors, timeouts, network failures and empty replies. Auth, missing
    /// models, rejected requests and malformed replies will fail the same
    /// way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Network { .. }
                | Self::EmptyReply { .. }
        )
    }

    /// How long the vendor asked us to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The code of this error (see [`LlmErrorCode`]).
    pub fn kind(&self) -> LlmErrorCode {
        match self {
            Self::Auth { .. } => LlmErrorCode::Auth,
            Self::ModelNotFound { .. } => LlmErrorCode::ModelNotFound,
            Self::RateLimited { .. } => LlmErrorCode::RateLimited,
            Self::Server { .. } => LlmErrorCode::ServerError,
            Self::BadRequest { .. } => LlmErrorCode::BadRequest,
            Self::Timeout { .. } => LlmErrorCode::Timeout,
            Self::Network { .. } => LlmErrorCode::Network,
            Self::Malformed { .. } => LlmErrorCode::MalformedResponse,
            Self::EmptyReply { .. } => LlmErrorCode::EmptyReply,
            Self::ContentBlocked { .. } => LlmErrorCode::ContentBlocked,
            Self::MissingApiKey { .. } => LlmErrorCode::MissingApiKey,
            Self::Config(_) => LlmErrorCode::Config,
            Self::ReplayMiss { .. } => LlmErrorCode::ReplayMiss,
            Self::ReplayStore { .. } => LlmErrorCode::ReplayStore,
        }
    }

    /// A stable snake_case code for API responses, metrics and logs.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }
}

error_codes! {
    /// The code of an [`LlmError`], one per variant: the `code` of a failed
    /// agent or execute and the `code` label of the LLM error metric.
    pub enum LlmErrorCode {
        Auth => "llm_auth",
        ModelNotFound => "llm_model_not_found",
        RateLimited => "llm_rate_limited",
        ServerError => "llm_server_error",
        BadRequest => "llm_bad_request",
        Timeout => "llm_timeout",
        Network => "llm_network",
        MalformedResponse => "llm_malformed_response",
        EmptyReply => "llm_empty_reply",
        ContentBlocked => "llm_content_blocked",
        MissingApiKey => "llm_missing_api_key",
        Config => "llm_config",
        ReplayMiss => "llm_replay_miss",
        ReplayStore => "llm_replay_store",
    }
}

/// Maps a non-success HTTP reply to the error a caller can act on.
///
/// `body` is the reply text; the vendor's message is taken from any of the
/// three documented error shapes (OpenAI `{"error":{"message"}}`, Anthropic
/// `{"type":"error","error":{"message"}}`, Gemini `{"error":{"message","status"}}`),
/// or those of compatible servers (`{"error": "text"}`, top-level `message`),
/// and falls back to the raw text. `secret` (the API key) is removed from it.
pub(crate) fn error_from_http(
    provider: &str,
    model: &str,
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
    secret: Option<&str>,
) -> LlmError {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = scrub(&vendor_message(parsed.as_ref(), body, status), secret);
    let provider = provider.to_string();
    // Gemini answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
    let retry_after = retry_after_header.and_then(|h| parse_retry_after(h, SystemTime::now()));
    let key_invalid = parsed.as_ref().is_some_and(|v| {
        v.pointer("/error/details")
            .and_then(|d| d.as_array())
            .is_some_and(|details| {
                details
                    .iter()
                    .any(|d| d.get("reason").and_then(|r| r.as_str()) == Some("API_KEY_INVALID"))
            })
    });
    match status {
        401 | 403 => LlmError::Auth {
            provider,
            status,
            message,
        },
        _ if key_invalid => LlmError::Auth {
            provider,
            status,
            message,
        },
        404 => LlmError::ModelNotFound {
            provider,
            model: model.to_string(),
            message,
        },
        429 => LlmError::RateLimited {
            provider,
            retry_after: retry_after.or_else(|| parsed.as_ref().and_then(gemini_retry_delay)),
            message,
        },
        408 | 409 | 500..=599 => LlmError::Server {
            provider,
            status,
            retry_after,
            message,
        },
        _ => LlmError::BadRequest {
            provider,
            status,
            message,
        },
    }
}

/// The error a vendor reported inside a stream that had begun with a 200:
/// `body` is the event's JSON. Its `error.code`, when it is an HTTP status
/// (Gemini, vLLM), says what kind of failure it is; else it is a server error.
pub(crate) fn error_in_stream(provider: &str, model: &str, body: &str) -> LlmError {
    let status = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/code")?.as_u64())
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (400..600).contains(code))
        .unwrap_or(500);
    error_from_http(provider, model, status, None, body, None)
}

/// The vendor's own words from an error body, or the start of the raw text.
fn vendor_message(parsed: Option<&serde_json::Value>, raw: &str, status: u16) -> String {
    let from_json = parsed.and_then(|v| {
        // vLLM and some other compatible servers put the fields at the top level.
        let error = v.get("error").or_else(|| v.get("message").map(|_| v))?;
        let message = error
            .get("message")
            .and_then(|m| m.as_str())
            .or_else(|| error.as_str())?;
        // OpenAI `type`/`code`, Anthropic `type`, Gemini `status`: a short tag helps.
        let tag = ["status", "type", "code"]
            .iter()
            .find_map(|k| error.get(*k).and_then(|t| t.as_str()));
        Some(match tag {
            Some(tag) => format!("{message} [{tag}]"),
            None => message.to_string(),
        })
    });
    let text = from_json.unwrap_or_else(|| raw.trim().to_string());
    if text.is_empty() {
        return format!("empty response body for HTTP {status}");
    }
    truncate(&text, MAX_VENDOR_MESSAGE)
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Replaces every occurrence of the API key with `[redacted]`.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(key) if !key.is_empty() => text.replace(key, "[redacted]"),
        _ => text.to_string(),
    }
}

/// Reads a `Retry-After` value: delay-seconds (`2`, `1.5` as some vendors send)
/// or an HTTP-date, relative to `now`. A date in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Gemini puts the delay in the body: `details: [{"@type": "...RetryInfo", "retryDelay": "37s"}]`.
fn gemini_retry_delay(body: &serde_json::Value) -> Option<Duration> {
    body.pointer("/error/details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay")?.as_str()?.strip_suffix('s'))
        .and_then(|secs| secs.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn vendor_messages_are_extracted_from_each_shape() {
        let openai = json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error", "code": "invalid_api_key"}});
        assert_eq!(
            vendor_message(Some(&openai), "", 401),
            "Incorrect API key [invalid_request_error]"
        );
        let anthropic =
            json!({"type": "error", "error": {"type": "not_found_error", "message": "model: x"}});
        assert_eq!(
            vendor_message(Some(&anthropic), "", 404),
            "model: x [not_found_error]"
        );
        let gemini = json!({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}});
        assert_eq!(
            vendor_message(Some(&gemini), "", 500),
            "Internal [INTERNAL]"
        );
        assert_eq!(
            vendor_message(None, "<html>bad gateway</html>", 502),
            "<html>bad gateway</html>"
        );
        assert_eq!(
            vendor_message(None, " ", 502),
            "empty response body for HTTP 502"
        );
    }

    #[test]
    fn statuses_map_to_actionable_variants() {
        let e = error_from_http("openai", "m", 403, None, "", None);
        assert_eq!(e.code(), "llm_auth");
        let e = error_from_http("openai", "m", 404, None, "", None);
        assert!(matches!(e, LlmError::ModelNotFound { ref model, .. } if model == "m"));
        let e = error_from_http("openai", "m", 429, Some("7"), "", None);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
        let e = error_from_http("openai", "m", 503, Some("4"), "", None);
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
        let e = error_from_http("openai", "m", 422, None, "", None);
        assert!(!e.is_retryable());
        assert_eq!(e.code(), "llm_bad_request");
        for status in [408, 409] {
            let e = error_from_http("anthropic", "m", status, None, "", None);
            assert!(e.is_retryable(), "{status}");
        }
    }

    #[test]
    fn gemini_specifics_are_understood() {
        let bad_key = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}});
        let e = error_from_http("gemini", "m", 400, None, &bad_key.to_string(), None);
        assert_eq!(e.code(), "llm_auth");
        let quota = json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}});
        let e = error_from_http("gemini", "m", 429, None, &quota.to_string(), None);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));
    }

    #[test]
    fn the_api_key_never_appears_in_messages() {
        let body = json!({"error": {"message": "Incorrect API key provided: sk-secret-123"}});
        let e = error_from_http(
            "openai",
            "m",
            401,
            None,
            &body.to_string(),
            Some("sk-secret-123"),
        );
        let text = e.to_string();
        assert!(!text.contains("sk-secret-123"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let msg = vendor_message(None, &long, 502);
        assert!(msg.len() <= MAX_VENDOR_MESSAGE + "…".len());
        assert!(msg.ends_with('…'));
    }
}
