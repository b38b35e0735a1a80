//! Middleware every request passes through: per-request log line and
//! metrics, the JSON error shape for responses that did not come from a
//! handler (axum's 404 and 405, a swagger asset that does not exist…) and
//! for a handler that panicked, and the early 413 for a body declared too
//! large.
//!
//! Request ids are tower-http's `SetRequestId`/`PropagateRequestId`
//! (wired in [`crate::router`]): a client's `x-request-id` is kept, else a
//! UUID is made; both layers sit outside these so every log line and every
//! response carries it.
//!
//! Decisions the spec leaves open:
//! - A client's request id is echoed only when it is usable as one: 1 to
//!   [`MAX_REQUEST_ID_LEN`] visible ASCII characters. An empty id, one with
//!   spaces, control or non-ASCII bytes, or a longer one is replaced by a
//!   generated UUID ([`drop_unusable_request_id`]), so that every response
//!   and log line carries an id that can be searched for, and a client
//!   cannot make the server log kilobytes per request.
//! - The `method` label of the metrics is one of the standard methods or
//!   `other`: HTTP allows any token as a method, and each new label value
//!   would be a new series kept for the life of the process.
//! - A request whose `Content-Length` is above `server.max_body_bytes` is
//!   answered 413 before its body is read ([`refuse_declared_oversize`]);
//!   a chunked body is cut off by the body limit while it is read.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::failure::panic_message;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// Route label of requests that matched no route.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Method label of requests with a non-standard method.
const OTHER_METHOD: &str = "other";

/// Longest client-sent `x-request-id` that is echoed (a UUID has 36 characters).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Removes a client's `x-request-id` that is not usable as an id (see the
/// module doc), so that the request id layer generates one instead.
pub async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let usable = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes.iter().all(|b| b.is_ascii_graphic())
    };
    let headers = request.headers_mut();
    if !headers.get_all(REQUEST_ID).iter().all(usable) {
        headers.remove(REQUEST_ID);
    }
    next.run(request).await
}

/// 413 for a request whose `Content-Length` is above `limit`, without
/// waiting for (or reading) the body.
pub async fn refuse_declared_oversize(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response()
        }
        _ => next.run(request).await,
    }
}

/// The metrics label of `method`: its name if standard, else [`OTHER_METHOD`].
fn method_label(method: &Method) -> &'static str {
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or(OTHER_METHOD, |m| m.as_str())
}

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
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let response = next.run(request).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics()
        .record(method_label(&method), &route, status, latency);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::error!(request_id, %method, route, path, status, latency_ms, "request");
    } else {
        tracing::info!(request_id, %method, route, path, status, latency_ms, "request");
    }
    response
}

/// The most of an error body [`json_errors`] reads to keep as its message.
const MAX_REASON_BYTES: usize = 1024;

/// `body` as trimmed text, when it is non-empty UTF-8 of at most
/// [`MAX_REASON_BYTES`].
async fn short_text(body: Body) -> Option<String> {
    let bytes = axum::body::to_bytes(body, MAX_REASON_BYTES).await.ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Gives error responses that are not JSON yet the API's error shape,
/// keeping their status and headers (`Allow` on a 405). A client error
/// that came with a short text (the MCP SDK's `Not Found: Session not
/// found`, its reason a body is not JSON-RPC) keeps that text as its
/// message: the status alone would say `no such route` of `/mcp`. A
/// handler that panics (a bug) answers 500 `internal_error` to its own
/// request; uncaught, the panic would close the connection, and with it
/// every other request on an HTTP/2 connection.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            tracing::error!(
                panic = panic_message(&*panic),
                "a request's handler panicked"
            );
            return ApiError::internal().into_response();
        }
    };
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut error = ApiError::from_status(status);
    if status.is_client_error()
        && let Some(reason) = short_text(body).await
    {
        error.message = reason;
    }
    let replacement = error.into_response();
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
