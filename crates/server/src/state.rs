//! `AppState`: what every handler shares — the current engine (swappable),
//! the API key, request metrics and the start time.
//!
//! The engine sits behind a lock holding an `Arc`, so a bundle reload
//! (`serve --watch`) can put a new engine in place with
//! [`AppState::replace_engine`] while requests run: a request clones the
//! `Arc` once at its start ([`AppState::engine`]) and finishes on the engine
//! it started with; the lock is never held across an await. The OpenAPI
//! document is rebuilt with the engine, since it names the bundle's flows
//! and agents.

use crate::auth::ApiKey;
use crate::metrics::HttpMetrics;
use crate::openapi::openapi_document;
use crate::story_ids::story_id_limit;
use bmad2pf_engine::Engine;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

/// Shared state of one server. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

struct Shared {
    /// The engine and the OpenAPI document of its bundle, swapped together.
    /// The document is built on its first request, not at start: most
    /// processes never serve it, and building it runs much of the
    /// schema code.
    current: RwLock<Current>,
    /// The key every route but `/health` requires; `None` = no auth.
    api_key: Option<ApiKey>,
    /// Request counters for `/metrics` and `/health`.
    metrics: HttpMetrics,
    /// For `uptime_s`.
    started: Instant,
}

#[derive(Clone)]
struct Current {
    engine: Arc<Engine>,
    openapi: Arc<OnceLock<Arc<serde_json::Value>>>,
    /// The longest story id the routes accept ([`story_id_limit`]).
    story_limit: usize,
}

impl Current {
    fn new(engine: Arc<Engine>) -> Self {
        Self {
            story_limit: story_id_limit(engine.bundle()),
            engine,
            openapi: Arc::default(),
        }
    }
}

impl AppState {
    /// State for a server over `engine`. `api_key` is the key's value (read
    /// by the caller from the variable `server.api_key_env` names), or
    /// `None` to serve without auth.
    pub fn new(engine: Arc<Engine>, api_key: Option<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Current::new(engine)),
                api_key: api_key.map(|key| ApiKey::new(&key)),
                metrics: HttpMetrics::default(),
                started: Instant::now(),
            }),
        }
    }

    /// The engine requests should use now.
    pub fn engine(&self) -> Arc<Engine> {
        self.current().engine
    }

    /// The engine requests should use now, and the longest story id the
    /// routes accept for its bundle (the OpenAPI document's).
    pub(crate) fn engine_and_story_limit(&self) -> (Arc<Engine>, usize) {
        let current = self.current();
        (current.engine, current.story_limit)
    }

    /// Puts `engine` in place for new requests (bundle reload). Requests
    /// already running finish on the engine they started with. Returns the
    /// previous engine, so the caller can shut it down once it is idle.
    /// Server settings (address, CORS, body limit, API key) stay those the
    /// server started with.
    pub fn replace_engine(&self, engine: Arc<Engine>) -> Arc<Engine> {
        let next = Current::new(engine);
        let mut current = match self.shared.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *current, next).engine
    }

    /// The OpenAPI document of the current bundle.
    pub fn openapi(&self) -> Arc<serde_json::Value> {
        let Current {
            engine, openapi, ..
        } = self.current();
        openapi
            .get_or_init(|| Arc::new(openapi_document(engine.bundle(), engine.config())))
            .clone()
    }

    pub(crate) fn api_key(&self) -> Option<&ApiKey> {
        self.shared.api_key.as_ref()
    }

    pub(crate) fn metrics(&self) -> &HttpMetrics {
        &self.shared.metrics
    }

    pub(crate) fn started(&self) -> Instant {
        self.shared.started
    }

    fn current(&self) -> Current {
        // A poisoned lock still holds a consistent value: it is only ever
        // replaced whole.
        match self.shared.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The MCP endpoint serves each request on the engine current at its start,
/// like the routes.
impl bmad2pf_mcp::EngineSource for AppState {
    fn engine(&self) -> Arc<Engine> {
        AppState::engine(self)
    }
}
