//! The bmad2pf HTTP server: axum routes over the engine.
//!
//! It will own request parsing and validation, the JSON error shape, SSE
//! streaming of runs, OpenAPI and the docs page, auth, CORS and metrics —
//! HTTP only, every decision about running agents stays in the engine.
//! Not written yet: see issue 6.
