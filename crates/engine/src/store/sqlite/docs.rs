//! `SqliteDocStore`: versioned documents in the embedded database,
//! mirrored as Markdown files (see [`mirror`](super::mirror)).
//!
//! Every write adds a version (`doc_versions`) and moves the document's
//! head (`documents`) in one transaction; once it is committed the writer
//! thread writes the file, and only then is the write acknowledged.
//!
//! People edit the files. A file is reconciled with the database on every
//! read of its document, before every write, and for all documents at
//! start ([`SqliteDocStore::open`]):
//! - it holds the latest version: nothing to do;
//! - it is missing, or holds an *older* version's text (left stale by a
//!   crash between commit and file write, or by two processes writing the
//!   same document at once): it is rewritten from the database;
//! - it holds text no version has: a person's edit, stored as a new version
//!   written by `file` (also a file made by hand for a document the store
//!   does not know yet, which becomes its version 1).
//!
//! So an edit is never lost to a later write: the write first stores the
//! edit, then its own version on top. A person who puts back the exact
//! text of an older version sees the file rewritten to the latest: that
//! text is kept in the history, not taken as an edit.
//!
//! A file that cannot be a version ([`mirror::Unusable`]: bytes that are
//! not UTF-8, a file this user may not read, a directory or a FIFO in its
//! place) concerns its document alone: it is logged with its path, left
//! alone, and the database's version is served; it never stops a start.
//! A write to the document stores its version whatever the file is; a
//! regular file is first moved aside to `{id}.md.unreadable-N` (it may be
//! somebody's work, which no write buries), and a file that cannot be
//! replaced is logged, the committed version standing.
//! `DELETE` removes the document, every version and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::database::{AfterCommit, Database, sql_error};
use super::mirror::{self, FileContent};
use crate::store::ids::check_story_id;
use crate::store::{DocId, DocMeta, DocStore, DocVersion, DocWriter, Document, StoreError, now_ms};

/// Documents in the embedded database and the docs directory (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteDocStore {
    db: Database,
    /// The `docs.path` directory of the Markdown files.
    dir: Arc<PathBuf>,
}

/// The head of a document: what is known of its latest version without
/// its content (the `documents` row).
struct Head {
    version: u64,
    bytes: u64,
    /// [`content_hash`] of its content, to compare the file with.
    hash: String,
    writer: String,
    at: u64,
}

fn read_error(e: rusqlite::Error) -> StoreError {
    sql_error("read a document", &e)
}

fn write_error(e: rusqlite::Error) -> StoreError {
    sql_error("write a document", &e)
}

fn parse_writer(id: &DocId, text: &str) -> Result<DocWriter, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format!("the writer of document `{id}`"), e))
}

fn head(conn: &Connection, id: &DocId) -> Result<Option<Head>, StoreError> {
    conn.prepare_cached(
        "SELECT version, bytes, hash, writer, modified FROM documents WHERE id = ?1",
    )
    .and_then(|mut q| {
        q.query_row([id.as_str()], |row| {
            Ok(Head {
                version: row.get(0)?,
                bytes: row.get(1)?,
                hash: row.get(2)?,
                writer: row.get(3)?,
                at: row.get(4)?,
            })
        })
        .optional()
    })
    .map_err(read_error)
}

/// The content of version `version` of `id`, which exists.
fn version_content(conn: &Connection, id: &DocId, version: u64) -> Result<String, StoreError> {
    conn.prepare_cached("SELECT content FROM doc_versions WHERE id = ?1 AND version = ?2")
        .and_then(|mut q| q.query_row(params![id.as_str(), version], |row| row.get(0)))
        .map_err(read_error)
}

fn document(id: &DocId, head: Head, content: String) -> Result<Document, StoreError> {
    Ok(Document {
        bytes: head.bytes,
        writer: parse_writer(id, &head.writer)?,
        content,
        modified: head.at,
        version: head.version,
    })
}

/// The hash a version's text is found by: SHA-256, hex.
fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether a file's text is some stored version of `id` (so a stale copy,
/// not an edit).
fn is_known_version(conn: &Connection, id: &DocId, text: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM doc_versions WHERE id = ?1 AND hash = ?2")
        .and_then(|mut q| q.exists(params![id.as_str(), content_hash(text)]))
        .map_err(read_error)
}

/// What reconciling a document's file needs (see the module docs).
enum FileCheck {
    /// File and database agree: the file's text when it holds the latest
    /// version (`None`: no document and no file).
    InSync(Option<String>),
    /// The file must be rewritten from the latest version.
    Stale,
    /// The file holds an edit, to store as a new version.
    Edited(String),
    /// What is at the file's path cannot be a version: left alone (it is
    /// logged) and the stored version served; `may_hold_work` as in
    /// [`mirror::Unusable`].
    Unusable { may_hold_work: bool },
}

impl FileCheck {
    /// Whether reconciling needs a write (a version to store or a file to
    /// rewrite).
    fn needs_write(&self) -> bool {
        matches!(self, Self::Stale | Self::Edited(_))
    }
}

fn check_file(
    conn: &Connection,
    dir: &Path,
    id: &DocId,
    head: Option<&Head>,
) -> Result<FileCheck, StoreError> {
    Ok(match (mirror::read(dir, id), head) {
        (FileContent::Unusable(unusable), _) => {
            let path = mirror::file_path(dir, id);
            tracing::warn!(
                document = %id,
                path = %path.display(),
                "the document's file cannot be read as a version ({}); it is left alone and the stored version is served",
                unusable.why
            );
            FileCheck::Unusable {
                may_hold_work: unusable.may_hold_work,
            }
        }
        (FileContent::Missing, None) => FileCheck::InSync(None),
        (FileContent::Missing, Some(_)) => FileCheck::Stale,
        (FileContent::Text(text), None) => FileCheck::Edited(text),
        (FileContent::Text(text), Some(head)) if content_hash(&text) == head.hash => {
            FileCheck::InSync(Some(text))
        }
        (FileContent::Text(text), Some(_)) if is_known_version(conn, id, &text)? => {
            FileCheck::Stale
        }
        (FileContent::Text(text), Some(_)) => FileCheck::Edited(text),
    })
}

/// The latest version of `id` as the file and database now agree on it:
/// the file's text, or the database's when the file is not text.
fn agreed_document(
    conn: &Connection,
    id: &DocId,
    head: Option<Head>,
    file_text: Option<String>,
) -> Result<Option<Document>, StoreError> {
    let Some(head) = head else { return Ok(None) };
    let content = match file_text {
        Some(text) => text,
        None => version_content(conn, id, head.version)?,
    };
    document(id, head, content).map(Some)
}

/// Adds `content` as the next version of `id`, written by `writer`
/// (inside the caller's transaction).
fn add_version(
    conn: &Connection,
    id: &DocId,
    content: &str,
    writer: DocWriter,
) -> Result<DocVersion, StoreError> {
    let writer_json = serde_json::to_string(&writer).map_err(|e| StoreError::Io {
        message: "storage error: could not encode a document's writer".into(),
        detail: e.to_string(),
    })?;
    let last: Option<u64> = conn
        .prepare_cached("SELECT max(version) FROM doc_versions WHERE id = ?1")
        .and_then(|mut q| q.query_row([id.as_str()], |row| row.get(0)))
        .map_err(read_error)?;
    let version = last.unwrap_or(0) + 1;
    let at = now_ms();
    let (hash, bytes) = (content_hash(content), content.len() as u64);
    conn.prepare_cached(
        "INSERT INTO doc_versions (id, version, content, hash, writer, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut q| {
        q.execute(params![
            id.as_str(),
            version,
            content,
            hash,
            writer_json,
            at
        ])
    })
    .map_err(write_error)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO documents (id, version, bytes, modified, hash, writer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut q| q.execute(params![id.as_str(), version, bytes, at, hash, writer_json]))
    .map_err(write_error)?;
    Ok(DocVersion {
        version,
        bytes,
        writer,
        at,
    })
}

/// Brings `id`'s file and versions into agreement (inside the caller's
/// transaction): an edit becomes a version now, a stale file is rewritten
/// after the commit by the returned step.
fn reconcile(
    conn: &Connection,
    dir: &Arc<PathBuf>,
    id: &DocId,
) -> Result<Option<AfterCommit>, StoreError> {
    let head = head(conn, id)?;
    match check_file(conn, dir, id, head.as_ref())? {
        FileCheck::InSync(_) | FileCheck::Unusable { .. } => Ok(None),
        FileCheck::Edited(text) => {
            add_version(conn, id, &text, DocWriter::File)?;
            tracing::info!(document = %id, "an edit of the document's file was stored as a new version");
            Ok(None)
        }
        FileCheck::Stale => {
            let content = match head {
                Some(head) => version_content(conn, id, head.version)?,
                None => String::new(),
            };
            Ok(Some(rewrite_file(dir, id, content)))
        }
    }
}

/// The after-commit step that writes `content` to `id`'s file. A failure
/// is logged: the database holds the version, which is served, and the
/// next read or start writes the file again.
fn rewrite_file(dir: &Arc<PathBuf>, id: &DocId, content: String) -> AfterCommit {
    let (dir, id) = (Arc::clone(dir), id.clone());
    AfterCommit {
        key: id.to_string(),
        run: Box::new(move || {
            if let Err(error) = mirror::write(&dir, &id, &content) {
                let path = mirror::file_path(&dir, &id);
                tracing::warn!(document = %id, path = %path.display(), %error, "could not write the document's file; the stored version is served, and the file is written again on the next read");
            }
        }),
    }
}

/// The after-commit step of a write that left `id`'s file alone: nothing
/// to do to the file, but it supersedes (see [`AfterCommit`]) a file
/// write for an earlier version settled with it, which would replace what
/// this write could not move aside.
fn leave_file_alone(id: &DocId) -> AfterCommit {
    AfterCommit {
        key: id.to_string(),
        run: Box::new(|| {}),
    }
}

/// A start-up failure on `path`, for the operator: unlike the messages of
/// requests, which never carry paths, it names the path and says what to
/// do, since it is the only thing the process prints before it exits.
fn start_error(action: &str, path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Io {
        message: format!(
            "storage error: could not {action} {}: {err}. Check that it is a directory \
             this user may read and write (docs.path in runtime.yaml)",
            path.display()
        ),
        detail: format!("{action}: {}: {err}", path.display()),
    }
}

impl SqliteDocStore {
    /// Documents in `db`, mirrored in `dir` (created when missing). Every
    /// file is reconciled with the database first (see the module docs):
    /// files left stale by a crash are rewritten, edits and new files made
    /// while no process ran are stored as versions.
    pub async fn open(db: Database, dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.into();
        let store = Self {
            db,
            dir: Arc::new(dir),
        };
        let dir = Arc::clone(&store.dir);
        store
            .db
            .read(move |_| {
                std::fs::create_dir_all(dir.as_path())
                    .map_err(|err| start_error("create the documents directory", &dir, &err))?;
                mirror::remove_stale_temp_files(&dir);
                Ok(())
            })
            .await?;
        store.reconcile_all().await?;
        Ok(store)
    }

    /// Reconciles every document the database or the directory holds. A
    /// read pass finds the ones that need it, so a start with nothing to
    /// fix takes no write lock.
    async fn reconcile_all(&self) -> Result<(), StoreError> {
        let dir = Arc::clone(&self.dir);
        let out_of_sync = self
            .db
            .read(move |conn| {
                let mut ids: Vec<String> = conn
                    .prepare("SELECT id FROM documents")
                    .and_then(|mut q| q.query_map([], |row| row.get(0))?.collect())
                    .map_err(read_error)?;
                let files = mirror::list(&dir)
                    .map_err(|err| start_error("list the documents directory", &dir, &err))?;
                ids.extend(files.into_iter().map(|f| f.id.to_string()));
                ids.sort();
                ids.dedup();
                let mut out_of_sync = Vec::new();
                for id in ids {
                    let Ok(id) = DocId::parse(&id) else { continue };
                    let head = head(conn, &id)?;
                    if check_file(conn, &dir, &id, head.as_ref())?.needs_write() {
                        out_of_sync.push(id);
                    }
                }
                Ok(out_of_sync)
            })
            .await?;
        if out_of_sync.is_empty() {
            return Ok(());
        }
        let dir = Arc::clone(&self.dir);
        self.db
            .write_then(move |conn| {
                let mut steps = Vec::new();
                for id in &out_of_sync {
                    steps.extend(reconcile(conn, &dir, id)?);
                }
                let after = AfterCommit {
                    key: "documents at start".into(),
                    run: Box::new(move || steps.into_iter().for_each(|step| (step.run)())),
                };
                Ok(((), Some(after)))
            })
            .await
    }

    /// The latest version of `id`, after reconciling its file.
    async fn latest(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let (dir, read_id) = (Arc::clone(&self.dir), id.clone());
        // Most reads find the file in sync and need no write.
        let in_sync = self
            .db
            .read(move |conn| {
                // No transaction: should the file check see a newer commit
                // than the head, the write below checks again.
                let head = head(conn, &read_id)?;
                match check_file(conn, &dir, &read_id, head.as_ref())? {
                    FileCheck::InSync(text) => {
                        agreed_document(conn, &read_id, head, text).map(Some)
                    }
                    FileCheck::Unusable { .. } => {
                        agreed_document(conn, &read_id, head, None).map(Some)
                    }
                    FileCheck::Stale | FileCheck::Edited(_) => Ok(None),
                }
            })
            .await?;
        if let Some(document) = in_sync {
            return Ok(document);
        }
        let (dir, id) = (Arc::clone(&self.dir), id.clone());
        self.db
            .write_then(move |conn| {
                let after = reconcile(conn, &dir, &id)?;
                let document = match head(conn, &id)? {
                    Some(head) => {
                        let content = version_content(conn, &id, head.version)?;
                        Some(document(&id, head, content)?)
                    }
                    None => None,
                };
                Ok((document, after))
            })
            .await
    }
}

#[async_trait]
impl DocStore for SqliteDocStore {
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        self.latest(id).await
    }

    async fn get_version(&self, id: &DocId, version: u64) -> Result<Option<Document>, StoreError> {
        // SQLite integers stop at 2^63-1: no version is numbered above.
        if i64::try_from(version).is_err() {
            return Ok(None);
        }
        // Reconciled first, so an edit waiting in the file has its number.
        if self.latest(id).await?.is_none() {
            return Ok(None);
        }
        let id = id.clone();
        self.db
            .read(move |conn| {
                let found: Option<(String, String, u64)> = conn
                    .prepare_cached(
                        "SELECT content, writer, at FROM doc_versions WHERE id = ?1 AND version = ?2",
                    )
                    .and_then(|mut q| {
                        q.query_row(params![id.as_str(), version], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()
                    })
                    .map_err(read_error)?;
                found
                    .map(|(content, writer, at)| {
                        Ok(Document {
                            bytes: content.len() as u64,
                            writer: parse_writer(&id, &writer)?,
                            content,
                            modified: at,
                            version,
                        })
                    })
                    .transpose()
            })
            .await
    }

    async fn versions(&self, id: &DocId) -> Result<Vec<DocVersion>, StoreError> {
        if self.latest(id).await?.is_none() {
            return Ok(Vec::new());
        }
        let id = id.clone();
        self.db
            .read(move |conn| {
                let mut query = conn
                    .prepare_cached(
                        "SELECT version, length(CAST(content AS BLOB)), writer, at FROM doc_versions
                         WHERE id = ?1 ORDER BY version",
                    )
                    .map_err(read_error)?;
                let rows: Vec<(u64, u64, String, u64)> = query
                    .query_map([id.as_str()], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(read_error)?;
                rows.into_iter()
                    .map(|(version, bytes, writer, at)| {
                        Ok(DocVersion {
                            version,
                            bytes,
                            writer: parse_writer(&id, &writer)?,
                            at,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn put(
        &self,
        id: &DocId,
        content: &str,
        writer: DocWriter,
    ) -> Result<DocVersion, StoreError> {
        let (dir, id, content) = (Arc::clone(&self.dir), id.clone(), content.to_string());
        self.db
            .write_then(move |conn| {
                // An edit waiting in the file is stored first, so this write
                // does not bury it; a stale file needs nothing, as this
                // write replaces it. A file that cannot be stored but may
                // be somebody's work is moved aside first, for the same
                // reason; if it cannot be moved, it is left as it is. The
                // version is stored in every case: the file is only a copy.
                let head = head(conn, &id)?;
                let mut replace_file = true;
                match check_file(conn, &dir, &id, head.as_ref())? {
                    FileCheck::Edited(text) => {
                        add_version(conn, &id, &text, DocWriter::File)?;
                    }
                    FileCheck::Unusable {
                        may_hold_work: true,
                    } => {
                        let path = mirror::file_path(&dir, &id);
                        match mirror::keep_aside(&dir, &id) {
                            Ok(aside) => tracing::warn!(
                                document = %id,
                                path = %path.display(),
                                moved_to = %aside.display(),
                                "the document's file could not be stored as a version; it was moved aside before this write replaced it"
                            ),
                            Err(error) => {
                                replace_file = false;
                                tracing::warn!(
                                    document = %id,
                                    path = %path.display(),
                                    %error,
                                    "the document's file could not be stored as a version nor moved aside; it is left as it is, and the new version is only in the store"
                                );
                            }
                        }
                    }
                    FileCheck::InSync(_) | FileCheck::Stale | FileCheck::Unusable { .. } => {}
                }
                let written = add_version(conn, &id, &content, writer)?;
                let after = if replace_file {
                    rewrite_file(&dir, &id, content)
                } else {
                    leave_file_alone(&id)
                };
                Ok((written, Some(after)))
            })
            .await
    }

    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        let (dir, id) = (Arc::clone(&self.dir), id.clone());
        self.db
            .write_then(move |conn| {
                // Only whether it is there: its content is deleted unread.
                let had_file = mirror::file_path(&dir, &id).symlink_metadata().is_ok();
                let deleted = conn
                    .execute("DELETE FROM documents WHERE id = ?1", [id.as_str()])
                    .and_then(|n| {
                        conn.execute("DELETE FROM doc_versions WHERE id = ?1", [id.as_str()])
                            .map(|_| n)
                    })
                    .map_err(write_error)?;
                let key = id.to_string();
                let remove = AfterCommit {
                    key,
                    run: Box::new(move || {
                        if let Err(error) = mirror::remove(&dir, &id) {
                            let path = mirror::file_path(&dir, &id);
                            tracing::warn!(document = %id, path = %path.display(), %error, "could not remove the deleted document's file");
                        }
                    }),
                };
                Ok((deleted > 0 || had_file, Some(remove)))
            })
            .await
    }

    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
        Ok(self.latest(id).await?.map(|d| DocMeta {
            id: id.clone(),
            bytes: d.bytes,
            modified: d.modified,
        }))
    }

    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
        if let Some(story) = story_id {
            check_story_id(story)?;
        }
        let story_id = story_id.map(str::to_string);
        let prefix = story_id.as_ref().map(|story| format!("{story}__"));
        let dir = Arc::clone(&self.dir);
        self.db
            .read(move |conn| {
                // Ids are ASCII below DEL, so `{story}__` ≤ id < `{story}__\x7f`
                // is exactly the story's documents.
                let (low, high) = match &prefix {
                    Some(prefix) => (prefix.clone(), format!("{prefix}\u{7f}")),
                    None => (String::new(), "\u{7f}".to_string()),
                };
                let mut query = conn
                    .prepare_cached(
                        "SELECT id, bytes, modified FROM documents WHERE id >= ?1 AND id < ?2",
                    )
                    .map_err(read_error)?;
                let rows: Vec<(String, u64, u64)> = query
                    .query_map(params![low, high], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(read_error)?;
                let mut listed: std::collections::BTreeMap<String, DocMeta> = rows
                    .into_iter()
                    .filter_map(|(id, bytes, modified)| {
                        let id = DocId::parse(&id).ok()?;
                        if story_id.as_ref().is_some_and(|s| !id.belongs_to_story(s)) {
                            return None;
                        }
                        Some((
                            id.to_string(),
                            DocMeta {
                                id,
                                bytes,
                                modified,
                            },
                        ))
                    })
                    .collect();
                // Files made by hand that no read has stored yet are
                // documents too, when they can be one (text a read would
                // store): a list names no document that a read cannot find.
                let files = mirror::list(&dir)
                    .map_err(|err| StoreError::io("list the documents directory", &dir, &err))?;
                for file in files {
                    if story_id
                        .as_ref()
                        .is_some_and(|s| !file.id.belongs_to_story(s))
                        || listed.contains_key(file.id.as_str())
                        || !matches!(mirror::read(&dir, &file.id), FileContent::Text(_))
                    {
                        continue;
                    }
                    listed.insert(
                        file.id.to_string(),
                        DocMeta {
                            id: file.id,
                            bytes: file.bytes,
                            modified: file.modified,
                        },
                    );
                }
                Ok(listed.into_values().collect())
            })
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.db.health().await
    }
}
