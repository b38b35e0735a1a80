//! Run records: which run holds a (flow, story), and what each agent last ran on.
//!
//! Two jobs, one store. *Claims* make runs exclusive per (flow, story): a
//! second run is refused while the first holds the claim, whichever
//! process or replica started either. A claim lives [`CLAIM_TTL`] unless
//! renewed: the engine renews it while its run lives, so the claim of a
//! process that died mid-run expires instead of blocking the story for
//! ever. *Records* make runs resumable: for each agent the hash of its
//! inputs and the documents it wrote, so a re-run skips agents whose
//! outputs exist and whose inputs did not change.

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
}
