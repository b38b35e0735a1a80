//! Engine errors in MCP terms, decided in one place (as the HTTP server's
//! status mapping is):
//! - the request is wrong (unknown flow, agent or run, a bad id, an answer
//!   that does not fit its question): an MCP `invalid params` error;
//! - the request is right but the run's state refuses it (the story has a
//!   run in progress, the run waits for no answer, the queue is full): a
//!   tool result marked as an error, with the code and details, so the
//!   model reads it and can act (poll the run in progress, say, or retry);
//! - the machinery failed (a store, the configuration): an MCP `internal
//!   error`;
//! - a bug panicked while the request was served: an MCP `internal error`
//!   too ([`guarded`]). The SDK serves each request on a task of its own,
//!   and a panic there would otherwise leave the client waiting for an
//!   answer that never comes.

use bmad2pf_engine::EngineError;
use bmad2pf_engine::failure::panic_message;
use futures::FutureExt;
use rmcp::ErrorData as McpError;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// What a tool answers when the engine refuses or fails its request.
pub fn refused(error: EngineError) -> Result<CallToolResult, McpError> {
    let code = error.code();
    let message = error.to_string();
    let details = details(&error);
    let data = |details: Option<Value>| match details {
        Some(details) => json!({"code": code, "details": details}),
        None => json!({"code": code}),
    };
    match &error {
        EngineError::RunInProgress { .. }
        | EngineError::QueueFull(_)
        | EngineError::RunNotActive { .. }
        | EngineError::NotInterrupted { .. }
        | EngineError::InterruptNotOpen { .. }
        | EngineError::WebhookSecretMissing { .. } => {
            let mut body = json!({"error": {"code": code, "message": message}});
            if let Some(details) = details {
                body["error"]["details"] = details;
            }
            Ok(CallToolResult::structured_error(body))
        }
        EngineError::UnknownFlow(_)
        | EngineError::UnknownAgent(_)
        | EngineError::InvalidRequest { .. }
        | EngineError::StoryIdTooLong { .. }
        | EngineError::UnknownRun(_)
        | EngineError::InvalidRunId(_)
        | EngineError::InvalidCursor(_)
        | EngineError::BudgetUnenforceable(_)
        | EngineError::InvalidWebhook(_)
        | EngineError::InvalidAnswer { .. } => {
            Err(McpError::invalid_params(message, Some(data(details))))
        }
        EngineError::Store(store) if !store.is_backend_failure() => {
            Err(McpError::invalid_params(message, Some(data(details))))
        }
        EngineError::Store(_) | EngineError::Config(_) | EngineError::Internal(_) => {
            tracing::error!(%error, "an MCP request failed");
            Err(McpError::internal_error(message, Some(data(details))))
        }
    }
}

/// An engine error as an MCP error, for requests that answer no tool
/// result (resources): refusals of state become `invalid params` too.
pub fn as_mcp_error(error: EngineError) -> McpError {
    match refused(error) {
        Err(error) => error,
        Ok(result) => McpError::invalid_params(
            result
                .structured_content
                .as_ref()
                .and_then(|body| body["error"]["message"].as_str())
                .unwrap_or("refused")
                .to_string(),
            result.structured_content,
        ),
    }
}

/// What a client needs to act on the error, as in the HTTP error body.
fn details(error: &EngineError) -> Option<Value> {
    match error {
        EngineError::RunInProgress { run_id, status } => {
            Some(json!({"run_id": run_id, "status": status}))
        }
        EngineError::NotInterrupted { status, .. } | EngineError::RunNotActive { status, .. } => {
            Some(json!({"status": status}))
        }
        EngineError::InterruptNotOpen { open, .. } => Some(json!({"open": open})),
        EngineError::InvalidAnswer {
            options: Some(options),
            ..
        } => Some(json!({"options": options})),
        EngineError::StoryIdTooLong { max_len, .. } => Some(json!({"max_len": max_len})),
        _ => None,
    }
}

/// Serves a request with `work`, answering a panic inside it as an MCP
/// internal error with the panic's message.
pub async fn guarded<T>(work: impl Future<Output = Result<T, McpError>>) -> Result<T, McpError> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let message = panic_message(&*panic);
            tracing::error!(panic = message, "an MCP request panicked");
            Err(McpError::internal_error(
                format!("internal error: {message}"),
                None,
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorCode;

    #[test]
    fn each_kind_of_refusal_reaches_the_client_its_own_way() {
        let conflict = refused(EngineError::RunInProgress {
            run_id: "run-0123456789abcdef".into(),
            status: Some("running".into()),
        });
        let Ok(result) = conflict else {
            panic!("a run in progress is a tool result")
        };
        assert_eq!(result.is_error, Some(true));
        let body = result.structured_content.unwrap_or_default();
        assert_eq!(body["error"]["code"], "run_in_progress");
        assert_eq!(body["error"]["details"]["run_id"], "run-0123456789abcdef");

        let unknown = refused(EngineError::UnknownFlow("nope".into()));
        assert!(matches!(unknown, Err(e) if e.code == ErrorCode::INVALID_PARAMS));

        let broken = refused(EngineError::Internal("boom".into()));
        assert!(matches!(broken, Err(e) if e.code == ErrorCode::INTERNAL_ERROR));
    }

    #[tokio::test]
    async fn a_request_that_panics_is_an_internal_error() {
        let answered: Result<(), McpError> = guarded(async { panic!("a bug") }).await;
        let Err(error) = answered else {
            panic!("a panic is an error")
        };
        assert_eq!(error.code, ErrorCode::INTERNAL_ERROR);
        assert_eq!(error.message, "internal error: a bug");
        let fine = guarded(async { Ok::<_, McpError>(7) }).await;
        assert!(matches!(fine, Ok(7)));
    }
}
