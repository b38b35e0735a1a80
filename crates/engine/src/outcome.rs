//! What the engine's callers send and get back: run and execute requests,
//! their outcomes, and the events a streaming caller receives.
//!
//! These are the engine's public data shapes; the HTTP server serialises them
//! as the bodies SPEC 5 describes (`POST /run`, `POST /agent/{id}/execute`,
//! `GET /agent/{id}/ready`), so field names here are the wire names.

use crate::usage::UsageTotals;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request to run one flow for one story.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub flow: String,
    pub story_id: String,
    #[serde(default)]
    pub input: String,
    /// Re-run agents even when their outputs exist and inputs are unchanged.
    #[serde(default)]
    pub force: bool,
    /// Stops the run once it has used this much (SPEC 8.4); `None`: the
    /// defaults of runtime.yaml `runs`.
    #[serde(default)]
    pub budget: Option<crate::runs::Budget>,
}

/// Where a run is in its life (SPEC 8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a running slot.
    Queued,
    /// Executing in one process.
    Running,
    /// Waiting for a person to answer (SPEC 8.3): nothing executes, the
    /// (flow, story) stays claimed.
    Interrupted,
    /// Ended: every agent that was due ran (or was skipped as up to date).
    Success,
    /// Ended: some agents wait for documents; PUT them and run again.
    Pending,
    /// Ended: an agent failed with `error_handling: stop`, the run hit
    /// `loop_limit`, or its process died (`error_code` says which).
    Error,
    /// Ended by a cancel request or Ctrl-C.
    Cancelled,
}

impl RunStatus {
    /// The wire form (`queued`, `success`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Success => "success",
            Self::Pending => "pending",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status of a wire form, or `None` for one this program does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Every status, for checking filters.
    pub const ALL: [RunStatus; 7] = [
        Self::Queued,
        Self::Running,
        Self::Interrupted,
        Self::Success,
        Self::Pending,
        Self::Error,
        Self::Cancelled,
    ];
}

/// How one agent of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentRunStatus {
    Completed,
    /// Outputs exist and inputs are unchanged since the last run.
    Skipped,
    /// Required documents are missing (`on_missing_doc: wait`).
    Waiting,
    Failed,
    /// Failed, and a placeholder marked as fallback was written instead.
    Fallback,
    /// Asked a person and waits for the answer (SPEC 8.3).
    Interrupted,
    /// Its run was cancelled while it ran, or waited for a person.
    Cancelled,
}

/// One agent's result within a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentResult {
    pub status: AgentRunStatus,
    /// The id of the document it wrote (its first output), when it wrote one.
    pub document: Option<String>,
    pub summary: String,
    pub duration_ms: u64,
    /// The agent's model calls, those of attempts that failed and were retried included.
    pub usage: UsageTotals,
}

/// The answer to a run (also the `done` event of a streamed run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: RunStatus,
    pub results: BTreeMap<String, AgentResult>,
    /// Documents that agents wait for (names as the agents wrote them).
    pub pending_docs: Vec<String>,
    /// agent id → what went wrong.
    pub errors: BTreeMap<String, String>,
    /// Set when the run as a whole failed (e.g. `loop_limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub duration_ms: u64,
}

/// Progress of one agent, for the SSE `progress` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    Started,
    Completed,
    Failed,
    Skipped,
    Waiting,
    /// The agent asked a person and waits for the answer.
    Interrupted,
    /// The run was cancelled while the agent ran or waited.
    Cancelled,
}

/// Something that happened during a run, in order, for streaming callers.
/// Serialized, it is the event's data; [`RunEvent::name`] is its name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RunEvent {
    Progress {
        agent: String,
        /// The flow step the agent runs in.
        step: String,
        status: ProgressStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// Unix milliseconds.
        timestamp: u64,
    },
    Token {
        agent: String,
        delta: String,
    },
    Result {
        agent: String,
        data: AgentResult,
    },
    /// The run's status changed.
    Status {
        status: RunStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        /// Unix milliseconds.
        at: u64,
    },
    /// An LLM call returned (SPEC 8.4).
    Usage(Box<crate::usage::CallRecord>),
    /// An agent or a gate asked a person (SPEC 8.3).
    Interrupt(Box<crate::runs::interrupts::Interrupt>),
    /// The run ended: the whole run.
    Done(Box<crate::runs::Run>),
}

impl RunEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Progress { .. } => "progress",
            Self::Token { .. } => "token",
            Self::Result { .. } => "result",
            Self::Status { .. } => "status",
            Self::Usage(_) => "usage",
            Self::Interrupt(_) => "interrupt",
            Self::Done(_) => "done",
        }
    }

    /// The SSE event name and its data as JSON text.
    pub fn name_and_data(&self) -> (&'static str, String) {
        (self.name(), serde_json::to_string(self).unwrap_or_default())
    }
}

/// A stateless single-agent request (`POST /agent/{id}/execute`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub instruction: String,
    /// Document name → content, standing in for the document store.
    #[serde(default)]
    pub documents: BTreeMap<String, String>,
    #[serde(default)]
    pub context_data: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub execution_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecuteStatus {
    Completed,
    NeedsInput,
    Failed,
}

/// The answer to a stateless execute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecuteOutcome {
    pub status: ExecuteStatus,
    pub content: String,
    pub summary: String,
    pub missing_inputs: Vec<String>,
    pub metadata: ExecuteMetadata,
    pub execution_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecuteMetadata {
    pub agent_id: String,
    pub execution_id: String,
    pub provider: String,
    pub model: String,
    /// The model calls of the execution, repairs and retries included.
    pub usage: UsageTotals,
    /// sha256 of the agent id, instruction, documents and context.
    pub input_hash: String,
    /// True when the answer came from the replay store rather than a live call.
    pub cached: bool,
    /// Why the execution failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether an agent could run now for a story (`GET /agent/{id}/ready`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub agent: String,
    pub ready: bool,
    pub missing_docs: Vec<String>,
    /// Agents in `wait_for.agents` whose outputs are missing.
    pub missing_agents: Vec<String>,
    /// Unix milliseconds of its last recorded execution for this story, if any.
    pub last_execution: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn data_of(event: &RunEvent) -> Result<(&'static str, serde_json::Value), serde_json::Error> {
        let (name, data) = event.name_and_data();
        Ok((name, serde_json::from_str(&data)?))
    }

    #[test]
    fn an_event_with_fields_has_them_as_its_data() -> TestResult {
        let progress = RunEvent::Progress {
            agent: "pm".into(),
            step: "plan".into(),
            status: ProgressStatus::Completed,
            duration_ms: Some(12),
            timestamp: 1_700_000_000_000,
        };
        let expected = json!({
            "agent": "pm", "step": "plan", "status": "completed",
            "duration_ms": 12, "timestamp": 1_700_000_000_000_u64,
        });
        assert_eq!(data_of(&progress)?, ("progress", expected));
        let status = RunEvent::Status {
            status: RunStatus::Running,
            error_code: None,
            at: 5,
        };
        assert_eq!(
            data_of(&status)?,
            ("status", json!({"status": "running", "at": 5}))
        );
        Ok(())
    }

    #[test]
    fn an_event_that_wraps_a_value_has_that_value_as_its_data() -> TestResult {
        let record = json!({
            "agent": "pm", "step": null, "provider": "mock", "model": "m",
            "attempt": 1, "input_tokens": 3, "output_tokens": 4,
            "cache_read_tokens": 0, "cache_write_tokens": 0,
            "reasoning_tokens": 0, "latency_ms": 2, "estimated": true, "at": 9,
        });
        let usage = RunEvent::Usage(Box::new(serde_json::from_value(record.clone())?));
        assert_eq!(data_of(&usage)?, ("usage", record));
        Ok(())
    }
}
