//! The preprocessing source layout: `agents/*.md`, `workflow.yaml`,
//! `tools.yaml`, `runtime.yaml` and resource folders (SPEC 1.1–1.4).
//!
//! [`read`] turns a source directory into [`ProjectParts`], reporting every
//! problem it meets and carrying on, so one pass finds them all:
//!
//! 1. [`tools`]: `tools.yaml` (read first: agents' `tools` are checked against it);
//! 2. [`agent`]: each `agents/*.md` on its own, resources inlined, prompt
//!    body converted and checked ([`template`]);
//! 3. project-wide: duplicate ids, `wait_for.agents` naming real agents,
//!    documents nobody creates, dependency cycles ([`workflow::dependency_layers`]);
//! 4. flows: `workflow.yaml`, or the derived `default` flow ([`workflow`]).
//!
//! [`runtime_file`] reads `runtime.yaml` separately (it is not part of the bundle).
//!
//! # Decisions where SPEC 1.1 is open
//! - **Format 2.0** is detected when any of [`agent::V2_ONLY_FIELDS`] is
//!   present: `tools`, `memory_scope`, `wait_for`, `reads`, `updates`,
//!   `parallel`, `sequence`, `timeout`, `retry_count`, `error_handling`,
//!   `llm`, `output_schema`. Format 1.0 has `id`, `description`, `persona`,
//!   `tasks`, `checklists`, `templates`, `commands`, `creates`, `requires`.
//!   `format_version: 1.0` together with a 2.0 field is an error.
//! - **Persona**: a string that is one word and names a file in `personas/`
//!   (`.md`, `.yaml`, `.yml`, `.txt`, extension optional) loads that file —
//!   YAML files hold a persona map, others free text; a one-word name
//!   *with* such an extension that does not exist is an error; any other
//!   string is the persona text (warning above 200 characters).
//! - **output_schema**: an inline map, or a file name looked up in `data/`
//!   then `agents/` (`.json`, `.yaml`, `.yml`, extension optional); either
//!   way it must be a JSON object.
//! - **commands**: a list of `*name` strings or one-key maps
//!   `{"*name": description}`, or a map `*name: description`.
//! - **Document names** in `creates` / `requires` / `reads` / `updates` /
//!   `wait_for.docs` follow the document-id rule of SPEC 5, so they are
//!   always safe file names.
//! - **sequence** steps: `step` (unique name) and `action` are required;
//!   `condition` (a Jinja expression) applies to every action; `template`
//!   to `llm_call` (default: the agent's body), `create_document` and
//!   `update_document`; `document` (default: the agent's first output) to
//!   the two document actions; `tool` (required, a known tool) to
//!   `tool_call`; `checklist` (required, one of the agent's checklists) to
//!   `checklist`. Step templates and conditions see the prompt variables
//!   plus `steps` (earlier steps' outputs by step name). A field that does
//!   not apply to the action is an error.
//! - Numbers: `timeout` 1–86400 s, `retry_count` 0–100, `llm.temperature`
//!   0–2, `llm.max_tokens` ≥ 1.

pub(crate) mod agent;
pub(crate) mod ca_file;
pub(crate) mod fields;
pub(crate) mod mcp;
pub(crate) mod runtime_file;
pub(crate) mod template;
pub(crate) mod tools;
pub(crate) mod workflow;

use crate::ProjectParts;
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::{self, SourceSnapshot};
use agent::{AgentContext, ParsedAgent};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use workflow::AgentIndex;

pub use runtime_file::parse_runtime;
pub(crate) use runtime_file::read_runtime;

/// Files with a near-miss name that would otherwise be silently ignored.
const MISNAMED: [(&str, &str); 4] = [
    ("workflow.yml", "workflow.yaml"),
    ("tools.yml", "tools.yaml"),
    ("runtime.yml", "runtime.yaml"),
    ("workflows.yaml", "workflow.yaml"),
];

/// Agent files of a preprocessing source directory (`agents/*.md`), sorted.
pub(crate) fn agent_files(files: &SourceSnapshot) -> Vec<String> {
    files
        .list_files("agents")
        .into_iter()
        .filter(|name| name.ends_with(".md"))
        .map(|name| sourcefs::join_rel("agents", &name))
        .collect()
}

/// Reads a preprocessing-layout source directory from its snapshot;
/// with `previews`, every agent's prompt preview is rendered from the
/// parse that checks its template ([`ProjectParts::previews`]).
pub(crate) fn read(
    files: &SourceSnapshot,
    previews: bool,
    diags: &mut Diagnostics,
) -> ProjectParts {
    for (wrong, right) in MISNAMED {
        if files.is_file(wrong) {
            diags
                .warning(
                    "ignored-file",
                    wrong,
                    Pos::new(1, 1),
                    format!("{wrong} is not read"),
                )
                .hint = Some(format!("did you mean `{right}`?"));
        }
    }
    let tools = match read_optional(files, "tools.yaml", diags) {
        Some(text) => tools::parse_tools(&text, "tools.yaml", files, diags),
        None => BTreeMap::new(),
    };

    // Agent files are independent of each other: parse them on all cores,
    // then merge in file order so diagnostics and duplicate-id messages
    // come out the same however the work was split.
    let agent_files = agent_files(files);
    let read_one = |ctx: &mut AgentContext<'_>, file: &String| {
        let mut file_diags = Diagnostics::new();
        let parsed = match files.text(file) {
            Ok(text) => agent::parse_agent(ctx, file, text, &mut file_diags),
            Err(message) => {
                file_diags.error("io-error", file, Pos::new(1, 1), message);
                None
            }
        };
        (parsed, file_diags)
    };
    let read: Vec<_> = agent_files
        .par_iter()
        .map_init(
            || {
                let ctx = AgentContext::new(files, &tools);
                if previews { ctx.with_previews() } else { ctx }
            },
            read_one,
        )
        .collect();

    let mut parsed: Vec<ParsedAgent> = Vec::new();
    let mut unreadable: BTreeSet<String> = BTreeSet::new();
    let mut defined_in: HashMap<String, (String, Pos)> = HashMap::new();
    for (file, (agent, file_diags)) in agent_files.into_iter().zip(read) {
        diags.extend(file_diags);
        let Some(agent) = agent else {
            let stem = file.trim_start_matches("agents/").trim_end_matches(".md");
            unreadable.insert(stem.to_string());
            continue;
        };
        if let Some((first_file, first_pos)) = defined_in.get(&agent.spec.id) {
            diags
                .error(
                    "duplicate-id",
                    &file,
                    agent.id_pos,
                    format!(
                        "duplicate agent id `{}`: defined in {first_file} and {file}",
                        agent.spec.id
                    ),
                )
                .hint = Some(format!(
                "first defined at {first_file}:{}; agent ids must be unique",
                first_pos.line
            ));
            continue;
        }
        defined_in.insert(agent.spec.id.clone(), (file.clone(), agent.id_pos));
        parsed.push(agent);
    }

    let layers = workflow::dependency_layers(&parsed, &unreadable, diags);
    let mut rendered = BTreeMap::new();
    let mut agents = BTreeMap::new();
    for agent in parsed {
        if let Some(preview) = agent.preview {
            rendered.insert(agent.spec.id.clone(), preview);
        }
        agents.insert(agent.spec.id.clone(), agent.spec);
    }
    let flows = match read_optional(files, "workflow.yaml", diags) {
        Some(text) => {
            let index = AgentIndex {
                agents: &agents,
                unreadable: &unreadable,
            };
            workflow::parse_workflow(&text, "workflow.yaml", index, diags)
        }
        None => layers
            .filter(|layers| !layers.is_empty())
            .map(|layers| {
                let flow = workflow::derived_flow(layers);
                BTreeMap::from([(flow.name.clone(), flow)])
            })
            .unwrap_or_default(),
    };
    ProjectParts {
        agents,
        flows,
        tools,
        previews: rendered,
    }
}

/// The text of an optional top-level file, or `None` when it is absent
/// (or unreadable, which is reported).
fn read_optional(files: &SourceSnapshot, file: &str, diags: &mut Diagnostics) -> Option<String> {
    if !files.is_file(file) {
        return None;
    }
    match files.text(file) {
        Ok(text) => Some(text.to_string()),
        Err(message) => {
            diags.error("io-error", file, Pos::new(1, 1), message);
            None
        }
    }
}

#[cfg(test)]
mod props;
