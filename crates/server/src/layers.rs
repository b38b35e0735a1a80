//! Middleware every request passes through: per-request log line and
//! metrics, and the JSON error shape for responses that did not come from a
//! handler (axum's 404 and 405, a swagger asset that does not exist…).
//!
//! Request ids are tower-http's `SetRequestId`/`PropagateRequestId`
//! (wired in [`crate::router`]): a client's `x-request-id` is kept, else a
//! UUID is made; both layers sit outside these so every log line and every
//! response carries it.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// Route label of requests that matched no route.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Records the request in the metrics and logs one structured line:
/// request id, method, route template, path, status, latency.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let path = request.uri().path().to_string();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let response = next.run(request).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics()
        .record(method.as_str(), &route, status, latency);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::error!(request_id, %method, route, path, status, latency_ms, "request");
    } else {
        tracing::info!(request_id, %method, route, path, status, latency_ms, "request");
    }
    response
}

/// Gives error responses that are not JSON yet the API's error shape,
/// keeping their status and headers (`Allow` on a 405).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = ApiError::from_status(status).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    if let Some(content_type) = new_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    } else {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Response::from_parts(parts, Body::new(body))
}
