//! JSON Lines files as the memory and status backends use them: an
//! append-only log of records, one JSON object per line, replayed on load.
//!
//! Crash safety rests on three rules:
//! - An append writes whole lines (each ending in `\n`) in one write, and
//!   its writer is answered only once the lines are fsync'd
//!   ([`Pending::wait`]), so every acknowledged record is on disk. The fsync
//!   is shared by the appends made while it waits (group commit, see
//!   [`group_sync`](super::group_sync)), and runs outside the store's lock.
//! - On load, bytes after the last `\n` are a torn write from a crash (the
//!   append never returned, so nobody was told it succeeded): they are
//!   ignored, and [`JsonlLog::end`] points before them.
//! - The next append first cuts the file back to that end, so the torn bytes
//!   never end up in the middle of the file.
//!
//! A complete line that does not parse is not a crash artefact: loading
//! fails with [`StoreError::Corrupt`] naming the line, rather than guessing
//! and later compacting data away.
//!
//! Compaction — replacing the file with its live records alone, once dead
//! lines dominate — keeps writers waiting only while a short tail is
//! copied:
//! 1. Under the owner's lock, [`JsonlLog::plan_compaction`] encodes the
//!    live records and notes where the file ends.
//! 2. Off the lock, [`Compactions::start`] writes them to a temporary file
//!    next to the log and fsyncs it, while appends go on.
//! 3. Under the lock again, [`JsonlLog::finish_compaction`] copies the
//!    lines appended meanwhile to the new file, and appends go to the new
//!    file from then on.
//! 4. The next sync flushes the new file, renames it over the log and
//!    fsyncs the directory, before it counts any change as durable (see
//!    [`GroupSync::replaced`]); the compaction waits for that sync itself,
//!    so it never waits for a writer.
//!
//! A crash at any point leaves either the old file, holding every
//! acknowledged line, or the new one, renamed only once durable with every
//! line of the old one. A compaction that fails before step 4 is logged
//! and abandoned (its temporary file removed); a later write plans another.
//! A failure in step 4 is a failed sync, refused from then on like any.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use super::files::{DurableDir, blocking, remove_temp_files, rename_into, write_temp};
use super::group_sync::{GroupSync, Publish, SyncKind, Ticket};
use super::{Durability, StoreError};

/// Position and size of one JSON Lines file, as this process last saw it.
#[derive(Debug)]
pub(crate) struct JsonlLog {
    /// The directory the file is in: a new file's entry is made durable
    /// through it, and a compaction writes its file there.
    dir: Arc<DurableDir>,
    /// The file's name in `dir`.
    name: String,
    /// `dir` + `name`, for messages.
    path: PathBuf,
    /// What the file holds, for error messages ("memory scope `shared:x`").
    what: String,
    /// Byte length of the valid prefix: where the next append goes.
    end: u64,
    /// Complete lines in the valid prefix (live and dead), to decide when
    /// compaction pays off.
    lines: usize,
    /// The open file appends go through, opened on the first append.
    file: Option<Arc<File>>,
    /// Whether the file may hold bytes past `end` (a torn line found on
    /// load, or an append that failed half-way) to cut off first.
    tail_to_cut: bool,
    /// Makes appends durable in groups.
    sync: Arc<GroupSync>,
    /// The ticket of the last append, until it is known to be durable.
    last_append: Option<Ticket>,
    /// A compaction is planned or under way: no second one is planned.
    compacting: bool,
    /// The compaction planned, until the owner takes it to start it.
    planned: Option<CompactionPlan>,
}

/// The answer to a writer: `result` of its change, once the appends it made
/// (`pending`, taken after the change and waited for after the store's lock
/// was released) are durable. The wait parks the task, not a thread (see
/// [`GroupSync::wait_async`]).
pub(crate) async fn settle<T>(
    result: Result<T, StoreError>,
    pending: Option<Pending>,
) -> Result<T, StoreError> {
    if let Some(pending) = pending {
        pending.wait().await?;
    }
    result
}

/// What is left to make appends durable, for a caller that waits later.
pub(crate) fn durability(pending: Option<Pending>) -> Durability {
    match pending {
        Some(pending) => Durability::after(pending.wait()),
        None => Durability::done(),
    }
}

/// Appends that are written but not yet known to be durable; see
/// [`JsonlLog::take_pending`].
#[must_use = "a writer must wait for its append to be durable before answering"]
pub(crate) struct Pending {
    sync: Arc<GroupSync>,
    ticket: Ticket,
    what: String,
    path: PathBuf,
}

impl Pending {
    /// The change with `ticket` of `sync`, to `what` in `path`.
    pub(crate) fn new(sync: Arc<GroupSync>, ticket: Ticket, what: &str, path: &Path) -> Self {
        Self {
            sync,
            ticket,
            what: what.to_string(),
            path: path.to_path_buf(),
        }
    }

    /// Waits until the appends are durable (running or joining an fsync).
    pub(crate) async fn wait(self) -> Result<(), StoreError> {
        self.sync
            .wait_async(self.ticket)
            .await
            .map_err(|err| StoreError::io(format!("write {}", self.what), &self.path, &err))
    }
}

impl JsonlLog {
    /// [`JsonlLog::load`] for a log alone in its directory `dir` (created
    /// when missing), after removing the temporary files of compactions a
    /// crash interrupted.
    pub(crate) fn open<T: DeserializeOwned>(
        dir: PathBuf,
        name: &str,
        what: &str,
    ) -> Result<(Self, Vec<T>), StoreError> {
        let durable = DurableDir::open(dir.clone())
            .map_err(|err| StoreError::io(format!("open the directory of {what}"), &dir, &err))?;
        remove_temp_files(&dir, &format!("the directory of {what}"))?;
        Self::load(Arc::new(durable), name.to_string(), what.to_string())
    }

    /// Reads the file `name` of `dir` (absent = empty) and returns its
    /// records in order with the log positioned after the last complete line.
    pub(crate) fn load<T: DeserializeOwned>(
        dir: Arc<DurableDir>,
        name: String,
        what: String,
    ) -> Result<(Self, Vec<T>), StoreError> {
        let path = dir.path().join(&name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(StoreError::io(format!("read {what}"), &path, &err)),
        };
        let (valid, records) = parse_lines(&bytes, &what, &path)?;
        let lines = records.len();
        let log = Self {
            dir,
            name,
            path,
            what,
            end: valid as u64,
            lines,
            file: None,
            tail_to_cut: valid < bytes.len(),
            sync: Arc::new(GroupSync::new(SyncKind::Data)),
            last_append: None,
            compacting: false,
            planned: None,
        };
        Ok((log, records))
    }

    /// Appends `records` as lines with one write, after cutting off
    /// anything past the valid end (a torn line, or the rest of an append
    /// that failed half-way). The lines are not durable yet: the caller
    /// takes [`JsonlLog::take_pending`] and waits on it after releasing its
    /// lock, before answering its writer.
    pub(crate) fn append<T: Serialize>(&mut self, records: &[T]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes = encode_lines(records, &self.what, &self.path)?;
        let written = self.append_bytes(&bytes);
        let fail =
            |err: io::Error| StoreError::io(format!("write {}", self.what), &self.path, &err);
        let file = written.map_err(fail)?;
        self.end += bytes.len() as u64;
        self.lines += records.len();
        self.last_append = Some(self.sync.changed(&file));
        Ok(())
    }

    fn append_bytes(&mut self, bytes: &[u8]) -> io::Result<Arc<File>> {
        self.sync.check()?;
        let file = match &self.file {
            Some(file) => Arc::clone(file),
            None => {
                let file = Arc::new(self.open_for_append()?);
                self.file = Some(Arc::clone(&file));
                file
            }
        };
        if self.tail_to_cut {
            file.set_len(self.end)?;
            self.tail_to_cut = false;
        }
        let written = (&*file)
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| (&*file).write_all(bytes));
        if written.is_err() {
            self.tail_to_cut = true;
        }
        written.map(|()| file)
    }

    /// Opens (creating, durably, when missing) the file for appending, and
    /// for reading what a compaction copies.
    fn open_for_append(&mut self) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        if len != self.end {
            self.tail_to_cut = true;
        }
        if len == 0 {
            // A new file's directory entry must survive a crash as well.
            self.dir.sync_entries()?;
        }
        Ok(file)
    }

    /// The appends made so far that are not yet known to be durable.
    pub(crate) fn take_pending(&mut self) -> Option<Pending> {
        self.last_append
            .take()
            .map(|ticket| Pending::new(Arc::clone(&self.sync), ticket, &self.what, &self.path))
    }

    /// Plans a compaction (step 1 of the module docs) when dead lines
    /// dominate — `live` of the file's lines are still needed — and none is
    /// under way; `records` gives the live records, in the order a load
    /// should replay them. The owner takes the plan with
    /// [`JsonlLog::take_compaction`] after its write and starts it.
    pub(crate) fn plan_compaction<T: Serialize>(
        &mut self,
        live: usize,
        records: impl FnOnce() -> Vec<T>,
    ) {
        if self.compacting || !worth_compacting(self.lines, live) {
            return;
        }
        let records = records();
        match encode_lines(&records, &self.what, &self.path) {
            Ok(bytes) => {
                self.compacting = true;
                self.planned = Some(CompactionPlan {
                    dir: Arc::clone(&self.dir),
                    name: self.name.clone(),
                    what: self.what.clone(),
                    path: self.path.clone(),
                    bytes,
                    lines: records.len(),
                    snapshot_end: self.end,
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, detail = err.detail(), "compaction not started");
            }
        }
    }

    /// The compaction planned by the last writes, to start once the lock is
    /// released.
    pub(crate) fn take_compaction(&mut self) -> Option<CompactionPlan> {
        self.planned.take()
    }

    /// Step 3 of the module docs, under the owner's lock: makes the
    /// compacted file the one appends go to, and returns the wait for step
    /// 4. When the file could not be built, ends the compaction so that a
    /// later write plans another.
    fn finish_compaction(
        &mut self,
        built: Result<CompactedFile, StoreError>,
    ) -> Result<Pending, StoreError> {
        self.compacting = false;
        let switched = self.switch_to(built?);
        switched.map_err(|err| StoreError::io(format!("compact {}", self.what), &self.path, &err))
    }

    fn switch_to(&mut self, compacted: CompactedFile) -> io::Result<Pending> {
        self.sync.check()?;
        let CompactedFile {
            temp,
            file,
            len,
            lines,
            snapshot_end,
        } = compacted;
        let tail_len = self
            .end
            .checked_sub(snapshot_end)
            .ok_or_else(|| io::Error::other("the log shrank while it was compacted"))?;
        let mut tail = vec![0; usize::try_from(tail_len).map_err(io::Error::other)?];
        if !tail.is_empty() {
            // Read through the handle appends went through: the file at the
            // log's path is an older one while an earlier compaction's
            // rename is still to come.
            let current = self
                .file
                .as_ref()
                .ok_or_else(|| io::Error::other("lines were appended without an open file"))?;
            current.read_exact_at(&mut tail, snapshot_end)?;
            file.write_all_at(&tail, len)?;
        }
        let file = Arc::new(file);
        let (dir, name) = (self.dir.path().to_path_buf(), self.name.clone());
        let ticket = self
            .sync
            .replaced(&file, Publish::new(move || temp.publish(&dir, &name)));
        self.end = len + tail_len;
        self.lines = lines + tail.iter().filter(|&&byte| byte == b'\n').count();
        self.tail_to_cut = false;
        self.file = Some(file);
        Ok(Pending::new(
            Arc::clone(&self.sync),
            ticket,
            &self.what,
            &self.path,
        ))
    }
}

/// A compaction planned under the owner's lock ([`JsonlLog::plan_compaction`]):
/// the live records, encoded, and where the log ended then.
#[derive(Debug)]
pub(crate) struct CompactionPlan {
    dir: Arc<DurableDir>,
    name: String,
    what: String,
    path: PathBuf,
    bytes: Vec<u8>,
    lines: usize,
    snapshot_end: u64,
}

impl CompactionPlan {
    /// Step 2 of the module docs (blocking): writes the live records to a
    /// temporary file next to the log and fsyncs it.
    fn build(self) -> Result<CompactedFile, StoreError> {
        let fail =
            |err: io::Error| StoreError::io(format!("compact {}", self.what), &self.path, &err);
        let temp = write_temp(self.dir.path(), &self.name, &self.bytes, File::sync_all)
            .map(|path| TempFile {
                path,
                renamed: false,
            })
            .map_err(fail)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&temp.path)
            .map_err(fail)?;
        Ok(CompactedFile {
            temp,
            file,
            len: self.bytes.len() as u64,
            lines: self.lines,
            snapshot_end: self.snapshot_end,
        })
    }
}

/// The live records of a log, durable in a temporary file, with the
/// plan's snapshot: what [`JsonlLog::finish_compaction`] puts in place.
struct CompactedFile {
    temp: TempFile,
    /// `temp`, open for the tail and the appends after it.
    file: File,
    /// Its length, and the lines in it.
    len: u64,
    lines: usize,
    /// Where the log ended when the plan was made.
    snapshot_end: u64,
}

/// A temporary file, removed when dropped before it was renamed.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl TempFile {
    /// Renames the file over `dir/name` (or removes it when that fails)
    /// and makes the rename durable.
    fn publish(mut self, dir: &Path, name: &str) -> io::Result<()> {
        self.renamed = true;
        rename_into(&self.path, dir, name)?;
        File::open(dir)?.sync_all()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: a leftover temporary file is never read.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The compactions of a store's logs under way in the background (see the
/// module docs), for the store's `flush` to wait for.
#[derive(Debug, Default)]
pub(crate) struct Compactions {
    running: Mutex<Vec<JoinHandle<()>>>,
}

impl Compactions {
    /// Starts `plan`, the compaction of the log that `log_of` finds in what
    /// `owner`'s lock guards: built off the lock, switched to under it (the
    /// tail copy is done in place, as appends are), then published.
    pub(crate) fn start<S: Send + 'static>(
        &self,
        owner: Arc<AsyncMutex<S>>,
        plan: CompactionPlan,
        log_of: fn(&mut S) -> Option<&mut JsonlLog>,
    ) {
        let what = plan.what.clone();
        let task = tokio::spawn(async move {
            let built = blocking(move || plan.build()).await;
            let switched = {
                let mut guard = owner.lock().await;
                log_of(&mut guard).map(|log| log.finish_compaction(built))
            };
            let published = match switched {
                Some(Ok(pending)) => pending.wait().await,
                Some(Err(err)) => Err(err),
                None => Ok(()),
            };
            if let Err(err) = published {
                tracing::warn!(log = %what, error = %err, detail = err.detail(), "compaction failed; a later write retries it");
            }
        });
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|task| !task.is_finished());
        running.push(task);
    }

    /// Waits until the compactions started so far have ended.
    pub(crate) async fn wait(&self) {
        let running =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(PoisonError::into_inner));
        for task in running {
            // A compaction that panicked left the old file in place.
            let _ = task.await;
        }
    }
}

/// The records of the complete lines of `bytes`, and the length of those
/// lines: bytes after the last `\n` are a torn write (logged, not parsed);
/// a complete line that does not parse is [`StoreError::Corrupt`].
pub(crate) fn parse_lines<T: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    path: &Path,
) -> Result<(usize, Vec<T>), StoreError> {
    let valid = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if valid < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            ignored_bytes = bytes.len() - valid,
            "ignoring a torn last line (an interrupted write); the next write replaces it"
        );
    }
    let mut records = Vec::new();
    for (index, line) in bytes[..valid].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = serde_json::from_slice(line)
            .map_err(|err| StoreError::corrupt(format!("{what}, line {}", index + 1), path, err))?;
        records.push(record);
    }
    Ok((valid, records))
}

pub(crate) fn encode_lines<T: Serialize>(
    records: &[T],
    what: &str,
    path: &Path,
) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    for record in records {
        serde_json::to_writer(&mut bytes, record).map_err(|err| {
            StoreError::io(
                format!("encode a record of {what}"),
                path,
                &io::Error::other(err),
            )
        })?;
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// Whether a log with `lines` lines of which `live` are still needed is
/// worth rewriting: dead lines are the majority and there are enough of
/// them that the rewrite is not churn on a tiny file.
fn worth_compacting(lines: usize, live: usize) -> bool {
    const MIN_DEAD_LINES: usize = 64;
    let dead = lines.saturating_sub(live);
    dead >= MIN_DEAD_LINES && dead * 2 > lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn load(path: &Path) -> Result<(JsonlLog, Vec<Value>), StoreError> {
        let (dir, name) = (path.parent(), path.file_name());
        let (Some(dir), Some(name)) = (dir, name) else {
            return Err(StoreError::io(
                "test",
                path,
                &io::ErrorKind::InvalidInput.into(),
            ));
        };
        let dir =
            DurableDir::open(dir.to_path_buf()).map_err(|e| StoreError::io("open", dir, &e))?;
        JsonlLog::load(
            Arc::new(dir),
            name.to_string_lossy().into_owned(),
            "test log".into(),
        )
    }

    #[test]
    fn torn_tail_is_ignored_then_overwritten() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log.jsonl");
        fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":")?;
        let (mut log, records) = load(&path)?;
        assert_eq!(records, vec![json!({"a": 1}), json!({"a": 2})]);
        log.append(&[json!({"a": 3})])?;
        assert_eq!(
            fs::read_to_string(&path)?,
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        assert_eq!(log.lines, 3);
        Ok(())
    }

    #[test]
    fn a_bad_complete_line_is_corruption() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log.jsonl");
        fs::write(&path, "{\"a\":1}\nnot json\n{\"a\":2}\n")?;
        let err = load(&path).err().map(|e| (e.code(), e.to_string()));
        assert_eq!(
            err,
            Some((
                "storage_corrupt",
                "stored data is corrupt: test log, line 2".to_string()
            ))
        );
        Ok(())
    }

    /// 100 lines of which only the last is live, and a compaction planned
    /// for them.
    fn log_to_compact(
        path: &Path,
    ) -> Result<(JsonlLog, CompactionPlan), Box<dyn std::error::Error>> {
        let (mut log, _) = load(path)?;
        let lines: Vec<Value> = (0..100).map(Value::from).collect();
        log.append(&lines)?;
        log.plan_compaction(1, || vec![json!(99)]);
        let plan = log.take_compaction().ok_or("no compaction planned")?;
        Ok((log, plan))
    }

    fn names_in(dir: &Path) -> io::Result<Vec<String>> {
        let mut names = fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    #[tokio::test]
    async fn a_compaction_keeps_the_lines_appended_while_it_was_built()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log.jsonl");
        let (mut log, plan) = log_to_compact(&path)?;
        log.plan_compaction(1, || vec![json!(99)]);
        assert!(log.take_compaction().is_none(), "one compaction at a time");
        let built = plan.build();
        log.append(&[json!(100)])?;
        let before = log.take_pending();
        let published = log.finish_compaction(built)?;
        log.append(&[json!(101)])?;
        // Until the next sync, the old file is the log, and nothing after
        // the switch counts as durable.
        assert_eq!(load(&path)?.1.len(), 101);
        assert_eq!(
            names_in(dir.path())?.len(),
            2,
            "the new file is still temporary"
        );
        for pending in [before, log.take_pending()].into_iter().flatten() {
            pending.wait().await?;
        }
        published.wait().await?;
        assert_eq!(log.lines, 3);
        let (reloaded, records) = load(&path)?;
        assert_eq!(records, vec![json!(99), json!(100), json!(101)]);
        assert_eq!(reloaded.lines, 3);
        assert_eq!(names_in(dir.path())?, vec!["log.jsonl"]);
        Ok(())
    }

    #[test]
    fn a_compaction_that_failed_leaves_the_log_and_can_be_planned_again()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log.jsonl");
        let (mut log, plan) = log_to_compact(&path)?;
        // Built, then dropped unused: its temporary file goes with it.
        drop(plan.build()?);
        assert_eq!(names_in(dir.path())?, vec!["log.jsonl"]);
        let failed = StoreError::io("compact", &path, &io::ErrorKind::StorageFull.into());
        assert!(log.finish_compaction(Err(failed)).is_err());
        assert_eq!(log.lines, 100);
        log.plan_compaction(1, || vec![json!(99)]);
        assert!(log.take_compaction().is_some(), "planned again");
        Ok(())
    }

    #[test]
    fn compaction_threshold() {
        assert!(!worth_compacting(10, 1));
        assert!(!worth_compacting(200, 150));
        assert!(worth_compacting(200, 50));
    }
}
