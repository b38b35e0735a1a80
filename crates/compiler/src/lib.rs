//! The bmad2pf compiler: agent sources → [`bundle::Bundle`].
//!
//! No async and no network: it reads a source directory, reports every
//! problem it finds as a [`diag::Diagnostic`] with `file:line:col`, and
//! produces plain serialisable data for the engine.
//!
//! # Layout
//! - [`diag`]: diagnostics and "did you mean" suggestions.
//! - `yaml`: a YAML tree that keeps positions (on saphyr-parser); internal,
//!   but for [`yaml_to_json`], YAML read the way sources are.
//! - [`sourcefs`]: reading source files and finding resources.
//! - [`bundle`]: the bundle types the engine consumes.
//! - `sorted_json`: JSON values written with sorted keys, without a sorted
//!   copy; internal, but for [`SortedJson`], which the engine's input hashes use.
//! - [`config`]: `RuntimeConfig`, the typed runtime.yaml, and env overrides.
//! - [`output`]: the bundle directory on disk (bundle.json, schema, prompts, graph, manifest).
//! - `source`: the preprocessing layout (agents/*.md, workflow.yaml, tools.yaml,
//!   runtime.yaml); internal, but for [`parse_runtime`] (a runtime.yaml given
//!   with `--config`).
//! - `bmad`: the BMAD v4 importer (packs, agents, workflows, teams) and,
//!   in `bmad::v6`, the BMAD v6 and skills importer; internal.
//! - [`prompt`]: prompt template variables, rendering and previews.
//! - [`template_limits`]: the bounds every template from sources renders within.
//! - [`compile()`] / [`compile_with`]: the front door — a source directory to a
//!   [`Compilation`] (with prompt previews when [`CompileOptions`] asks).

mod bmad;
pub mod bundle;
pub mod compile;
pub mod config;
pub mod diag;
pub mod output;
pub mod prompt;
mod sorted_json;
mod source;
pub mod sourcefs;
pub mod template_limits;
mod yaml;

pub use compile::{Compilation, CompileOptions, compile, compile_with, layout_summary};
pub use sorted_json::Sorted as SortedJson;
pub use source::parse_runtime;
pub use yaml::to_json as yaml_to_json;

use bundle::{AgentSpec, FlowSpec, ToolSpec};
use std::collections::BTreeMap;

/// What a layout reader (preprocessing or BMAD v4) produces. Cross-file
/// checks that need positions are done by the reader itself.
#[derive(Debug, Clone, Default)]
pub struct ProjectParts {
    pub agents: BTreeMap<String, AgentSpec>,
    pub flows: BTreeMap<String, FlowSpec>,
    pub tools: BTreeMap<String, ToolSpec>,
    /// Agent id → prompt preview (or why it cannot be rendered), for the
    /// agents whose reader rendered it while parsing; [`compile_with`]
    /// renders the others.
    pub previews: BTreeMap<String, Result<String, String>>,
}
