//! Writing a rendered bundle so that a failure never leaves half a bundle.
//!
//! Everything is written into a fresh sibling directory of the output
//! (`.<name>.tmp-<pid>-<n>`, same parent so `rename` is a metadata update on
//! one filesystem), then made durable (see [`durability`]). Only then is
//! the old directory renamed away, the new one renamed into place, and the
//! old one deleted. Any failure before the swap deletes the temporary
//! directory and leaves the output exactly as it was; a failed second rename
//! puts the old directory back. An existing `runtime.yaml` is carried over
//! unchanged (hard-linked, or copied where links are not supported), so the
//! user's configuration survives every run.
//!
//! The previous bundle is read once, before anything is written, and each
//! file compared with what this run produces ([`Existing`]). When every file
//! is identical, nothing is left over and `runtime.yaml` is there, the
//! directory already is the result and is left alone: regenerating
//! unchanged sources writes, links and deletes nothing. Otherwise files
//! identical to the previous bundle's are hard-linked from it rather than
//! rewritten (see [`Staging::place_all`]).
//!
//! The renames are not fsync'd (each fsync costs milliseconds): after a
//! power loss mid-swap every directory still holds a complete bundle, the
//! new one possibly under its temporary name, and `generate` recreates it.

use super::manifest::Manifest;
use super::{
    CheckResult, FileBytes, FileStatus, OutputError, RUNTIME_FILE, RenderedBundle, WriteReport,
};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Replaces `out_dir` with the rendered bundle (see the module docs).
pub(super) fn replace_dir(
    out_dir: &Path,
    rendered: &RenderedBundle<'_>,
) -> Result<WriteReport, OutputError> {
    let target = Target::inspect(out_dir)?;
    let existing = if target.exists {
        Existing::read(&target.path, rendered)?
    } else {
        Existing::absent(rendered)
    };
    let existing_runtime = target.path.join(RUNTIME_FILE);
    let runtime_yaml = FileBytes::from(rendered.runtime_yaml.as_bytes());
    let runtime_written = !(target.exists && existing_runtime.is_file());
    let report = |reused| WriteReport {
        out_dir: target.path.clone(),
        files: rendered
            .files
            .iter()
            .map(|(rel, bytes)| (rel.clone(), bytes.len() as u64))
            .collect(),
        runtime_written,
        reused,
    };
    if !runtime_written && existing.is_identical() {
        return Ok(report(rendered.files.len()));
    }

    let mut staging = Staging::create(&target)?;
    let mut files: Vec<StagedFile<'_>> = rendered
        .files
        .iter()
        .zip(&existing.matches)
        .map(|((rel, bytes), found)| StagedFile {
            rel,
            bytes,
            same_as_previous: *found == FileMatch::Same,
        })
        .collect();
    if runtime_written {
        files.push(StagedFile {
            rel: RUNTIME_FILE,
            bytes: &runtime_yaml,
            same_as_previous: false,
        });
    } else {
        staging.carry_over(&existing_runtime, RUNTIME_FILE)?;
    }
    let previous = target.exists.then_some(target.path.as_path());
    let reused = staging.place_all(&files, previous)?;
    staging.swap_into(&target)?;
    Ok(report(reused))
}

/// Compares the rendered bundle with `out_dir` without writing anything.
pub(super) fn compare_dir(
    out_dir: &Path,
    rendered: &RenderedBundle<'_>,
) -> Result<CheckResult, OutputError> {
    let existing = match fs::metadata(out_dir) {
        Ok(meta) if meta.is_dir() => Existing::read(out_dir, rendered)?,
        Ok(_) => return Err(OutputError::NotADirectory(out_dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Existing::absent(rendered),
        Err(e) => return Err(io("cannot read", out_dir, e)),
    };
    let mut differences = Vec::new();
    for ((rel, _), found) in rendered.files.iter().zip(existing.matches) {
        match found {
            FileMatch::Same => {}
            FileMatch::Changed => differences.push((rel.clone(), FileStatus::Changed)),
            FileMatch::Missing => differences.push((rel.clone(), FileStatus::Missing)),
            FileMatch::Unreadable(e) => return Err(io("cannot read", &join_rel(out_dir, rel), e)),
        }
    }
    if !existing.has_runtime {
        differences.push((RUNTIME_FILE.to_string(), FileStatus::Missing));
    }
    differences.extend(
        existing
            .stale
            .into_iter()
            .map(|rel| (rel, FileStatus::Stale)),
    );
    differences.sort();
    Ok(CheckResult { differences })
}

/// How one file of the rendered bundle compares with the file on disk.
#[derive(Debug)]
enum FileMatch {
    /// A regular file with exactly these bytes.
    Same,
    /// Something else is there (other bytes, other size, a directory).
    Changed,
    Missing,
    /// It could not be read: an error for `--check`, a file to rewrite for `generate`.
    Unreadable(std::io::Error),
}

impl PartialEq for FileMatch {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// What an output directory holds, compared with a rendered bundle. Read
/// once per run: `generate` decides from it whether there is anything to
/// do and which files it can hard-link, `--check` reports it.
#[derive(Debug)]
struct Existing {
    /// One entry per rendered file, in the order of `RenderedBundle::files`.
    matches: Vec<FileMatch>,
    /// Files on disk that the bundle does not produce (`runtime.yaml` aside).
    stale: Vec<String>,
    /// Directories on disk that hold no produced file; a swap would remove them.
    extra_dirs: bool,
    /// `runtime.yaml` is there (any content: the user owns it).
    has_runtime: bool,
}

impl Existing {
    /// Reads `dir`, comparing every rendered file with its namesake on disk
    /// (on all cores: this is most of the work of an unchanged regeneration).
    fn read(dir: &Path, rendered: &RenderedBundle<'_>) -> Result<Self, OutputError> {
        let listing = Listing::read(dir)?;
        let files: Vec<(&String, &FileBytes<'_>)> = rendered.files.iter().collect();
        let matches: Vec<FileMatch> = files
            .par_iter()
            .map_init(
                || vec![0u8; COMPARE_CHUNK],
                |buffer, (rel, bytes)| compare_file(&join_rel(dir, rel), bytes, buffer),
            )
            .collect();
        let stale = listing
            .files
            .iter()
            .filter(|rel| *rel != RUNTIME_FILE && !rendered.files.contains_key(*rel))
            .cloned()
            .collect();
        let produced_dirs: BTreeSet<&str> = rendered
            .files
            .keys()
            .flat_map(|rel| rel.match_indices('/').map(|(end, _)| &rel[..end]))
            .collect();
        Ok(Self {
            matches,
            stale,
            extra_dirs: listing
                .dirs
                .iter()
                .any(|d| !produced_dirs.contains(d.as_str())),
            has_runtime: listing.files.iter().any(|rel| rel == RUNTIME_FILE),
        })
    }

    /// An output directory that does not exist yet.
    fn absent(rendered: &RenderedBundle<'_>) -> Self {
        Self {
            matches: rendered.files.iter().map(|_| FileMatch::Missing).collect(),
            stale: Vec::new(),
            extra_dirs: false,
            has_runtime: false,
        }
    }

    /// The directory already holds exactly the rendered bundle, nothing
    /// more (`runtime.yaml` is checked by the caller).
    fn is_identical(&self) -> bool {
        self.stale.is_empty()
            && !self.extra_dirs
            && self.matches.iter().all(|m| *m == FileMatch::Same)
    }
}

/// Bytes read at a time when comparing a file with its rendered content.
const COMPARE_CHUNK: usize = 64 * 1024;

/// Compares the file at `path` with `expected`: size first, then the bytes
/// chunk by chunk, so a changed file is usually told apart without reading it.
fn compare_file(path: &Path, expected: &FileBytes<'_>, buffer: &mut [u8]) -> FileMatch {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileMatch::Missing,
        Err(e) => return FileMatch::Unreadable(e),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() && meta.len() == expected.len() as u64 => {}
        Ok(_) => return FileMatch::Changed,
        Err(e) => return FileMatch::Unreadable(e),
    }
    let mut rest = expected.as_bytes();
    loop {
        let read = match file.read(buffer) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return FileMatch::Unreadable(e),
        };
        if read == 0 {
            return if rest.is_empty() {
                FileMatch::Same
            } else {
                FileMatch::Changed
            };
        }
        // Also unequal when the file grew since it was measured.
        match rest.strip_prefix(&buffer[..read]) {
            Some(after) => rest = after,
            None => return FileMatch::Changed,
        }
    }
}

/// One file to put into the staging directory.
struct StagedFile<'a> {
    rel: &'a str,
    bytes: &'a FileBytes<'a>,
    /// The previous bundle has this file with these bytes: link, don't write.
    same_as_previous: bool,
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
    /// a write nor a sync (regenerating after a small edit touches only
    /// the files that changed). Every other file is written, then synced as
    /// [`durability`] says. The writing runs on several threads, so where
    /// files are fsync'd one by one the filesystem commits them in a few
    /// journal transactions instead of one per file. Returns how many
    /// files were reused.
    fn place_all(
        &mut self,
        files: &[StagedFile<'_>],
        previous: Option<&Path>,
    ) -> Result<usize, OutputError> {
        let mut jobs = Vec::with_capacity(files.len());
        for file in files {
            let old = previous
                .filter(|_| file.same_as_previous)
                .map(|dir| join_rel(dir, file.rel));
            jobs.push((self.prepare(file.rel)?, old, file.bytes));
        }
        let reused = AtomicUsize::new(0);
        run_parallel(&jobs, |(path, old, bytes)| {
            if place(path, old.as_deref(), bytes)? {
                reused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })?;
        let dirs: Vec<&PathBuf> = self.dirs.iter().collect();
        durability::sync_staged(&self.dir, &dirs)?;
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

/// Puts one file at `path`: a hard link to `same_old` (a previous file
/// known to hold these bytes; returns `true`), else a fresh file (fsync'd
/// here when [`durability::SYNC_EACH_FILE`]).
fn place(path: &Path, same_old: Option<&Path>, bytes: &FileBytes<'_>) -> Result<bool, OutputError> {
    if let Some(old) = same_old
        && fs::hard_link(old, path).is_ok()
    {
        return Ok(true);
    }
    let mut file = fs::File::create(path).map_err(|e| io("cannot create", path, e))?;
    file.write_all(bytes.as_bytes())
        .and_then(|()| {
            if durability::SYNC_EACH_FILE {
                file.sync_all()
            } else {
                Ok(())
            }
        })
        .map_err(|e| io("cannot write", path, e))?;
    Ok(false)
}

/// How the staged bundle reaches the disk before it is swapped in.
///
/// On Linux one `syncfs` on the staging directory's filesystem, after every
/// file is written, commits all of it (file data, inodes and the new
/// directory entries) in one journal transaction: a fresh 1,000-agent
/// bundle costs one flush instead of a thousand fsyncs. Since Linux 5.8
/// `syncfs` reports writeback errors of the filesystem, so a failed write
/// still fails the run. Its cost grows with whatever else is waiting to be
/// written on that filesystem. Elsewhere each file and directory is
/// fsync'd (the files on the writing threads).
#[cfg(target_os = "linux")]
mod durability {
    use super::{OutputError, io};
    use std::path::{Path, PathBuf};

    /// Files are not fsync'd one by one: [`sync_staged`] covers them.
    pub(super) const SYNC_EACH_FILE: bool = false;

    /// Flushes the filesystem that holds the staging directory `dir`.
    pub(super) fn sync_staged(dir: &Path, _dirs: &[&PathBuf]) -> Result<(), OutputError> {
        let handle = std::fs::File::open(dir).map_err(|e| io("cannot sync", dir, e))?;
        rustix::fs::syncfs(&handle).map_err(|e| io("cannot sync", dir, e.into()))
    }
}

/// See the Linux version: here every file is fsync'd as it is written and
/// every directory afterwards.
#[cfg(not(target_os = "linux"))]
mod durability {
    use super::{OutputError, run_parallel, sync_path};
    use std::path::{Path, PathBuf};

    /// Each file is fsync'd right after it is written.
    pub(super) const SYNC_EACH_FILE: bool = true;

    /// fsyncs the staging directory and every directory below it.
    pub(super) fn sync_staged(_dir: &Path, dirs: &[&PathBuf]) -> Result<(), OutputError> {
        run_parallel(dirs, |dir| sync_path(dir))
    }
}

/// fsyncs one file or directory.
fn sync_path(dir: &Path) -> Result<(), OutputError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot sync", dir, e))
}

/// Everything under an output directory, as sorted `/`-separated relative paths.
struct Listing {
    /// Every non-directory entry.
    files: Vec<String>,
    /// Every directory below the root.
    dirs: Vec<String>,
}

impl Listing {
    fn read(root: &Path) -> Result<Self, OutputError> {
        let mut listing = Self {
            files: Vec::new(),
            dirs: Vec::new(),
        };
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
                    listing.dirs.push(rel);
                } else {
                    listing.files.push(rel);
                }
            }
        }
        listing.files.sort();
        listing.dirs.sort();
        Ok(listing)
    }
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
