//! `POST /run`: run a flow for a story, answered as JSON or streamed as
//! Server-Sent Events.
//!
//! Either way the run is spawned as its own task: a client that disconnects
//! (or whose request is cancelled) does not cancel the run, which finishes
//! and writes its documents.
//!
//! Streaming (`Accept: text/event-stream` or `"stream": true`): the response
//! starts once the run has produced its first event (or ended), so that a
//! request the engine refuses outright — unknown flow, the flow already
//! running for the story — still gets its HTTP status (404, 409) instead
//! of a 200 stream holding an error. After that: events
//! `progress`, `token`, `result` as they happen, then `done` with the same
//! body a JSON request gets; `error` `{code, message}` when the run ended
//! without an outcome; a `: keep-alive` comment every 15 seconds.
//!
//! A bad story id names documents that could not exist: the engine refuses
//! it as an id error, 400 `invalid_id` like every other id (SPEC 5
//! "Rules"), on both paths.

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::wire::{ErrorBody, RunStreamEventDoc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::outcome::{RunEvent, RunOutcome, RunRequest};
use bmad2pf_engine::{Engine, EngineError};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use utoipa::ToSchema;

/// Interval of the `: keep-alive` comment on an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
}

/// Runs a flow.
#[utoipa::path(
    post,
    path = "/run",
    tag = "runs",
    request_body = RunBody,
    responses(
        (status = 200, description = "The run's outcome; with streaming, an event stream: \
            `progress`, `token`, `result` events, then `done` (this body) or `error`",
            content((RunOutcome = "application/json"), (RunStreamEventDoc = "text/event-stream"))),
        (status = 400, description = "Invalid story id", body = ErrorBody),
        (status = 404, description = "Unknown flow", body = ErrorBody),
        (status = 409, description = "The flow is already running for this story \
            (`run_in_progress`, `details.run_id`)", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RunBody>,
) -> Result<Response, ApiError> {
    let streaming = body.stream || accepts_event_stream(&headers);
    let request = RunRequest {
        flow: body.flow,
        story_id: body.story_id,
        input: body.input,
        force: body.force,
    };
    let engine = state.engine();
    if streaming {
        return stream_run(engine, request).await;
    }
    let task = tokio::spawn(async move { engine.run(request, None).await });
    let outcome = joined(task.await)?.map_err(ApiError::from)?;
    Ok(Json(outcome).into_response())
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

/// The run task's result, with a panicked task turned into a 500.
fn joined(
    result: Result<Result<RunOutcome, EngineError>, JoinError>,
) -> Result<Result<RunOutcome, EngineError>, ApiError> {
    result.map_err(|error| {
        tracing::error!(%error, "run task failed");
        ApiError::internal()
    })
}

/// What ended the wait for a streamed run's start.
enum Start {
    /// The run produced its first event.
    Event(RunEvent),
    /// The run ended before producing any event.
    Finished(Result<Result<RunOutcome, EngineError>, JoinError>),
}

async fn stream_run(engine: Arc<Engine>, request: RunRequest) -> Result<Response, ApiError> {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<RunEvent>();
    let mut task: JoinHandle<_> =
        tokio::spawn(async move { engine.run(request, Some(events_tx)).await });
    let start = tokio::select! {
        biased;
        Some(event) = events_rx.recv() => Start::Event(event),
        result = &mut task => Start::Finished(result),
    };
    let (sse_tx, sse_rx) = mpsc::unbounded_channel::<Event>();
    match start {
        Start::Finished(result) => {
            // Refused before it began: answer with the HTTP status.
            let outcome = joined(result)?.map_err(ApiError::from)?;
            forward_buffered(&mut events_rx, &sse_tx);
            let _ = sse_tx.send(done_event(&outcome));
        }
        Start::Event(first) => {
            let _ = sse_tx.send(run_event(&first));
            tokio::spawn(async move {
                // Sends fail only when the client has gone; the run goes on regardless.
                while let Some(event) = events_rx.recv().await {
                    let _ = sse_tx.send(run_event(&event));
                }
                let last = match joined(task.await) {
                    Ok(Ok(outcome)) => done_event(&outcome),
                    Ok(Err(error)) => error_event(&ApiError::from(error)),
                    Err(error) => error_event(&error),
                };
                let _ = sse_tx.send(last);
            });
        }
    }
    let stream = futures::stream::unfold(sse_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<Event, Infallible>(event), rx))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Events already sent by a run that has ended.
fn forward_buffered(
    events: &mut mpsc::UnboundedReceiver<RunEvent>,
    sse: &mpsc::UnboundedSender<Event>,
) {
    while let Ok(event) = events.try_recv() {
        let _ = sse.send(run_event(&event));
    }
}

/// An engine event as an SSE event: its tag is the event name, its data the JSON.
fn run_event(event: &RunEvent) -> Event {
    let value = serde_json::to_value(event).unwrap_or_default();
    let name = value
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("message");
    Event::default().event(name).data(
        value
            .get("data")
            .map(ToString::to_string)
            .unwrap_or_default(),
    )
}

fn done_event(outcome: &RunOutcome) -> Event {
    Event::default()
        .event("done")
        .data(serde_json::to_string(outcome).unwrap_or_default())
}

fn error_event(error: &ApiError) -> Event {
    let body = serde_json::json!({ "code": error.code, "message": error.message });
    Event::default().event("error").data(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
