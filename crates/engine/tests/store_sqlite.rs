//! The embedded store (SQLite): the shared store suite (`store_suite`),
//! each two-handle check on two databases opened separately on one file
//! (as two processes would), plus what only the embedded store has — the
//! Markdown mirror of documents and people's edits of it, restarts, damaged
//! rows, expired claims, and id rejection before anything touches disk.

mod store_suite;

use std::path::Path;
use std::sync::Arc;

use bmad2pf_engine::store::{
    AgentState, DATABASE_FILE, Database, DeliveryStore, DocId, DocStore, DocWriter, Incidents,
    MemoryKey, MemoryScope, MemoryStore, RunStore, SqliteDeliveryStore, SqliteDocStore,
    SqliteMemoryStore, SqliteRunStore, SqliteStatusStore, StatusStore, StatusUpdate, WorkflowId,
    doc_id,
};
use serde_json::json;
use store_suite::TestResult;
use tempfile::TempDir;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A database on `root/data`, opened as a new process would open it.
fn database(root: &Path) -> Result<Database, BoxError> {
    Ok(Database::open(&root.join("data"), Incidents::default())?)
}

async fn docs_in(root: &Path) -> Result<Arc<dyn DocStore>, BoxError> {
    Ok(Arc::new(
        SqliteDocStore::open(database(root)?, root.join("docs")).await?,
    ))
}

fn memory_in(root: &Path) -> Result<Arc<dyn MemoryStore>, BoxError> {
    Ok(Arc::new(SqliteMemoryStore::new(database(root)?)))
}

fn status_in(root: &Path) -> Result<Arc<dyn StatusStore>, BoxError> {
    Ok(Arc::new(SqliteStatusStore::new(database(root)?)))
}

fn runs_in(root: &Path) -> Result<Arc<dyn RunStore>, BoxError> {
    Ok(Arc::new(SqliteRunStore::new(database(root)?)))
}

fn deliveries_in(root: &Path) -> Result<Arc<dyn DeliveryStore>, BoxError> {
    Ok(Arc::new(SqliteDeliveryStore::new(database(root)?)))
}

/// A raw connection to the database file, to damage it as a disk or a
/// person with the sqlite3 shell would.
fn raw(root: &Path) -> Result<rusqlite::Connection, BoxError> {
    let conn = rusqlite::Connection::open(root.join("data").join(DATABASE_FILE))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

// ------------------------------------------------------- the shared suite

#[tokio::test]
async fn suite_docs_roundtrip() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::docs_roundtrip(docs_in(dir.path()).await?).await
}

#[tokio::test]
async fn suite_docs_versions() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::docs_versions(docs_in(dir.path()).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_docs_concurrent_puts_never_tear() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::docs_concurrent_puts_never_tear(docs_in(dir.path()).await?).await
}

#[tokio::test]
async fn suite_memory_roundtrip() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::memory_roundtrip(memory_in(dir.path())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_memory_concurrent_writes_lose_nothing() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::memory_concurrent_writes_lose_nothing(
        memory_in(dir.path())?,
        memory_in(dir.path())?,
    )
    .await?;
    // …and a process started afterwards reads the same.
    store_suite::memory_contended_scope_is_complete(&memory_in(dir.path())?).await
}

#[tokio::test]
async fn suite_status_lifecycle() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_lifecycle(status_in(dir.path())?).await
}

#[tokio::test]
async fn suite_status_isolation_and_implicit_create() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_isolation_and_implicit_create(status_in(dir.path())?).await
}

#[tokio::test]
async fn suite_status_cleanup_by_retention() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_cleanup_by_retention(status_in(dir.path())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_status_concurrent_updates_lose_nothing() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_concurrent_updates_lose_nothing(
        status_in(dir.path())?,
        status_in(dir.path())?,
    )
    .await
}

#[tokio::test]
async fn suite_runs_claims_and_records() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::runs_claims_and_records(runs_in(dir.path())?).await
}

#[tokio::test]
async fn suite_runs_as_resources() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::runs_as_resources(runs_in(dir.path())?).await
}

#[tokio::test]
async fn suite_runs_wait_for_a_person() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::runs_wait_for_a_person(runs_in(dir.path())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_runs_one_claim_wins_across_handles() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::runs_one_claim_wins_across_handles(runs_in(dir.path())?, runs_in(dir.path())?)
        .await
}

#[tokio::test]
async fn suite_runs_past_their_retention() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::runs_past_their_retention(runs_in(dir.path())?, deliveries_in(dir.path())?).await
}

#[tokio::test]
async fn suite_deliveries_outbox() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::deliveries_outbox(deliveries_in(dir.path())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_deliveries_one_claim_per_lease() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::deliveries_one_claim_per_lease(
        deliveries_in(dir.path())?,
        deliveries_in(dir.path())?,
    )
    .await
}

// ------------------------------------------------------------------- ids

#[test]
fn traversal_attempts_are_rejected_for_every_id_kind() {
    let attempts = [
        "..",
        "../secret",
        "a/../../etc/passwd",
        "%2e%2e",
        "%2e%2e%2fsecret",
        "%2E%2E%2F",
        "%252e%252e%252f",
        "..%2f",
        "%2f",
        "/etc/passwd",
        "/",
        "a/b",
        "..\\windows",
        "a\\b",
        "C:\\Windows",
        "a\0b",
        "\0",
        ".hidden",
        "",
    ];
    for attempt in attempts {
        assert!(DocId::parse(attempt).is_err(), "doc id {attempt:?}");
        assert!(
            DocId::parse(&format!("{attempt}.md")).is_err(),
            "doc id {attempt:?}.md"
        );
        assert!(MemoryKey::parse(attempt).is_err(), "memory key {attempt:?}");
        assert!(
            WorkflowId::parse(attempt).is_err(),
            "workflow id {attempt:?}"
        );
        assert!(
            MemoryScope::parse(&format!("shared:{attempt}")).is_err(),
            "namespace {attempt:?}"
        );
        assert!(
            MemoryScope::parse(&format!("isolated:{attempt}:S1")).is_err(),
            "agent {attempt:?}"
        );
        assert!(
            MemoryScope::parse(&format!("isolated:pm:{attempt}")).is_err(),
            "story {attempt:?}"
        );
        // `isolated()` maps a pack qualifier's `/` to `.`; only a plain
        // `pack/agent` form survives that, and it stays one path segment.
        let mapped = MemoryScope::isolated(attempt, "S1").map(|s| s.to_string());
        if attempt == "a/b" {
            assert_eq!(mapped.as_deref(), Ok("isolated:a.b:S1"));
        } else {
            assert!(mapped.is_err(), "agent {attempt:?}");
        }
        assert!(doc_id(attempt, "prd").is_err(), "story {attempt:?}");
        assert!(doc_id("S1", attempt).is_err(), "name {attempt:?}");
    }
}

#[test]
fn id_errors_name_the_problem() {
    let message = |r: Result<DocId, _>| {
        r.err()
            .map(|e: bmad2pf_engine::store::IdError| e.to_string())
    };
    assert_eq!(
        message(DocId::parse("a/b")),
        Some("invalid document id \"a/b\": must not contain a path separator ('/')".into())
    );
    let scope = MemoryScope::parse("isolated:pm")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        scope,
        Some(
            "invalid memory scope \"isolated:pm\": expected `isolated:<agent_id>:<story_id>`"
                .into()
        )
    );
}

// ------------------------------------------------------------- documents

fn file_of(root: &Path, id: &str) -> std::path::PathBuf {
    root.join("docs").join(format!("{id}.md"))
}

#[tokio::test]
async fn each_document_is_mirrored_as_a_markdown_file_named_by_id() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    docs.put(&doc_id("S1", "prd")?, "# PRD\n", DocWriter::Api)
        .await?;
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__prd"))?,
        "# PRD\n"
    );
    docs.put(&doc_id("S1", "prd")?, "# PRD v2\n", DocWriter::Api)
        .await?;
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__prd"))?,
        "# PRD v2\n"
    );
    // Only whole documents in the directory: no temporary file is left.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("docs"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(names, ["S1__prd.md"]);
    assert!(docs.delete(&doc_id("S1", "prd")?).await?);
    assert!(!file_of(dir.path(), "S1__prd").exists());
    Ok(())
}

#[tokio::test]
async fn an_edit_of_the_file_becomes_a_version_written_by_file() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    let id = doc_id("S1", "prd")?;
    docs.put(&id, "by the api", DocWriter::Api).await?;
    std::fs::write(file_of(dir.path(), "S1__prd"), "edited by a person")?;
    let read = docs.get(&id).await?.ok_or("document")?;
    assert_eq!(
        (read.content.as_str(), read.version, read.writer),
        ("edited by a person", 2, DocWriter::File)
    );
    // A write after another edit stores the edit first: nothing is lost.
    std::fs::write(file_of(dir.path(), "S1__prd"), "edited again")?;
    let agent = DocWriter::Agent {
        agent: "pm".into(),
        run_id: "run-1".into(),
    };
    assert_eq!(
        docs.put(&id, "by the agent", agent.clone()).await?.version,
        4
    );
    let writers: Vec<(u64, DocWriter)> = docs
        .versions(&id)
        .await?
        .into_iter()
        .map(|v| (v.version, v.writer))
        .collect();
    assert_eq!(
        writers,
        [
            (1, DocWriter::Api),
            (2, DocWriter::File),
            (3, DocWriter::File),
            (4, agent)
        ]
    );
    assert_eq!(
        docs.get_version(&id, 3).await?.map(|d| d.content),
        Some("edited again".into())
    );
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__prd"))?,
        "by the agent"
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_or_missing_file_is_rewritten_from_the_database() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    let id = doc_id("S1", "prd")?;
    docs.put(&id, "old", DocWriter::Api).await?;
    docs.put(&id, "new", DocWriter::Api).await?;
    // An older version's text, as a crash between commit and file write
    // (or two processes racing) leaves it: not an edit.
    std::fs::write(file_of(dir.path(), "S1__prd"), "old")?;
    let read = docs.get(&id).await?.ok_or("document")?;
    assert_eq!((read.content.as_str(), read.version), ("new", 2));
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__prd"))?,
        "new"
    );
    std::fs::remove_file(file_of(dir.path(), "S1__prd"))?;
    assert_eq!(docs.get(&id).await?.map(|d| d.version), Some(2));
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__prd"))?,
        "new"
    );
    Ok(())
}

#[tokio::test]
async fn at_start_stale_files_are_rewritten_and_edits_and_new_files_stored() -> TestResult {
    let dir = TempDir::new()?;
    {
        let docs = docs_in(dir.path()).await?;
        docs.put(&doc_id("S1", "stale")?, "v1", DocWriter::Api)
            .await?;
        docs.put(&doc_id("S1", "stale")?, "v2", DocWriter::Api)
            .await?;
        docs.put(&doc_id("S1", "edited")?, "v1", DocWriter::Api)
            .await?;
        docs.put(&doc_id("S1", "lost")?, "v1", DocWriter::Api)
            .await?;
    }
    // While no process runs: a file left stale, an edit, a file removed,
    // a document written by hand, and a stray file that is not a document.
    std::fs::write(file_of(dir.path(), "S1__stale"), "v1")?;
    std::fs::write(file_of(dir.path(), "S1__edited"), "a person's edit")?;
    std::fs::remove_file(file_of(dir.path(), "S1__lost"))?;
    std::fs::write(file_of(dir.path(), "S1__new"), "written by hand")?;
    std::fs::write(dir.path().join("docs/.hidden.md"), "not a document")?;
    // Not the file of document `S1__more` (that is `S1__more.md`).
    std::fs::write(dir.path().join("docs/S1__more.md.md"), "not a document")?;

    let docs = docs_in(dir.path()).await?;
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__stale"))?,
        "v2"
    );
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__lost"))?,
        "v1"
    );
    let versions = |id: &'static str| {
        let docs = Arc::clone(&docs);
        async move {
            Ok::<_, BoxError>(
                docs.versions(&doc_id("S1", id)?)
                    .await?
                    .into_iter()
                    .map(|v| (v.version, v.writer))
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        versions("edited").await?,
        [(1, DocWriter::Api), (2, DocWriter::File)]
    );
    assert_eq!(versions("new").await?, [(1, DocWriter::File)]);
    let listed: Vec<String> = store_suite::listed(docs.as_ref(), Some("S1")).await?;
    assert_eq!(listed, ["S1__edited", "S1__lost", "S1__new", "S1__stale"]);
    Ok(())
}

#[tokio::test]
async fn a_file_that_is_not_utf8_is_left_alone_and_the_stored_version_served() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    let id = doc_id("S1", "prd")?;
    docs.put(&id, "stored", DocWriter::Api).await?;
    std::fs::write(file_of(dir.path(), "S1__prd"), [0xff, 0xfe, b'x'])?;
    assert_eq!(
        docs.get(&id).await?.map(|d| d.content),
        Some("stored".into())
    );
    assert_eq!(
        std::fs::read(file_of(dir.path(), "S1__prd"))?,
        [0xff, 0xfe, b'x']
    );
    // One made by hand, never stored: no document a read finds, so none
    // a list names either.
    std::fs::write(file_of(dir.path(), "S1__notes"), [0xff, b'y'])?;
    assert_eq!(docs.get(&doc_id("S1", "notes")?).await?, None);
    let listed: Vec<String> = store_suite::listed(docs.as_ref(), Some("S1")).await?;
    assert_eq!(listed, ["S1__prd"]);
    Ok(())
}

#[tokio::test]
async fn a_write_moves_a_file_that_is_not_utf8_aside_instead_of_burying_it() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    let id = doc_id("S1", "prd")?;
    docs.put(&id, "stored", DocWriter::Api).await?;
    // A person's edit in a Latin-1 editor: not a version the store can keep.
    let edit = b"Caf\xe9 notes\n".to_vec();
    std::fs::write(file_of(dir.path(), "S1__prd"), &edit)?;
    let agent = DocWriter::Agent {
        agent: "pm".into(),
        run_id: "run-1".into(),
    };
    assert_eq!(docs.put(&id, "by the agent", agent).await?.version, 2);
    let aside = dir.path().join("docs/S1__prd.md.unreadable-1");
    assert_eq!(
        std::fs::read(&aside)?,
        edit,
        "the edit is kept, byte for byte"
    );
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S1__prd"))?,
        "by the agent"
    );
    // The file moved aside is no document, and a second one takes the next name.
    std::fs::write(file_of(dir.path(), "S1__prd"), [0xff])?;
    docs.put(&id, "again", DocWriter::Api).await?;
    assert_eq!(
        std::fs::read(dir.path().join("docs/S1__prd.md.unreadable-2"))?,
        [0xff]
    );
    let listed: Vec<String> = store_suite::listed(docs.as_ref(), Some("S1")).await?;
    assert_eq!(listed, ["S1__prd"]);
    // Reads and a start leave such a file alone; only a write moves it.
    std::fs::write(file_of(dir.path(), "S1__prd"), [0xfe])?;
    drop(docs);
    let docs = docs_in(dir.path()).await?;
    assert_eq!(docs.get(&id).await?.map(|d| d.version), Some(3));
    assert_eq!(std::fs::read(file_of(dir.path(), "S1__prd"))?, [0xfe]);
    Ok(())
}

#[tokio::test]
async fn a_directory_in_place_of_a_file_concerns_only_its_document() -> TestResult {
    let dir = TempDir::new()?;
    {
        let docs = docs_in(dir.path()).await?;
        docs.put(&doc_id("S1", "x")?, "stored", DocWriter::Api)
            .await?;
        docs.put(&doc_id("S2", "y")?, "other", DocWriter::Api)
            .await?;
    }
    std::fs::remove_file(file_of(dir.path(), "S1__x"))?;
    std::fs::create_dir(file_of(dir.path(), "S1__x"))?;
    // A start is not refused for one document's file…
    let docs = docs_in(dir.path()).await?;
    let id = doc_id("S1", "x")?;
    // …the stored version is served…
    assert_eq!(
        docs.get(&id).await?.map(|d| d.content),
        Some("stored".into())
    );
    // …and a write is stored, although its file cannot be written.
    assert_eq!(docs.put(&id, "new", DocWriter::Api).await?.version, 2);
    assert_eq!(docs.get(&id).await?.map(|d| d.content), Some("new".into()));
    assert!(file_of(dir.path(), "S1__x").is_dir(), "left as it is");
    // Every other document works as before.
    docs.put(&doc_id("S2", "y")?, "other v2", DocWriter::Api)
        .await?;
    assert_eq!(
        std::fs::read_to_string(file_of(dir.path(), "S2__y"))?,
        "other v2"
    );
    Ok(())
}

/// Makes a named pipe (FIFO) at `path`, as `mkfifo` does.
#[cfg(unix)]
fn make_fifo(path: &Path) -> Result<(), BoxError> {
    let status = std::process::Command::new("mkfifo").arg(path).status()?;
    if !status.success() {
        return Err(format!("mkfifo {} failed: {status}", path.display()).into());
    }
    Ok(())
}

/// `work`, or an error once it has waited 10 s — after which `fifo` is
/// opened for writing and closed again and again, which ends every read
/// blocked on it, so that a store that does block fails the test instead
/// of hanging it (the runtime waits for its blocking threads).
#[cfg(unix)]
async fn without_blocking_on<T>(
    fifo: &Path,
    what: &str,
    work: impl std::future::Future<Output = T>,
) -> Result<T, BoxError> {
    match tokio::time::timeout(std::time::Duration::from_secs(10), work).await {
        Ok(done) => Ok(done),
        Err(_) => {
            let fifo = fifo.to_path_buf();
            // Opening for writing waits for a reader: on a thread of its
            // own, never joined, that ends with the test's process.
            std::thread::spawn(move || {
                while std::fs::OpenOptions::new().write(true).open(&fifo).is_ok() {}
            });
            Err(format!("{what} blocked on the FIFO").into())
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_place_of_a_file_is_never_opened() -> TestResult {
    let dir = TempDir::new()?;
    let id = doc_id("F1", "a")?;
    {
        let docs = docs_in(dir.path()).await?;
        docs.put(&id, "v1", DocWriter::Api).await?;
    }
    let fifo = file_of(dir.path(), "F1__a");
    std::fs::remove_file(&fifo)?;
    make_fifo(&fifo)?;
    let docs = without_blocking_on(&fifo, "a start", docs_in(dir.path())).await??;
    let read = without_blocking_on(&fifo, "a read", docs.get(&id)).await??;
    assert_eq!(read.map(|d| d.content), Some("v1".into()));
    let memory = memory_in(dir.path())?;
    let written = without_blocking_on(&fifo, "a write", async {
        docs.put(&id, "v2", DocWriter::Api).await?;
        memory
            .set(
                &MemoryScope::parse("shared")?,
                &MemoryKey::parse("k")?,
                json!(1),
            )
            .await?;
        Ok::<_, BoxError>(())
    });
    written.await??;
    // The FIFO held no document text: the write replaced it with the file.
    assert_eq!(std::fs::read_to_string(&fifo)?, "v2");
    Ok(())
}

#[tokio::test]
async fn stale_temporary_files_of_the_mirror_are_removed_at_start() -> TestResult {
    let dir = TempDir::new()?;
    let docs_dir = dir.path().join("docs");
    std::fs::create_dir_all(&docs_dir)?;
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let make = |name: &str, old: bool| -> Result<(), BoxError> {
        let file = std::fs::File::create(docs_dir.join(name))?;
        if old {
            file.set_modified(an_hour_ago)?;
        }
        Ok(())
    };
    // Left by writes a crash interrupted (this version's and earlier ones' names).
    make(".bmad2pf-Ab12Cd.tmp", true)?;
    make(".Xy34Zw.tmp", true)?;
    // A write of another process, in flight; and files that are not the store's.
    make(".bmad2pf-Ef56Gh.tmp", false)?;
    make(".notes.tmp", true)?;
    make("draft.tmp", true)?;
    drop(docs_in(dir.path()).await?);
    let mut names: Vec<String> = std::fs::read_dir(&docs_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert_eq!(names, [".bmad2pf-Ef56Gh.tmp", ".notes.tmp", "draft.tmp"]);
    Ok(())
}

// ---------------------------------------------------- restarts and damage

#[tokio::test]
async fn everything_survives_a_restart() -> TestResult {
    let dir = TempDir::new()?;
    let scope = MemoryScope::parse("shared:plan")?;
    let workflow = WorkflowId::parse("wf-1")?;
    {
        memory_in(dir.path())?
            .set(&scope, &MemoryKey::parse("goal")?, json!({"n": 1}))
            .await?;
        let status = status_in(dir.path())?;
        status
            .create(Some(workflow.clone()), "S1", &["pm".into()])
            .await?;
        status
            .update(StatusUpdate {
                workflow_id: workflow.clone(),
                story_id: None,
                agent_id: "pm".into(),
                status: AgentState::Completed,
                output_summary: Some("done".into()),
            })
            .await?;
    }
    let memory = memory_in(dir.path())?;
    assert_eq!(
        memory.get(&scope, &MemoryKey::parse("goal")?).await?,
        Some(json!({"n": 1}))
    );
    let status = status_in(dir.path())?;
    let history = status.history(&workflow).await?;
    assert_eq!(history.len(), 1);
    assert_eq!(
        status
            .get(&workflow)
            .await?
            .map(|w| w.agent_statuses["pm"].status),
        Some(AgentState::Completed)
    );
    Ok(())
}

#[tokio::test]
async fn a_damaged_memory_row_fails_alone() -> TestResult {
    let dir = TempDir::new()?;
    let memory = memory_in(dir.path())?;
    let scope = MemoryScope::parse("shared:plan")?;
    memory
        .set(&scope, &MemoryKey::parse("good")?, json!(1))
        .await?;
    memory
        .set(&scope, &MemoryKey::parse("bad")?, json!(2))
        .await?;
    raw(dir.path())?.execute(
        "UPDATE memory SET value = '{not json' WHERE key = 'bad'",
        [],
    )?;
    let bad = memory.get(&scope, &MemoryKey::parse("bad")?).await;
    assert_eq!(bad.err().map(|e| e.code()), Some("storage_corrupt"));
    assert_eq!(
        memory.get(&scope, &MemoryKey::parse("good")?).await?,
        Some(json!(1))
    );
    assert_eq!(memory.keys(&scope).await?, ["bad", "good"]);
    // Loading the scope (a run needs it whole) says which key is damaged…
    let load = memory
        .load(&scope)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(load.contains("`bad`"), "{load}");
    // …and deleting or overwriting that key repairs it.
    assert!(memory.delete(&scope, &MemoryKey::parse("bad")?).await?);
    assert_eq!(memory.load(&scope).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_damaged_status_row_hides_only_its_workflow() -> TestResult {
    let dir = TempDir::new()?;
    let status = status_in(dir.path())?;
    let (good, bad) = (WorkflowId::parse("wf-good")?, WorkflowId::parse("wf-bad")?);
    status
        .create(Some(good.clone()), "S1", &["pm".into()])
        .await?;
    status
        .create(Some(bad.clone()), "S1", &["pm".into()])
        .await?;
    raw(dir.path())?.execute(
        "UPDATE workflow_agents SET status = 'exploded' WHERE workflow_id = 'wf-bad'",
        [],
    )?;
    let listed: Vec<String> = status
        .list()
        .await?
        .into_iter()
        .map(|w| w.workflow_id.to_string())
        .collect();
    assert_eq!(listed, ["wf-good"]);
    assert!(status.get(&good).await?.is_some());
    let read = status.get(&bad).await.err().map(|e| e.code());
    assert_eq!(read, Some("storage_corrupt"));
    Ok(())
}

#[tokio::test]
async fn a_claim_left_by_a_dead_process_expires() -> TestResult {
    let dir = TempDir::new()?;
    let runs = runs_in(dir.path())?;
    assert_eq!(runs.claim("planning", "S1", "run-dead").await?, None);
    assert_eq!(
        runs.claim("planning", "S1", "run-b").await?,
        Some("run-dead".to_string())
    );
    // The holder's process died: nobody renews, and the claim runs out.
    raw(dir.path())?.execute("UPDATE run_claims SET expires_at = 1", [])?;
    assert_eq!(runs.claim("planning", "S1", "run-b").await?, None);
    // The dead run can no longer renew or release the new holder's claim.
    assert!(!runs.renew("planning", "S1", "run-dead").await?);
    runs.release("planning", "S1", "run-dead").await?;
    assert_eq!(
        runs.claim("planning", "S1", "run-c").await?,
        Some("run-b".to_string())
    );
    Ok(())
}

/// The message `Database::open` refuses the store of `root` with.
fn refusal(root: &Path) -> String {
    Database::open(&root.join("data"), Incidents::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn an_empty_database_beside_a_log_that_holds_data_is_refused_and_left_alone() -> TestResult {
    let dir = TempDir::new()?;
    std::fs::create_dir_all(dir.path().join("data"))?;
    let db_path = dir.path().join("data").join(DATABASE_FILE);
    let log_path = dir.path().join("data").join(format!("{DATABASE_FILE}-wal"));
    let log = {
        // While it is open, the log holds the last commits; closing the
        // database checkpoints them into the file and removes the log.
        let conn = raw(dir.path())?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('data');",
        )?;
        std::fs::read(&log_path)?
    };
    assert!(!log.is_empty());
    // The database file emptied (a bad copy, a full disk), its log left.
    std::fs::write(&db_path, b"")?;
    std::fs::write(&log_path, &log)?;
    let message = refusal(dir.path());
    assert!(message.contains("empty or missing"), "{message}");
    assert!(
        message.contains(&db_path.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&log_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("backup"), "{message}");
    assert_eq!(std::fs::read(&db_path)?, b"");
    assert_eq!(std::fs::read(&log_path)?, log);
    // A missing file likewise.
    std::fs::remove_file(&db_path)?;
    assert!(refusal(dir.path()).contains("empty or missing"));
    assert!(!db_path.exists());
    assert_eq!(std::fs::read(&log_path)?, log);
    Ok(())
}

#[test]
fn a_directory_in_place_of_the_database_is_refused_with_its_path() -> TestResult {
    let dir = TempDir::new()?;
    let path = dir.path().join("data").join(DATABASE_FILE);
    std::fs::create_dir_all(&path)?;
    let message = refusal(dir.path());
    assert!(message.contains("is a directory"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move it away"), "{message}");
    Ok(())
}

/// The refusal to open a fresh store whose schema version was set to
/// `version` by hand, once it is checked that the file was left as it was.
fn refusal_at_version(root: &Path, version: u32) -> Result<String, BoxError> {
    drop(database(root)?);
    raw(root)?.pragma_update(None, "user_version", version)?;
    let path = root.join("data").join(DATABASE_FILE);
    let before = std::fs::read(&path)?;
    let message = refusal(root);
    assert_eq!(
        std::fs::read(&path)?,
        before,
        "the refused file was changed"
    );
    let left: u32 = raw(root)?.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    assert_eq!(left, version);
    assert!(message.contains(&path.display().to_string()), "{message}");
    Ok(message)
}

#[test]
fn a_schema_version_that_does_not_fit_the_tables_is_refused_and_left_alone() -> TestResult {
    let dir = TempDir::new()?;
    // Set back by hand: migrating from 2 would create tables that exist.
    let message = refusal_at_version(dir.path(), 2)?;
    let code = Database::open(&dir.path().join("data"), Incidents::default())
        .err()
        .map(|e| e.code());
    assert_eq!(code, Some("storage_corrupt"));
    assert!(
        message.contains("do not fit its schema version 2"),
        "{message}"
    );
    assert!(message.contains("backup"), "{message}");
    assert!(!message.contains("unavailable"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_docs_path_that_is_not_a_directory_is_refused_with_its_path() -> TestResult {
    let dir = TempDir::new()?;
    let docs = dir.path().join("docs");
    std::fs::write(&docs, "a file where the directory goes")?;
    let message = SqliteDocStore::open(database(dir.path())?, &docs)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains(&docs.display().to_string()), "{message}");
    assert!(message.contains("docs.path"), "{message}");
    Ok(())
}

#[test]
fn a_database_from_a_newer_version_is_refused_and_left_alone() -> TestResult {
    let dir = TempDir::new()?;
    let message = refusal_at_version(dir.path(), 999)?;
    assert!(message.contains("schema version 999"), "{message}");
    Ok(())
}
