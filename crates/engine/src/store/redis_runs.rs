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
//! - `run:{id}`: a run resource, a hash of its [`StoredRun`] columns
//!   (`flow`, `story_id`, `status`, `created_at`, `updated_at`,
//!   `finished_at`, `cancel`, `body`).
//! - `run:{id}:events`: its events, a sorted set scored by event id.
//! - `run:{id}:checkpoint`: what an interrupted run continues from (JSON),
//!   until it ends; its claim has no time to live meanwhile.
//! - `runs:all`, `runs:story:{story}`, `runs:flow:{flow}`,
//!   `runs:status:{status}`: indexes of run ids for listings, sorted sets
//!   whose members are `{created_at, 20 digits}|{run_id}` (all scored 0),
//!   so their lexical order is (created_at, run_id) and a page is one
//!   `ZREVRANGEBYLEX` from the cursor.
//!
//! Claiming, renewing and releasing are Lua scripts, each atomic in Redis:
//! a claim sets the key or reports the holder in one step (no window where
//! the holder expires between the two), and renew and release act only
//! while the key still holds *our* run id — a run whose claim expired and
//! was taken by another never extends or deletes the newcomer's claim.
//! Creating a run claims and indexes it in one script; updating it moves
//! it between status indexes, appends its events and (when it ends) saves
//! the record and releases the claim, in one script.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::StoreError;
use super::redis_connection::RedisConnection;
use super::runs::{CLAIM_TTL, Created, RunQuery, RunRecord, RunStore, StoredEvent, StoredRun};

/// KEYS: claim, run, runs:all, runs:story:…, runs:flow:…, runs:status:…,
/// events. ARGV: run id, ttl ms, index member, the number of field pairs
/// n, n name/value pairs of the run's fields, then its first events as
/// id, JSON pairs. 0 when a run with this id exists; the holder when the
/// pair is claimed; else nil and the run is stored, indexed and its events
/// appended.
const CREATE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('GET', KEYS[1])
end
local n = tonumber(ARGV[4])
local fields = {}
for i = 5, 4 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
for i = 3, 6 do redis.call('ZADD', KEYS[i], 0, ARGV[3]) end
for i = 5 + 2 * n, #ARGV, 2 do
  redis.call('ZADD', KEYS[7], tonumber(ARGV[i]), ARGV[i + 1])
end
return false
";

/// KEYS: run, events, claim, record, checkpoint. ARGV: key prefix, index
/// member, expected status ('' for any), record JSON ('' for none), what
/// to do with the claim ('' nothing, `release` it and drop the checkpoint,
/// `persist` it, `renew` it), run id, ttl ms, checkpoint JSON ('' for
/// none), the number of field pairs n, n name/value pairs, then the events
/// as id, JSON pairs. 1 when written; 0 when the run is absent, its status
/// was not the expected one, or (no status expected) it has ended.
const UPDATE_SCRIPT: &str = r"
local old = redis.call('HGET', KEYS[1], 'status')
if not old then return 0 end
if ARGV[3] ~= '' and old ~= ARGV[3] then return 0 end
if ARGV[3] == '' and redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return 0 end
local n = tonumber(ARGV[9])
local fields = {}
local new = old
for i = 10, 9 + 2 * n, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'status' then new = ARGV[i + 1] end
end
redis.call('HSET', KEYS[1], unpack(fields))
if redis.call('HGET', KEYS[1], 'finished_at') == '' then redis.call('HDEL', KEYS[1], 'finished_at') end
if new ~= old then
  redis.call('ZREM', ARGV[1] .. 'runs:status:' .. old, ARGV[2])
  redis.call('ZADD', ARGV[1] .. 'runs:status:' .. new, 0, ARGV[2])
end
for i = 10 + 2 * n, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], tonumber(ARGV[i]), ARGV[i + 1])
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4]) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8]) end
local ours = redis.call('GET', KEYS[3]) == ARGV[6]
if ARGV[5] == 'release' then
  redis.call('DEL', KEYS[5])
  if ours then redis.call('DEL', KEYS[3]) end
elseif ARGV[5] == 'persist' and ours then
  redis.call('PERSIST', KEYS[3])
elseif ARGV[5] == 'renew' and ours then
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
return 1
";

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
    create_run: Script,
    update_run: Script,
}

/// A change of a run, for [`RedisRunStore::write_run`].
struct RunWrite<'a> {
    run: &'a StoredRun,
    events: &'a [StoredEvent],
    expected: Option<&'a str>,
    record: Option<String>,
    claim: ClaimChange,
    checkpoint: Option<&'a str>,
}

/// What a run write does to the run's claim.
#[derive(Clone, Copy)]
enum ClaimChange {
    Keep,
    /// The run ended: release it (and drop the checkpoint).
    Release,
    /// The run waits for a person: no expiry until it ends.
    Persist,
    /// The run is taken up again: the usual lifetime, renewed while it runs.
    Renew,
}

impl ClaimChange {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Keep => "",
            Self::Release => "release",
            Self::Persist => "persist",
            Self::Renew => "renew",
        }
    }
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
            create_run: Script::new(CREATE_SCRIPT),
            update_run: Script::new(UPDATE_SCRIPT),
        }
    }

    fn run_key(&self, run_id: &str) -> String {
        self.redis.key(&format!("run:{run_id}"))
    }

    fn events_key(&self, run_id: &str) -> String {
        self.redis.key(&format!("run:{run_id}:events"))
    }

    fn checkpoint_key(&self, run_id: &str) -> String {
        self.redis.key(&format!("run:{run_id}:checkpoint"))
    }

    /// The member of a run in the listing indexes (see the module docs).
    fn member(created_at: u64, run_id: &str) -> String {
        format!("{created_at:020}|{run_id}")
    }

    /// The run's columns as hash fields (not `cancel`: only
    /// [`RunStore::request_cancel`] sets it). An absent `finished_at` is
    /// written empty, and the update script removes it.
    fn fields(run: &StoredRun) -> Vec<(&'static str, String)> {
        vec![
            ("flow", run.flow.clone()),
            ("story_id", run.story_id.clone()),
            ("status", run.status.clone()),
            ("created_at", run.created_at.to_string()),
            ("updated_at", run.updated_at.to_string()),
            (
                "finished_at",
                run.finished_at.map(|t| t.to_string()).unwrap_or_default(),
            ),
            ("body", run.body.clone()),
        ]
    }

    /// Reads a run's hash back; `None` when it holds nothing.
    fn run_from_fields(
        &self,
        run_id: &str,
        mut hash: HashMap<String, String>,
    ) -> Result<Option<StoredRun>, StoreError> {
        if hash.is_empty() {
            return Ok(None);
        }
        let mut take = |name: &str| {
            hash.remove(name).ok_or_else(|| {
                self.redis
                    .corrupt(&format!("run `{run_id}`"), format!("no `{name}`"))
            })
        };
        let number = |text: String, name: &str| {
            text.parse::<u64>().map_err(|e| {
                self.redis
                    .corrupt(&format!("run `{run_id}`"), format!("`{name}`: {e}"))
            })
        };
        let flow = take("flow")?;
        let story_id = take("story_id")?;
        let status = take("status")?;
        let created_at = number(take("created_at")?, "created_at")?;
        let updated_at = number(take("updated_at")?, "updated_at")?;
        let body = take("body")?;
        let finished_at = match hash.remove("finished_at").filter(|t| !t.is_empty()) {
            Some(text) => Some(number(text, "finished_at")?),
            None => None,
        };
        Ok(Some(StoredRun {
            run_id: run_id.to_string(),
            flow,
            story_id,
            status,
            created_at,
            updated_at,
            finished_at,
            cancel_requested: hash.get("cancel").is_some_and(|c| c == "1"),
            body,
        }))
    }

    /// `events` as the (score, member) pairs of the run's events set.
    fn encode_events(
        &self,
        run_id: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<(u64, String)>, StoreError> {
        events
            .iter()
            .map(|event| {
                let json = serde_json::to_string(event).map_err(|e| {
                    self.redis
                        .corrupt(&format!("an event of run `{run_id}`"), e)
                })?;
                Ok((event.id, json))
            })
            .collect()
    }

    async fn write_run(&self, write: RunWrite<'_>) -> Result<bool, StoreError> {
        let run = write.run;
        let mut invocation = self.update_run.prepare_invoke();
        invocation
            .key(self.run_key(&run.run_id))
            .key(self.events_key(&run.run_id))
            .key(self.claim_key(&run.flow, &run.story_id))
            .key(self.record_key(&run.flow, &run.story_id))
            .key(self.checkpoint_key(&run.run_id))
            .arg(self.redis.key(""))
            .arg(Self::member(run.created_at, &run.run_id))
            .arg(write.expected.unwrap_or(""))
            .arg(write.record.unwrap_or_default())
            .arg(write.claim.as_arg())
            .arg(&run.run_id)
            .arg(self.ttl_ms())
            .arg(write.checkpoint.unwrap_or(""));
        let fields = Self::fields(run);
        invocation.arg(fields.len());
        for (name, value) in fields {
            invocation.arg(name).arg(value);
        }
        for (id, json) in self.encode_events(&run.run_id, write.events)? {
            invocation.arg(id).arg(json);
        }
        let mut redis = self.redis.handle();
        let written: i64 = invocation.invoke_async(&mut redis).await.map_err(|err| {
            self.redis
                .unavailable(&format!("write run `{}`", run.run_id), &err)
        })?;
        Ok(written == 1)
    }

    /// The runs of `ids`, in that order, skipping any that are gone.
    async fn runs_of(&self, ids: &[String]) -> Result<Vec<StoredRun>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reads = redis::pipe();
        for run_id in ids {
            reads.hgetall(self.run_key(run_id));
        }
        let mut redis = self.redis.handle();
        let hashes: Vec<HashMap<String, String>> = reads
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("read runs", &err))?;
        let mut runs = Vec::with_capacity(ids.len());
        for (run_id, hash) in ids.iter().zip(hashes) {
            if let Some(run) = self.run_from_fields(run_id, hash)? {
                runs.push(run);
            }
        }
        Ok(runs)
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

    async fn create_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
    ) -> Result<Created, StoreError> {
        let mut invocation = self.create_run.prepare_invoke();
        invocation
            .key(self.claim_key(&run.flow, &run.story_id))
            .key(self.run_key(&run.run_id))
            .key(self.redis.key("runs:all"))
            .key(self.redis.key(&format!("runs:story:{}", run.story_id)))
            .key(self.redis.key(&format!("runs:flow:{}", run.flow)))
            .key(self.redis.key(&format!("runs:status:{}", run.status)))
            .key(self.events_key(&run.run_id))
            .arg(&run.run_id)
            .arg(self.ttl_ms())
            .arg(Self::member(run.created_at, &run.run_id));
        let fields: Vec<_> = Self::fields(run)
            .into_iter()
            .filter(|(name, value)| *name != "finished_at" || !value.is_empty())
            .collect();
        invocation.arg(fields.len());
        for (name, value) in fields {
            invocation.arg(name).arg(value);
        }
        for (id, json) in self.encode_events(&run.run_id, events)? {
            invocation.arg(id).arg(json);
        }
        let mut redis = self.redis.handle();
        let created: redis::Value = invocation.invoke_async(&mut redis).await.map_err(|err| {
            self.redis
                .unavailable(&format!("create run `{}`", run.run_id), &err)
        })?;
        match created {
            redis::Value::Nil => Ok(Created::Stored),
            redis::Value::Int(0) => Ok(Created::IdTaken),
            redis::Value::BulkString(holder) => {
                Ok(Created::Held(String::from_utf8_lossy(&holder).into_owned()))
            }
            other => Err(self.redis.corrupt(
                &format!("run `{}`", run.run_id),
                format!("unexpected create reply {other:?}"),
            )),
        }
    }

    async fn update_run(&self, run: &StoredRun, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.write_run(RunWrite {
            run,
            events,
            expected: None,
            record: None,
            claim: ClaimChange::Keep,
            checkpoint: None,
        })
        .await
        .map(drop)
    }

    async fn update_run_if(
        &self,
        run: &StoredRun,
        expected: &str,
        events: &[StoredEvent],
    ) -> Result<bool, StoreError> {
        self.write_run(RunWrite {
            run,
            events,
            expected: Some(expected),
            record: None,
            claim: ClaimChange::Keep,
            checkpoint: None,
        })
        .await
    }

    async fn end_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
        record: Option<&RunRecord>,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let record = record
            .map(|record| {
                serde_json::to_string(record).map_err(|err| {
                    self.redis
                        .corrupt(&format!("run record `{}__{}`", run.flow, run.story_id), err)
                })
            })
            .transpose()?;
        self.write_run(RunWrite {
            run,
            events,
            expected,
            record,
            claim: ClaimChange::Release,
            checkpoint: None,
        })
        .await
    }

    async fn suspend_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        self.write_run(RunWrite {
            run,
            events,
            expected: None,
            record: None,
            claim: ClaimChange::Persist,
            checkpoint: Some(checkpoint),
        })
        .await
        .map(drop)
    }

    async fn resume_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
    ) -> Result<bool, StoreError> {
        self.write_run(RunWrite {
            run,
            events,
            expected: Some("interrupted"),
            record: None,
            claim: ClaimChange::Renew,
            checkpoint: None,
        })
        .await
    }

    async fn checkpoint(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let mut redis = self.redis.handle();
        redis.get(self.checkpoint_key(run_id)).await.map_err(|err| {
            self.redis
                .unavailable(&format!("read the checkpoint of run `{run_id}`"), &err)
        })
    }

    async fn append_events(&self, run_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let items = self.encode_events(run_id, events)?;
        let mut redis = self.redis.handle();
        redis
            .zadd_multiple::<_, _, _, ()>(self.events_key(run_id), &items)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("store the events of run `{run_id}`"), &err)
            })
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<StoredRun>, StoreError> {
        let mut redis = self.redis.handle();
        let hash: HashMap<String, String> =
            redis.hgetall(self.run_key(run_id)).await.map_err(|err| {
                self.redis
                    .unavailable(&format!("read run `{run_id}`"), &err)
            })?;
        self.run_from_fields(run_id, hash)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<StoredRun>, StoreError> {
        // The most selective index the query names; the other filters are
        // checked on the runs read from it.
        let index = match (&query.story_id, &query.flow, query.statuses.as_slice()) {
            (Some(story), _, _) => format!("runs:story:{story}"),
            (None, Some(flow), _) => format!("runs:flow:{flow}"),
            (None, None, [status]) => format!("runs:status:{status}"),
            _ => "runs:all".to_string(),
        };
        let index = self.redis.key(&index);
        let mut upper = match &query.before {
            Some((created_at, run_id)) => format!("({}", Self::member(*created_at, run_id)),
            None => "+".to_string(),
        };
        let page = query.limit.clamp(1, 500);
        let mut runs = Vec::new();
        while runs.len() < query.limit {
            let mut redis = self.redis.handle();
            let members: Vec<String> = redis
                .zrevrangebylex_limit(&index, &upper, "-", 0, page as isize)
                .await
                .map_err(|err| self.redis.unavailable("list runs", &err))?;
            let Some(last) = members.last() else { break };
            upper = format!("({last}");
            let ids: Vec<String> = members
                .iter()
                .filter_map(|m| m.split_once('|').map(|(_, id)| id.to_string()))
                .collect();
            runs.extend(
                self.runs_of(&ids)
                    .await?
                    .into_iter()
                    .filter(|run| query.matches(run)),
            );
            if members.len() < page {
                break;
            }
        }
        runs.truncate(query.limit);
        Ok(runs)
    }

    async fn events_after(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut redis = self.redis.handle();
        let items: Vec<String> = redis
            .zrangebyscore_limit(
                self.events_key(run_id),
                format!("({after}"),
                "+inf",
                0,
                isize::try_from(limit).unwrap_or(isize::MAX),
            )
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read the events of run `{run_id}`"), &err)
            })?;
        items
            .iter()
            .map(|item| {
                serde_json::from_str(item).map_err(|e| {
                    self.redis
                        .corrupt(&format!("an event of run `{run_id}`"), e)
                })
            })
            .collect()
    }

    async fn last_event_id(&self, run_id: &str) -> Result<Option<u64>, StoreError> {
        let mut redis = self.redis.handle();
        // Scores are the event ids: the highest is the last.
        let last: Vec<(String, u64)> = redis
            .zrevrange_withscores(self.events_key(run_id), 0, 0)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read the last event of run `{run_id}`"), &err)
            })?;
        Ok(last.first().map(|(_, id)| *id))
    }

    async fn request_cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        // The flag is set only on a run that exists, or it would make a
        // hash that reads as a damaged run.
        let exists: bool = redis.exists(self.run_key(run_id)).await.map_err(|err| {
            self.redis
                .unavailable(&format!("cancel run `{run_id}`"), &err)
        })?;
        if exists {
            redis
                .hset::<_, _, _, ()>(self.run_key(run_id), "cancel", "1")
                .await
                .map_err(|err| {
                    self.redis
                        .unavailable(&format!("cancel run `{run_id}`"), &err)
                })?;
        }
        Ok(exists)
    }

    async fn cancel_requested(&self, run_ids: &[String]) -> Result<Vec<String>, StoreError> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reads = redis::pipe();
        for run_id in run_ids {
            reads.hget(self.run_key(run_id), "cancel");
        }
        let mut redis = self.redis.handle();
        let flags: Vec<Option<String>> = reads
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("read cancel requests", &err))?;
        Ok(run_ids
            .iter()
            .zip(flags)
            .filter(|(_, flag)| flag.as_deref() == Some("1"))
            .map(|(run_id, _)| run_id.clone())
            .collect())
    }

    async fn orphaned_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let mut live = Vec::new();
        for status in ["queued", "running"] {
            let mut redis = self.redis.handle();
            let members: Vec<String> = redis
                .zrangebylex(self.redis.key(&format!("runs:status:{status}")), "-", "+")
                .await
                .map_err(|err| self.redis.unavailable("find orphaned runs", &err))?;
            live.extend(
                members
                    .iter()
                    .filter_map(|m| m.split_once('|').map(|(_, id)| id.to_string())),
            );
        }
        let runs = self.runs_of(&live).await?;
        if runs.is_empty() {
            return Ok(runs);
        }
        let mut reads = redis::pipe();
        for run in &runs {
            reads.get(self.claim_key(&run.flow, &run.story_id));
        }
        let mut redis = self.redis.handle();
        let holders: Vec<Option<String>> = reads
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("find orphaned runs", &err))?;
        let mut orphans: Vec<StoredRun> = runs
            .into_iter()
            .zip(holders)
            .filter(|(run, holder)| holder.as_deref() != Some(run.run_id.as_str()))
            .map(|(run, _)| run)
            .collect();
        orphans.sort_by(|a, b| (a.created_at, &a.run_id).cmp(&(b.created_at, &b.run_id)));
        Ok(orphans)
    }

    async fn ended_before(&self, cutoff: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        // A run is created before it ends: the runs of each ended status
        // created before `cutoff` are the candidates, oldest first.
        let upper = format!("({cutoff:020}|");
        let count = isize::try_from(limit).unwrap_or(isize::MAX);
        let mut candidates = Vec::new();
        for status in ["pending", "success", "error", "cancelled"] {
            let mut redis = self.redis.handle();
            let members: Vec<String> = redis
                .zrangebylex_limit(
                    self.redis.key(&format!("runs:status:{status}")),
                    "-",
                    &upper,
                    0,
                    count,
                )
                .await
                .map_err(|err| {
                    self.redis
                        .unavailable("find runs past their retention", &err)
                })?;
            candidates.extend(
                members
                    .iter()
                    .filter_map(|m| m.split_once('|').map(|(_, id)| id.to_string())),
            );
        }
        let mut ended: Vec<(u64, String)> = self
            .runs_of(&candidates)
            .await?
            .into_iter()
            .filter_map(|run| Some((run.finished_at.filter(|at| *at < cutoff)?, run.run_id)))
            .collect();
        ended.sort();
        ended.truncate(limit);
        Ok(ended.into_iter().map(|(_, run_id)| run_id).collect())
    }

    async fn delete_runs(&self, run_ids: &[String]) -> Result<(), StoreError> {
        let runs = self.runs_of(run_ids).await?;
        if runs.is_empty() {
            return Ok(());
        }
        let mut delete = redis::pipe();
        delete.atomic();
        for run in &runs {
            let member = Self::member(run.created_at, &run.run_id);
            for index in [
                "runs:all".to_string(),
                format!("runs:story:{}", run.story_id),
                format!("runs:flow:{}", run.flow),
                format!("runs:status:{}", run.status),
            ] {
                delete.zrem(self.redis.key(&index), &member).ignore();
            }
            delete
                .del(self.run_key(&run.run_id))
                .ignore()
                .del(self.events_key(&run.run_id))
                .ignore()
                .del(self.checkpoint_key(&run.run_id))
                .ignore();
        }
        let mut redis = self.redis.handle();
        delete
            .query_async::<()>(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("delete runs", &err))
    }
}
