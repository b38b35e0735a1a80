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
//! A write is visible to every reader of the store when `put` returns, but
//! the run does not wait there for it to be durable: [`RunDocs::settle`]
//! waits for all of them at the end, together with the memory flush and
//! before the run record, so a run waits for one `fdatasync` round of the
//! document journal (shared with other writers) instead of one per agent.
//! A crash before then loses
//! documents whose run never answered and saved no record: the next run of
//! the story finds them missing and redoes their agents.

use crate::store::{DocId, DocMeta, DocStore, Document, Durability, StoreError, now_ms};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// See the module docs.
pub(crate) struct RunDocs {
    store: Arc<dyn DocStore>,
    /// Documents written by this run: `None` marks one it deleted.
    written: Mutex<HashMap<DocId, Option<Document>>>,
    /// What is left to make this run's writes durable.
    unsettled: Mutex<Vec<(DocId, Durability)>>,
}

impl RunDocs {
    pub fn new(store: Arc<dyn DocStore>) -> Self {
        Self {
            store,
            written: Mutex::new(HashMap::new()),
            unsettled: Mutex::new(Vec::new()),
        }
    }

    /// Waits until every document this run wrote is durable; the documents
    /// that may be lost, with why.
    pub async fn settle(&self) -> Vec<(DocId, StoreError)> {
        let unsettled = std::mem::take(
            &mut *self
                .unsettled
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let waits = unsettled
            .into_iter()
            .map(|(id, durability)| async move { durability.wait().await.err().map(|e| (id, e)) });
        futures::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect()
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

    async fn put(&self, id: &DocId, content: &str) -> Result<u64, StoreError> {
        let (bytes, durability) = self.store.put_visible(id, content).await?;
        self.unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id.clone(), durability));
        self.remember(
            id,
            Some(Document {
                content: content.to_string(),
                bytes,
                modified: now_ms(),
            }),
        );
        Ok(bytes)
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
    use crate::store::FileDocStore;

    #[tokio::test]
    async fn a_run_reads_its_own_writes_from_memory() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn DocStore> = Arc::new(FileDocStore::open(dir.path()).await?);
        let docs = RunDocs::new(store.clone());
        let id = DocId::parse("s1__plan")?;
        docs.put(&id, "v1").await?;
        // The write reached the store, and becomes durable when settled…
        assert_eq!(store.get(&id).await?.map(|d| d.content), Some("v1".into()));
        assert!(docs.settle().await.is_empty());
        // …and the run's later read is served from its copy.
        std::fs::remove_file(dir.path().join("s1__plan.md"))?;
        assert_eq!(docs.get(&id).await?.map(|d| d.content), Some("v1".into()));
        assert_eq!(docs.meta(&id).await?.map(|m| m.bytes), Some(2));
        docs.delete(&id).await?;
        assert_eq!(docs.get(&id).await?, None);
        assert_eq!(docs.meta(&id).await?, None);
        // Documents the run did not write come from the store.
        let other = DocId::parse("s1__brief")?;
        store.put(&other, "from the api").await?;
        assert_eq!(
            docs.get(&other).await?.map(|d| d.content),
            Some("from the api".into())
        );
        Ok(())
    }
}
