//! Writing a rendered bundle so that a failure never leaves half a bundle.
//!
//! Everything is written into a fresh sibling directory of the output
//! (`.<name>.tmp-<pid>-<n>`, same parent so `rename` is a metadata update on
//! one filesystem), then every file and directory is fsync'd. Only then is
//! the old directory renamed away, the new one renamed into place, and the
//! old one deleted. Any failure before the swap deletes the temporary
//! directory and leaves the output exactly as it was; a failed second rename
//! puts the old directory back. An existing `runtime.yaml` is carried over
//! unchanged (hard-linked, or copied where links are not supported), so the
//! user's configuration survives every run.
//!
//! Files identical to the previous bundle's are hard-linked from it rather
//! than rewritten (see [`Staging::place_all`]).
//!
//! The renames are not fsync'd (each fsync costs milliseconds): after a
//! power loss mid-swap every directory still holds a complete bundle, the
//! new one possibly under its temporary name, and `generate` recreates it.

use super::manifest::Manifest;
use super::{CheckResult, FileStatus, OutputError, RUNTIME_FILE, RenderedBundle, WriteReport};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Replaces `out_dir` with the rendered bundle (see the module docs).
pub(super) fn replace_dir(
    out_dir: &Path,
    rendered: &RenderedBundle,
) -> Result<WriteReport, OutputError> {
    let target = Target::inspect(out_dir)?;
    let mut staging = Staging::create(&target)?;

    let previous = target.exists.then_some(target.path.as_path());
    let existing_runtime = target.path.join(RUNTIME_FILE);
    let runtime_written = !(target.exists && existing_runtime.is_file());
    let mut files: Vec<(&str, &[u8])> = rendered
        .files
        .iter()
        .map(|(rel, bytes)| (rel.as_str(), bytes.as_slice()))
        .collect();
    if runtime_written {
        files.push((RUNTIME_FILE, rendered.runtime_yaml.as_bytes()));
    } else {
        staging.carry_over(&existing_runtime, RUNTIME_FILE)?;
    }
    let reused = staging.place_all(&files, previous)?;
    staging.swap_into(&target)?;

    Ok(WriteReport {
        out_dir: target.path,
        files: rendered
            .files
            .iter()
            .map(|(rel, bytes)| (rel.clone(), bytes.len() as u64))
            .collect(),
        runtime_written,
        reused,
    })
}

/// Compares the rendered bundle with `out_dir` without writing anything.
pub(super) fn compare_dir(
    out_dir: &Path,
    rendered: &RenderedBundle,
) -> Result<CheckResult, OutputError> {
    let mut differences = Vec::new();
    let on_disk = match fs::metadata(out_dir) {
        Ok(meta) if meta.is_dir() => list_files(out_dir)?,
        Ok(_) => return Err(OutputError::NotADirectory(out_dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("cannot read", out_dir, e)),
    };
    for (rel, bytes) in &rendered.files {
        match fs::read(out_dir.join(rel)) {
            Ok(existing) if existing == *bytes => {}
            Ok(_) => differences.push((rel.clone(), FileStatus::Changed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                differences.push((rel.clone(), FileStatus::Missing));
            }
            Err(e) => return Err(io("cannot read", &out_dir.join(rel), e)),
        }
    }
    if !on_disk.iter().any(|rel| rel == RUNTIME_FILE) {
        differences.push((RUNTIME_FILE.to_string(), FileStatus::Missing));
    }
    for rel in on_disk {
        if rel != RUNTIME_FILE && !rendered.files.contains_key(&rel) {
            differences.push((rel, FileStatus::Stale));
        }
    }
    differences.sort();
    Ok(CheckResult { differences })
}

/// The output directory as found before writing.
struct Target {
    /// The directory itself (symlinks resolved, so the swap replaces the
    /// directory and not a link to it).
    path: PathBuf,
    parent: PathBuf,
    /// Its file name, used to name the sibling directories.
    name: String,
    exists: bool,
}

impl Target {
    fn inspect(out_dir: &Path) -> Result<Self, OutputError> {
        let (path, exists) = match fs::metadata(out_dir) {
            Ok(meta) if meta.is_dir() => {
                let real =
                    fs::canonicalize(out_dir).map_err(|e| io("cannot resolve", out_dir, e))?;
                let empty = fs::read_dir(&real)
                    .map_err(|e| io("cannot read", &real, e))?
                    .next()
                    .is_none();
                if !empty && !Manifest::marks_bundle_dir(&real) {
                    return Err(OutputError::NotABundleDir(out_dir.to_path_buf()));
                }
                (real, true)
            }
            Ok(_) => return Err(OutputError::NotADirectory(out_dir.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                std::path::absolute(out_dir).map_err(|e| io("cannot resolve", out_dir, e))?,
                false,
            ),
            Err(e) => return Err(io("cannot read", out_dir, e)),
        };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(OutputError::NotADirectory(out_dir.to_path_buf()));
        };
        let parent = parent.to_path_buf();
        if !exists {
            fs::create_dir_all(&parent).map_err(|e| io("cannot create", &parent, e))?;
        }
        Ok(Self {
            name: name.to_string_lossy().into_owned(),
            parent,
            path,
            exists,
        })
    }

    /// A path next to the output directory that does not exist yet.
    fn sibling(&self, kind: &str, attempt: u32) -> PathBuf {
        self.parent.join(format!(
            ".{}.{kind}-{}-{attempt}",
            self.name,
            std::process::id()
        ))
    }
}

/// The temporary directory a new bundle is written into. Dropping it
/// before [`Staging::swap_into`] succeeded deletes it.
struct Staging {
    dir: PathBuf,
    /// Directories created inside (and the staging dir itself), to fsync.
    dirs: BTreeSet<PathBuf>,
    swapped: bool,
}

impl Staging {
    fn create(target: &Target) -> Result<Self, OutputError> {
        let mut attempt = 0;
        loop {
            let dir = target.sibling("tmp", attempt);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(Self {
                        dirs: BTreeSet::from([dir.clone()]),
                        dir,
                        swapped: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(io("cannot create", &dir, e)),
            }
        }
    }

    /// Puts every file into the staging directory and makes it durable.
    ///
    /// A file whose bytes equal the same file of the previous bundle is
    /// hard-linked from it: its data is already on disk, so it costs neither
    /// a write nor an fsync (regenerating after a small edit touches only
    /// the files that changed). Every other file is written and fsync'd.
    /// An fsync costs milliseconds on many disks and a bundle can have
    /// thousands of files, so the work runs on several threads and the
    /// filesystem commits the fsyncs in a few journal transactions instead
    /// of one per file. Returns how many files were reused.
    fn place_all(
        &mut self,
        files: &[(&str, &[u8])],
        previous: Option<&Path>,
    ) -> Result<usize, OutputError> {
        let mut jobs = Vec::with_capacity(files.len());
        for (rel, bytes) in files {
            let old = previous.map(|dir| join_rel(dir, rel));
            jobs.push((self.prepare(rel)?, old, *bytes));
        }
        let reused = AtomicUsize::new(0);
        run_parallel(&jobs, |(path, old, bytes)| {
            if place(path, old.as_deref(), bytes)? {
                reused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })?;
        let dirs: Vec<&PathBuf> = self.dirs.iter().collect();
        run_parallel(&dirs, |dir| sync_path(dir))?;
        Ok(reused.into_inner())
    }

    /// Carries a file of the previous bundle over unchanged (hard link, or
    /// a durable copy where links are not supported).
    fn carry_over(&mut self, from: &Path, rel: &str) -> Result<(), OutputError> {
        let path = self.prepare(rel)?;
        if fs::hard_link(from, &path).is_ok() {
            return Ok(());
        }
        fs::copy(from, &path).map_err(|e| io("cannot copy", from, e))?;
        sync_path(&path)
    }

    /// The absolute path for `rel`, with its parent directories created.
    fn prepare(&mut self, rel: &str) -> Result<PathBuf, OutputError> {
        let path = join_rel(&self.dir, rel);
        if let Some(parent) = path.parent()
            && !self.dirs.contains(parent)
        {
            fs::create_dir_all(parent).map_err(|e| io("cannot create", parent, e))?;
            for dir in parent.ancestors().take_while(|d| *d != self.dir) {
                self.dirs.insert(dir.to_path_buf());
            }
        }
        Ok(path)
    }

    /// Moves the staged bundle into place (see the module docs).
    fn swap_into(mut self, target: &Target) -> Result<(), OutputError> {
        if !target.exists {
            fs::rename(&self.dir, &target.path)
                .map_err(|e| io("cannot move the new bundle to", &target.path, e))?;
            self.swapped = true;
            return Ok(());
        }
        let old = (0..100)
            .map(|attempt| target.sibling("old", attempt))
            .find(|p| fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| target.sibling("old", 100));
        fs::rename(&target.path, &old)
            .map_err(|e| io("cannot move the previous bundle away from", &target.path, e))?;
        if let Err(e) = fs::rename(&self.dir, &target.path) {
            // Put the previous bundle back; if even that fails, say where it is.
            return Err(match fs::rename(&old, &target.path) {
                Ok(()) => io("cannot move the new bundle to", &target.path, e),
                Err(_) => io(
                    "cannot move the new bundle into place; the previous one is at",
                    &old,
                    e,
                ),
            });
        }
        self.swapped = true;
        fs::remove_dir_all(&old).map_err(|e| io("cannot remove the previous bundle", &old, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.swapped {
            // Best effort: the error that got us here is what the caller
            // needs to see, not a failure to clean up after it.
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Threads placing files at most: enough for the filesystem to batch
/// fsyncs into few journal commits, few enough to stay far below
/// open-file limits.
const WRITE_THREADS: usize = 16;

/// Runs `job` on every item from up to [`WRITE_THREADS`] threads; the first error wins.
fn run_parallel<T: Sync>(
    items: &[T],
    job: impl Fn(&T) -> Result<(), OutputError> + Sync,
) -> Result<(), OutputError> {
    let chunk = items.len().div_ceil(WRITE_THREADS).max(1);
    let job = &job;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(job)))
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker.join().unwrap_or_else(|_| {
                Err(OutputError::Io {
                    action: "cannot write",
                    path: PathBuf::new(),
                    source: std::io::Error::other("a writer thread panicked"),
                })
            })
        })
    })
}

/// Puts one file at `path`: a hard link to `old` when that file has the
/// same bytes (returns `true`), else a fresh fsync'd file.
fn place(path: &Path, old: Option<&Path>, bytes: &[u8]) -> Result<bool, OutputError> {
    if let Some(old) = old
        && fs::read(old).is_ok_and(|existing| existing == bytes)
        && fs::hard_link(old, path).is_ok()
    {
        return Ok(true);
    }
    let mut file = fs::File::create(path).map_err(|e| io("cannot create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io("cannot write", path, e))?;
    Ok(false)
}

/// fsyncs one file or directory.
fn sync_path(dir: &Path) -> Result<(), OutputError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot sync", dir, e))
}

/// Every non-directory entry under `root`, as sorted `/`-separated relative paths.
fn list_files(root: &Path) -> Result<Vec<String>, OutputError> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| io("cannot read", &dir, e))? {
            let entry = entry.map_err(|e| io("cannot read", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{prefix}{name}");
            let kind = entry
                .file_type()
                .map_err(|e| io("cannot read", &entry.path(), e))?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{rel}/")));
            } else {
                found.push(rel);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `dir` joined with a `/`-separated relative path.
fn join_rel(dir: &Path, rel: &str) -> PathBuf {
    rel.split('/')
        .fold(dir.to_path_buf(), |p, part| p.join(part))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> OutputError {
    OutputError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
