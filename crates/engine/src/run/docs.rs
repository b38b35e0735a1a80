//! The document store as one run sees it: the engine's store plus the
//! documents this run has written, kept in memory.
//!
//! A run reads back what its own agents wrote (agent *b* requires the
//! document agent *a* just produced). Every write still goes to the store
//! first; the copy kept here only saves the read that would follow, which
//! on a fast flow is a large part of an agent's cost. All of a run's writes
//! go through this type (agent outputs, fallback placeholders, the
//! `write_doc` tool), so its copies are the latest the run knows of. A
//! document changed through the API while a run is in progress is seen by
//! that run unless the run wrote the same document itself before; the copies
//! are dropped when the run ends.
//!
//! A write is durable when `put` returns, so a document an agent wrote
//! survives a crash of the run that wrote it.

use crate::store::{DocId, DocMeta, DocStore, DocVersion, DocWriter, Document, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// See the module docs.
pub(crate) struct RunDocs {
    store: Arc<dyn DocStore>,
    /// Documents written by this run: `None` marks one it deleted.
    written: Mutex<HashMap<DocId, Option<Document>>>,
}

impl RunDocs {
    pub fn new(store: Arc<dyn DocStore>) -> Self {
        Self {
            store,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// What this run wrote for `id`: `Some(None)` when it deleted it,
    /// `None` when it did not touch it.
    fn written(&self, id: &DocId) -> Option<Option<Document>> {
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.get(id).cloned()
    }

    fn remember(&self, id: &DocId, document: Option<Document>) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.insert(id.clone(), document);
    }
}

#[async_trait]
impl DocStore for RunDocs {
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        match self.written(id) {
            Some(document) => Ok(document),
            None => self.store.get(id).await,
        }
    }

    async fn get_version(&self, id: &DocId, version: u64) -> Result<Option<Document>, StoreError> {
        self.store.get_version(id, version).await
    }

    async fn versions(&self, id: &DocId) -> Result<Vec<DocVersion>, StoreError> {
        self.store.versions(id).await
    }

    async fn put(
        &self,
        id: &DocId,
        content: &str,
        writer: DocWriter,
    ) -> Result<DocVersion, StoreError> {
        let written = self.store.put(id, content, writer).await?;
        self.remember(
            id,
            Some(Document {
                content: content.to_string(),
                bytes: written.bytes,
                modified: written.at,
                version: written.version,
                writer: written.writer.clone(),
            }),
        );
        Ok(written)
    }

    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        let existed = self.store.delete(id).await?;
        self.remember(id, None);
        Ok(existed)
    }

    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
        match self.written(id) {
            Some(document) => Ok(document.map(|d| DocMeta {
                id: id.clone(),
                bytes: d.bytes,
                modified: d.modified,
            })),
            None => self.store.meta(id).await,
        }
    }

    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
        self.store.list(story_id).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.store.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Database, Incidents, SqliteDocStore};

    #[tokio::test]
    async fn a_run_reads_its_own_writes_from_memory() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Database::open(&dir.path().join("data"), Incidents::default())?;
        let docs_dir = dir.path().join("docs");
        let store: Arc<dyn DocStore> = Arc::new(SqliteDocStore::open(db, &docs_dir).await?);
        let docs = RunDocs::new(store.clone());
        let id = DocId::parse("s1__plan")?;
        let writer = DocWriter::Agent {
            agent: "pm".into(),
            run_id: "run-1".into(),
        };
        docs.put(&id, "v1", writer.clone()).await?;
        // The write reached the store…
        let stored = store.get(&id).await?.ok_or("stored")?;
        assert_eq!((stored.content.as_str(), stored.version), ("v1", 1));
        assert_eq!(stored.writer, writer);
        // …and the run's later read is served from its copy, even when the
        // store no longer has it.
        store.delete(&id).await?;
        assert_eq!(docs.get(&id).await?.map(|d| d.content), Some("v1".into()));
        assert_eq!(docs.meta(&id).await?.map(|m| m.bytes), Some(2));
        docs.delete(&id).await?;
        assert_eq!(docs.get(&id).await?, None);
        assert_eq!(docs.meta(&id).await?, None);
        // Documents the run did not write come from the store.
        let other = DocId::parse("s1__brief")?;
        store.put(&other, "from the api", DocWriter::Api).await?;
        assert_eq!(
            docs.get(&other).await?.map(|d| d.content),
            Some("from the api".into())
        );
        Ok(())
    }
}
