//! The bundle on disk: what `bmad2pf generate` writes (SPEC 3).
//!
//! ```text
//! out/
//!   bundle.json         the Bundle, pretty JSON with every object's keys sorted
//!   bundle.schema.json  JSON Schema of bundle.json, derived from the bundle types
//!   prompts/<id>.md     each agent's assembled system prompt, for review
//!   graph.mmd           Mermaid diagram of every flow
//!   openapi.json        the API contract (only when the caller supplies one)
//!   manifest.json       every file above with its sha256 and size
//!   runtime.yaml        written only when absent, never overwritten
//! ```
//!
//! Work is split in two so `--check` and `generate` share everything but the
//! writing: [`render`] turns a [`BundleContents`] into bytes in memory
//! ([`RenderedBundle`]), then [`write_rendered`] swaps them into place or
//! [`check_rendered`] compares them with what is on disk ([`write_bundle`]
//! and [`check`] do both steps). Identical input gives
//! identical bytes: maps are sorted, nothing records a time or a path.
//!
//! The output directory belongs to bmad2pf. A run replaces all of it except
//! `runtime.yaml`, so files an earlier run produced and this one does not are
//! gone. To keep that from ever deleting someone's data, a non-empty output
//! directory is only replaced when it holds a bmad2pf `manifest.json`.
//!
//! Prompt file names: an agent id is used as the file name, `prompts/<id>.md`.
//! Pack-qualified BMAD ids (`bmad-2d-phaser-game-dev/pm`) become a
//! subdirectory (`prompts/bmad-2d-phaser-game-dev/pm.md`). Within each path
//! segment, any byte outside `[A-Za-z0-9._-]`, a leading `.`, and `%` itself
//! are written as `%XX` (upper-case hex), so names cannot escape `prompts/`,
//! cannot be hidden files, and two ids never share a file. See [`prompt_path`].

mod file_bytes;
mod graph;
mod manifest;
mod runtime_defaults;
mod schema;
mod swap;

pub use file_bytes::FileBytes;
pub use graph::{graph, graph_of_flow};
pub use manifest::{MANIFEST_FILE, Manifest, ManifestEntry};
pub use runtime_defaults::DEFAULT_RUNTIME_YAML;

use crate::bundle::Bundle;
use crate::sorted_json::Sorted;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The generated bundle description.
pub const BUNDLE_FILE: &str = "bundle.json";
/// JSON Schema of [`BUNDLE_FILE`].
pub const SCHEMA_FILE: &str = "bundle.schema.json";
/// The Mermaid diagram of all flows.
pub const GRAPH_FILE: &str = "graph.mmd";
/// The OpenAPI document, written when the caller has one.
pub const OPENAPI_FILE: &str = "openapi.json";
/// The user-owned runtime configuration: written once, then left alone.
pub const RUNTIME_FILE: &str = "runtime.yaml";
/// Folder of the per-agent prompt previews.
pub const PROMPTS_DIR: &str = "prompts";

/// Everything a bundle directory is made from.
#[derive(Debug, Clone, Copy)]
pub struct BundleContents<'a> {
    pub bundle: &'a Bundle,
    /// Agent id → assembled prompt text (`prompts/<id>.md`). Every agent of
    /// the bundle must have one, so a review never misses an agent.
    pub prompts: &'a BTreeMap<String, String>,
    /// The source `runtime.yaml` text; `None` writes [`DEFAULT_RUNTIME_YAML`].
    /// Either way it is only written when the output has no runtime.yaml yet.
    pub runtime_yaml: Option<&'a str>,
    /// The OpenAPI document for this bundle, when the server crate provides one.
    pub openapi: Option<&'a serde_json::Value>,
}

/// The bundle's files as bytes, keyed by their path relative to the output
/// directory (with `/`). `runtime.yaml` is kept apart: it is not part of the
/// manifest because the user owns it once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedBundle<'a> {
    /// Every generated file, `manifest.json` included. Prompt files borrow
    /// the previews of the [`BundleContents`] they were rendered from
    /// (megabytes for a large project), other files own their bytes.
    pub files: BTreeMap<String, FileBytes<'a>>,
    /// What `runtime.yaml` would hold if the output has none.
    pub runtime_yaml: String,
}

/// What [`write_bundle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// Relative path and size in bytes of each generated file, sorted.
    pub files: Vec<(String, u64)>,
    /// Whether `runtime.yaml` was newly written (`false`: an existing one was kept).
    pub runtime_written: bool,
    /// How many files were identical to the previous bundle's and were
    /// carried over (hard-linked) instead of rewritten.
    pub reused: usize,
}

/// How one file on disk differs from what [`render`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileStatus {
    /// Would be written but is not there.
    Missing,
    /// There, with other bytes.
    Changed,
    /// There but no longer produced: a run would remove it.
    Stale,
}

impl FileStatus {
    /// Lower-case name used in CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Changed => "changed",
            Self::Stale => "stale",
        }
    }
}

/// The result of [`check`]: an empty `differences` means up to date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckResult {
    /// Files that a `generate` would change, sorted by path.
    pub differences: Vec<(String, FileStatus)>,
}

impl CheckResult {
    pub fn is_up_to_date(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Why the bundle could not be produced or written. A failure leaves the
/// output directory as it was.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot write".
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The output directory has files but is not a bmad2pf bundle; replacing
    /// it would delete them.
    #[error(
        "{} is not empty and has no bmad2pf manifest.json; refusing to replace it (choose another --out or empty it)",
        .0.display()
    )]
    NotABundleDir(PathBuf),
    /// The output path exists and is not a directory.
    #[error("{} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// An agent has no prompt text, or a prompt names no agent.
    #[error("prompt previews do not match the agents: {0}")]
    PromptMismatch(String),
    /// Serialising the bundle failed (a non-finite float, for instance).
    #[error("cannot serialise {file}: {message}")]
    Serialise { file: &'static str, message: String },
    /// `graph --flow NAME` named a flow the bundle does not have.
    #[error("unknown flow `{name}`; flows: {}", known.join(", "))]
    UnknownFlow { name: String, known: Vec<String> },
}

/// Produces every file of the bundle in memory.
///
/// The prompt files (one per agent, hashed for the manifest) are done on
/// all cores beside the JSON files; prompt files borrow the previews of
/// `contents` (see [`FileBytes`]).
pub fn render<'a>(contents: &BundleContents<'a>) -> Result<RenderedBundle<'a>, OutputError> {
    let bundle = contents.bundle;
    check_prompts_match(bundle, contents.prompts)?;

    let (prompt_files, json_files) = rayon::join(
        || {
            contents
                .prompts
                .par_iter()
                .map(|(id, text)| {
                    let file = FileBytes::from(prompt_file(text));
                    let digest = ManifestEntry::of(&file);
                    (prompt_path(id), file, digest)
                })
                .collect::<Vec<_>>()
        },
        || -> Result<_, OutputError> {
            let mut files = vec![(
                BUNDLE_FILE.to_string(),
                canonical_json(bundle, BUNDLE_FILE)?,
            )];
            files.extend(render_others(contents)?);
            Ok(files)
        },
    );

    let mut files: BTreeMap<String, FileBytes<'a>> = BTreeMap::new();
    let mut digests: BTreeMap<String, ManifestEntry> = BTreeMap::new();
    for (path, file, digest) in prompt_files {
        digests.insert(path.clone(), digest);
        files.insert(path, file);
    }
    for (path, bytes) in json_files? {
        let bytes = FileBytes::from(bytes);
        digests.insert(path.clone(), ManifestEntry::of(&bytes));
        files.insert(path, bytes);
    }
    let manifest = Manifest::new(bundle, digests);
    files.insert(
        MANIFEST_FILE.into(),
        canonical_json(&manifest, MANIFEST_FILE)?.into(),
    );

    Ok(RenderedBundle {
        files,
        runtime_yaml: contents
            .runtime_yaml
            .unwrap_or(DEFAULT_RUNTIME_YAML)
            .to_string(),
    })
}

/// An agent's prompt file: the preview itself (borrowed), with a line
/// break added when it does not end with one.
fn prompt_file(text: &str) -> Cow<'_, [u8]> {
    if text.ends_with('\n') {
        Cow::Borrowed(text.as_bytes())
    } else {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        Cow::Owned(bytes)
    }
}

/// The small files: schema, graph and OpenAPI document.
fn render_others(contents: &BundleContents<'_>) -> Result<Vec<(String, Vec<u8>)>, OutputError> {
    let mut files = vec![
        (
            SCHEMA_FILE.to_string(),
            canonical_json(&Sorted(schema::bundle_schema().as_value()), SCHEMA_FILE)?,
        ),
        (GRAPH_FILE.to_string(), graph(contents.bundle).into_bytes()),
    ];
    if let Some(openapi) = contents.openapi {
        files.push((
            OPENAPI_FILE.to_string(),
            canonical_json(&Sorted(openapi), OPENAPI_FILE)?,
        ));
    }
    Ok(files)
}

/// Renders the bundle and swaps it into `out_dir` atomically (see the module
/// docs). On error the previous content of `out_dir` is untouched.
pub fn write_bundle(
    out_dir: &Path,
    contents: &BundleContents<'_>,
) -> Result<WriteReport, OutputError> {
    write_rendered(out_dir, &render(contents)?)
}

/// [`write_bundle`] for a bundle already rendered (lets a caller time the two steps).
pub fn write_rendered(
    out_dir: &Path,
    rendered: &RenderedBundle<'_>,
) -> Result<WriteReport, OutputError> {
    swap::replace_dir(out_dir, rendered)
}

/// Compares what [`write_bundle`] would write with what `out_dir` holds,
/// without writing anything. `runtime.yaml` only counts when it is missing.
pub fn check(out_dir: &Path, contents: &BundleContents<'_>) -> Result<CheckResult, OutputError> {
    check_rendered(out_dir, &render(contents)?)
}

/// [`check`] for a bundle already rendered.
pub fn check_rendered(
    out_dir: &Path,
    rendered: &RenderedBundle<'_>,
) -> Result<CheckResult, OutputError> {
    swap::compare_dir(out_dir, rendered)
}

/// Where the prompt preview of agent `id` goes, relative to the output
/// directory (mapping described in the module docs).
pub fn prompt_path(id: &str) -> String {
    let segments: Vec<String> = id.split('/').map(escape_segment).collect();
    format!("{PROMPTS_DIR}/{}.md", segments.join("/"))
}

/// Escapes one path segment: `[A-Za-z0-9_-]` and a non-leading `.` stay,
/// every other byte becomes `%XX`. An empty segment (from `a//b` or a leading
/// `/`) becomes `%2F`, which no non-empty segment can produce, so the mapping
/// stays one-to-one and no empty path component appears.
fn escape_segment(segment: &str) -> String {
    if segment.is_empty() {
        return "%2F".into();
    }
    let mut out = String::with_capacity(segment.len());
    for (i, byte) in segment.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Every agent has a prompt and every prompt an agent.
fn check_prompts_match(
    bundle: &Bundle,
    prompts: &BTreeMap<String, String>,
) -> Result<(), OutputError> {
    let missing: Vec<&str> = bundle
        .agents
        .keys()
        .filter(|id| !prompts.contains_key(*id))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = prompts
        .keys()
        .filter(|id| !bundle.agents.contains_key(*id))
        .map(String::as_str)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("no prompt for {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("prompt for unknown agent {}", extra.join(", ")));
    }
    Err(OutputError::PromptMismatch(parts.join("; ")))
}

/// Pretty JSON (two-space indent) with a trailing newline: the byte form
/// of every JSON file in the bundle. `value` must write its keys in sorted
/// order, as the bundle types and [`Manifest`] do and [`Sorted`] does for a
/// `serde_json::Value`, so the same content always gives the same bytes.
fn canonical_json<T: serde::Serialize + ?Sized>(
    value: &T,
    file: &'static str,
) -> Result<Vec<u8>, OutputError> {
    let mut bytes = Vec::new();
    serde_json::to_writer_pretty(&mut bytes, value).map_err(|e| serialise_error(file, &e))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn serialise_error(file: &'static str, e: &serde_json::Error) -> OutputError {
    OutputError::Serialise {
        file,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
