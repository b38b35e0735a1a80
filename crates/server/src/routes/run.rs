//! `POST /run`: run a flow for a story and answer when it ends, as JSON or
//! as Server-Sent Events — the synchronous form of `POST /runs`.
//!
//! Either way the run is a stored resource running in the background (SPEC
//! 8): a client that disconnects (or whose request is cancelled) does not
//! cancel the run, which finishes and writes its documents, and a dropped
//! stream continues at `GET /runs/{id}/events` with the same event ids.
//!
//! Streaming (`Accept: text/event-stream` or `"stream": true`): the run is
//! started before the response, so a request the engine refuses outright
//! — unknown flow, the flow already running for the story — gets its HTTP
//! status (404, 409) instead of a 200 stream holding an error. Then the
//! run's events as they happen, each with its `id`, ending with `done`
//! (the run, the same body a JSON request gets).
//!
//! A bad story id names documents that could not exist: the engine refuses
//! it as an id error, 400 `invalid_id` like every other id (SPEC 5
//! "Rules"), on both paths; so is one longer than the bundle's documented
//! limit (`story_ids`).

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::runs::event_stream;
use crate::state::AppState;
use crate::story_ids::engine_for_run;
use crate::wire::{ErrorBody, RunStreamEventDoc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::outcome::RunRequest;
use bmad2pf_engine::runs::{Budget, Run, RunMode};
use serde::Deserialize;
use utoipa::ToSchema;

/// Body of `POST /run`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Flow name (one of the bundle's flows).
    pub flow: String,
    /// The user's input for the first agents.
    #[serde(default)]
    pub input: String,
    /// The story this run works on; prefixes its documents' ids.
    pub story_id: String,
    /// Re-run agents whose outputs exist and whose inputs are unchanged.
    #[serde(default)]
    pub force: bool,
    /// Stream Server-Sent Events (same as `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: bool,
    /// `headless` (the default): agents' questions are answered on stated
    /// assumptions and listed in `open_questions`. `interactive`: the
    /// answer comes at the first question, the run `interrupted` (answer
    /// it with `POST /runs/{id}/resume`); a stream stays open meanwhile.
    #[serde(default)]
    pub mode: Option<RunMode>,
    /// Stop the run once it has used this much (`budget_exceeded`); default
    /// runtime.yaml `runs.budget_usd` / `runs.budget_tokens`. A `usd`
    /// budget needs a price for every model of the flow (else 422
    /// `budget_unenforceable`).
    #[serde(default)]
    pub budget: Option<Budget>,
    /// An http(s) URL told when the run ends, in a signed POST (as on
    /// `POST /runs`).
    #[serde(default)]
    pub webhook: Option<String>,
}

/// The engine's request for a body, and the body's webhook.
fn run_request(body: RunBody) -> (RunRequest, Option<String>) {
    let request = RunRequest {
        flow: body.flow,
        story_id: body.story_id,
        input: body.input,
        force: body.force,
        budget: body.budget,
    };
    (request, body.webhook)
}

/// Runs a flow.
#[utoipa::path(
    post,
    path = "/run",
    tag = "runs",
    request_body = RunBody,
    responses(
        (status = 200, description = "The run, ended (or `interrupted`, in interactive mode); \
            with streaming, an event stream of its events (each with its `id`) ending with \
            `done` (this body)",
            content((Run = "application/json"), (RunStreamEventDoc = "text/event-stream"))),
        (status = 400, description = "Invalid story id", body = ErrorBody),
        (status = 404, description = "Unknown flow", body = ErrorBody),
        (status = 409, description = "The flow has a queued or running run for this story \
            (`run_in_progress`, `details.run_id`, `details.status`)", body = ErrorBody),
        (status = 422, description = "Invalid body, a `usd` budget on a flow with an \
            unpriced model (`budget_unenforceable`), a webhook that is not an allowed http(s) URL \
            (`invalid_webhook`) or no signing secret (`webhook_secret_missing`)", body = ErrorBody),
        (status = 503, description = "Too many runs queued (`queue_full`, with `Retry-After`), \
            or a store is unreachable", body = ErrorBody),
    )
)]
pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RunBody>,
) -> Result<Response, ApiError> {
    let streaming = body.stream || accepts_event_stream(&headers);
    let mode = body.mode.unwrap_or(RunMode::Headless);
    let (request, webhook) = run_request(body);
    let engine = engine_for_run(&state, &request)?;
    if streaming {
        let (run, _) = engine
            .begin_run_with_webhook(request, mode, webhook.as_deref())
            .await?;
        let events = engine.follow_run(&run.outcome.run_id, 0).await?;
        return Ok(event_stream(events));
    }
    // On its own task, so that a client going away does not drop the wait
    // midway (the run itself goes on either way).
    let task = tokio::spawn(async move {
        let (_, mut end) = engine
            .begin_run_with_webhook(request, mode, webhook.as_deref())
            .await?;
        end.wait().await
    });
    let run = task.await.map_err(|error| {
        tracing::error!(%error, "run task failed");
        ApiError::internal()
    })??;
    Ok(Json(run).into_response())
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|part| part.trim().starts_with("text/event-stream"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn event_stream_is_recognised_among_other_types() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream;q=0.9"),
        );
        assert!(accepts_event_stream(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!accepts_event_stream(&headers));
    }
}
