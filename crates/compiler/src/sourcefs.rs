//! Reading source files: text decoding and resource lookup shared by both layouts.
//!
//! Paths given to diagnostics are always relative to the source directory
//! with `/` separators, so messages read the same on every machine.

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Reads `rel` under `src` as UTF-8 text (a leading BOM is dropped).
/// The error is a sentence for a diagnostic.
pub fn read_text(src: &Path, rel: &str) -> Result<String, String> {
    let bytes = std::fs::read(src.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    decode_text(rel, bytes)
}

/// UTF-8 text of a file's bytes, without a leading BOM.
fn decode_text(rel: &str, bytes: Vec<u8>) -> Result<String, String> {
    let text = String::from_utf8(bytes).map_err(|e| not_utf8(rel, &e.utf8_error()))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// The diagnostic sentence for a file that is not UTF-8.
fn not_utf8(rel: &str, e: &std::str::Utf8Error) -> String {
    format!(
        "{rel} is not UTF-8 text (invalid byte at offset {})",
        e.valid_up_to()
    )
}

/// Where a resource name was found, or the relative paths that were tried;
/// `is_file` says whether a relative path is a file (a snapshot's file list).
fn find_resource_with(
    dirs: &[&str],
    name: &str,
    extensions: &[&str],
    is_file: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    // Candidates are tried in one reused buffer; the list of paths tried is
    // only built when nothing is found.
    let mut candidate = String::new();
    let mut found = false;
    for_each_candidate(dirs, name, extensions, &mut candidate, |path| {
        found = is_file(path);
        found
    });
    if found {
        return Ok(candidate);
    }
    let mut tried = Vec::new();
    for_each_candidate(dirs, name, extensions, &mut candidate, |path| {
        tried.push(path.to_string());
        false
    });
    Err(tried)
}

/// Puts each path where `name` may be, in search order, into `candidate`
/// and calls `stop` with it, until `stop` returns true: in each of `dirs`,
/// the name as given and, unless it already ends with one of `extensions`,
/// the name with each of them appended.
fn for_each_candidate(
    dirs: &[&str],
    name: &str,
    extensions: &[&str],
    candidate: &mut String,
    mut stop: impl FnMut(&str) -> bool,
) {
    let has_ext = extensions.iter().any(|ext| name.ends_with(ext));
    for dir in dirs {
        // As `join_rel(dir, name)`.
        candidate.clear();
        if !dir.is_empty() {
            candidate.push_str(dir.trim_end_matches('/'));
            candidate.push('/');
        }
        candidate.push_str(name);
        if stop(candidate) {
            return;
        }
        if has_ext {
            continue;
        }
        let base = candidate.len();
        for ext in extensions {
            candidate.truncate(base);
            candidate.push_str(ext);
            if stop(candidate) {
                return;
            }
        }
    }
}

/// `dir/name` with `/` separators (an empty dir means the source root).
pub fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// Every regular file below `src`, as sorted relative paths; skips the
/// folders of [`NOT_SOURCES`], generated bundles and `data_dirs` (the data
/// paths the configuration names, as given), and follows symbolic links
/// (see [`walk`]).
pub fn walk_files(src: &Path, data_dirs: &[PathBuf]) -> Vec<String> {
    walk(src, data_dirs).files
}

/// What [`walk`] found below a source directory.
struct Walked {
    /// Every regular file, as sorted relative paths.
    files: Vec<String>,
    /// Every directory that was descended into, as relative paths.
    dirs: BTreeSet<String>,
    /// Links that were not followed: (relative path, why).
    unfollowed: Vec<(String, String)>,
}

/// Folders never read as sources: version control, build output, and
/// bmad2pf's own data directory (`memory.path`'s default), whose database
/// changes with every write.
const NOT_SOURCES: [&str; 3] = [".git", "target", ".bmad2pf"];

/// Whether a folder's entries are those of a generated bundle (`bundle.json`
/// beside `manifest.json`): the output of `generate`, not a source, even
/// when `--out` is inside `--src`.
fn holds_a_bundle(entries: &[std::fs::DirEntry]) -> bool {
    let has = |wanted: &str| entries.iter().any(|e| e.file_name() == wanted);
    has("bundle.json") && has("manifest.json")
}

/// A directory still to list: its path relative to the source root, and
/// the real paths of it and the directories above it.
struct PendingDir {
    rel: PathBuf,
    real_path: Vec<PathBuf>,
}

/// Lists `src` once: its regular files and the directories that hold them
/// (see [`walk_files`] for what is skipped).
///
/// Symbolic links are followed, to files and to folders, inside the tree or
/// out of it: installers link skill folders (`.claude/skills/<name>`) to
/// one shared copy, and the files are read under the link's path. A link
/// whose target is missing, or a folder link back to a folder it is in (a
/// loop), is not followed and is reported.
fn walk(src: &Path, data_dirs: &[PathBuf]) -> Walked {
    let mut files = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut unfollowed = Vec::new();
    let root_real = std::fs::canonicalize(src).unwrap_or_else(|_| src.to_path_buf());
    // Only data directories that exist can be met, and they are met by their real path.
    let data_dirs: Vec<PathBuf> = data_dirs
        .iter()
        .filter_map(|dir| std::fs::canonicalize(dir).ok())
        .filter(|dir| dir.starts_with(&root_real))
        .collect();
    let mut stack = vec![PendingDir {
        rel: PathBuf::new(),
        real_path: vec![root_real],
    }];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(src.join(&dir.rel)) else {
            continue;
        };
        let entries: Vec<std::fs::DirEntry> = entries.flatten().collect();
        if !dir.rel.as_os_str().is_empty() && holds_a_bundle(&entries) {
            if let Some(text) = dir.rel.to_str() {
                dirs.remove(&text.replace('\\', "/"));
            }
            continue;
        }
        for entry in entries {
            let Ok(mut kind) = entry.file_type() else {
                continue;
            };
            let rel = dir.rel.join(entry.file_name());
            let Some(text) = rel.to_str().map(|t| t.replace('\\', "/")) else {
                continue;
            };
            let is_link = kind.is_symlink();
            if is_link {
                match std::fs::metadata(entry.path()) {
                    Ok(target) => kind = target.file_type(),
                    Err(e) => {
                        unfollowed.push((
                            text,
                            format!("a symbolic link that leads nowhere ({e}): not read"),
                        ));
                        continue;
                    }
                }
            }
            if kind.is_dir() {
                let name = entry.file_name();
                if NOT_SOURCES.iter().any(|skipped| name == *skipped) {
                    continue;
                }
                let real = if is_link {
                    std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path())
                } else {
                    // Not a link, below a folder whose real path is known.
                    dir.real_path
                        .last()
                        .map_or_else(|| entry.path(), |up| up.join(&name))
                };
                if data_dirs.contains(&real) {
                    continue;
                }
                if dir.real_path.contains(&real) {
                    unfollowed.push((
                        text,
                        "a symbolic link to a folder it is in (a loop): not followed".to_string(),
                    ));
                    continue;
                }
                let mut real_path = dir.real_path.clone();
                real_path.push(real);
                stack.push(PendingDir { rel, real_path });
                dirs.insert(text);
            } else if kind.is_file() {
                files.push(text);
            }
        }
    }
    files.sort();
    unfollowed.sort();
    Walked {
        files,
        dirs,
        unfollowed,
    }
}

/// Every file of a source directory, read once: the source hash is computed
/// from it ([`Self::hash`]), and readers take file text and resource lookups
/// from here instead of going back to the disk (a 1,000-agent project is
/// then read once, not once for the hash and again for parsing).
#[derive(Debug, Clone, Default)]
pub struct SourceSnapshot {
    root: PathBuf,
    /// Relative path (`/` separators) → bytes, for every file [`walk_files`] lists.
    files: BTreeMap<String, Vec<u8>>,
    /// Every directory below the root that was listed (relative paths).
    dirs: BTreeSet<String>,
    /// Files that were listed but could not be read, with the reason.
    unreadable: Vec<(String, String)>,
    /// Symbolic links that were not followed, with the reason.
    unfollowed: Vec<(String, String)>,
}

impl SourceSnapshot {
    /// Reads every file below `src` (see [`walk_files`] for what is skipped).
    pub fn load(src: &Path) -> Self {
        Self::load_skipping(src, &[])
    }

    /// Like [`Self::load`], skipping the data directories `data_dirs` too.
    pub fn load_skipping(src: &Path, data_dirs: &[PathBuf]) -> Self {
        let Walked {
            files: listed,
            dirs,
            unfollowed,
        } = walk(src, data_dirs);
        // Reading a thousand small files is mostly system calls: on all cores.
        let read: Vec<_> = listed
            .par_iter()
            .map(|rel| std::fs::read(src.join(rel)))
            .collect();
        let mut files = BTreeMap::new();
        let mut unreadable = Vec::new();
        for (rel, read) in listed.into_iter().zip(read) {
            match read {
                Ok(bytes) => {
                    files.insert(rel, bytes);
                }
                Err(e) => {
                    let message = format!("cannot read {rel}: {e}");
                    unreadable.push((rel, message));
                }
            }
        }
        Self {
            root: src.to_path_buf(),
            files,
            dirs,
            unreadable,
            unfollowed,
        }
    }

    /// A copy in which the files of `texts` hold those texts instead
    /// (BMAD's rendered skills, rendered). The copy's [`Self::hash`] is
    /// not the sources' hash: take that from the original.
    pub fn with_texts(&self, texts: BTreeMap<String, String>) -> Self {
        let mut copy = self.clone();
        for (rel, text) in texts {
            copy.files.insert(rel, text.into_bytes());
        }
        copy
    }

    /// The source directory this snapshot was read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The source hash: hex sha256 over every file that could be read, in
    /// path order: relative path, NUL, bytes. One stream over megabytes for
    /// a large project, so [`crate::compile_with`] runs it beside the parsing.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (rel, bytes) in &self.files {
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            hasher.update(bytes);
        }
        hex::encode(hasher.finalize())
    }

    /// Files that were listed but could not be read: (path, message).
    pub fn unreadable(&self) -> &[(String, String)] {
        &self.unreadable
    }

    /// Symbolic links that were not followed (missing target, loop): (path, message).
    pub fn unfollowed(&self) -> &[(String, String)] {
        &self.unfollowed
    }

    /// Every file's relative path, sorted (layout detection looks at names only).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn is_file(&self, rel: &str) -> bool {
        self.files.contains_key(rel)
    }

    /// Like [`read_text`], from the snapshot, without copying the text.
    pub fn text(&self, rel: &str) -> Result<&str, String> {
        let Some(bytes) = self.files.get(rel) else {
            return Err(format!(
                "cannot read {rel}: not a file of the source directory"
            ));
        };
        let text = std::str::from_utf8(bytes).map_err(|e| not_utf8(rel, &e))?;
        Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
    }

    /// Whether `rel` is a directory below the root (the root itself is `""`).
    pub fn is_dir(&self, rel: &str) -> bool {
        rel.is_empty() || self.dirs.contains(rel.trim_end_matches('/'))
    }

    /// Names of the directories directly in `dir`, sorted.
    pub fn list_dirs(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{}/", dir.trim_end_matches('/'))
        };
        self.dirs
            .range(prefix.clone()..)
            .take_while(|rel| rel.starts_with(&prefix))
            .filter_map(|rel| rel.strip_prefix(&prefix))
            .filter(|name| !name.contains('/'))
            .map(str::to_string)
            .collect()
    }

    /// Names of the files directly in `dir`, sorted.
    pub fn list_files(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{}/", dir.trim_end_matches('/'))
        };
        self.files
            .range(prefix.clone()..)
            .map(|(rel, _)| rel)
            .take_while(|rel| rel.starts_with(&prefix))
            .filter_map(|rel| rel.strip_prefix(&prefix))
            .filter(|name| !name.contains('/'))
            .map(str::to_string)
            .collect()
    }

    /// Where a resource name was found, or the relative paths that were tried:
    /// in each of `dirs`, `name` as given, then with each of `extensions`
    /// appended unless it already ends with one.
    pub fn find_resource(
        &self,
        dirs: &[&str],
        name: &str,
        extensions: &[&str],
    ) -> Result<String, Vec<String>> {
        find_resource_with(dirs, name, extensions, |rel| self.is_file(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_finds_and_hashes() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("tasks/sub")).map_err(|e| e.to_string())?;
        std::fs::write(root.join("tasks/a.md"), "\u{feff}A").map_err(|e| e.to_string())?;
        std::fs::write(root.join("tasks/sub/b.md"), "B").map_err(|e| e.to_string())?;
        std::fs::write(root.join("tasksx"), "x").map_err(|e| e.to_string())?;
        let snap = SourceSnapshot::load(root);
        assert_eq!(snap.list_files("tasks"), ["a.md"]);
        assert_eq!(snap.text("tasks/a.md")?, "A");
        // Directories are known without asking the disk again.
        assert_eq!(snap.list_dirs(""), ["tasks"]);
        assert_eq!(snap.list_dirs("tasks"), ["sub"]);
        assert!(snap.is_dir("") && snap.is_dir("tasks/sub") && snap.is_dir("tasks/"));
        assert!(!snap.is_dir("tasksx") && !snap.is_dir("tasks/a.md"));
        assert_eq!(
            snap.find_resource(&["tasks"], "a", &[".md"]),
            Ok("tasks/a.md".into())
        );
        assert_eq!(
            snap.find_resource(&["tasks"], "c", &[".md"]),
            Err(vec!["tasks/c".to_string(), "tasks/c.md".to_string()])
        );
        assert_eq!(snap.hash().len(), 64);
        // Search order: each folder in turn, the name as given, then with
        // each extension unless it has one already.
        let never = |_: &str| false;
        assert_eq!(
            find_resource_with(&["tasks", "data/"], "x", &[".md", ".yaml"], never),
            Err([
                "tasks/x",
                "tasks/x.md",
                "tasks/x.yaml",
                "data/x",
                "data/x.md",
                "data/x.yaml"
            ]
            .map(String::from)
            .to_vec())
        );
        assert_eq!(
            find_resource_with(&["", "data"], "x.md", &[".md"], never),
            Err(vec!["x.md".to_string(), "data/x.md".to_string()])
        );
        assert_eq!(
            find_resource_with(&["tasks", "data"], "x", &[".md"], |p| p == "data/x.md"),
            Ok("data/x.md".to_string())
        );
        assert_eq!(SourceSnapshot::load(root).hash(), snap.hash());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_followed_and_loops_and_dead_links_reported() -> Result<(), String> {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (outside, root) = (dir.path().join("shared"), dir.path().join("src"));
        let io = |e: std::io::Error| e.to_string();
        std::fs::create_dir_all(outside.join("skill")).map_err(io)?;
        std::fs::write(outside.join("skill/SKILL.md"), "S").map_err(io)?;
        std::fs::write(outside.join("alpha.md"), "A").map_err(io)?;
        std::fs::create_dir_all(root.join("agents/deep")).map_err(io)?;
        symlink(outside.join("alpha.md"), root.join("agents/a.md")).map_err(io)?;
        symlink(outside.join("skill"), root.join("skills")).map_err(io)?;
        symlink(root.join("agents"), root.join("agents/deep/up")).map_err(io)?;
        symlink(root.join("gone.md"), root.join("agents/dead.md")).map_err(io)?;
        let snap = SourceSnapshot::load(&root);
        assert_eq!(
            snap.paths().collect::<Vec<_>>(),
            ["agents/a.md", "skills/SKILL.md"]
        );
        assert_eq!(snap.text("agents/a.md")?, "A");
        assert!(snap.is_dir("skills"));
        let unfollowed: Vec<&str> = snap
            .unfollowed()
            .iter()
            .map(|(rel, _)| rel.as_str())
            .collect();
        assert_eq!(unfollowed, ["agents/dead.md", "agents/deep/up"]);
        assert!(
            snap.unfollowed()[1].1.contains("loop"),
            "{:?}",
            snap.unfollowed()
        );
        Ok(())
    }

    #[test]
    fn state_and_generated_bundles_are_not_sources() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path();
        let io = |e: std::io::Error| e.to_string();
        for rel in [
            "agents/a.md",
            ".bmad2pf/bmad2pf.db",
            "out/bundle.json",
            "out/manifest.json",
            "out/prompts/a.md",
            "notes/manifest.json",
            "state/docs/s__prd.md",
        ] {
            std::fs::create_dir_all(root.join(rel).parent().unwrap_or(root)).map_err(io)?;
            std::fs::write(root.join(rel), "x").map_err(io)?;
        }
        let snap = SourceSnapshot::load_skipping(
            root,
            &[root.join("state/docs"), root.join("missing"), "/".into()],
        );
        assert_eq!(
            snap.paths().collect::<Vec<_>>(),
            ["agents/a.md", "notes/manifest.json"]
        );
        assert_eq!(snap.list_dirs(""), ["agents", "notes", "state"]);
        Ok(())
    }
}
