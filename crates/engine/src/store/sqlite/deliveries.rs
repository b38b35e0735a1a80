//! `SqliteDeliveryStore`: the webhook outbox (SPEC 8.5) in the embedded
//! database — `webhook_targets` and `webhook_deliveries` (see `schema.rs`).
//!
//! Claiming due deliveries is one write transaction that selects them and
//! moves their `next_attempt_at` to the end of the lease, so two processes
//! on one data directory never claim the same attempt; recording an attempt
//! is an `UPDATE … WHERE next_attempt_at = <lease>`, a compare-and-set on
//! the lease (see [`DeliveryStore`]).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::database::{Database, sql_error};
use crate::store::{DeliveryAttempt, DeliveryState, DeliveryStore, StoreError, StoredDelivery};

/// The webhook outbox in the embedded database (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteDeliveryStore {
    db: Database,
}

impl SqliteDeliveryStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The columns of a [`StoredDelivery`], in the order [`stored_delivery`] reads them.
const DELIVERY_COLUMNS: &str =
    "delivery_id, run_id, event, url, body, state, attempts, created_at, next_attempt_at";

/// A row read as text and numbers; decoded by [`decode`], which can fail
/// with the store's own error (a row this program did not write).
type Columns = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    u64,
    Option<u64>,
);

fn stored_delivery(row: &Row<'_>) -> Result<Columns, rusqlite::Error> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn decode(columns: Columns) -> Result<StoredDelivery, StoreError> {
    let (delivery_id, run_id, event, url, body, state, attempts, created_at, next_attempt_at) =
        columns;
    let what = || format!("webhook delivery `{delivery_id}`");
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| StoreError::corrupt(what(), format!("unknown state {state:?}")))?;
    let attempts: Vec<DeliveryAttempt> =
        serde_json::from_str(&attempts).map_err(|e| StoreError::corrupt(what(), e))?;
    Ok(StoredDelivery {
        delivery_id,
        run_id,
        event,
        url,
        body,
        state,
        attempts,
        created_at,
        next_attempt_at,
    })
}

fn encode_attempts(delivery: &StoredDelivery) -> Result<String, StoreError> {
    serde_json::to_string(&delivery.attempts).map_err(|e| StoreError::Io {
        message: "storage error: could not encode a webhook delivery".into(),
        detail: e.to_string(),
    })
}

fn select(
    conn: &Connection,
    filter: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Columns>, rusqlite::Error> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {filter}"
    ))
    .and_then(|mut q| q.query_map(values, stored_delivery)?.collect())
}

#[async_trait]
impl DeliveryStore for SqliteDeliveryStore {
    async fn save_target(&self, run_id: &str, url: &str) -> Result<bool, StoreError> {
        let (run_id, url) = (run_id.to_string(), url.to_string());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO webhook_targets (run_id, url) VALUES (?1, ?2)",
                )
                .and_then(|mut q| q.execute(params![run_id, url]))
                .map(|inserted| inserted == 1)
                .map_err(|e| sql_error("store a run's webhook", &e))
            })
            .await
    }

    async fn delete_target(&self, run_id: &str) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM webhook_targets WHERE run_id = ?1")
                    .and_then(|mut q| q.execute(params![run_id]))
                    .map(drop)
                    .map_err(|e| sql_error("remove a run's webhook", &e))
            })
            .await
    }

    async fn target(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let run_id = run_id.to_string();
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT url FROM webhook_targets WHERE run_id = ?1")
                    .and_then(|mut q| q.query_row(params![run_id], |row| row.get(0)).optional())
                    .map_err(|e| sql_error("read a run's webhook", &e))
            })
            .await
    }

    async fn enqueue(&self, delivery: &StoredDelivery) -> Result<bool, StoreError> {
        let attempts = encode_attempts(delivery)?;
        let delivery = delivery.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO webhook_deliveries ({DELIVERY_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))
                .and_then(|mut q| {
                    q.execute(params![
                        delivery.delivery_id,
                        delivery.run_id,
                        delivery.event,
                        delivery.url,
                        delivery.body,
                        delivery.state.as_str(),
                        attempts,
                        delivery.created_at,
                        delivery.next_attempt_at,
                    ])
                })
                .map(|rows| rows > 0)
                .map_err(|e| sql_error("store a webhook delivery", &e))
            })
            .await
    }

    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("claim webhook deliveries", &e);
                let due = select(
                    conn,
                    "WHERE next_attempt_at <= ?1 AND state = 'pending'
                     ORDER BY next_attempt_at, delivery_id LIMIT ?2",
                    &[&now, &limit],
                )
                .map_err(error)?;
                let mut lease = conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE delivery_id = ?1",
                    )
                    .map_err(error)?;
                let mut claimed = Vec::with_capacity(due.len());
                for columns in due {
                    let mut delivery = decode(columns)?;
                    lease
                        .execute(params![delivery.delivery_id, lease_until])
                        .map_err(error)?;
                    delivery.next_attempt_at = Some(lease_until);
                    claimed.push(delivery);
                }
                Ok(claimed)
            })
            .await
    }

    async fn record_attempt(
        &self,
        delivery: &StoredDelivery,
        leased_until: u64,
    ) -> Result<bool, StoreError> {
        let attempts = encode_attempts(delivery)?;
        let delivery = delivery.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4
                     WHERE delivery_id = ?1 AND next_attempt_at = ?5",
                )
                .and_then(|mut q| {
                    q.execute(params![
                        delivery.delivery_id,
                        delivery.state.as_str(),
                        attempts,
                        delivery.next_attempt_at,
                        leased_until,
                    ])
                })
                .map(|rows| rows > 0)
                .map_err(|e| sql_error("record a webhook attempt", &e))
            })
            .await
    }

    async fn deliveries_of(&self, run_id: &str) -> Result<Vec<StoredDelivery>, StoreError> {
        let run_id = run_id.to_string();
        self.db
            .read(move |conn| {
                select(
                    conn,
                    "WHERE run_id = ?1 ORDER BY created_at, delivery_id",
                    &[&run_id],
                )
                .map_err(|e| sql_error("read a run's webhook deliveries", &e))?
                .into_iter()
                .map(decode)
                .collect()
            })
            .await
    }

    async fn delete_of_runs(&self, run_ids: &[String]) -> Result<(), StoreError> {
        let run_ids = run_ids.to_vec();
        self.db
            .write(move |conn| {
                let error = |e: rusqlite::Error| sql_error("delete the webhooks of runs", &e);
                let mut deliveries = conn
                    .prepare_cached("DELETE FROM webhook_deliveries WHERE run_id = ?1")
                    .map_err(error)?;
                let mut targets = conn
                    .prepare_cached("DELETE FROM webhook_targets WHERE run_id = ?1")
                    .map_err(error)?;
                for run_id in &run_ids {
                    deliveries.execute(params![run_id]).map_err(error)?;
                    targets.execute(params![run_id]).map_err(error)?;
                }
                Ok(())
            })
            .await
    }
}
