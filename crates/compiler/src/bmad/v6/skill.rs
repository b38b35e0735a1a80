//! BMAD skills: folders holding a `SKILL.md` (SPEC 1.7). Each is read and
//! classified as an agent skill (`customize.toml` with `[agent]`), a
//! step-file skill (it, or the `workflow.md` it hands over to, names a
//! sibling `step-*.md`), a shim (`metadata.lifecycle: shim`), or a
//! single-file skill; [`super`] turns them into agents and flows.
//!
//! A skill's id is its front-matter `name` (the folder name when absent;
//! a mismatch warns and `name` wins). Two skills of one name are an error
//! naming both files, except in an installed project, where each tool
//! folder holds a copy: the first in sorted order is kept and a copy that
//! differs warns.

use super::agent::{
    AgentDraft, MenuItem, MenuTarget, cut_description, display_name, menu_code, persona, resource,
    split_bullets,
};
use super::config::{CORE, module_code};
use super::customize::{self, value_text};
use super::layout::{file_name, parent};
use super::markdown::{self, Markdown};
use super::paths::Tree;
use super::steps::first_named_step;
use super::vars::Vars;
use crate::diag::{Diagnostics, Pos};
use serde_json::json;
use std::collections::BTreeMap;
use toml::{Table, Value};

/// One skill, read.
pub struct Skill {
    pub name: String,
    /// The SKILL.md file.
    pub rel: String,
    pub dir: String,
    pub module: String,
    pub description: String,
    pub doc: Markdown,
    pub kind: SkillKind,
}

pub enum SkillKind {
    Agent(Box<AgentDraft>),
    /// Steps named by `doc` (SKILL.md or its `workflow.md`), read from `rel`.
    Steps {
        rel: String,
        doc: Markdown,
        first: (String, Pos),
    },
    /// A one-step flow: this text (already substituted) is its task.
    Single {
        rel: String,
        text: String,
    },
    /// Forwards to another skill: (target, intent).
    Shim(Option<(String, String)>),
}

/// Reads every SKILL.md of `paths`.
pub fn read_skills(
    tree: &Tree<'_>,
    paths: &[String],
    manifests: &BTreeMap<String, String>,
    vars: &BTreeMap<String, Vars>,
    diags: &mut Diagnostics,
) -> Vec<Skill> {
    let mut out: Vec<Skill> = Vec::new();
    let mut first_file: BTreeMap<String, String> = BTreeMap::new();
    let mut module_codes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for rel in paths {
        let text = match tree.files.text(rel) {
            Ok(text) => text,
            Err(message) => {
                diags.warning("bmad-read", rel, Pos::new(1, 1), message);
                continue;
            }
        };
        let doc = markdown::read(text, rel, diags);
        let dir = parent(rel).to_string();
        let folder = file_name(&dir).to_string();
        let name = match doc.field("name").filter(|n| !n.trim().is_empty()) {
            Some(name) => {
                if name != folder {
                    diags.warning(
                        "bmad-skill-name",
                        rel,
                        doc.key_pos("name"),
                        format!("skill `{name}` sits in folder `{folder}`: the name wins"),
                    );
                }
                name
            }
            None => folder.clone(),
        };
        let name_pos = doc.key_pos("name");
        let name = crate::bmad::valid_name_or_repaired(&name, "skill name", rel, name_pos, diags);
        if let Some(first) = first_file.get(&name) {
            if tree.install_dir.is_some() {
                if tree.files.text(first).ok() != Some(text) {
                    diags.warning(
                        "bmad-skill-copy",
                        rel,
                        Pos::new(1, 1),
                        format!("skill `{name}` differs from the copy in {first}, which is used"),
                    );
                }
            } else {
                diags.error(
                    "duplicate-skill",
                    rel,
                    doc.key_pos("name"),
                    format!("skill name `{name}` twice: in {first} and in {rel}"),
                );
            }
            continue;
        }
        first_file.insert(name.clone(), rel.clone());
        let module = module_of(tree, &dir, manifests, &mut module_codes, diags);
        let module_vars = vars
            .get(&module)
            .or_else(|| vars.get(CORE))
            .cloned()
            .unwrap_or_default();
        let description = cut_description(
            doc.field("description").unwrap_or_default(),
            rel,
            doc.key_pos("description"),
            diags,
        );
        let kind = classify(
            tree,
            rel,
            &dir,
            &name,
            &module,
            &doc,
            &module_vars,
            &description,
            diags,
        );
        out.push(Skill {
            name,
            rel: rel.clone(),
            dir,
            module,
            description,
            doc,
            kind,
        });
    }
    out
}

/// The module of the skill in `dir`: the one its `module-manifest.toml`
/// names, else [`skill_module`]'s.
pub fn module_of(
    tree: &Tree<'_>,
    dir: &str,
    manifests: &BTreeMap<String, String>,
    cache: &mut BTreeMap<String, Option<String>>,
    diags: &mut Diagnostics,
) -> String {
    match manifests.get(dir) {
        Some(code) => code.clone(),
        None => skill_module(tree, dir, cache, diags),
    }
}

/// The `code` of the nearest ancestor `module.yaml`; in an install the
/// `_bmad/<m>/` folder; else `core`.
fn skill_module(
    tree: &Tree<'_>,
    dir: &str,
    cache: &mut BTreeMap<String, Option<String>>,
    diags: &mut Diagnostics,
) -> String {
    let mut at = dir;
    loop {
        let candidate = crate::sourcefs::join_rel(at, "module.yaml");
        let code = cache
            .entry(candidate.clone())
            .or_insert_with(|| {
                tree.files
                    .is_file(&candidate)
                    .then(|| module_code(tree.files, &candidate, diags))
                    .flatten()
            })
            .clone();
        if let Some(code) = code {
            return code;
        }
        if at.is_empty() {
            break;
        }
        at = parent(at);
    }
    tree.install_dir
        .and_then(|install_dir| dir.strip_prefix(install_dir)?.strip_prefix('/'))
        .and_then(|r| r.split('/').next())
        .map_or_else(|| CORE.to_string(), str::to_string)
}

#[allow(clippy::too_many_arguments)]
fn classify(
    tree: &Tree<'_>,
    rel: &str,
    dir: &str,
    name: &str,
    module: &str,
    doc: &Markdown,
    module_vars: &Vars,
    description: &str,
    diags: &mut Diagnostics,
) -> SkillKind {
    let lifecycle = doc
        .fields
        .iter()
        .find(|(k, _)| k.name == "metadata")
        .and_then(|(_, v)| v.get("lifecycle"))
        .and_then(|v| v.scalar_text());
    if lifecycle.as_deref() == Some("shim") {
        let target = forwards_to(&doc.body);
        diags.warning(
            "bmad-shim",
            rel,
            doc.key_pos("metadata"),
            match &target {
                Some((to, _)) => format!("shim `{name}`: an alias of `{to}`"),
                None => format!("shim `{name}` names no skill it forwards to: not read"),
            },
        );
        return SkillKind::Shim(target);
    }
    let mut vars = module_vars.clone();
    vars.set("skill-root", dir);
    vars.set("skill-name", name);
    vars.set("installed_path", dir);
    if let Some(agent) = customize::merged(tree.files, dir, name, "agent", diags) {
        return SkillKind::Agent(Box::new(skill_agent(
            rel,
            name,
            module,
            doc,
            &agent,
            description,
            &vars,
        )));
    }
    // A SKILL.md that hands over to its workflow.md compiles from that file.
    let handoff = crate::sourcefs::join_rel(dir, "workflow.md");
    let (src_rel, src_doc) = match tree.files.text(&handoff) {
        Ok(text) if doc.body.contains("workflow.md") => {
            (handoff.clone(), markdown::read(text, &handoff, diags))
        }
        _ => (rel.to_string(), doc.clone()),
    };
    if let Some(first) = first_named_step(tree, &src_doc, &src_rel, &vars) {
        return SkillKind::Steps {
            rel: src_rel,
            doc: src_doc,
            first,
        };
    }
    let workflow = customize::merged(tree.files, dir, name, "workflow", diags).unwrap_or_default();
    let mut text = table_substitute(&vars.substitute(&src_doc.body), "workflow", &workflow);
    if let Some(done) = workflow.get("on_complete") {
        text.push_str(&format!("\n\n## On completion\n\n{}", value_text(done)));
    }
    SkillKind::Single { rel: src_rel, text }
}

/// `forwards to <skill> (<intent>)` in a shim's body.
fn forwards_to(body: &str) -> Option<(String, String)> {
    let (_, rest) = body.split_once("forwards to")?;
    let target: String = rest
        .trim_start()
        .trim_start_matches(['`', '\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        .collect();
    if target.is_empty() {
        return None;
    }
    let intent = rest
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(i, _)| i.trim().to_string())
        .unwrap_or_default();
    Some((target, intent))
}

/// `{<prefix>.<key>}` replaced by the table's values (arrays as bullets,
/// empty as `_None._`); other braces stay.
fn table_substitute(text: &str, prefix: &str, table: &Table) -> String {
    let mut vars = Vars::default();
    set_table_vars(&mut vars, prefix, table);
    vars.substitute(text)
}

/// The table's values as variables `<prefix>.<key>` (arrays as bullets,
/// empty as `_None._`).
pub fn set_table_vars(vars: &mut Vars, prefix: &str, table: &Table) {
    for (key, value) in table {
        vars.set(&format!("{prefix}.{key}"), value_text(value));
    }
}

/// An agent skill's draft from its merged `[agent]` table.
fn skill_agent(
    rel: &str,
    name: &str,
    module: &str,
    doc: &Markdown,
    agent: &Table,
    description: &str,
    vars: &Vars,
) -> AgentDraft {
    let persona_table = agent
        .get("persona")
        .and_then(Value::as_table)
        .unwrap_or(agent);
    let text = |k: &str| {
        persona_table
            .get(k)
            .map(value_text)
            .filter(|t| t != "_None._")
    };
    let principles = match persona_table.get("principles") {
        Some(Value::Array(items)) => items.iter().map(value_text).collect(),
        Some(other) => split_bullets(&value_text(other)),
        None => Vec::new(),
    };
    let mut menu = Vec::new();
    let mut data = Vec::new();
    for item in agent
        .get("menu")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(item) = item.as_table() else {
            continue;
        };
        let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
        let code = field("code").unwrap_or_default();
        let Some((code, label)) = menu_code(&code, &field("description").unwrap_or_default())
        else {
            continue;
        };
        let target = match (field("skill"), field("prompt")) {
            (Some(skill), _) => MenuTarget::Name(skill),
            (None, Some(prompt)) => {
                data.push(resource(&format!("menu *{code}"), rel, &prompt));
                MenuTarget::Prompt(prompt)
            }
            (None, None) => continue,
        };
        menu.push(MenuItem {
            code,
            alias: None,
            description: label,
            target,
            input: None,
            pos: Pos::new(1, 1),
        });
    }
    let mut instructions = vec![resource(
        "SKILL.md",
        rel,
        &table_substitute(&vars.substitute(doc.body.trim()), "agent", agent),
    )];
    for (key, value) in agent {
        if key.starts_with("activation") || key == "critical_actions" {
            instructions.push(resource(key, rel, &value_text(value)));
        }
    }
    if let Some(facts) = agent.get("persistent_facts") {
        data.push(resource(
            "persistent_facts",
            rel,
            &format!(
                "Facts to keep in mind (entries starting with `file:` name files to read at the start of each run):\n{}",
                vars.substitute(&value_text(facts))
            ),
        ));
    }
    let title = agent.get("title").map(value_text);
    let agent_name = agent.get("name").map(value_text);
    let display = display_name(agent_name.as_deref(), title.as_deref(), name);
    AgentDraft {
        id: name.to_string(),
        module: module.to_string(),
        source: rel.to_string(),
        pos: doc.key_pos("name"),
        display,
        description: description.to_string(),
        persona: Some(persona(
            text("role"),
            text("identity"),
            text("communication_style"),
            principles,
        )),
        menu,
        instructions,
        data,
        metadata: BTreeMap::from([(
            "customize".to_string(),
            customize::to_json(&Value::Table(agent.clone())),
        )]),
    }
}

/// Skill metadata kept on its flow or agent.
pub fn skill_metadata(skill: &Skill) -> BTreeMap<String, serde_json::Value> {
    let mut meta = BTreeMap::from([
        ("skill".to_string(), json!(skill.name)),
        ("module".to_string(), json!(skill.module)),
    ]);
    if let Some((_, v)) = skill.doc.fields.iter().find(|(k, _)| k.name == "metadata") {
        meta.insert("skill_metadata".to_string(), v.to_json());
    }
    // A skill that speaks of a headless mode has a headless contract: the
    // engine passes `headless: true` and reads its closing JSON.
    if skill.doc.body.to_ascii_lowercase().contains("headless") {
        meta.insert("headless_contract".to_string(), json!(true));
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_targets() {
        assert_eq!(
            forwards_to("This skill forwards to `bmad-create-prd` (edit mode)."),
            Some(("bmad-create-prd".to_string(), "edit mode".to_string()))
        );
        assert_eq!(forwards_to("nothing"), None);
    }
}
