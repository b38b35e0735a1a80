//! `RedisStatusStore`: orchestration status in Redis, shared by every replica.
//!
//! Keys (after `key_prefix`):
//! - `workflow:{id}`: a hash — `story_id` (absent for a workflow created by
//!   an update that named no story), `created_at`, `updated_at` (unix ms),
//!   and one field `agent:{agent_id}` per agent holding the JSON of its
//!   [`AgentStatus`].
//! - `workflow:{id}:history`: a list of [`StatusChange`] JSON, oldest first.
//! - `workflows`: a sorted set of workflow ids scored by `updated_at`, so
//!   listing finds every workflow and cleanup finds the stale ones with one
//!   range query.
//!
//! Atomicity: every operation that reads before it writes is one Lua script
//! (Redis runs a script alone, start to end): `create` checks existence and
//! writes; `update` checks the story, sets the agent, appends the history
//! entry, moves the index score and returns the whole new hash, so two
//! replicas updating one workflow at the same moment both land, in some
//! order, and each gets back a state that includes its own update.
//! `delete` is one `MULTI`/`EXEC`; `cleanup` deletes each candidate with a
//! script that re-checks `updated_at`, so a workflow updated after the range
//! query survives.
//!
//! Timestamps come from the replica that makes the change (as with the file
//! backend); replicas are expected to keep their clocks in sync (NTP).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::ids::{check_status_agent_id, check_story_id};
use super::now_ms;
use super::redis_connection::RedisConnection;
use super::{
    AgentState, AgentStatus, StatusChange, StatusStore, StatusUpdate, StoreError, WorkflowId,
    WorkflowStatus, WorkflowSummary,
};

/// Hash field prefix of an agent's status.
const AGENT_FIELD: &str = "agent:";

/// KEYS: workflow hash, history list, index. ARGV: workflow id, story id,
/// now, then (agent field, agent status JSON) pairs. 1 = created, 0 = exists.
const CREATE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'story_id', ARGV[2], 'created_at', ARGV[3], 'updated_at', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
";

/// KEYS: workflow hash, history list, index. ARGV: workflow id, story id
/// ('' for none), now, agent field, agent status JSON, history entry JSON.
/// Returns {'conflict', stored story} or {'ok', field, value, field, value…}.
const UPDATE_SCRIPT: &str = r"
local story = redis.call('HGET', KEYS[1], 'story_id')
if story and ARGV[2] ~= '' and story ~= ARGV[2] then return {'conflict', story} end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], 'created_at', ARGV[3]) end
if not story and ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'story_id', ARGV[2]) end
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5], 'updated_at', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local reply = redis.call('HGETALL', KEYS[1])
table.insert(reply, 1, 'ok')
return reply
";

/// KEYS: workflow hash, history list, index. ARGV: workflow id, cutoff ms.
/// Deletes the workflow when its last change is before the cutoff (an index
/// entry without a hash is dropped too); 1 when a workflow was removed.
const EXPIRE_SCRIPT: &str = r"
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated_at'))
if updated and updated >= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if updated then return 1 end
return 0
";

/// Orchestration status in Redis (see the module docs).
#[derive(Debug, Clone)]
pub struct RedisStatusStore {
    redis: RedisConnection,
    create: Script,
    update: Script,
    expire: Script,
}

impl RedisStatusStore {
    /// Orchestration status on `redis`, under its key prefix.
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            create: Script::new(CREATE_SCRIPT),
            update: Script::new(UPDATE_SCRIPT),
            expire: Script::new(EXPIRE_SCRIPT),
        }
    }

    /// Takes the id as text: cleanup also meets index entries it did not parse.
    fn workflow_key(&self, id: &str) -> String {
        self.redis.key(&format!("workflow:{id}"))
    }

    fn history_key(&self, id: &str) -> String {
        self.redis.key(&format!("workflow:{id}:history"))
    }

    fn index_key(&self) -> String {
        self.redis.key("workflows")
    }

    fn json<T: serde::Serialize>(&self, value: &T, what: &str) -> Result<String, StoreError> {
        serde_json::to_string(value).map_err(|err| self.redis.corrupt(what, err))
    }

    /// Rebuilds a workflow from its hash; `None` for an empty (absent) hash.
    fn decode(
        &self,
        id: &WorkflowId,
        fields: HashMap<String, String>,
    ) -> Result<Option<WorkflowStatus>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let what = format!("workflow `{id}`");
        let time = |name: &str| -> Result<u64, StoreError> {
            let text = fields.get(name).map_or("", String::as_str);
            text.parse()
                .map_err(|err| self.redis.corrupt(&what, format!("{name} {text:?}: {err}")))
        };
        let mut status = WorkflowStatus {
            workflow_id: id.clone(),
            story_id: fields.get("story_id").cloned(),
            agent_statuses: BTreeMap::new(),
            created_at: time("created_at")?,
            updated_at: time("updated_at")?,
        };
        for (field, value) in &fields {
            if let Some(agent) = field.strip_prefix(AGENT_FIELD) {
                let agent_status: AgentStatus = serde_json::from_str(value)
                    .map_err(|err| self.redis.corrupt(&format!("{what}, agent `{agent}`"), err))?;
                status
                    .agent_statuses
                    .insert(agent.to_string(), agent_status);
            }
        }
        Ok(Some(status))
    }
}

/// Pairs a flat `HGETALL`-style reply into a map.
fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(field), Some(value)) = (items.next(), items.next()) {
        map.insert(field, value);
    }
    map
}

#[async_trait]
impl StatusStore for RedisStatusStore {
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
        let now = now_ms();
        let pending = AgentStatus {
            status: AgentState::Pending,
            last_execution: None,
            output_summary: None,
        };
        let pending_json = self.json(&pending, "agent status")?;
        let mut invocation = self.create.prepare_invoke();
        invocation
            .key(self.workflow_key(workflow_id.as_str()))
            .key(self.history_key(workflow_id.as_str()))
            .key(self.index_key())
            .arg(workflow_id.as_str())
            .arg(story_id)
            .arg(now);
        for agent in agents {
            invocation
                .arg(format!("{AGENT_FIELD}{agent}"))
                .arg(&pending_json);
        }
        let mut redis = self.redis.handle();
        let created: i64 = invocation.invoke_async(&mut redis).await.map_err(|err| {
            self.redis
                .unavailable(&format!("create workflow `{workflow_id}`"), &err)
        })?;
        if created == 0 {
            return Err(StoreError::AlreadyExists {
                what: format!("workflow `{workflow_id}`"),
            });
        }
        Ok(WorkflowStatus {
            agent_statuses: agents
                .iter()
                .map(|agent| (agent.clone(), pending.clone()))
                .collect(),
            workflow_id,
            story_id: Some(story_id.to_string()),
            created_at: now,
            updated_at: now,
        })
    }

    async fn get(&self, workflow_id: &WorkflowId) -> Result<Option<WorkflowStatus>, StoreError> {
        let mut redis = self.redis.handle();
        let fields: HashMap<String, String> = redis
            .hgetall(self.workflow_key(workflow_id.as_str()))
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read workflow `{workflow_id}`"), &err)
            })?;
        self.decode(workflow_id, fields)
    }

    async fn update(&self, update: StatusUpdate) -> Result<WorkflowStatus, StoreError> {
        check_status_agent_id(&update.agent_id)?;
        if let Some(story) = &update.story_id {
            check_story_id(story)?;
        }
        let now = now_ms();
        let agent_status = AgentStatus {
            status: update.status,
            last_execution: Some(now),
            output_summary: update.output_summary.clone(),
        };
        let change = StatusChange {
            agent_id: update.agent_id.clone(),
            status: update.status,
            output_summary: update.output_summary,
            at: now,
        };
        let workflow_id = update.workflow_id;
        let mut redis = self.redis.handle();
        let reply: Vec<String> = self
            .update
            .key(self.workflow_key(workflow_id.as_str()))
            .key(self.history_key(workflow_id.as_str()))
            .key(self.index_key())
            .arg(workflow_id.as_str())
            .arg(update.story_id.as_deref().unwrap_or(""))
            .arg(now)
            .arg(format!("{AGENT_FIELD}{}", update.agent_id))
            .arg(self.json(&agent_status, "agent status")?)
            .arg(self.json(&change, "status change")?)
            .invoke_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("update workflow `{workflow_id}`"), &err)
            })?;
        let mut reply = reply.into_iter();
        match reply.next().as_deref() {
            Some("ok") => self
                .decode(&workflow_id, pairs(reply.collect()))?
                .ok_or_else(|| {
                    self.redis
                        .corrupt(&format!("workflow `{workflow_id}`"), "empty after update")
                }),
            Some("conflict") => {
                let existing = reply.next().unwrap_or_default();
                let given = update.story_id.unwrap_or_default();
                Err(StoreError::Conflict {
                    message: format!(
                        "workflow `{workflow_id}` belongs to story `{existing}`, not `{given}`"
                    ),
                })
            }
            other => Err(self.redis.corrupt(
                &format!("workflow `{workflow_id}`"),
                format!("unexpected update reply {other:?}"),
            )),
        }
    }

    async fn list(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        let mut redis = self.redis.handle();
        let listed: Vec<String> = redis
            .zrange(self.index_key(), 0, -1)
            .await
            .map_err(|err| self.redis.unavailable("list workflows", &err))?;
        let mut ids: Vec<WorkflowId> = listed
            .iter()
            .filter_map(|id| WorkflowId::parse(id).ok())
            .collect();
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reads = redis::pipe();
        for id in &ids {
            reads.hgetall(self.workflow_key(id.as_str()));
        }
        let hashes: Vec<HashMap<String, String>> = reads
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("list workflows", &err))?;
        let mut summaries = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(hashes) {
            // A workflow deleted between the two reads is skipped.
            if let Some(status) = self.decode(id, fields)? {
                summaries.push(WorkflowSummary::from(&status));
            }
        }
        Ok(summaries)
    }

    async fn history(&self, workflow_id: &WorkflowId) -> Result<Vec<StatusChange>, StoreError> {
        let mut redis = self.redis.handle();
        let (exists, entries): (bool, Vec<String>) = redis::pipe()
            .atomic()
            .exists(self.workflow_key(workflow_id.as_str()))
            .lrange(self.history_key(workflow_id.as_str()), 0, -1)
            .query_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read workflow `{workflow_id}`"), &err)
            })?;
        if !exists {
            return Err(StoreError::NotFound {
                what: format!("workflow `{workflow_id}`"),
            });
        }
        entries
            .iter()
            .map(|entry| {
                serde_json::from_str(entry).map_err(|err| {
                    self.redis
                        .corrupt(&format!("history of workflow `{workflow_id}`"), err)
                })
            })
            .collect()
    }

    async fn delete(&self, workflow_id: &WorkflowId) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        let (deleted,): (u64,) = redis::pipe()
            .atomic()
            .del(self.workflow_key(workflow_id.as_str()))
            .del(self.history_key(workflow_id.as_str()))
            .ignore()
            .zrem(self.index_key(), workflow_id.as_str())
            .ignore()
            .query_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("delete workflow `{workflow_id}`"), &err)
            })?;
        Ok(deleted > 0)
    }

    async fn cleanup(&self, retention: Duration, now: u64) -> Result<usize, StoreError> {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(retention_ms);
        let mut redis = self.redis.handle();
        let stale: Vec<String> = redis
            .zrangebyscore(self.index_key(), "-inf", format!("({cutoff}"))
            .await
            .map_err(|err| self.redis.unavailable("clean up workflows", &err))?;
        let mut removed = 0;
        for id in stale {
            let expired: i64 = self
                .expire
                .key(self.workflow_key(&id))
                .key(self.history_key(&id))
                .key(self.index_key())
                .arg(&id)
                .arg(cutoff)
                .invoke_async(&mut redis)
                .await
                .map_err(|err| self.redis.unavailable("clean up workflows", &err))?;
            removed += usize::from(expired == 1);
        }
        Ok(removed)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}
