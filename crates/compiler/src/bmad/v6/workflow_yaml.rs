//! `workflow.yaml` workflows → one-step flows (SPEC 1.7, "`workflow.yaml`
//! flows"): the step's prompt holds the resolved keys, the instructions,
//! the template and the checklist, each inlined verbatim after variable
//! substitution. `input_file_patterns` become the step's `reads_matching`
//! metadata (the document-name glob of each path: its file part, or a
//! sharded document's folder); the main document comes from
//! `default_output_file`.

use super::layout::parent;
use super::paths::Tree;
use super::steps::{RUNTIME_NOTE, doc_name, waits};
use super::vars::Vars;
use crate::bmad::{node_text, parse_yaml_lenient};
use crate::bundle::StepSpec;
use crate::diag::{Diagnostics, Pos};
use crate::yaml::Node;
use serde_json::json;
use std::collections::BTreeMap;

/// Keys whose value is a file inlined into the prompt, with its heading.
const INLINED: [(&str, &str); 4] = [
    ("instructions", "Instructions"),
    ("template", "Template"),
    ("validation", "Checklist"),
    ("checklist", "Checklist"),
];

/// A `workflow.yaml`, read.
pub struct YamlWorkflow {
    /// `name` (else the folder name).
    pub name: String,
    pub description: String,
    pub step: StepSpec,
    pub main_document: String,
    /// Files inlined (they are not resources too).
    pub used: Vec<String>,
    /// The other keys, kept as flow metadata.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Reads `rel`; `module_vars` are the module's layers.
pub fn read(
    tree: &Tree<'_>,
    rel: &str,
    text: &str,
    module_vars: &Vars,
    diags: &mut Diagnostics,
) -> Option<YamlWorkflow> {
    let root = parse_yaml_lenient(text, rel, 0, diags)?;
    let Some(entries) = root.as_map() else {
        diags.warning(
            "bmad-workflow",
            rel,
            root.pos,
            "not a map: not read as a workflow",
        );
        return None;
    };
    let dir = parent(rel);
    let mut vars = module_vars.clone();
    vars.set("installed_path", dir);
    // Flow layer: every scalar key, and those of a `variables:` map,
    // `{config_source}:k` read from the config.
    let variables = root
        .get("variables")
        .and_then(Node::as_map)
        .unwrap_or_default();
    let mut keys: Vec<(String, String)> = Vec::new();
    for (key, value) in entries.iter().chain(variables) {
        if let Some(raw) = value.scalar_text() {
            // `date: system-generated` is filled per run, an empty value
            // (`story_title: ""`) when the workflow runs, and a config key
            // no layer sets is the model's to find: `{date}`,
            // `{{story_title}}` and `{output_folder}` stay as written.
            let known = vars
                .config_value(&raw)
                .filter(|value| raw != "system-generated" && !value.is_empty());
            if let Some(value) = &known {
                vars.set(&key.name, value.clone());
            }
            keys.push((key.name.clone(), known.unwrap_or(raw)));
        }
    }
    // Once every key is known, whatever order they came in: a key may name
    // one of `variables:` (`default_output_file: '{status_file}'`).
    let resolved: Vec<(String, String)> = keys
        .into_iter()
        .map(|(key, value)| (key, vars.substitute(&value)))
        .collect();
    if let Some((key, value)) = entries.iter().find(|(k, _)| k.name == "config_source") {
        check_config_source(tree, value, rel, key.pos, diags);
    }
    let name = root
        .get("name")
        .and_then(Node::scalar_text)
        .unwrap_or_else(|| super::layout::file_name(dir).to_string());
    let description = root.get("description").map(node_text).unwrap_or_default();

    let mut prompt = format!("{RUNTIME_NOTE}\n\n## Workflow `{name}` ({rel})\n");
    for (key, value) in &resolved {
        prompt.push_str(&format!("- {key}: {value}\n"));
    }
    let mut used = Vec::new();
    let mut all_text = String::new();
    for (key, heading) in INLINED {
        let Some((k, node)) = entries.iter().find(|(k, _)| k.name == key) else {
            continue;
        };
        let Some(raw) = node
            .scalar_text()
            .filter(|v| v != "false" && !v.trim().is_empty())
        else {
            continue;
        };
        let path = tree.resolve(&raw, dir, &vars);
        match tree.files.text(&path) {
            Ok(content) => {
                prompt.push_str(&format!(
                    "\n## {heading} ({path})\n\n{}\n",
                    vars.substitute(content.trim())
                ));
                all_text.push_str(content);
                used.push(path);
            }
            Err(_) => {
                diags.warning(
                    "bmad-missing-file",
                    rel,
                    k.pos,
                    format!("`{key}` names `{raw}`, which is no file: left out"),
                );
            }
        }
    }
    let mut step_meta = BTreeMap::new();
    if let Some(patterns) = root.get("input_file_patterns") {
        let globs = file_globs(patterns);
        if !globs.is_empty() {
            step_meta.insert("reads_matching".to_string(), json!(globs));
        }
    }
    let waits = waits(&all_text);
    if !waits.is_empty() {
        step_meta.insert("waits".to_string(), json!(waits));
    }
    step_meta.insert("source".to_string(), json!(rel));
    step_meta.insert("prompt".to_string(), json!(prompt));
    let main_document = resolved
        .iter()
        .find(|(key, _)| key == "default_output_file")
        .and_then(|(_, value)| doc_name(value))
        .unwrap_or_else(|| crate::bmad::sanitize_name(&name));
    let mut metadata = BTreeMap::new();
    for (key, value) in entries {
        if !["name", "description"].contains(&key.name.as_str()) {
            metadata.insert(key.name.clone(), value.to_json());
        }
    }
    Some(YamlWorkflow {
        step: StepSpec {
            id: crate::bmad::sanitize_name(&name),
            agents: Vec::new(),
            next: BTreeMap::new(),
            creates: vec![main_document.clone()],
            requires: Vec::new(),
            updates: Vec::new(),
            gate: None,
            metadata: step_meta,
        },
        name,
        description,
        main_document,
        used,
        metadata,
    })
}

/// Warns when `config_source` names the config of a module the tree lacks.
fn check_config_source(
    tree: &Tree<'_>,
    value: &Node,
    rel: &str,
    pos: Pos,
    diags: &mut Diagnostics,
) {
    let Some(text) = value.scalar_text() else {
        return;
    };
    let module = text
        .split_once("_bmad/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_default();
    if !module.is_empty() && !tree.module_dirs.contains_key(module) {
        diags.warning(
            "bmad-config-source",
            rel,
            pos,
            format!("`config_source` names module `{module}`, which this tree does not have"),
        );
    }
}

/// Keys of an `input_file_patterns` entry whose values are not paths.
const NOT_PATHS: [&str; 2] = ["description", "load_strategy"];

/// The document-name glob of every path under `input_file_patterns`
/// (see [`document_glob`]), in order, once each.
fn file_globs(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match (n.as_map(), n.as_seq(), n.scalar_text()) {
            (Some(entries), _, _) => stack.extend(
                entries
                    .iter()
                    .rev()
                    .filter(|(k, _)| !NOT_PATHS.contains(&k.name.as_str()))
                    .map(|(_, v)| v),
            ),
            (_, Some(items), _) => stack.extend(items.iter().rev()),
            (_, _, Some(text)) => {
                if let Some(glob) = document_glob(&text)
                    && !out.contains(&glob)
                {
                    out.push(glob);
                }
            }
            _ => {}
        }
    }
    out
}

/// The glob of document names one input path stands for. Documents are
/// named by file ([`doc_name`]), so it is the path's file part, named the
/// same way (`*prd*` of `{output_folder}/*prd*.md`, `sprint-status-yaml`
/// of `…/sprint-status.yaml`) — unless the path is a sharded document,
/// whose shards sit in a folder named like the whole document: then it is
/// that folder (`*prd*` of `{output_folder}/*prd*/*.md` or of
/// `…/*epic*/index.md`, `prd` of `…/prd/*.md`). Placeholders left in it
/// match anything (`epic-{{epic_num}}.md` → `epic-*`). `None` for a path
/// that would match every document.
fn document_glob(path: &str) -> Option<String> {
    let path = path.trim();
    let (folders, file) = path.rsplit_once('/').unwrap_or(("", path));
    // Not a path at all (`required: true`, a note).
    if folders.is_empty() && !file.contains(['*', '.']) || file.contains(' ') {
        return None;
    }
    // Folders with a name: not a placeholder, not only wildcards (`**`).
    let named = |part: &&str| part.chars().any(|c| c != '*') && !part.starts_with('{');
    let mut folders = folders.rsplit('/').filter(named);
    let stem = file.split_once('.').map_or(file, |(stem, _)| stem);
    let shard = stem.chars().all(|c| c == '*') || stem == "index";
    let part = match folders.clone().find(|f| f.contains('*')) {
        Some(wild) => wild,
        None if shard => folders.next()?,
        None => file,
    };
    let glob = name_glob(part.strip_suffix(".md").unwrap_or(part));
    glob.chars().any(|c| c != '*' && c != '-').then_some(glob)
}

/// A file name with wildcards as a glob of document names: each `{x}` or
/// `{{x}}` a `*`, other characters as [`doc_name`] names them (anything
/// but letters, digits, `_` and `-` becomes one `-`). A `*` takes the `-`
/// beside it, as [`doc_name`] drops placeholders with nothing in their
/// place (`epic-{{n}}.md` names `epic`, which `epic*` matches).
fn name_glob(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    let mut rest = file;
    let push = |out: &mut String, c: char| match c {
        '*' => {
            while out.ends_with('-') {
                out.pop();
            }
            if !out.ends_with('*') {
                out.push('*');
            }
        }
        '-' if out.ends_with(['-', '*']) => {}
        c => out.push(c),
    };
    while let Some(c) = rest.chars().next() {
        let close = match c {
            '{' if rest.starts_with("{{") => rest.find("}}").map(|end| end + 2),
            '{' => rest.find('}').map(|end| end + 1),
            _ => None,
        };
        match close {
            Some(len) => {
                push(&mut out, '*');
                rest = &rest[len..];
            }
            None => {
                let named = c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*');
                push(&mut out, if named { c } else { '-' });
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::document_glob;

    #[test]
    fn input_paths_become_document_globs() {
        let cases = [
            ("{output_folder}/*prd*.md", Some("*prd*")),
            ("{output_folder}/tech-spec.md", Some("tech-spec")),
            (
                "{output_folder}/sprint-status.yaml",
                Some("sprint-status-yaml"),
            ),
            ("{output_folder}/*prd*/*.md", Some("*prd*")),
            ("{output_folder}/*epic*/index.md", Some("*epic*")),
            (
                "{output_folder}/*epic*/epic-{{epic_num}}.md",
                Some("*epic*"),
            ),
            ("{output_folder}/epic-{{epic_num}}.md", Some("epic*")),
            (
                "{output_folder}/epic-{{epic_num}}-retro-*.md",
                Some("epic*retro*"),
            ),
            ("{out}/**/epic-{{n}}-retro-*.md", Some("epic*retro*")),
            ("{output_folder}/prd/*.md", Some("prd")),
            (
                "{story_dir}/{{story_key}}.context.xml",
                Some("*context-xml"),
            ),
            ("{output_folder}/*.md", None),
            ("{output_folder}/index.md", None),
            ("*", None),
            ("true", None),
            ("Load the whole file", None),
        ];
        for (path, glob) in cases {
            assert_eq!(document_glob(path).as_deref(), glob, "{path}");
        }
    }
}
