//! `SqliteStatusStore`: orchestration status in three tables —
//! `workflows` (identity, story, times), `workflow_agents` (each agent's
//! current state) and `status_history` (every update, in order).
//!
//! An update writes all three in one transaction, so the current state and
//! the history never disagree. An update for an unknown workflow creates
//! it with the update's story, as [`StatusStore::update`] says.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::database::{Database, sql_error};
use crate::store::ids::{check_status_agent_id, check_story_id};
use crate::store::{
    AgentState, AgentStatus, StatusChange, StatusStore, StatusUpdate, StoreError, WorkflowId,
    WorkflowStatus, WorkflowSummary, now_ms,
};

/// Orchestration status in the embedded database (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteStatusStore {
    db: Database,
}

impl SqliteStatusStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn read_error(e: rusqlite::Error) -> StoreError {
    sql_error("read orchestration status", &e)
}

fn write_error(e: rusqlite::Error) -> StoreError {
    sql_error("write orchestration status", &e)
}

fn not_found(workflow_id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("workflow `{workflow_id}`"),
    }
}

/// A stored state name, read back.
fn parse_state(workflow_id: &str, text: &str) -> Result<AgentState, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| {
        StoreError::corrupt(
            format!("workflow `{workflow_id}`"),
            format!("status `{text}`: {e}"),
        )
    })
}

/// A stored workflow id, read back (ids were checked when written).
fn parse_workflow_id(text: &str) -> Result<WorkflowId, StoreError> {
    WorkflowId::parse(text).map_err(|e| StoreError::corrupt("a workflow id", e))
}

/// The workflow `id` with every agent's state, or `None`.
fn load_status(conn: &Connection, id: &str) -> Result<Option<WorkflowStatus>, StoreError> {
    let head: Option<(Option<String>, u64, u64)> = conn
        .prepare_cached(
            "SELECT story_id, created_at, updated_at FROM workflows WHERE workflow_id = ?1",
        )
        .and_then(|mut q| {
            q.query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()
        })
        .map_err(read_error)?;
    let Some((story_id, created_at, updated_at)) = head else {
        return Ok(None);
    };
    let mut query = conn
        .prepare_cached(
            "SELECT agent_id, status, last_execution, output_summary FROM workflow_agents
             WHERE workflow_id = ?1",
        )
        .map_err(read_error)?;
    let rows: Vec<(String, String, Option<u64>, Option<String>)> = query
        .query_map([id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(read_error)?;
    let mut agent_statuses = BTreeMap::new();
    for (agent, status, last_execution, output_summary) in rows {
        let status = parse_state(id, &status)?;
        agent_statuses.insert(
            agent,
            AgentStatus {
                status,
                last_execution,
                output_summary,
            },
        );
    }
    Ok(Some(WorkflowStatus {
        workflow_id: parse_workflow_id(id)?,
        story_id,
        agent_statuses,
        created_at,
        updated_at,
    }))
}

/// Records `update` (see [`StatusStore::update`]) inside the caller's
/// transaction.
fn apply_update(conn: &Connection, update: &StatusUpdate) -> Result<(), StoreError> {
    let id = update.workflow_id.as_str();
    let at = now_ms();
    let existing: Option<Option<String>> = conn
        .prepare_cached("SELECT story_id FROM workflows WHERE workflow_id = ?1")
        .and_then(|mut q| q.query_row([id], |row| row.get(0)).optional())
        .map_err(read_error)?;
    match existing {
        Some(Some(existing)) => {
            if let Some(given) = update.story_id.as_deref()
                && given != existing
            {
                return Err(StoreError::Conflict {
                    message: format!(
                        "workflow `{id}` belongs to story `{existing}`, not `{given}`"
                    ),
                });
            }
            conn.prepare_cached("UPDATE workflows SET updated_at = ?2 WHERE workflow_id = ?1")
                .and_then(|mut q| q.execute(params![id, at]))
        }
        // Created implicitly without a story: the first update naming one sets it.
        Some(None) => conn
            .prepare_cached(
                "UPDATE workflows SET updated_at = ?2, story_id = ?3 WHERE workflow_id = ?1",
            )
            .and_then(|mut q| q.execute(params![id, at, update.story_id])),
        None => conn
            .prepare_cached(
                "INSERT INTO workflows (workflow_id, story_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            )
            .and_then(|mut q| q.execute(params![id, update.story_id, at])),
    }
    .map_err(write_error)?;
    let status = update.status.as_str();
    conn.prepare_cached(
        "INSERT INTO workflow_agents (workflow_id, agent_id, status, last_execution, output_summary)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (workflow_id, agent_id) DO UPDATE SET status = excluded.status,
           last_execution = excluded.last_execution, output_summary = excluded.output_summary",
    )
    .and_then(|mut q| q.execute(params![id, update.agent_id, status, at, update.output_summary]))
    .map_err(write_error)?;
    conn.prepare_cached(
        "INSERT INTO status_history (workflow_id, agent_id, status, output_summary, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut q| {
        q.execute(params![
            id,
            update.agent_id,
            status,
            update.output_summary,
            at
        ])
    })
    .map_err(write_error)
    .map(drop)
}

/// Checks what an update names before it is sent to the writer.
fn check_update(update: &StatusUpdate) -> Result<(), StoreError> {
    check_status_agent_id(&update.agent_id)?;
    if let Some(story) = &update.story_id {
        check_story_id(story)?;
    }
    Ok(())
}

#[async_trait]
impl StatusStore for SqliteStatusStore {
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
        let (story_id, agents) = (story_id.to_string(), agents.to_vec());
        self.db
            .write(move |conn| {
                let id = workflow_id.as_str();
                let at = now_ms();
                let created = conn
                    .prepare_cached(
                        "INSERT INTO workflows (workflow_id, story_id, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?3) ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut q| q.execute(params![id, story_id, at]))
                    .map_err(write_error)?;
                if created == 0 {
                    return Err(StoreError::AlreadyExists {
                        what: format!("workflow `{id}`"),
                    });
                }
                let mut pending = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO workflow_agents (workflow_id, agent_id, status)
                         VALUES (?1, ?2, 'pending')",
                    )
                    .map_err(write_error)?;
                for agent in &agents {
                    pending.execute(params![id, agent]).map_err(write_error)?;
                }
                load_status(conn, id)?.ok_or_else(|| not_found(id))
            })
            .await
    }

    async fn get(&self, workflow_id: &WorkflowId) -> Result<Option<WorkflowStatus>, StoreError> {
        let id = workflow_id.to_string();
        self.db
            .read(move |conn| {
                let tx = conn.unchecked_transaction().map_err(read_error)?;
                load_status(&tx, &id)
            })
            .await
    }

    async fn update(&self, update: StatusUpdate) -> Result<WorkflowStatus, StoreError> {
        check_update(&update)?;
        self.db
            .write(move |conn| {
                apply_update(conn, &update)?;
                let id = update.workflow_id.as_str();
                load_status(conn, id)?.ok_or_else(|| not_found(id))
            })
            .await
    }

    async fn record(&self, update: StatusUpdate) -> Result<(), StoreError> {
        check_update(&update)?;
        self.db.write(move |conn| apply_update(conn, &update)).await
    }

    async fn list(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        self.db
            .read(|conn| {
                let tx = conn.unchecked_transaction().map_err(read_error)?;
                let mut workflows: BTreeMap<String, WorkflowSummary> = BTreeMap::new();
                let mut heads = tx
                    .prepare_cached(
                        "SELECT workflow_id, story_id, created_at, updated_at FROM workflows",
                    )
                    .map_err(read_error)?;
                let rows: Vec<(String, Option<String>, u64, u64)> = heads
                    .query_map([], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(read_error)?;
                // A damaged row is left out of the listing (and logged)
                // rather than hiding every other workflow; reading that
                // workflow itself reports it.
                for (id, story_id, created_at, updated_at) in rows {
                    let workflow_id = match parse_workflow_id(&id) {
                        Ok(workflow_id) => workflow_id,
                        Err(error) => {
                            tracing::warn!(%error, detail = error.detail(), "a workflow is left out of the listing");
                            continue;
                        }
                    };
                    let summary = WorkflowSummary {
                        workflow_id,
                        story_id,
                        agents: BTreeMap::new(),
                        created_at,
                        updated_at,
                    };
                    workflows.insert(id, summary);
                }
                let mut agents = tx
                    .prepare_cached("SELECT workflow_id, agent_id, status FROM workflow_agents")
                    .map_err(read_error)?;
                let rows: Vec<(String, String, String)> = agents
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(read_error)?;
                for (id, agent, status) in rows {
                    match parse_state(&id, &status) {
                        Ok(status) => {
                            if let Some(summary) = workflows.get_mut(&id) {
                                summary.agents.insert(agent, status);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, detail = error.detail(), "a workflow is left out of the listing");
                            workflows.remove(&id);
                        }
                    }
                }
                Ok(workflows.into_values().collect())
            })
            .await
    }

    async fn history(&self, workflow_id: &WorkflowId) -> Result<Vec<StatusChange>, StoreError> {
        let id = workflow_id.to_string();
        self.db
            .read(move |conn| {
                let tx = conn.unchecked_transaction().map_err(read_error)?;
                let exists = tx
                    .prepare_cached("SELECT 1 FROM workflows WHERE workflow_id = ?1")
                    .and_then(|mut q| q.exists([&id]))
                    .map_err(read_error)?;
                if !exists {
                    return Err(not_found(&id));
                }
                let mut query = tx
                    .prepare_cached(
                        "SELECT agent_id, status, output_summary, at FROM status_history
                         WHERE workflow_id = ?1 ORDER BY seq",
                    )
                    .map_err(read_error)?;
                let rows: Vec<(String, String, Option<String>, u64)> = query
                    .query_map([&id], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(read_error)?;
                rows.into_iter()
                    .map(|(agent_id, status, output_summary, at)| {
                        Ok(StatusChange {
                            status: parse_state(&id, &status)?,
                            agent_id,
                            output_summary,
                            at,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn delete(&self, workflow_id: &WorkflowId) -> Result<bool, StoreError> {
        let id = workflow_id.to_string();
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM workflows WHERE workflow_id = ?1", [&id])
                    .map(|deleted| deleted > 0)
                    .map_err(write_error)
            })
            .await
    }

    async fn cleanup(&self, retention: Duration, now: u64) -> Result<usize, StoreError> {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(retention_ms);
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM workflows WHERE updated_at < ?1", [cutoff])
                    .map_err(write_error)
            })
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.db.health().await
    }
}
