//! [`compile`]: a source directory → a [`Bundle`] plus every diagnostic.
//!
//! This is the compiler's front door, used by `generate`, `validate`,
//! `graph` and `serve --src`. It detects the layout (BMAD v6 / skills, a
//! BMAD-METHOD v4 core directory, else the preprocessing layout), hashes the sources, reads
//! them, reads runtime.yaml, and returns everything it learned — the
//! bundle only when there is no error, so nothing is ever built from
//! sources with a known problem. It never panics on any input and never
//! stops at the first problem.

use crate::bundle::{AgentSpec, Bundle, SCHEMA_VERSION, SourceLayout};
use crate::config::{BmadConfig, RuntimeConfig};
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::SourceSnapshot;
use crate::{ProjectParts, prompt, source};
use rayon::prelude::*;
use std::collections::BTreeMap;
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
    /// How long each phase took, in order: `load` (read every file), `read`
    /// (parse, resolve and check, and hash the sources), `runtime` (runtime.yaml),
    /// and `prompts` when previews were asked for.
    pub phases: Vec<(&'static str, Duration)>,
    /// Agent id → prompt preview (`prompts/<id>.md`, see
    /// [`prompt::preview`]); filled only when [`CompileOptions::previews`]
    /// asked for it and there is a bundle. An agent whose prompt cannot be
    /// rendered is a `prompt-preview` error instead, and then there is no bundle.
    pub prompts: BTreeMap<String, String>,
}

/// Work [`compile_with`] does besides reading the sources.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Also render every agent's prompt preview (what `generate` writes to
    /// `prompts/`), on all cores; a prompt that cannot be rendered is then
    /// an error. `generate` and `validate` ask for them; `serve --src` and
    /// `graph` do not.
    pub previews: bool,
}

/// Compiles the source directory `src` (no prompt previews).
pub fn compile(src: &Path) -> Compilation {
    compile_with(src, CompileOptions::default())
}

/// Compiles the source directory `src`, doing what `options` asks for too.
pub fn compile_with(src: &Path, options: CompileOptions) -> Compilation {
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
            prompts: BTreeMap::new(),
        };
    }

    // runtime.yaml first: its data paths are not sources, and BMAD v6
    // sources read its `bmad` section.
    let started = Instant::now();
    let (runtime, runtime_yaml) = source::read_runtime(src, &mut diags);
    let runtime_time = started.elapsed();

    let started = Instant::now();
    let files = SourceSnapshot::load_skipping(src, &runtime.data_dirs());
    for (rel, message) in files.unreadable() {
        diags.error("io-error", rel, Pos::new(1, 1), message.clone());
    }
    for (rel, message) in files.unfollowed() {
        diags.warning("source-link", rel, Pos::new(1, 1), message.clone());
    }
    phases.push(("load", started.elapsed()));

    let started = Instant::now();
    // The source hash is one sha256 stream, so it cannot be split: it runs
    // on a thread of its own beside the parsing (which spreads over the
    // cores itself) instead of before it.
    let (source_hash, (layout, parts)) = std::thread::scope(|scope| {
        let source_hash = scope.spawn(|| files.hash());
        let read = read_layout(&files, &shown, options.previews, &runtime.bmad, &mut diags);
        match source_hash.join() {
            Ok(source_hash) => (source_hash, read),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    phases.push(("read", started.elapsed()));
    phases.push(("runtime", runtime_time));

    let ProjectParts {
        agents,
        flows,
        tools,
        previews,
    } = parts;
    let bundle = match (layout, diags.has_errors()) {
        (Some(layout), false) => Some(Bundle {
            schema_version: SCHEMA_VERSION,
            generator: format!("bmad2pf {}", env!("CARGO_PKG_VERSION")),
            source_hash,
            layout,
            agents,
            flows,
            tools,
        }),
        _ => None,
    };
    let mut prompts = BTreeMap::new();
    if let (true, Some(bundle)) = (options.previews, &bundle) {
        let started = Instant::now();
        prompts = collect_previews(bundle, previews, &mut diags);
        phases.push(("prompts", started.elapsed()));
    }
    diags.sort();
    Compilation {
        bundle: bundle.filter(|_| !diags.has_errors()),
        diagnostics: diags,
        runtime,
        runtime_yaml,
        phases,
        prompts,
    }
}

/// What `validate`'s summary line adds for a BMAD v6 / skills bundle: the
/// layout and its counts (`BMAD v6 module tree: 2 modules, 0 skills, 9
/// steps`); `None` for the other layouts, whose line stays as it was.
pub fn layout_summary(bundle: &Bundle) -> Option<String> {
    if matches!(
        bundle.layout,
        SourceLayout::Preprocessing | SourceLayout::BmadV4
    ) {
        return None;
    }
    let meta = |m: &BTreeMap<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(|v| v.as_str()).map(str::to_string)
    };
    let modules: std::collections::BTreeSet<String> = bundle
        .flows
        .values()
        .filter_map(|f| meta(&f.metadata, "module"))
        .chain(
            bundle
                .agents
                .values()
                .filter_map(|a| meta(&a.metadata, "module")),
        )
        .collect();
    let skills = bundle
        .flows
        .values()
        .filter(|f| f.metadata.contains_key("skill"))
        .count()
        + bundle
            .agents
            .values()
            .filter(|a| a.metadata.contains_key("skill"))
            .count();
    let steps: usize = bundle.flows.values().map(|f| f.steps.len()).sum();
    Some(format!(
        "{}: {} module{}, {} skill{}, {} step{}",
        crate::bmad::v6::layout::layout_name(bundle.layout),
        modules.len(),
        if modules.len() == 1 { "" } else { "s" },
        skills,
        if skills == 1 { "" } else { "s" },
        steps,
        if steps == 1 { "" } else { "s" },
    ))
}

/// Reads whichever layout `src` holds; `None` (with an error) when it holds neither.
fn read_layout(
    files: &SourceSnapshot,
    shown: &str,
    previews: bool,
    bmad: &BmadConfig,
    diags: &mut Diagnostics,
) -> (Option<SourceLayout>, ProjectParts) {
    if let Some(layout) = crate::bmad::v6::layout::detect(files) {
        crate::bmad::v6::layout::report_mixed(files, &layout, diags);
        return (
            Some(layout.kind),
            crate::bmad::v6::read(files, &layout, bmad, diags),
        );
    }
    if crate::bmad::is_bmad_snapshot(files) {
        return (Some(SourceLayout::BmadV4), crate::bmad::read(files, diags));
    }
    if source::agent_files(files).is_empty() {
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
    (
        Some(SourceLayout::Preprocessing),
        source::read(files, previews, diags),
    )
}

/// Every agent's prompt preview: the ones the reader rendered while
/// parsing, the others rendered here on all cores. A prompt that cannot be
/// rendered is an error naming its agent.
fn collect_previews(
    bundle: &Bundle,
    mut rendered: BTreeMap<String, Result<String, String>>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, String> {
    let missing: Vec<&AgentSpec> = bundle
        .agents
        .values()
        .filter(|agent| !rendered.contains_key(&agent.id))
        .collect();
    let late: Vec<_> = missing
        .par_iter()
        .map(|agent| prompt::preview(agent))
        .collect();
    for (agent, preview) in missing.into_iter().zip(late) {
        rendered.insert(agent.id.clone(), preview);
    }
    let mut prompts = BTreeMap::new();
    for agent in bundle.agents.values() {
        match rendered.remove(&agent.id) {
            Some(Ok(text)) => {
                prompts.insert(agent.id.clone(), text);
            }
            Some(Err(message)) => {
                diags.error(
                    "prompt-preview",
                    &agent.source,
                    Pos::new(1, 1),
                    format!(
                        "the prompt of agent `{}` cannot be rendered: {message}",
                        agent.id
                    ),
                );
            }
            None => {}
        }
    }
    prompts
}
