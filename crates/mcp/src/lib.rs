//! bmad2pf as a Model Context Protocol server: the engine's flows, agents,
//! runs and documents as MCP tools and resources, for any MCP client (a
//! coding assistant, an agent framework), over stdio (`bmad2pf mcp`) or
//! streamable HTTP (`/mcp` on `bmad2pf serve`).
//!
//! The protocol is the official SDK's (`rmcp`); this crate only says what
//! the tools and resources are and turns their calls into engine calls, the
//! way the HTTP routes do — every decision about running agents stays in
//! the engine.
//!
//! # Layout
//! - [`McpServer`] (`server.rs`): the SDK's server handler — lists and
//!   dispatches tools, lists and reads resources — over an
//!   [`EngineSource`], which hands it the engine to use for each request.
//! - `catalog.rs`: the tools of a bundle — `run_<flow>` per flow,
//!   `execute_<agent>` per agent, and `get_run`, `list_runs`,
//!   `answer_question`, `read_document` — with their input schemas.
//! - `arguments.rs`: a call's arguments checked against its tool's schema,
//!   then read into typed values.
//! - `runs.rs`: starting, waiting for (with progress notifications),
//!   polling, listing and answering runs; `report.rs`: what a run tool
//!   answers.
//! - `execute.rs`: stateless execution of one agent.
//! - `documents.rs`: documents as `doc://{story}/{name}` resources, and the
//!   `read_document` tool.
//! - `errors.rs`: engine errors as MCP errors or as failed tool results.
//! - `transport.rs`: the two ways to serve it — [`serve_stdio`] and
//!   [`streamable_http_service`] (mounted by the HTTP server).
//! - `incoming.rs`: what a client sends, checked before the SDK sees it
//!   (params of known methods, JSON that is no JSON-RPC message), so each
//!   request is answered with its id; `stdio.rs`: the stdio transport over
//!   it, which also drops notifications until the session has begun (the
//!   SDK's handshake would end the session on one); `http.rs`: `/mcp`'s
//!   service over it, 400 with a JSON-RPC error for a malformed body.

mod arguments;
mod catalog;
mod documents;
mod errors;
mod execute;
mod http;
mod incoming;
mod report;
mod runs;
mod server;
mod stdio;
mod transport;

pub use http::McpHttpService;
pub use server::{EngineSource, McpServer};
pub use transport::{serve_stdio, streamable_http_service};
