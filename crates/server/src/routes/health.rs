//! `GET /health`, `GET /metrics`, `GET /openapi.json`: the service's view of
//! itself.
//!
//! `/health` never requires the API key (load balancers have none) and
//! always answers 200 while the process serves HTTP: `status` is `healthy`
//! when every backend answers and `degraded` when one does not, with the
//! reason under `backends`. A 200 for `degraded` keeps an orchestrator from
//! restarting a process whose only problem is, say, an unreachable Redis —
//! restarting would not fix it; alerting on `status` does.

use crate::metrics::{HttpTotals, encode};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::stats::EngineStats;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Answer to `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`, or `degraded` when a backend fails.
    pub status: &'static str,
    /// bmad2pf version.
    pub version: &'static str,
    pub uptime_s: u64,
    pub bundle: BundleSummary,
    /// Backend → `ok` or `error: <reason>`.
    pub backends: BTreeMap<String, String>,
    pub metrics: MetricsSummary,
}

/// What bundle is loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct BundleSummary {
    pub agents: usize,
    pub flows: usize,
    pub source_hash: String,
    pub generator: String,
    pub schema_version: u32,
}

/// Headline counters (all of them are on `/metrics`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsSummary {
    #[schema(value_type = Object)]
    pub http: HttpTotals,
    /// Finished runs by status.
    #[schema(value_type = Object)]
    pub runs: BTreeMap<&'static str, u64>,
    pub llm_calls: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

impl MetricsSummary {
    fn new(http: HttpTotals, engine: EngineStats) -> Self {
        Self {
            http,
            runs: engine.runs,
            llm_calls: engine.llm_calls,
            tokens_in: engine.tokens_in,
            tokens_out: engine.tokens_out,
        }
    }
}

/// Liveness and backend health.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "`healthy` or `degraded` (still 200; see `backends`)", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let engine = state.engine();
    let backends: BTreeMap<String, String> = engine
        .health()
        .await
        .into_iter()
        .map(|(name, result)| {
            let verdict = match result {
                Ok(()) => "ok".to_string(),
                Err(reason) => format!("error: {reason}"),
            };
            (name.to_string(), verdict)
        })
        .collect();
    let healthy = backends.values().all(|v| v == "ok");
    let bundle = engine.bundle();
    Json(Health {
        status: if healthy { "healthy" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started().elapsed().as_secs(),
        bundle: BundleSummary {
            agents: bundle.agents.len(),
            flows: bundle.flows.len(),
            source_hash: bundle.source_hash.clone(),
            generator: bundle.generator.clone(),
            schema_version: bundle.schema_version,
        },
        backends,
        metrics: MetricsSummary::new(state.metrics().totals(), engine.stats()),
    })
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = encode(
        state.metrics(),
        &state.engine().stats(),
        state.started().elapsed(),
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1 document of this API and bundle", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi().as_ref().clone())
}
