//! Packs: which folders of a source tree are BMAD packs, how their ids are
//! qualified, and how a name written in a workflow or team file finds its agent.
//!
//! A tree is one of:
//! - a core (or expansion-pack) folder itself: `agents/`, `tasks/`, … at the root;
//! - an installed project: `.bmad-core/` plus expansion packs beside it
//!   (`.bmad-2d-phaser-game-dev/`, `bmad-creative-writing/`);
//! - a BMAD source checkout: `bmad-core/`, `common/`, `expansion-packs/*/`.
//!
//! The core is the root folder when it is a pack, else the folder named
//! `bmad-core` (with or without the leading dot). With several packs, ids of
//! every other pack are qualified as `<pack>/<id>` (see the module docs of
//! [`crate::bmad`]).

use super::agent;
use super::sanitize_name;
use crate::sourcefs::{SourceSnapshot, join_rel};

/// Folders whose presence marks a BMAD pack.
const PACK_FOLDERS: [&str; 3] = ["agents", "workflows", "agent-teams"];
/// Folders never searched for packs (build output, VCS, dependencies).
const SKIPPED_FOLDERS: [&str; 3] = [".git", "target", "node_modules"];

/// One BMAD pack: a folder with its own agents, resources and workflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    /// The qualifier: the folder name without leading dots, sanitised.
    pub name: String,
    /// Folder relative to the source root (`""` for the root itself).
    pub dir: String,
    /// The core keeps bare ids and is searched after a pack's own folder.
    pub is_core: bool,
}

impl Pack {
    /// The id an agent or flow of this pack gets in the bundle.
    pub fn qualify(&self, id: &str, multi: bool) -> String {
        if multi && !self.is_core {
            format!("{}/{id}", self.name)
        } else {
            id.to_string()
        }
    }
}

/// Finds the packs of the source tree read into `files`, root first, then
/// child folders in name order, then `expansion-packs/*`. Empty when it is
/// not a BMAD tree. Only the snapshot is consulted: deciding the layout
/// and reading the packs touch no file a second time.
pub fn discover_in(files: &SourceSnapshot) -> Vec<Pack> {
    let src = files.root();
    let has_bmad_agents = |dir: &str| {
        let agents = join_rel(dir, "agents");
        files
            .list_files(&agents)
            .iter()
            .filter(|n| n.to_ascii_lowercase().ends_with(".md"))
            .any(|n| {
                files
                    .text(&join_rel(&agents, n))
                    .is_ok_and(agent::is_agent_text)
            })
    };
    let mut packs: Vec<Pack> = Vec::new();
    if has_bmad_agents("") {
        let name = src.file_name().and_then(|n| n.to_str()).map_or_else(
            || "core".to_string(),
            |n| sanitize_name(n.trim_start_matches('.')),
        );
        packs.push(Pack {
            name,
            dir: String::new(),
            is_core: true,
        });
    }
    let mut candidates: Vec<(String, bool)> = files
        .list_dirs("")
        .into_iter()
        .filter(|d| !SKIPPED_FOLDERS.contains(&d.as_str()) && d != "expansion-packs")
        .filter(|d| {
            let base = d.trim_start_matches('.');
            (base.starts_with("bmad") && has_pack_folder(files, d)) || has_bmad_agents(d)
        })
        .map(|d| (d, false))
        .collect();
    candidates.extend(
        files
            .list_dirs("expansion-packs")
            .into_iter()
            .map(|d| join_rel("expansion-packs", &d))
            .filter(|d| has_pack_folder(files, d))
            .map(|d| (d, true)),
    );
    let has_root_core = !packs.is_empty();
    for (dir, _) in candidates {
        let folder = dir.rsplit('/').next().unwrap_or(&dir);
        let base = folder.trim_start_matches('.');
        let mut name = sanitize_name(base);
        let mut n = 2;
        while packs.iter().any(|p| p.name == name) {
            name = format!("{}-{n}", sanitize_name(base));
            n += 1;
        }
        let is_core = !has_root_core && base == "bmad-core" && !packs.iter().any(|p| p.is_core);
        packs.push(Pack { name, dir, is_core });
    }
    packs
}

/// Where a pack's dependencies are looked for, in order: its own folder,
/// then the core, then the shared `common` folders (the pack's, the core's,
/// the root's), each only if it exists.
pub fn search_bases(files: &SourceSnapshot, pack: &Pack, packs: &[Pack]) -> Vec<String> {
    let core = packs.iter().find(|p| p.is_core);
    let mut bases = vec![pack.dir.clone()];
    if let Some(core) = core.filter(|c| c.dir != pack.dir) {
        bases.push(core.dir.clone());
    }
    let mut commons = vec![join_rel(&pack.dir, "common")];
    if let Some(core) = core {
        commons.push(join_rel(&core.dir, "common"));
    }
    commons.push("common".to_string());
    for dir in commons {
        if files.is_dir(&dir) && !bases.contains(&dir) {
            bases.push(dir);
        }
    }
    bases
}

/// Every agent read so far, for resolving names in workflows and team files.
#[derive(Debug, Default)]
pub struct AgentIndex {
    entries: Vec<IndexEntry>,
    core: Option<usize>,
}

#[derive(Debug)]
struct IndexEntry {
    pack: usize,
    /// The id as the agent file wrote it.
    bare: String,
    /// The file name without `.md` (workflows sometimes name the file, not the id).
    stem: String,
    /// The id in the bundle.
    qualified: String,
}

impl AgentIndex {
    pub fn new(packs: &[Pack]) -> Self {
        Self {
            entries: Vec::new(),
            core: packs.iter().position(|p| p.is_core),
        }
    }

    pub fn insert(&mut self, pack: usize, bare: &str, stem: &str, qualified: &str) {
        self.entries.push(IndexEntry {
            pack,
            bare: bare.to_string(),
            stem: stem.to_string(),
            qualified: qualified.to_string(),
        });
    }

    /// The bundle id `name` refers to when written in pack `pack`: an exact
    /// qualified id (`pack/id`); else by id, then file stem, in the pack itself; then in the
    /// core; then in the single other pack that has it; then the same
    /// ignoring ASCII case.
    pub fn resolve(&self, name: &str, pack: usize) -> Option<&str> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| name.contains('/') && e.qualified == name)
        {
            return Some(&e.qualified);
        }
        self.resolve_with(pack, |a| a == name)
            .or_else(|| self.resolve_with(pack, |a| a.eq_ignore_ascii_case(name)))
    }

    fn resolve_with(&self, pack: usize, same: impl Fn(&str) -> bool) -> Option<&str> {
        let in_pack = |p: usize| {
            self.entries
                .iter()
                .filter(move |e| e.pack == p)
                .find(|e| same(&e.bare))
                .or_else(|| {
                    self.entries
                        .iter()
                        .filter(|e| e.pack == p)
                        .find(|e| same(&e.stem))
                })
        };
        if let Some(e) = in_pack(pack) {
            return Some(&e.qualified);
        }
        if let Some(e) = self.core.and_then(in_pack) {
            return Some(&e.qualified);
        }
        let mut others = self
            .entries
            .iter()
            .filter(|e| same(&e.bare) || same(&e.stem));
        match (others.next(), others.next()) {
            (Some(e), None) => Some(&e.qualified),
            _ => None,
        }
    }

    /// Bundle ids of every agent of `pack`, in the order they were read.
    pub fn pack_agents(&self, pack: usize) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |e| e.pack == pack)
            .map(|e| e.qualified.as_str())
    }
}

/// True when `dir` has one of the folders that mark a pack ([`PACK_FOLDERS`]).
fn has_pack_folder(files: &SourceSnapshot, dir: &str) -> bool {
    PACK_FOLDERS.iter().any(|f| files.is_dir(&join_rel(dir, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(name: &str, is_core: bool) -> Pack {
        Pack {
            name: name.to_string(),
            dir: name.to_string(),
            is_core,
        }
    }

    #[test]
    fn resolves_own_pack_then_core_then_unique_other() {
        let packs = [
            pack("core", true),
            pack("game", false),
            pack("write", false),
        ];
        let mut index = AgentIndex::new(&packs);
        index.insert(0, "pm", "pm", "pm");
        index.insert(0, "analyst", "analyst", "analyst");
        index.insert(1, "pm", "game-pm", "game/pm");
        index.insert(2, "editor", "editor", "write/editor");
        assert_eq!(index.resolve("pm", 1), Some("game/pm"));
        assert_eq!(index.resolve("game-pm", 1), Some("game/pm"));
        assert_eq!(index.resolve("pm", 0), Some("pm"));
        assert_eq!(index.resolve("pm", 2), Some("pm"));
        assert_eq!(index.resolve("analyst", 1), Some("analyst"));
        assert_eq!(index.resolve("editor", 1), Some("write/editor"));
        assert_eq!(index.resolve("game/pm", 0), Some("game/pm"));
        assert_eq!(index.resolve("Analyst", 1), Some("analyst"));
        assert_eq!(index.resolve("nobody", 1), None);
        assert_eq!(index.pack_agents(1).collect::<Vec<_>>(), ["game/pm"]);
    }

    #[test]
    fn qualifies_only_non_core_in_multi_pack_trees() {
        assert_eq!(pack("game", false).qualify("pm", true), "game/pm");
        assert_eq!(pack("game", false).qualify("pm", false), "pm");
        assert_eq!(pack("core", true).qualify("pm", true), "pm");
    }
}
