//! Reading source files: text decoding and resource lookup shared by both layouts.
//!
//! Paths given to diagnostics are always relative to the source directory
//! with `/` separators, so messages read the same on every machine.

use std::path::{Path, PathBuf};

/// Reads `rel` under `src` as UTF-8 text (a leading BOM is dropped).
/// The error is a sentence for a diagnostic.
pub fn read_text(src: &Path, rel: &str) -> Result<String, String> {
    let bytes = std::fs::read(src.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "{rel} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Names of the regular files directly in `src/dir` (sorted), or empty if it does not exist.
pub fn list_files(src: &Path, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(src.join(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Where a resource name was found, or the relative paths that were tried.
pub fn find_resource(
    src: &Path,
    dirs: &[&str],
    name: &str,
    extensions: &[&str],
) -> Result<String, Vec<String>> {
    let mut tried = Vec::new();
    let has_ext = extensions.iter().any(|ext| name.ends_with(ext));
    for dir in dirs {
        let base = join_rel(dir, name);
        let candidates: Vec<String> = if has_ext {
            vec![base]
        } else {
            std::iter::once(base.clone())
                .chain(extensions.iter().map(|ext| format!("{base}{ext}")))
                .collect()
        };
        for candidate in candidates {
            if src.join(&candidate).is_file() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
    }
    Err(tried)
}

/// `dir/name` with `/` separators (an empty dir means the source root).
pub fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// Every regular file below `src`, as sorted relative paths; skips `target/`
/// and `.git/` and does not follow symlinked directories.
pub fn walk_files(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(src.join(&rel_dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = rel_dir.join(entry.file_name());
            let name = entry.file_name();
            if kind.is_dir() {
                if name != ".git" && name != "target" {
                    stack.push(rel);
                }
            } else if kind.is_file()
                && let Some(text) = rel.to_str()
            {
                out.push(text.replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}
