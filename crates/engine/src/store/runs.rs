//! Run records: which run holds a (flow, story), and what each agent last ran on.
//!
//! Two jobs, one store. *Claims* make runs exclusive per (flow, story): a
//! second run is refused while the first holds the claim. *Records* make
//! runs resumable: for each agent the hash of its inputs and the documents
//! it wrote, so a re-run skips agents whose outputs exist and whose inputs
//! did not change. The file backend keeps claims in memory (one process) and
//! records as one JSON file per (flow, story); a Redis backend shares both
//! between replicas.

use super::StoreError;
use super::files::{DurableDir, blocking};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The last completed execution of one agent in a (flow, story).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// sha256 of everything the agent's LLM call was made from.
    pub input_hash: String,
    /// Document ids it wrote.
    pub outputs: Vec<String>,
    /// Unix ms.
    pub finished_at: u64,
}

/// What is remembered of a (flow, story) between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The latest run.
    pub run_id: String,
    /// `success`, `pending` or `error` of the latest run.
    pub status: String,
    pub agents: BTreeMap<String, AgentRecord>,
    pub updated_at: u64,
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Claims (flow, story) for `run_id`. `Ok(Some(active))` names the run
    /// that already holds it; `Ok(None)` means the claim is ours.
    async fn claim(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Gives up a claim held by `run_id` (a claim held by another run is left alone).
    async fn release(&self, flow: &str, story: &str, run_id: &str) -> Result<(), StoreError>;
    async fn load(&self, flow: &str, story: &str) -> Result<Option<RunRecord>, StoreError>;
    async fn save(&self, flow: &str, story: &str, record: &RunRecord) -> Result<(), StoreError>;
}

/// Claims in memory, records as `{dir}/{flow}__{story}.json` written
/// atomically (concurrent runs share the directory's fsync).
pub struct FileRunStore {
    dir: Arc<DurableDir>,
    claims: Mutex<HashMap<(String, String), String>>,
}

impl FileRunStore {
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.into();
        let dir = blocking(move || {
            DurableDir::open(dir.clone())
                .map_err(|e| StoreError::io("open the run record directory", &dir, &e))
        })
        .await?;
        Ok(Self {
            dir: Arc::new(dir),
            claims: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, flow: &str, story: &str) -> PathBuf {
        self.dir.path().join(record_name(flow, story))
    }
}

fn record_name(flow: &str, story: &str) -> String {
    // Flow names and story ids are validated ids: no separators, no `..`.
    format!("{flow}__{story}.json")
}

#[async_trait]
impl RunStore for FileRunStore {
    async fn claim(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut claims = self
            .claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (flow.to_string(), story.to_string());
        if let Some(active) = claims.get(&key) {
            return Ok(Some(active.clone()));
        }
        claims.insert(key, run_id.to_string());
        Ok(None)
    }

    async fn release(&self, flow: &str, story: &str, run_id: &str) -> Result<(), StoreError> {
        let mut claims = self
            .claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (flow.to_string(), story.to_string());
        if claims.get(&key).is_some_and(|held| held == run_id) {
            claims.remove(&key);
        }
        Ok(())
    }

    async fn load(&self, flow: &str, story: &str) -> Result<Option<RunRecord>, StoreError> {
        let path = self.path(flow, story);
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::corrupt("run record", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read a run record", &path, &e)),
        })
        .await
    }

    async fn save(&self, flow: &str, story: &str, record: &RunRecord) -> Result<(), StoreError> {
        let path = self.path(flow, story);
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| StoreError::corrupt("run record", &path, e))?;
        let (dir, name) = (Arc::clone(&self.dir), record_name(flow, story));
        blocking(move || {
            dir.replace(&name, &bytes)
                .map_err(|e| StoreError::io("write a run record", &path, &e))
        })
        .await
    }
}
