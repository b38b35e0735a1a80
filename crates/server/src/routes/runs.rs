//! `/runs`: runs as resources (SPEC 8.2) — start one in the background,
//! list them, read one, follow its events, wait for it, answer its
//! questions (resume), cancel it, see what its LLM calls used.
//!
//! Every route works for a run of any process on the same store (a CLI run
//! beside the server, another replica on Redis): the engine reads the
//! store and follows its own runs live.
//!
//! The event stream (also `POST /run`'s, see [`event_stream`]) carries
//! each event's `id`; a client that reconnects with `Last-Event-ID` (or
//! `?after=N`) gets what it missed, then live events, with no gap and no
//! repeat. The stream closes after `done`.

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::state::AppState;
use crate::story_ids::engine_for_run;
use crate::wire::{ErrorBody, RunStreamEventDoc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::outcome::{RunRequest, RunStatus};
use bmad2pf_engine::runs::interrupts::Answer;
use bmad2pf_engine::runs::{
    Budget, Cancelled, MAX_PAGE, Run, RunFilter, RunMode, RunPage, RunUsage,
};
use bmad2pf_engine::store::StoredEvent;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

/// Interval of the `: keep-alive` comment on an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The highest event id a client may name (ids are counted from 1; the
/// bound keeps them within every JSON number reader's exact integers).
pub const MAX_EVENT_ID: u64 = i64::MAX as u64;
/// `GET /runs` page size when `limit` is not given.
const DEFAULT_PAGE: usize = 20;
/// `GET /runs/{id}/wait` timeout when `timeout_s` is not given, and its maximum.
const DEFAULT_WAIT_S: u64 = 30;
const MAX_WAIT_S: u64 = 300;

/// Body of `POST /runs`: `POST /run`'s without `stream` (a background run
/// is followed at `GET /runs/{id}/events`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
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
    /// `interactive` (the default): an agent's question (`ask_human`)
    /// interrupts the run until `POST /runs/{id}/resume` answers it.
    /// `headless`: questions are answered on stated assumptions and listed
    /// in the run's `open_questions`.
    #[serde(default)]
    pub mode: Option<RunMode>,
    /// Stop the run once it has used this much (see `POST /run`).
    #[serde(default)]
    pub budget: Option<Budget>,
    /// An http(s) URL told when the run ends or waits for a person, in a
    /// signed POST (SPEC 8.5; see docs/operations.md, "Webhooks"). Its host
    /// must be in runtime.yaml `webhooks.allowed_hosts` when that is set
    /// (else 422 `invalid_webhook`), and the server needs its signing
    /// secret (else 422 `webhook_secret_missing`).
    #[serde(default)]
    pub webhook: Option<String>,
}

/// `202` answer of `POST /runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    pub run_id: String,
    /// `queued` (or `running`, when it started at once; `error` for a
    /// resume whose flow or agent is gone from the bundle).
    pub status: RunStatus,
}

/// `202` answer of cancelling a running run.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelRequested {
    pub run_id: String,
    /// `running`: it stops within a second.
    pub status: RunStatus,
    pub cancel_requested: bool,
}

/// Starts a run in the background.
#[utoipa::path(
    post,
    path = "/runs",
    tag = "runs",
    request_body = NewRun,
    responses(
        (status = 202, description = "Stored and queued; `Location` names the run", body = RunAccepted),
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
pub async fn start_run(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewRun>,
) -> Result<Response, ApiError> {
    let mode = body.mode.unwrap_or(RunMode::Interactive);
    let request = RunRequest {
        flow: body.flow,
        story_id: body.story_id,
        input: body.input,
        force: body.force,
        budget: body.budget,
    };
    let (run, _) = engine_for_run(&state, &request)?
        .begin_run_with_webhook(request, mode, body.webhook.as_deref())
        .await?;
    let location = HeaderValue::from_str(&format!("/runs/{}", run.outcome.run_id))
        .map_err(|_| ApiError::internal())?;
    let accepted = RunAccepted {
        run_id: run.outcome.run_id,
        status: run.outcome.status,
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(accepted),
    )
        .into_response())
}

/// Query of `GET /runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunListQuery {
    /// Only runs of this story.
    pub story_id: Option<String>,
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only runs in one of these statuses, comma-separated
    /// (`queued,running`).
    pub status: Option<String>,
    /// Runs per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists runs, newest first.
#[utoipa::path(
    get,
    path = "/runs",
    tag = "runs",
    params(RunListQuery),
    responses(
        (status = 200, description = "A page of runs, newest first", body = RunPage),
        (status = 400, description = "Invalid cursor or query", body = ErrorBody),
        (status = 422, description = "Unknown status or a limit out of range", body = ErrorBody),
    )
)]
pub async fn list_runs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<RunListQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let statuses = query
        .status
        .as_deref()
        .map(parse_statuses)
        .transpose()?
        .unwrap_or_default();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(unprocessable(
            "limit",
            format!("`limit` must be between 1 and {MAX_PAGE}"),
        ));
    }
    let filter = RunFilter {
        story_id: query.story_id,
        flow: query.flow,
        statuses,
        limit,
        cursor: query.cursor,
    };
    Ok(Json(state.engine().list_runs(filter).await?))
}

/// `queued,running`: known statuses, comma-separated, nothing else (the
/// pattern the OpenAPI document gives `status`).
fn parse_statuses(list: &str) -> Result<Vec<RunStatus>, ApiError> {
    list.split(',')
        .map(|name| {
            RunStatus::parse(name).ok_or_else(|| {
                let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                unprocessable(
                    "status",
                    format!("unknown status {name:?}; known: {}", known.join(", ")),
                )
            })
        })
        .collect()
}

fn unprocessable(field: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
        .with_details(serde_json::json!({ "field": field }))
}

/// Reads a run.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 400, description = "Invalid run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(state.engine().get_run(&id).await?))
}

/// Query of `GET /runs/{id}/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events after this id (as `Last-Event-ID`, which wins).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub after: Option<u64>,
}

/// Follows a run's events.
#[utoipa::path(
    get,
    path = "/runs/{id}/events",
    tag = "runs",
    params(("id" = String, Path, description = "Run id"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event received")),
    responses(
        (status = 200, description = "Server-Sent Events: those stored after the given id, \
            then live ones; the stream closes after `done`", body = RunStreamEventDoc,
            content_type = "text/event-stream"),
        (status = 400, description = "Invalid run id or `Last-Event-ID`", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 422, description = "`after` above 2^63 - 1", body = ErrorBody),
    )
)]
pub async fn run_events(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if query.after.is_some_and(|after| after > MAX_EVENT_ID) {
        return Err(unprocessable(
            "after",
            format!("`after` must be at most {MAX_EVENT_ID}"),
        ));
    }
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|id| *id <= MAX_EVENT_ID)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_request",
                    "`Last-Event-ID` must be an event id (a number)",
                )
            })?,
        None => query.after.unwrap_or(0),
    };
    let events = state.engine().follow_run(&id, after).await?;
    Ok(event_stream(events))
}

/// Query of `GET /runs/{id}/wait`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Seconds to wait at most, up to 300 (default 30).
    #[param(minimum = 0, maximum = 300)]
    pub timeout_s: Option<u64>,
}

/// Waits for a run to end.
#[utoipa::path(
    get,
    path = "/runs/{id}/wait",
    tag = "runs",
    params(("id" = String, Path, description = "Run id"), WaitQuery),
    responses(
        (status = 200, description = "The run, once it has ended or waits for a person \
            (`interrupted`), or at the timeout (its `status` says which)", body = Run),
        (status = 400, description = "Invalid run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 422, description = "`timeout_s` above 300", body = ErrorBody),
    )
)]
pub async fn wait_run(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<WaitQuery>,
) -> Result<Json<Run>, ApiError> {
    let timeout = query.timeout_s.unwrap_or(DEFAULT_WAIT_S);
    if timeout > MAX_WAIT_S {
        return Err(unprocessable(
            "timeout_s",
            format!("`timeout_s` must be at most {MAX_WAIT_S}"),
        ));
    }
    let run = state
        .engine()
        .wait_run(&id, Duration::from_secs(timeout))
        .await?;
    Ok(Json(run))
}

/// Cancels a queued, running or interrupted run.
#[utoipa::path(
    post,
    path = "/runs/{id}/cancel",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run, ended at once (it was queued or interrupted, or already cancelled)", body = Run),
        (status = 202, description = "The run is running; it stops within a second", body = CancelRequested),
        (status = 400, description = "Invalid run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run ended other than cancelled (`run_not_active`, `details.status`)", body = ErrorBody),
    )
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    Ok(match state.engine().cancel_run(&id).await? {
        Cancelled::Ended(run) => Json(run).into_response(),
        Cancelled::Requested { run_id } => (
            StatusCode::ACCEPTED,
            Json(CancelRequested {
                run_id,
                status: RunStatus::Running,
                cancel_requested: true,
            }),
        )
            .into_response(),
    })
}

/// Answers a question of an interrupted run, which then continues.
#[utoipa::path(
    post,
    path = "/runs/{id}/resume",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    request_body = Answer,
    responses(
        (status = 202, description = "Answered; the run is queued to continue (or, when its \
            flow or agent is gone from the bundle, ended `error` / `bundle_changed`)", body = RunAccepted),
        (status = 400, description = "Invalid run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run waits for no answer (`not_interrupted`, \
            `details.status`), or the interrupt is not open (`interrupt_not_open`, \
            `details.open`)", body = ErrorBody),
        (status = 422, description = "An answer that does not fit the question \
            (`invalid_answer`, `details.options` for a choice), or an invalid body", body = ErrorBody),
        (status = 503, description = "Too many runs queued (`queue_full`, with `Retry-After`; \
            the run still waits for the answer), or a store is unreachable", body = ErrorBody),
    )
)]
pub async fn resume_run(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(answer): JsonBody<Answer>,
) -> Result<Response, ApiError> {
    let (run, _) = state.engine().resume_run(&id, &answer, None).await?;
    let accepted = RunAccepted {
        run_id: run.outcome.run_id,
        status: run.outcome.status,
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Query of `GET /runs/{id}/usage`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Also list each call.
    #[serde(default)]
    pub calls: bool,
}

/// What a run's LLM calls used.
#[utoipa::path(
    get,
    path = "/runs/{id}/usage",
    tag = "runs",
    params(("id" = String, Path, description = "Run id"), UsageQuery),
    responses(
        (status = 200, description = "Totals, by agent and by model (and each call with \
            `calls=true`)", body = RunUsage),
        (status = 400, description = "Invalid run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub async fn run_usage(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<RunUsage>, ApiError> {
    Ok(Json(state.engine().run_usage(&id, query.calls).await?))
}

/// A run's events as a Server-Sent Events response: `id`, `event` and
/// `data` per event, a keep-alive comment when idle, and the headers that
/// keep proxies from holding events back.
pub fn event_stream(events: mpsc::Receiver<Arc<StoredEvent>>) -> Response {
    let stream = futures::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|event| {
            let sse = Event::default()
                .id(event.id.to_string())
                .event(event.event.as_str())
                .data(event.data.as_str());
            (Ok::<Event, Infallible>(sse), events)
        })
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
