//! The bmad2pf HTTP server: axum routes over the engine (SPEC 5).
//!
//! HTTP only: request parsing and validation, the JSON error shape, SSE
//! streaming of runs, OpenAPI and the docs page, auth, CORS, request ids,
//! logs and metrics. Every decision about running agents stays in the
//! engine; every byte stored goes through the engine's stores.
//!
//! # Layout
//! - [`router`] builds the app: the routes of [`routes`] plus the docs page
//!   and the web [`console`] and the MCP endpoint (`/mcp`, from the
//!   `bmad2pf-mcp` crate), wrapped in the layers below.
//! - [`serve()`](serve::serve) binds, serves and shuts down gracefully
//!   ([`serve::shutdown_signal`] for SIGINT/SIGTERM).
//! - [`AppState`]: the swappable engine, the API key, request metrics.
//! - [`error`]: [`ApiError`], the one error shape, and the one mapping from
//!   engine and store errors to statuses.
//! - [`extract`]: body, path and query extractors that fail as [`ApiError`]s.
//! - [`auth`], [`layers`], [`metrics`]: the middleware.
//! - [`openapi`]: the generated OpenAPI 3.1 document, fitted to a bundle
//!   (its one limit on story ids is `story_ids`, which the routes hold to);
//!   [`wire`]: schemas of the error body and of the store bodies.
//!
//! # Layers, outside in
//! unusable client request id dropped → request id (set, then propagated
//! to the response) → per-request log and metrics → JSON error shape → CORS
//! (only with `server.cors_origins`) → API key → 413 for a declared
//! `Content-Length` above the limit → body limit → routes.
//!
//! # Decisions
//! - `/health` is public and answers 200 even when `degraded` (see
//!   [`routes::health`]); `/docs` and `/openapi.json` need the key like the
//!   rest when auth is on. The console's static files (`/`, `/console/…`)
//!   do not: the page asks for the key on the API's first 401.
//! - `DELETE` of something absent is a 404, like `GET`.
//! - Ids in JSON bodies and queries (`workflow_id`, `story_id` of `/run`,
//!   `/doc` and `/agent/{id}/ready`) are validated like path ids: 400
//!   `invalid_id` (the stores' and the engine's id errors).
//! - Without `server.cors_origins` there is no CORS layer, so `OPTIONS` is
//!   like any other method a route lacks: 405 (404 on an unknown route, 401
//!   without the key).
//! - A streamed run answers once it has started, so a refused run gets its
//!   HTTP status (see [`routes::run`]).

pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
pub mod layers;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod state;
mod story_ids;
pub mod wire;

pub use error::{ApiError, ServerError};
pub use openapi::openapi_document;
pub use serve::{ServeOptions, serve, serve_on, serve_state, shutdown_signal};
pub use state::AppState;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the interactive docs page lives.
const DOCS_PATH: &str = "/docs";
/// Where MCP clients connect (streamable HTTP).
const MCP_PATH: &str = "/mcp";

/// The whole app for `state`: API routes, docs page and middleware.
/// Settings come from the state's engine's `server` config at build time.
pub fn router(state: AppState) -> Result<Router, ServerError> {
    let server = state.engine().config().server.clone();
    let request_id = HeaderName::from_static(layers::REQUEST_ID);
    // No online validator: Swagger UI would otherwise load a badge from
    // validator.swagger.io (sending it this server's URL) whenever the page
    // is served under a host other than localhost.
    let docs_page: Router<AppState> = SwaggerUi::new(DOCS_PATH)
        .config(Config::from("/openapi.json").validator_url("none"))
        .into();
    // MCP over streamable HTTP (SPEC 5 auth applies, as to every route but
    // /health): the MCP crate's service, over this state's current engine.
    let mcp = bmad2pf_mcp::streamable_http_service(state.clone(), state.api_key().is_some());
    let app = routes::api_routes()
        .merge(docs_page)
        .route_service(MCP_PATH, mcp)
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(server.max_body_bytes))
        .layer(from_fn_with_state(
            server.max_body_bytes,
            layers::refuse_declared_oversize,
        ))
        .layer(from_fn_with_state(state.clone(), auth::require_api_key));
    // CORS only when origins are configured: the CORS layer answers every
    // OPTIONS request itself (200, empty), which without CORS would hide
    // unknown routes, 405s and the API key check.
    let app = match cors(&server.cors_origins)? {
        Some(cors) => app.layer(cors),
        None => app,
    };
    let app = app
        .layer(from_fn(layers::json_errors))
        .layer(from_fn_with_state(state.clone(), layers::observe))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(from_fn(layers::drop_unusable_request_id))
        .with_state(state);
    Ok(app)
}

/// CORS for `server.cors_origins`: none configured means no CORS layer
/// (same-origin only); `*` allows any origin.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, ServerError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static(layers::REQUEST_ID),
        ])
        .expose_headers([HeaderName::from_static(layers::REQUEST_ID)]);
    if origins.iter().any(|o| o == "*") {
        return Ok(Some(layer.allow_origin(AllowOrigin::any())));
    }
    let parsed = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|_| ServerError::InvalidCorsOrigin {
                origin: origin.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(layer.allow_origin(AllowOrigin::list(parsed))))
}
