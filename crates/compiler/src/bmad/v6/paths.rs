//! Paths written in BMAD text, resolved to files of the source tree.
//!
//! BMAD names files as `{project-root}/_bmad/<m>/…` (the installed
//! location), `{installed_path}/…`, `./step-02.md` or a bare relative
//! path. [`Tree::resolve`] substitutes the variables, resolves `.` and `..`,
//! and, outside an installed project, maps `_bmad/<m>/…` to the module's
//! folder in the tree (`src/bmm/…`), as SPEC 1.7's layout 4 says; so is
//! `bmad/<m>/…`, the install folder of the 6.0 alphas.

use super::layout::{ALPHA_INSTALL_DIR, INSTALL_DIR};
use super::vars::{PROJECT_ROOT, Vars};
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::SourceSnapshot;
use std::collections::BTreeMap;

/// The source tree and its modules, for path lookups.
pub struct Tree<'a> {
    pub files: &'a SourceSnapshot,
    /// The install folder of an installed project (see [`super::layout::Layout`]).
    pub install_dir: Option<&'static str>,
    /// Module code → its folder.
    pub module_dirs: BTreeMap<String, String>,
}

impl Tree<'_> {
    /// The tree-relative path `written` names, from a file in `base_dir`.
    /// The result may name no file; the caller checks.
    pub fn resolve(&self, written: &str, base_dir: &str, vars: &Vars) -> String {
        let written = written.trim().trim_matches(['\'', '"', '`']);
        let substituted = vars.substitute(written);
        // With `bmad.project_root` set, values carry it (`{installed_path}`
        // of a workflow.yaml is `/srv/app/_bmad/…`); in the tree, paths are
        // project-relative.
        let root = vars.get(PROJECT_ROOT).unwrap_or_default();
        let in_project = substituted
            .strip_prefix(root)
            .filter(|rest| !root.is_empty() && (rest.is_empty() || rest.starts_with('/')));
        let substituted = in_project.unwrap_or(&substituted);
        // A path that starts with a variable is rooted at the project
        // (`{installed_path}` and `{skill-root}` are tree-relative folders).
        let rooted = written.starts_with('{') || substituted.starts_with(INSTALL_DIR);
        let joined = if rooted || base_dir.is_empty() {
            substituted.trim_start_matches('/').to_string()
        } else {
            format!("{base_dir}/{substituted}")
        };
        let normal = normalize(&joined);
        if self.install_dir.is_some() {
            return normal;
        }
        // The 6.0 alphas installed into `bmad/`; a tree file of that path
        // is still taken as written.
        let install_dirs = if self.files.is_file(&normal) {
            &[INSTALL_DIR][..]
        } else {
            &[INSTALL_DIR, ALPHA_INSTALL_DIR][..]
        };
        let inside = install_dirs
            .iter()
            .find_map(|dir| normal.strip_prefix(dir)?.strip_prefix('/'));
        match inside.and_then(|r| r.split_once('/')) {
            Some((module, rest)) => match self.module_dirs.get(module) {
                Some(dir) => crate::sourcefs::join_rel(dir, rest),
                None => normal,
            },
            None => normal,
        }
    }

    /// Whether tree path `rel` lies below one of the module folders that
    /// are not the tree's root.
    pub fn below_module_folder(&self, rel: &str) -> bool {
        self.module_dirs.values().any(|dir| {
            !dir.is_empty()
                && rel
                    .strip_prefix(dir.as_str())
                    .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
        })
    }

    /// Tree files whose name is `name`, under `dir`, sorted.
    pub fn find_by_name(&self, dir: &str, name: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.files
            .paths()
            .filter(|p| p.starts_with(&prefix) && super::layout::file_name(p) == name)
            .map(str::to_string)
            .collect()
    }
}

/// Parts of an install that a source tree does not have: paths into them are
/// not checked outside an installed project.
const INSTALL_TIME: [&str; 6] = [
    "_config/",
    "_cfg/",
    "custom/",
    "scripts/",
    "_memory/",
    "config.yaml",
];

impl Tree<'_> {
    /// Warns for every `{project-root}/_bmad/…` path (in an installed
    /// project, into its install folder) of `text` (a body starting at line
    /// `first_line` of `rel`) that names no file.
    pub fn check_install_paths(
        &self,
        text: &str,
        rel: &str,
        first_line: u32,
        vars: &Vars,
        diags: &mut Diagnostics,
    ) {
        for (written, line) in super::steps::named_files(text) {
            let Some(inside) = self.inside_install(&written) else {
                continue;
            };
            if inside.contains('*') || self.names_install_state(&written) {
                continue;
            }
            let path = self.resolve(&written, "", vars);
            if !self.files.is_file(&path) {
                diags.warning(
                    "bmad-missing-file",
                    rel,
                    Pos::new(first_line + line - 1, 1),
                    format!("`{written}` names no file"),
                );
            }
        }
    }

    /// What follows `{project-root}/_bmad/` (in an installed project, its
    /// install folder) in `written`, if it starts so.
    fn inside_install<'w>(&self, written: &'w str) -> Option<&'w str> {
        written
            .strip_prefix("{project-root}/")?
            .strip_prefix(self.install_dir.unwrap_or(INSTALL_DIR))?
            .strip_prefix('/')
    }

    /// Whether `written` names a part of an install (its config, state or
    /// scripts; under `_bmad/`, or `bmad/` as the 6.0 alphas wrote) in a
    /// source tree, which has none: not a missing file.
    pub fn names_install_state(&self, written: &str) -> bool {
        let Some(in_project) = written.strip_prefix("{project-root}/") else {
            return false;
        };
        if self.install_dir.is_some() {
            return false;
        }
        [INSTALL_DIR, ALPHA_INSTALL_DIR]
            .iter()
            .filter_map(|dir| in_project.strip_prefix(dir)?.strip_prefix('/'))
            .any(|inside| {
                INSTALL_TIME
                    .iter()
                    .any(|p| inside.contains(p) && (p.ends_with('/') || inside.ends_with(p)))
            })
    }
}

/// `a/./b/../c` → `a/c`; leading `..` that would leave the tree are dropped.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_rooted_and_module_paths() {
        let files = SourceSnapshot::default();
        let tree = Tree {
            files: &files,
            install_dir: None,
            module_dirs: BTreeMap::from([("bmm".to_string(), "src/bmm".to_string())]),
        };
        let mut vars = Vars::new(None, INSTALL_DIR);
        vars.set("installed_path", "src/bmm/workflows/prd");
        assert_eq!(
            tree.resolve("'./step-02.md'", "src/bmm/workflows/prd/steps", &vars),
            "src/bmm/workflows/prd/steps/step-02.md"
        );
        assert_eq!(
            tree.resolve("{project-root}/_bmad/bmm/data/x.csv", "a", &vars),
            "src/bmm/data/x.csv"
        );
        // Before 6.0 the install folder was `bmad`, then a variable.
        assert_eq!(
            tree.resolve("{project-root}/bmad/bmm/data/x.csv", "a", &vars),
            "src/bmm/data/x.csv"
        );
        assert_eq!(
            tree.resolve("{project-root}/{bmad_folder}/bmm/data/x.csv", "a", &vars),
            "src/bmm/data/x.csv"
        );
        assert_eq!(
            tree.resolve("{installed_path}/../t.md", "a", &vars),
            "src/bmm/workflows/t.md"
        );
        assert_eq!(tree.resolve("../../x.md", "a", &vars), "x.md");
        // With a project root, values carrying it still name tree files.
        let mut rooted = Vars::new(Some("/srv/app"), INSTALL_DIR);
        rooted.set("installed_path", "/srv/app/_bmad/bmm/workflows/prd");
        assert_eq!(
            tree.resolve("{project-root}/_bmad/bmm/data/x.csv", "a", &rooted),
            "src/bmm/data/x.csv"
        );
        assert_eq!(
            tree.resolve("{installed_path}/t.md", "a", &rooted),
            "src/bmm/workflows/prd/t.md"
        );
        rooted.set("elsewhere", "/srv/apple/x.md");
        assert_eq!(tree.resolve("{elsewhere}", "a", &rooted), "srv/apple/x.md");
    }
}
