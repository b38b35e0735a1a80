//! `SqliteRunStore`: run claims and run records in the embedded database.
//!
//! A claim is a row of `run_claims` with an expiry, so the rule "one run
//! per (flow, story)" holds across every process using the data directory
//! (a server and CLI runs): claiming is one write transaction that finds
//! the pair free — no row, or one whose holder let it expire — and takes
//! it. The engine renews a claim while its run lives (see [`CLAIM_TTL`]);
//! the claim of a process killed mid-run expires instead of blocking the
//! story for ever. A record is one JSON row per (flow, story).
//!
//! A run resource is a row of `runs` (its columns to find it by, its body
//! as JSON) and its events rows of `run_events`. Creating a run takes its
//! claim in the same transaction, and ending it saves the record,
//! releases the claim and writes its last state and events in one. An
//! interrupted run keeps its claim with no expiry, and its checkpoint in
//! `run_checkpoints`, until it is resumed or ends.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::database::{Database, sql_error};
use crate::store::{
    CLAIM_TTL, Created, RunQuery, RunRecord, RunStore, StoreError, StoredEvent, StoredRun, now_ms,
};

/// Run claims and records in the embedded database (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteRunStore {
    db: Database,
}

impl SqliteRunStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The expiry of the claim of an interrupted run: it lasts until the run ends.
const NEVER: u64 = i64::MAX as u64;

fn expiry() -> u64 {
    now_ms().saturating_add(u64::try_from(CLAIM_TTL.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait]
impl RunStore for SqliteRunStore {
    async fn claim(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let (flow, story, run_id) = (flow.to_string(), story.to_string(), run_id.to_string());
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("claim a run", &e);
                take_claim(conn, &flow, &story, &run_id).map_err(error)
            })
            .await
    }

    async fn renew(&self, flow: &str, story: &str, run_id: &str) -> Result<bool, StoreError> {
        let (flow, story, run_id) = (flow.to_string(), story.to_string(), run_id.to_string());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE run_claims SET expires_at = ?4
                     WHERE flow = ?1 AND story = ?2 AND run_id = ?3",
                )
                .and_then(|mut q| q.execute(params![flow, story, run_id, expiry()]))
                .map(|renewed| renewed > 0)
                .map_err(|e| sql_error("renew a run claim", &e))
            })
            .await
    }

    async fn release(&self, flow: &str, story: &str, run_id: &str) -> Result<(), StoreError> {
        let (flow, story, run_id) = (flow.to_string(), story.to_string(), run_id.to_string());
        self.db
            .write(move |conn| release_claim(conn, &flow, &story, &run_id))
            .await
    }

    async fn load(&self, flow: &str, story: &str) -> Result<Option<RunRecord>, StoreError> {
        let (flow, story) = (flow.to_string(), story.to_string());
        self.db
            .read(move |conn| {
                let text: Option<String> = conn
                    .prepare_cached("SELECT record FROM run_records WHERE flow = ?1 AND story = ?2")
                    .and_then(|mut q| {
                        q.query_row(params![flow, story], |row| row.get(0))
                            .optional()
                    })
                    .map_err(|e| sql_error("read a run record", &e))?;
                text.map(|text| {
                    serde_json::from_str(&text).map_err(|e| {
                        StoreError::corrupt(format!("the run record of `{flow}__{story}`"), e)
                    })
                })
                .transpose()
            })
            .await
    }

    async fn save(&self, flow: &str, story: &str, record: &RunRecord) -> Result<(), StoreError> {
        let text = encode(record)?;
        let (flow, story) = (flow.to_string(), story.to_string());
        self.db
            .write(move |conn| save_record(conn, &flow, &story, &text))
            .await
    }

    async fn finish(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
        record: Option<&RunRecord>,
    ) -> Result<(), StoreError> {
        let text = record.map(encode).transpose()?;
        let (flow, story, run_id) = (flow.to_string(), story.to_string(), run_id.to_string());
        // One transaction: the record and the release share a commit.
        self.db
            .write(move |conn| {
                if let Some(text) = &text {
                    save_record(conn, &flow, &story, text)?;
                }
                release_claim(conn, &flow, &story, &run_id)
            })
            .await
    }

    async fn create_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
    ) -> Result<Created, StoreError> {
        let (run, events) = (run.clone(), events.to_vec());
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("create a run", &e);
                if run_exists(conn, &run.run_id).map_err(error)? {
                    return Ok(Created::IdTaken);
                }
                if let Some(holder) =
                    take_claim(conn, &run.flow, &run.story_id, &run.run_id).map_err(error)?
                {
                    return Ok(Created::Held(holder));
                }
                insert_run(conn, &run).map_err(error)?;
                insert_events(conn, &run.run_id, &events).map_err(error)?;
                Ok(Created::Stored)
            })
            .await
    }

    async fn update_run(&self, run: &StoredRun, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.update_run_where(run, None, events).await.map(drop)
    }

    async fn update_run_if(
        &self,
        run: &StoredRun,
        expected: &str,
        events: &[StoredEvent],
    ) -> Result<bool, StoreError> {
        self.update_run_where(run, Some(expected.to_string()), events)
            .await
    }

    async fn end_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
        record: Option<&RunRecord>,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let text = record.map(encode).transpose()?;
        let (run, events) = (run.clone(), events.to_vec());
        let expected = expected.map(str::to_string);
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("end a run", &e);
                if !replace_run(conn, &run, expected.as_deref()).map_err(error)? {
                    return Ok(false);
                }
                if let Some(text) = &text {
                    save_record(conn, &run.flow, &run.story_id, text)?;
                }
                insert_events(conn, &run.run_id, &events).map_err(error)?;
                conn.prepare_cached("DELETE FROM run_checkpoints WHERE run_id = ?1")
                    .and_then(|mut q| q.execute(params![run.run_id]))
                    .map_err(error)?;
                release_claim(conn, &run.flow, &run.story_id, &run.run_id)?;
                Ok(true)
            })
            .await
    }

    async fn suspend_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        let (run, events, checkpoint) = (run.clone(), events.to_vec(), checkpoint.to_string());
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("suspend a run", &e);
                replace_run(conn, &run, None).map_err(error)?;
                insert_events(conn, &run.run_id, &events).map_err(error)?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO run_checkpoints (run_id, body) VALUES (?1, ?2)",
                )
                .and_then(|mut q| q.execute(params![run.run_id, checkpoint]))
                .map_err(error)?;
                set_claim_expiry(conn, &run, NEVER).map_err(error)
            })
            .await
    }

    async fn resume_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
    ) -> Result<bool, StoreError> {
        let (run, events) = (run.clone(), events.to_vec());
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("resume a run", &e);
                if !replace_run(conn, &run, Some("interrupted")).map_err(error)? {
                    return Ok(false);
                }
                insert_events(conn, &run.run_id, &events).map_err(error)?;
                set_claim_expiry(conn, &run, expiry()).map_err(error)?;
                Ok(true)
            })
            .await
    }

    async fn checkpoint(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let run_id = run_id.to_string();
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT body FROM run_checkpoints WHERE run_id = ?1")
                    .and_then(|mut q| q.query_row(params![run_id], |row| row.get(0)).optional())
                    .map_err(|e| sql_error("read a run's checkpoint", &e))
            })
            .await
    }

    async fn append_events(&self, run_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let (run_id, events) = (run_id.to_string(), events.to_vec());
        self.db
            .write(move |conn| {
                insert_events(conn, &run_id, &events)
                    .map_err(|e| sql_error("store the events of a run", &e))
            })
            .await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<StoredRun>, StoreError> {
        let run_id = run_id.to_string();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"))
                    .and_then(|mut q| q.query_row(params![run_id], stored_run).optional())
                    .map_err(|e| sql_error("read a run", &e))
            })
            .await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<StoredRun>, StoreError> {
        let query = query.clone();
        self.db
            .read(move |conn| {
                let mut conditions = Vec::new();
                let mut values: Vec<rusqlite::types::Value> = Vec::new();
                if let Some(story) = &query.story_id {
                    values.push(story.clone().into());
                    conditions.push(format!("story_id = ?{}", values.len()));
                }
                if let Some(flow) = &query.flow {
                    values.push(flow.clone().into());
                    conditions.push(format!("flow = ?{}", values.len()));
                }
                if !query.statuses.is_empty() {
                    let mut any = Vec::new();
                    for status in &query.statuses {
                        values.push(status.clone().into());
                        any.push(format!("?{}", values.len()));
                    }
                    conditions.push(format!("status IN ({})", any.join(", ")));
                }
                if let Some((created_at, run_id)) = &query.before {
                    values.push(i64::try_from(*created_at).unwrap_or(i64::MAX).into());
                    let at = values.len();
                    values.push(run_id.clone().into());
                    let id = values.len();
                    conditions.push(format!(
                        "(created_at < ?{at} OR (created_at = ?{at} AND run_id < ?{id}))"
                    ));
                }
                let filter = if conditions.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", conditions.join(" AND "))
                };
                values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
                let sql = format!(
                    "SELECT {RUN_COLUMNS} FROM runs {filter}
                     ORDER BY created_at DESC, run_id DESC LIMIT ?{}",
                    values.len()
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut q| {
                        q.query_map(rusqlite::params_from_iter(values), stored_run)?
                            .collect()
                    })
                    .map_err(|e| sql_error("list runs", &e))
            })
            .await
    }

    async fn events_after(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let run_id = run_id.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, event, data FROM run_events
                     WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )
                .and_then(|mut q| {
                    q.query_map(params![run_id, after, limit], |row| {
                        Ok(StoredEvent {
                            id: row.get(0)?,
                            event: row.get(1)?,
                            data: row.get(2)?,
                        })
                    })?
                    .collect()
                })
                .map_err(|e| sql_error("read the events of a run", &e))
            })
            .await
    }

    async fn last_event_id(&self, run_id: &str) -> Result<Option<u64>, StoreError> {
        let run_id = run_id.to_string();
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT max(id) FROM run_events WHERE run_id = ?1")
                    .and_then(|mut q| q.query_row(params![run_id], |row| row.get(0)))
                    .map_err(|e| sql_error("read the last event of a run", &e))
            })
            .await
    }

    async fn request_cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                conn.prepare_cached("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?1")
                    .and_then(|mut q| q.execute(params![run_id]))
                    .map(|rows| rows > 0)
                    .map_err(|e| sql_error("ask a run to cancel", &e))
            })
            .await
    }

    async fn cancel_requested(&self, run_ids: &[String]) -> Result<Vec<String>, StoreError> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let run_ids = run_ids.to_vec();
        self.db
            .read(move |conn| {
                let mut asked = conn
                    .prepare_cached("SELECT cancel_requested FROM runs WHERE run_id = ?1")
                    .map_err(|e| sql_error("read cancel requests", &e))?;
                let mut found = Vec::new();
                for run_id in run_ids {
                    let requested: Option<bool> = asked
                        .query_row(params![run_id], |row| row.get(0))
                        .optional()
                        .map_err(|e| sql_error("read cancel requests", &e))?;
                    if requested == Some(true) {
                        found.push(run_id);
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn orphaned_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let now = now_ms();
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {} FROM runs r
                     LEFT JOIN run_claims c ON c.flow = r.flow AND c.story = r.story_id
                     WHERE r.status IN ('queued', 'running')
                       AND (c.run_id IS NULL OR c.run_id != r.run_id OR c.expires_at <= ?1)
                     ORDER BY r.created_at, r.run_id",
                    RUN_COLUMNS
                        .split(", ")
                        .map(|c| format!("r.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut q| q.query_map(params![now], stored_run)?.collect())
                    .map_err(|e| sql_error("find orphaned runs", &e))
            })
            .await
    }

    async fn ended_before(&self, cutoff: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                // A run is created before it ends: `created_at` bounds the
                // scan of the status index.
                conn.prepare_cached(
                    "SELECT run_id FROM runs
                     WHERE status IN ('pending', 'success', 'error', 'cancelled')
                       AND created_at < ?1 AND finished_at < ?1
                     ORDER BY finished_at LIMIT ?2",
                )
                .and_then(|mut q| {
                    q.query_map(params![cutoff, limit], |row| row.get(0))?
                        .collect()
                })
                .map_err(|e| sql_error("find runs past their retention", &e))
            })
            .await
    }

    async fn delete_runs(&self, run_ids: &[String]) -> Result<(), StoreError> {
        let run_ids = run_ids.to_vec();
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("delete runs", &e);
                for sql in [
                    "DELETE FROM run_events WHERE run_id = ?1",
                    "DELETE FROM run_checkpoints WHERE run_id = ?1",
                    "DELETE FROM runs WHERE run_id = ?1",
                ] {
                    let mut delete = conn.prepare_cached(sql).map_err(error)?;
                    for run_id in &run_ids {
                        delete.execute(params![run_id]).map_err(error)?;
                    }
                }
                Ok(())
            })
            .await
    }
}

impl SqliteRunStore {
    async fn update_run_where(
        &self,
        run: &StoredRun,
        expected: Option<String>,
        events: &[StoredEvent],
    ) -> Result<bool, StoreError> {
        let (run, events) = (run.clone(), events.to_vec());
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("update a run", &e);
                let written = replace_run(conn, &run, expected.as_deref()).map_err(error)?;
                if written {
                    insert_events(conn, &run.run_id, &events).map_err(error)?;
                }
                Ok(written)
            })
            .await
    }
}

/// Takes the claim of (flow, story) for `run_id` when it is free (no row,
/// or an expired one); else the holder.
fn take_claim(
    conn: &Connection,
    flow: &str,
    story: &str,
    run_id: &str,
) -> Result<Option<String>, rusqlite::Error> {
    let holder: Option<(String, u64)> = conn
        .prepare_cached("SELECT run_id, expires_at FROM run_claims WHERE flow = ?1 AND story = ?2")
        .and_then(|mut q| {
            q.query_row(params![flow, story], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })?;
    if let Some((holder, expires_at)) = holder
        && expires_at > now_ms()
    {
        return Ok(Some(holder));
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_claims (flow, story, run_id, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut q| q.execute(params![flow, story, run_id, expiry()]))?;
    Ok(None)
}

/// The columns of a [`StoredRun`], in the order [`stored_run`] reads them.
const RUN_COLUMNS: &str =
    "run_id, flow, story_id, status, created_at, updated_at, finished_at, cancel_requested, body";

fn stored_run(row: &Row<'_>) -> Result<StoredRun, rusqlite::Error> {
    Ok(StoredRun {
        run_id: row.get(0)?,
        flow: row.get(1)?,
        story_id: row.get(2)?,
        status: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        finished_at: row.get(6)?,
        cancel_requested: row.get(7)?,
        body: row.get(8)?,
    })
}

fn run_exists(conn: &Connection, run_id: &str) -> Result<bool, rusqlite::Error> {
    conn.prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1")
        .and_then(|mut q| q.exists(params![run_id]))
}

fn insert_run(conn: &Connection, run: &StoredRun) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO runs (run_id, flow, story_id, status, created_at, updated_at, finished_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut q| {
        q.execute(params![
            run.run_id,
            run.flow,
            run.story_id,
            run.status,
            run.created_at,
            run.updated_at,
            run.finished_at,
            run.body
        ])
    })
    .map(drop)
}

/// Writes `run` over its row when its status is `expected` (any status
/// when `None`); whether a row was written.
fn replace_run(
    conn: &Connection,
    run: &StoredRun,
    expected: Option<&str>,
) -> Result<bool, rusqlite::Error> {
    // Without an expected status, only a run that has not ended: a
    // process that lost its claim (paused past it) and was marked dead
    // must not write over the ending another process gave its run.
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, updated_at = ?3, finished_at = ?4, body = ?5
         WHERE run_id = ?1 AND (?6 IS NULL AND finished_at IS NULL OR status = ?6)",
    )
    .and_then(|mut q| {
        q.execute(params![
            run.run_id,
            run.status,
            run.updated_at,
            run.finished_at,
            run.body,
            expected
        ])
    })
    .map(|rows| rows > 0)
}

fn insert_events(
    conn: &Connection,
    run_id: &str,
    events: &[StoredEvent],
) -> Result<(), rusqlite::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO run_events (run_id, id, event, data) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for event in events {
        insert.execute(params![run_id, event.id, event.event, event.data])?;
    }
    Ok(())
}

fn encode(record: &RunRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Io {
        message: "storage error: could not encode a run record".into(),
        detail: e.to_string(),
    })
}

fn save_record(conn: &Connection, flow: &str, story: &str, text: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_records (flow, story, record) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut q| q.execute(params![flow, story, text]))
    .map(drop)
    .map_err(|e| sql_error("write a run record", &e))
}

/// Sets when `run`'s claim expires, if the run holds it.
fn set_claim_expiry(
    conn: &Connection,
    run: &StoredRun,
    expires_at: u64,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "UPDATE run_claims SET expires_at = ?4 WHERE flow = ?1 AND story = ?2 AND run_id = ?3",
    )
    .and_then(|mut q| q.execute(params![run.flow, run.story_id, run.run_id, expires_at]))
    .map(drop)
}

fn release_claim(
    conn: &Connection,
    flow: &str,
    story: &str,
    run_id: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM run_claims WHERE flow = ?1 AND story = ?2 AND run_id = ?3")
        .and_then(|mut q| q.execute(params![flow, story, run_id]))
        .map(drop)
        .map_err(|e| sql_error("release a run claim", &e))
}
