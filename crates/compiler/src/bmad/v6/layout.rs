//! Which BMAD v6 / skills layout a source tree holds (SPEC 1.7, "Layout").
//!
//! Detection looks at file names only (the snapshot is already in memory),
//! in SPEC order: an installed project (`_bmad/` at the root), then v6
//! module trees (folders, or folders of `src/` or `src/modules/`, holding
//! `module.yaml`, or before 6.0 `_module-installer/install-config.yaml`,
//! plus agents or workflows) and skills trees (`**/SKILL.md`), which combine.
//! Last comes a project installed by a 6.0 alpha (`bmad/_cfg/manifest.yaml`),
//! read like an install; it comes after the module trees because
//! BMAD-METHOD's own checkouts of that time hold both their sources and an
//! install of them. Nothing found means the tree is BMAD v4 or the
//! preprocessing layout, and [`detect`] says `None`.

use crate::bundle::SourceLayout;
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::SourceSnapshot;
use std::collections::BTreeSet;

/// The folder of an installed project that holds its modules and config.
pub const INSTALL_DIR: &str = "_bmad";

/// The same folder as the 6.0 alphas installed it.
pub const ALPHA_INSTALL_DIR: &str = "bmad";

/// The file that marks a project installed by a 6.0 alpha.
const ALPHA_INSTALL_MANIFEST: &str = "bmad/_cfg/manifest.yaml";

/// Folders of the install folder that hold its state and its own notes,
/// not modules or sources (`_cfg`, and `docs` for the IDEs, in the 6.0
/// alphas).
pub const INSTALL_STATE_DIRS: [&str; 5] = ["_config", "_cfg", "_memory", "custom", "docs"];

/// The folder of the install folder with the scripts the install runs: not
/// a module (its files are warned as scripts).
const INSTALL_SCRIPTS_DIR: &str = "scripts";

/// One v6 module folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDir {
    /// Folder relative to the source root (`src/bmm`, `_bmad/bmm`).
    pub dir: String,
    /// The folder name; [`super::modules`] replaces it by `module.yaml`'s `code`.
    pub name: String,
}

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub kind: SourceLayout,
    /// The install folder of an installed project (`_bmad`, or `bmad` for
    /// a 6.0 alpha's); `None` for a source tree.
    pub install_dir: Option<&'static str>,
    pub modules: Vec<ModuleDir>,
    /// Every `SKILL.md` to read, sorted; an install's copies of one skill
    /// under several tool folders are all listed (the reader keeps one).
    pub skills: Vec<String>,
}

/// The BMAD v6 / skills layout of `files`, or `None` when it holds neither.
pub fn detect(files: &SourceSnapshot) -> Option<Layout> {
    let installed = files.paths().any(|p| {
        p.strip_prefix(INSTALL_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
    });
    if installed {
        return Some(install_layout(files, INSTALL_DIR));
    }
    let modules = module_dirs(files);
    let skills: Vec<String> = files
        .paths()
        .filter(|p| file_name(p) == "SKILL.md")
        .map(str::to_string)
        .collect();
    if modules.is_empty() && files.is_file(ALPHA_INSTALL_MANIFEST) {
        return Some(install_layout(files, ALPHA_INSTALL_DIR));
    }
    let kind = match (modules.is_empty(), skills.is_empty()) {
        (true, true) => return None,
        (false, true) => SourceLayout::BmadV6,
        (true, false) => SourceLayout::BmadSkills,
        (false, false) => SourceLayout::BmadV6Skills,
    };
    Some(Layout {
        kind,
        install_dir: None,
        modules,
        skills,
    })
}

/// Says what else a tree read as BMAD v6 / skills holds: a BMAD v4 pack
/// or preprocessing agents are not read beside it (one warning).
pub fn report_mixed(files: &SourceSnapshot, layout: &Layout, diags: &mut Diagnostics) {
    // An install folder named `bmad` with an `agents/` folder looks like a
    // v4 pack, but it is what is read.
    let v4 = crate::bmad::packs::discover_in(files)
        .iter()
        .any(|pack| Some(pack.dir.as_str()) != layout.install_dir);
    let preprocessing = !v4 && !crate::source::agent_files(files).is_empty();
    if v4 || preprocessing {
        let what = if v4 {
            "a BMAD v4 pack"
        } else {
            "preprocessing agents (agents/*.md)"
        };
        diags.warning(
            "bmad-layout-mixed",
            ".",
            Pos::new(1, 1),
            format!(
                "read as {} ({} modules, {} skills); the tree also holds {what}, which is not read",
                layout_name(layout.kind),
                layout.modules.len(),
                layout.skills.len()
            ),
        );
    }
}

/// How a layout is named on `validate`'s summary line and in messages.
pub fn layout_name(kind: SourceLayout) -> &'static str {
    match kind {
        SourceLayout::Preprocessing => "preprocessing",
        SourceLayout::BmadV4 => "BMAD v4",
        SourceLayout::BmadInstall => "BMAD installed project",
        SourceLayout::BmadV6 => "BMAD v6 module tree",
        SourceLayout::BmadSkills => "BMAD skills",
        SourceLayout::BmadV6Skills => "BMAD v6 modules + skills",
    }
}

/// The folder of the install folder where the 6.0 alphas installed agents
/// of no module (`bmad/agents/<name>/<name>.md`): the agents of a module
/// named after it, whose folder is the install folder itself.
const STANDALONE_AGENTS_DIR: &str = "agents";

/// `<install_dir>/<code>/` modules plus `.<tool>/skills/*/SKILL.md` and any
/// `SKILL.md` under the install folder.
fn install_layout(files: &SourceSnapshot, install_dir: &'static str) -> Layout {
    let prefix = format!("{install_dir}/");
    let mut names = BTreeSet::new();
    let mut skills = Vec::new();
    for path in files.paths() {
        let parts: Vec<&str> = path.split('/').collect();
        if let Some(rest) = path.strip_prefix(&prefix) {
            if let Some((module, _)) = rest.split_once('/')
                && !INSTALL_STATE_DIRS.contains(&module)
                && module != INSTALL_SCRIPTS_DIR
            {
                names.insert(module.to_string());
            }
            if file_name(path) == "SKILL.md" {
                skills.push(path.to_string());
            }
        } else if parts.len() == 4
            && parts[0].starts_with('.')
            && parts[1] == "skills"
            && parts[3] == "SKILL.md"
        {
            skills.push(path.to_string());
        }
    }
    skills.sort();
    Layout {
        kind: SourceLayout::BmadInstall,
        install_dir: Some(install_dir),
        modules: names
            .into_iter()
            .map(|name| ModuleDir {
                dir: if name == STANDALONE_AGENTS_DIR {
                    install_dir.to_string()
                } else {
                    format!("{prefix}{name}")
                },
                name,
            })
            .collect(),
        skills,
    }
}

/// Where a module folder keeps its configuration, relative to it: today,
/// then before 6.0.
pub const MODULE_CONFIG_FILES: [&str; 2] = ["module.yaml", LEGACY_MODULE_CONFIG];

/// A module's configuration before 6.0, relative to its folder.
const LEGACY_MODULE_CONFIG: &str = "_module-installer/install-config.yaml";

/// The module folder whose configuration file `path` is, if it is one.
fn config_file_dir(path: &str) -> Option<&str> {
    MODULE_CONFIG_FILES.iter().find_map(|config| {
        let dir = path.strip_suffix(config)?;
        match dir.strip_suffix('/') {
            Some(dir) => Some(dir),
            None => dir.is_empty().then_some(""),
        }
    })
}

/// Folders holding a configuration file (`module.yaml`, or before 6.0
/// `_module-installer/install-config.yaml`) plus `agents/**/*.agent.yaml`
/// or `workflows/**/workflow*`: the root itself, its folders, the folders
/// of `src/`, and the folders of `modules/` or `src/modules/` (where
/// BMAD-METHOD kept its modules before 6.0: `src/modules/bmm`).
fn module_dirs(files: &SourceSnapshot) -> Vec<ModuleDir> {
    let candidates: BTreeSet<&str> = files
        .paths()
        .filter_map(config_file_dir)
        .filter(|dir| is_module_folder(dir))
        .collect();
    candidates
        .into_iter()
        .filter(|dir| holds_module_content(files, dir))
        .map(|dir| {
            // The source folder itself as a module: named after the folder.
            let name = match dir.rsplit('/').next() {
                Some(last) if !last.is_empty() => last.to_string(),
                _ => files
                    .root()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("module")
                    .to_string(),
            };
            ModuleDir {
                name,
                dir: dir.to_string(),
            }
        })
        .collect()
}

/// Where a module folder may sit (see [`module_dirs`]).
fn is_module_folder(dir: &str) -> bool {
    let grouping = parent(dir);
    dir.is_empty() || matches!(grouping, "" | "src" | "modules" | "src/modules")
}

fn holds_module_content(files: &SourceSnapshot, dir: &str) -> bool {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    files.paths().any(|p| {
        let Some(rest) = p.strip_prefix(&prefix) else {
            return false;
        };
        (rest.starts_with("agents/") && rest.ends_with(".agent.yaml"))
            || (rest.starts_with("workflows/") && is_workflow_file(file_name(rest)))
    })
}

/// Folders with a `module.yaml` that are not module folders of `layout`
/// (a skills tree groups its skills under them): their variables apply to
/// the skills below them.
pub fn other_module_dirs(files: &SourceSnapshot, layout: &Layout) -> Vec<ModuleDir> {
    files
        .paths()
        .filter(|p| file_name(p) == "module.yaml")
        .map(parent)
        .filter(|dir| !layout.modules.iter().any(|m| m.dir == *dir))
        .map(|dir| ModuleDir {
            dir: dir.to_string(),
            name: file_name(dir).to_string(),
        })
        .collect()
}

/// `workflow.md`, `workflow-<name>.md`, `workflow.yaml`.
pub fn is_workflow_file(name: &str) -> bool {
    name.starts_with("workflow") && (name.ends_with(".md") || name.ends_with(".yaml"))
}

/// The last segment of a `/`-separated path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The folder of a `/`-separated path (`""` for the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(paths: &[&str]) -> Result<(tempfile::TempDir, SourceSnapshot), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        for p in paths {
            let full = dir.path().join(p);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(full, "x").map_err(|e| e.to_string())?;
        }
        let snap = SourceSnapshot::load(dir.path());
        Ok((dir, snap))
    }

    #[test]
    fn layouts_in_spec_order() -> Result<(), String> {
        let (_d, s) = snapshot(&[
            "src/bmm/module.yaml",
            "src/bmm/agents/pm.agent.yaml",
            "src/core/module.yaml",
            "src/core/tasks/help.md",
        ])?;
        let l = detect(&s).ok_or("no layout")?;
        assert_eq!(l.kind, SourceLayout::BmadV6);
        assert_eq!(l.modules.len(), 1);
        assert_eq!(l.modules[0].dir, "src/bmm");

        // Where BMAD-METHOD kept its modules before 6.0.
        let (_d, s) = snapshot(&[
            "src/core/module.yaml",
            "src/core/agents/bmad-master.agent.yaml",
            "src/modules/bmm/module.yaml",
            "src/modules/bmm/workflows/prd/workflow.yaml",
            "src/modules/bmm/data/deep/module.yaml",
        ])?;
        let l = detect(&s).ok_or("no layout")?;
        let dirs: Vec<&str> = l.modules.iter().map(|m| m.dir.as_str()).collect();
        assert_eq!(dirs, ["src/core", "src/modules/bmm"]);

        // The first 6.0 alphas: no `module.yaml` yet, an installer's config.
        let (_d, s) = snapshot(&[
            "src/modules/bmm/_module-installer/install-config.yaml",
            "src/modules/bmm/agents/sm.agent.yaml",
        ])?;
        let l = detect(&s).ok_or("no layout")?;
        assert_eq!(l.kind, SourceLayout::BmadV6);
        let dirs: Vec<&str> = l.modules.iter().map(|m| m.dir.as_str()).collect();
        assert_eq!(dirs, ["src/modules/bmm"]);

        let (_d, s) = snapshot(&["plan/a/SKILL.md", "b/SKILL.md", "README.md"])?;
        let l = detect(&s).ok_or("no layout")?;
        assert_eq!(l.kind, SourceLayout::BmadSkills);
        assert_eq!(l.skills, ["b/SKILL.md", "plan/a/SKILL.md"]);

        let (_d, s) = snapshot(&[
            "_bmad/bmm/config.yaml",
            "_bmad/_config/manifest.yaml",
            ".claude/skills/x/SKILL.md",
            ".cursor/skills/x/SKILL.md",
            "docs/y/SKILL.md",
        ])?;
        let l = detect(&s).ok_or("no layout")?;
        assert_eq!(l.kind, SourceLayout::BmadInstall);
        assert_eq!(l.modules.len(), 1);
        assert_eq!(l.skills.len(), 2);

        let (_d, s) = snapshot(&["agents/pm.md"])?;
        assert_eq!(detect(&s), None);
        Ok(())
    }
}
