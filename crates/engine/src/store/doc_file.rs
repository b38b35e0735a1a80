//! `FileDocStore`: documents as Markdown files, `{docs.path}/{id}.md`.
//!
//! Writes go through [`DurableDir`] (temp file in the same directory, fsync,
//! rename, fsync the directory — one directory fsync shared by concurrent
//! writers), so a reader or a crash never sees half a document and
//! concurrent writers of one id leave exactly one of their versions. Reads take size and time from the
//! open file handle, so they describe the very content returned even when a
//! write renames a new version in at the same moment.
//!
//! Listings show only `*.md` files whose stem is a valid [`DocId`]:
//! temporary files (leading `.`) and stray files are invisible.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::files::{DurableDir, blocking, probe_dir, system_time_ms};
use super::ids::check_story_id;
use super::{DocId, DocMeta, DocStore, Document, StoreError};

/// Documents in one directory (see the module docs).
#[derive(Debug, Clone)]
pub struct FileDocStore {
    /// The `docs.path` directory.
    dir: Arc<DurableDir>,
}

impl FileDocStore {
    /// Opens (creating when missing) the document directory `dir`.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.into();
        let dir = blocking(move || {
            DurableDir::open(dir.clone())
                .map_err(|err| StoreError::io("open the document directory", &dir, &err))
        })
        .await?;
        Ok(Self { dir: Arc::new(dir) })
    }

    fn path_of(&self, id: &DocId) -> PathBuf {
        self.dir.path().join(file_name(id))
    }
}

fn file_name(id: &DocId) -> String {
    format!("{id}.md")
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

fn list_documents(dir: &Path, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
    let list_failed = |err: &io::Error| StoreError::io("list documents", dir, err);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(list_failed(&err)),
    };
    let mut docs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| list_failed(&err))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".md")) else {
            continue;
        };
        let Ok(id) = DocId::parse(stem) else {
            continue;
        };
        if story_id.is_some_and(|story| !id.belongs_to_story(story)) {
            continue;
        }
        // A document deleted between the listing and this look is skipped.
        if let Some(meta) = read_meta(&entry.path(), &id)? {
            docs.push(meta);
        }
    }
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(docs)
}

#[async_trait]
impl DocStore for FileDocStore {
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let (path, id) = (self.path_of(id), id.clone());
        blocking(move || read_document(&path, &id)).await
    }

    async fn put(&self, id: &DocId, content: &str) -> Result<u64, StoreError> {
        let (dir, id) = (Arc::clone(&self.dir), id.clone());
        let content = content.to_string();
        blocking(move || {
            let name = file_name(&id);
            dir.replace(&name, content.as_bytes()).map_err(|err| {
                StoreError::io(
                    format!("write document `{id}`"),
                    &dir.path().join(&name),
                    &err,
                )
            })?;
            Ok(content.len() as u64)
        })
        .await
    }

    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        let (dir, id) = (Arc::clone(&self.dir), id.clone());
        blocking(move || {
            let name = file_name(&id);
            dir.remove(&name).map_err(|err| {
                StoreError::io(
                    format!("delete document `{id}`"),
                    &dir.path().join(&name),
                    &err,
                )
            })
        })
        .await
    }

    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
        let (path, id) = (self.path_of(id), id.clone());
        blocking(move || read_meta(&path, &id)).await
    }

    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
        if let Some(story) = story_id {
            check_story_id(story)?;
        }
        let dir = Arc::clone(&self.dir);
        let story = story_id.map(str::to_string);
        blocking(move || list_documents(dir.path(), story.as_deref())).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        let dir = Arc::clone(&self.dir);
        blocking(move || probe_dir(dir.path(), "document")).await
    }
}
