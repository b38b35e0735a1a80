//! The handlers, one module per area of SPEC 5, and the route table.
//!
//! Handlers are thin: parse and validate (ids through the store's id
//! types), call the engine or a store, shape the answer. Each carries a
//! `#[utoipa::path]` so the OpenAPI document is generated from the real
//! handlers; [`crate::openapi`] lists them and a test checks that every
//! route below is in the document.

pub mod agent;
pub mod bundle;
pub mod docs;
pub mod health;
pub mod memory;
pub mod orchestration;
pub mod run;
pub mod runs;

use crate::state::AppState;
use axum::Router;
use axum::routing::{delete, get, post};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

impl Success {
    pub fn yes() -> Self {
        Self { success: true }
    }
}

/// Every API route (the docs page is added by [`crate::router`]).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/run", post(run::run))
        .route("/runs", get(runs::list_runs).post(runs::start_run))
        .route("/runs/{id}", get(runs::get_run))
        .route("/runs/{id}/events", get(runs::run_events))
        .route("/runs/{id}/wait", get(runs::wait_run))
        .route("/runs/{id}/cancel", post(runs::cancel_run))
        .route("/runs/{id}/resume", post(runs::resume_run))
        .route("/runs/{id}/usage", get(runs::run_usage))
        .route("/flows", get(bundle::flows))
        .route("/agents", get(bundle::agents))
        .route("/agents/{id}", get(bundle::agent))
        .route("/doc", get(docs::list_docs))
        .route(
            "/doc/{id}",
            get(docs::get_doc)
                .put(docs::put_doc)
                .delete(docs::delete_doc),
        )
        .route("/doc/{id}/status", get(docs::doc_status))
        .route("/doc/{id}/versions", get(docs::doc_versions))
        .route("/memory/{scope}", get(memory::list_keys))
        .route(
            "/memory/{scope}/{key}",
            get(memory::get_value)
                .put(memory::put_value)
                .delete(memory::delete_value),
        )
        .route("/agent/{id}/ready", get(agent::ready))
        .route("/agent/{id}/execute", post(agent::execute))
        .route(
            "/orchestration/status",
            get(orchestration::get_status).put(orchestration::put_status),
        )
        .route(
            "/orchestration/workflows",
            get(orchestration::list_workflows).post(orchestration::create_workflow),
        )
        .route(
            "/orchestration/workflows/{id}",
            delete(orchestration::delete_workflow),
        )
        .route(
            "/orchestration/workflows/{id}/history",
            get(orchestration::history),
        )
        .route("/orchestration/cleanup", post(orchestration::cleanup))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
}
