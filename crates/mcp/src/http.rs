//! `/mcp` over streamable HTTP: the SDK's service, with each POSTed JSON
//! body checked first ([`Incoming::check`]) so a malformed one gets the
//! answer the MCP transport and JSON-RPC prescribe.
//!
//! The SDK answers every body it cannot read as a message with 415
//! Unsupported Media Type, even when the content type was right: a body
//! that is not JSON, invalid UTF-8, empty, `{"foo":1}` or a batch. Here a
//! POST with `Content-Type: application/json` whose body is not a message
//! the server takes is answered 400 Bad Request with a JSON-RPC error:
//! `parse error` (-32700) for text that is not JSON, `invalid request`
//! (-32600) for JSON that is no JSON-RPC message, `invalid params`
//! (-32602) with the request's id for a known method whose params do not
//! fit. Everything else — other methods, other content types, the bodies
//! that fit — goes to the SDK as it came.

use crate::incoming::Incoming;
use crate::server::McpServer;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use rmcp::ErrorData as McpError;
use rmcp::model::{RequestId, ServerJsonRpcMessage};
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// The service mounted at `/mcp`: the SDK's streamable HTTP service behind
/// the body check. Cheap to clone (axum clones it per request).
#[derive(Clone)]
pub struct McpHttpService {
    sdk: StreamableHttpService<McpServer, LocalSessionManager>,
    /// The SDK's own limit on a request body, kept here because the body is
    /// read here first.
    max_body_bytes: usize,
}

impl McpHttpService {
    pub(crate) fn new(
        sdk: StreamableHttpService<McpServer, LocalSessionManager>,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            sdk,
            max_body_bytes,
        }
    }
}

impl Service<Request<Body>> for McpHttpService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let sdk = self.sdk.clone();
        let max_body_bytes = self.max_body_bytes;
        Box::pin(async move {
            if request.method() != Method::POST || !declares_json(&request) {
                return Ok(sdk.oneshot(request).await.into_response());
            }
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
                Ok(bytes) => bytes,
                Err(error) => return Ok(unreadable(error, max_body_bytes)),
            };
            let refusal = match Incoming::check(&bytes) {
                Incoming::Message(_) => {
                    let request = Request::from_parts(parts, Body::from(bytes));
                    return Ok(sdk.oneshot(request).await.into_response());
                }
                Incoming::NotJson(reason) => (
                    None,
                    McpError::parse_error(
                        format!("parse error: the body is not JSON ({reason})"),
                        None,
                    ),
                ),
                Incoming::Refused { id, error } => (id, error),
                Incoming::UnfitNotification(reason) => (
                    None,
                    McpError::invalid_request(
                        format!(
                            "invalid request: the notification does not fit its method ({reason})"
                        ),
                        None,
                    ),
                ),
            };
            Ok(bad_request(refusal.0, refusal.1))
        })
    }
}

/// Whether the request says its body is JSON (the SDK refuses any other
/// content type itself, with 415).
fn declares_json(request: &Request<Body>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// 400 with the JSON-RPC error `error`, to `id` when there is one.
fn bad_request(id: Option<RequestId>, error: McpError) -> Response {
    let message = ServerJsonRpcMessage::error(error, id);
    match serde_json::to_vec(&message) {
        Ok(body) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(body),
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The answer to a body that could not be read: too long (413, as the SDK
/// answers), or broken off or stalled (400).
fn unreadable(error: axum::Error, max_body_bytes: usize) -> Response {
    let too_long = error
        .into_inner()
        .downcast_ref::<http_body_util::LengthLimitError>()
        .is_some();
    if too_long {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {max_body_bytes} bytes"),
        )
            .into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            "Bad Request: the request body could not be read",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_content_type_is_checked_here() {
        let with = |content_type: &str| {
            Request::post("/mcp")
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::empty())
                .map(|request| declares_json(&request))
                .unwrap_or(false)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/json-seq"));
    }
}
