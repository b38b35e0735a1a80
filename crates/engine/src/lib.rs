//! The bmad2pf engine: executes a compiled [`Bundle`](bmad2pf_compiler::bundle::Bundle).
//!
//! It will own everything that happens at run time: turning agents into
//! PocketFlow nodes and workflows into flows, the LLM provider trait and its
//! vendors, the document / memory / orchestration-status stores, tools, and
//! replay. It is driven from the CLI (`bmad2pf run`, `bmad2pf exec`) and from
//! the HTTP server. Not written yet: see issue 5.

pub mod llm;
pub mod store;
