//! The one error shape of the API, and the one place where engine and store
//! errors become HTTP statuses.
//!
//! Every failure a client sees is `{"error": {"code", "message", "details"?}}`
//! (SPEC 5). Handlers return [`ApiError`]; `From<EngineError>` and
//! `From<StoreError>` below decide the status of everything the engine can
//! report. Errors whose message could carry internals (I/O, corrupt data,
//! engine internals) are logged with their detail and answered with a
//! generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::store::{IdError, StoreError};
use bmad2pf_engine::{EngineError, EngineErrorCode};
use serde_json::{Value, json};

/// The codes the HTTP layer answers with itself, beside those of engine and
/// store errors (`EngineErrorCode`, `StoreError::code`): a request that could
/// not be read, parsed, routed or authorised, and the bare statuses of
/// [`ApiError::from_status`]. docs/operations.md is checked against this
/// list and the engine's code enums.
pub const HTTP_CODES: &[&str] = &[
    "bad_request",
    "malformed_json",
    "invalid_id",
    "invalid_path",
    "invalid_query",
    "invalid_utf8",
    "unreadable_body",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "not_acceptable",
    "request_timeout",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_request",
    "internal_error",
];

/// An error response: status, stable snake_case code, a message for humans
/// and optional machine-readable details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status it is answered with.
    pub status: StatusCode,
    /// Stable code clients can branch on (`invalid_id`, `run_in_progress`…).
    pub code: &'static str,
    /// What went wrong, safe to show.
    pub message: String,
    /// Extra facts (the active run id, a JSON parse position, the field name).
    /// Boxed: it is rare, and keeps `Result<_, ApiError>` small.
    pub details: Option<Box<Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds `details` to the error.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 500 that tells the client nothing about the server's insides.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error; see the server log",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(details), Some(map)) = (&self.details, error.as_object_mut()) {
            map.insert("details".into(), details.as_ref().clone());
        }
        json!({ "error": error })
    }

    /// The error a bare status (from axum's router or a layer) stands for,
    /// used to give every response of that status the JSON shape.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this route does not accept that method; see the Allow header",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported_media_type", "unsupported content type")
            }
            StatusCode::UNAUTHORIZED => ("unauthorized", "missing or wrong API key"),
            StatusCode::FORBIDDEN => ("forbidden", "the request is not allowed"),
            StatusCode::NOT_ACCEPTABLE => (
                "not_acceptable",
                "no answer in a media type the Accept header allows",
            ),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "request timed out"),
            s if s.is_server_error() => {
                return Self::new(s, "internal_error", "internal server error");
            }
            _ => ("bad_request", "the request was not understood"),
        };
        Self::new(status, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

/// Seconds a client told `queue_full` waits before it retries.
const QUEUE_FULL_RETRY_AFTER: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.code == EngineErrorCode::QueueFull.as_str() {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(QUEUE_FULL_RETRY_AFTER),
            );
        }
        response
    }
}

impl From<IdError> for ApiError {
    fn from(error: IdError) -> Self {
        Self::bad_request("invalid_id", error.to_string()).with_details(json!({
            "kind": error.kind,
            "reason": error.reason,
        }))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = error.code();
        match error {
            StoreError::InvalidId(id) => id.into(),
            StoreError::NotFound { what } => {
                Self::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
            }
            StoreError::AlreadyExists { what } => {
                Self::new(StatusCode::CONFLICT, code, format!("{what} already exists"))
            }
            StoreError::Conflict { message } => Self::new(StatusCode::CONFLICT, code, message),
            StoreError::InvalidValue { message, max_depth } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
                    .with_details(serde_json::json!({ "field": ".", "max_depth": max_depth }))
            }
            StoreError::Unavailable { message, detail } => {
                tracing::warn!(code, %detail, "store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            }
            StoreError::Io { detail, .. } | StoreError::Corrupt { detail, .. } => {
                tracing::error!(code, %detail, "store failure");
                Self {
                    code,
                    ..Self::internal()
                }
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let code = error.code();
        match error {
            EngineError::UnknownFlow(_) | EngineError::UnknownAgent(_) => {
                Self::new(StatusCode::NOT_FOUND, code, error.to_string())
            }
            EngineError::InvalidRequest { field, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
                    .with_details(json!({ "field": field }))
            }
            EngineError::BudgetUnenforceable(ref model) => {
                let details = json!({ "field": "budget.usd", "model": model });
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
                    .with_details(details)
            }
            EngineError::InvalidWebhook(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
                    .with_details(json!({ "field": "webhook" }))
            }
            EngineError::WebhookSecretMissing { ref var } => {
                let details = json!({ "field": "webhook", "variable": var });
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
                    .with_details(details)
            }
            EngineError::StoryIdTooLong {
                max_len,
                ref too_long_for,
                ..
            } => {
                let reason = format!("too long for {too_long_for}");
                Self::bad_request(code, error.to_string()).with_details(json!({
                    "kind": "story id",
                    "reason": reason,
                    "max_len": max_len,
                }))
            }
            EngineError::RunInProgress { run_id, status } => Self::new(
                StatusCode::CONFLICT,
                code,
                format!("this flow is already running for this story (run {run_id})"),
            )
            .with_details(json!({ "run_id": run_id, "status": status })),
            EngineError::QueueFull(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, code, error.to_string())
            }
            EngineError::UnknownRun(_) => Self::new(StatusCode::NOT_FOUND, code, error.to_string()),
            EngineError::InvalidRunId(message) => Self::bad_request(code, message),
            EngineError::InvalidCursor(_) => Self::bad_request(code, error.to_string()),
            EngineError::RunNotActive { ref status, .. } => {
                let details = json!({ "status": status });
                Self::new(StatusCode::CONFLICT, code, error.to_string()).with_details(details)
            }
            EngineError::NotInterrupted { ref status, .. } => {
                let details = json!({ "status": status });
                Self::new(StatusCode::CONFLICT, code, error.to_string()).with_details(details)
            }
            EngineError::InterruptNotOpen { ref open, .. } => {
                let details = json!({ "open": open });
                Self::new(StatusCode::CONFLICT, code, error.to_string()).with_details(details)
            }
            EngineError::InvalidAnswer { message, options } => {
                let details = match options {
                    Some(options) => json!({ "options": options }),
                    None => json!({}),
                };
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_details(details)
            }
            EngineError::Store(store) => store.into(),
            EngineError::Config(message) | EngineError::Internal(message) => {
                tracing::error!(code, %message, "engine failure");
                Self {
                    code,
                    ..Self::internal()
                }
            }
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `server.api_key_env` names a variable that is unset or empty; starting
    /// without the key would leave the API open, so the server refuses.
    #[error(
        "server.api_key_env names `{var}`, but that environment variable is not set (or empty)"
    )]
    MissingApiKey { var: String },
    /// The listening address could not be parsed or bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// A `server.cors_origins` entry is not a valid origin.
    #[error("server.cors_origins: {origin:?} is not a valid origin")]
    InvalidCorsOrigin { origin: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_statuses_answer_with_listed_codes() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::NOT_ACCEPTABLE,
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            let code = ApiError::from_status(status).code;
            assert!(HTTP_CODES.contains(&code), "{status}: {code}");
        }
    }

    #[test]
    fn statuses_follow_the_error_kind() {
        let cases: Vec<(ApiError, StatusCode, &str)> = vec![
            (
                EngineError::UnknownFlow("x".into()).into(),
                StatusCode::NOT_FOUND,
                "unknown_flow",
            ),
            (
                EngineError::InvalidRequest {
                    field: "story_id",
                    message: "story_id: bad".into(),
                }
                .into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                EngineError::RunInProgress {
                    run_id: "run-1".into(),
                    status: Some("running".into()),
                }
                .into(),
                StatusCode::CONFLICT,
                "run_in_progress",
            ),
            (
                StoreError::Unavailable {
                    message: "docs unavailable".into(),
                    detail: "/secret".into(),
                }
                .into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
            ),
            (
                StoreError::AlreadyExists {
                    what: "workflow `w`".into(),
                }
                .into(),
                StatusCode::CONFLICT,
                "already_exists",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!((error.status, error.code), (status, code));
        }
    }

    #[test]
    fn internals_stay_out_of_the_body() {
        let error: ApiError = StoreError::Io {
            message: "storage error: could not write document `a`".into(),
            detail: "/srv/secret/docs/a.md: disk full".into(),
        }
        .into();
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.body().to_string().contains("/srv"));
        let error: ApiError = EngineError::Internal("panic in /home/x".into()).into();
        assert!(!error.body().to_string().contains("/home"));
    }

    #[test]
    fn run_in_progress_names_the_active_run() {
        let error: ApiError = EngineError::RunInProgress {
            run_id: "run-7".into(),
            status: Some("queued".into()),
        }
        .into();
        assert_eq!(error.body()["error"]["details"]["run_id"], "run-7");
        assert_eq!(error.body()["error"]["details"]["status"], "queued");
    }
}
