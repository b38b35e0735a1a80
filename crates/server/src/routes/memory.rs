//! `/memory/{scope}/{key}` and `/memory/{scope}`: agents' memory as JSON
//! values.
//!
//! Scopes are written `isolated:<agent_id>:<story_id>` (a pack-qualified
//! agent `pack/pm` as `pack.pm`), `shared` or `shared:<ns>`. Scopes and keys
//! are parsed into the store's id types first ([`MemoryScope::parse`],
//! [`MemoryKey::parse`]): anything that could leave the memory directory is
//! a 400 `invalid_id`.
//!
//! "Any JSON value" has one limit the spec does not name: nesting depth.
//! The memory stores refuse values nested deeper than
//! [`MAX_VALUE_DEPTH`](bmad2pf_engine::store::MAX_VALUE_DEPTH) (64 levels; see the engine's `store::values` for
//! why), answered 422 `invalid_request` before anything is written.

use crate::error::ApiError;
use crate::extract::{JsonBody, MemoryAddress, PathParams};
use crate::routes::Success;
use crate::state::AppState;
use crate::wire::ErrorBody;
use axum::Json;
use axum::extract::State;
use bmad2pf_engine::store::{MemoryKey, MemoryScope};
use serde_json::Value;

fn key_not_found(scope: &MemoryScope, key: &MemoryKey) -> ApiError {
    ApiError::not_found(format!("memory key `{key}` is not set in scope `{scope}`"))
}

/// Reads one value.
#[utoipa::path(get, path = "/memory/{scope}/{key}", tag = "memory",
    params(
        ("scope" = String, Path, description = "`isolated:<agent>:<story>`, `shared` or `shared:<ns>`"),
        ("key" = String, Path, description = "Memory key"),
    ),
    responses(
        (status = 200, description = "The stored JSON value", body = serde_json::Value),
        (status = 400, description = "Invalid scope or key", body = ErrorBody),
        (status = 404, description = "Not set", body = ErrorBody),
    ))]
pub async fn get_value(
    State(state): State<AppState>,
    MemoryAddress { scope, key }: MemoryAddress,
) -> Result<Json<Value>, ApiError> {
    let value = state.engine().memory().get(&scope, &key).await?;
    value.map(Json).ok_or_else(|| key_not_found(&scope, &key))
}

/// Sets one value (any JSON value).
#[utoipa::path(put, path = "/memory/{scope}/{key}", tag = "memory",
    params(
        ("scope" = String, Path, description = "`isolated:<agent>:<story>`, `shared` or `shared:<ns>`"),
        ("key" = String, Path, description = "Memory key"),
    ),
    request_body(content = serde_json::Value, description = "Any JSON value", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (durable when answered)", body = Success),
        (status = 400, description = "Invalid scope, key or JSON", body = ErrorBody),
        (status = 413, description = "Body above `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Nested deeper than 64 levels", body = ErrorBody),
    ))]
pub async fn put_value(
    State(state): State<AppState>,
    MemoryAddress { scope, key }: MemoryAddress,
    JsonBody(value): JsonBody<Value>,
) -> Result<Json<Success>, ApiError> {
    state.engine().memory().set(&scope, &key, value).await?;
    Ok(Json(Success::yes()))
}

/// Removes one value.
#[utoipa::path(delete, path = "/memory/{scope}/{key}", tag = "memory",
    params(
        ("scope" = String, Path, description = "`isolated:<agent>:<story>`, `shared` or `shared:<ns>`"),
        ("key" = String, Path, description = "Memory key"),
    ),
    responses(
        (status = 200, description = "Removed", body = Success),
        (status = 400, description = "Invalid scope or key", body = ErrorBody),
        (status = 404, description = "Not set", body = ErrorBody),
    ))]
pub async fn delete_value(
    State(state): State<AppState>,
    MemoryAddress { scope, key }: MemoryAddress,
) -> Result<Json<Success>, ApiError> {
    if state.engine().memory().delete(&scope, &key).await? {
        Ok(Json(Success::yes()))
    } else {
        Err(key_not_found(&scope, &key))
    }
}

/// Lists the keys of a scope.
#[utoipa::path(get, path = "/memory/{scope}", tag = "memory",
    params(("scope" = String, Path, description = "`isolated:<agent>:<story>`, `shared` or `shared:<ns>`")),
    responses(
        (status = 200, description = "Keys, sorted (empty for an unknown scope)", body = Vec<String>),
        (status = 400, description = "Invalid scope", body = ErrorBody),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    PathParams(scope): PathParams<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    let scope = MemoryScope::parse(&scope)?;
    Ok(Json(state.engine().memory().keys(&scope).await?))
}
