//! The bmad2pf engine: executes a compiled [`Bundle`](bmad2pf_compiler::bundle::Bundle).
//!
//! Everything that happens at run time lives here, driven from the CLI
//! (`bmad2pf run`, `bmad2pf exec`) and from the HTTP server.
//!
//! # Layout
//! - [`Engine`] (`engine.rs`): the public API — run a flow, execute one
//!   agent statelessly, readiness, health, counters.
//! - `core.rs`: what every part of a run needs (bundle, configuration,
//!   stores, providers, tools, counters), built once per engine.
//! - `run/`: a flow as a PocketFlow graph (`graph.rs`) whose nodes are the
//!   agents (`agent.rs`, with their inputs in `inputs.rs` and the `sequence`
//!   interpreter in `sequence.rs`); the shared store of a run, its memory
//!   cache and its view of the documents (`docs.rs`).
//! - `conversation.rs`: the conversation with a model (tool loop, structured
//!   reply, repair), used by the agents of flows and by stateless execute.
//! - [`runs`]: runs as resources — stored, queued, followed, cancelled,
//!   and marked when their process died, with their signed webhooks (SPEC 8).
//! - `execute.rs`: stateless execution and readiness.
//! - [`llm`]: the provider trait, the vendors, mock, replay and retries.
//! - `outbound.rs`: the HTTP clients of every outbound call, and their TLS.
//! - [`store`]: document, memory, orchestration-status, run-record and
//!   webhook-delivery stores: the embedded SQLite store and the Redis one.
//! - [`tools`]: builtin, http and command tools, and MCP servers' tools, offered to the LLM.
//! - [`reply`]: reading replies (`ACTION:` lines, structured envelopes).
//! - [`outcome`]: request and result shapes (the wire shapes of the API).
//! - [`EngineError`] (`error.rs`): what a request to the engine can fail with.
//! - [`failure`]: the codes of failed agents and stopped runs.
//! - [`usage`]: usage accounting: each model call's record, totals, and
//!   its cost from runtime.yaml's `pricing`.
//! - [`stats`]: counters for metrics.
//! - [`id_schema`]: the JSON Schemas of ids, for the OpenAPI document and
//!   the MCP tools.
//! - `canonical.rs`: canonical JSON (keys sorted), hashed for every input hash.
//! - `story_limit.rs`: how long a story id may be for one flow or agent.

mod canonical;
mod conversation;
mod core;
mod engine;
mod error;
mod execute;
pub mod failure;
pub mod id_schema;
pub mod llm;
mod outbound;
pub mod outcome;
pub mod reply;
mod run;
pub mod runs;
pub mod stats;
pub mod store;
mod story_limit;
pub mod tools;
pub mod usage;

pub use engine::{BackendHealth, Engine, HEALTH_TTL, RunEnd, Stores};
pub use error::{EngineError, EngineErrorCode};
pub use stats::EngineStats;
