//! OpenAPI descriptions of the bodies the engine and its stores define.
//!
//! The engine's types (`RunOutcome`, `ExecuteOutcome`, `WorkflowStatus`…)
//! are serialised as they are; the engine does not depend on utoipa, so
//! their schemas are written here. A unit test serialises real engine values
//! and checks that they have exactly the fields these schemas name, so the
//! two cannot drift apart silently.

use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Every error answer: `{"error": {"code", "message", "details"?}}`.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (`invalid_id`, `run_in_progress`, `malformed_json`…).
    pub code: String,
    pub message: String,
    /// Extra facts: the active `run_id`, a parse `line`/`column`, the `field`.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(ToSchema)]
#[schema(as = RunStatus)]
pub enum RunStatusDoc {
    #[schema(rename = "success")]
    Success,
    #[schema(rename = "pending")]
    Pending,
    #[schema(rename = "error")]
    Error,
}

/// Token counts reported by the provider.
#[derive(ToSchema)]
#[schema(as = TokenUsage)]
pub struct TokenUsageDoc {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// One agent's result within a run.
#[derive(ToSchema)]
#[schema(as = AgentResult)]
pub struct AgentResultDoc {
    /// `completed`, `skipped`, `waiting`, `failed` or `fallback`.
    pub status: String,
    /// The document it wrote, if any.
    pub document: Option<String>,
    pub summary: String,
    pub duration_ms: u64,
    pub usage: TokenUsageDoc,
}

/// The answer to `POST /run` (and the `done` event of a streamed run).
#[derive(ToSchema)]
#[schema(as = RunOutcome)]
pub struct RunOutcomeDoc {
    pub run_id: String,
    pub status: RunStatusDoc,
    /// Agent id → result.
    pub results: BTreeMap<String, AgentResultDoc>,
    /// Documents agents wait for; PUT them and run again.
    pub pending_docs: Vec<String>,
    /// Agent id → what went wrong.
    pub errors: BTreeMap<String, String>,
    /// Set when the run as a whole failed (e.g. `loop_limit`).
    pub error_code: Option<String>,
    pub duration_ms: u64,
}

/// Metadata of a stateless execution.
#[derive(ToSchema)]
#[schema(as = ExecuteMetadata)]
pub struct ExecuteMetadataDoc {
    pub agent_id: String,
    pub execution_id: String,
    pub provider: String,
    pub model: String,
    pub usage: TokenUsageDoc,
    pub input_hash: String,
    /// True when the answer came from the replay store.
    pub cached: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Answer to `POST /agent/{id}/execute`.
#[derive(ToSchema)]
#[schema(as = ExecuteOutcome)]
pub struct ExecuteOutcomeDoc {
    /// `completed`, `needs_input` or `failed`.
    pub status: String,
    pub content: String,
    pub summary: String,
    pub missing_inputs: Vec<String>,
    pub metadata: ExecuteMetadataDoc,
    pub execution_time_ms: u64,
}

/// Answer to `GET /agent/{id}/ready`.
#[derive(ToSchema)]
#[schema(as = Readiness)]
pub struct ReadinessDoc {
    pub agent: String,
    pub ready: bool,
    pub missing_docs: Vec<String>,
    pub missing_agents: Vec<String>,
    /// Unix ms of its last recorded execution for this story.
    pub last_execution: Option<u64>,
}

/// A document in a listing.
#[derive(ToSchema)]
#[schema(as = DocMeta)]
pub struct DocMetaDoc {
    pub id: String,
    pub bytes: u64,
    /// Last write, unix ms.
    pub modified: u64,
}

/// An agent's state in an orchestrated workflow.
#[derive(ToSchema)]
#[schema(as = AgentState)]
pub enum AgentStateDoc {
    #[schema(rename = "pending")]
    Pending,
    #[schema(rename = "running")]
    Running,
    #[schema(rename = "completed")]
    Completed,
    #[schema(rename = "failed")]
    Failed,
    #[schema(rename = "skipped")]
    Skipped,
    #[schema(rename = "needs_input")]
    NeedsInput,
}

#[derive(ToSchema)]
#[schema(as = AgentStatus)]
pub struct AgentStatusDoc {
    pub status: AgentStateDoc,
    /// Unix ms of the last report on this agent.
    pub last_execution: Option<u64>,
    pub output_summary: Option<String>,
}

/// One orchestrated workflow.
#[derive(ToSchema)]
#[schema(as = WorkflowStatus)]
pub struct WorkflowStatusDoc {
    pub workflow_id: String,
    pub story_id: Option<String>,
    pub agent_statuses: BTreeMap<String, AgentStatusDoc>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A workflow in a listing.
#[derive(ToSchema)]
#[schema(as = WorkflowSummary)]
pub struct WorkflowSummaryDoc {
    pub workflow_id: String,
    pub story_id: Option<String>,
    /// Agent id → state.
    pub agents: BTreeMap<String, AgentStateDoc>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// One recorded status change.
#[derive(ToSchema)]
#[schema(as = StatusChange)]
pub struct StatusChangeDoc {
    pub agent_id: String,
    pub status: AgentStateDoc,
    pub output_summary: Option<String>,
    /// Unix ms.
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::agent::ExecuteBody;
    use bmad2pf_engine::outcome::{
        AgentResult, AgentRunStatus, ExecuteMetadata, ExecuteOutcome, ExecuteRequest,
        ExecuteStatus, Readiness, RunOutcome, RunStatus, TokenUsage,
    };
    use bmad2pf_engine::store::{
        AgentState, StatusChange, WorkflowId, WorkflowStatus, WorkflowSummary,
    };
    use std::collections::BTreeSet;
    use utoipa::PartialSchema;

    fn schema_fields<T: PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap_or_default();
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn value_fields<T: serde::Serialize>(value: &T) -> BTreeSet<String> {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default()
    }

    #[test]
    fn schemas_name_exactly_the_engine_fields() -> Result<(), Box<dyn std::error::Error>> {
        let usage = TokenUsage::default();
        let result = AgentResult {
            status: AgentRunStatus::Completed,
            document: Some("s__a".into()),
            summary: String::new(),
            duration_ms: 1,
            usage,
        };
        let outcome = RunOutcome {
            run_id: "r".into(),
            status: RunStatus::Error,
            results: BTreeMap::from([("a".to_string(), result.clone())]),
            pending_docs: vec![],
            errors: BTreeMap::new(),
            error_code: Some("loop_limit".into()),
            duration_ms: 1,
        };
        let metadata = ExecuteMetadata {
            agent_id: "a".into(),
            execution_id: "e".into(),
            provider: "mock".into(),
            model: "m".into(),
            usage,
            input_hash: "h".into(),
            cached: false,
            error: Some("x".into()),
        };
        let execute = ExecuteOutcome {
            status: ExecuteStatus::Failed,
            content: String::new(),
            summary: String::new(),
            missing_inputs: vec![],
            metadata: metadata.clone(),
            execution_time_ms: 1,
        };
        let readiness = Readiness {
            agent: "a".into(),
            ready: true,
            missing_docs: vec![],
            missing_agents: vec![],
            last_execution: None,
        };
        let workflow = WorkflowStatus {
            workflow_id: WorkflowId::parse("w")?,
            story_id: Some("s".into()),
            agent_statuses: BTreeMap::new(),
            created_at: 1,
            updated_at: 1,
        };
        let change = StatusChange {
            agent_id: "a".into(),
            status: AgentState::Running,
            output_summary: None,
            at: 1,
        };
        assert_eq!(schema_fields::<TokenUsageDoc>(), value_fields(&usage));
        assert_eq!(schema_fields::<AgentResultDoc>(), value_fields(&result));
        assert_eq!(schema_fields::<RunOutcomeDoc>(), value_fields(&outcome));
        assert_eq!(
            schema_fields::<ExecuteMetadataDoc>(),
            value_fields(&metadata)
        );
        assert_eq!(schema_fields::<ExecuteOutcomeDoc>(), value_fields(&execute));
        assert_eq!(
            schema_fields::<ExecuteBody>(),
            value_fields(&ExecuteRequest::default())
        );
        assert_eq!(schema_fields::<ReadinessDoc>(), value_fields(&readiness));
        assert_eq!(
            schema_fields::<WorkflowStatusDoc>(),
            value_fields(&workflow)
        );
        assert_eq!(
            schema_fields::<WorkflowSummaryDoc>(),
            value_fields(&WorkflowSummary::from(&workflow))
        );
        assert_eq!(schema_fields::<StatusChangeDoc>(), value_fields(&change));
        Ok(())
    }
}
