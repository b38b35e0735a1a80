//! The step every command starts with: compile the sources, render the
//! prompt previews, report the diagnostics.

use crate::Outcome;
use crate::progress::Progress;
use crate::report::{Reporter, plural};
use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::diag::Pos;
use bmad2pf_compiler::{compile, prompt};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Sources that compiled without errors, ready to be written or shown.
#[derive(Debug)]
pub struct Project {
    pub bundle: Bundle,
    /// Agent id → prompt preview (`prompts/<id>.md`).
    pub prompts: BTreeMap<String, String>,
    /// The source runtime.yaml text, if there is one.
    pub runtime_yaml: Option<String>,
}

/// Compiles `src`, printing phase timings and reporting every diagnostic.
/// `Err` carries how the command ends: [`Outcome::Failure`] when `src` is
/// not a directory (a usage error), [`Outcome::Invalid`] when the sources
/// have errors.
pub fn compile_project(
    src: &Path,
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

    let compilation = compile(src);
    for (phase, took) in &compilation.phases {
        progress.phase(phase, *took);
    }
    let mut diagnostics = compilation.diagnostics;

    let started = Instant::now();
    let mut prompts = BTreeMap::new();
    if let Some(bundle) = &compilation.bundle {
        for agent in bundle.agents.values() {
            match prompt::preview(agent) {
                Ok(text) => {
                    prompts.insert(agent.id.clone(), text);
                }
                Err(message) => {
                    diagnostics.error(
                        "prompt-preview",
                        &agent.source,
                        Pos::new(1, 1),
                        format!(
                            "the prompt of agent `{}` cannot be rendered: {message}",
                            agent.id
                        ),
                    );
                }
            }
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
        progress.phase("prompts", started.elapsed());
    }
    diagnostics.sort();

    let bundle = compilation.bundle.filter(|_| !diagnostics.has_errors());
    reporter.diagnostics(&diagnostics, bundle.as_ref());
    match bundle {
        Some(bundle) => Ok(Project {
            bundle,
            prompts,
            runtime_yaml: compilation.runtime_yaml,
        }),
        None => Err(Outcome::Invalid),
    }
}
