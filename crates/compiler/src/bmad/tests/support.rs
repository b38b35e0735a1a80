//! Shared helpers for the BMAD importer tests: real source trees written
//! into temporary directories, read through `bmad::read`.

use crate::ProjectParts;
use crate::bmad;
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::sourcefs::SourceSnapshot;
use std::path::Path;

/// Writes `files` (relative path, content) under a fresh temporary directory.
pub fn write_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (rel, content) in files {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {rel}: {e}"));
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }
    dir
}

/// Reads a tree with the BMAD importer.
pub fn read(src: &Path) -> (ProjectParts, Diagnostics) {
    let mut diags = Diagnostics::new();
    let parts = bmad::read(&SourceSnapshot::load(src), &mut diags);
    (parts, diags)
}

/// Whether the compiler takes `src` for a BMAD tree (as `compile` decides it).
pub fn is_bmad_layout(src: &Path) -> bool {
    bmad::is_bmad_snapshot(&SourceSnapshot::load(src))
}

/// Writes and reads `files` in one go.
pub fn read_files(files: &[(&str, &str)]) -> (ProjectParts, Diagnostics) {
    let dir = write_tree(files);
    read(dir.path())
}

pub fn warnings<'a>(diags: &'a Diagnostics, code: &str) -> Vec<&'a Diagnostic> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Warning && d.code == code)
        .collect()
}

pub fn errors(diags: &Diagnostics) -> Vec<&Diagnostic> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// A minimal v4 agent file with the given id and extra YAML lines.
pub fn agent_md(id: &str, extra: &str) -> String {
    format!("# {id}\n\n```yaml\nagent:\n  name: Test\n  id: {id}\n  title: Tester\n{extra}```\n")
}
