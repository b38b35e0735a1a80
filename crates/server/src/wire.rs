//! OpenAPI descriptions of the error body and of the store bodies whose
//! types do not derive their schema.
//!
//! The engine's outcomes (`RunOutcome`, `ExecuteOutcome`, `Readiness`)
//! derive `ToSchema` where they are defined and are used directly. The
//! store's listing and status types (`DocMeta`, `WorkflowStatus`…) do not
//! yet, so their schemas are written here; a unit test serialises real
//! store values and checks that they have exactly the fields these schemas
//! name, so the two cannot drift apart silently.

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

/// The name of a Server-Sent Event of a streamed run.
#[derive(ToSchema)]
#[schema(as = RunEventName)]
pub enum RunEventNameDoc {
    #[schema(rename = "progress")]
    Progress,
    #[schema(rename = "token")]
    Token,
    #[schema(rename = "result")]
    Result,
    #[schema(rename = "done")]
    Done,
    #[schema(rename = "error")]
    Error,
}

/// One Server-Sent Event of a streamed run (`POST /run` with streaming),
/// as an event-stream parser reads it.
#[derive(ToSchema)]
#[schema(as = RunStreamEvent)]
pub struct RunStreamEventDoc {
    pub event: RunEventNameDoc,
    /// JSON text: `progress` `{agent, status, duration_ms?, timestamp}`,
    /// `token` `{agent, delta}`, `result` `{agent, data}`, `done` the
    /// `RunOutcome`, `error` `{code, message}`.
    pub data: String,
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
    use bmad2pf_engine::outcome::ExecuteRequest;
    use bmad2pf_engine::store::{
        AgentState, DocId, DocMeta, StatusChange, WorkflowId, WorkflowStatus, WorkflowSummary,
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
    fn schemas_name_exactly_the_store_fields() -> Result<(), Box<dyn std::error::Error>> {
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
        let meta = DocMeta {
            id: DocId::parse("s__a")?,
            bytes: 1,
            modified: 1,
        };
        assert_eq!(schema_fields::<DocMetaDoc>(), value_fields(&meta));
        assert_eq!(
            schema_fields::<ExecuteBody>(),
            value_fields(&ExecuteRequest::default())
        );
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
