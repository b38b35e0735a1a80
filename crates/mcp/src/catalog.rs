//! The tools a bundle offers, each with the action it stands for and its
//! input schema.
//!
//! - `run_<flow>` for each flow: start a run for a story and wait for it
//!   (for a while), then answer its status, documents and questions;
//! - `execute_<agent>` for each agent: stateless execute, its required
//!   documents as required arguments;
//! - `get_run`, `list_runs`, `answer_question`, `read_document`.
//!
//! Schemas come from the bundle (flow names, each agent's required
//! documents, each flow's longest story id) and from the engine's id
//! schemas, so they promise what the engine accepts. Tool names may hold
//! letters, digits, `_`, `-` and `.` (the MCP naming rule): any other
//! character of a flow name or agent id (the `/` of `pack/pm`) becomes `.`.

use bmad2pf_engine::Engine;
use bmad2pf_engine::id_schema::IdKind;
use bmad2pf_engine::outcome::RunStatus;
use bmad2pf_engine::runs::MAX_PAGE;
use bmad2pf_engine::store::ids::MAX_ID_LEN;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Longest a tool call waits for a run, in seconds (as `GET /runs/{id}/wait`).
pub const MAX_WAIT_S: u64 = 300;
/// How long `run_<flow>` and `answer_question` wait by default: below the
/// one-minute request timeout common among MCP clients.
pub const DEFAULT_RUN_WAIT_S: u64 = 50;

/// The largest integer every JSON reader holds exactly (2^53 - 1), the
/// bound of an integer argument that has no smaller one: a larger number
/// would be read as a float, and then not fit the integer the tool takes.
const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;
/// Longest tool name MCP allows.
const MAX_TOOL_NAME: usize = 128;

/// What a tool does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a run of this flow.
    RunFlow(String),
    /// Execute this agent statelessly.
    ExecuteAgent(String),
    GetRun,
    ListRuns,
    AnswerQuestion,
    ReadDocument,
}

/// A tool and what it does.
#[derive(Debug, Clone)]
pub struct Entry {
    pub tool: Tool,
    pub action: Action,
}

/// The tools of one engine's bundle, by name.
#[derive(Debug)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
}

impl Catalog {
    pub fn of(engine: &Engine) -> Self {
        let mut catalog = Self {
            entries: BTreeMap::new(),
        };
        let flows: Vec<&String> = engine.bundle().flows.keys().collect();
        catalog.add(get_run_tool(), Action::GetRun);
        catalog.add(list_runs_tool(&flows), Action::ListRuns);
        catalog.add(answer_question_tool(), Action::AnswerQuestion);
        catalog.add(read_document_tool(), Action::ReadDocument);
        for flow in engine.bundle().flows.values() {
            let tool = run_flow_tool(
                &flow.name,
                &flow.description,
                engine.flow_story_limit(&flow.name),
            );
            catalog.add(tool, Action::RunFlow(flow.name.clone()));
        }
        for agent in engine.bundle().agents.values() {
            let required = engine.required_documents(&agent.id).unwrap_or_default();
            let tool = execute_agent_tool(&agent.id, &agent.description, &required);
            catalog.add(tool, Action::ExecuteAgent(agent.id.clone()));
        }
        catalog
    }

    /// Adds a tool unless its name is taken or too long (two names that
    /// differ only in characters MCP does not allow): the first one keeps
    /// the name, the other is left out and logged.
    fn add(&mut self, tool: Tool, action: Action) {
        let name = tool.name.to_string();
        if name.len() > MAX_TOOL_NAME || self.entries.contains_key(&name) {
            tracing::warn!(tool = %name, ?action, "no MCP tool for this: its name is too long or taken");
            return;
        }
        self.entries.insert(name, Entry { tool, action });
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every tool, sorted by name.
    pub fn tools(&self) -> Vec<Tool> {
        self.entries.values().map(|e| e.tool.clone()).collect()
    }
}

/// `prefix` and `name`, with every character MCP tool names do not allow
/// replaced by `.`.
fn tool_name(prefix: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("{prefix}{safe}")
}

/// An object schema of `properties`, `required` ones marked, no others allowed.
fn object_schema(properties: Value, required: &[&str]) -> Arc<JsonObject> {
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    match schema {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// `schema` with a `description`.
fn described(mut schema: Value, description: &str) -> Value {
    schema["description"] = json!(description);
    schema
}

fn wait_schema(default: u64, what: &str) -> Value {
    json!({
        "type": "integer", "minimum": 0, "maximum": MAX_WAIT_S, "default": default,
        "description": format!(
            "Seconds to wait {what} before answering with the run as it is \
            (poll it later with `get_run`)"
        ),
    })
}

fn run_flow_tool(flow: &str, description: &str, story_limit: usize) -> Tool {
    let what = if description.is_empty() {
        format!("the flow `{flow}`")
    } else {
        format!("the flow `{flow}`: {description}")
    };
    let properties = json!({
        "story_id": described(
            IdKind::Story.schema(story_limit),
            "The story this run works on: its documents are named `{story_id}__{name}` \
            and kept between runs. One run per flow and story at a time.",
        ),
        "input": {"type": "string", "description": "What the user wants: the input of the flow's first agents."},
        "force": {"type": "boolean", "default": false,
            "description": "Run agents again even when their documents exist and their inputs are unchanged."},
        "mode": {"type": "string", "enum": ["interactive", "headless"], "default": "interactive",
            "description": "interactive: an agent's question stops the run until `answer_question` \
            answers it. headless: agents proceed on assumptions they state, listed in `open_questions`."},
        "wait_s": wait_schema(DEFAULT_RUN_WAIT_S, "for the run to end or to ask a question"),
    });
    let description = format!(
        "Run {what}. Answers when the run ends, stops with a question for a person, or \
        `wait_s` passes (then poll with `get_run`): its status, the documents its agents \
        wrote (with summaries and `doc://` URIs) and its questions."
    );
    Tool::new(
        tool_name("run_", flow),
        description,
        object_schema(properties, &["story_id", "input"]),
    )
    .annotate(ToolAnnotations::new().read_only(false).open_world(true))
}

fn execute_agent_tool(agent: &str, description: &str, required: &[(String, String)]) -> Tool {
    let mut documents = serde_json::Map::new();
    for (key, name) in required {
        documents.insert(
            key.clone(),
            json!({"type": "string", "description": format!("The content of the document `{name}` (Markdown).")}),
        );
    }
    let required_keys: Vec<&str> = required.iter().map(|(key, _)| key.as_str()).collect();
    let documents = json!({
        "type": "object",
        "properties": documents,
        "required": required_keys,
        "additionalProperties": {"type": "string"},
        "description": "Documents by name, as Markdown text: those the agent requires, and any \
            others it should read.",
    });
    let properties = json!({
        "instruction": {"type": "string", "minLength": 1, "description": "What the agent should do."},
        "documents": documents,
        "context_data": {"type": "object", "description": "Extra values for the agent's prompt."},
    });
    let mut top_required = vec!["instruction"];
    if !required_keys.is_empty() {
        top_required.push("documents");
    }
    let about = if description.is_empty() {
        String::new()
    } else {
        format!(" ({description})")
    };
    let description = format!(
        "Execute the agent `{agent}`{about} once, on the documents given, without storing \
        anything: its answer, summary and status (completed, needs_input or failed)."
    );
    Tool::new(
        tool_name("execute_", agent),
        description,
        object_schema(properties, &top_required),
    )
    .annotate(ToolAnnotations::new().read_only(true).open_world(true))
}

fn get_run_tool() -> Tool {
    let properties = json!({
        "run_id": described(IdKind::Run.schema(0), "The run's id (`run_id` of a run tool's answer)."),
        "wait_s": wait_schema(0, "for the run to end or to ask a question"),
    });
    Tool::new(
        "get_run",
        "A run's status, the documents its agents wrote, and its questions; with `wait_s`, \
        once it ends or asks a question (or when `wait_s` passes).",
        object_schema(properties, &["run_id"]),
    )
    .annotate(ToolAnnotations::new().read_only(true).idempotent(true))
}

fn list_runs_tool(flows: &[&String]) -> Tool {
    let statuses: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    let properties = json!({
        "story_id": described(IdKind::Plain.schema(MAX_ID_LEN), "Only runs of this story."),
        "flow": {"type": "string", "enum": flows, "description": "Only runs of this flow."},
        "status": {"type": "array", "items": {"type": "string", "enum": statuses}, "uniqueItems": true,
            "description": "Only runs in one of these statuses (`interrupted`: waiting for an answer)."},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 20,
            "description": "Runs per page."},
        "cursor": {"type": "string", "minLength": 1,
            "description": "`next_cursor` of the previous page."},
    });
    Tool::new(
        "list_runs",
        "Runs, newest first: id, flow, story, status, step, open questions. Pages with `cursor`.",
        object_schema(properties, &[]),
    )
    .annotate(ToolAnnotations::new().read_only(true).idempotent(true))
}

fn answer_question_tool() -> Tool {
    let properties = json!({
        "run_id": described(IdKind::Run.schema(0), "The run that asked."),
        "interrupt_id": described(IdKind::Interrupt.schema(0), "The question's `interrupt_id`."),
        "answer": {"type": "string", "minLength": 1,
            "description": "For an `ask` question, the answer; for `choose`, exactly one of its options."},
        "decision": {"type": "string", "enum": ["approve", "reject"],
            "description": "For an `approve` question."},
        "feedback": {"type": "string",
            "description": "For an `approve` question that is rejected: what to change."},
        "wait_s": wait_schema(DEFAULT_RUN_WAIT_S, "for the run, continued, to end or to ask again"),
    });
    Tool::new(
        "answer_question",
        "Answer a question of a run that waits for a person (the `questions` of a run tool's \
        answer), which then continues; answers like `run_<flow>`. `ask` takes `answer`; \
        `choose` takes `answer`, one of the options; `approve` takes `decision`, and \
        `feedback` with a rejection.",
        object_schema(properties, &["run_id", "interrupt_id"]),
    )
    .annotate(ToolAnnotations::new().read_only(false).open_world(true))
}

fn read_document_tool() -> Tool {
    let properties = json!({
        "story_id": described(IdKind::AnyStory.schema(0), "The story the document belongs to."),
        "name": described(IdKind::Doc.schema(0), "The document's name within the story (`prd` or `prd.md`)."),
        "version": {"type": "integer", "minimum": 1, "maximum": MAX_EXACT_INTEGER,
            "description": "One version of it (1 is the first); the latest without."},
    });
    Tool::new(
        "read_document",
        "The Markdown text of a story's document (also the resource `doc://{story_id}/{name}`).",
        object_schema(properties, &["story_id", "name"]),
    )
    .annotate(ToolAnnotations::new().read_only(true).idempotent(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_keep_only_what_mcp_allows() {
        assert_eq!(tool_name("run_", "planning"), "run_planning");
        assert_eq!(tool_name("execute_", "pack/pm"), "execute_pack.pm");
        assert_eq!(tool_name("run_", "a b:c"), "run_a.b.c");
    }
}
