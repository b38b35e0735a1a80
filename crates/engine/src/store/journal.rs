//! A write-ahead journal shared by many files of one store, and the
//! background thread that retires it.
//!
//! A store whose writes each touch a file of their own (the document
//! store: one Markdown file per document) would pay for creating, flushing
//! and renaming that file on every write. With a journal, each write also appends a record to the journal and is
//! acknowledged once that record is durable: one `fdatasync` of the journal
//! answers every writer that appended while it ran (group commit, see
//! [`group_sync`](super::group_sync)), whatever files they wrote. The files
//! themselves are written without a flush of their own.
//!
//! *Checkpoints* retire records. The journal is two JSON Lines files that
//! take turns (`.journal-0.jsonl`, `.journal-1.jsonl` in the store's
//! directory; a leading dot keeps them out of listings), each padded with
//! zeros so that an append's flush is pure data
//! ([`journal_file`](super::journal_file)). A checkpoint
//! points new writes at the empty one, lets the store finish the writes the
//! other one holds (`apply`), flushes the filesystem ([`flush_filesystem`]:
//! every file written before it becomes durable) and empties the other.
//! Each record carries a `seq` that orders the records of both files; on
//! open, the store replays what the journal still holds (a crash, a failed
//! flush) in `seq` order, flushes, and empties both files
//! ([`Journal::clear`]).
//!
//! [`JournalThread`] checkpoints when the active file passes
//! [`CHECKPOINT_BYTES`] and about once a second while it holds records, and
//! does the store's other background work when woken.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use super::files::{DurableDir, flush_filesystem};
use super::journal_file::JournalFile;
use super::jsonl::Pending;

/// The two journal files, in the store's directory.
pub(crate) const JOURNAL_NAMES: [&str; 2] = [".journal-0.jsonl", ".journal-1.jsonl"];

/// Size of the active journal file that makes the thread checkpoint at once
/// rather than at its next tick.
const CHECKPOINT_BYTES: u64 = 8 << 20;

/// How often the thread checkpoints a journal that holds records.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The journal of one store directory (see the module docs).
#[derive(Debug)]
pub(crate) struct Journal {
    dir: Arc<DurableDir>,
    /// Which file takes appends, and the next `seq`.
    turn: Mutex<Turn>,
    /// The two files. Lock order: `turn`, then a file.
    files: [Mutex<JournalFile>; 2],
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
}

#[derive(Debug)]
struct Turn {
    active: usize,
    next_seq: u64,
}

impl Journal {
    /// Opens the journal in `dir` and returns the records its two files
    /// hold, for the store to replay (in `seq` order) before it calls
    /// [`Journal::clear`]. Blocking.
    pub(crate) fn open<R: DeserializeOwned>(
        dir: Arc<DurableDir>,
        what: &str,
    ) -> Result<(Self, Vec<R>), StoreError> {
        let load = |name: &str| JournalFile::load::<R>(&dir, name, what);
        let (first, mut records) = load(JOURNAL_NAMES[0])?;
        let (second, more) = load(JOURNAL_NAMES[1])?;
        records.extend(more);
        let journal = Self {
            dir,
            turn: Mutex::new(Turn {
                active: 0,
                next_seq: 1,
            }),
            files: [Mutex::new(first), Mutex::new(second)],
            checkpointing: Mutex::new(()),
        };
        Ok((journal, records))
    }

    /// Empties both files, once what they held has been replayed and
    /// flushed. Blocking.
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        for file in &self.files {
            lock(file).clear()?;
        }
        Ok(())
    }

    /// Appends the record `make(seq)` to the active file. The record is not
    /// durable yet: the caller waits on the returned [`Pending`] after
    /// releasing its own locks, before answering its writer. Blocking.
    pub(crate) fn append<R: Serialize>(
        &self,
        make: impl FnOnce(u64) -> R,
    ) -> Result<(u64, Option<Pending>), StoreError> {
        let mut turn = lock(&self.turn);
        let seq = turn.next_seq;
        let mut file = lock(&self.files[turn.active]);
        file.append(&[make(seq)])?;
        turn.next_seq += 1;
        Ok((seq, file.take_pending()))
    }

    /// Bytes in the active file.
    fn active_bytes(&self) -> u64 {
        let turn = lock(&self.turn);
        lock(&self.files[turn.active]).bytes()
    }

    /// Retires the file that does not take appends, switching first when
    /// it is empty (see the module docs). `apply` must leave every write
    /// recorded so far in its file (written, not necessarily flushed).
    /// Blocking.
    pub(crate) fn checkpoint(
        &self,
        apply: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.checkpointing);
        let retiring = {
            let mut turn = lock(&self.turn);
            let inactive = 1 - turn.active;
            if lock(&self.files[inactive]).lines() == 0 {
                if lock(&self.files[turn.active]).lines() == 0 {
                    return Ok(());
                }
                turn.active = inactive;
            }
            1 - turn.active
        };
        apply()?;
        flush_filesystem(self.dir.path())
            .map_err(|err| StoreError::io("flush the store's directory", self.dir.path(), &err))?;
        lock(&self.files[retiring]).clear()
    }

    /// Retires both files: every write made before the call is in its
    /// file, durably. Blocking.
    pub(crate) fn checkpoint_all(
        &self,
        apply: impl Fn() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // The first retires the inactive file (or switches and retires the
        // active one), the second whatever the first left.
        self.checkpoint(&apply)?;
        self.checkpoint(&apply)
    }
}

/// What a store does on its journal's thread.
pub(crate) trait JournalWork: Send + Sync + 'static {
    /// One pass: the store's own work (if any), then a checkpoint when
    /// `checkpoint` is true.
    fn pass(&self, checkpoint: bool) -> Result<(), StoreError>;
}

/// The background thread of a journal (see the module docs). Stopped (and
/// joined) by [`JournalThread::stop`] or when dropped.
#[derive(Debug)]
pub(crate) struct JournalThread {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Control {
    state: Mutex<ControlState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct ControlState {
    /// Work arrived since the last pass began.
    work: bool,
    /// The thread should stop.
    closed: bool,
}

/// Lets writers wake a [`JournalThread`] for work.
#[derive(Debug, Clone)]
pub(crate) struct Wakeup(Arc<Control>);

impl Wakeup {
    /// Asks for a pass soon.
    pub(crate) fn wake(&self) {
        lock(&self.0.state).work = true;
        self.0.wake.notify_one();
    }
}

impl JournalThread {
    /// The handle writers use to wake the thread, made before the thread
    /// starts so that the store can hold it.
    pub(crate) fn wakeup() -> Wakeup {
        Wakeup(Arc::new(Control::default()))
    }

    /// Starts the thread `name`, woken by `wakeup`, doing `work`'s passes
    /// for `journal`.
    pub(crate) fn start(
        name: &str,
        wakeup: &Wakeup,
        journal: Arc<Journal>,
        work: Arc<dyn JournalWork>,
    ) -> io::Result<Self> {
        let control = Arc::clone(&wakeup.0);
        let background = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&background, &journal, &*work))?;
        Ok(Self {
            control,
            thread: Some(thread),
        })
    }

    /// Stops the thread after its current pass and waits for it.
    pub(crate) fn stop(&mut self) {
        lock(&self.control.state).closed = true;
        self.control.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for JournalThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(control: &Control, journal: &Journal, work: &dyn JournalWork) {
    let mut last_checkpoint = Instant::now();
    loop {
        let checkpoint = {
            let mut state = lock(&control.state);
            loop {
                if state.closed {
                    return;
                }
                let due = last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL
                    || journal.active_bytes() >= CHECKPOINT_BYTES;
                if state.work || due {
                    state.work = false;
                    break due;
                }
                let wait = CHECKPOINT_INTERVAL.saturating_sub(last_checkpoint.elapsed());
                state = control
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        if checkpoint {
            last_checkpoint = Instant::now();
        }
        if let Err(error) = work.pass(checkpoint) {
            tracing::error!(%error, detail = error.detail(), "journal: background write failed; retrying in a second");
            let state = lock(&control.state);
            if !state.closed {
                let _ = control.wake.wait_timeout(state, CHECKPOINT_INTERVAL);
            }
        }
    }
}
