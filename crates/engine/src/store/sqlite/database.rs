//! `Database`: the one SQLite file of the embedded store, with one writer
//! thread and a few read connections.
//!
//! **Writes** go through [`Database::write`]: the closure is sent to the
//! writer thread, which owns the only write connection of this process.
//! The thread takes every job that has queued, runs each inside its own
//! savepoint of one `BEGIN IMMEDIATE` transaction (a job that fails rolls
//! back alone), commits once, and only then answers each caller. So
//! concurrent writers share one commit — SQLite's commit, with
//! `synchronous=FULL` in WAL mode, is the only fsync of a write — and a
//! write is acknowledged only once it is durable. A job may leave work
//! to do after the commit (a document's Markdown mirror): a commit with
//! such steps is handed to a second thread, which runs them in commit
//! order and then answers that commit's callers, while the writer goes on
//! to the next transaction (creating a file can take as long as a
//! commit, so the two overlap instead of taking turns). That thread takes
//! every commit waiting for it at once, and of several steps for one
//! document among them only the last runs.
//!
//! **Reads** go through [`Database::read`]: the closure runs on tokio's
//! blocking pool with a connection from a small pool of read
//! connections (WAL lets them read while the writer writes). At most
//! [`READERS`] reads run at once; the others wait their turn (a
//! semaphore) before they take a thread of the blocking pool. The pool is
//! a `Vec` behind a mutex: idle connections are reused, a reader that
//! finds none opens one, so there are never more than [`READERS`]. That
//! is all a pool has to do here, so no pool crate is pulled in for it.
//! Bounding the reads bounds memory: each connection holds its own page
//! cache, schema and lookaside (over 100 KB), and each read in flight a
//! thread, so a thousand clients polling at once would otherwise open
//! hundreds of connections (and threads) that two cores cannot serve any
//! faster than a few.
//!
//! **Several processes** may open the same file: SQLite's file locks
//! order their write transactions (each waits up to [`BUSY_TIMEOUT`]
//! for another process's commit), and every read sees the last commit of
//! any of them. Nothing is cached across calls, so there is nothing to go
//! stale.
//!
//! **Opening refuses anything it could damage** ([`Database::open`]): a
//! file that is not SQLite (or a directory in its place), one cut short,
//! an empty or missing file beside a write-ahead log that holds data, or
//! one whose schema is newer than this program or does not fit its
//! version stops the process with a message naming the file and what to
//! do; the file is never written to in that case. Every other failure to
//! open names the file and what to check too.

use std::fs::File;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{Semaphore, oneshot};

use super::schema;
use crate::failure::panic_message;
use crate::store::{Incidents, StoreError};

/// The database's file name inside the data directory (`memory.path`).
pub const DATABASE_FILE: &str = "bmad2pf.db";

/// How long a write waits for another process's write transaction, and a
/// read for a lock during recovery, before giving up with `storage_busy`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads running at once, each on its own connection, kept open between
/// reads: enough for the reads a busy server has in flight at once, since
/// opening one (and preparing its statements again) costs more than most
/// reads.
const READERS: usize = 32;

/// Most jobs committed together; a larger queue is taken in several commits.
const MAX_BATCH: usize = 512;

/// Prepared statements each connection keeps: more than the store has, so
/// that no statement is parsed twice. rusqlite keeps 16 by default, fewer
/// than one run's writes use, and its cache evicts the least recently used:
/// statements used in turn then evict each other, and each use parses its
/// SQL again.
const STATEMENTS_KEPT: usize = 128;

/// Work for the writer thread, boxed so that jobs of any result type share
/// one queue.
trait Job: Send {
    /// Runs the job inside the open transaction; what is left to do once
    /// the transaction's fate is known.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Settle>;
    /// Answers the caller without running (the transaction could not start).
    fn refuse(self: Box<Self>, error: StoreError);
}

/// The second half of a job: called with the commit's result.
trait Settle: Send {
    /// What the job's [`AfterCommit`] step is about, when it has one and
    /// the job succeeded.
    fn after_key(&self) -> Option<&str>;
    /// Answers the caller; runs the job's after-commit step first unless
    /// `superseded` (a later job of the same commit has a step for the same
    /// key, which makes this one's work moot).
    fn settle(self: Box<Self>, committed: Result<(), StoreError>, superseded: bool);
}

/// Something to do after the commit that made a job durable, before its
/// caller is answered (and in commit order): `run`, about `key`. Of
/// several steps with one key settled together only the last runs —
/// writing a document's file once for the latest of its versions, not once
/// per version.
pub(crate) struct AfterCommit {
    pub key: String,
    pub run: Box<dyn FnOnce() + Send>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

struct WriteJob<T, F> {
    work: F,
    reply: Reply<T>,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<(T, Option<AfterCommit>), StoreError> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Settle> {
        let WriteJob { work, reply } = *self;
        let result = in_savepoint(conn, work);
        Box::new(Ran { result, reply })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// A job that ran, waiting for its commit.
struct Ran<T> {
    result: Result<(T, Option<AfterCommit>), StoreError>,
    reply: Reply<T>,
}

impl<T: Send + 'static> Settle for Ran<T> {
    fn after_key(&self) -> Option<&str> {
        match &self.result {
            Ok((_, Some(after))) => Some(&after.key),
            _ => None,
        }
    }

    fn settle(self: Box<Self>, committed: Result<(), StoreError>, superseded: bool) {
        let answer = match (committed, self.result) {
            (Ok(()), Ok((value, after))) => {
                if let Some(after) = after.filter(|_| !superseded) {
                    (after.run)();
                }
                Ok(value)
            }
            // A job that failed was rolled back to its savepoint: its own
            // error stands whatever became of the commit.
            (_, Err(error)) | (Err(error), Ok(_)) => Err(error),
        };
        let _ = self.reply.send(answer);
    }
}

/// Runs `work` in a savepoint, so that its failure undoes only its own
/// changes; a panic is caught and answered as an internal storage error
/// instead of ending the writer thread.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_cached(conn, "SAVEPOINT job").map_err(|e| sql_error("start a write", &e))?;
    let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|panic| {
        Err(StoreError::Io {
            message: "storage error: a write failed unexpectedly".into(),
            detail: format!("a write job panicked: {}", panic_message(&*panic)),
        })
    });
    let ended = match result {
        Ok(_) => run_cached(conn, "RELEASE job"),
        Err(_) => {
            run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
        }
    };
    ended.map_err(|e| sql_error("finish a write", &e))?;
    result
}

/// Runs one statement of the transaction's bookkeeping from the
/// connection's statement cache: every job runs two of them, so they are
/// kept prepared rather than parsed again for each job.
fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The shared state of a [`Database`].
struct Shared {
    /// The database file.
    path: PathBuf,
    /// Jobs for the writer thread; it ends when the last sender is dropped.
    jobs: Mutex<mpsc::Sender<Box<dyn Job>>>,
    /// Idle read connections.
    readers: Mutex<Vec<Connection>>,
    /// A permit per read running, [`READERS`] in all.
    reads: Arc<Semaphore>,
    /// Where backend failures are counted, for `/health`.
    incidents: Incidents,
}

/// The embedded store's database (see the module docs). Cloning shares it.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating when missing) `{dir}/bmad2pf.db`, checks that it is
    /// a database this program may use, migrates its schema to the current
    /// version and starts the writer thread. Blocking: call it from
    /// `spawn_blocking` or before the runtime serves anything.
    pub fn open(dir: &Path, incidents: Incidents) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|err| StoreError::Io {
            message: format!(
                "storage error: could not create the data directory {}: {err}. Check that it \
                 is a directory this user may read and write (memory.path in runtime.yaml)",
                dir.display()
            ),
            detail: format!("create the data directory: {}: {err}", dir.display()),
        })?;
        let path = dir.join(DATABASE_FILE);
        check_file(&path)?;
        let writer = connect(&path, false).map_err(|e| open_error(&path, &e))?;
        // WAL is a property of the file; setting it needs a moment of
        // exclusive access, which the busy timeout waits for.
        let mode: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(|e| open_error(&path, &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(refused(
                &path,
                &format!("could not switch it to WAL mode (it is in `{mode}` mode)"),
            ));
        }
        schema::migrate(&writer).map_err(|error| match error {
            schema::MigrateError::Newer { found, known } => refused(
                &path,
                &format!(
                    "its schema version {found} is newer than this program knows ({known}); \
                     run a newer bmad2pf on it, or move it away to start empty"
                ),
            ),
            schema::MigrateError::Unversioned { tables } => refused(
                &path,
                &format!(
                    "it has tables ({tables}) but no bmad2pf schema version: another program's \
                     database, or one whose version was reset by hand"
                ),
            ),
            schema::MigrateError::Failed {
                found,
                known,
                error,
            } if !is_passing(&error) => refused(
                &path,
                &format!(
                    "its tables do not fit its schema version {found} (migrating it to version \
                     {known} failed, and was undone: {}); its version was changed by hand, \
                     or another program made it",
                    without_sql(&error)
                ),
            ),
            schema::MigrateError::Failed { error: e, .. } | schema::MigrateError::Sql(e) => {
                open_error(&path, &e)
            }
        })?;
        // From here on the writer runs only jobs, which write a few rows
        // each, so it keeps its temporary files in memory: otherwise every
        // commit creates and removes one for the journal of the jobs'
        // savepoints, which rolls one job back inside the open transaction
        // and is never needed after a crash (the WAL is what recovers).
        // Migrations, which may sort whole tables, keep them on disk.
        writer
            .execute_batch("PRAGMA temp_store=MEMORY")
            .map_err(|e| open_error(&path, &e))?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let (settler, commits) = mpsc::channel::<Committed>();
        std::thread::Builder::new()
            .name("bmad2pf-db-files".into())
            .spawn(move || settle_loop(commits))
            .map_err(|err| StoreError::io("start the documents' file writer", &path, &err))?;
        std::thread::Builder::new()
            .name("bmad2pf-db-writer".into())
            .spawn(move || write_loop(writer, queue, settler))
            .map_err(|err| StoreError::io("start the database writer", &path, &err))?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                jobs: Mutex::new(jobs),
                readers: Mutex::new(Vec::new()),
                reads: Arc::new(Semaphore::new(READERS)),
                incidents,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `work` in the next write transaction (see the module docs);
    /// its result once the transaction is committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_then(move |conn| work(conn).map(|value| (value, None)))
            .await
    }

    /// [`write`](Self::write) whose work may leave an [`AfterCommit`] step.
    pub(crate) async fn write_then<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Option<AfterCommit>), StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(WriteJob { work, reply });
        let sent = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job);
        let result = match sent {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(writer_gone())),
            Err(_) => Err(writer_gone()),
        };
        self.note(result)
    }

    /// Runs `work` on a read connection, on the blocking pool.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // Never closed, so acquiring only fails if that changes. The
        // permit goes with the work: a caller that gives up waiting does
        // not free it while the read still holds its connection.
        let Ok(permit) = Arc::clone(&self.shared.reads).acquire_owned().await else {
            return Err(StoreError::Unavailable {
                message: "storage unavailable: reads have stopped".into(),
                detail: "the read semaphore is closed".into(),
            });
        };
        let shared = Arc::clone(&self.shared);
        let result = tokio::task::spawn_blocking(move || {
            let conn = shared.take_reader()?;
            let result = work(&conn);
            shared.return_reader(conn);
            drop(permit);
            result
        })
        .await
        .unwrap_or_else(|join| {
            Err(StoreError::Io {
                message: "storage error: a read failed unexpectedly".into(),
                detail: format!("a read task failed: {join}"),
            })
        });
        self.note(result)
    }

    /// Counts a backend failure (not a client's mistake) for `/health`.
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result
            && error.is_backend_failure()
        {
            self.shared.incidents.record();
        }
        result
    }

    /// Whether the database answers a read and takes a write that reaches
    /// the disk. An empty transaction commits even on a full disk or a file
    /// made read-only, while every real write fails: the check rewrites the
    /// schema version with its own value, the smallest write there is (one
    /// page), inside the write lock, so no migration can come between.
    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .map_err(|e| sql_error("read the database", &e))
        })
        .await?;
        self.write(|conn| {
            let failed = |e: rusqlite::Error| sql_error("write to the database", &e);
            let version = schema::version(conn).map_err(failed)?;
            conn.pragma_update(None, "user_version", version)
                .map_err(failed)
        })
        .await
    }

    /// Copies the whole database to `target` with SQLite's online backup,
    /// consistent while other connections (and processes) keep writing.
    /// `target` must not exist yet.
    pub async fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        let target = target.to_path_buf();
        self.read(move |conn| {
            if target.exists() {
                return Err(StoreError::Conflict {
                    message: format!("{} exists already; back up to a new file", target.display()),
                });
            }
            conn.backup(
                rusqlite::MAIN_DB,
                &target,
                None::<fn(rusqlite::backup::Progress)>,
            )
            .map_err(|e| StoreError::Io {
                message: "storage error: could not write the backup".into(),
                detail: format!("backup to {}: {e}", target.display()),
            })
        })
        .await
    }
}

impl Shared {
    fn take_reader(&self) -> Result<Connection, StoreError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            // Not `open_error`: this answers a request, whose message
            // names no path (the detail, for the log, has the error).
            None => connect(&self.path, true)
                .map_err(|e| sql_error("open a read connection to the database", &e)),
        }
    }

    fn return_reader(&self, conn: Connection) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < READERS {
            readers.push(conn);
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable {
        message: "storage unavailable: the database writer has stopped".into(),
        detail: "the writer thread's queue is closed".into(),
    }
}

/// A commit's jobs and its result, for the thread that settles them.
type Committed = (Vec<Box<dyn Settle>>, Result<(), StoreError>);

/// The writer thread: takes what has queued, commits it as one
/// transaction, answers or hands the commit to `settler` (see the module
/// docs). Ends when every [`Database`] clone is gone.
fn write_loop(
    mut conn: Connection,
    queue: mpsc::Receiver<Box<dyn Job>>,
    settler: mpsc::Sender<Committed>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let error = sql_error("start a write transaction", &e);
                for job in batch {
                    job.refuse(error.clone());
                }
                continue;
            }
        };
        let ran: Vec<Box<dyn Settle>> = batch.into_iter().map(|job| job.run(&tx)).collect();
        let committed = tx
            .commit()
            .map_err(|e| sql_error("commit a write transaction", &e));
        if ran.iter().any(|job| job.after_key().is_some()) {
            if let Err(mpsc::SendError(commit)) = settler.send((ran, committed)) {
                settle(vec![commit]);
            }
        } else {
            settle(vec![(ran, committed)]);
        }
    }
}

/// Runs the after-commit steps of the commits handed over by the writer
/// thread, in commit order, then answers their callers. It takes every
/// commit waiting at once: while it writes one document's file, the writer
/// may commit that document several times, and only the latest version's
/// file is written.
fn settle_loop(commits: mpsc::Receiver<Committed>) {
    while let Ok(first) = commits.recv() {
        let mut waiting = vec![first];
        waiting.extend(commits.try_iter());
        settle(waiting);
    }
}

/// Answers the jobs of `commits`, in order, each after its after-commit
/// step; of several steps with one key, in commits that succeeded, only
/// the last runs.
fn settle(commits: Vec<Committed>) {
    let mut last_of_key = std::collections::HashMap::new();
    for (commit, (ran, committed)) in commits.iter().enumerate() {
        if committed.is_ok() {
            for (at, job) in ran.iter().enumerate() {
                if let Some(key) = job.after_key() {
                    last_of_key.insert(key.to_string(), (commit, at));
                }
            }
        }
    }
    for (commit, (ran, committed)) in commits.into_iter().enumerate() {
        for (at, job) in ran.into_iter().enumerate() {
            let superseded = job.after_key().is_some_and(|key| {
                last_of_key
                    .get(key)
                    .is_some_and(|&last| last != (commit, at))
            });
            job.settle(committed.clone(), superseded);
        }
    }
}

/// Opens a connection with the settings every connection of the store
/// uses; `read_only` ones also refuse writes (`query_only`).
fn connect(path: &Path, read_only: bool) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    // One plan per statement, whatever values are bound. Without this,
    // SQLite marks a query with an ORDER BY (or min/max) and a `col = ?`
    // term as one whose plan may depend on the bound value, and rusqlite,
    // which clears the bindings of every statement it puts back in its
    // cache, thereby expires it: the next use parses and plans it again.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Readers keep a small page cache: a commit by any connection empties
    // it in WAL mode, and the OS caches the file anyway.
    let pragmas = if read_only {
        "PRAGMA query_only=ON; PRAGMA cache_size=-256;"
    } else {
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
    };
    conn.execute_batch(pragmas)?;
    Ok(conn)
}

/// The 16 bytes every SQLite database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The write-ahead log beside the database file `path`.
fn log_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Refuses, before SQLite touches it, a file that is not a SQLite
/// database (a directory in its place included) or that is shorter than
/// its header says with no write-ahead log to complete it (cut short by a
/// copy or a full disk). A missing or empty file is a new database —
/// unless a write-ahead log beside it holds data, which would be lost.
fn check_file(path: &Path) -> Result<(), StoreError> {
    let log = log_path(path);
    let log_len = std::fs::metadata(&log).map_or(0, |m| m.len());
    // Looked at before it is opened: a FIFO would block the open.
    let len = match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            return Err(refused(path, "it is a directory, not a database file"));
        }
        Ok(metadata) if !metadata.is_file() => {
            return Err(refused(path, "it is not a regular file"));
        }
        Ok(metadata) => metadata.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(unreadable(path, &err)),
    };
    if len == 0 {
        return if log_len > 0 {
            Err(log_without_database(path, &log, log_len))
        } else {
            Ok(())
        };
    }
    let mut file = File::open(path).map_err(|err| unreadable(path, &err))?;
    let mut header = [0u8; 100];
    let read = read_up_to(&mut file, &mut header).map_err(|err| unreadable(path, &err))?;
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(refused(path, "it is not a SQLite database"));
    }
    // Page size at 16 (1 means 65536), page count at 28, valid only when
    // the "version valid for" number at 92 matches the change counter at 24.
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        size => u64::from(size),
    };
    let pages = u64::from(be32(28));
    // While a write-ahead log holds frames, the file may be shorter than
    // its header says: a checkpoint writes the first page first and may be
    // cut off by a crash, and the log still holds the rest. Only a file
    // with no log to finish it is judged by its size.
    if log_len == 0 && be32(92) == be32(24) && pages > 0 && len < pages * page_size {
        return Err(refused(
            path,
            &format!(
                "it is cut short: {len} bytes where its header says {}",
                pages * page_size
            ),
        ));
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The error that stops a process from using a database file.
fn refused(path: &Path, why: &str) -> StoreError {
    let message = format!(
        "the database {} cannot be used: {why}. It was not changed. Restore it from a backup \
         (bmad2pf backup), or move it away to start with an empty store",
        path.display()
    );
    StoreError::Corrupt {
        detail: message.clone(),
        message,
    }
}

/// The error that stops a process whose database file is empty or
/// missing while its write-ahead log holds `log_len` bytes: SQLite would
/// take it for a new database and throw the log away.
fn log_without_database(path: &Path, log: &Path, log_len: u64) -> StoreError {
    let message = format!(
        "the database {} is empty or missing, but its write-ahead log {} holds {log_len} bytes, \
         which may be the store's data; neither file was changed. Stop every process using the \
         directory, then restore the database from a backup (bmad2pf backup) and remove the log \
         and the -shm file beside it, or move all three away to start with an empty store",
        path.display(),
        log.display()
    );
    StoreError::Corrupt {
        detail: message.clone(),
        message,
    }
}

/// The database file `path` could not be read at start.
fn unreadable(path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Io {
        message: format!(
            "storage error: could not read the database {}: {err}. Check that this user may \
             read and write it and its directory",
            path.display()
        ),
        detail: format!("read {}: {err}", path.display()),
    }
}

/// What SQLite said, without the SQL it said it about (rusqlite shows a
/// whole migration's text with a syntax or schema error): a line a person
/// reads at start.
fn without_sql(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

/// Whether an SQLite error may pass by itself (another process's lock, a
/// full disk, a file the OS would not open or read), rather than being
/// about what the database holds.
fn is_passing(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// An SQLite error while opening `path` at start: a file SQLite does not
/// recognise is refused like [`check_file`] refuses it; anything else
/// names the file and what to check, the error's kind deciding the code.
fn open_error(path: &Path, error: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let code = error.sqlite_error_code();
    if matches!(
        code,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    ) {
        return refused(path, &format!("SQLite says: {error}"));
    }
    let advice = match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "another process held it locked for over {} s; start again once it is done",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::DiskFull) => "free some space on its disk, then start again".into(),
        _ => "check that it and its directory exist and that this user may read and write \
              them (and that its disk is not full), then start again"
            .into(),
    };
    let what = format!("could not open the database {}: {error}", path.display());
    let detail = format!("open {}: {error}", path.display());
    if is_passing(error) {
        StoreError::Unavailable {
            message: format!("storage unavailable: {what}. {advice}"),
            detail,
        }
    } else {
        StoreError::Io {
            message: format!("storage error: {what}. {advice}"),
            detail,
        }
    }
}

/// An SQLite error during `action`, as a store error: damaged data is
/// `Corrupt`, a lock held too long by another process or a full disk is
/// `Unavailable`, anything else `Io`.
pub(crate) fn sql_error(action: &str, error: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let detail = format!("{action}: {error}");
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            message: format!("stored data is corrupt: could not {action}"),
            detail,
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
            message: format!(
                "storage busy: could not {action} within {} s (another process holds the database)",
                BUSY_TIMEOUT.as_secs()
            ),
            detail,
        },
        Some(ErrorCode::DiskFull | ErrorCode::ReadOnly | ErrorCode::CannotOpen) => {
            StoreError::Unavailable {
                message: format!("storage unavailable: could not {action}"),
                detail,
            }
        }
        _ => StoreError::Io {
            message: format!("storage error: could not {action}"),
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn the_health_check_writes_to_the_disk() -> TestResult {
        let dir = tempfile::tempdir()?;
        let db = Database::open(dir.path(), Incidents::default())?;
        let version_before = schema::version(&connect(db.path(), true)?)?;
        // `data_version` changes for a connection when another one commits
        // a change to the file: a check that commits nothing would not.
        let watcher = connect(db.path(), true)?;
        let seen = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row("PRAGMA data_version", [], |row| row.get(0))
        };
        let before = seen(&watcher)?;
        db.health().await?;
        assert_ne!(seen(&watcher)?, before, "the check wrote nothing");
        assert_eq!(schema::version(&watcher)?, version_before);
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_a_failed_job_rolls_back_alone() -> TestResult {
        let dir = tempfile::tempdir()?;
        let db = Database::open(dir.path(), Incidents::default())?;
        db.write(|conn| {
            conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
                .map_err(|e| sql_error("create", &e))
        })
        .await?;
        let writes = (0..100).map(|k| {
            let db = db.clone();
            async move {
                db.write(move |conn| {
                    conn.execute("INSERT INTO t (k) VALUES (?1)", [k])
                        .map_err(|e| sql_error("insert", &e))?;
                    if k % 10 == 0 {
                        return Err(StoreError::Conflict {
                            message: "refused".into(),
                        });
                    }
                    Ok(())
                })
                .await
            }
        });
        let results = futures::future::join_all(writes).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 10);
        let count: i64 = db
            .read(|conn| {
                conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
                    .map_err(|e| sql_error("count", &e))
            })
            .await?;
        assert_eq!(count, 90);
        Ok(())
    }

    #[test]
    fn a_cached_query_is_planned_once_whatever_values_are_bound() -> TestResult {
        let dir = tempfile::tempdir()?;
        let conn = connect(&dir.path().join(DATABASE_FILE), false)?;
        conn.execute_batch("CREATE TABLE t (k TEXT, v INTEGER, PRIMARY KEY (k, v))")?;
        // The shape that SQLite would otherwise re-plan for each new value:
        // an equality on a bound value beside an ORDER BY (min/max is one).
        let sql = "SELECT max(v) FROM t WHERE k = ?1";
        for key in ["a", "b", "c"] {
            conn.execute("INSERT INTO t (k, v) VALUES (?1, 1)", [key])?;
            let max: i64 = conn
                .prepare_cached(sql)?
                .query_row([key], |row| row.get(0))?;
            assert_eq!(max, 1);
        }
        let replans = conn
            .prepare_cached(sql)?
            .get_status(rusqlite::StatementStatus::RePrepare);
        assert_eq!(replans, 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_panicking_write_is_an_error_and_the_writer_goes_on() -> TestResult {
        let dir = tempfile::tempdir()?;
        let db = Database::open(dir.path(), Incidents::default())?;
        let panicked = db
            .write(|_| -> Result<(), StoreError> { panic!("a bug") })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Io { .. })),
            "{panicked:?}"
        );
        db.health().await?;
        Ok(())
    }

    #[test]
    fn files_that_are_not_databases_are_refused_and_left_alone() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(DATABASE_FILE);
        let text = b"not a database, but somebody's notes\n".repeat(10);
        std::fs::write(&path, &text)?;
        let refused = Database::open(dir.path(), Incidents::default());
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("not a SQLite database"), "{message}");
        assert!(message.contains(DATABASE_FILE), "{message}");
        assert_eq!(std::fs::read(&path)?, text);
        Ok(())
    }

    #[test]
    fn a_database_cut_short_is_refused_and_left_alone() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let db = Database::open(dir.path(), Incidents::default())?;
            drop(db);
        }
        // A checkpointed file of several pages, then cut in half.
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch(
                "CREATE TABLE filler (x BLOB); \
                 INSERT INTO filler VALUES (zeroblob(50000)); \
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )?;
        }
        let whole = std::fs::read(&path)?;
        let cut = &whole[..whole.len() / 2];
        std::fs::write(&path, cut)?;
        let _ = std::fs::remove_file(dir.path().join(format!("{DATABASE_FILE}-wal")));
        let message = Database::open(dir.path(), Incidents::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("cut short"), "{message}");
        assert_eq!(std::fs::read(&path)?, cut);
        Ok(())
    }

    #[tokio::test]
    async fn a_backup_is_a_database_with_the_same_rows() -> TestResult {
        let dir = tempfile::tempdir()?;
        let db = Database::open(&dir.path().join("data"), Incidents::default())?;
        db.write(|conn| {
            conn.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept');")
                .map_err(|e| sql_error("fill", &e))
        })
        .await?;
        let target = dir.path().join("backup.db");
        db.backup_to(&target).await?;
        assert!(db.backup_to(&target).await.is_err(), "never overwrites");
        let copy = Connection::open(&target)?;
        let v: String = copy.query_row("SELECT v FROM t", [], |row| row.get(0))?;
        assert_eq!(v, "kept");
        Ok(())
    }
}
