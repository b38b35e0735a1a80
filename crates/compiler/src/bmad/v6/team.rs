//! v6 module teams (`<module>/teams/*.yaml`), read as SPEC 1.6 teams:
//! `bundle`, `agents` (names, or `'*'` for every agent of the module) and
//! `workflows`. They create no flow; each member agent records the team
//! (`<module>/<file stem>`) in its metadata `teams`, and members or
//! workflows the module does not have are warnings. Team CSVs beside them
//! are metadata.

use super::FlowDraft;
use super::agent::AgentDraft;
use super::config::Module;
use super::layout::file_name;
use crate::bmad::parse_yaml_lenient;
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::SourceSnapshot;
use crate::yaml::Node;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};

/// Reads the teams of `module`, marking their files `used`.
pub fn read_teams(
    files: &SourceSnapshot,
    module: &Module,
    drafts: &mut [AgentDraft],
    flows: &BTreeMap<String, FlowDraft>,
    used: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let dir = crate::sourcefs::join_rel(&module.dir, "teams");
    for name in files.list_files(&dir) {
        let rel = crate::sourcefs::join_rel(&dir, &name);
        if name.ends_with(".csv") {
            used.insert(rel);
            continue;
        }
        let Some(stem) = name
            .strip_suffix(".yaml")
            .or_else(|| name.strip_suffix(".yml"))
        else {
            continue;
        };
        used.insert(rel.clone());
        let Some(root) = files
            .text(&rel)
            .ok()
            .and_then(|text| parse_yaml_lenient(text, &rel, 0, diags))
        else {
            continue;
        };
        let team = format!("{}/{stem}", module.code);
        for (member, pos) in names(root.get("agents")) {
            let ids: Vec<String> = if member == "*" {
                drafts
                    .iter()
                    .filter(|d| d.module == module.code)
                    .map(|d| d.id.clone())
                    .collect()
            } else {
                let id = format!("{}/{}", module.code, short(&member, ".agent.yaml"));
                drafts
                    .iter()
                    .filter(|d| d.id == id)
                    .map(|d| d.id.clone())
                    .collect()
            };
            if ids.is_empty() {
                diags.warning(
                    "bmad-team-unknown-agent",
                    &rel,
                    pos,
                    format!(
                        "team names agent `{member}`, which module `{}` does not have",
                        module.code
                    ),
                );
            }
            for draft in drafts.iter_mut().filter(|d| ids.contains(&d.id)) {
                let teams = draft
                    .metadata
                    .entry("teams".to_string())
                    .or_insert_with(|| json!([]));
                if let Json::Array(list) = teams
                    && !list.iter().any(|t| t.as_str() == Some(&team))
                {
                    list.push(json!(team));
                }
            }
        }
        for (workflow, pos) in names(root.get("workflows")) {
            let id = format!("{}/{}", module.code, short(&workflow, ".yaml"));
            if !flows.contains_key(&id) {
                diags.warning(
                    "bmad-team-unknown-workflow",
                    &rel,
                    pos,
                    format!(
                        "team names workflow `{workflow}`, which module `{}` does not have",
                        module.code
                    ),
                );
            }
        }
    }
}

/// The scalar entries of a list (or one scalar), with their positions.
fn names(node: Option<&Node>) -> Vec<(String, Pos)> {
    let Some(node) = node else {
        return Vec::new();
    };
    match node.as_seq() {
        Some(items) => items
            .iter()
            .filter_map(|n| n.scalar_text().map(|t| (t, n.pos)))
            .collect(),
        None => node
            .scalar_text()
            .map(|t| (t, node.pos))
            .into_iter()
            .collect(),
    }
}

/// A member name less its folder and `extension` (`agents/pm.agent.yaml` → `pm`).
fn short<'n>(name: &'n str, extension: &str) -> &'n str {
    let name = file_name(name.trim());
    let name = name.strip_suffix(extension).unwrap_or(name);
    name.strip_suffix(".md").unwrap_or(name)
}
