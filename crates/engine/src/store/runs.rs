//! Runs in the store: which run holds a (flow, story), what each agent last
//! ran on, and every run as a resource with its events (SPEC 8).
//!
//! Three jobs, one store. *Claims* make runs exclusive per (flow, story): a
//! second run is refused while the first holds the claim, whichever
//! process or replica started either. A claim lives [`CLAIM_TTL`] unless
//! renewed: the engine renews it while its run lives, so the claim of a
//! process that died mid-run expires instead of blocking the story for
//! ever. *Records* make runs resumable: for each agent the hash of its
//! inputs and the documents it wrote, so a re-run skips agents whose
//! outputs exist and whose inputs did not change. *Runs* ([`StoredRun`])
//! are what clients list, follow and cancel: the store knows the columns a
//! run is found by (flow, story, status, times) and keeps the rest as the
//! engine's JSON; a run's events ([`StoredEvent`]) are kept in order, so a
//! client that reconnects replays what it missed.

use super::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a claim outlives its last renewal; the engine renews every
/// third of it.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

/// The last completed execution of one agent in a (flow, story).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// sha256 of everything the agent's LLM call was made from.
    pub input_hash: String,
    /// Document ids it wrote.
    pub outputs: Vec<String>,
    /// Unix ms.
    pub finished_at: u64,
}

/// What is remembered of a (flow, story) between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The latest run.
    pub run_id: String,
    /// `success`, `pending` or `error` of the latest run.
    pub status: String,
    pub agents: BTreeMap<String, AgentRecord>,
    pub updated_at: u64,
}

/// What [`RunStore::create_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The run is stored and holds its (flow, story).
    Stored,
    /// The run that holds the (flow, story); nothing was stored.
    Held(String),
    /// A run with this id is stored already (ids are drawn by each
    /// process, so two may draw the same one); nothing was stored.
    IdTaken,
}

/// A run as the store keeps it: what it is found and ordered by, and the
/// rest as the engine's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    pub run_id: String,
    pub flow: String,
    pub story_id: String,
    /// `queued`, `running`, `interrupted`, `pending`, `success`, `error` or `cancelled`.
    pub status: String,
    /// Unix ms; with `run_id`, the order of listings (newest first).
    pub created_at: u64,
    pub updated_at: u64,
    /// Unix ms, once the run has ended; retention counts from here.
    pub finished_at: Option<u64>,
    /// Whether a client asked to cancel it. Set only by
    /// [`RunStore::request_cancel`]; writes of the run leave it as it is.
    pub cancel_requested: bool,
    /// The run as JSON (the engine's `Run`).
    pub body: String,
}

/// One event of a run, as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// 1, 2, … per run, in emission order (token events take ids but are
    /// not stored, so stored ids may skip).
    pub id: u64,
    /// The SSE event name (`progress`, `status`, `done`…).
    pub event: String,
    /// The event's data as JSON.
    pub data: String,
}

/// Which runs to list: every filter given must match; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    pub story_id: Option<String>,
    pub flow: Option<String>,
    /// Any of these statuses; empty: any status.
    pub statuses: Vec<String>,
    /// Only runs older than this `(created_at, run_id)` (keyset paging).
    pub before: Option<(u64, String)>,
    /// At most this many.
    pub limit: usize,
}

impl RunQuery {
    /// Whether `run` passes the filters (not `before` or `limit`).
    pub fn matches(&self, run: &StoredRun) -> bool {
        self.story_id.as_ref().is_none_or(|s| *s == run.story_id)
            && self.flow.as_ref().is_none_or(|f| *f == run.flow)
            && (self.statuses.is_empty() || self.statuses.contains(&run.status))
    }
}

/// Most events read in one call of [`RunStore::events_after`].
pub const EVENTS_PAGE: usize = 1000;

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Claims (flow, story) for `run_id`. `Ok(Some(active))` names the run
    /// that already holds it; `Ok(None)` means the claim is ours.
    async fn claim(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Extends `run_id`'s claim by [`CLAIM_TTL`] from now; `false` when the
    /// claim is no longer `run_id`'s (it expired and another run took it).
    async fn renew(&self, flow: &str, story: &str, run_id: &str) -> Result<bool, StoreError>;
    /// Gives up a claim held by `run_id` (a claim held by another run is left alone).
    async fn release(&self, flow: &str, story: &str, run_id: &str) -> Result<(), StoreError>;
    /// The record of the last run of (flow, story), or `None`.
    async fn load(&self, flow: &str, story: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Replaces the record of (flow, story).
    async fn save(&self, flow: &str, story: &str, record: &RunRecord) -> Result<(), StoreError>;
    /// How a run ends: saves its `record`, when given, and releases
    /// `run_id`'s claim. This default does the two in turn (the claim is
    /// released even when the save fails, whose error is returned); a
    /// backend may make them one write.
    async fn finish(
        &self,
        flow: &str,
        story: &str,
        run_id: &str,
        record: Option<&RunRecord>,
    ) -> Result<(), StoreError> {
        let saved = match record {
            Some(record) => self.save(flow, story, record).await,
            None => Ok(()),
        };
        self.release(flow, story, run_id).await?;
        saved
    }

    /// Claims (flow, story) for `run` and stores it with its first
    /// `events`, as one write; when another run holds the pair, or a run
    /// with this id is stored already, nothing is stored.
    async fn create_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
    ) -> Result<Created, StoreError>;
    /// Replaces the stored run (all but its cancel request) and appends
    /// `events`; a run that has ended is left as it is. This and the other
    /// writes without an expected status are those of the process that runs
    /// it, which must not undo the ending another process gave a run whose
    /// claim it found expired.
    async fn update_run(&self, run: &StoredRun, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// [`update_run`](Self::update_run), only while the stored status is
    /// `expected`; `false` when it was not (another process got there first).
    async fn update_run_if(
        &self,
        run: &StoredRun,
        expected: &str,
        events: &[StoredEvent],
    ) -> Result<bool, StoreError>;
    /// How a run ends: [`update_run`](Self::update_run), saves `record`
    /// when given, releases the run's claim and drops its checkpoint, as
    /// one write; only while the stored status is `expected`, when given,
    /// else while the run has not ended. `false` when it was not (nothing
    /// is written).
    async fn end_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
        record: Option<&RunRecord>,
        expected: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// How a run stops to wait for a person (SPEC 8.3):
    /// [`update_run`](Self::update_run), stores its `checkpoint` and makes
    /// its claim last until it ends (no process renews it meanwhile), as
    /// one write.
    async fn suspend_run(
        &self,
        run: &StoredRun,
        events: &[StoredEvent],
        checkpoint: &str,
    ) -> Result<(), StoreError>;
    /// How an interrupted run is taken up again: while its stored status is
    /// `interrupted`, [`update_run`](Self::update_run) and give its claim
    /// the usual lifetime again, renewed by whoever runs it, as one write.
    /// `false` when the run was not interrupted (another answer got there
    /// first, or it was cancelled).
    async fn resume_run(&self, run: &StoredRun, events: &[StoredEvent])
    -> Result<bool, StoreError>;
    /// The checkpoint of an interrupted run, or `None`.
    async fn checkpoint(&self, run_id: &str) -> Result<Option<String>, StoreError>;
    /// Appends events of a run, in order.
    async fn append_events(&self, run_id: &str, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// The run, or `None`.
    async fn get_run(&self, run_id: &str) -> Result<Option<StoredRun>, StoreError>;
    /// The runs `query` selects, newest first (by `created_at`, then `run_id`).
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<StoredRun>, StoreError>;
    /// The run's stored events with ids above `after`, in order, at most `limit`.
    async fn events_after(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The id of the run's last stored event; `None` when it has none.
    async fn last_event_id(&self, run_id: &str) -> Result<Option<u64>, StoreError>;
    /// Marks the run as asked to cancel; `false` when there is no such run.
    async fn request_cancel(&self, run_id: &str) -> Result<bool, StoreError>;
    /// Of `run_ids`, those asked to cancel.
    async fn cancel_requested(&self, run_ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Queued and running runs whose claim is gone: the process that held
    /// them died (or lost the claim), so nobody is working on them.
    /// Interrupted runs are not among them: nobody works on them by design.
    async fn orphaned_runs(&self) -> Result<Vec<StoredRun>, StoreError>;
    /// Up to `limit` runs that ended before `cutoff` (unix ms): their ids.
    /// Runs that have not ended (queued, running, interrupted) never are.
    async fn ended_before(&self, cutoff: u64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Deletes these runs and all of theirs: events, checkpoint, cancel
    /// request (retention, SPEC 8.8). Ids that are not stored are skipped.
    async fn delete_runs(&self, run_ids: &[String]) -> Result<(), StoreError>;
}
