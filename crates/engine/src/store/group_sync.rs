//! Group commit: many writers, one fsync.
//!
//! An fsync costs about as much for one small write as for fifty (on the
//! disks this was measured on, 0.4–1 ms either way), so concurrent writers
//! of one file or directory should share it. A writer first makes its change
//! (appends its line, renames its file) and takes a *ticket*, then waits
//! until a sync that started after its change has finished. The first waiter
//! to find no sync running starts one, covering every change made so far;
//! the others wait for it and return with it. A writer is answered only
//! after its change is durable, as before — under load, one fsync answers
//! many writers instead of one.
//!
//! Two ways to wait. [`GroupSync::wait`] blocks its thread (and runs the
//! sync on it when none is running): for code already on a blocking
//! thread, such as the document journal's. [`GroupSync::wait_async`] is for
//! async writers: it parks the task, not a thread, and a sync it has to
//! start runs on tokio's blocking pool. That keeps a write's slow part —
//! the wait for the disk — off the runtime's threads without handing each
//! writer to a thread of its own: one blocking-pool trip per sync, however
//! many writers it answers. Where a sync costs less than that trip — the
//! last one took under [`INLINE_SYNC_BELOW`], as on tmpfs or a disk with
//! nothing to flush — the waiter runs it on its own thread instead: a
//! sequential writer (a chain of agents) would otherwise pay a thread
//! hand-off per write for a flush of a microsecond. At most one thread per
//! file blocks that way at a time, for one sync, before a slow one turns
//! the choice back.
//!
//! A failed fsync is sticky: Linux may drop the unwritten pages and report
//! the error once, so a later fsync that succeeds proves nothing about the
//! earlier changes. After a failure every waiter, and every later writer,
//! gets the error until the process restarts and reads the files again.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A sync faster than this is run by the async waiter itself, on its own
/// thread (see the module docs); a hand-off to the blocking pool costs tens
/// of microseconds.
const INLINE_SYNC_BELOW: Duration = Duration::from_micros(50);

/// What a sync flushes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SyncKind {
    /// `fdatasync`: the data and the size of an appended file.
    Data,
    /// `fsync`: everything, as a directory needs for its entries.
    All,
}

/// The ticket of one change: wait for it with [`GroupSync::wait`].
pub(crate) type Ticket = u64;

/// One file or directory whose changes are made durable in groups (see the
/// module docs).
#[derive(Debug)]
pub(crate) struct GroupSync {
    kind: SyncKind,
    state: Mutex<SyncState>,
    /// Wakes the threads blocked in [`GroupSync::wait`] when a sync ends.
    finished: Condvar,
    /// Wakes the tasks awaiting [`GroupSync::wait_async`] when a sync ends.
    finished_async: Notify,
}

/// What a waiter does next, decided under the lock.
enum Step {
    /// Its change is durable (`Ok`), or a sync failed.
    Done(io::Result<()>),
    /// A sync is running: wait for it to end, then look again.
    Wait,
    /// No sync is running: this waiter runs one, flushing `handle` (then
    /// running `publish`, when `handle` replaces the file) up to ticket
    /// `target` (the `syncing` flag is set).
    Sync {
        handle: Arc<File>,
        publish: Option<Publish>,
        target: Ticket,
    },
}

/// What makes a replacement the file itself — a rename over it and an
/// fsync of its directory — run by the first sync after
/// [`GroupSync::replaced`], once the replacement's data is flushed. Dropped
/// unrun (a sync failed first, or a later replacement came), it cleans up
/// after itself.
pub(crate) struct Publish(Box<dyn FnOnce() -> io::Result<()> + Send>);

impl Publish {
    pub fn new(publish: impl FnOnce() -> io::Result<()> + Send + 'static) -> Self {
        Self(Box::new(publish))
    }
}

impl std::fmt::Debug for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publish")
    }
}

#[derive(Debug, Default)]
struct SyncState {
    /// The handle a sync flushes; changes are made through it (or, for a
    /// directory, inside it). Replaced when a log is compacted.
    handle: Option<Arc<File>>,
    /// What the next sync runs after flushing `handle`, which replaces the
    /// file (see [`GroupSync::replaced`]).
    publish: Option<Publish>,
    /// Tickets handed out so far.
    changed: Ticket,
    /// Every change up to this ticket is durable.
    durable: Ticket,
    /// A sync is running.
    syncing: bool,
    /// The last sync took less than [`INLINE_SYNC_BELOW`].
    last_sync_fast: bool,
    /// The first failed sync, reported from then on.
    failed: Option<String>,
}

impl GroupSync {
    pub fn new(kind: SyncKind) -> Self {
        Self {
            kind,
            state: Mutex::new(SyncState::default()),
            finished: Condvar::new(),
            finished_async: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a change just made through `handle` (call it after the
    /// write returned, so that a sync counting this ticket flushes it) and
    /// returns its ticket.
    pub fn changed(&self, handle: &Arc<File>) -> Ticket {
        let mut state = self.lock();
        state.handle = Some(Arc::clone(handle));
        state.changed += 1;
        state.changed
    }

    /// Records that every change so far is durable already (a journal was
    /// emptied once what it recorded was durable elsewhere); later changes
    /// go through `handle`.
    pub fn all_durable(&self, handle: Option<Arc<File>>) {
        let mut state = self.lock();
        state.handle = handle;
        state.durable = state.changed;
        drop(state);
        self.notify_finished();
    }

    /// Records that `handle`, a new file holding every change made so far,
    /// replaces the file: changes go through it from now on, and the next
    /// sync flushes it, then runs `publish` to put it in the file's place,
    /// before it counts any change as durable. Returns the ticket of the
    /// replacement itself, to wait for it.
    ///
    /// Until `publish` has run, the old file is the file: the changes
    /// counted as durable before are durable there (a sync running now
    /// still counts for the changes it covers), and the later ones are not
    /// answered yet. A `publish` still waiting is dropped for this one, which
    /// holds all it would have published.
    pub fn replaced(&self, handle: &Arc<File>, publish: Publish) -> Ticket {
        let mut state = self.lock();
        state.handle = Some(Arc::clone(handle));
        let superseded = state.publish.replace(publish);
        state.changed += 1;
        let ticket = state.changed;
        drop(state);
        drop(superseded);
        ticket
    }

    /// Fails when an earlier sync failed (see the module docs); checked
    /// before a change is made, so nothing is changed on a broken file.
    pub fn check(&self) -> io::Result<()> {
        match &self.lock().failed {
            Some(message) => Err(sticky_failure(message)),
            None => Ok(()),
        }
    }

    /// Blocks until the change with `ticket` is durable, running the sync
    /// itself when none is running.
    pub fn wait(&self, ticket: Ticket) -> io::Result<()> {
        let mut state = self.lock();
        loop {
            match self.next_step(&mut state, ticket) {
                Step::Done(result) => return result,
                Step::Wait => {
                    state = self
                        .finished
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Step::Sync {
                    handle,
                    publish,
                    target,
                } => {
                    drop(state);
                    self.sync(&handle, publish, target);
                    state = self.lock();
                }
            }
        }
    }

    /// Waits, parking the task rather than a thread, until the change with
    /// `ticket` is durable; a sync it has to start runs on the blocking
    /// pool, or right here when the last one was fast (see the module docs).
    pub async fn wait_async(self: &Arc<Self>, ticket: Ticket) -> io::Result<()> {
        loop {
            // Created before the state is read, so the end of a sync that
            // is running now cannot be missed.
            let finished = self.finished_async.notified();
            // The lock is released before a sync runs: the sync takes it
            // again, on this thread when it is run inline or dropped unrun.
            let (step, fast) = {
                let mut state = self.lock();
                (self.next_step(&mut state, ticket), state.last_sync_fast)
            };
            match step {
                Step::Done(result) => return result,
                Step::Wait => {}
                Step::Sync {
                    handle,
                    publish,
                    target,
                } if fast => {
                    self.sync(&handle, publish, target);
                    continue;
                }
                Step::Sync {
                    handle,
                    publish,
                    target,
                } => {
                    let job = SyncJob {
                        group: Arc::clone(self),
                        handle,
                        publish,
                        target,
                    };
                    drop(tokio::task::spawn_blocking(move || drop(job)));
                }
            }
            finished.await;
        }
    }

    fn next_step(&self, state: &mut SyncState, ticket: Ticket) -> Step {
        if let Some(message) = &state.failed {
            return Step::Done(Err(sticky_failure(message)));
        }
        if state.durable >= ticket {
            return Step::Done(Ok(()));
        }
        if state.syncing {
            return Step::Wait;
        }
        let Some(handle) = state.handle.clone() else {
            // Nothing was changed through a handle: nothing to flush.
            state.durable = state.durable.max(ticket);
            return Step::Done(Ok(()));
        };
        state.syncing = true;
        Step::Sync {
            handle,
            publish: state.publish.take(),
            target: state.changed,
        }
    }

    /// Runs the sync a [`Step::Sync`] handed out and tells every waiter.
    fn sync(&self, handle: &File, publish: Option<Publish>, target: Ticket) {
        let started = Instant::now();
        let result = match self.kind {
            SyncKind::Data => handle.sync_data(),
            SyncKind::All => handle.sync_all(),
        }
        .and_then(|()| publish.map_or(Ok(()), |publish| (publish.0)()));
        let took = started.elapsed();
        let mut state = self.lock();
        state.syncing = false;
        state.last_sync_fast = took < INLINE_SYNC_BELOW;
        match result {
            Ok(()) => state.durable = state.durable.max(target),
            Err(err) => state.failed = Some(err.to_string()),
        }
        drop(state);
        self.notify_finished();
    }

    fn notify_finished(&self) {
        self.finished.notify_all();
        self.finished_async.notify_waiters();
    }
}

/// A sync started by [`GroupSync::wait_async`]. It runs when the job is
/// dropped: on the blocking pool, or — should the runtime shut down before
/// running the task — wherever the task is dropped. A sync marked as
/// running must always end, or its waiters would wait forever.
struct SyncJob {
    group: Arc<GroupSync>,
    handle: Arc<File>,
    publish: Option<Publish>,
    target: Ticket,
}

impl Drop for SyncJob {
    fn drop(&mut self) {
        self.group
            .sync(&self.handle, self.publish.take(), self.target);
    }
}

fn sticky_failure(message: &str) -> io::Error {
    io::Error::other(format!(
        "an earlier fsync failed ({message}); writes are refused until the process restarts"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn one_sync_covers_every_change_made_before_it() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = Arc::new(File::create(dir.path().join("log"))?);
        let sync = GroupSync::new(SyncKind::Data);
        (&*file).write_all(b"a\n")?;
        let first = sync.changed(&file);
        (&*file).write_all(b"b\n")?;
        let second = sync.changed(&file);
        sync.wait(second)?;
        // The first change was covered by the sync the second one ran.
        assert_eq!(sync.lock().durable, second);
        sync.wait(first)?;
        Ok(())
    }

    #[test]
    fn concurrent_writers_all_return_durable() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = Arc::new(File::create(dir.path().join("log"))?);
        let sync = Arc::new(GroupSync::new(SyncKind::Data));
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let (sync, file) = (Arc::clone(&sync), Arc::clone(&file));
                std::thread::spawn(move || -> io::Result<Ticket> {
                    (&*file).write_all(format!("{i}\n").as_bytes())?;
                    let ticket = sync.changed(&file);
                    sync.wait(ticket)?;
                    Ok(ticket)
                })
            })
            .collect();
        for writer in writers {
            let ticket = writer
                .join()
                .map_err(|_| io::Error::other("writer panicked"))??;
            assert!(sync.lock().durable >= ticket);
        }
        Ok(())
    }

    #[test]
    fn a_failed_sync_is_reported_from_then_on() {
        let sync = GroupSync::new(SyncKind::All);
        sync.lock().failed = Some("EIO".into());
        let err = sync.check().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("an earlier fsync failed (EIO); writes are refused until the process restarts")
        );
        assert!(sync.wait(1).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_and_blocking_writers_all_return_durable() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = Arc::new(File::create(dir.path().join("log"))?);
        let sync = Arc::new(GroupSync::new(SyncKind::Data));
        let write = |i: usize| -> io::Result<Ticket> {
            (&*file).write_all(format!("{i}\n").as_bytes())?;
            Ok(sync.changed(&file))
        };
        let mut async_writers = Vec::new();
        for i in 0..32 {
            let ticket = write(i)?;
            let sync = Arc::clone(&sync);
            async_writers.push(tokio::spawn(async move {
                sync.wait_async(ticket).await.map(|()| ticket)
            }));
        }
        let mut blocking_writers = Vec::new();
        for i in 32..40 {
            let ticket = write(i)?;
            let sync = Arc::clone(&sync);
            blocking_writers.push(tokio::task::spawn_blocking(move || {
                sync.wait(ticket).map(|()| ticket)
            }));
        }
        for writer in async_writers.into_iter().chain(blocking_writers) {
            let ticket = writer.await.map_err(io::Error::other)??;
            assert!(sync.lock().durable >= ticket);
        }
        let state = sync.lock();
        assert!(!state.syncing, "a sync was left marked as running");
        assert_eq!(state.durable, state.changed);
        Ok(())
    }

    #[tokio::test]
    async fn an_async_waiter_gone_mid_sync_leaves_the_sync_to_finish() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = Arc::new(File::create(dir.path().join("log"))?);
        let sync = Arc::new(GroupSync::new(SyncKind::Data));
        (&*file).write_all(b"a\n")?;
        let first = sync.changed(&file);
        // Polled once, it starts the sync on the blocking pool; then it is dropped.
        let polled = futures::poll!(Box::pin(sync.wait_async(first)));
        {
            let state = sync.lock();
            assert!(polled.is_ready() || state.syncing || state.durable >= first);
        }
        (&*file).write_all(b"b\n")?;
        let second = sync.changed(&file);
        sync.wait_async(second).await?;
        assert!(sync.lock().durable >= second);
        assert!(!sync.lock().syncing);
        Ok(())
    }

    #[tokio::test]
    async fn after_a_fast_sync_an_async_waiter_syncs_itself() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = Arc::new(File::create(dir.path().join("log"))?);
        let sync = Arc::new(GroupSync::new(SyncKind::Data));
        sync.lock().last_sync_fast = true;
        for line in [b"a\n", b"b\n"] {
            (&*file).write_all(line)?;
            let ticket = sync.changed(&file);
            sync.wait_async(ticket).await?;
            let state = sync.lock();
            assert!(state.durable >= ticket && !state.syncing);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_sync_is_reported_to_async_waiters() {
        let sync = Arc::new(GroupSync::new(SyncKind::Data));
        sync.lock().failed = Some("EIO".into());
        let err = sync.wait_async(1).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("an earlier fsync failed (EIO); writes are refused until the process restarts")
        );
    }

    #[test]
    fn all_durable_makes_earlier_changes_durable() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = Arc::new(File::create(dir.path().join("log"))?);
        let sync = GroupSync::new(SyncKind::Data);
        let ticket = sync.changed(&file);
        sync.all_durable(None);
        sync.wait(ticket)?;
        Ok(())
    }

    #[test]
    fn a_replacement_is_published_before_any_change_counts_as_durable() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let old = Arc::new(File::create(dir.path().join("log"))?);
        let sync = GroupSync::new(SyncKind::Data);
        let before = sync.changed(&old);
        let new = Arc::new(File::create(dir.path().join("new"))?);
        let (from, to) = (dir.path().join("new"), dir.path().join("log"));
        let replaced = sync.replaced(&new, Publish::new(move || std::fs::rename(from, to)));
        let after = sync.changed(&new);
        assert!(replaced < after && sync.lock().publish.is_some());
        sync.wait(before)?;
        assert!(sync.lock().publish.is_none(), "published");
        assert!(
            !dir.path().join("new").exists(),
            "renamed over the old file"
        );
        assert!(
            sync.lock().durable >= after,
            "one sync covered every change"
        );
        Ok(())
    }

    #[test]
    fn a_failed_publication_fails_the_sync() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let new = Arc::new(File::create(dir.path().join("new"))?);
        let sync = GroupSync::new(SyncKind::Data);
        let failing = Publish::new(|| Err(io::ErrorKind::StorageFull.into()));
        let ticket = sync.replaced(&new, failing);
        assert!(sync.wait(ticket).is_err());
        assert!(sync.check().is_err(), "and every later write");
        Ok(())
    }
}
