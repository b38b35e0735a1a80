//! File-system primitives shared by the file backends: running blocking work
//! off the async runtime, atomic replacement of a file, directory fsync
//! (alone, or shared by concurrent writers: [`DurableDir`]), and the clock
//! the stores stamp records with.
//!
//! Where file work runs. A write's slow part is waiting for the disk, and
//! writers do that asynchronously: they park until a shared fsync covers
//! their change (see [`group_sync`](super::group_sync)), and the fsync runs
//! on tokio's blocking pool. What is left of a write — appending a record
//! to a log or journal, which goes to the page cache — is done in place, on
//! the writer's thread: a hand-off to another thread would cost more than
//! the append. Reads and listings go to the blocking pool
//! (`spawn_blocking`, through [`blocking`]), so that a slow directory never
//! holds a worker thread. Inside [`in_place_io`] (the engine wraps each flow
//! run in it) reads are done in place too: a run is one task making a long
//! series of small store calls, where the two thread hand-offs of each were
//! most of an agent's overhead. The few synchronous waits for the disk left
//! in a write — the directory fsync after a new file (a new memory scope),
//! a document journal that is far behind — go through [`disk_wait`], which
//! lets tokio move the worker's other tasks to another thread meanwhile. A
//! log's compaction runs in the background, on the blocking pool (see
//! `jsonl`).
//!
//! Atomic replacement is the classic sequence: write a temporary file in the
//! same directory, fsync it, rename it over the target (atomic on POSIX),
//! fsync the directory so the rename itself survives a crash. A reader sees
//! either the old or the new content, never a mix, and concurrent writers of
//! one target each rename their own complete file: the last rename wins.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::StoreError;
use super::group_sync::{GroupSync, SyncKind};

tokio::task_local! {
    /// Set (to `true`) inside [`in_place_io`].
    static IN_PLACE_IO: bool;
}

/// Runs `future` with its file-store work done in place (see the module
/// docs).
pub async fn in_place_io<F: std::future::Future>(future: F) -> F::Output {
    IN_PLACE_IO.scope(true, future).await
}

/// Runs file work: on the blocking pool, or inside [`in_place_io`] on the
/// task's own thread (see the module docs).
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    if IN_PLACE_IO.try_with(|on| *on).unwrap_or(false) {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join_error| {
            Err(StoreError::Io {
                message: "storage error: a storage task did not finish".into(),
                detail: format!("blocking storage task: {join_error}"),
            })
        })
}

/// Runs `wait`, which blocks until the disk has flushed something. On a
/// worker thread of a multi-threaded runtime (file work done in place),
/// tokio first moves the worker's other tasks to another thread; elsewhere
/// (the blocking pool, a plain thread) it just runs.
pub(crate) fn disk_wait<T>(wait: impl FnOnce() -> T) -> T {
    let on_worker = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    });
    if on_worker {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// Writes `bytes` to a new temporary file next to `dir/name`, calls
/// `finish` on it (an fsync, a modification time) and returns its path: the
/// first half of an atomic replacement, [`rename_into`] the second.
pub(crate) fn write_temp(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    finish: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    // A leading dot keeps temporary files out of listings; the random part
    // keeps concurrent writers of the same target apart.
    let temp = dir.join(format!(
        ".{name}{TEMP_MARKER}{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            finish(&file)
        });
    match written {
        Ok(()) => Ok(temp),
        Err(err) => {
            // Best effort: the temporary file is invisible to readers anyway.
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// What sets a temporary file's name apart (`.{name}.tmp-{random}`).
const TEMP_MARKER: &str = ".tmp-";

/// Whether `name` is one of [`write_temp`]'s temporary files.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Removes the temporary files a crash left in `dir` (`what`, for errors).
pub(crate) fn remove_temp_files(dir: &Path, what: &str) -> Result<(), StoreError> {
    let failed = |err: &io::Error| StoreError::io(format!("clean up {what}"), dir, err);
    for entry in fs::read_dir(dir).map_err(|e| failed(&e))? {
        let entry = entry.map_err(|e| failed(&e))?;
        if entry.file_name().to_str().is_some_and(is_temp_name) {
            remove_if_present(&entry.path()).map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}

/// Removes `path`; a file that is not there is not an error.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Renames the temporary file `temp` over `dir/name` (atomic on POSIX),
/// removing it when that fails.
pub(crate) fn rename_into(temp: &Path, dir: &Path, name: &str) -> io::Result<()> {
    let renamed = fs::rename(temp, dir.join(name));
    if renamed.is_err() {
        let _ = fs::remove_file(temp);
    }
    renamed
}

/// A directory of logs, whose new entries concurrent writers make durable
/// with a shared fsync of the directory (group commit, see
/// [`group_sync`](super::group_sync)). (An open directory handle to fsync
/// is a Unix notion: the file backends are for Unix filesystems.)
#[derive(Debug)]
pub(crate) struct DurableDir {
    path: PathBuf,
    sync: GroupSync,
}

impl DurableDir {
    /// Opens `path`, creating it when missing (blocking).
    pub fn open(path: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&path)?;
        Ok(Self {
            path,
            sync: GroupSync::new(SyncKind::All),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the entries created, renamed or removed in this directory so
    /// far durable (blocking; one fsync shared with concurrent callers).
    pub fn sync_entries(&self) -> io::Result<()> {
        // Opened afresh each time rather than kept: if the directory was
        // removed and created again (the health probe recreates it), an old
        // handle would fsync the deleted directory instead.
        let handle = Arc::new(File::open(&self.path)?);
        let ticket = self.sync.changed(&handle);
        disk_wait(|| self.sync.wait(ticket))
    }
}

/// Whether a file written by [`write_temp`] must be fsync'd on its own
/// before it counts as durable: everywhere but Linux, where one
/// [`flush_filesystem`] covers every file written before it.
pub(crate) const SYNC_EACH_FILE: bool = !cfg!(target_os = "linux");

/// Makes every file written in `dir` so far durable, with the directory
/// entries that name them.
///
/// On Linux one `syncfs` of the directory's filesystem: file data, inodes
/// and entries in one journal commit (since Linux 5.8 it also reports
/// writeback errors, so a lost write fails it). Its cost grows with whatever
/// else is waiting to be written on that filesystem. Elsewhere the files
/// were fsync'd as they were written ([`SYNC_EACH_FILE`]), and only the
/// directory is left.
pub(crate) fn flush_filesystem(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    #[cfg(target_os = "linux")]
    {
        rustix::fs::syncfs(&handle).map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        handle.sync_all()
    }
}

/// Checks that `dir` exists (creating it when missing) and accepts new
/// files, by writing and removing a probe file. Used by `health()`.
pub(crate) fn probe_dir(dir: &Path, what: &str) -> Result<(), StoreError> {
    let unavailable = |err: io::Error| StoreError::Unavailable {
        message: format!("{what} storage is not writable"),
        detail: format!("{}: {err}", dir.display()),
    };
    fs::create_dir_all(dir).map_err(unavailable)?;
    let probe = write_temp(dir, "health", b"ok", File::sync_all).map_err(unavailable)?;
    fs::remove_file(&probe).map_err(unavailable)
}

/// Milliseconds since the Unix epoch, the one timestamp unit of the stores.
pub fn now_ms() -> u64 {
    system_time_ms(SystemTime::now())
}

/// `time` in milliseconds since the Unix epoch (0 for earlier times).
pub(crate) fn system_time_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporary_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        for content in [b"one", b"two"] {
            let temp = write_temp(dir.path(), "a.md", content, File::sync_all)?;
            assert!(is_temp_name(
                &temp.file_name().unwrap_or_default().to_string_lossy()
            ));
            rename_into(&temp, dir.path(), "a.md")?;
        }
        assert_eq!(fs::read(dir.path().join("a.md"))?, b"two");
        let names: Vec<_> = fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        assert_eq!(names, vec![std::ffi::OsString::from("a.md")]);
        Ok(())
    }

    #[test]
    fn probe_creates_the_directory() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", Path::new("."), &e))?;
        let sub = dir.path().join("x/y");
        probe_dir(&sub, "test")?;
        assert!(sub.is_dir());
        Ok(())
    }
}
