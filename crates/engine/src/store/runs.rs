//! Run records: which run holds a (flow, story), and what each agent last ran on.
//!
//! Two jobs, one store. *Claims* make runs exclusive per (flow, story): a
//! second run is refused while the first holds the claim. *Records* make
//! runs resumable: for each agent the hash of its inputs and the documents
//! it wrote, so a re-run skips agents whose outputs exist and whose inputs
//! did not change. The file backend keeps claims in memory (one process) and
//! records in one JSON Lines log, `{dir}/records.jsonl`, a line per save
//! (the last line of a (flow, story) wins; compacted when dead lines
//! dominate), so that concurrent runs share one fsync; a Redis backend
//! shares both between replicas.

use super::StoreError;
use super::files::blocking;
use super::jsonl::{Compactions, JsonlLog, settle};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Mutex as AsyncMutex;

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
    /// Finishes background work on the saves made so far, before the
    /// process stops: the file backend waits for a compaction under way.
    async fn flush(&self) {}
}

/// The log's file name inside the run record directory.
const RECORDS_FILE: &str = "records.jsonl";

/// One line of the record log.
#[derive(Serialize, Deserialize)]
struct RecordLine {
    flow: String,
    story: String,
    record: RunRecord,
}

/// The record log and the latest record of each (flow, story).
struct RecordLog {
    log: JsonlLog,
    latest: HashMap<(String, String), RunRecord>,
}

impl RecordLog {
    /// Appends `line` (durable once the log's pending sync is waited for),
    /// then plans a compaction when dead lines dominate.
    fn save(&mut self, line: RecordLine) -> Result<(), StoreError> {
        self.log.append(std::slice::from_ref(&line))?;
        self.latest.insert((line.flow, line.story), line.record);
        let latest = &self.latest;
        self.log.plan_compaction(latest.len(), || {
            latest
                .iter()
                .map(|((flow, story), record)| RecordLine {
                    flow: flow.clone(),
                    story: story.clone(),
                    record: record.clone(),
                })
                .collect()
        });
        Ok(())
    }
}

/// Claims in memory, records in a JSON Lines log (see the module docs).
pub struct FileRunStore {
    records: Arc<AsyncMutex<RecordLog>>,
    claims: Mutex<HashMap<(String, String), String>>,
    compactions: Compactions,
}

impl FileRunStore {
    /// Opens the run record directory `dir` (created when missing) and
    /// reads its log.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.into();
        let records = blocking(move || {
            let (log, lines) = JsonlLog::open::<RecordLine>(dir, RECORDS_FILE, "run records")?;
            let latest = lines
                .into_iter()
                .map(|line| ((line.flow, line.story), line.record))
                .collect();
            Ok(RecordLog { log, latest })
        })
        .await?;
        Ok(Self {
            records: Arc::new(AsyncMutex::new(records)),
            claims: Mutex::new(HashMap::new()),
            compactions: Compactions::default(),
        })
    }
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
        let records = self.records.lock().await;
        Ok(records
            .latest
            .get(&(flow.to_string(), story.to_string()))
            .cloned())
    }

    async fn save(&self, flow: &str, story: &str, record: &RunRecord) -> Result<(), StoreError> {
        let line = RecordLine {
            flow: flow.to_string(),
            story: story.to_string(),
            record: record.clone(),
        };
        // An append, done in place (see `files`); the fsync is awaited
        // after the lock.
        let mut records = self.records.lock().await;
        let saved = records.save(line);
        let pending = records.log.take_pending();
        let compaction = records.log.take_compaction();
        drop(records);
        if let Some(plan) = compaction {
            self.compactions
                .start(Arc::clone(&self.records), plan, |records| {
                    Some(&mut records.log)
                });
        }
        settle(saved, pending).await
    }

    async fn flush(&self) {
        self.compactions.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run_id: &str) -> RunRecord {
        RunRecord {
            run_id: run_id.into(),
            status: "success".into(),
            agents: BTreeMap::from([(
                "pm".to_string(),
                AgentRecord {
                    input_hash: "h".into(),
                    outputs: vec!["s__prd".into()],
                    finished_at: 1,
                },
            )]),
            updated_at: 2,
        }
    }

    #[tokio::test]
    async fn records_survive_a_restart_and_compaction() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = FileRunStore::open(dir.path()).await?;
        // Enough saves of two pairs for the log to be compacted on the way.
        for i in 0..200 {
            store.save("f", "a", &record(&format!("a{i}"))).await?;
            store.save("f", "b", &record(&format!("b{i}"))).await?;
        }
        store.flush().await;
        drop(store);
        let lines = std::fs::read_to_string(dir.path().join(RECORDS_FILE))?
            .lines()
            .count();
        assert!(lines < 200, "the log was compacted ({lines} lines)");
        let reopened = FileRunStore::open(dir.path()).await?;
        assert_eq!(reopened.load("f", "a").await?, Some(record("a199")));
        assert_eq!(reopened.load("f", "b").await?, Some(record("b199")));
        assert_eq!(reopened.load("f", "c").await?, None);
        Ok(())
    }
}
