//! `SqliteMemoryStore`: memory scopes in the `memory` table, one row per
//! key with its JSON value as text.
//!
//! A value that no longer parses (a row damaged by hand or by a disk) is a
//! `storage_corrupt` error for that key — and for loading its whole scope,
//! which a run needs complete — but never for the other keys: `get` of
//! another key, `keys` and `delete` of the damaged one keep working.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::database::{Database, sql_error};
use crate::store::values::check_value;
use crate::store::{MemoryKey, MemoryScope, MemoryStore, StoreError, now_ms};

/// Memory in the embedded database (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteMemoryStore {
    db: Database,
}

impl SqliteMemoryStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn parse_value(scope: &str, key: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format!("memory key `{key}` of scope `{scope}`"), e))
}

/// Upserts `entries` into `scope` (inside the caller's transaction).
fn upsert(conn: &Connection, scope: &str, entries: &[(String, String)]) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO memory (scope, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .map_err(|e| sql_error("write memory", &e))?;
    let at = now_ms();
    for (key, value) in entries {
        insert
            .execute(params![scope, key, value, at])
            .map_err(|e| sql_error("write memory", &e))?;
    }
    Ok(())
}

/// The JSON text of each value, checked against the store's limits.
fn encode(
    entries: impl IntoIterator<Item = (MemoryKey, Value)>,
) -> Result<Vec<(String, String)>, StoreError> {
    entries
        .into_iter()
        .map(|(key, value)| {
            check_value(&value)?;
            Ok((key.as_str().to_string(), value.to_string()))
        })
        .collect()
}

#[async_trait]
impl MemoryStore for SqliteMemoryStore {
    async fn get(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<Option<Value>, StoreError> {
        let (scope, key) = (scope.to_string(), key.as_str().to_string());
        self.db
            .read(move |conn| {
                let text: Option<String> = conn
                    .prepare_cached("SELECT value FROM memory WHERE scope = ?1 AND key = ?2")
                    .and_then(|mut q| {
                        q.query_row(params![scope, key], |row| row.get(0))
                            .optional()
                    })
                    .map_err(|e| sql_error("read memory", &e))?;
                text.map(|text| parse_value(&scope, &key, &text))
                    .transpose()
            })
            .await
    }

    async fn set(
        &self,
        scope: &MemoryScope,
        key: &MemoryKey,
        value: Value,
    ) -> Result<(), StoreError> {
        let entries = encode([(key.clone(), value)])?;
        let scope = scope.to_string();
        self.db
            .write(move |conn| upsert(conn, &scope, &entries))
            .await
    }

    async fn delete(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<bool, StoreError> {
        let (scope, key) = (scope.to_string(), key.as_str().to_string());
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM memory WHERE scope = ?1 AND key = ?2")
                    .and_then(|mut q| q.execute(params![scope, key]))
                    .map(|deleted| deleted > 0)
                    .map_err(|e| sql_error("delete memory", &e))
            })
            .await
    }

    async fn keys(&self, scope: &MemoryScope) -> Result<Vec<String>, StoreError> {
        let scope = scope.to_string();
        self.db
            .read(move |conn| {
                let mut query = conn
                    .prepare_cached("SELECT key FROM memory WHERE scope = ?1 ORDER BY key")
                    .map_err(|e| sql_error("list memory keys", &e))?;
                let keys = query
                    .query_map([&scope], |row| row.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| sql_error("list memory keys", &e))?;
                Ok(keys)
            })
            .await
    }

    async fn load(&self, scope: &MemoryScope) -> Result<BTreeMap<String, Value>, StoreError> {
        let scope = scope.to_string();
        self.db
            .read(move |conn| {
                let mut query = conn
                    .prepare_cached("SELECT key, value FROM memory WHERE scope = ?1")
                    .map_err(|e| sql_error("read memory", &e))?;
                let rows: Vec<(String, String)> = query
                    .query_map([&scope], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| sql_error("read memory", &e))?;
                rows.into_iter()
                    .map(|(key, text)| {
                        let value = parse_value(&scope, &key, &text)?;
                        Ok((key, value))
                    })
                    .collect()
            })
            .await
    }

    async fn set_many(
        &self,
        scope: &MemoryScope,
        entries: BTreeMap<MemoryKey, Value>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = encode(entries)?;
        let scope = scope.to_string();
        self.db
            .write(move |conn| upsert(conn, &scope, &entries))
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.db.health().await
    }
}
