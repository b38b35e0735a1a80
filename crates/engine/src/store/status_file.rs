//! `FileStatusStore`: orchestration status as one JSON Lines log,
//! `{orchestrator.path}/status.jsonl`.
//!
//! Every change is appended as one line and fsync'd before the call
//! returns (concurrent changes share one fsync: group commit); the whole log is replayed into an in-memory index when the
//! store opens, so a restart loses nothing that was acknowledged. Lines:
//!
//! ```text
//! {"op":"create","workflow_id":"wf-1","story_id":"S1","agents":["pm"],"at":1700000000000}
//! {"op":"update","workflow_id":"wf-1","agent_id":"pm","status":"running","at":1700000000100}
//! {"op":"delete","workflow_id":"wf-1","at":1700000000200}
//! ```
//!
//! An `update` for an unknown workflow creates it (this is how
//! [`StatusStore::update`] behaves too, so replay and live calls share one
//! code path, [`StatusIndex::apply`]). Lines of deleted workflows are dead;
//! when they are the majority the log is rewritten atomically with one
//! `create` plus the history of each live workflow.
//!
//! Like the other file backends this one is single-process: the index is
//! the truth while the process runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use super::files::{blocking, now_ms, probe_dir};
use super::ids::{check_status_agent_id, check_story_id};
use super::jsonl::{Compactions, JsonlLog, durability};
use super::{
    AgentState, AgentStatus, Durability, StatusChange, StatusStore, StatusUpdate, StoreError,
    WorkflowId, WorkflowStatus, WorkflowSummary,
};

/// The log's file name inside `orchestrator.path`.
const FILE_NAME: &str = "status.jsonl";

/// One line of the status log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum StatusRecord {
    Create {
        workflow_id: WorkflowId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        story_id: Option<String>,
        agents: Vec<String>,
        at: u64,
    },
    Update {
        workflow_id: WorkflowId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        story_id: Option<String>,
        agent_id: String,
        status: AgentState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_summary: Option<String>,
        at: u64,
    },
    Delete {
        workflow_id: WorkflowId,
        at: u64,
    },
}

/// A live workflow: its current status and its updates in order.
#[derive(Debug)]
struct Tracked {
    status: WorkflowStatus,
    history: Vec<StatusChange>,
}

impl Tracked {
    fn new(workflow_id: WorkflowId, story_id: Option<String>, at: u64) -> Self {
        Self {
            status: WorkflowStatus {
                workflow_id,
                story_id,
                agent_statuses: BTreeMap::new(),
                created_at: at,
                updated_at: at,
            },
            history: Vec::new(),
        }
    }

    /// How many lines [`Self::records`] gives.
    fn live_lines(&self) -> usize {
        1 + self.history.len()
    }

    /// The records that recreate this workflow on replay (for compaction).
    fn records(&self) -> impl Iterator<Item = StatusRecord> + '_ {
        let status = &self.status;
        let create = StatusRecord::Create {
            workflow_id: status.workflow_id.clone(),
            story_id: status.story_id.clone(),
            agents: status.agent_statuses.keys().cloned().collect(),
            at: status.created_at,
        };
        let updates = self.history.iter().map(|change| StatusRecord::Update {
            workflow_id: status.workflow_id.clone(),
            story_id: None,
            agent_id: change.agent_id.clone(),
            status: change.status,
            output_summary: change.output_summary.clone(),
            at: change.at,
        });
        std::iter::once(create).chain(updates)
    }
}

/// The log and the state replayed from it.
#[derive(Debug)]
struct StatusIndex {
    log: JsonlLog,
    workflows: BTreeMap<WorkflowId, Tracked>,
    /// Lines a compacted log would hold: one `create` plus the history of
    /// each live workflow. Kept up to date by [`Self::apply`], so deciding
    /// whether to compact does not walk every workflow on every write.
    live_lines: usize,
}

impl StatusIndex {
    /// Applies one record to the in-memory state (replay and live writes).
    fn apply(&mut self, record: StatusRecord) {
        match record {
            StatusRecord::Create {
                workflow_id,
                story_id,
                agents,
                at,
            } => {
                let mut tracked = Tracked::new(workflow_id.clone(), story_id, at);
                for agent in agents {
                    tracked.status.agent_statuses.insert(
                        agent,
                        AgentStatus {
                            status: AgentState::Pending,
                            last_execution: None,
                            output_summary: None,
                        },
                    );
                }
                self.live_lines += 1;
                if let Some(replaced) = self.workflows.insert(workflow_id, tracked) {
                    self.live_lines -= replaced.live_lines();
                }
            }
            StatusRecord::Update {
                workflow_id,
                story_id,
                agent_id,
                status,
                output_summary,
                at,
            } => {
                let tracked = self
                    .workflows
                    .entry(workflow_id.clone())
                    .or_insert_with(|| {
                        self.live_lines += 1;
                        Tracked::new(workflow_id, story_id.clone(), at)
                    });
                if tracked.status.story_id.is_none() {
                    tracked.status.story_id = story_id;
                }
                tracked.status.agent_statuses.insert(
                    agent_id.clone(),
                    AgentStatus {
                        status,
                        last_execution: Some(at),
                        output_summary: output_summary.clone(),
                    },
                );
                tracked.status.updated_at = at;
                tracked.history.push(StatusChange {
                    agent_id,
                    status,
                    output_summary,
                    at,
                });
                self.live_lines += 1;
            }
            StatusRecord::Delete { workflow_id, .. } => {
                if let Some(removed) = self.workflows.remove(&workflow_id) {
                    self.live_lines -= removed.live_lines();
                }
            }
        }
    }

    /// Appends `records` (durable once the log's pending sync is waited
    /// for), applies them, and plans a compaction when dead lines dominate.
    fn record(&mut self, records: Vec<StatusRecord>) -> Result<(), StoreError> {
        self.log.append(&records)?;
        for record in records {
            self.apply(record);
        }
        let workflows = &self.workflows;
        self.log.plan_compaction(self.live_lines, || {
            workflows.values().flat_map(Tracked::records).collect()
        });
        Ok(())
    }

    fn status(&self, workflow_id: &WorkflowId) -> Result<WorkflowStatus, StoreError> {
        self.workflows
            .get(workflow_id)
            .map(|t| t.status.clone())
            .ok_or_else(|| StoreError::NotFound {
                what: format!("workflow `{workflow_id}`"),
            })
    }
}

/// Orchestration status in one JSON Lines file (see the module docs).
#[derive(Debug)]
pub struct FileStatusStore {
    /// The `orchestrator.path` directory.
    dir: PathBuf,
    /// The index; its lock also serializes writes to the log.
    index: Arc<AsyncMutex<StatusIndex>>,
    /// The log's compaction under way.
    compactions: Compactions,
}

impl FileStatusStore {
    /// Opens the status directory `dir` (created when missing) and replays
    /// its log.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.into();
        let open = dir.clone();
        let index = blocking(move || {
            let (log, records) =
                JsonlLog::open::<StatusRecord>(open, FILE_NAME, "orchestration status")?;
            let mut index = StatusIndex {
                log,
                workflows: BTreeMap::new(),
                live_lines: 0,
            };
            for record in records {
                index.apply(record);
            }
            Ok(index)
        })
        .await?;
        Ok(Self {
            dir,
            index: Arc::new(AsyncMutex::new(index)),
            compactions: Compactions::default(),
        })
    }

    /// Runs `write` on the index, holding the lock (an append, done in
    /// place: see `files`), then waits, without the lock, until what it
    /// appended is durable (one fsync for all the writes that queued
    /// meanwhile).
    async fn with_index_mut<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut StatusIndex) -> Result<T, StoreError>,
    {
        let (out, durability) = self.with_index_visible(write).await?;
        durability.wait().await?;
        Ok(out)
    }

    /// Runs `write` on the index; what it appended is visible when this
    /// returns and durable once the [`Durability`] is waited for.
    async fn with_index_visible<T, F>(&self, write: F) -> Result<(T, Durability), StoreError>
    where
        F: FnOnce(&mut StatusIndex) -> Result<T, StoreError>,
    {
        let mut index = self.index.lock().await;
        let out = write(&mut index);
        let pending = index.log.take_pending();
        let compaction = index.log.take_compaction();
        drop(index);
        if let Some(plan) = compaction {
            self.compactions
                .start(Arc::clone(&self.index), plan, |index| Some(&mut index.log));
        }
        let durability = durability(pending);
        match out {
            Ok(out) => Ok((out, durability)),
            // An append made before the failure is still waited for: an
            // error must not be answered while earlier lines may be lost.
            Err(error) => {
                durability.wait().await?;
                Err(error)
            }
        }
    }
}

#[async_trait]
impl StatusStore for FileStatusStore {
    async fn create(
        &self,
        workflow_id: Option<WorkflowId>,
        story_id: &str,
        agents: &[String],
    ) -> Result<WorkflowStatus, StoreError> {
        check_story_id(story_id)?;
        for agent in agents {
            check_status_agent_id(agent)?;
        }
        let workflow_id = workflow_id.unwrap_or_else(WorkflowId::generate);
        let record = StatusRecord::Create {
            workflow_id: workflow_id.clone(),
            story_id: Some(story_id.to_string()),
            agents: agents.to_vec(),
            at: now_ms(),
        };
        self.with_index_mut(move |index| {
            if index.workflows.contains_key(&workflow_id) {
                return Err(StoreError::AlreadyExists {
                    what: format!("workflow `{workflow_id}`"),
                });
            }
            index.record(vec![record])?;
            index.status(&workflow_id)
        })
        .await
    }

    async fn get(&self, workflow_id: &WorkflowId) -> Result<Option<WorkflowStatus>, StoreError> {
        let index = self.index.lock().await;
        Ok(index.workflows.get(workflow_id).map(|t| t.status.clone()))
    }

    async fn update(&self, update: StatusUpdate) -> Result<WorkflowStatus, StoreError> {
        let (status, durability) = self.update_visible(update).await?;
        durability.wait().await?;
        Ok(status)
    }

    async fn update_visible(
        &self,
        update: StatusUpdate,
    ) -> Result<(WorkflowStatus, Durability), StoreError> {
        check_status_agent_id(&update.agent_id)?;
        if let Some(story) = &update.story_id {
            check_story_id(story)?;
        }
        self.with_index_visible(move |index| {
            let workflow_id = update.workflow_id;
            let existing_story = index
                .workflows
                .get(&workflow_id)
                .and_then(|t| t.status.story_id.as_deref());
            if let (Some(existing), Some(given)) = (existing_story, update.story_id.as_deref())
                && existing != given
            {
                return Err(StoreError::Conflict {
                    message: format!(
                        "workflow `{workflow_id}` belongs to story `{existing}`, not `{given}`"
                    ),
                });
            }
            let record = StatusRecord::Update {
                workflow_id: workflow_id.clone(),
                story_id: update.story_id,
                agent_id: update.agent_id,
                status: update.status,
                output_summary: update.output_summary,
                at: now_ms(),
            };
            index.record(vec![record])?;
            index.status(&workflow_id)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        let index = self.index.lock().await;
        Ok(index
            .workflows
            .values()
            .map(|t| WorkflowSummary::from(&t.status))
            .collect())
    }

    async fn history(&self, workflow_id: &WorkflowId) -> Result<Vec<StatusChange>, StoreError> {
        let index = self.index.lock().await;
        index
            .workflows
            .get(workflow_id)
            .map(|t| t.history.clone())
            .ok_or_else(|| StoreError::NotFound {
                what: format!("workflow `{workflow_id}`"),
            })
    }

    async fn delete(&self, workflow_id: &WorkflowId) -> Result<bool, StoreError> {
        let workflow_id = workflow_id.clone();
        self.with_index_mut(move |index| {
            if !index.workflows.contains_key(&workflow_id) {
                return Ok(false);
            }
            index.record(vec![StatusRecord::Delete {
                workflow_id,
                at: now_ms(),
            }])?;
            Ok(true)
        })
        .await
    }

    async fn cleanup(&self, retention: Duration, now: u64) -> Result<usize, StoreError> {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(retention_ms);
        self.with_index_mut(move |index| {
            let expired: Vec<StatusRecord> = index
                .workflows
                .values()
                .filter(|t| t.status.updated_at < cutoff)
                .map(|t| StatusRecord::Delete {
                    workflow_id: t.status.workflow_id.clone(),
                    at: now,
                })
                .collect();
            let removed = expired.len();
            index.record(expired)?;
            Ok(removed)
        })
        .await
    }

    async fn flush(&self) {
        self.compactions.wait().await;
    }

    async fn health(&self) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        blocking(move || probe_dir(&dir, "orchestration status")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_lines_follow_every_kind_of_record() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = FileStatusStore::open(dir.path()).await?;
        let mut index = store.index.lock().await;
        let (a, b) = (WorkflowId::parse("wf-a")?, WorkflowId::parse("wf-b")?);
        let create = |id: &WorkflowId| StatusRecord::Create {
            workflow_id: id.clone(),
            story_id: Some("S1".into()),
            agents: vec!["pm".into()],
            at: 1,
        };
        let update = |id: &WorkflowId| StatusRecord::Update {
            workflow_id: id.clone(),
            story_id: None,
            agent_id: "pm".into(),
            status: AgentState::Running,
            output_summary: None,
            at: 2,
        };
        let delete = |id: &WorkflowId| StatusRecord::Delete {
            workflow_id: id.clone(),
            at: 3,
        };
        let records = [
            create(&a),
            update(&a),
            update(&b), // creates `b` implicitly
            update(&b),
            create(&a), // replaces `a` and its history
            delete(&b),
            delete(&WorkflowId::parse("wf-unknown")?),
        ];
        for record in records {
            index.apply(record);
            let counted: usize = index.workflows.values().map(Tracked::live_lines).sum();
            assert_eq!(index.live_lines, counted);
        }
        assert_eq!(index.live_lines, 1);
        Ok(())
    }
}
