//! The Markdown files that mirror the latest version of each document,
//! `{docs.path}/{id}.md`, for people to open and edit.
//!
//! The database holds every version; these files are a copy of the latest
//! one, written after the commit that made it durable. So they are written
//! without fsync — a file lost or left stale by a crash is rewritten from
//! the database — but always whole: a temporary file in the same directory,
//! renamed over the old one, so a reader (a person's editor, `cat`) never
//! sees half a document. Temporary files start with `.`, so nothing takes
//! them for documents.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::store::{DocId, StoreError};

/// The Markdown file of document `id` in `dir`.
pub(crate) fn file_path(dir: &Path, id: &DocId) -> PathBuf {
    dir.join(format!("{id}.md"))
}

/// What a document's file holds now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileContent {
    Missing,
    Text(String),
    /// Bytes that are not UTF-8: not a document, never imported and never
    /// overwritten (it may be somebody's work), until it is fixed or deleted.
    NotText,
}

/// Reads document `id`'s file.
pub(crate) fn read(dir: &Path, id: &DocId) -> Result<FileContent, StoreError> {
    let path = file_path(dir, id);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8(bytes).map_or(FileContent::NotText, FileContent::Text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(FileContent::Missing),
        Err(err) => Err(StoreError::io(
            format!("read the file of document `{id}`"),
            &path,
            &err,
        )),
    }
}

/// Replaces document `id`'s file with `content`, whole (see the module docs).
pub(crate) fn write(dir: &Path, id: &DocId, content: &str) -> io::Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(content.as_bytes())?;
    temp.persist(file_path(dir, id)).map_err(|e| e.error)?;
    Ok(())
}

/// Removes document `id`'s file; a missing one is fine.
pub(crate) fn remove(dir: &Path, id: &DocId) -> io::Result<()> {
    match std::fs::remove_file(file_path(dir, id)) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// A document file found in the directory.
pub(crate) struct FoundFile {
    pub id: DocId,
    pub bytes: u64,
    /// Modification time, unix ms.
    pub modified: u64,
}

/// The `*.md` files of `dir` whose stem is a valid document id; anything
/// else (temporary files, stray files) is not a document.
pub(crate) fn list(dir: &Path) -> Result<Vec<FoundFile>, StoreError> {
    let failed = |err: &io::Error| StoreError::io("list the documents directory", dir, err);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(failed(&err)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed(&e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".md")) else {
            continue;
        };
        // Only the file a document's id names (`zz.md.md` is no document's).
        let Ok(id) = DocId::parse(stem) else { continue };
        if id.as_str() != stem {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        found.push(FoundFile {
            id,
            bytes: metadata.len(),
            modified,
        });
    }
    Ok(found)
}
