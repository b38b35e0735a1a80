//! OpenAPI descriptions of what has no Rust type of its own: the error body
//! and the events of a streamed run.
//!
//! The engine's outcomes (`RunOutcome`, `ExecuteOutcome`, `Readiness`) and
//! the store's records (`DocMeta`, `WorkflowStatus`…) derive `ToSchema`
//! where they are defined and are used directly.

use serde_json::Value;
use utoipa::ToSchema;

/// Every error answer: `{"error": {"code", "message", "details"?}}`.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (`invalid_id`, `run_in_progress`, `malformed_json`…).
    pub code: String,
    pub message: String,
    /// Extra facts: the active `run_id`, a parse `line`/`column`, the `field`.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// The name of a Server-Sent Event of a streamed run.
#[derive(ToSchema)]
#[schema(as = RunEventName)]
pub enum RunEventNameDoc {
    #[schema(rename = "progress")]
    Progress,
    #[schema(rename = "token")]
    Token,
    #[schema(rename = "result")]
    Result,
    #[schema(rename = "status")]
    Status,
    #[schema(rename = "usage")]
    Usage,
    #[schema(rename = "interrupt")]
    Interrupt,
    #[schema(rename = "done")]
    Done,
    #[schema(rename = "error")]
    Error,
}

/// One Server-Sent Event of a run (`POST /run` with streaming, `GET
/// /runs/{id}/events`), as an event-stream parser reads it.
#[derive(ToSchema)]
#[schema(as = RunStreamEvent)]
pub struct RunStreamEventDoc {
    /// 1, 2, … per run, in emission order; send the last one seen as
    /// `Last-Event-ID` to resume after it.
    pub id: String,
    pub event: RunEventNameDoc,
    /// JSON text: `status` `{status, error_code?, at}`, `progress` `{agent,
    /// step, status, duration_ms?, timestamp}`, `token` `{agent, delta}`
    /// (live only, never replayed), `result` `{agent, data}`, `usage` the
    /// record of one LLM call, `interrupt` a question for a person (an
    /// interrupt of the run), `done` the run, `error` `{code, message}`.
    pub data: String,
}

#[cfg(test)]
mod tests {
    use crate::routes::agent::ExecuteBody;
    use bmad2pf_engine::outcome::ExecuteRequest;
    use std::collections::BTreeSet;
    use utoipa::PartialSchema;

    fn schema_fields<T: PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap_or_default();
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_execute_body_schema_names_exactly_the_request_fields() {
        let request = serde_json::to_value(ExecuteRequest::default()).unwrap_or_default();
        let fields: BTreeSet<String> = request
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(schema_fields::<ExecuteBody>(), fields);
    }
}
