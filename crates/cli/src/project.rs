//! The step every command starts with: compile the sources, render the
//! prompt previews, report the diagnostics.

use crate::Outcome;
use crate::progress::Progress;
use crate::report::{Reporter, plural};
use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::{CompileOptions, compile_with};
use std::collections::BTreeMap;
use std::path::Path;

/// Sources that compiled without errors, ready to be written or shown.
#[derive(Debug)]
pub struct Project {
    pub bundle: Bundle,
    /// Agent id → prompt preview (`prompts/<id>.md`).
    pub prompts: BTreeMap<String, String>,
    /// The source runtime.yaml text, if there is one.
    pub runtime_yaml: Option<String>,
    /// runtime.yaml as read (defaults where it is silent or absent).
    pub config: bmad2pf_compiler::config::RuntimeConfig,
}

/// Compiles `src` (with prompt previews when `options` asks), printing
/// phase timings and reporting every diagnostic.
/// `Err` carries how the command ends: [`Outcome::Failure`] when `src` is
/// not a directory (a usage error), [`Outcome::Invalid`] when the sources
/// have errors.
pub fn compile_project(
    src: &Path,
    options: CompileOptions,
    reporter: &mut Reporter,
    progress: &Progress,
) -> Result<Project, Outcome> {
    if !src.is_dir() {
        let problem = if src.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        reporter.error(format!("source directory {} {problem}", src.display()));
        return Err(Outcome::Failure);
    }

    let compilation = compile_with(src, options);
    for (phase, took) in &compilation.phases {
        progress.phase(phase, *took);
    }
    if let Some(bundle) = &compilation.bundle {
        for agent in bundle.agents.values() {
            progress.detail(&format!("agent {} ← {}", agent.id, agent.source));
        }
        for flow in bundle.flows.values() {
            progress.detail(&format!(
                "flow {} ({}, from {})",
                flow.name,
                plural(flow.steps.len(), "step"),
                flow.source
            ));
        }
    }
    reporter.diagnostics(&compilation.diagnostics, compilation.bundle.as_ref());
    match compilation.bundle {
        Some(bundle) => Ok(Project {
            bundle,
            prompts: compilation.prompts,
            runtime_yaml: compilation.runtime_yaml,
            config: compilation.runtime,
        }),
        None => Err(Outcome::Invalid),
    }
}
