//! BMAD v4 team files (`agent-teams/*.yaml`): which agents and workflows
//! belong together in a web bundle.
//!
//! Teams do not become flows (their workflows already do). They are checked
//! — an agent or workflow that does not exist is a warning, published packs
//! name both — and each member agent records the team under metadata
//! `teams` (the team file's stem, pack-qualified like agent ids).
//! `agents: ['*']` means every agent of the team's pack.

use super::packs::{AgentIndex, Pack};
use super::{PackFile, YAML_FILES, for_each_file, parse_yaml_lenient};
use crate::ProjectParts;
use crate::diag::{Diagnostics, Pos, did_you_mean};
use crate::sourcefs::{SourceSnapshot, join_rel};
use crate::yaml::Node;
use serde_json::Value as Json;

const TEAM_KEYS: [&str; 3] = ["bundle", "agents", "workflows"];
/// Extensions team files write after workflow names (`game-dev-greenfield.md`).
const WORKFLOW_EXTENSIONS: [&str; 3] = [".yaml", ".yml", ".md"];

/// Reads `agent-teams/*.yaml` of one pack: warnings for unknown members,
/// `teams` metadata on the agents that exist.
#[allow(clippy::too_many_arguments)]
pub fn read_pack_teams(
    files: &SourceSnapshot,
    pack: &Pack,
    pack_no: usize,
    packs: &[Pack],
    multi: bool,
    index: &AgentIndex,
    parts: &mut ProjectParts,
    diags: &mut Diagnostics,
) {
    let dir = join_rel(&pack.dir, "agent-teams");
    let skipped = "not a YAML file: ignored (BMAD teams are agent-teams/*.yaml)";
    for_each_file(files, &dir, YAML_FILES, skipped, diags, |file, diags| {
        let PackFile { stem, rel, text } = file;
        let Some(root) = parse_yaml_lenient(text, &rel, 0, diags) else {
            diags.warning(
                "bmad-team",
                &rel,
                Pos::new(1, 1),
                "team file is not valid YAML: skipped",
            );
            return;
        };
        let Some(entries) = root.as_map() else {
            diags.warning(
                "bmad-team",
                &rel,
                root.pos,
                format!(
                    "a team file should be a map, found {}: skipped",
                    root.type_name()
                ),
            );
            return;
        };
        for (key, _) in entries {
            if !TEAM_KEYS.contains(&key.name.as_str()) {
                let diag = diags.warning(
                    "bmad-unknown-key",
                    &rel,
                    key.pos,
                    format!("unknown key `{}` in a team file: ignored", key.name),
                );
                if let Some(close) = did_you_mean(&key.name, TEAM_KEYS) {
                    diag.hint = Some(format!("did you mean `{close}`?"));
                }
            }
        }
        let team = pack.qualify(&stem, multi);
        let members = team_members(root.get("agents"), pack_no, index, &rel, diags);
        for member in members {
            if let Some(agent) = parts.agents.get_mut(&member) {
                let teams = agent
                    .metadata
                    .entry("teams".to_string())
                    .or_insert_with(|| Json::Array(Vec::new()));
                if let Json::Array(list) = teams
                    && !list.iter().any(|t| t.as_str() == Some(&team))
                {
                    list.push(Json::String(team.clone()));
                }
            }
        }
        check_workflows(
            root.get("workflows"),
            files,
            pack,
            packs,
            parts,
            &rel,
            diags,
        );
    });
}

/// Bundle ids of the agents a team names; unknown names are warnings.
fn team_members(
    node: Option<&Node>,
    pack_no: usize,
    index: &AgentIndex,
    rel: &str,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let mut members = Vec::new();
    for (name, pos) in names(node, "agents", rel, diags) {
        if name == "*" {
            members.extend(index.pack_agents(pack_no).map(str::to_string));
        } else if let Some(id) = index.resolve(&name, pack_no) {
            members.push(id.to_string());
        } else {
            diags.warning(
                "bmad-team-unknown-agent",
                rel,
                pos,
                format!("team names agent `{name}`, which does not exist"),
            );
        }
    }
    members
}

/// Warns for each workflow the team names that neither its pack nor the core has.
fn check_workflows(
    node: Option<&Node>,
    files: &SourceSnapshot,
    pack: &Pack,
    packs: &[Pack],
    parts: &ProjectParts,
    rel: &str,
    diags: &mut Diagnostics,
) {
    let mut dirs = vec![join_rel(&pack.dir, "workflows")];
    if let Some(core) = packs.iter().find(|p| p.is_core && p.dir != pack.dir) {
        dirs.push(join_rel(&core.dir, "workflows"));
    }
    for (name, pos) in names(node, "workflows", rel, diags) {
        let stem = WORKFLOW_EXTENSIONS
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
            .unwrap_or(&name);
        let file_exists = dirs.iter().any(|d| {
            [".yaml", ".yml"]
                .iter()
                .any(|ext| files.is_file(&join_rel(d, &format!("{stem}{ext}"))))
        });
        let flow_exists = parts.flows.values().any(|flow| {
            let in_dirs = dirs
                .iter()
                .any(|d| flow.source.starts_with(&format!("{d}/")));
            let unqualified = flow.name.rsplit('/').next().unwrap_or(&flow.name);
            let base = unqualified.split('.').next().unwrap_or(unqualified);
            in_dirs && base == stem
        });
        if !file_exists && !flow_exists {
            diags
                .warning(
                    "bmad-team-unknown-workflow",
                    rel,
                    pos,
                    format!("team names workflow `{name}`, which does not exist"),
                )
                .hint = Some(format!("searched {}", dirs.join(", ")));
        }
    }
}

/// The names in a team's `agents` / `workflows` list (a single string is one name).
fn names(
    node: Option<&Node>,
    field: &str,
    rel: &str,
    diags: &mut Diagnostics,
) -> Vec<(String, Pos)> {
    let Some(node) = node else {
        return Vec::new();
    };
    let items: Vec<&Node> = match node.as_seq() {
        Some(items) => items.iter().collect(),
        None if node.is_null() => Vec::new(),
        None => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        match item.scalar_text() {
            Some(text) if !text.trim().is_empty() => out.push((text.trim().to_string(), item.pos)),
            Some(_) => {}
            None => {
                diags.warning(
                    "bmad-team",
                    rel,
                    item.pos,
                    format!(
                        "`{field}` entry should be a name, found {}: ignored",
                        item.type_name()
                    ),
                );
            }
        }
    }
    out
}
