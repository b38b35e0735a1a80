//! `manifest.json`: the list of generated files with their sha256 and size.
//!
//! It lets a reader verify a bundle (or a deployment diff it) without
//! trusting timestamps, and it is how a later run recognises a directory as
//! a bmad2pf bundle that it may replace. It lists every generated file except
//! itself and `runtime.yaml`, which the user owns once written.

use super::FileBytes;
use crate::bundle::Bundle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the manifest inside the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The content of `manifest.json`. Fields are declared in the sorted order
/// of their names, the order manifest.json lists them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Relative path (with `/`) → digest and size.
    pub files: BTreeMap<String, ManifestEntry>,
    /// `bmad2pf <version>`, copied from the bundle; also the mark that says
    /// "this directory was written by bmad2pf".
    pub generator: String,
    pub schema_version: u32,
    /// The bundle's hash of its sources, so a manifest alone tells which sources it came from.
    pub source_hash: String,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl ManifestEntry {
    /// The entry for a file holding `bytes`.
    pub fn of(bytes: &FileBytes<'_>) -> Self {
        Self {
            sha256: bytes.sha256(),
            size: bytes.len() as u64,
        }
    }
}

impl Manifest {
    /// The manifest of `bundle`'s files, each already described with
    /// [`ManifestEntry::of`] (the renderer hashes each file on the thread
    /// that produced it).
    pub fn new(bundle: &Bundle, files: BTreeMap<String, ManifestEntry>) -> Self {
        Self {
            generator: bundle.generator.clone(),
            schema_version: bundle.schema_version,
            source_hash: bundle.source_hash.clone(),
            files,
        }
    }

    /// Whether `dir` holds a manifest written by bmad2pf (any version). Used
    /// only to decide whether replacing the directory is safe, so a manifest
    /// that parses and names bmad2pf as its generator is enough.
    pub fn marks_bundle_dir(dir: &Path) -> bool {
        std::fs::read(dir.join(MANIFEST_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| v.get("generator")?.as_str().map(str::to_string))
            .is_some_and(|generator| generator.starts_with("bmad2pf"))
    }
}
