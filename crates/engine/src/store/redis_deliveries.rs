//! `RedisDeliveryStore`: the webhook outbox (SPEC 8.5) in Redis, shared by
//! every replica, so any of them sends a delivery another stored.
//!
//! Keys (after `key_prefix`):
//! - `run:{id}:webhook`: the run's webhook URL (its target).
//! - `delivery:{id}`: a hash of the [`StoredDelivery`] (`run_id`, `event`,
//!   `url`, `body`, `state`, `attempts` as JSON, `created_at`,
//!   `next_attempt_at` while pending).
//! - `run:{id}:deliveries`: the run's delivery ids, a sorted set scored by
//!   `created_at`.
//! - `deliveries:due`: the pending deliveries, a sorted set scored by
//!   `next_attempt_at`.
//!
//! Storing, claiming and recording are Lua scripts, each atomic in Redis:
//! a claim takes the due ids and moves their score and `next_attempt_at`
//! to the end of the lease in one step, and an attempt is recorded only
//! while `next_attempt_at` is still the caller's lease (see
//! [`DeliveryStore`]).

use std::collections::HashMap;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::StoreError;
use super::deliveries::{DeliveryAttempt, DeliveryState, DeliveryStore, StoredDelivery};
use super::redis_connection::RedisConnection;

/// KEYS: delivery, run's deliveries, due. ARGV: id, created_at,
/// next_attempt_at ('' for none), then the hash's fields as name, value
/// pairs. 1 when stored; 0 when the id was already stored.
const ENQUEUE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1]) end
return 1
";

/// KEYS: due. ARGV: now, lease end, limit, key prefix. The ids claimed.
const CLAIM_SCRIPT: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HSET', ARGV[4] .. 'delivery:' .. id, 'next_attempt_at', ARGV[2])
end
return ids
";

/// KEYS: delivery, due. ARGV: id, the lease, state, attempts JSON,
/// next_attempt_at ('' for none). 1 when written; 0 when the lease was not
/// the stored `next_attempt_at`.
const RECORD_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], 'next_attempt_at') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'attempts', ARGV[4])
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[1], 'next_attempt_at')
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
end
return 1
";

/// The webhook outbox in Redis (see the module docs).
#[derive(Debug)]
pub struct RedisDeliveryStore {
    redis: RedisConnection,
    enqueue: Script,
    claim: Script,
    record: Script,
}

impl RedisDeliveryStore {
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            enqueue: Script::new(ENQUEUE_SCRIPT),
            claim: Script::new(CLAIM_SCRIPT),
            record: Script::new(RECORD_SCRIPT),
        }
    }

    fn target_key(&self, run_id: &str) -> String {
        self.redis.key(&format!("run:{run_id}:webhook"))
    }

    fn delivery_key(&self, delivery_id: &str) -> String {
        self.redis.key(&format!("delivery:{delivery_id}"))
    }

    fn run_deliveries_key(&self, run_id: &str) -> String {
        self.redis.key(&format!("run:{run_id}:deliveries"))
    }

    fn due_key(&self) -> String {
        self.redis.key("deliveries:due")
    }

    fn attempts_json(&self, delivery: &StoredDelivery) -> Result<String, StoreError> {
        serde_json::to_string(&delivery.attempts).map_err(|e| {
            self.redis
                .corrupt(&format!("webhook delivery `{}`", delivery.delivery_id), e)
        })
    }

    /// The deliveries of `ids`, in that order, skipping any that are gone.
    async fn read(&self, ids: &[String]) -> Result<Vec<StoredDelivery>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reads = redis::pipe();
        for id in ids {
            reads.hgetall(self.delivery_key(id));
        }
        let mut redis = self.redis.handle();
        let hashes: Vec<HashMap<String, String>> = reads
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("read webhook deliveries", &err))?;
        let mut deliveries = Vec::with_capacity(ids.len());
        for (id, hash) in ids.iter().zip(hashes) {
            if !hash.is_empty() {
                deliveries.push(self.delivery_from_fields(id, hash)?);
            }
        }
        Ok(deliveries)
    }

    /// Reads a delivery's hash back.
    fn delivery_from_fields(
        &self,
        delivery_id: &str,
        mut hash: HashMap<String, String>,
    ) -> Result<StoredDelivery, StoreError> {
        let what = format!("webhook delivery `{delivery_id}`");
        let corrupt = |cause: String| self.redis.corrupt(&what, cause);
        let mut take = |name: &str| {
            hash.remove(name)
                .ok_or_else(|| corrupt(format!("no `{name}`")))
        };
        let run_id = take("run_id")?;
        let event = take("event")?;
        let url = take("url")?;
        let body = take("body")?;
        let state = take("state")?;
        let attempts = take("attempts")?;
        let created_at = take("created_at")?;
        let next_attempt_at = hash.remove("next_attempt_at");
        let number = |text: &str, name: &str| {
            text.parse::<u64>()
                .map_err(|e| corrupt(format!("`{name}`: {e}")))
        };
        let state = DeliveryState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?;
        let attempts: Vec<DeliveryAttempt> =
            serde_json::from_str(&attempts).map_err(|e| corrupt(e.to_string()))?;
        Ok(StoredDelivery {
            delivery_id: delivery_id.to_string(),
            run_id,
            event,
            url,
            body,
            state,
            attempts,
            created_at: number(&created_at, "created_at")?,
            next_attempt_at: next_attempt_at
                .map(|t| number(&t, "next_attempt_at"))
                .transpose()?,
        })
    }
}

#[async_trait]
impl DeliveryStore for RedisDeliveryStore {
    async fn save_target(&self, run_id: &str, url: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        redis
            .set_nx::<_, _, bool>(self.target_key(run_id), url)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("store the webhook of run `{run_id}`"), &err)
            })
    }

    async fn delete_target(&self, run_id: &str) -> Result<(), StoreError> {
        let mut redis = self.redis.handle();
        redis
            .del::<_, ()>(self.target_key(run_id))
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("remove the webhook of run `{run_id}`"), &err)
            })
    }

    async fn target(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let mut redis = self.redis.handle();
        redis.get(self.target_key(run_id)).await.map_err(|err| {
            self.redis
                .unavailable(&format!("read the webhook of run `{run_id}`"), &err)
        })
    }

    async fn enqueue(&self, delivery: &StoredDelivery) -> Result<bool, StoreError> {
        let id = &delivery.delivery_id;
        let mut invocation = self.enqueue.prepare_invoke();
        invocation
            .key(self.delivery_key(id))
            .key(self.run_deliveries_key(&delivery.run_id))
            .key(self.due_key())
            .arg(id)
            .arg(delivery.created_at)
            .arg(
                delivery
                    .next_attempt_at
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            );
        let mut fields = vec![
            ("run_id", delivery.run_id.clone()),
            ("event", delivery.event.clone()),
            ("url", delivery.url.clone()),
            ("body", delivery.body.clone()),
            ("state", delivery.state.as_str().to_string()),
            ("attempts", self.attempts_json(delivery)?),
            ("created_at", delivery.created_at.to_string()),
        ];
        if let Some(next) = delivery.next_attempt_at {
            fields.push(("next_attempt_at", next.to_string()));
        }
        for (name, value) in fields {
            invocation.arg(name).arg(value);
        }
        let mut redis = self.redis.handle();
        let stored: i64 = invocation.invoke_async(&mut redis).await.map_err(|err| {
            self.redis
                .unavailable(&format!("store webhook delivery `{id}`"), &err)
        })?;
        Ok(stored == 1)
    }

    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let mut redis = self.redis.handle();
        let ids: Vec<String> = self
            .claim
            .key(self.due_key())
            .arg(now)
            .arg(lease_until)
            .arg(limit)
            .arg(self.redis.key(""))
            .invoke_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("claim webhook deliveries", &err))?;
        self.read(&ids).await
    }

    async fn record_attempt(
        &self,
        delivery: &StoredDelivery,
        leased_until: u64,
    ) -> Result<bool, StoreError> {
        let id = &delivery.delivery_id;
        let mut redis = self.redis.handle();
        let written: i64 = self
            .record
            .key(self.delivery_key(id))
            .key(self.due_key())
            .arg(id)
            .arg(leased_until)
            .arg(delivery.state.as_str())
            .arg(self.attempts_json(delivery)?)
            .arg(
                delivery
                    .next_attempt_at
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            )
            .invoke_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis.unavailable(
                    &format!("record an attempt of webhook delivery `{id}`"),
                    &err,
                )
            })?;
        Ok(written == 1)
    }

    async fn deliveries_of(&self, run_id: &str) -> Result<Vec<StoredDelivery>, StoreError> {
        let mut redis = self.redis.handle();
        let ids: Vec<String> = redis
            .zrange(self.run_deliveries_key(run_id), 0, -1)
            .await
            .map_err(|err| {
                self.redis.unavailable(
                    &format!("read the webhook deliveries of run `{run_id}`"),
                    &err,
                )
            })?;
        self.read(&ids).await
    }

    async fn delete_of_runs(&self, run_ids: &[String]) -> Result<(), StoreError> {
        let mut reads = redis::pipe();
        for run_id in run_ids {
            reads.zrange(self.run_deliveries_key(run_id), 0, -1);
        }
        let mut redis = self.redis.handle();
        let deliveries: Vec<Vec<String>> = reads
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("read the webhooks of runs", &err))?;
        let mut delete = redis::pipe();
        delete.atomic();
        for (run_id, ids) in run_ids.iter().zip(&deliveries) {
            for id in ids {
                delete
                    .del(self.delivery_key(id))
                    .ignore()
                    .zrem(self.due_key(), id)
                    .ignore();
            }
            delete
                .del(self.run_deliveries_key(run_id))
                .ignore()
                .del(self.target_key(run_id))
                .ignore();
        }
        delete
            .query_async::<()>(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("delete the webhooks of runs", &err))
    }
}
