//! What an agent of a flow works from: its documents, its memory, its
//! prompt and first message, and the hash of all that.
//!
//! The agent's prep gathers these under the run's read lock; the hash lets a
//! resumed run skip an agent whose inputs have not changed since it last ran.

use super::RunContext;
use crate::canonical::canonical_hash;
use crate::conversation::envelope_instructions;
use crate::core::Core;
use crate::failure::{AgentErrorCode, FailureCode};
use crate::llm::LlmRequest;
use crate::store::{DocStore, StoreError, doc_id};
use bmad2pf_compiler::bundle::{AgentSpec, StepSpec};
use bmad2pf_compiler::config::OnMissingDoc;
use bmad2pf_compiler::prompt::{self, RunInputs};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The run inputs of one agent execution, owned so exec can render with them.
pub(super) struct OwnedInputs {
    pub input: String,
    pub story_id: String,
    pub docs: BTreeMap<String, String>,
    pub memory: BTreeMap<String, Value>,
    /// A person's feedback when the step's approval gate sent it back.
    pub feedback: Option<String>,
}

impl OwnedInputs {
    pub fn view<'a>(
        &'a self,
        context: &'a Value,
        steps: Option<&'a BTreeMap<String, String>>,
    ) -> RunInputs<'a> {
        RunInputs {
            input: &self.input,
            story_id: &self.story_id,
            docs: &self.docs,
            memory: &self.memory,
            context,
            steps,
            feedback: self.feedback.as_deref().unwrap_or_default(),
        }
    }
}

/// The documents an agent reads, or why it cannot start.
pub(super) enum Documents {
    /// Document key → content, required and optional ones.
    Ready(BTreeMap<String, String>),
    /// Required documents are missing (`on_missing_doc: wait`).
    Waiting(Vec<String>),
    Failed {
        code: FailureCode,
        message: String,
    },
}

/// Reads the agent's required documents (`requires`, `wait_for`, the step's
/// `requires`), applying `on_missing_doc`, and the optional ones it reads
/// or updates.
pub(super) async fn gather_documents(
    core: &Core,
    agent: &AgentSpec,
    step: &StepSpec,
    ctx: &RunContext,
) -> Documents {
    let failed = |code: FailureCode, message: String| Documents::Failed { code, message };
    let story = ctx.story_id.as_str();
    let mut docs: BTreeMap<String, String> = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, name) in core.required_documents(agent, &step.requires) {
        let id = match doc_id(story, &name) {
            Ok(id) => id,
            Err(e) => return failed(AgentErrorCode::InvalidDocumentName.into(), e.to_string()),
        };
        match ctx.docs.get(&id).await {
            Ok(Some(doc)) => {
                docs.insert(key, doc.content);
            }
            Ok(None) => match core.config.on_missing_doc {
                OnMissingDoc::Skip => {
                    docs.insert(key, String::new());
                }
                OnMissingDoc::Wait | OnMissingDoc::Error => missing.push(name),
            },
            Err(e) => return failed((&e).into(), e.to_string()),
        }
    }
    if !missing.is_empty() {
        return match core.config.on_missing_doc {
            OnMissingDoc::Error => failed(
                AgentErrorCode::DependencyMissing.into(),
                format!("missing required documents: {}", missing.join(", ")),
            ),
            _ => Documents::Waiting(missing),
        };
    }
    let matching = match matching_documents(step, ctx).await {
        Ok(names) => names,
        Err(e) => return failed((&e).into(), e.to_string()),
    };
    for name in agent
        .reads
        .iter()
        .chain(&agent.updates)
        .chain(&step.updates)
        .chain(&matching)
    {
        let Ok(id) = doc_id(story, name) else {
            continue;
        };
        match ctx.docs.get(&id).await {
            Ok(Some(doc)) => {
                docs.insert(name.clone(), doc.content);
            }
            Ok(None) => {}
            Err(e) => return failed((&e).into(), e.to_string()),
        }
    }
    Documents::Ready(docs)
}

/// The story's documents the step reads by pattern (step metadata
/// `reads_matching`: globs of document names from a BMAD workflow's
/// `input_file_patterns`, e.g. `*prd*.md`, SPEC 1.7), by name. A pattern
/// that is not a valid glob matches nothing.
async fn matching_documents(step: &StepSpec, ctx: &RunContext) -> Result<Vec<String>, StoreError> {
    let patterns: Vec<glob::Pattern> = step
        .metadata
        .get("reads_matching")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|pattern| glob::Pattern::new(pattern).ok())
        .collect();
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let listed = ctx.docs.list(Some(&ctx.story_id)).await?;
    let prefix = format!("{}__", ctx.story_id);
    Ok(listed
        .iter()
        .filter_map(|doc| doc.id.as_str().strip_prefix(&prefix))
        .filter(|name| {
            let file = format!("{name}.md");
            patterns.iter().any(|p| p.matches(name) || p.matches(&file))
        })
        .map(str::to_string)
        .collect())
}

/// The first user message: the step's own task when it has one (a BMAD v6
/// step file's text, compiled into the step's `metadata.prompt`, SPEC
/// 1.7), the run's input (when the template does not already show it), a
/// person's feedback when the step's gate sent it back (SPEC 8.3), and how
/// to write the reply and name the next action. A skill with a headless
/// contract run headless reads `headless: true` after the input (SPEC 1.7).
pub(super) fn user_message(
    agent: &AgentSpec,
    step: &StepSpec,
    template_uses_input: bool,
    input: &str,
    headless_contract: bool,
    feedback: Option<&str>,
) -> String {
    let mut text = String::new();
    if let Some(task) = step
        .metadata
        .get("prompt")
        .and_then(serde_json::Value::as_str)
        .filter(|task| !task.trim().is_empty())
    {
        text.push_str(task.trim());
        text.push_str("\n\n");
    }
    if !template_uses_input && !input.trim().is_empty() {
        text.push_str(input.trim());
        text.push_str("\n\n");
    }
    if headless_contract {
        text.push_str("headless: true\n\n");
    }
    match feedback.map(str::trim) {
        Some("") => text.push_str(
            "A person reviewed this step's previous output and sent it back without comment: improve it.\n\n",
        ),
        Some(feedback) => text.push_str(&format!(
            "A person reviewed this step's previous output and sent it back. Their feedback:\n{feedback}\n\n"
        )),
        None => {}
    }
    if agent.output_schema.is_some() {
        text.push_str(&envelope_instructions(agent.output_schema.as_ref()));
    } else if !agent.commands.is_empty() {
        let names: Vec<&str> = agent.commands.iter().map(|c| c.name.as_str()).collect();
        text.push_str(&format!(
            "Write your output as a Markdown document. If one of your commands applies as the next step, end with a line `ACTION: <command>`, one of: {}.",
            names.join(", ")
        ));
    } else {
        text.push_str("Write your output as a Markdown document.");
    }
    text
}

/// Whether `template` reads variable `name` (a template that does not parse reads nothing).
pub(super) fn uses_variable(template: &str, name: &str) -> bool {
    let env = prompt::environment();
    env.template_from_str(template)
        .map(|t| t.undeclared_variables(false).contains(name))
        .unwrap_or(false)
}

/// sha256 over what the agent's output is derived from: the request
/// (rendered prompt, model settings, tools) and, for a sequence, the
/// documents its step templates may read when they run. (Memory is not
/// hashed: every run writes the agent's own `last_output`, which would make
/// every agent look changed.)
pub(super) fn hash_inputs(
    provider: &str,
    request: &LlmRequest,
    inputs: &OwnedInputs,
    has_sequence: bool,
) -> String {
    let docs = if has_sequence {
        json!(inputs.docs)
    } else {
        Value::Null
    };
    canonical_hash(&json!({
        "provider": provider,
        "request": request,
        "docs": docs,
    }))
}
