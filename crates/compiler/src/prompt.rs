//! Turning an agent into its prompt: the template variables and the renderer.
//!
//! An agent's `prompt_template` (Jinja, strict undefined) reads these
//! variables (SPEC 1.1):
//!
//! | variable | value |
//! |---|---|
//! | `persona` | [`persona_text`]: the string persona, or the persona map as labelled lines |
//! | `tasks`, `checklists`, `templates` | [`resources_text`]: each resource under `### <name>`, verbatim |
//! | `commands` | [`commands_text`]: one `- *name: description` line per command |
//! | `data` | [`resources_text`] of BMAD `data`/`utils` dependencies (BMAD agents' templates show it; empty otherwise) |
//! | `steps` | sequence step templates and conditions only: earlier steps' outputs by step name |
//! | `agent` | [`agent_value`]: id, description, commands, tools, document contract … |
//! | `input`, `story_id` | the run's input text and story id |
//! | `docs` | document short name → content |
//! | `memory` | key → JSON value of the agent's memory scope |
//! | `context` | the caller's `context_data` |
//! | `feedback` | a person's feedback when an approval gate sent the step back (SPEC 8.3); empty otherwise |
//!
//! Resources are passed as *values*, never rendered as templates, so
//! Jinja-looking text inside a task file reaches the LLM exactly as written.
//! Nothing here does I/O: the engine calls [`render`] once per agent run, the
//! bundle writer calls [`preview`] for `prompts/<id>.md`.

use crate::bundle::{AgentSpec, Command, MemoryScope, Persona, Resource};
use minijinja::value::{Enumerator, Object, Value};
use minijinja::{AutoEscape, Environment, Template, UndefinedBehavior};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a prompt could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// The template does not parse (a bundle compiled by this crate never
    /// has this; a hand-edited bundle.json might).
    #[error("prompt template syntax error on line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// The template parsed but failed while rendering, e.g. it read
    /// `docs["prd.md"]` and the run has no such document.
    #[error("prompt rendering failed on line {line}: {message}")]
    Render { line: usize, message: String },
}

impl PromptError {
    fn syntax(err: &minijinja::Error) -> Self {
        Self::Syntax {
            line: err.line().unwrap_or(0),
            message: describe(err),
        }
    }

    fn render(err: &minijinja::Error) -> Self {
        Self::Render {
            line: err.line().unwrap_or(0),
            message: describe(err),
        }
    }
}

/// What went wrong, in words: the kind of error and its detail.
pub(crate) fn describe(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// The minijinja settings every prompt is parsed and rendered with: strict
/// undefined variables, no HTML escaping, trailing newline kept.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    crate::template_limits::bound(&mut env);
    env
}

/// What a run supplies to a prompt: everything not known at compile time.
#[derive(Debug, Clone, Copy)]
pub struct RunInputs<'a> {
    pub input: &'a str,
    pub story_id: &'a str,
    /// Document short name → content (an agent's default output under its
    /// id, a named document under its name as written, e.g. `requirements.md`).
    pub docs: &'a BTreeMap<String, String>,
    /// The agent's memory scope, key → value.
    pub memory: &'a BTreeMap<String, serde_json::Value>,
    /// The caller's `context_data` (an object, or null when none was given).
    pub context: &'a serde_json::Value,
    /// For `sequence` step templates and conditions only: the outputs of the
    /// agent's earlier steps, step name → text (the `steps` variable).
    pub steps: Option<&'a BTreeMap<String, String>>,
    /// A person's feedback on the step's previous output (`""` when none).
    pub feedback: &'a str,
}

/// Renders `template` (the agent's `prompt_template`, or a sequence step's
/// template) for one run of `agent`. To render an agent's prompt many times,
/// prepare it once with [`PreparedPrompt`].
pub fn render(
    template: &str,
    agent: &AgentSpec,
    inputs: &RunInputs<'_>,
) -> Result<String, PromptError> {
    PreparedPrompt::new(agent)?.render_str(template, inputs)
}

/// An agent's prompt made ready for many runs: its template parsed once and
/// the compile-time variables (`agent`, `persona`, `tasks`, `checklists`,
/// `templates`, `commands`) computed once. The engine keeps one per agent.
pub struct PreparedPrompt {
    env: Environment<'static>,
    fixed: Vec<(&'static str, Value)>,
}

/// Name of the agent's own template inside a [`PreparedPrompt`]'s environment.
const MAIN_TEMPLATE: &str = "prompt";

impl PreparedPrompt {
    /// Parses `agent.prompt_template`; a syntax error is reported here.
    pub fn new(agent: &AgentSpec) -> Result<Self, PromptError> {
        let mut env = environment();
        env.add_template_owned(MAIN_TEMPLATE, agent.prompt_template.clone())
            .map_err(|e| PromptError::syntax(&e))?;
        Ok(Self {
            env,
            fixed: fixed_variables(agent),
        })
    }

    /// Renders the agent's prompt for one run.
    pub fn render(&self, inputs: &RunInputs<'_>) -> Result<String, PromptError> {
        let template = self
            .env
            .get_template(MAIN_TEMPLATE)
            .map_err(|e| PromptError::syntax(&e))?;
        crate::template_limits::render(&template, self.context(inputs))
            .map_err(|e| PromptError::render(&e))
    }

    /// Renders another template of the agent (a sequence step's) with the same variables.
    pub fn render_str(
        &self,
        template: &str,
        inputs: &RunInputs<'_>,
    ) -> Result<String, PromptError> {
        let parsed = self
            .env
            .template_from_str(template)
            .map_err(|e| PromptError::syntax(&e))?;
        crate::template_limits::render(&parsed, self.context(inputs))
            .map_err(|e| PromptError::render(&e))
    }

    fn context(&self, inputs: &RunInputs<'_>) -> Value {
        let run = [
            ("input", Value::from(inputs.input)),
            ("story_id", Value::from(inputs.story_id)),
            ("docs", Value::from_serialize(inputs.docs)),
            ("memory", Value::from_serialize(inputs.memory)),
            ("context", Value::from_serialize(inputs.context)),
            ("feedback", Value::from(inputs.feedback)),
        ];
        let steps = inputs
            .steps
            .map(|steps| ("steps", Value::from_serialize(steps)));
        Value::from_iter(self.fixed.iter().cloned().chain(run).chain(steps))
    }
}

/// The compile-time variables of an agent's prompts.
fn fixed_variables(agent: &AgentSpec) -> Vec<(&'static str, Value)> {
    vec![
        ("agent", Value::from_serialize(agent_value(agent))),
        ("persona", Value::from(persona_text(agent.persona.as_ref()))),
        ("tasks", Value::from(resources_text(&agent.tasks))),
        ("checklists", Value::from(resources_text(&agent.checklists))),
        ("templates", Value::from(resources_text(&agent.templates))),
        ("commands", Value::from(commands_text(&agent.commands))),
        // BMAD `data`/`utils` dependencies (empty for preprocessing agents).
        ("data", Value::from(resources_text(&agent.data))),
    ]
}

/// The agent's prompt for human review: compile-time variables filled in,
/// run-time ones (`input`, `story_id`, `docs[…]`, `memory[…]`, `context[…]`)
/// shown as visible placeholders such as `{{ input }}`.
pub fn preview(agent: &AgentSpec) -> Result<String, String> {
    let env = environment();
    let template = env
        .template_from_str(&agent.prompt_template)
        .map_err(|e| format!("agent `{}`: {}", agent.id, PromptError::syntax(&e)))?;
    preview_parsed(&template, agent)
}

/// [`preview`] for a template already parsed from `agent.prompt_template`
/// with [`environment`]'s settings (the compiler's template check parses
/// it anyway, so a preview costs no second parse).
pub fn preview_parsed(template: &Template<'_, '_>, agent: &AgentSpec) -> Result<String, String> {
    let placeholders = |variable, keys| Value::from_object(Placeholders { variable, keys });
    let run = [
        ("input", Value::from("{{ input }}")),
        ("story_id", Value::from("{{ story_id }}")),
        ("docs", placeholders("docs", preview_doc_names(agent))),
        ("memory", placeholders("memory", Vec::new())),
        ("context", placeholders("context", Vec::new())),
        ("feedback", Value::from("{{ feedback }}")),
    ];
    let ctx = Value::from_iter(fixed_variables(agent).into_iter().chain(run));
    crate::template_limits::render(template, ctx)
        .map_err(|e| format!("agent `{}`: {}", agent.id, PromptError::render(&e)))
}

/// The persona as prompt text: a free-text persona as written, a map as
/// `Role:` / `Style:` / `Identity:` / `Focus:` lines and a principles list.
pub fn persona_text(persona: Option<&Persona>) -> String {
    let Some(p) = persona else {
        return String::new();
    };
    let mut lines: Vec<String> = Vec::new();
    if let Some(text) = &p.text {
        lines.push(text.trim_end().to_string());
    }
    for (label, value) in [
        ("Role", &p.role),
        ("Style", &p.style),
        ("Identity", &p.identity),
        ("Focus", &p.focus),
    ] {
        if let Some(value) = value {
            lines.push(format!("{label}: {value}"));
        }
    }
    if !p.core_principles.is_empty() {
        lines.push("Core principles:".into());
        lines.extend(p.core_principles.iter().map(|c| format!("- {c}")));
    }
    lines.join("\n")
}

/// Resources as prompt text: each under `### <name>`, content verbatim,
/// separated by a blank line. Empty when there are none.
pub fn resources_text(resources: &[Resource]) -> String {
    resources
        .iter()
        .map(|r| format!("### {}\n\n{}\n", r.name, r.content.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Commands as prompt text: `- *name: description` (or `- *name`), one per line.
pub fn commands_text(commands: &[Command]) -> String {
    commands
        .iter()
        .map(|c| {
            if c.description.is_empty() {
                format!("- {}", c.name)
            } else {
                format!("- {}: {}", c.name, c.description)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `isolated`, or `shared:<namespace>`: the scope as SPEC 4.4 writes it.
pub fn memory_scope_text(scope: &MemoryScope) -> String {
    match scope {
        MemoryScope::Isolated => "isolated".into(),
        MemoryScope::Shared(ns) => format!("shared:{ns}"),
    }
}

/// The `agent` template variable: the agent's metadata (not its resources).
#[derive(Debug, Clone, Serialize)]
pub struct AgentValue {
    pub id: String,
    pub description: String,
    pub format_version: String,
    /// Command names with their star, e.g. `*approve`.
    pub commands: Vec<String>,
    pub tools: Vec<String>,
    pub creates: Vec<String>,
    pub requires: Vec<String>,
    pub reads: Vec<String>,
    pub updates: Vec<String>,
    /// Documents it produces: `creates`, or its default output.
    pub outputs: Vec<String>,
    pub memory_scope: String,
}

pub fn agent_value(agent: &AgentSpec) -> AgentValue {
    AgentValue {
        id: agent.id.clone(),
        description: agent.description.clone(),
        format_version: agent.format_version.clone(),
        commands: agent.commands.iter().map(|c| c.name.clone()).collect(),
        tools: agent.tools.clone(),
        creates: agent.creates.clone(),
        requires: agent.requires.clone(),
        reads: agent.reads.clone(),
        updates: agent.updates.clone(),
        outputs: agent.outputs(),
        memory_scope: memory_scope_text(&agent.memory_scope),
    }
}

/// Document names a preview lists when the template loops over `docs`:
/// the agent's inputs as far as the agent itself knows them.
fn preview_doc_names(agent: &AgentSpec) -> Vec<String> {
    let mut names: Vec<String> = agent
        .requires
        .iter()
        .chain(&agent.wait_for.docs)
        .chain(&agent.reads)
        .cloned()
        .chain(
            agent
                .wait_for
                .agents
                .iter()
                .map(|a| a.to_ascii_lowercase().replace('/', ".")),
        )
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A run-time map shown in a preview: any key reads as the placeholder
/// `{{ docs["key"] }}`, so strict rendering succeeds without real values.
#[derive(Debug)]
struct Placeholders {
    variable: &'static str,
    keys: Vec<String>,
}

impl Object for Placeholders {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str().map_or_else(|| key.to_string(), str::to_string);
        Some(Value::from(format!("{{{{ {}[{key:?}] }}}}", self.variable)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.keys.iter().map(|k| Value::from(k.as_str())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{ErrorHandling, LlmOverride, WaitFor};

    fn agent(template: &str) -> AgentSpec {
        AgentSpec {
            id: "pm".into(),
            format_version: "1.0".into(),
            source: "agents/pm.md".into(),
            description: "Product manager".into(),
            persona: Some(Persona {
                role: Some("PM".into()),
                core_principles: vec!["Be brief".into()],
                ..Persona::default()
            }),
            tasks: vec![Resource {
                name: "create-prd".into(),
                path: "tasks/create-prd.md".into(),
                content: "Write {{ not_a_variable }} as is.\n".into(),
            }],
            checklists: Vec::new(),
            templates: Vec::new(),
            data: Vec::new(),
            commands: vec![Command {
                name: "*approve".into(),
                description: "ship it".into(),
            }],
            tools: Vec::new(),
            memory_scope: MemoryScope::Isolated,
            wait_for: WaitFor::default(),
            creates: Vec::new(),
            requires: vec!["brief.md".into()],
            reads: Vec::new(),
            updates: Vec::new(),
            parallel: false,
            sequence: Vec::new(),
            timeout_s: None,
            retry_count: None,
            error_handling: ErrorHandling::Stop,
            llm: LlmOverride::default(),
            output_schema: None,
            prompt_template: template.into(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn preview_fills_static_and_marks_runtime_variables() -> Result<(), String> {
        let a = agent(
            "{{ persona }}\n{{ tasks }}\n{{ commands }}\nIn: {{ input }} ({{ story_id }})\n{% for d in docs %}{{ d }}={{ docs[d] }}{% endfor %}\n{{ agent.id }}\n",
        );
        let text = preview(&a)?;
        assert_eq!(
            text,
            "Role: PM\nCore principles:\n- Be brief\n### create-prd\n\nWrite {{ not_a_variable }} as is.\n\n- *approve: ship it\nIn: {{ input }} ({{ story_id }})\nbrief.md={{ docs[\"brief.md\"] }}\npm\n"
        );
        Ok(())
    }

    #[test]
    fn render_is_strict_about_missing_documents() {
        let a = agent("{{ docs[\"brief.md\"] }}");
        let docs = BTreeMap::new();
        let memory = BTreeMap::new();
        let inputs = RunInputs {
            input: "go",
            story_id: "s1",
            docs: &docs,
            memory: &memory,
            context: &serde_json::Value::Null,
            steps: None,
            feedback: "",
        };
        let err = render(&a.prompt_template, &a, &inputs);
        assert!(
            matches!(err, Err(PromptError::Render { line: 1, .. })),
            "{err:?}"
        );
        let mut docs = BTreeMap::new();
        docs.insert("brief.md".to_string(), "B".to_string());
        let inputs = RunInputs {
            docs: &docs,
            ..inputs
        };
        assert_eq!(render(&a.prompt_template, &a, &inputs), Ok("B".into()));
    }
}
