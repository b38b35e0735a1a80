//! The embedded store's schema and its migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`. [`MIGRATIONS`]
//! lists, in order, the SQL that takes a database from version `n` to
//! `n + 1`; at start [`migrate`] applies the ones a database lacks, all in
//! one `BEGIN IMMEDIATE` transaction (two processes starting at once on a
//! new directory: the second waits, then finds nothing to do). A database
//! whose version is newer than the last migration is refused, never
//! touched; so is one whose tables do not fit its version (a migration
//! fails on it: its version was set by hand, or another program made it),
//! and one with tables but no version (another program's database): the
//! failed migration is rolled back. A new version of the schema is a new
//! entry at the end, with a test that migrates a database of the version
//! before it.
//!
//! Version 1 (`docs/operations.md`, "The embedded store", describes it for
//! users):
//! - `memory (scope, key, value, updated_at)`: one row per key; `value` is
//!   the JSON text.
//! - `workflows`, `workflow_agents`, `status_history`: orchestration status
//!   (SPEC 5), the current state of each agent and every update in order.
//! - `run_records (flow, story, record)`: what the last run of a (flow,
//!   story) did, as JSON; `run_claims (flow, story, run_id, expires_at)`:
//!   which run holds the pair, until when unless renewed.
//! - `documents (id, version, bytes, modified, hash, writer)`: the latest
//!   version of each document, all but its content (a read compares the
//!   file with `hash` and serves the file); `doc_versions (id, version, content, hash, writer, at)`:
//!   every version, `hash` the SHA-256 of its content (hex, indexed: is a
//!   file's text some stored version?), `writer` as JSON (`{"kind":"agent","agent":…,"run_id":…}`,
//!   `{"kind":"api"}`, `{"kind":"file"}`).
//!
//! Version 2 adds runs as resources (SPEC 8):
//! - `runs (run_id, flow, story_id, status, created_at, updated_at,
//!   finished_at, cancel_requested, body)`: one row per run, `body` the
//!   engine's JSON of it; indexed for listings by story, flow and status,
//!   newest first.
//! - `run_events (run_id, id, event, data)`: the events of each run, for replay.
//!
//! Version 3 adds human in the loop (SPEC 8.3):
//! - `run_checkpoints (run_id, body)`: what an interrupted run continues
//!   from once a person answers, as JSON; removed when the run ends.
//!
//! Version 4 adds webhooks (SPEC 8.5):
//! - `webhook_targets (run_id, url)`: the webhook URL a run was started
//!   with, apart from the run's body, which clients see.
//! - `webhook_deliveries (delivery_id, run_id, event, url, body, state,
//!   attempts, created_at, next_attempt_at)`: the outbox, one row per event
//!   to send; `attempts` is a JSON array; `next_attempt_at` is when it is
//!   due (or its lease ends), NULL once delivered or failed, and indexed
//!   where set, so finding due deliveries reads only pending ones.

use rusqlite::Connection;

/// The SQL of each migration; entry `n` takes version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "
    CREATE TABLE memory (
        scope      TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;

    CREATE TABLE workflows (
        workflow_id TEXT PRIMARY KEY,
        story_id    TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX workflows_by_update ON workflows (updated_at);
    CREATE TABLE workflow_agents (
        workflow_id    TEXT NOT NULL REFERENCES workflows ON DELETE CASCADE,
        agent_id       TEXT NOT NULL,
        status         TEXT NOT NULL,
        last_execution INTEGER,
        output_summary TEXT,
        PRIMARY KEY (workflow_id, agent_id)
    ) WITHOUT ROWID;
    CREATE TABLE status_history (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow_id    TEXT NOT NULL REFERENCES workflows ON DELETE CASCADE,
        agent_id       TEXT NOT NULL,
        status         TEXT NOT NULL,
        output_summary TEXT,
        at             INTEGER NOT NULL
    );
    CREATE INDEX status_history_by_workflow ON status_history (workflow_id, seq);

    CREATE TABLE run_records (
        flow   TEXT NOT NULL,
        story  TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (flow, story)
    ) WITHOUT ROWID;
    CREATE TABLE run_claims (
        flow       TEXT NOT NULL,
        story      TEXT NOT NULL,
        run_id     TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (flow, story)
    ) WITHOUT ROWID;

    CREATE TABLE documents (
        id       TEXT PRIMARY KEY,
        version  INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        modified INTEGER NOT NULL,
        hash     TEXT NOT NULL,
        writer   TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE doc_versions (
        id      TEXT NOT NULL,
        version INTEGER NOT NULL,
        content TEXT NOT NULL,
        hash    TEXT NOT NULL,
        writer  TEXT NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (id, version)
    );
    CREATE INDEX doc_versions_by_hash ON doc_versions (id, hash);
    ",
    // 1 → 2
    "
    CREATE TABLE runs (
        run_id           TEXT PRIMARY KEY,
        flow             TEXT NOT NULL,
        story_id         TEXT NOT NULL,
        status           TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        finished_at      INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        body             TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX runs_by_age ON runs (created_at, run_id);
    CREATE INDEX runs_by_story ON runs (story_id, created_at, run_id);
    CREATE INDEX runs_by_flow ON runs (flow, created_at, run_id);
    CREATE INDEX runs_by_status ON runs (status, created_at, run_id);
    CREATE TABLE run_events (
        run_id TEXT NOT NULL,
        id     INTEGER NOT NULL,
        event  TEXT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (run_id, id)
    ) WITHOUT ROWID;
    ",
    // 2 → 3
    "
    CREATE TABLE run_checkpoints (
        run_id TEXT PRIMARY KEY,
        body   TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 3 → 4
    "
    CREATE TABLE webhook_targets (
        run_id TEXT PRIMARY KEY,
        url    TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE webhook_deliveries (
        delivery_id     TEXT PRIMARY KEY,
        run_id          TEXT NOT NULL,
        event           TEXT NOT NULL,
        url             TEXT NOT NULL,
        body            TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id, created_at, delivery_id);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE next_attempt_at IS NOT NULL;
    ",
];

/// The schema version this program writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why a database could not be brought to [`SCHEMA_VERSION`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    /// Written by a newer program: left as it is.
    #[error("schema version {found} is newer than this program knows ({known})")]
    Newer { found: u32, known: u32 },
    /// Tables but no schema version: not a database this program made.
    /// Left as it is.
    #[error("it has tables ({tables}) but no schema version")]
    Unversioned { tables: String },
    /// A migration from version `found` failed on the database, and was
    /// rolled back: a damaged or foreign schema when `error` is about the
    /// SQL (a table that exists already, one that is missing), or a
    /// passing trouble (a lock, a full disk) otherwise — the caller tells
    /// them apart by `error`'s code.
    #[error("migrating schema version {found} to {known} failed: {error}")]
    Failed {
        found: u32,
        known: u32,
        error: rusqlite::Error,
    },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// The schema version the database file says it has.
pub(crate) fn version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// The names of the tables in `conn`'s database, but SQLite's own.
fn user_tables(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut query = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY name",
    )?;
    let names = query.query_map([], |row| row.get(0))?;
    names.collect()
}

/// Applies the migrations `conn`'s database lacks (see the module docs).
pub(crate) fn migrate(conn: &Connection) -> Result<(), MigrateError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Migrates up to `target` (tests stop at earlier versions).
fn migrate_to(conn: &Connection, target: u32) -> Result<(), MigrateError> {
    // Read before taking the write lock: an up-to-date database (every
    // start but the first) is not locked at all.
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::Newer {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found >= target {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let applied = (|| {
        // Another process may have migrated while we waited for the lock.
        let found = version(conn)?;
        if found > SCHEMA_VERSION {
            return Err(MigrateError::Newer {
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == 0 {
            let tables = user_tables(conn)?;
            if !tables.is_empty() {
                return Err(MigrateError::Unversioned {
                    tables: tables.join(", "),
                });
            }
        }
        for (from, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .take(target as usize)
            .skip(found as usize)
        {
            conn.execute_batch(sql)
                .and_then(|()| conn.pragma_update(None, "user_version", from as u32 + 1))
                .map_err(|error| MigrateError::Failed {
                    found,
                    known: SCHEMA_VERSION,
                    error,
                })?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn tables(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
        let mut query =
            conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
        let names = query.query_map([], |row| row.get(0))?;
        names.collect()
    }

    #[test]
    fn each_migration_applies_to_a_database_of_the_version_before() -> TestResult {
        for target in 1..=SCHEMA_VERSION {
            let conn = Connection::open_in_memory()?;
            migrate_to(&conn, target - 1)?;
            assert_eq!(version(&conn)?, target - 1);
            migrate_to(&conn, target)?;
            assert_eq!(version(&conn)?, target);
        }
        Ok(())
    }

    #[test]
    fn the_last_version_has_every_table_and_migrating_again_does_nothing() -> TestResult {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        let expected = [
            "doc_versions",
            "documents",
            "memory",
            "run_checkpoints",
            "run_claims",
            "run_events",
            "run_records",
            "runs",
            "sqlite_sequence",
            "status_history",
            "webhook_deliveries",
            "webhook_targets",
            "workflow_agents",
            "workflows",
        ];
        assert_eq!(tables(&conn)?, expected);
        migrate(&conn)?;
        assert_eq!(version(&conn)?, SCHEMA_VERSION);
        Ok(())
    }

    #[test]
    fn version_4_keeps_the_runs_of_version_3_and_adds_the_webhook_outbox() -> TestResult {
        let conn = Connection::open_in_memory()?;
        migrate_to(&conn, 3)?;
        conn.execute(
            "INSERT INTO runs (run_id, flow, story_id, status, created_at, updated_at, body)
             VALUES ('run-1', 'planning', 'S1', 'success', 1, 2, '{}')",
            [],
        )?;
        migrate_to(&conn, 4)?;
        let kept: String = conn.query_row(
            "SELECT status FROM runs WHERE run_id = 'run-1'",
            [],
            |row| row.get(0),
        )?;
        assert_eq!(kept, "success");
        conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, run_id, event, url, body, state,
                 attempts, created_at, next_attempt_at)
             VALUES ('dlv-1', 'run-1', 'run.finished', 'http://h/', '{}', 'pending', '[]', 1, 1)",
            [],
        )?;
        conn.execute(
            "INSERT INTO webhook_targets (run_id, url) VALUES ('run-1', 'http://h/')",
            [],
        )?;
        Ok(())
    }

    #[test]
    fn a_version_its_tables_do_not_fit_is_refused_and_rolled_back() -> TestResult {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        // Set back by hand: migrating from 2 finds the tables of 3 there.
        conn.pragma_update(None, "user_version", 2)?;
        let refused = migrate(&conn);
        assert!(
            matches!(refused, Err(MigrateError::Failed { found: 2, .. })),
            "{refused:?}"
        );
        assert_eq!(version(&conn)?, 2);
        assert!(conn.is_autocommit(), "no transaction is left open");
        Ok(())
    }

    #[test]
    fn tables_without_a_version_are_refused_untouched() -> TestResult {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE notes (text TEXT)")?;
        let refused = migrate(&conn);
        assert!(
            matches!(&refused, Err(MigrateError::Unversioned { tables }) if tables == "notes"),
            "{refused:?}"
        );
        assert_eq!(tables(&conn)?, ["notes"]);
        assert_eq!(version(&conn)?, 0);
        Ok(())
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() -> TestResult {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        let refused = migrate(&conn);
        assert!(
            matches!(refused, Err(MigrateError::Newer { found, .. }) if found == SCHEMA_VERSION + 1),
            "{refused:?}"
        );
        assert!(tables(&conn)?.is_empty());
        Ok(())
    }
}
