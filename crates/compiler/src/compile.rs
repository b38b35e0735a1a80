//! [`compile`]: a source directory → a [`Bundle`] plus every diagnostic.
//!
//! This is the compiler's front door, used by `generate`, `validate`,
//! `graph` and `serve --src`. It detects the layout (a BMAD-METHOD v4 core
//! directory, else the preprocessing layout), hashes the sources, reads
//! them, reads runtime.yaml, and returns everything it learned — the
//! bundle only when there is no error, so nothing is ever built from
//! sources with a known problem. It never panics on any input and never
//! stops at the first problem.

use crate::bundle::{Bundle, SCHEMA_VERSION, SourceLayout};
use crate::config::RuntimeConfig;
use crate::diag::{Diagnostics, Pos};
use crate::{ProjectParts, source, sourcefs};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

/// Everything one compile produced.
#[derive(Debug, Clone)]
pub struct Compilation {
    /// The bundle; `None` when there is at least one error.
    pub bundle: Option<Bundle>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Diagnostics,
    /// runtime.yaml as read (defaults when absent or invalid). Environment
    /// overrides are *not* applied: that is the caller's step.
    pub runtime: RuntimeConfig,
    /// The source runtime.yaml text, when there is one (`generate` copies
    /// it into the output only when the output has none).
    pub runtime_yaml: Option<String>,
    /// How long each phase took, in order: `hash`, `read`, `runtime`.
    pub phases: Vec<(&'static str, Duration)>,
}

/// Compiles the source directory `src`.
pub fn compile(src: &Path) -> Compilation {
    let mut diags = Diagnostics::new();
    let mut phases = Vec::new();
    let shown = src.display().to_string();

    if !src.is_dir() {
        let message = if src.exists() {
            format!("source `{shown}` is not a directory")
        } else {
            format!("source directory `{shown}` does not exist")
        };
        diags.error("no-source", &shown, Pos::new(1, 1), message);
        return Compilation {
            bundle: None,
            diagnostics: diags,
            runtime: RuntimeConfig::default(),
            runtime_yaml: None,
            phases,
        };
    }

    let started = Instant::now();
    let source_hash = hash_sources(src, &mut diags);
    phases.push(("hash", started.elapsed()));

    let started = Instant::now();
    let (layout, parts) = read_layout(src, &shown, &mut diags);
    phases.push(("read", started.elapsed()));

    let started = Instant::now();
    let (runtime, runtime_yaml) = source::read_runtime(src, &mut diags);
    phases.push(("runtime", started.elapsed()));

    diags.sort();
    let bundle = match (layout, diags.has_errors()) {
        (Some(layout), false) => Some(Bundle {
            schema_version: SCHEMA_VERSION,
            generator: format!("bmad2pf {}", env!("CARGO_PKG_VERSION")),
            source_hash,
            layout,
            agents: parts.agents,
            flows: parts.flows,
            tools: parts.tools,
        }),
        _ => None,
    };
    Compilation {
        bundle,
        diagnostics: diags,
        runtime,
        runtime_yaml,
        phases,
    }
}

/// Reads whichever layout `src` holds; `None` (with an error) when it holds neither.
fn read_layout(
    src: &Path,
    shown: &str,
    diags: &mut Diagnostics,
) -> (Option<SourceLayout>, ProjectParts) {
    if source::agent_files(src).is_empty() {
        diags
            .error(
                "no-agents",
                shown,
                Pos::new(1, 1),
                format!("no agents found in `{shown}`: expected agents/*.md"),
            )
            .hint = Some("point --src at a directory with an agents/ folder (preprocessing layout or a BMAD v4 core)".into());
        return (None, ProjectParts::default());
    }
    (Some(SourceLayout::Preprocessing), source::read(src, diags))
}

/// sha256 over every source file in path order: relative path, NUL, bytes.
fn hash_sources(src: &Path, diags: &mut Diagnostics) -> String {
    let mut hasher = Sha256::new();
    for rel in sourcefs::walk_files(src) {
        match std::fs::read(src.join(&rel)) {
            Ok(bytes) => {
                hasher.update(rel.as_bytes());
                hasher.update([0]);
                hasher.update(&bytes);
            }
            Err(e) => {
                diags.error(
                    "io-error",
                    &rel,
                    Pos::new(1, 1),
                    format!("cannot read {rel}: {e}"),
                );
            }
        }
    }
    hex::encode(hasher.finalize())
}
