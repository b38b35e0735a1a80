//! `RedisRunStore`: run claims and run records in Redis, so that one run per
//! (flow, story) holds across every replica and any replica can resume it.
//!
//! Keys (after `key_prefix`):
//! - `run:claim:{flow}__{story}`: the id of the run holding the pair, set
//!   with `SET NX PX` — only when nobody holds it, and with a time to live
//!   ([`CLAIM_TTL`]) so that the claim of a replica that crashed mid-run
//!   expires instead of blocking the story for ever; the engine renews it
//!   while its run lives.
//! - `run:record:{flow}__{story}`: the [`RunRecord`] as JSON.
//!
//! Claiming, renewing and releasing are Lua scripts, each atomic in Redis:
//! a claim sets the key or reports the holder in one step (no window where
//! the holder expires between the two), and renew and release act only
//! while the key still holds *our* run id — a run whose claim expired and
//! was taken by another never extends or deletes the newcomer's claim.

use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::StoreError;
use super::redis_connection::RedisConnection;
use super::runs::{CLAIM_TTL, RunRecord, RunStore};

/// KEYS: claim. ARGV: run id, ttl ms. Nil when the claim is ours, else the holder.
const CLAIM_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
";

/// KEYS: claim. ARGV: run id, ttl ms. 1 when the claim was still ours and renewed.
const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// KEYS: claim. ARGV: run id. Deletes the claim only if it is still ours.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Run claims and records in Redis (see the module docs).
#[derive(Debug)]
pub struct RedisRunStore {
    redis: RedisConnection,
    /// Claim lifetime without renewal.
    claim_ttl: Duration,
    claim: Script,
    renew: Script,
    release: Script,
}

impl RedisRunStore {
    /// Run claims and records on `redis`, claims living [`CLAIM_TTL`].
    pub fn new(redis: RedisConnection) -> Self {
        Self::with_claim_ttl(redis, CLAIM_TTL)
    }

    /// The same with another claim lifetime (tests of expiry use a short
    /// one). A zero TTL is raised to one millisecond.
    pub fn with_claim_ttl(redis: RedisConnection, claim_ttl: Duration) -> Self {
        Self {
            redis,
            claim_ttl: claim_ttl.max(Duration::from_millis(1)),
            claim: Script::new(CLAIM_SCRIPT),
            renew: Script::new(RENEW_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
        }
    }

    fn claim_key(&self, flow: &str, story: &str) -> String {
        self.redis.key(&format!("run:claim:{flow}__{story}"))
    }

    fn record_key(&self, flow: &str, story: &str) -> String {
        self.redis.key(&format!("run:record:{flow}__{story}"))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.claim_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl RunStore for RedisRunStore {
    async fn claim(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = self.claim_key(flow, story);
        let mut redis = self.redis.handle();
        let holder: Option<String> = self
            .claim
            .key(&key)
            .arg(run_id)
            .arg(self.ttl_ms())
            .invoke_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("claim flow `{flow}` for story `{story}`"), &err)
            })?;
        Ok(holder)
    }

    async fn renew(&self, flow: &str, story: &str, run_id: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        let renewed: i64 = self
            .renew
            .key(self.claim_key(flow, story))
            .arg(run_id)
            .arg(self.ttl_ms())
            .invoke_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis.unavailable(
                    &format!("renew the claim of flow `{flow}` for story `{story}`"),
                    &err,
                )
            })?;
        Ok(renewed == 1)
    }

    async fn release(&self, flow: &str, story: &str, run_id: &str) -> Result<(), StoreError> {
        let key = self.claim_key(flow, story);
        let mut redis = self.redis.handle();
        let _released: i64 = self
            .release
            .key(&key)
            .arg(run_id)
            .invoke_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("release flow `{flow}` for story `{story}`"), &err)
            })?;
        Ok(())
    }

    async fn load(&self, flow: &str, story: &str) -> Result<Option<RunRecord>, StoreError> {
        let mut redis = self.redis.handle();
        let text: Option<String> =
            redis
                .get(self.record_key(flow, story))
                .await
                .map_err(|err| {
                    self.redis
                        .unavailable(&format!("read the run record of `{flow}__{story}`"), &err)
                })?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|err| {
                self.redis
                    .corrupt(&format!("run record `{flow}__{story}`"), err)
            })
        })
        .transpose()
    }

    async fn save(&self, flow: &str, story: &str, record: &RunRecord) -> Result<(), StoreError> {
        let text = serde_json::to_string(record).map_err(|err| {
            self.redis
                .corrupt(&format!("run record `{flow}__{story}`"), err)
        })?;
        let mut redis = self.redis.handle();
        redis
            .set::<_, _, ()>(self.record_key(flow, story), text)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("write the run record of `{flow}__{story}`"), &err)
            })
    }
}
