//! The checkpointer: a thread of its own that copies committed pages from
//! the write-ahead log into the database file, so that commits do not wait
//! for it.
//!
//! In WAL mode a commit appends pages to the log and syncs the log only;
//! the pages reach the database file in a checkpoint, which copies them and
//! syncs the database file. By default SQLite runs one in the committing
//! connection every 1,000 log pages, so the writer thread — and every write
//! waiting for its next commit — would stop for it. This thread runs a
//! passive checkpoint (one that never blocks the writer or readers) at
//! most every [`PAUSE`] after a commit instead, and copies each page once
//! for all the versions committed meanwhile.
//!
//! A checkpoint running beside the writer leaves behind the pages committed
//! while it ran, and the log starts over from its beginning only once every
//! page in it has been copied. Under sustained writes that moment never
//! comes, so the writer still checkpoints itself, but only once the log
//! holds [`WAL_BOUND_PAGES`]: what is left to copy then is what the last
//! passes did not reach, and the log starts over after it. That bounds the
//! log's size.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Log pages past which the writer checkpoints in its own commit (SQLite's
/// `wal_autocheckpoint`): the bound on the log when this thread cannot
/// finish a pass between commits.
pub(super) const WAL_BOUND_PAGES: u32 = 10_000;

/// The least time between two passes: a pass syncs the database file, and
/// waiting lets it copy many commits' pages at once.
const PAUSE: Duration = Duration::from_millis(100);

/// Starts the checkpointer on `conn` (a read-write connection of its own);
/// the sender the writer thread tells of each commit (without blocking:
/// `try_send`). The thread ends when that sender is dropped.
pub(super) fn start(conn: Connection) -> std::io::Result<mpsc::SyncSender<()>> {
    let (commits, committed) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("bmad2pf-db-checkpoint".into())
        .spawn(move || checkpoint_loop(&conn, &committed))?;
    Ok(commits)
}

/// Waits for a commit, checkpoints, then lets [`PAUSE`] pass before the
/// next pass, which runs at once when commits came meanwhile.
fn checkpoint_loop(conn: &Connection, committed: &mpsc::Receiver<()>) {
    let mut pending = committed.recv().is_ok();
    while pending {
        let resume = Instant::now() + PAUSE;
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The writer's own checkpoint at the bound still keeps the log
            // in check; the next pass tries again.
            tracing::warn!(%error, "a checkpoint of the database failed");
        }
        pending = false;
        loop {
            match committed.recv_timeout(resume.saturating_duration_since(Instant::now())) {
                Ok(()) => pending = true,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if !pending {
            pending = committed.recv().is_ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Incidents;
    use crate::store::sqlite::database::sql_error;
    use crate::store::sqlite::{DATABASE_FILE, Database};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The log's last committed frame and the last frame copied into the
    /// database file, from the wal-index (the `-shm` file; SQLite's
    /// documented layout, in native byte order: `mxFrame` at byte 16 of
    /// the header, `nBackfill` at byte 96).
    fn frames(dir: &std::path::Path) -> std::io::Result<(u32, u32)> {
        let index = std::fs::read(dir.join(format!("{DATABASE_FILE}-shm")))?;
        let word = |at: usize| {
            index
                .get(at..at + 4)
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        Ok((word(16), word(96)))
    }

    #[tokio::test]
    async fn committed_pages_reach_the_file_without_the_writer_checkpointing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let db = Database::open(dir.path(), Incidents::default())?;
        db.write(|conn| {
            conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
                .map_err(|e| sql_error("create", &e))
        })
        .await?;
        // Far fewer log pages than the writer's bound: only the
        // checkpointer copies them.
        for k in 0..300 {
            db.write(move |conn| {
                conn.execute("INSERT INTO t (k, v) VALUES (?1, 'value')", [k])
                    .map(drop)
                    .map_err(|e| sql_error("insert", &e))
            })
            .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut last, mut copied) = frames(dir.path())?;
        while (last == 0 || copied < last) && Instant::now() < deadline {
            tokio::time::sleep(PAUSE).await;
            (last, copied) = frames(dir.path())?;
        }
        assert!(last > 0, "the log holds the commits");
        assert!(last < WAL_BOUND_PAGES, "the writer did not reach its bound");
        assert_eq!(
            copied, last,
            "every committed page was copied into the file"
        );
        let count: i64 = db
            .read(|conn| {
                conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
                    .map_err(|e| sql_error("count", &e))
            })
            .await?;
        assert_eq!(count, 300);
        Ok(())
    }
}
