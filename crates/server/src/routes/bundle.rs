//! `GET /flows`, `GET /agents`, `GET /agents/{id}`: what the loaded bundle
//! offers, without prompt text or inlined resources (those stay in
//! `bundle.json` and `prompts/`).
//!
//! Pack-qualified agent ids (`pack/pm`) are written with `%2F` in the path
//! (`/agents/pack%2Fpm`); the router decodes path segments.

use crate::error::ApiError;
use crate::extract::PathParams;
use crate::state::AppState;
use crate::wire::ErrorBody;
use axum::Json;
use axum::extract::State;
use bmad2pf_compiler::bundle::{
    AgentSpec, ErrorHandling, FlowSpec, GateWhen, MemoryScope, StepSpec,
};
use bmad2pf_compiler::config::LlmConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A flow of the bundle.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowInfo {
    pub name: String,
    pub description: String,
    /// `workflow.yaml`, a BMAD workflow file, or `derived`.
    pub source: String,
    /// How often one step may run in one run.
    pub max_visits: u32,
    pub steps: Vec<StepInfo>,
}

/// One step of a flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepInfo {
    pub id: String,
    /// Agents run by this step (empty for a human step).
    pub agents: Vec<String>,
    /// Action → next step id or `end`.
    pub next: BTreeMap<String, String>,
    pub creates: Vec<String>,
    pub requires: Vec<String>,
    /// A person's approval before or after the step (SPEC 8.3), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateInfo>,
}

/// An approval gate of a step.
#[derive(Debug, Serialize, ToSchema)]
pub struct GateInfo {
    /// `before` or `after` the step's agents.
    pub when: String,
    /// What the person is asked (absent: a default naming the step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Where a rejection goes: a step id or `end` (absent: see SPEC 8.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_reject: Option<String>,
}

/// An agent of the bundle: its contract, not its prompt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentInfo {
    pub id: String,
    pub description: String,
    pub format_version: String,
    /// The agent's actions, e.g. `*approve`.
    pub commands: Vec<CommandInfo>,
    /// Documents it writes (its `creates`, or its default output).
    pub outputs: Vec<String>,
    pub creates: Vec<String>,
    pub requires: Vec<String>,
    pub reads: Vec<String>,
    pub updates: Vec<String>,
    pub wait_for_docs: Vec<String>,
    pub wait_for_agents: Vec<String>,
    /// Runs concurrently with the other agents of its step.
    pub parallel: bool,
    pub tools: Vec<String>,
    /// `isolated`, or `shared:<namespace>`.
    pub memory_scope: String,
    /// `stop`, `continue` or `fallback`.
    pub error_handling: String,
    /// Seconds per LLM attempt (the agent's own, else runtime.yaml's `llm.timeout`).
    pub timeout_s: u64,
    /// Extra attempts (the agent's own, else runtime.yaml's `llm.max_retries`).
    pub retry_count: u32,
    /// Whether replies are validated against an output schema.
    pub structured_output: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandInfo {
    pub name: String,
    pub description: String,
}

impl From<&StepSpec> for StepInfo {
    fn from(step: &StepSpec) -> Self {
        Self {
            id: step.id.clone(),
            agents: step.agents.clone(),
            next: step.next.clone(),
            creates: step.creates.clone(),
            requires: step.requires.clone(),
            gate: step.gate.as_ref().map(|gate| GateInfo {
                when: match gate.when {
                    GateWhen::Before => "before",
                    GateWhen::After => "after",
                }
                .to_string(),
                prompt: gate.prompt.clone(),
                on_reject: gate.on_reject.clone(),
            }),
        }
    }
}

impl From<&FlowSpec> for FlowInfo {
    fn from(flow: &FlowSpec) -> Self {
        Self {
            name: flow.name.clone(),
            description: flow.description.clone(),
            source: flow.source.clone(),
            max_visits: flow.max_visits,
            steps: flow.steps.iter().map(StepInfo::from).collect(),
        }
    }
}

impl AgentInfo {
    /// `agent` as listed, with the LLM limits it runs with under `llm`.
    fn new(agent: &AgentSpec, llm: &LlmConfig) -> Self {
        Self {
            id: agent.id.clone(),
            description: agent.description.clone(),
            format_version: agent.format_version.clone(),
            commands: agent
                .commands
                .iter()
                .map(|c| CommandInfo {
                    name: c.name.clone(),
                    description: c.description.clone(),
                })
                .collect(),
            outputs: agent.outputs(),
            creates: agent.creates.clone(),
            requires: agent.requires.clone(),
            reads: agent.reads.clone(),
            updates: agent.updates.clone(),
            wait_for_docs: agent.wait_for.docs.clone(),
            wait_for_agents: agent.wait_for.agents.clone(),
            parallel: agent.parallel,
            tools: agent.tools.clone(),
            memory_scope: match &agent.memory_scope {
                MemoryScope::Isolated => "isolated".to_string(),
                MemoryScope::Shared(namespace) => format!("shared:{namespace}"),
            },
            error_handling: match agent.error_handling {
                ErrorHandling::Stop => "stop",
                ErrorHandling::Continue => "continue",
                ErrorHandling::Fallback => "fallback",
            }
            .to_string(),
            timeout_s: agent.timeout_s.unwrap_or(llm.timeout),
            retry_count: agent.retry_count.unwrap_or(llm.max_retries),
            structured_output: agent.output_schema.is_some(),
        }
    }
}

/// Lists the bundle's flows.
#[utoipa::path(get, path = "/flows", tag = "bundle",
    responses((status = 200, description = "Flows, sorted by name", body = Vec<FlowInfo>)))]
pub async fn flows(State(state): State<AppState>) -> Json<Vec<FlowInfo>> {
    let engine = state.engine();
    Json(engine.bundle().flows.values().map(FlowInfo::from).collect())
}

/// Lists the bundle's agents.
#[utoipa::path(get, path = "/agents", tag = "bundle",
    responses((status = 200, description = "Agents, sorted by id", body = Vec<AgentInfo>)))]
pub async fn agents(State(state): State<AppState>) -> Json<Vec<AgentInfo>> {
    let engine = state.engine();
    Json(
        engine
            .bundle()
            .agents
            .values()
            .map(|agent| AgentInfo::new(agent, &engine.config().llm))
            .collect(),
    )
}

/// One agent.
#[utoipa::path(get, path = "/agents/{id}", tag = "bundle",
    params(("id" = String, Path, description = "Agent id (`pack%2Fpm` for a pack-qualified id)")),
    responses(
        (status = 200, description = "The agent", body = AgentInfo),
        (status = 404, description = "Unknown agent", body = ErrorBody),
    ))]
pub async fn agent(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<AgentInfo>, ApiError> {
    let engine = state.engine();
    engine
        .bundle()
        .agents
        .get(&id)
        .map(|agent| Json(AgentInfo::new(agent, &engine.config().llm)))
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_agent",
                format!("unknown agent `{id}`"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_shows_its_gate() {
        let step: StepSpec = serde_json::from_value(json!({
            "id": "draft", "agents": ["pm"],
            "gate": {"when": "after", "on_reject": "end"}
        }))
        .expect("a step");
        let shown = serde_json::to_value(StepInfo::from(&step)).expect("JSON");
        assert_eq!(shown["gate"], json!({"when": "after", "on_reject": "end"}));
        let plain: StepSpec =
            serde_json::from_value(json!({"id": "brief", "agents": ["analyst"]})).expect("a step");
        let shown = serde_json::to_value(StepInfo::from(&plain)).expect("JSON");
        assert!(shown.get("gate").is_none(), "{shown}");
    }
}
