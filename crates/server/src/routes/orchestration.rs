//! `/orchestration`: a record of what external orchestrators say about their
//! workflows' agents (SPEC 5). No logic: any status may follow any other;
//! the store persists it, keeps the history and survives restarts.

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::routes::Success;
use crate::state::AppState;
use crate::wire::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bmad2pf_engine::store::{
    AgentState, StatusChange, StatusUpdate, WorkflowId, WorkflowStatus, WorkflowSummary, now_ms,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    pub workflow_id: String,
}

/// Body of `PUT /orchestration/status`. Ids are strings here and parsed
/// by the handler, so a bad id is a 400 `invalid_id` like everywhere else.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// The workflow; created by the report when absent.
    pub workflow_id: String,
    /// Must match the workflow's story when it exists.
    #[serde(default)]
    pub story_id: Option<String>,
    pub agent_id: String,
    pub status: AgentState,
    #[serde(default)]
    pub output_summary: Option<String>,
}

/// Body of `POST /orchestration/workflows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkflow {
    /// Generated (`wf-…`) when absent.
    #[serde(default)]
    pub workflow_id: Option<String>,
    pub story_id: String,
    /// Agents, all starting `pending`.
    #[serde(default)]
    pub agents: Vec<String>,
}

/// Answer to `POST /orchestration/cleanup`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupReport {
    /// Workflows removed.
    pub removed: usize,
}

fn workflow_not_found(id: &WorkflowId) -> ApiError {
    ApiError::not_found(format!("workflow `{id}` does not exist"))
}

/// One workflow's status.
#[utoipa::path(get, path = "/orchestration/status", tag = "orchestration", params(StatusQuery),
    responses(
        (status = 200, description = "The workflow", body = WorkflowStatus),
        (status = 400, description = "Missing or invalid workflow_id", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ))]
pub async fn get_status(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<StatusQuery>,
) -> Result<Json<WorkflowStatus>, ApiError> {
    let id = WorkflowId::parse(&query.workflow_id)?;
    let status = state.engine().status().get(&id).await?;
    status.map(Json).ok_or_else(|| workflow_not_found(&id))
}

/// Records an agent's status (creating the workflow when absent).
#[utoipa::path(put, path = "/orchestration/status", tag = "orchestration", request_body = StatusReport,
    responses(
        (status = 200, description = "The workflow as it now is", body = WorkflowStatus),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 409, description = "`story_id` differs from the workflow's", body = ErrorBody),
        (status = 422, description = "Invalid body (e.g. an unknown status)", body = ErrorBody),
    ))]
pub async fn put_status(
    State(state): State<AppState>,
    JsonBody(report): JsonBody<StatusReport>,
) -> Result<Json<WorkflowStatus>, ApiError> {
    let update = StatusUpdate {
        workflow_id: WorkflowId::parse(&report.workflow_id)?,
        story_id: report.story_id,
        agent_id: report.agent_id,
        status: report.status,
        output_summary: report.output_summary,
    };
    Ok(Json(state.engine().status().update(update).await?))
}

/// Lists workflows.
#[utoipa::path(get, path = "/orchestration/workflows", tag = "orchestration",
    responses((status = 200, description = "Workflows sorted by id", body = Vec<WorkflowSummary>)))]
pub async fn list_workflows(
    State(state): State<AppState>,
) -> Result<Json<Vec<WorkflowSummary>>, ApiError> {
    Ok(Json(state.engine().status().list().await?))
}

/// Creates a workflow.
#[utoipa::path(post, path = "/orchestration/workflows", tag = "orchestration", request_body = NewWorkflow,
    responses(
        (status = 201, description = "Created", body = WorkflowStatus),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 409, description = "The workflow exists", body = ErrorBody),
    ))]
pub async fn create_workflow(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewWorkflow>,
) -> Result<(StatusCode, Json<WorkflowStatus>), ApiError> {
    let id = body
        .workflow_id
        .as_deref()
        .map(WorkflowId::parse)
        .transpose()?;
    let created = state
        .engine()
        .status()
        .create(id, &body.story_id, &body.agents)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A workflow's status changes, oldest first.
#[utoipa::path(get, path = "/orchestration/workflows/{id}/history", tag = "orchestration",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "Changes, oldest first", body = Vec<StatusChange>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Vec<StatusChange>>, ApiError> {
    let id = WorkflowId::parse(&id)?;
    Ok(Json(state.engine().status().history(&id).await?))
}

/// Deletes a workflow and its history.
#[utoipa::path(delete, path = "/orchestration/workflows/{id}", tag = "orchestration",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "Deleted", body = Success),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ))]
pub async fn delete_workflow(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Success>, ApiError> {
    let id = WorkflowId::parse(&id)?;
    if state.engine().status().delete(&id).await? {
        Ok(Json(Success::yes()))
    } else {
        Err(workflow_not_found(&id))
    }
}

/// Drops workflows unchanged for `orchestrator.retention_days`.
#[utoipa::path(post, path = "/orchestration/cleanup", tag = "orchestration",
    responses((status = 200, description = "How many were removed", body = CleanupReport)))]
pub async fn cleanup(State(state): State<AppState>) -> Result<Json<CleanupReport>, ApiError> {
    let engine = state.engine();
    let retention = DAY * engine.config().orchestrator.retention_days;
    let removed = engine.status().cleanup(retention, now_ms()).await?;
    Ok(Json(CleanupReport { removed }))
}
