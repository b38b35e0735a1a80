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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::files::DurableDir;
use super::group_sync::{GroupSync, SyncKind, Ticket};
use super::{Durability, StoreError};

/// Position and size of one JSON Lines file, as this process last saw it.
#[derive(Debug)]
pub(crate) struct JsonlLog {
    /// The directory the file is in: a new file's entry and a rewrite are
    /// made durable through it.
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
    /// when missing).
    pub(crate) fn open<T: DeserializeOwned>(
        dir: PathBuf,
        name: &str,
        what: &str,
    ) -> Result<(Self, Vec<T>), StoreError> {
        let durable = DurableDir::open(dir.clone())
            .map_err(|err| StoreError::io(format!("open the directory of {what}"), &dir, &err))?;
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
        };
        Ok((log, records))
    }

    /// Number of complete lines in the file.
    pub(crate) fn lines(&self) -> usize {
        self.lines
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

    /// Opens (creating, durably, when missing) the file for appending.
    fn open_for_append(&mut self) -> io::Result<File> {
        let file = OpenOptions::new()
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

    /// Replaces the whole file with `records` (compaction), atomically: a
    /// crash leaves either the old log or the new one.
    pub(crate) fn rewrite<T: Serialize>(&mut self, records: &[T]) -> Result<(), StoreError> {
        let bytes = encode_lines(records, &self.what, &self.path)?;
        self.dir
            .replace(&self.name, &bytes)
            .map_err(|err| StoreError::io(format!("compact {}", self.what), &self.path, &err))?;
        self.end = bytes.len() as u64;
        self.lines = records.len();
        self.tail_to_cut = false;
        // The new file holds every record and is durable as a whole; the
        // next append opens it (the old handle points at the replaced file).
        self.file = None;
        self.sync.all_durable(None);
        Ok(())
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
pub(crate) fn worth_compacting(lines: usize, live: usize) -> bool {
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
        assert_eq!(log.lines(), 3);
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

    #[test]
    fn rewrite_replaces_and_repositions() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log.jsonl");
        let (mut log, _) = load(&path)?;
        log.append(&[json!(1), json!(2), json!(3)])?;
        log.rewrite(&[json!(3)])?;
        log.append(&[json!(4)])?;
        let (reloaded, records) = load(&path)?;
        assert_eq!(records, vec![json!(3), json!(4)]);
        assert_eq!(reloaded.lines(), 2);
        Ok(())
    }

    #[test]
    fn compaction_threshold() {
        assert!(!worth_compacting(10, 1));
        assert!(!worth_compacting(200, 150));
        assert!(worth_compacting(200, 50));
    }
}
