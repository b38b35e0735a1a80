//! Agent dependencies: finding `tasks`, `templates`, `checklists`, `data` and
//! `utils` files for a BMAD agent and inlining them as [`Resource`]s.
//!
//! A name is looked up in each search base (the agent's pack, then the core,
//! then the shared `common` folders — see [`super::packs::search_bases`]),
//! under the folder of its kind, as written and then with the usual
//! extensions. A name that cannot be found is a warning naming the agent file
//! and the folders searched. Each file is read once, however many agents use
//! it, so its warnings are reported once too.

use super::template;
use crate::bundle::Resource;
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::{SourceSnapshot, join_rel};
use std::collections::HashMap;

/// The resource folders an agent's `dependencies:` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DependencyKind {
    Tasks,
    Templates,
    Checklists,
    /// Knowledge files; inlined into [`crate::bundle::AgentSpec::data`].
    Data,
    /// Shared helpers (`common/utils`); also inlined into `data`.
    Utils,
}

impl DependencyKind {
    pub const ALL: [Self; 5] = [
        Self::Tasks,
        Self::Templates,
        Self::Checklists,
        Self::Data,
        Self::Utils,
    ];

    /// The folder the kind lives in, which is also its key in `dependencies:`.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Tasks => "tasks",
            Self::Templates => "templates",
            Self::Checklists => "checklists",
            Self::Data => "data",
            Self::Utils => "utils",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.folder().eq_ignore_ascii_case(key.trim()))
    }

    /// Extensions tried, in order, when a name has none. Templates prefer YAML
    /// (v4 packs ship `x-tmpl.yaml` beside an older `x-tmpl.md`).
    fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::Templates => &[".yaml", ".yml", ".md"],
            _ => &[".md", ".yaml", ".yml", ".txt"],
        }
    }
}

/// One name in an agent's `dependencies:`, before lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyRef {
    pub kind: DependencyKind,
    /// Cleaned name as written (`create-doc.md`, `prd-tmpl`).
    pub name: String,
    pub pos: Pos,
}

/// Where a pack keeps its project configuration (where the PRD,
/// architecture and stories live), which its tasks load; both spellings
/// occur in the tasks' text.
pub const CORE_CONFIG_FILES: [&str; 2] = ["core-config.yaml", "core-config.yml"];

/// Finds dependency files in the source snapshot, caching each file's
/// content (a YAML template's outline is rendered once).
pub struct ResourceLoader<'a> {
    files: &'a SourceSnapshot,
    /// (path, rendered as a template outline) → content, `None` when unreadable.
    cache: HashMap<(String, bool), Option<String>>,
}

impl<'a> ResourceLoader<'a> {
    pub fn new(files: &'a SourceSnapshot) -> Self {
        Self {
            files,
            cache: HashMap::new(),
        }
    }

    /// The resource `dep` names, searched under `bases`; `None` (with a
    /// warning against `agent_rel`) when it is missing, unreadable or unsafe.
    pub fn resolve(
        &mut self,
        dep: &DependencyRef,
        bases: &[String],
        agent_rel: &str,
        diags: &mut Diagnostics,
    ) -> Option<Resource> {
        let folder = dep.kind.folder();
        if !is_safe_name(&dep.name) {
            diags.warning(
                "bmad-dependency-path",
                agent_rel,
                dep.pos,
                format!(
                    "dependency `{}` ({folder}) points outside the pack folders: ignored",
                    dep.name
                ),
            );
            return None;
        }
        let dirs: Vec<String> = bases.iter().map(|b| join_rel(b, folder)).collect();
        let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let path = match self
            .files
            .find_resource(&dir_refs, &dep.name, dep.kind.extensions())
        {
            Ok(path) => path,
            Err(tried) => {
                let searched: Vec<String> = dirs.iter().map(|d| format!("{d}/")).collect();
                diags
                    .warning(
                        "bmad-missing-dependency",
                        agent_rel,
                        dep.pos,
                        format!(
                            "dependency `{}` ({folder}) not found; searched {}",
                            dep.name,
                            searched.join(", ")
                        ),
                    )
                    .hint = Some(format!("tried {}", tried.join(", ")));
                return None;
            }
        };
        let render = dep.kind == DependencyKind::Templates && template::is_yaml_path(&path);
        let content = self.load(&path, render, diags)?;
        Some(Resource {
            name: dep.name.clone(),
            path,
            content,
        })
    }

    /// The project configuration (`core-config.yaml`) found first under
    /// `bases`, as a resource; `None` when no base has one.
    pub fn core_config(&mut self, bases: &[String], diags: &mut Diagnostics) -> Option<Resource> {
        let path = bases
            .iter()
            .flat_map(|base| CORE_CONFIG_FILES.map(|name| join_rel(base, name)))
            .find(|path| self.files.is_file(path))?;
        let content = self.load(&path, false, diags)?;
        Some(Resource {
            name: CORE_CONFIG_FILES[0].to_string(),
            path,
            content,
        })
    }

    fn load(&mut self, path: &str, render: bool, diags: &mut Diagnostics) -> Option<String> {
        let key = (path.to_string(), render);
        if let Some(cached) = self.cache.get(&key) {
            return cached.clone();
        }
        let content = match self.files.text(path) {
            Ok(text) if render => Some(template::render_outline(text, path, diags)),
            Ok(text) => Some(text.to_string()),
            Err(message) => {
                diags.warning("bmad-read", path, Pos::new(1, 1), message);
                None
            }
        };
        self.cache.insert(key, content.clone());
        content
    }
}

/// A dependency name may name a file in a sub-folder, but never climb out of
/// the pack or be absolute.
fn is_safe_name(name: &str) -> bool {
    !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && !name.contains(':')
        && name.split('/').all(|part| part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_folders() {
        assert_eq!(
            DependencyKind::from_key("Utils"),
            Some(DependencyKind::Utils)
        );
        assert_eq!(DependencyKind::from_key("workflows"), None);
        assert_eq!(DependencyKind::Checklists.folder(), "checklists");
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(is_safe_name("create-doc.md"));
        assert!(is_safe_name("sub/x.md"));
        assert!(!is_safe_name("../../etc/passwd"));
        assert!(!is_safe_name("/etc/passwd"));
        assert!(!is_safe_name("C:\\x"));
    }
}
