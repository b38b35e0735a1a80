//! The files no reader consumed: a flow's resources, metadata, or a
//! one-line warning each (SPEC 1.7, "Resources", "Skipped").
//!
//! Every other non-script file of a workflow or skill folder becomes a
//! resource of that flow (or agent skill), `<flow>/<path in the folder>`,
//! kept verbatim in its metadata `resources` (read on demand by the model
//! through the `read_resource` tool); so do the files of a v6 agent's
//! `<agent>-sidecar/` folder (and the files an agent's own text names, see
//! [`super::agent_files`]). Scripts never run and are warned one by one;
//! catalogue and config files are metadata, unwarned; anything else is
//! warned as not read, so nothing is dropped silently.

use super::layout::{self, Layout, file_name};
use super::paths::Tree;
use crate::diag::{Diagnostics, Pos};
use std::collections::{BTreeMap, BTreeSet};

/// File names that are metadata of a module or install, read or not.
const METADATA_FILES: [&str; 9] = [
    "module.yaml",
    // A module's `module.yaml` before 6.0, in `_module-installer/`.
    "install-config.yaml",
    "module-help.csv",
    "config.yaml",
    "customize.toml",
    super::config::SKILL_MANIFEST,
    "bmad-manifest.json",
    "runtime.yaml",
    "manifest.yaml",
];
/// Extensions of files that would run code.
const SCRIPT_EXTENSIONS: [&str; 5] = [".py", ".sh", ".js", ".ps1", ".ts"];

/// Who a folder's other files belong to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    Flow(String),
    /// An agent skill's folder, or a v6 agent's `<agent>-sidecar/` folder.
    Agent(String),
}

impl Holder {
    fn name(&self) -> &str {
        match self {
            Self::Flow(name) | Self::Agent(name) => name,
        }
    }
}

/// Gives every unconsumed file of the tree its fate; returns the resources
/// found per holder (`<holder>/<path in its folder>` → text). `holders`
/// maps a folder to who owns the files below it (the deepest folder wins).
pub fn attach(
    tree: &Tree<'_>,
    layout: &Layout,
    holders: &BTreeMap<String, Holder>,
    used: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) -> BTreeMap<Holder, BTreeMap<String, String>> {
    let mut found: BTreeMap<Holder, BTreeMap<String, String>> = BTreeMap::new();
    let descriptors = module_descriptors(tree);
    // Descriptor folder → its first file (where the warning points), files.
    let mut described: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for rel in tree.files.paths() {
        if used.contains(rel) || quiet(rel, layout) {
            continue;
        }
        let below = |dir: &&String| {
            rel.strip_prefix(dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        };
        if let Some(dir) = descriptors.iter().find(below) {
            described.entry(dir.as_str()).or_insert((rel, 0)).1 += 1;
            continue;
        }
        if is_script(rel) {
            diags.warning(
                "bmad-script-skipped",
                rel,
                Pos::new(1, 1),
                "script: never run by bmad2pf (the text's fallback applies)",
            );
            continue;
        }
        let Some((dir, holder)) = holder_of(holders, rel) else {
            // An agent or workflow file outside every module folder is a
            // source whose folder is not marked as a module.
            let why = if rel.ends_with(".agent.yaml") || layout::is_workflow_file(file_name(rel)) {
                "an agent or workflow file outside every module folder (a folder with `module.yaml`): not read"
            } else if rel.ends_with(".agent.xml") {
                // The 6.0 alphas' web-bundle orchestrator (`localskip`).
                "an agent written for web bundles (`.agent.xml`): not read"
            } else {
                "not part of any agent, workflow or skill: not read"
            };
            diags.warning("bmad-skipped-file", rel, Pos::new(1, 1), why);
            continue;
        };
        match tree.files.text(rel) {
            Ok(text) => {
                let local = rel.strip_prefix(&format!("{dir}/")).unwrap_or(rel);
                found
                    .entry(holder.clone())
                    .or_default()
                    .insert(format!("{}/{local}", holder.name()), text.to_string());
                used.insert(rel.to_string());
            }
            Err(message) => {
                diags.warning(
                    "bmad-read",
                    rel,
                    Pos::new(1, 1),
                    format!("{message}: not a resource"),
                );
            }
        }
    }
    for (dir, (first, files)) in described {
        let manifest = format!("{dir}/bmod.toml");
        let at = if tree.files.is_file(&manifest) {
            manifest.as_str()
        } else {
            first
        };
        diags.warning(
            "bmad-skipped-file",
            at,
            Pos::new(1, 1),
            format!(
                "`{dir}/` describes a module to BMAD's installer (BMAD 6.13 on: `bmod.toml`, help pages, migrations): its {files} file(s) are not read; the skills it lists are read from their own folders"
            ),
        );
    }
    found
}

/// The folders that describe a module to BMAD's installer (BMAD 6.13 on):
/// `bmod-<code>/`, or any folder holding a `bmod.toml`. Their files are
/// warned as one, not one by one.
fn module_descriptors(tree: &Tree<'_>) -> Vec<String> {
    let mut dirs: BTreeSet<String> = tree
        .files
        .paths()
        .filter(|rel| file_name(rel) == "bmod.toml")
        .map(|rel| layout::parent(rel).to_string())
        .collect();
    for rel in tree.files.paths() {
        let folders = rel.rsplit_once('/').map_or("", |(folders, _)| folders);
        let mut end = 0;
        for segment in folders.split('/') {
            end += segment.len();
            if segment.starts_with("bmod-") {
                dirs.insert(folders[..end].to_string());
                break;
            }
            end += 1;
        }
    }
    dirs.into_iter().filter(|dir| !dir.is_empty()).collect()
}

/// The holder of the files below the deepest folder of `holders` that holds `rel`.
pub fn holder_of<'h>(
    holders: &'h BTreeMap<String, Holder>,
    rel: &str,
) -> Option<(&'h String, &'h Holder)> {
    holders
        .iter()
        .filter(|(dir, _)| dir.is_empty() || rel.starts_with(&format!("{dir}/")))
        .max_by_key(|(dir, _)| dir.len())
}

/// Files that are neither sources nor worth a warning.
fn quiet(rel: &str, layout: &Layout) -> bool {
    let name = file_name(rel);
    let in_skills = rel.contains("/skills/");
    if name.starts_with('.') || METADATA_FILES.contains(&name) {
        return true;
    }
    // IDE folders (`.claude/`, `.cursor/`) outside the skills read from them.
    if rel.split('/').any(|segment| segment.starts_with('.')) && !in_skills {
        return true;
    }
    let config_toml = rel.ends_with(".toml")
        && (rel.starts_with("custom/")
            || rel.starts_with("_bmad/config")
            || rel.starts_with("_bmad/custom/"));
    // The tree's own README (documentation of the tree, not a BMAD file).
    if config_toml || rel == "config/runtime.yaml" || rel == "README.md" {
        return true;
    }
    if let Some(install_dir) = layout.install_dir {
        // The project's own files are not BMAD sources; install state is metadata.
        return match rel
            .strip_prefix(install_dir)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(inside) => inside
                .split_once('/')
                .is_some_and(|(folder, _)| layout::INSTALL_STATE_DIRS.contains(&folder)),
            None => !in_skills,
        };
    }
    false
}

/// Whether `rel` is a script (never run, never a resource).
pub fn is_script(rel: &str) -> bool {
    rel.split('/').any(|s| s == "scripts") || SCRIPT_EXTENSIONS.iter().any(|e| rel.ends_with(e))
}
