//! `RedisMemoryStore`: memory scopes as Redis hashes (SPEC 4.4).
//!
//! One hash per scope, `{prefix}memory:{scope}` with the scope in its
//! canonical form (`memory:isolated:pm:S1`, `memory:shared:default`); each
//! field is a key, each value the JSON text of the value. Every set (and
//! `set_many`) refreshes the scope's time to live, `memory.redis.ttl`
//! seconds, in the same `MULTI`/`EXEC` as the write, so a scope lives that
//! long after its last write and then disappears as a whole. A `ttl` of 0
//! means scopes never expire. A delete removes the field only (an emptied
//! hash is gone at once, as Redis drops empty keys).
//!
//! Each command is atomic on the Redis side, so concurrent writers from any
//! number of replicas lose nothing; the last write of a key wins.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::Value;

use super::redis_connection::RedisConnection;
use super::values::check_value;
use super::{MemoryKey, MemoryScope, MemoryStore, StoreError};

/// Memory scopes in Redis hashes (see the module docs).
#[derive(Debug, Clone)]
pub struct RedisMemoryStore {
    redis: RedisConnection,
    /// Seconds a scope lives after its last write; 0 = forever.
    ttl_secs: u64,
}

impl RedisMemoryStore {
    /// Memory on `redis`; scopes expire `ttl_secs` after their last write
    /// (0: never).
    pub fn new(redis: RedisConnection, ttl_secs: u64) -> Self {
        Self { redis, ttl_secs }
    }

    fn scope_key(&self, scope: &MemoryScope) -> String {
        self.redis.key(&format!("memory:{scope}"))
    }

    /// Writes `fields` (key, JSON text) to `scope` and refreshes its TTL, atomically.
    async fn write(
        &self,
        scope: &MemoryScope,
        fields: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        let key = self.scope_key(scope);
        let mut write = redis::pipe();
        write.atomic().hset_multiple(&key, &fields).ignore();
        if self.ttl_secs > 0 {
            let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
            write.expire(&key, ttl).ignore();
        }
        let mut redis = self.redis.handle();
        write.exec_async(&mut redis).await.map_err(|err| {
            self.redis
                .unavailable(&format!("write memory scope `{scope}`"), &err)
        })
    }

    /// Parses a stored value of `key` in `scope`.
    fn decode(&self, scope: &MemoryScope, key: &str, text: &str) -> Result<Value, StoreError> {
        serde_json::from_str(text).map_err(|err| {
            self.redis
                .corrupt(&format!("memory scope `{scope}`, key `{key}`"), err)
        })
    }

    fn read_failed(&self, scope: &MemoryScope, err: &redis::RedisError) -> StoreError {
        self.redis
            .unavailable(&format!("read memory scope `{scope}`"), err)
    }
}

/// The JSON text stored for `value`.
fn encode(value: &Value) -> String {
    // A `Value` always serialises (its map keys are strings).
    value.to_string()
}

#[async_trait]
impl MemoryStore for RedisMemoryStore {
    async fn get(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<Option<Value>, StoreError> {
        let mut redis = self.redis.handle();
        let text: Option<String> = redis
            .hget(self.scope_key(scope), key.as_str())
            .await
            .map_err(|err| self.read_failed(scope, &err))?;
        text.map(|text| self.decode(scope, key.as_str(), &text))
            .transpose()
    }

    async fn set(
        &self,
        scope: &MemoryScope,
        key: &MemoryKey,
        value: Value,
    ) -> Result<(), StoreError> {
        check_value(&value)?;
        self.write(scope, vec![(key.as_str().to_string(), encode(&value))])
            .await
    }

    async fn delete(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        let removed: u64 = redis
            .hdel(self.scope_key(scope), key.as_str())
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("write memory scope `{scope}`"), &err)
            })?;
        Ok(removed > 0)
    }

    async fn keys(&self, scope: &MemoryScope) -> Result<Vec<String>, StoreError> {
        let mut redis = self.redis.handle();
        let mut keys: Vec<String> = redis
            .hkeys(self.scope_key(scope))
            .await
            .map_err(|err| self.read_failed(scope, &err))?;
        keys.sort();
        Ok(keys)
    }

    async fn load(&self, scope: &MemoryScope) -> Result<BTreeMap<String, Value>, StoreError> {
        let mut redis = self.redis.handle();
        let stored: BTreeMap<String, String> = redis
            .hgetall(self.scope_key(scope))
            .await
            .map_err(|err| self.read_failed(scope, &err))?;
        stored
            .into_iter()
            .map(|(key, text)| {
                let value = self.decode(scope, &key, &text)?;
                Ok((key, value))
            })
            .collect()
    }

    async fn set_many(
        &self,
        scope: &MemoryScope,
        entries: BTreeMap<MemoryKey, Value>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        entries.values().try_for_each(check_value)?;
        let fields = entries
            .iter()
            .map(|(key, value)| (key.as_str().to_string(), encode(value)))
            .collect();
        self.write(scope, fields).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}
