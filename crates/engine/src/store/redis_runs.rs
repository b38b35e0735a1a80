//! `RedisRunStore`: run claims and run records in Redis, so that one run per
//! (flow, story) holds across every replica and any replica can resume it.
//!
//! Keys (after `key_prefix`):
//! - `run:claim:{flow}__{story}`: the id of the run holding the pair, set
//!   with `SET NX PX` — only when nobody holds it, and with a time to live
//!   ([`CLAIM_TTL`]) so that the claim of a replica that crashed mid-run
//!   expires instead of blocking the story for ever. While a run is alive,
//!   a background task of the replica that holds it renews the TTL every
//!   third of it; `release` stops that task and deletes the key.
//! - `run:record:{flow}__{story}`: the [`RunRecord`] as JSON.
//!
//! Claiming, renewing and releasing are Lua scripts, each atomic in Redis:
//! a claim sets the key or reports the holder in one step (no window where
//! the holder expires between the two), and renew and release act only
//! while the key still holds *our* run id — a run whose claim expired and
//! was taken by another never extends or deletes the newcomer's claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use tokio::task::AbortHandle;

use super::StoreError;
use super::redis_connection::RedisConnection;
use super::runs::{RunRecord, RunStore};

/// How long a claim outlives the last renewal by its replica.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

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

/// The claim renewals running in this process, by (claim key, run id).
type Renewals = Mutex<HashMap<(String, String), AbortHandle>>;

/// Run claims and records in Redis (see the module docs).
#[derive(Debug)]
pub struct RedisRunStore {
    redis: RedisConnection,
    /// Claim lifetime without renewal.
    claim_ttl: Duration,
    claim: Script,
    renew: Arc<Script>,
    release: Script,
    /// Renewal tasks of the claims this process holds; stopped on release
    /// and when the store is dropped.
    renewals: Arc<Renewals>,
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
            renew: Arc::new(Script::new(RENEW_SCRIPT)),
            release: Script::new(RELEASE_SCRIPT),
            renewals: Arc::default(),
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

    /// Keeps `run_id`'s claim alive until it is released, lost, or this
    /// store is dropped.
    fn start_renewal(&self, key: String, run_id: String) {
        let (redis, script) = (self.redis.clone(), Arc::clone(&self.renew));
        let (ttl, ttl_ms) = (self.claim_ttl, self.ttl_ms());
        let renewals = Arc::clone(&self.renewals);
        let slot = (key.clone(), run_id.clone());
        let task = tokio::spawn(async move {
            let mut handle = redis.handle();
            loop {
                tokio::time::sleep(ttl / 3).await;
                let renewed: Result<i64, _> = script
                    .key(&key)
                    .arg(&run_id)
                    .arg(ttl_ms)
                    .invoke_async(&mut handle)
                    .await;
                match renewed {
                    Ok(1) => {}
                    Ok(_) => {
                        tracing::warn!(
                            run_id,
                            claim = key,
                            "run claim expired before it was renewed; another run may take this story"
                        );
                        break;
                    }
                    // Redis is down: keep trying; the claim lives on until its TTL.
                    Err(error) => {
                        tracing::warn!(run_id, claim = key, %error, "renewing the run claim failed")
                    }
                }
            }
            lock(&renewals).remove(&(key, run_id));
        });
        lock(&self.renewals).insert(slot, task.abort_handle());
    }
}

fn lock(renewals: &Renewals) -> std::sync::MutexGuard<'_, HashMap<(String, String), AbortHandle>> {
    renewals.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for RedisRunStore {
    fn drop(&mut self) {
        for (_, task) in lock(&self.renewals).drain() {
            task.abort();
        }
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
        if holder.is_none() {
            self.start_renewal(key, run_id.to_string());
        }
        Ok(holder)
    }

    async fn release(&self, flow: &str, story: &str, run_id: &str) -> Result<(), StoreError> {
        let key = self.claim_key(flow, story);
        if let Some(task) = lock(&self.renewals).remove(&(key.clone(), run_id.to_string())) {
            task.abort();
        }
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
