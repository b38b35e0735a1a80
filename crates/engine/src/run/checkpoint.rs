//! What a run keeps while it waits for a person (SPEC 8.3), so that any
//! process continues it later, after a restart or on another replica.
//!
//! A [`Checkpoint`] is the run's shared state when it stopped — results,
//! errors, documents waited for, step visits and actions, the step it
//! stopped in and which of that step's agents are done, the record of
//! input hashes, what it spent, the approval gate waiting and the
//! feedback of rejected ones — and, for each agent waiting for an
//! answer, its conversation through the `ask_human` call
//! ([`AgentCheckpoint`]). A resume gives the answer as that call's result,
//! so nothing before it runs again and no LLM call is repeated.

use super::gate::OpenGate;
use super::sequence::SequenceState;
use crate::llm::Message;
use crate::outcome::AgentResult;
use crate::store::{RunRecord, StoreError};
use crate::usage::UsageTotals;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The bundle the run was executing (its `source_hash`).
    pub source_hash: String,
    /// The step the run stopped in.
    pub step: String,
    /// Agents of that step that are done in this visit of it.
    pub step_done: BTreeSet<String>,
    pub results: BTreeMap<String, AgentResult>,
    pub errors: BTreeMap<String, String>,
    pub pending_docs: BTreeSet<String>,
    pub visits: HashMap<String, u32>,
    pub actions: HashMap<String, String>,
    pub record: RunRecord,
    /// Agent id → where its conversation stopped, for each agent waiting.
    pub agents: BTreeMap<String, AgentCheckpoint>,
    /// The approval gate waiting, when the run stopped at one.
    #[serde(default)]
    pub gate: Option<OpenGate>,
    /// Step id → feedback of a rejected gate, for the step's next visit.
    #[serde(default)]
    pub feedback: BTreeMap<String, String>,
    /// What the run's calls used so far, counted against its budget.
    pub spent: UsageTotals,
    /// How long the run executed before, in ms.
    pub duration_ms: u64,
}

/// Where one agent stopped to ask.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AgentCheckpoint {
    /// The interrupt its question became.
    pub interrupt_id: String,
    /// The model's id for the `ask_human` call.
    pub call_id: String,
    /// The system prompt it was talking under.
    pub system: Option<String>,
    /// The conversation through the `ask_human` call.
    pub messages: Vec<Message>,
    /// The hash of its inputs when it started (for the run record).
    pub input_hash: String,
    /// Where its `sequence` stood, for an agent that has one.
    pub sequence: Option<SequenceState>,
    /// Its calls so far.
    pub usage: UsageTotals,
    /// How long it worked before, in ms.
    pub duration_ms: u64,
}

impl Checkpoint {
    pub fn encode(&self) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| StoreError::Io {
            message: "storage error: could not encode a run's checkpoint".into(),
            detail: e.to_string(),
        })
    }

    pub fn decode(run_id: &str, text: &str) -> Result<Self, StoreError> {
        serde_json::from_str(text)
            .map_err(|e| StoreError::corrupt(format!("the checkpoint of run `{run_id}`"), e))
    }
}
