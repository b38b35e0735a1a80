//! `FileDocStore`: documents as Markdown files, `{docs.path}/{id}.md`.
//!
//! A write goes to the directory's write-ahead journal
//! ([`doc_journal`](super::doc_journal)) and is acknowledged once its record
//! is durable (one `fdatasync` shared by concurrent writers); a background
//! thread then replaces the document's file atomically (a temporary file
//! renamed over it), within milliseconds. Until then reads, listings and
//! `meta` answer from the journal's table of unapplied writes, so every
//! write is visible as soon as it is acknowledged, and a reader never sees
//! half a document. File reads take size and time from the open file
//! handle, so they describe the very content returned even when a new
//! version is renamed in at the same moment. `flush` (on shutdown) leaves
//! every document in its file.
//!
//! Listings show only `*.md` files whose stem is a valid [`DocId`]:
//! temporary files (leading `.`) and stray files are invisible.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::doc_journal::{DocJournal, RunningJournal, UnappliedWrite, file_name};
use super::files::{DurableDir, blocking, probe_dir, system_time_ms};
use super::ids::check_story_id;
use super::jsonl::{durability, settle};
use super::{DocId, DocMeta, DocStore, Document, Durability, StoreError};

/// Documents in one directory (see the module docs). Clones share one
/// journal; the last one dropped checkpoints it.
#[derive(Debug, Clone)]
pub struct FileDocStore {
    /// The `docs.path` directory.
    dir: PathBuf,
    /// Its journal, through which every write goes.
    journal: Arc<RunningJournal>,
}

impl FileDocStore {
    /// Opens (creating when missing) the document directory `dir`, and
    /// replays its journal when the last process stopped before a
    /// checkpoint.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.into();
        let path = dir.clone();
        let journal = blocking(move || {
            let durable = DurableDir::open(path.clone())
                .map_err(|err| StoreError::io("open the document directory", &path, &err))?;
            RunningJournal::start(Arc::new(durable))
        })
        .await?;
        Ok(Self {
            dir,
            journal: Arc::new(journal),
        })
    }

    fn journal(&self) -> Arc<DocJournal> {
        Arc::clone(self.journal.journal())
    }

    fn path_of(&self, id: &DocId) -> PathBuf {
        self.dir.join(file_name(id))
    }
}

fn modified_ms(metadata: &fs::Metadata) -> u64 {
    metadata.modified().map(system_time_ms).unwrap_or(0)
}

fn read_document(path: &Path, id: &DocId) -> Result<Option<Document>, StoreError> {
    let read_failed = |err: &io::Error| StoreError::io(format!("read document `{id}`"), path, err);
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_failed(&err)),
    };
    let metadata = file.metadata().map_err(|err| read_failed(&err))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|err| read_failed(&err))?;
    let content = String::from_utf8(bytes).map_err(|err| {
        StoreError::corrupt(format!("document `{id}` is not valid UTF-8"), path, err)
    })?;
    Ok(Some(Document {
        bytes: content.len() as u64,
        content,
        modified: modified_ms(&metadata),
    }))
}

fn read_meta(path: &Path, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
    match fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(Some(DocMeta {
            id: id.clone(),
            bytes: metadata.len(),
            modified: modified_ms(&metadata),
        })),
        Ok(_) => Ok(None),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::io(format!("read document `{id}`"), path, &err)),
    }
}

/// The documents of `dir` (of one story, when given), as the files show
/// them with the journal's `unapplied` writes laid over them. The caller
/// takes `unapplied` before this reads the directory, so a write applied in
/// between shows either way.
fn list_documents(
    dir: &Path,
    story_id: Option<&str>,
    unapplied: Vec<(DocId, UnappliedWrite)>,
) -> Result<Vec<DocMeta>, StoreError> {
    let in_story = |id: &DocId| story_id.is_none_or(|story| id.belongs_to_story(story));
    let list_failed = |err: &io::Error| StoreError::io("list documents", dir, err);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(list_failed(&err)),
    };
    let mut docs = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|err| list_failed(&err))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".md")) else {
            continue;
        };
        let Ok(id) = DocId::parse(stem) else {
            continue;
        };
        if !in_story(&id) {
            continue;
        }
        // A document deleted between the listing and this look is skipped.
        if let Some(meta) = read_meta(&entry.path(), &id)? {
            docs.insert(id, meta);
        }
    }
    for (id, write) in unapplied {
        if !in_story(&id) {
            continue;
        }
        match unapplied_meta(&id, &write) {
            Some(meta) => docs.insert(id, meta),
            None => docs.remove(&id),
        };
    }
    Ok(docs.into_values().collect())
}

/// What an unapplied write says about its document (`None`: deleted).
fn unapplied_meta(id: &DocId, write: &UnappliedWrite) -> Option<DocMeta> {
    write.content.as_ref().map(|content| DocMeta {
        id: id.clone(),
        bytes: content.len() as u64,
        modified: write.modified,
    })
}

#[async_trait]
impl DocStore for FileDocStore {
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let (journal, path, id) = (self.journal(), self.path_of(id), id.clone());
        blocking(move || match journal.unapplied(&id) {
            Some(write) => Ok(write.content.map(|content| Document {
                bytes: content.len() as u64,
                content: content.to_string(),
                modified: write.modified,
            })),
            None => read_document(&path, &id),
        })
        .await
    }

    async fn put(&self, id: &DocId, content: &str) -> Result<u64, StoreError> {
        let (bytes, durability) = self.put_visible(id, content).await?;
        durability.wait().await?;
        Ok(bytes)
    }

    async fn put_visible(
        &self,
        id: &DocId,
        content: &str,
    ) -> Result<(u64, Durability), StoreError> {
        let content: Arc<str> = Arc::from(content);
        let bytes = content.len() as u64;
        // An append, done in place (see `files`); visible once it returns.
        Ok((bytes, durability(self.journal().put(id, content)?)))
    }

    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        let (journal, id) = (self.journal(), id.clone());
        let (existed, pending) = journal.delete(&id)?;
        settle(Ok(existed), pending).await
    }

    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
        let (journal, path, id) = (self.journal(), self.path_of(id), id.clone());
        blocking(move || match journal.unapplied(&id) {
            Some(write) => Ok(unapplied_meta(&id, &write)),
            None => read_meta(&path, &id),
        })
        .await
    }

    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
        if let Some(story) = story_id {
            check_story_id(story)?;
        }
        let (journal, dir) = (self.journal(), self.dir.clone());
        let story = story_id.map(str::to_string);
        blocking(move || list_documents(&dir, story.as_deref(), journal.all_unapplied())).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let journal = self.journal();
        blocking(move || journal.flush()).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        if let Some(failure) = self.journal().failure() {
            return Err(StoreError::Unavailable {
                message: "document storage cannot write its files".into(),
                detail: failure,
            });
        }
        let dir = self.dir.clone();
        blocking(move || probe_dir(&dir, "document")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_lay_unapplied_writes_over_the_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for name in ["S1__a.md", "S1__b.md", "S2__a.md"] {
            fs::write(dir.path().join(name), "file")?;
        }
        let unapplied = vec![
            (DocId::parse("S1__b")?, UnappliedWrite::for_test(7, None)),
            (
                DocId::parse("S1__c")?,
                UnappliedWrite::for_test(9, Some("new")),
            ),
            (
                DocId::parse("S2__z")?,
                UnappliedWrite::for_test(9, Some("other story")),
            ),
        ];
        let listed = list_documents(dir.path(), Some("S1"), unapplied)?;
        let shown: Vec<(String, u64, Option<u64>)> = listed
            .iter()
            .map(|m| {
                (
                    m.id.to_string(),
                    m.bytes,
                    (m.id.as_str() == "S1__c").then_some(m.modified),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("S1__a".to_string(), 4, None),
                ("S1__c".to_string(), 3, Some(9))
            ]
        );
        Ok(())
    }
}
