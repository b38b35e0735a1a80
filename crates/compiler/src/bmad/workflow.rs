//! BMAD v4 workflow files (`workflows/*.yaml`) → flows.
//!
//! Real files keep their steps in different places: `workflow.sequence`,
//! any `workflow.<name>_sequence`, `workflow.phases.<phase>`, or a top-level
//! `steps` list with no `workflow` wrapper. Every list becomes one flow (see
//! the naming rules in [`crate::bmad`]). Entries are loose: `agent:
//! analyst/pm`, `agent: various`, named entries with no agent
//! (`- project_setup_guidance: {action: …}`), documents with remarks
//! (`v0_prompt (optional)`), preconditions that are not documents
//! (`requires: all_artifacts_in_project`). Each entry becomes a step; what is
//! not a document contract or an agent is kept in the step's metadata.

use super::packs::{AgentIndex, Pack};
use super::{YAML_FILES, for_each_file, node_text, parse_yaml_lenient, sanitize_name};
use crate::ProjectParts;
use crate::bundle::{FlowSpec, StepSpec};
use crate::diag::{Diagnostics, Pos, did_you_mean};
use crate::sourcefs::{SourceSnapshot, join_rel};
use crate::yaml::{Key, Node, Value};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// Loop guard per step (SPEC 1.2 default).
pub const DEFAULT_MAX_VISITS: u32 = 10;
/// Longest document id (SPEC 5).
const MAX_DOC_NAME: usize = 200;

/// Step keys kept as metadata without a warning (all seen in published packs).
const STEP_METADATA_KEYS: [&str; 16] = [
    "condition",
    "optional_steps",
    "repeats",
    "notes",
    "validates",
    "uses",
    "action",
    "optional",
    "step",
    "duration",
    "reviews",
    "implements",
    "description",
    "name",
    "title",
    "id",
];
/// Step keys that carry the agent or the document contract.
const STEP_CONTRACT_KEYS: [&str; 6] =
    ["agent", "creates", "output", "requires", "input", "updates"];
/// `agent:` values meaning "whoever is needed": a human step, no warning.
const PLACEHOLDER_AGENTS: [&str; 7] =
    ["various", "any", "all", "user", "human", "team", "multiple"];

/// What a workflow file holds, before agent names are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDraft {
    /// `workflow.id`, else the file stem (sanitised).
    pub id: String,
    pub description: String,
    /// Every step list, in file order.
    pub lists: Vec<StepList>,
    /// The workflow's other fields, kept as flow metadata.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// One list of step entries and the key it was found under.
#[derive(Debug, Clone, PartialEq)]
pub struct StepList {
    /// `sequence`, `prototype_sequence`, a phase name, or `steps`.
    pub key: String,
    pub entries: Vec<Node>,
}

/// Reads `workflows/*.yaml` of one pack into `parts.flows`.
pub fn read_pack_workflows(
    files: &SourceSnapshot,
    pack: &Pack,
    pack_no: usize,
    multi: bool,
    index: &AgentIndex,
    parts: &mut ProjectParts,
    diags: &mut Diagnostics,
) {
    let dir = join_rel(&pack.dir, "workflows");
    let skipped = "not a YAML file: ignored (BMAD workflows are workflows/*.yaml)";
    for_each_file(files, &dir, YAML_FILES, skipped, diags, |file, diags| {
        let rel = file.rel;
        let Some(draft) = parse_workflow(file.text, &rel, diags) else {
            return;
        };
        let several = draft.lists.len() > 1;
        for list in draft.lists {
            let base = if several {
                format!("{}.{}", draft.id, list.key)
            } else {
                draft.id.clone()
            };
            let name = pack.qualify(&base, multi);
            let first_pos = list.entries.first().map_or(Pos::new(1, 1), |e| e.pos);
            if let Some(existing) = parts.flows.get(&name) {
                diags.warning(
                    "bmad-duplicate-flow",
                    &rel,
                    first_pos,
                    format!(
                        "flow `{name}` is already defined by {}: this list is skipped",
                        existing.source
                    ),
                );
                continue;
            }
            let resolve = |agent: &str| index.resolve(agent, pack_no).map(str::to_string);
            let steps = build_steps(&list.entries, &rel, &resolve, diags);
            if steps.is_empty() {
                diags.warning(
                    "bmad-empty-flow",
                    &rel,
                    first_pos,
                    format!("`{}` has no steps: no flow `{name}`", list.key),
                );
                continue;
            }
            parts.flows.insert(
                name.clone(),
                FlowSpec {
                    name,
                    description: draft.description.clone(),
                    source: rel.clone(),
                    steps,
                    max_visits: DEFAULT_MAX_VISITS,
                    metadata: draft.metadata.clone(),
                },
            );
        }
    });
}

/// Reads a workflow file's id, description and step lists. `None` (with a
/// warning) when it is not YAML or holds no step list.
pub fn parse_workflow(text: &str, rel: &str, diags: &mut Diagnostics) -> Option<WorkflowDraft> {
    let Some(root) = parse_yaml_lenient(text, rel, 0, diags) else {
        diags.warning(
            "bmad-workflow",
            rel,
            Pos::new(1, 1),
            "workflow is not valid YAML: skipped",
        );
        return None;
    };
    let workflow = root
        .get("workflow")
        .filter(|w| w.as_map().is_some())
        .unwrap_or(&root);
    let Some(entries) = workflow.as_map() else {
        diags.warning(
            "bmad-workflow",
            rel,
            root.pos,
            format!(
                "a workflow file should be a map, found {}: skipped",
                root.type_name()
            ),
        );
        return None;
    };
    let id = workflow_id(workflow, &root, rel, diags);
    let description = ["description", "name"]
        .iter()
        .find_map(|k| {
            workflow
                .get(k)
                .map(node_text)
                .filter(|t| !t.trim().is_empty())
        })
        .unwrap_or_default();
    let mut lists: Vec<StepList> = Vec::new();
    let mut metadata = BTreeMap::new();
    for (key, value) in entries {
        let is_list_key =
            key.name == "sequence" || key.name.ends_with("_sequence") || key.name == "steps";
        if !is_list_key && !matches!(key.name.as_str(), "phases" | "id" | "name" | "description") {
            metadata.insert(key.name.clone(), value.to_json());
        }
        if is_list_key {
            match &value.value {
                Value::Seq(items) => push_list(&mut lists, &key.name, items),
                Value::Null => {}
                _ => {
                    diags.warning(
                        "bmad-workflow",
                        rel,
                        key.pos,
                        format!(
                            "`{}` should be a list of steps, found {}: ignored",
                            key.name,
                            value.type_name()
                        ),
                    );
                }
            }
        } else if key.name == "phases" {
            read_phases(value, rel, diags, &mut lists);
        }
    }
    if lists.is_empty() {
        diags.warning(
            "bmad-workflow",
            rel,
            root.pos,
            "no step list found (looked for workflow.sequence, workflow.<name>_sequence, workflow.phases, steps): skipped",
        );
        return None;
    }
    Some(WorkflowDraft {
        id,
        description,
        lists,
        metadata,
    })
}

fn workflow_id(workflow: &Node, root: &Node, rel: &str, diags: &mut Diagnostics) -> String {
    let stem = rel.rsplit('/').next().unwrap_or(rel);
    let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
    let written = workflow
        .get("id")
        .or_else(|| root.get("id"))
        .and_then(|n| n.scalar_text().map(|t| (t.trim().to_string(), n.pos)))
        .filter(|(t, _)| !t.is_empty());
    match written {
        Some((id, pos)) => super::valid_name_or_repaired(&id, "workflow id", rel, pos, diags),
        None => sanitize_name(stem),
    }
}

/// `phases:` as a map of phase → list (or → `{steps: [...]}`), or a list of
/// `{name, steps}` maps; any other list is taken as one list of steps.
fn read_phases(node: &Node, rel: &str, diags: &mut Diagnostics, lists: &mut Vec<StepList>) {
    let steps_of = |n: &Node| -> Option<Vec<Node>> {
        n.as_seq()
            .or_else(|| {
                n.get("steps")
                    .or_else(|| n.get("sequence"))
                    .and_then(Node::as_seq)
            })
            .map(<[Node]>::to_vec)
    };
    match &node.value {
        Value::Map(phases) => {
            for (key, value) in phases {
                match steps_of(value) {
                    Some(items) => push_list(lists, &sanitize_name(&key.name), &items),
                    None => {
                        diags.warning(
                            "bmad-workflow",
                            rel,
                            key.pos,
                            format!("phase `{}` holds no list of steps: ignored", key.name),
                        );
                    }
                }
            }
        }
        Value::Seq(items) => {
            let named: Option<Vec<(String, Vec<Node>)>> = items
                .iter()
                .map(|item| {
                    let name = ["name", "phase", "id"]
                        .iter()
                        .find_map(|k| item.get(k).and_then(Node::scalar_text))?;
                    Some((name, steps_of(item)?))
                })
                .collect();
            match named {
                Some(phases) => {
                    for (name, steps) in phases {
                        push_list(lists, &sanitize_name(&name), &steps);
                    }
                }
                None => push_list(lists, "phases", items),
            }
        }
        _ => {
            diags.warning(
                "bmad-workflow",
                rel,
                node.pos,
                format!(
                    "`phases` should be a map of phase → steps, found {}: ignored",
                    node.type_name()
                ),
            );
        }
    }
}

/// Adds a list under a key that is unique in the file.
fn push_list(lists: &mut Vec<StepList>, key: &str, entries: &[Node]) {
    let mut unique = key.to_string();
    let mut n = 2;
    while lists.iter().any(|l| l.key == unique) {
        unique = format!("{key}-{n}");
        n += 1;
    }
    lists.push(StepList {
        key: unique,
        entries: entries.to_vec(),
    });
}

/// One step per entry (null entries are skipped), ids `step-<n>`.
/// `resolve` maps an agent name as written to its bundle id.
pub fn build_steps(
    entries: &[Node],
    rel: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Vec<StepSpec> {
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let mut steps = Vec::new();
    for entry in entries.iter().filter(|e| !e.is_null()) {
        let id = format!("step-{}", steps.len() + 1);
        let step = build_step(id, entry, rel, resolve, &mut produced, diags);
        steps.push(step);
    }
    steps
}

fn build_step(
    id: String,
    entry: &Node,
    rel: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
    produced: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) -> StepSpec {
    let mut metadata: BTreeMap<String, Json> = BTreeMap::new();
    let fields = step_fields(entry, &mut metadata);
    let mut agents = Vec::new();
    let mut creates = Vec::new();
    let mut requires_written = Vec::new();
    let mut updates_written = Vec::new();
    for (key, value) in &fields {
        match key.name.as_str() {
            "agent" => agents = step_agents(value, rel, resolve, diags, &mut metadata),
            "creates" | "output" => {
                creates.extend(doc_names(value, "creates", rel, diags, &mut metadata));
            }
            "requires" | "input" => {
                requires_written.extend(doc_names(value, "requires", rel, diags, &mut metadata));
            }
            "updates" => {
                updates_written.extend(doc_names(value, "updates", rel, diags, &mut metadata))
            }
            name if STEP_METADATA_KEYS.contains(&name) => {
                metadata.insert(key.name.clone(), value.to_json());
            }
            _ => {
                let known = STEP_CONTRACT_KEYS
                    .iter()
                    .chain(STEP_METADATA_KEYS.iter())
                    .copied();
                let diag = diags.warning(
                    "bmad-unknown-key",
                    rel,
                    key.pos,
                    format!("unknown step key `{}`: kept as metadata", key.name),
                );
                if let Some(close) = did_you_mean(&key.name, known) {
                    diag.hint = Some(format!("did you mean `{close}`?"));
                }
                metadata.insert(key.name.clone(), value.to_json());
            }
        }
    }
    let requires = split_documents(requires_written, "requires", produced, &mut metadata);
    let updates = split_documents(updates_written, "updates", produced, &mut metadata);
    produced.extend(creates.iter().cloned());
    produced.extend(updates.iter().cloned());
    StepSpec {
        id,
        agents,
        next: BTreeMap::new(),
        creates: dedup(creates),
        requires: dedup(requires),
        updates: dedup(updates),
        gate: None,
        metadata,
    }
}

/// The entry's fields. A named entry with no agent (`- workflow_end: ""` with
/// siblings, or `- project_setup_guidance: {action: …}`) has its name moved
/// to metadata `step` and its nested map merged in. A scalar entry is a
/// human step named by its text.
fn step_fields(entry: &Node, metadata: &mut BTreeMap<String, Json>) -> Vec<(Key, Node)> {
    let Some(map) = entry.as_map() else {
        metadata.insert("step".to_string(), entry.to_json());
        return Vec::new();
    };
    let mut fields = map.to_vec();
    let has_agent = fields.iter().any(|(k, _)| k.name == "agent");
    let first_is_name = fields.first().is_some_and(|(k, _)| {
        !STEP_CONTRACT_KEYS.contains(&k.name.as_str())
            && !STEP_METADATA_KEYS.contains(&k.name.as_str())
    });
    if !has_agent && first_is_name {
        let (key, value) = fields.remove(0);
        metadata.insert("step".to_string(), Json::String(key.name));
        match &value.value {
            Value::Map(inner) => fields.splice(0..0, inner.iter().cloned()).for_each(drop),
            Value::Null => {}
            Value::Str(s) if s.trim().is_empty() => {}
            _ => {
                metadata.insert("step_value".to_string(), value.to_json());
            }
        }
    }
    fields
}

/// The agent(s) a step runs: the named agent, or the first of `a/b`,
/// `a OR b` that exists; none (a human step) for `various` and unknown names.
fn step_agents(
    value: &Node,
    rel: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
    metadata: &mut BTreeMap<String, Json>,
) -> Vec<String> {
    let written = match &value.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(Node::scalar_text)
            .collect::<Vec<_>>()
            .join("/"),
        Value::Map(_) | Value::Null => {
            diags.warning(
                "bmad-step-agent",
                rel,
                value.pos,
                format!(
                    "`agent` should name an agent, found {}: human step",
                    value.type_name()
                ),
            );
            metadata.insert("agent".to_string(), value.to_json());
            return Vec::new();
        }
        _ => value.scalar_text().unwrap_or_default(),
    };
    let written = written.trim().to_string();
    if let Some(id) = resolve(&written) {
        if id != written {
            metadata.insert("agent".to_string(), Json::String(written));
        }
        return vec![id];
    }
    metadata.insert("agent".to_string(), Json::String(written.clone()));
    let alternatives = agent_alternatives(&written);
    if alternatives.len() > 1 {
        metadata.insert(
            "agent_alternatives".to_string(),
            Json::Array(
                alternatives
                    .iter()
                    .map(|a| Json::String(a.clone()))
                    .collect(),
            ),
        );
    }
    if let Some(id) = alternatives.iter().find_map(|a| resolve(a)) {
        return vec![id];
    }
    let unknown: Vec<&String> = alternatives
        .iter()
        .filter(|a| !PLACEHOLDER_AGENTS.contains(&a.to_ascii_lowercase().as_str()))
        .collect();
    if !unknown.is_empty() {
        diags.warning(
            "bmad-unknown-agent",
            rel,
            value.pos,
            format!("unknown agent `{written}`: the step is kept as a human step"),
        );
    }
    Vec::new()
}

/// `analyst/pm`, `dev OR qa`, `a | b`, `a, b` → the names in order.
fn agent_alternatives(written: &str) -> Vec<String> {
    let mut text = written.to_string();
    for sep in [" OR ", " or ", "|", ","] {
        text = text.replace(sep, "/");
    }
    text.split('/')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Document names of a `creates` / `requires` / `updates` value: a string
/// (comma-separated allowed) or a list. Remarks in parentheses go to
/// `<field>_qualifiers`; names that are not document ids are reduced to one
/// (warning; the original under `<field>_as_written`).
fn doc_names(
    node: &Node,
    field: &str,
    rel: &str,
    diags: &mut Diagnostics,
    metadata: &mut BTreeMap<String, Json>,
) -> Vec<String> {
    let pieces: Vec<String> = match &node.value {
        Value::Null => Vec::new(),
        Value::Seq(items) => items
            .iter()
            .flat_map(|item| match item.scalar_text() {
                Some(text) => split_commas(&text),
                None => {
                    diags.warning(
                        "bmad-document",
                        rel,
                        item.pos,
                        format!(
                            "`{field}` entry should be a document name, found {}: kept as metadata",
                            item.type_name()
                        ),
                    );
                    push_meta(metadata, &format!("{field}_other"), item.to_json());
                    Vec::new()
                }
            })
            .collect(),
        Value::Map(_) => {
            diags.warning(
                "bmad-document",
                rel,
                node.pos,
                format!(
                    "`{field}` should be a document name or a list, found a map: kept as metadata"
                ),
            );
            push_meta(metadata, &format!("{field}_other"), node.to_json());
            Vec::new()
        }
        _ => split_commas(&node.scalar_text().unwrap_or_default()),
    };
    let mut names = Vec::new();
    for piece in pieces {
        let (name, qualifier) = match piece.split_once('(') {
            Some((name, rest)) => (name.trim(), Some(rest.trim().trim_end_matches(')').trim())),
            None => (piece.as_str(), None),
        };
        if name.is_empty() {
            continue;
        }
        let Some(doc) = document_id(name) else {
            diags.warning(
                "bmad-document",
                rel,
                node.pos,
                format!("`{name}` in `{field}` cannot be made a document name: kept as metadata"),
            );
            push_meta(
                metadata,
                &format!("{field}_other"),
                Json::String(name.to_string()),
            );
            continue;
        };
        if doc != name {
            diags.warning(
                "bmad-document",
                rel,
                node.pos,
                format!("`{name}` in `{field}` is not a valid document name: using `{doc}`"),
            );
            push_meta(
                metadata,
                &format!("{field}_as_written"),
                Json::String(name.to_string()),
            );
        }
        if let Some(q) = qualifier.filter(|q| !q.is_empty()) {
            let entry = metadata
                .entry(format!("{field}_qualifiers"))
                .or_insert_with(|| Json::Object(serde_json::Map::new()));
            if let Json::Object(map) = entry {
                map.insert(doc.clone(), Json::String(q.to_string()));
            }
        }
        names.push(doc);
    }
    names
}

fn split_commas(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `name` as a document id (`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`): unchanged
/// when valid; else its last path segment with other characters turned into
/// `-`. `None` when nothing usable is left.
fn document_id(name: &str) -> Option<String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let is_valid = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(valid_char)
            && s.len() <= MAX_DOC_NAME
            && !s.contains("..")
    };
    if is_valid(name) {
        return Some(name.to_string());
    }
    let segment = name
        .trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("");
    let mut out = String::new();
    for c in segment.chars() {
        let c = if valid_char(c) { c } else { '-' };
        if (c == '-' || c == '.') && (out.ends_with('-') || out.ends_with('.')) {
            continue;
        }
        out.push(c);
    }
    let out: String = out
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .trim_end_matches('-')
        .chars()
        .take(MAX_DOC_NAME)
        .collect();
    is_valid(&out).then_some(out)
}

/// Splits `requires`/`updates` names into documents (they look like files or
/// an earlier step produces them) and preconditions kept as `<field>_other`.
fn split_documents(
    names: Vec<String>,
    field: &str,
    produced: &BTreeSet<String>,
    metadata: &mut BTreeMap<String, Json>,
) -> Vec<String> {
    let mut docs = Vec::new();
    for name in names {
        if looks_like_file(&name) || produced.contains(&name) {
            docs.push(name);
        } else {
            push_meta(metadata, &format!("{field}_other"), Json::String(name));
        }
    }
    docs
}

/// `prd.md`, `front-end-spec.yaml`: a stem and an extension of letters/digits.
fn looks_like_file(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && !ext.is_empty()
            && ext.len() <= 5
            && ext.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

fn push_meta(metadata: &mut BTreeMap<String, Json>, key: &str, value: Json) {
    let entry = metadata
        .entry(key.to_string())
        .or_insert_with(|| Json::Array(Vec::new()));
    if let Json::Array(items) = entry {
        items.push(value);
    }
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(name: &str) -> Option<String> {
        ["analyst", "pm", "architect", "po", "sm"]
            .contains(&name)
            .then(|| name.to_string())
    }

    fn flows(text: &str) -> (Vec<(String, Vec<StepSpec>)>, Diagnostics) {
        let mut d = Diagnostics::new();
        let draft = parse_workflow(text, "workflows/w.yaml", &mut d);
        let lists = draft
            .map(|w| {
                w.lists
                    .into_iter()
                    .map(|l| {
                        (
                            l.key,
                            build_steps(&l.entries, "workflows/w.yaml", &resolve, &mut d),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (lists, d)
    }

    #[test]
    fn sequence_with_loose_values() {
        let text = r#"
workflow:
  id: greenfield
  sequence:
    - agent: analyst
      creates: project-brief.md
      optional_steps: [brainstorm]
      notes: start here
    - agent: pm
      creates: prd.md
      requires: project-brief.md
    - agent: pm
      creates: v0_prompt (optional)
      requires: [prd.md, all_artifacts_in_project]
      condition: wants_ui
    - agent: analyst/pm
      updates: prd.md (if needed)
    - agent: various
      updates: any_flagged_documents
    - project_setup_guidance:
        action: guide_setup
        condition: has_ui
    - workflow_end: ""
      action: done
    - agent: po OR sm
      validates: all_artifacts
      uses: po-checklist
      repeats: for_each_epic
      input: prd.md, story.md
    - agent: wizard
      creates: prototype-stories/
      flavour: odd
"#;
        let (lists, d) = flows(text);
        assert!(!d.has_errors());
        assert_eq!(lists.len(), 1);
        let steps = &lists[0].1;
        assert_eq!(steps.len(), 9);
        assert_eq!(steps[0].id, "step-1");
        assert_eq!(steps[0].agents, ["analyst"]);
        assert_eq!(steps[0].creates, ["project-brief.md"]);
        assert_eq!(steps[0].metadata["notes"], "start here");
        assert_eq!(steps[2].creates, ["v0_prompt"]);
        assert_eq!(
            steps[2].metadata["creates_qualifiers"]["v0_prompt"],
            "optional"
        );
        assert_eq!(steps[2].requires, ["prd.md"]);
        assert_eq!(
            steps[2].metadata["requires_other"][0],
            "all_artifacts_in_project"
        );
        assert_eq!(steps[3].agents, ["analyst"]);
        assert_eq!(steps[3].metadata["agent"], "analyst/pm");
        assert_eq!(steps[3].updates, ["prd.md"]);
        assert_eq!(
            steps[3].metadata["updates_qualifiers"]["prd.md"],
            "if needed"
        );
        assert!(steps[4].agents.is_empty());
        assert_eq!(steps[4].metadata["agent"], "various");
        assert_eq!(
            steps[4].metadata["updates_other"][0],
            "any_flagged_documents"
        );
        assert!(steps[5].agents.is_empty());
        assert_eq!(steps[5].metadata["step"], "project_setup_guidance");
        assert_eq!(steps[5].metadata["action"], "guide_setup");
        assert_eq!(steps[6].metadata["step"], "workflow_end");
        assert_eq!(steps[7].agents, ["po"]);
        assert_eq!(steps[7].requires, ["prd.md", "story.md"]);
        assert_eq!(steps[7].metadata["validates"], "all_artifacts");
        assert!(steps[8].agents.is_empty());
        assert_eq!(steps[8].creates, ["prototype-stories"]);
        assert_eq!(steps[8].metadata["flavour"], "odd");
        let codes: Vec<&str> = d.iter().map(|x| x.code).collect();
        assert!(codes.contains(&"bmad-unknown-agent"), "{codes:?}");
        assert!(codes.contains(&"bmad-unknown-key"), "{codes:?}");
        assert!(codes.contains(&"bmad-document"), "{codes:?}");
        // `various` is not an unknown agent.
        assert_eq!(
            d.iter().filter(|x| x.code == "bmad-unknown-agent").count(),
            1
        );
    }

    #[test]
    fn requires_created_earlier_is_a_document() {
        let text = "workflow:\n  sequence:\n    - agent: po\n      creates: sharded_docs\n    - agent: sm\n      requires: sharded_docs\n";
        let (lists, _) = flows(text);
        assert_eq!(lists[0].1[1].requires, ["sharded_docs"]);
    }

    #[test]
    fn every_list_shape() {
        let text = r#"
workflow:
  id: game
  full_game_sequence:
    - agent: analyst
  prototype_sequence:
    - step: scope
      action: assess
    - agent: pm
  phases:
    design:
      - agent: architect
    build:
      steps:
        - agent: sm
  workflow_end: {action: finish}
"#;
        let (lists, d) = flows(text);
        let keys: Vec<&str> = lists.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "full_game_sequence",
                "prototype_sequence",
                "design",
                "build"
            ]
        );
        assert_eq!(lists[1].1[0].metadata["step"], "scope");
        assert!(lists[1].1[0].agents.is_empty());
        assert!(d.is_empty(), "{d:?}");

        let (lists, _) = flows("steps:\n  - agent: pm\n  - agent: po\n");
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0].0, "steps");

        let (lists, _) = flows(
            "workflow:\n  phases:\n    - name: one\n      steps: [{agent: pm}]\n    - name: two\n      steps: [{agent: po}]\n",
        );
        let keys: Vec<&str> = lists.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["one", "two"]);
    }

    #[test]
    fn no_list_or_bad_yaml_is_a_warning() {
        let (lists, d) = flows("workflow:\n  id: x\n  story_flow: [a]\n");
        assert!(lists.is_empty());
        assert_eq!(d.warning_count(), 1);
        let (lists, d) = flows("workflow: [\n");
        assert!(lists.is_empty());
        assert!(!d.has_errors());
    }

    #[test]
    fn document_ids() {
        assert_eq!(document_id("prd.md").as_deref(), Some("prd.md"));
        assert_eq!(document_id("docs/prd.md").as_deref(), Some("prd.md"));
        assert_eq!(
            document_id("prototype-stories/").as_deref(),
            Some("prototype-stories")
        );
        assert_eq!(
            document_id("any flagged docs").as_deref(),
            Some("any-flagged-docs")
        );
        assert_eq!(document_id("../.."), None);
        assert!(looks_like_file("prd.md"));
        assert!(!looks_like_file("all_artifacts_in_project"));
    }
}
