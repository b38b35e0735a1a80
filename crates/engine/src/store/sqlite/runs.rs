//! `SqliteRunStore`: run claims and run records in the embedded database.
//!
//! A claim is a row of `run_claims` with an expiry, so the rule "one run
//! per (flow, story)" holds across every process using the data directory
//! (a server and CLI runs): claiming is one write transaction that finds
//! the pair free — no row, or one whose holder let it expire — and takes
//! it. The engine renews a claim while its run lives (see [`CLAIM_TTL`]);
//! the claim of a process killed mid-run expires instead of blocking the
//! story for ever. A record is one JSON row per (flow, story).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::database::{Database, sql_error};
use crate::store::{CLAIM_TTL, RunRecord, RunStore, StoreError, now_ms};

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
                let holder: Option<(String, u64)> = conn
                    .prepare_cached(
                        "SELECT run_id, expires_at FROM run_claims WHERE flow = ?1 AND story = ?2",
                    )
                    .and_then(|mut q| {
                        q.query_row(params![flow, story], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                    })
                    .map_err(error)?;
                if let Some((holder, expires_at)) = holder
                    && expires_at > now_ms()
                {
                    return Ok(Some(holder));
                }
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO run_claims (flow, story, run_id, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut q| q.execute(params![flow, story, run_id, expiry()]))
                .map_err(error)?;
                Ok(None)
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
