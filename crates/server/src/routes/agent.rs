//! `GET /agent/{id}/ready` and `POST /agent/{id}/execute`: one agent,
//! outside a flow.
//!
//! Readiness says whether the agent could run now for a story (its required
//! documents and upstream agents). Execute runs it statelessly: documents
//! come in the request, nothing is read from or written to the stores; if a
//! required document is missing the answer is `needs_input` without an LLM
//! call (SPEC 5). The logic is the engine's; this is the HTTP face of it.
//!
//! Like every other body, the execute body refuses unknown fields (422
//! naming the field), so a misspelt `documnets` is not silently an empty
//! set of documents. The engine checks the story id of `/ready` first, so a
//! bad one is a 400 `invalid_id` whatever the agent requires.

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::state::AppState;
use crate::story_ids::check_story_id_length;
use crate::wire::ErrorBody;
use axum::Json;
use axum::extract::State;
use bmad2pf_engine::outcome::{ExecuteOutcome, ExecuteRequest, Readiness};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadyQuery {
    /// The story to check the agent's documents for.
    pub story_id: String,
}

/// Body of `POST /agent/{id}/execute`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExecuteRequest)]
pub struct ExecuteBody {
    pub instruction: String,
    /// Document name → content, standing in for the document store.
    #[serde(default)]
    pub documents: BTreeMap<String, String>,
    /// Made available to the prompt as `context`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context_data: Map<String, Value>,
    #[serde(default)]
    pub execution_id: Option<String>,
}

impl From<ExecuteBody> for ExecuteRequest {
    fn from(body: ExecuteBody) -> Self {
        Self {
            instruction: body.instruction,
            documents: body.documents,
            context_data: body.context_data,
            execution_id: body.execution_id,
        }
    }
}

/// Whether an agent could run now for a story.
#[utoipa::path(get, path = "/agent/{id}/ready", tag = "agents",
    params(("id" = String, Path, description = "Agent id"), ReadyQuery),
    responses(
        (status = 200, description = "Readiness", body = Readiness),
        (status = 400, description = "Missing or invalid story_id", body = ErrorBody),
        (status = 404, description = "Unknown agent", body = ErrorBody),
    ))]
pub async fn ready(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<ReadyQuery>,
) -> Result<Json<Readiness>, ApiError> {
    let (engine, story_limit) = state.engine_and_story_limit();
    let readiness = engine.readiness(&id, &query.story_id).await?;
    check_story_id_length(story_limit, &query.story_id)?;
    Ok(Json(readiness))
}

/// Executes one agent statelessly.
#[utoipa::path(post, path = "/agent/{id}/execute", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    request_body = ExecuteBody,
    responses(
        (status = 200, description = "`completed`, `needs_input` (missing documents listed) or `failed`",
            body = ExecuteOutcome),
        (status = 404, description = "Unknown agent", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    ))]
pub async fn execute(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<ExecuteBody>,
) -> Result<Json<ExecuteOutcome>, ApiError> {
    let engine = state.engine();
    let request = ExecuteRequest::from(body);
    // Its own task, like runs: a client that goes away does not cut an LLM call short.
    let task = tokio::spawn(async move { engine.execute(&id, request).await });
    let outcome = task.await.map_err(|error| {
        tracing::error!(%error, "execute task failed");
        ApiError::internal()
    })??;
    Ok(Json(outcome))
}
