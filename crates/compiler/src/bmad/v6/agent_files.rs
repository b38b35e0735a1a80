//! The files an agent's own text names, kept as resources of the agent
//! (its metadata `resources`, read by the model through `read_resource`):
//!
//! - the input file a menu item hands its target (`data`);
//! - the files and folders its critical actions and inline prompts name
//!   by a `{project-root}/…`, `{agent-folder}/…` or `_bmad/…` path into
//!   the BMAD tree: an expert agent's `{agent-folder}/instructions.md`, a
//!   test architect's `testarch/tea-index.csv` and `testarch/knowledge/`,
//!   an install's `_config/task-manifest.csv`;
//! - in an install, its memory folder `_bmad/_memory/<agent>-sidecar/` (in
//!   a source tree, the sidecar folder beside the agent file is read by
//!   [`super::resources`]).
//!
//! A file a workflow or skill folder holds is that flow's resource already
//! and is not copied. A menu input that names no file warns; a path named
//! in text may be an output to write, so one that names nothing is left
//! alone.

use super::agent::AgentDraft;
use super::layout::{INSTALL_DIR, file_name, parent};
use super::paths::Tree;
use super::resources::{Holder, holder_of, is_script};
use super::vars::Vars;
use crate::diag::{Diagnostics, Pos};
use std::collections::{BTreeMap, BTreeSet};

/// Resources per agent id, `<agent>/<path>` → text, where the path is the
/// file's path in the agent's module folder (else in the install folder).
pub type AgentFiles = BTreeMap<String, BTreeMap<String, String>>;

/// The files every agent of `drafts` names (see the module docs); the files
/// taken are marked `used`.
pub fn collect(
    tree: &Tree<'_>,
    vars: &BTreeMap<String, Vars>,
    drafts: &[AgentDraft],
    holders: &BTreeMap<String, Holder>,
    used: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) -> AgentFiles {
    let mut found = AgentFiles::new();
    for draft in drafts {
        let agent_vars = draft.vars(vars);
        let mut taken = Taken {
            tree,
            draft,
            holders,
            files: BTreeMap::new(),
        };
        for item in &draft.menu {
            let Some(written) = &item.input else {
                continue;
            };
            if written.contains('*') || tree.names_install_state(written) {
                continue;
            }
            let rel = tree.resolve(written, parent(&draft.source), &agent_vars);
            if tree.files.is_file(&rel) {
                taken.file(&rel, diags);
            } else {
                diags.warning(
                    "bmad-missing-file",
                    &draft.source,
                    item.pos,
                    format!(
                        "menu `{}`: `data` names `{written}`, which is no file: left out",
                        item.code
                    ),
                );
            }
        }
        // In an install, the agent's sidecar folder is its memory folder.
        if let Some(install_dir) = tree.install_dir
            && let Some(stem) = draft.source_stem()
        {
            let stem = file_name(stem);
            taken.folder(&format!("{install_dir}/_memory/{stem}-sidecar"), diags);
        }
        let install_dir = tree.install_dir.unwrap_or(INSTALL_DIR);
        for text in draft.instructions.iter().chain(&draft.data) {
            for written in named_paths(&text.content, install_dir) {
                if tree.names_install_state(&written) {
                    continue;
                }
                let rel = tree.resolve(&written, "", &agent_vars);
                if !in_bmad_tree(tree, &rel) {
                    continue;
                }
                if tree.files.is_file(&rel) {
                    taken.file(&rel, diags);
                } else if written.ends_with('/') {
                    taken.folder(&rel, diags);
                }
            }
        }
        if !taken.files.is_empty() {
            used.extend(taken.files.keys().cloned());
            let resources = taken
                .files
                .into_iter()
                .map(|(rel, text)| (resource_key(tree, draft, &rel), text))
                .collect();
            found.insert(draft.id.clone(), resources);
        }
    }
    found
}

/// The files kept for one agent, tree path → text.
struct Taken<'a> {
    tree: &'a Tree<'a>,
    draft: &'a AgentDraft,
    /// Folders whose files are their flows' already.
    holders: &'a BTreeMap<String, Holder>,
    files: BTreeMap<String, String>,
}

impl Taken<'_> {
    /// Keeps file `rel` unless a flow holds it or it is a script.
    fn file(&mut self, rel: &str, diags: &mut Diagnostics) {
        if self.files.contains_key(rel) || is_script(rel) || holder_of(self.holders, rel).is_some()
        {
            return;
        }
        match self.tree.files.text(rel) {
            Ok(text) => {
                self.files.insert(rel.to_string(), text.to_string());
            }
            Err(message) => {
                diags.warning(
                    "bmad-read",
                    rel,
                    Pos::new(1, 1),
                    format!("{message}: not a resource of agent `{}`", self.draft.id),
                );
            }
        }
    }

    /// Keeps every file below folder `dir` (none when it is no folder).
    fn folder(&mut self, dir: &str, diags: &mut Diagnostics) {
        let below = format!("{dir}/");
        let tree = self.tree;
        for rel in tree.files.paths().filter(|p| p.starts_with(&below)) {
            self.file(rel, diags);
        }
    }
}

/// Where a path a text names must start to be followed (besides the
/// install folder): the project root (two spellings) or the agent's own
/// folder.
const PATH_ROOTS: [&str; 3] = ["{project-root}/", "{project_root}/", "{agent-folder}/"];

/// The paths a text names from the project root, the agent's folder or
/// `install_dir` (`_bmad/_memory/…`): whitespace, quotes, brackets and
/// `,;|` end one, and a trailing `.` or `:` is punctuation. A folder keeps
/// its trailing `/`.
fn named_paths(text: &str, install_dir: &str) -> Vec<String> {
    let from_install = |token: &str| {
        token
            .strip_prefix(install_dir)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    text.split(|c: char| c.is_whitespace() || "()[]<>'\"`,;|".contains(c))
        .map(|token| token.trim_end_matches(['.', ':']))
        .filter(|token| {
            PATH_ROOTS.iter().any(|root| token.starts_with(root)) || from_install(token)
        })
        .map(str::to_string)
        .collect()
}

/// Whether tree path `rel` lies in BMAD's part of the tree: below a module
/// folder or the install folder (anywhere, when the root is a module).
fn in_bmad_tree(tree: &Tree<'_>, rel: &str) -> bool {
    let install_dir = tree.install_dir.unwrap_or(INSTALL_DIR);
    tree.module_dirs.values().any(String::is_empty)
        || tree.below_module_folder(rel)
        || rel
            .strip_prefix(install_dir)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// `<agent>/<path of rel in the agent's module folder>`, else in the install
/// folder, else its file name.
fn resource_key(tree: &Tree<'_>, draft: &AgentDraft, rel: &str) -> String {
    let install_dir = tree.install_dir.unwrap_or(INSTALL_DIR);
    let local = tree
        .module_dirs
        .get(&draft.module)
        .map(String::as_str)
        .into_iter()
        .chain([install_dir])
        .find_map(|dir| match dir {
            "" => Some(rel),
            dir => rel.strip_prefix(dir)?.strip_prefix('/'),
        })
        .unwrap_or(file_name(rel));
    format!("{}/{local}", draft.id)
}
