//! The storage layer: documents, memory, orchestration status and run
//! records, each behind an async, object-safe trait used as `Arc<dyn …>`.
//!
//! # Layout
//! - [`ids`]: validated names ([`DocId`], [`MemoryScope`], [`MemoryKey`],
//!   [`WorkflowId`]); nothing unvalidated reaches a backend.
//! - [`StoreError`]: the one error type, with stable codes for HTTP.
//! - The traits below, [`DocStore`], [`MemoryStore`], [`StatusStore`],
//!   [`RunStore`] (`runs.rs`) and [`DeliveryStore`] (`deliveries.rs`, the
//!   webhook outbox), and the records they exchange. Signatures
//!   hold no backend types, so every backend implements them the same way.
//! - [`sqlite`]: the embedded store, one SQLite database per data
//!   directory (SPEC 4.4), safe for several processes at once; documents
//!   are versioned there and mirrored as Markdown files.
//! - Redis backends, for several replicas sharing one state (SPEC 6):
//!   [`RedisDocStore`], [`RedisMemoryStore`] (a hash per scope with a TTL,
//!   SPEC 4.4), [`RedisStatusStore`], [`RedisRunStore`] and
//!   [`RedisDeliveryStore`], all on one [`RedisConnection`] (shared,
//!   self-reconnecting, key prefix).
//! - [`Incidents`]: the count of backend failures, which `/health` reads.
//!
//! # Conventions
//! - Every timestamp is **milliseconds since the Unix epoch** (`u64`):
//!   document `modified`, `last_execution`, `created_at`, `updated_at`,
//!   history `at`.
//! - A lookup of something absent is `Ok(None)` / `Ok(false)`, not an error.
//! - A write is durable when its call returns `Ok`.

mod deliveries;
mod error;
pub mod ids;
mod redis_connection;
mod redis_deliveries;
mod redis_docs;
mod redis_memory;
mod redis_runs;
mod redis_status;
mod runs;
pub mod sqlite;
mod values;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use deliveries::{DeliveryAttempt, DeliveryState, DeliveryStore, StoredDelivery};
pub use error::StoreError;
pub use ids::{DocId, IdError, MemoryKey, MemoryScope, WorkflowId, doc_id};
pub use redis_connection::RedisConnection;
pub use redis_deliveries::RedisDeliveryStore;
pub use redis_docs::RedisDocStore;
pub use redis_memory::RedisMemoryStore;
pub use redis_runs::RedisRunStore;
pub use redis_status::RedisStatusStore;
pub use runs::{
    AgentRecord, CLAIM_TTL, Created, EVENTS_PAGE, RunQuery, RunRecord, RunStore, StoredEvent,
    StoredRun,
};
pub use sqlite::{
    DATABASE_FILE, Database, SqliteDeliveryStore, SqliteDocStore, SqliteMemoryStore,
    SqliteRunStore, SqliteStatusStore,
};
pub use values::MAX_VALUE_DEPTH;

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How many times a backend has failed (an I/O error, an unreachable
/// Redis, damaged data) since the process started. Backends count every
/// such failure here; the engine's health report, which it reuses for a
/// moment to keep `/health` cheap, is taken again as soon as the count
/// moves, so a failure shows as `degraded` at once. Cloning shares the count.
#[derive(Debug, Clone, Default)]
pub struct Incidents(Arc<AtomicU64>);

impl Incidents {
    /// Counts one failure.
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The failures counted so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Who wrote a version of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DocWriter {
    /// An agent, as its output or through the `write_doc` tool, in a run.
    Agent {
        /// The agent's id.
        agent: String,
        /// The run it wrote in.
        run_id: String,
    },
    /// A client of the HTTP API (`PUT /doc/{id}`).
    Api,
    /// A person, by editing the document's Markdown file.
    File,
}

/// A stored document with its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// The Markdown text.
    pub content: String,
    /// Size of `content` in bytes (UTF-8).
    pub bytes: u64,
    /// Last write, unix ms.
    pub modified: u64,
    /// Its version number: 1 for the first write, one more for each after.
    pub version: u64,
    /// Who wrote this version.
    pub writer: DocWriter,
}

/// One version of a document, without its content (`GET /doc/{id}/versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DocVersion {
    /// 1 for the first write, one more for each after.
    pub version: u64,
    /// Size of its content in bytes.
    pub bytes: u64,
    /// Who wrote it.
    pub writer: DocWriter,
    /// When, unix ms.
    pub at: u64,
}

/// What is known about a document without reading it (listings, `/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DocMeta {
    /// The document id, without `.md`.
    #[schema(value_type = String)]
    pub id: DocId,
    /// Size in bytes.
    pub bytes: u64,
    /// Last write, unix ms.
    pub modified: u64,
}

/// Documents: versioned Markdown text addressed by [`DocId`] (SPEC 4.2,
/// 4.4, `/doc`).
#[async_trait]
pub trait DocStore: Send + Sync {
    /// The latest version, or `None` when the document does not exist.
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError>;
    /// Version `version` of the document, or `None` when there is no such
    /// version.
    async fn get_version(&self, id: &DocId, version: u64) -> Result<Option<Document>, StoreError>;
    /// Every version of the document, oldest first; empty when it does not
    /// exist.
    async fn versions(&self, id: &DocId) -> Result<Vec<DocVersion>, StoreError>;
    /// Writes the document's next version atomically: a reader sees the old
    /// or the new content, never a mix; of concurrent writers the last one
    /// wins. Returns the version written.
    async fn put(
        &self,
        id: &DocId,
        content: &str,
        writer: DocWriter,
    ) -> Result<DocVersion, StoreError>;
    /// Removes the document and its versions; `true` when it existed.
    async fn delete(&self, id: &DocId) -> Result<bool, StoreError>;
    /// Size and modification time, or `None` when it does not exist.
    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError>;
    /// All documents sorted by id, or only those of one story (ids starting
    /// with `{story_id}__`). An invalid `story_id` is an `InvalidId` error.
    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError>;
    /// Whether the backend can serve reads and writes now.
    async fn health(&self) -> Result<(), StoreError>;
}

/// Memory: JSON values by key, grouped in scopes (SPEC 4.4, `/memory`).
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// The value of `key`, or `None` when it is not set.
    async fn get(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<Option<Value>, StoreError>;
    /// Sets `key` to `value`; durable when this returns.
    async fn set(
        &self,
        scope: &MemoryScope,
        key: &MemoryKey,
        value: Value,
    ) -> Result<(), StoreError>;
    /// Removes `key`; `true` when it was set.
    async fn delete(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<bool, StoreError>;
    /// The keys set in `scope`, sorted (empty for an unknown scope).
    async fn keys(&self, scope: &MemoryScope) -> Result<Vec<String>, StoreError>;
    /// The whole scope, for a run's in-memory cache.
    async fn load(&self, scope: &MemoryScope) -> Result<BTreeMap<String, Value>, StoreError>;
    /// Sets many keys at once, as one durable write: how a run flushes its
    /// cache at its end. Empty `entries` writes nothing.
    async fn set_many(
        &self,
        scope: &MemoryScope,
        entries: BTreeMap<MemoryKey, Value>,
    ) -> Result<(), StoreError>;
    /// Whether the backend can serve reads and writes now.
    async fn health(&self) -> Result<(), StoreError>;
}

/// State of one agent in an orchestrated workflow (SPEC 5).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Not started.
    Pending,
    /// Started, not finished.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Deliberately not run.
    Skipped,
    /// Waiting for documents or a human.
    NeedsInput,
}

impl AgentState {
    /// The wire form (`needs_input`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::NeedsInput => "needs_input",
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recorded state of one agent within a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentStatus {
    /// What the caller last said.
    pub status: AgentState,
    /// When the caller last reported on this agent, unix ms; `None` for an
    /// agent listed at creation and never updated.
    pub last_execution: Option<u64>,
    /// The summary given with the last update (an update without one clears it).
    pub output_summary: Option<String>,
}

/// One orchestrated workflow: what its callers have reported, per agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowStatus {
    /// The workflow's id.
    #[schema(value_type = String)]
    pub workflow_id: WorkflowId,
    /// The story it works on; `None` only for a workflow created implicitly
    /// by an update that named no story.
    pub story_id: Option<String>,
    /// Agent id (as the caller wrote it, `pack/pm` allowed) → its state.
    pub agent_statuses: BTreeMap<String, AgentStatus>,
    /// Creation time, unix ms.
    pub created_at: u64,
    /// Time of the last change, unix ms; retention counts from here.
    pub updated_at: u64,
}

/// A workflow in a listing: its identity, times and each agent's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkflowSummary {
    /// The workflow's id.
    #[schema(value_type = String)]
    pub workflow_id: WorkflowId,
    /// The story it works on (see [`WorkflowStatus::story_id`]).
    pub story_id: Option<String>,
    /// Agent id → state.
    pub agents: BTreeMap<String, AgentState>,
    /// Creation time, unix ms.
    pub created_at: u64,
    /// Time of the last change, unix ms.
    pub updated_at: u64,
}

impl From<&WorkflowStatus> for WorkflowSummary {
    fn from(status: &WorkflowStatus) -> Self {
        Self {
            workflow_id: status.workflow_id.clone(),
            story_id: status.story_id.clone(),
            agents: status
                .agent_statuses
                .iter()
                .map(|(agent, s)| (agent.clone(), s.status))
                .collect(),
            created_at: status.created_at,
            updated_at: status.updated_at,
        }
    }
}

/// A caller's report about one agent: the body of `PUT /orchestration/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    /// The workflow; created by the update when absent.
    pub workflow_id: WorkflowId,
    /// The story; used when the update creates the workflow, and otherwise
    /// must match the workflow's story (else `Conflict`).
    #[serde(default)]
    pub story_id: Option<String>,
    /// The agent reported on (`pack/pm` allowed).
    pub agent_id: String,
    /// Its new state.
    pub status: AgentState,
    /// A short description of its output, if any.
    #[serde(default)]
    pub output_summary: Option<String>,
}

/// One entry of a workflow's history: an update as it was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    /// The agent reported on.
    pub agent_id: String,
    /// The state it was set to.
    pub status: AgentState,
    /// The summary given with it.
    pub output_summary: Option<String>,
    /// When it was recorded, unix ms.
    pub at: u64,
}

/// Orchestration status (SPEC 5): records what callers say, keeps each
/// workflow's history, survives restarts. It holds no workflow logic: any
/// state may follow any other.
#[async_trait]
pub trait StatusStore: Send + Sync {
    /// Creates a workflow with `agents` all `pending`. A `None` id gets a
    /// generated one ([`WorkflowId::generate`]); an existing id is
    /// `AlreadyExists`.
    async fn create(
        &self,
        workflow_id: Option<WorkflowId>,
        story_id: &str,
        agents: &[String],
    ) -> Result<WorkflowStatus, StoreError>;
    /// The workflow, or `None`.
    async fn get(&self, workflow_id: &WorkflowId) -> Result<Option<WorkflowStatus>, StoreError>;
    /// Records `update` (creating the workflow when absent, with the
    /// update's story) and returns the workflow as it now is. The agent
    /// gets `last_execution` = now and the update's summary.
    async fn update(&self, update: StatusUpdate) -> Result<WorkflowStatus, StoreError>;
    /// [`update`](Self::update) without the workflow back: what a run
    /// writes as its agents go, where nobody reads the answer. A backend
    /// may skip reading the workflow back.
    async fn record(&self, update: StatusUpdate) -> Result<(), StoreError> {
        self.update(update).await.map(drop)
    }
    /// All workflows, sorted by id.
    async fn list(&self) -> Result<Vec<WorkflowSummary>, StoreError>;
    /// The workflow's updates, oldest first (creation is not a change; its
    /// time is `created_at`). `NotFound` for an unknown workflow.
    async fn history(&self, workflow_id: &WorkflowId) -> Result<Vec<StatusChange>, StoreError>;
    /// Removes the workflow and its history; `true` when it existed.
    async fn delete(&self, workflow_id: &WorkflowId) -> Result<bool, StoreError>;
    /// Removes every workflow whose last change (`updated_at`) is older
    /// than `retention` before `now_ms`; returns how many were removed.
    async fn cleanup(&self, retention: Duration, now_ms: u64) -> Result<usize, StoreError>;
    /// Whether the backend can serve reads and writes now.
    async fn health(&self) -> Result<(), StoreError>;
}
