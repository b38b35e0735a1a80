//! The document store's write-ahead journal: a document write is made
//! durable by a record in the store's [`Journal`] (one `fdatasync` shared
//! by every concurrent writer) instead of by creating, flushing and
//! renaming a file of its own while the writer waits.
//!
//! A write (put or delete), under the store's lock, appends a record
//! carrying the whole content to the journal and enters it in an in-memory
//! table of *unapplied* writes; after the lock it waits until the record is
//! durable and is answered. Readers look in the table first, then at the
//! document files, so they see every write at once.
//!
//! The journal's background thread ([`JournalThread`]) *applies* the table
//! to the files: each document's latest write becomes its file (a temporary
//! file renamed over it, with the write's time as modification time; a
//! delete removes it), then leaves the table. Many writes of one document
//! between two passes cost one file. The table is bounded
//! ([`MAX_UNAPPLIED_BYTES`]): when the files fall that far behind, writers
//! wait for the thread. A checkpoint applies everything first, so the
//! records it retires are all in files (see [`journal`](super::journal)).
//!
//! On open, records left in the journal (a crash, a failed flush) are
//! replayed: each document's last write is applied, the filesystem is
//! flushed and the journal emptied. Leftover temporary files are removed
//! first. A torn last line is a write that was never acknowledged and is
//! ignored (see [`jsonl`](super::jsonl)).
//!
//! Records: `{"seq": 12, "id": "S1__prd", "t": <unix ms>, "c": "<content>"}`;
//! a deletion has no `c`.
//!
//! A write whose journal `fdatasync` fails is reported as failed, but it
//! was already visible and may still reach the files; after such a failure
//! the journal refuses every write until the process restarts (see
//! [`group_sync`](super::group_sync)).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::files::{
    DurableDir, SYNC_EACH_FILE, disk_wait, flush_filesystem, now_ms, remove_if_present,
    remove_temp_files, rename_into, write_temp,
};
use super::journal::{Journal, JournalThread, JournalWork, Wakeup, lock};
use super::jsonl::Pending;
use super::{DocId, StoreError};

/// How long a writer waiting for room waits before it looks again.
const ROOM_WAIT: Duration = Duration::from_secs(1);

/// How much unapplied content may wait in memory before writers wait for
/// the files to catch up.
const MAX_UNAPPLIED_BYTES: usize = 64 << 20;

/// One line of a journal (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
struct JournalRecord<'a> {
    /// Order of the write among all writes in the journal.
    seq: u64,
    /// The document id.
    id: Cow<'a, str>,
    /// When it was written, unix ms: the document's modification time.
    t: u64,
    /// The new content; absent for a deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<Cow<'a, str>>,
}

/// A journaled write not yet applied to the document's file.
#[derive(Debug, Clone)]
pub(crate) struct UnappliedWrite {
    /// The record's `seq`: tells a newer write of the same document apart.
    seq: u64,
    /// When it was written, unix ms.
    pub modified: u64,
    /// The new content; `None` for a deletion.
    pub content: Option<Arc<str>>,
}

#[cfg(test)]
impl UnappliedWrite {
    /// A write as the table would hold it, for tests of its readers.
    pub(crate) fn for_test(modified: u64, content: Option<&str>) -> Self {
        Self {
            seq: 1,
            modified,
            content: content.map(Arc::from),
        }
    }
}

/// The journal of one document directory (see the module docs).
#[derive(Debug)]
pub(crate) struct DocJournal {
    dir: Arc<DurableDir>,
    /// Lock order: `state`, then the journal's own locks.
    state: Mutex<JournalState>,
    journal: Arc<Journal>,
    /// Wakes the background thread when a write comes in.
    wakeup: Wakeup,
    /// Wakes writers waiting for room in the unapplied table (with `state`).
    room: Condvar,
    /// One applier at a time: the thread, `flush`.
    applying: Mutex<()>,
}

#[derive(Debug)]
struct JournalState {
    /// Journaled writes not yet applied to the files, by document.
    unapplied: HashMap<DocId, UnappliedWrite>,
    /// Content bytes in `unapplied`.
    unapplied_bytes: usize,
    /// Why applying or checkpointing last failed, until it next succeeds
    /// (reported by `health`, and to writers waiting for room).
    failure: Option<String>,
}

/// The file of document `id`.
pub(crate) fn file_name(id: &DocId) -> String {
    format!("{id}.md")
}

impl DocJournal {
    /// Opens the journal of `dir` (blocking): removes leftover temporary
    /// files and replays what the journal still holds (see the module docs).
    fn open(dir: Arc<DurableDir>, wakeup: Wakeup) -> Result<Self, StoreError> {
        remove_temp_files(dir.path(), "the document directory")?;
        let (journal, records) =
            Journal::open::<JournalRecord<'static>>(Arc::clone(&dir), "the document journal")?;
        replay(dir.path(), records)?;
        journal.clear()?;
        Ok(Self {
            dir,
            state: Mutex::new(JournalState {
                unapplied: HashMap::new(),
                unapplied_bytes: 0,
                failure: None,
            }),
            journal: Arc::new(journal),
            wakeup,
            room: Condvar::new(),
            applying: Mutex::new(()),
        })
    }

    /// Writes `content` to document `id`: visible at once, durable once the
    /// returned [`Pending`] is waited for. An append; it blocks only while
    /// the files are far behind the table ([`MAX_UNAPPLIED_BYTES`]).
    pub(crate) fn put(&self, id: &DocId, content: Arc<str>) -> Result<Option<Pending>, StoreError> {
        let mut state = lock(&self.state);
        if state.unapplied_bytes > MAX_UNAPPLIED_BYTES {
            state = disk_wait(|| self.wait_for_room(state))?;
        }
        self.journal(state, id, Some(content))
    }

    /// Blocks until the files have caught up with the table (see the
    /// module docs), or applying them failed.
    fn wait_for_room<'a>(
        &'a self,
        mut state: MutexGuard<'a, JournalState>,
    ) -> Result<MutexGuard<'a, JournalState>, StoreError> {
        while state.unapplied_bytes > MAX_UNAPPLIED_BYTES {
            if let Some(failure) = &state.failure {
                return Err(StoreError::Unavailable {
                    message: "document storage is not writable".into(),
                    detail: failure.clone(),
                });
            }
            state = self
                .room
                .wait_timeout(state, ROOM_WAIT)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(state)
    }

    /// Deletes document `id`; `false` when it did not exist. Like
    /// [`DocJournal::put`], durable once the [`Pending`] is waited for.
    pub(crate) fn delete(&self, id: &DocId) -> Result<(bool, Option<Pending>), StoreError> {
        let state = lock(&self.state);
        let exists = match state.unapplied.get(id) {
            Some(write) => write.content.is_some(),
            // Not in the table: its file is up to date (the applier only
            // removes a write from the table after writing the file).
            None => {
                let path = self.dir.path().join(file_name(id));
                match fs::symlink_metadata(&path) {
                    Ok(_) => true,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => false,
                    Err(err) => {
                        return Err(StoreError::io(
                            format!("delete document `{id}`"),
                            &path,
                            &err,
                        ));
                    }
                }
            }
        };
        if !exists {
            return Ok((false, None));
        }
        Ok((true, self.journal(state, id, None)?))
    }

    /// Appends the record of a write to the active journal and enters it in
    /// the unapplied table, then releases the lock; the record is durable
    /// once the returned [`Pending`] is waited for.
    fn journal(
        &self,
        mut state: MutexGuard<'_, JournalState>,
        id: &DocId,
        content: Option<Arc<str>>,
    ) -> Result<Option<Pending>, StoreError> {
        let modified = now_ms();
        let (seq, pending) = self.journal.append(|seq| JournalRecord {
            seq,
            id: Cow::Borrowed(id.as_str()),
            t: modified,
            c: content.as_deref().map(Cow::Borrowed),
        })?;
        state.unapplied_bytes += content.as_ref().map_or(0, |c| c.len());
        let write = UnappliedWrite {
            seq,
            modified,
            content,
        };
        if let Some(replaced) = state.unapplied.insert(id.clone(), write) {
            state.unapplied_bytes -= replaced.content.map_or(0, |c| c.len());
        }
        drop(state);
        self.wakeup.wake();
        Ok(pending)
    }

    /// The write of `id` not yet applied to its file, if any.
    pub(crate) fn unapplied(&self, id: &DocId) -> Option<UnappliedWrite> {
        lock(&self.state).unapplied.get(id).cloned()
    }

    /// Every write not yet applied to its file (for listings).
    pub(crate) fn all_unapplied(&self) -> Vec<(DocId, UnappliedWrite)> {
        let state = lock(&self.state);
        state
            .unapplied
            .iter()
            .map(|(id, write)| (id.clone(), write.clone()))
            .collect()
    }

    /// Why applying or checkpointing last failed, while it keeps failing.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.state).failure.clone()
    }

    /// Applies every write in the unapplied table to the files and removes
    /// it from the table, unless a newer write of the same document came in
    /// meanwhile (the next pass applies that one). Blocking; the caller
    /// holds `applying`.
    fn apply_unapplied(&self) -> Result<(), StoreError> {
        let batch = self.all_unapplied();
        if batch.is_empty() {
            return Ok(());
        }
        let dir = self.dir.path();
        let mut applied = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        for (id, write) in batch {
            if let Err(err) = apply_write(dir, &id, write.modified, write.content.as_deref()) {
                result = Err(err);
                break;
            }
            applied.push((id, write.seq));
        }
        let mut state = lock(&self.state);
        for (id, seq) in applied {
            let still_latest = state.unapplied.get(&id).is_some_and(|w| w.seq == seq);
            if still_latest && let Some(write) = state.unapplied.remove(&id) {
                state.unapplied_bytes -= write.content.map_or(0, |c| c.len());
            }
        }
        drop(state);
        self.room.notify_all();
        result
    }

    /// Applies every write made so far and retires the journal: the
    /// document files alone hold everything, durably. Blocking.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let _applier = lock(&self.applying);
        let result = self
            .apply_unapplied()
            .and_then(|()| self.journal.checkpoint_all(|| self.apply_unapplied()));
        self.record_outcome(&result);
        result
    }

    fn record_outcome(&self, result: &Result<(), StoreError>) {
        let failure = result.as_ref().err().map(|err| {
            err.detail()
                .map_or_else(|| err.to_string(), ToString::to_string)
        });
        lock(&self.state).failure = failure;
        if result.is_err() {
            // Writers waiting for room hear about the failure.
            self.room.notify_all();
        }
    }
}

impl JournalWork for DocJournal {
    fn pass(&self, checkpoint: bool) -> Result<(), StoreError> {
        let _applier = lock(&self.applying);
        let result = if checkpoint {
            self.journal.checkpoint(|| self.apply_unapplied())
        } else {
            self.apply_unapplied()
        };
        self.record_outcome(&result);
        result
    }
}

/// A [`DocJournal`] with its background thread; dropping it stops the
/// thread and flushes a last time.
#[derive(Debug)]
pub(crate) struct RunningJournal {
    journal: Arc<DocJournal>,
    thread: JournalThread,
}

impl RunningJournal {
    /// Opens the journal of `dir` (see [`DocJournal::open`]) and starts its
    /// thread. Blocking.
    pub(crate) fn start(dir: Arc<DurableDir>) -> Result<Self, StoreError> {
        let path = dir.path().to_path_buf();
        let wakeup = JournalThread::wakeup();
        let journal = Arc::new(DocJournal::open(dir, wakeup.clone())?);
        let work: Arc<dyn JournalWork> = Arc::clone(&journal) as _;
        let thread =
            JournalThread::start("bmad2pf-docs", &wakeup, Arc::clone(&journal.journal), work)
                .map_err(|err| {
                    StoreError::io("start the document journal's thread", &path, &err)
                })?;
        Ok(Self { journal, thread })
    }

    pub(crate) fn journal(&self) -> &Arc<DocJournal> {
        &self.journal
    }
}

impl Drop for RunningJournal {
    fn drop(&mut self) {
        self.thread.stop();
        if let Err(error) = self.journal.flush() {
            tracing::error!(%error, "document journal: the last flush failed; the next start replays the journal");
        }
    }
}

/// Makes the file of `id` hold `content` with modification time `modified`
/// (a temporary file renamed over it), or removes it for `None`. The file
/// is durable only after a [`flush_filesystem`].
fn apply_write(
    dir: &Path,
    id: &DocId,
    modified: u64,
    content: Option<&str>,
) -> Result<(), StoreError> {
    let name = file_name(id);
    let failed =
        |err: &io::Error| StoreError::io(format!("write document `{id}`"), &dir.join(&name), err);
    let Some(content) = content else {
        return remove_if_present(&dir.join(&name)).map_err(|e| failed(&e));
    };
    let modified = UNIX_EPOCH + Duration::from_millis(modified);
    let temp = write_temp(dir, &name, content.as_bytes(), |file: &File| {
        file.set_modified(modified)?;
        if SYNC_EACH_FILE {
            file.sync_all()?;
        }
        Ok(())
    })
    .map_err(|e| failed(&e))?;
    rename_into(&temp, dir, &name).map_err(|e| failed(&e))
}

/// Applies the last write of each document found in the journals, then
/// flushes (see the module docs).
fn replay(dir: &Path, records: Vec<JournalRecord<'static>>) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut last: BTreeMap<String, JournalRecord<'static>> = BTreeMap::new();
    for record in records {
        let newer = last
            .get(record.id.as_ref())
            .is_none_or(|known| known.seq < record.seq);
        if newer {
            last.insert(record.id.to_string(), record);
        }
    }
    let count = last.len();
    for (id, record) in last {
        let id = DocId::parse(&id).map_err(|err| {
            StoreError::corrupt(format!("the document journal, document `{id}`"), dir, err)
        })?;
        apply_write(dir, &id, record.t, record.c.as_deref())?;
    }
    flush_filesystem(dir)
        .map_err(|err| StoreError::io("flush the document directory", dir, &err))?;
    tracing::info!(
        documents = count,
        "document journal replayed (writes not yet checkpointed when the last process stopped)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::JOURNAL_NAMES;
    use std::path::PathBuf;
    use std::time::{Instant, SystemTime};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn open(dir: &Path) -> Result<DocJournal, Box<dyn std::error::Error>> {
        Ok(DocJournal::open(
            Arc::new(DurableDir::open(dir.to_path_buf())?),
            JournalThread::wakeup(),
        )?)
    }

    /// The content of a journal file: its text up to the zero padding.
    fn journal_text(path: &Path) -> Result<String, io::Error> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec()).map_err(io::Error::other)
    }

    fn journal_lines(dir: &Path) -> Result<Vec<String>, io::Error> {
        let mut lines = Vec::new();
        for name in JOURNAL_NAMES {
            lines.extend(journal_text(&dir.join(name))?.lines().map(str::to_string));
        }
        Ok(lines)
    }

    fn doc(id: &str) -> Result<DocId, Box<dyn std::error::Error>> {
        Ok(DocId::parse(id)?)
    }

    #[test]
    fn a_write_is_readable_at_once_and_journaled_until_flushed_into_its_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let journal = open(dir.path())?;
        let id = doc("S1__prd")?;
        journal.put(&id, Arc::from("# PRD\n"))?;
        let write = journal.unapplied(&id).ok_or("the write is not visible")?;
        assert_eq!(write.content.as_deref(), Some("# PRD\n"));
        let lines = journal_lines(dir.path())?;
        assert_eq!(lines.len(), 1);
        let record: serde_json::Value = serde_json::from_str(&lines[0])?;
        assert_eq!(record["id"], "S1__prd");
        assert_eq!(record["c"], "# PRD\n");
        assert_eq!(record["seq"], 1);

        journal.flush()?;
        assert!(journal.unapplied(&id).is_none());
        assert!(journal_lines(dir.path())?.is_empty());
        assert_eq!(
            fs::read_to_string(dir.path().join("S1__prd.md"))?,
            "# PRD\n"
        );

        assert!(journal.delete(&id)?.0);
        assert!(journal.unapplied(&id).is_some_and(|w| w.content.is_none()));
        // Deleting what is deleted already records nothing.
        assert!(!journal.delete(&id)?.0);
        assert!(!journal.delete(&doc("S1__never")?)?.0);
        assert_eq!(journal_lines(dir.path())?.len(), 1);
        journal.flush()?;
        assert!(!dir.path().join("S1__prd.md").exists());
        Ok(())
    }

    #[test]
    fn writes_during_a_checkpoint_go_to_the_other_journal() -> TestResult {
        let dir = tempfile::tempdir()?;
        let journal = open(dir.path())?;
        journal.put(&doc("a")?, Arc::from("1"))?;
        // A checkpoint switches: the next write lands in the other file.
        journal.pass(true)?;
        journal.put(&doc("b")?, Arc::from("2"))?;
        let first = journal_text(&dir.path().join(JOURNAL_NAMES[0]))?;
        let second = journal_text(&dir.path().join(JOURNAL_NAMES[1]))?;
        assert_eq!(first, "", "the retired journal is empty");
        assert!(
            second.contains("\"id\":\"b\""),
            "the new write is journaled: {second}"
        );
        assert_eq!(fs::read_to_string(dir.path().join("a.md"))?, "1");
        Ok(())
    }

    #[test]
    fn the_background_thread_applies_writes_and_the_last_drop_flushes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let running = RunningJournal::start(Arc::new(DurableDir::open(dir.path().to_path_buf())?))?;
        let id = doc("S1__brief")?;
        running.journal().put(&id, Arc::from("brief"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while running.journal().unapplied(&id).is_some() {
            assert!(Instant::now() < deadline, "the write was never applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            fs::read_to_string(dir.path().join("S1__brief.md"))?,
            "brief"
        );
        running
            .journal()
            .put(&doc("S1__later")?, Arc::from("later"))?;
        drop(running);
        assert_eq!(
            fs::read_to_string(dir.path().join("S1__later.md"))?,
            "later"
        );
        assert!(journal_lines(dir.path())?.is_empty());
        Ok(())
    }

    /// The state an OS crash can leave: the journals hold writes whose
    /// files never reached the disk, a torn line, a temporary file.
    #[test]
    fn open_replays_each_documents_last_write_after_a_crash() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path: PathBuf = dir.path().to_path_buf();
        fs::write(path.join("S1__prd.md"), "stale")?;
        fs::write(path.join("S1__old.md"), "deleted before the crash")?;
        fs::write(path.join(".S1__prd.md.tmp-0123456789abcdef"), "half")?;
        let t = 1_700_000_000_123u64;
        fs::write(
            path.join(JOURNAL_NAMES[0]),
            format!(
                "{{\"seq\":4,\"id\":\"S1__prd\",\"t\":{t},\"c\":\"# PRD v2\\n\"}}\n\
                 {{\"seq\":5,\"id\":\"S1__old\",\"t\":{t}}}\n\
                 {{\"seq\":6,\"id\":\"S1__prd\",\"t\":{t},\"c\":\"torn"
            ),
        )?;
        fs::write(
            path.join(JOURNAL_NAMES[1]),
            format!(
                "{{\"seq\":2,\"id\":\"S1__prd\",\"t\":1,\"c\":\"# PRD v1\\n\"}}\n\
                 {{\"seq\":3,\"id\":\"S1__new\",\"t\":{t},\"c\":\"new\"}}\n"
            ),
        )?;

        let journal = open(&path)?;
        assert_eq!(fs::read_to_string(path.join("S1__prd.md"))?, "# PRD v2\n");
        assert_eq!(fs::read_to_string(path.join("S1__new.md"))?, "new");
        assert!(!path.join("S1__old.md").exists());
        assert!(!path.join(".S1__prd.md.tmp-0123456789abcdef").exists());
        let modified = fs::metadata(path.join("S1__prd.md"))?.modified()?;
        assert_eq!(
            modified.duration_since(SystemTime::UNIX_EPOCH)?.as_millis(),
            u128::from(t),
            "the recorded time becomes the file's modification time"
        );
        assert!(
            journal_lines(&path)?.is_empty(),
            "replayed journals are emptied"
        );

        // Sequence numbers start again from 1 over empty journals.
        journal.put(&doc("S1__prd")?, Arc::from("v3"))?;
        let open_again = open(&path)?;
        drop(open_again);
        assert_eq!(fs::read_to_string(path.join("S1__prd.md"))?, "v3");
        Ok(())
    }

    #[test]
    fn a_bad_id_in_the_journal_is_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        fs::write(
            dir.path().join(JOURNAL_NAMES[0]),
            "{\"seq\":1,\"id\":\"../escape\",\"t\":1,\"c\":\"x\"}\n",
        )?;
        let err = open(dir.path()).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("stored data is corrupt: the document journal, document `../escape`")
        );
        assert!(!dir.path().join("../escape.md").exists());
        Ok(())
    }

    #[test]
    fn concurrent_writers_of_one_document_leave_the_journals_last_write_in_the_file() -> TestResult
    {
        let dir = tempfile::tempdir()?;
        let journal = Arc::new(open(dir.path())?);
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let journal = Arc::clone(&journal);
                std::thread::spawn(move || -> Result<(), StoreError> {
                    let id = DocId::parse("shared")
                        .map_err(|e| StoreError::corrupt("test id", Path::new("."), e))?;
                    for i in 0..20 {
                        journal.put(&id, Arc::from(format!("writer {writer} write {i}")))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for writer in writers {
            writer.join().map_err(|_| "writer panicked")??;
        }
        let last = journal_lines(dir.path())?
            .iter()
            .map(|line| serde_json::from_str::<serde_json::Value>(line))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max_by_key(|record| record["seq"].as_u64())
            .ok_or("no records")?;
        journal.flush()?;
        assert_eq!(
            fs::read_to_string(dir.path().join("shared.md"))?,
            last["c"].as_str().ok_or("no content")?
        );
        Ok(())
    }
}
