//! The file backends: the shared store suite (`store_suite`), plus what only
//! files have — the on-disk layout, torn lines after a crash, compaction,
//! reopening after a restart, and id rejection before anything touches disk.

mod store_suite;

use std::path::Path;
use std::sync::Arc;

use bmad2pf_engine::store::{
    AgentState, DocId, DocStore, FileDocStore, FileMemoryStore, FileRunStore, FileStatusStore,
    MemoryKey, MemoryScope, MemoryStore, RunStore, StatusStore, StatusUpdate, WorkflowId, doc_id,
};
use serde_json::{Value, json};
use store_suite::TestResult;
use tempfile::TempDir;

async fn docs_in(
    dir: &Path,
) -> Result<Arc<dyn DocStore>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Arc::new(FileDocStore::open(dir).await?))
}

async fn memory_in(
    dir: &Path,
) -> Result<Arc<dyn MemoryStore>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Arc::new(FileMemoryStore::open(dir).await?))
}

async fn status_in(
    dir: &Path,
) -> Result<Arc<dyn StatusStore>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Arc::new(FileStatusStore::open(dir).await?))
}

fn line_count(path: &Path) -> Result<usize, std::io::Error> {
    Ok(std::fs::read_to_string(path)?.lines().count())
}

// ------------------------------------------------------- the shared suite

#[tokio::test]
async fn suite_docs_roundtrip() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::docs_roundtrip(docs_in(dir.path()).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_docs_concurrent_puts_never_tear() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::docs_concurrent_puts_never_tear(docs_in(dir.path()).await?).await
}

#[tokio::test]
async fn suite_memory_roundtrip() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::memory_roundtrip(memory_in(dir.path()).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_memory_concurrent_writes_lose_nothing() -> TestResult {
    let dir = TempDir::new()?;
    let memory = memory_in(dir.path()).await?;
    store_suite::memory_concurrent_writes_lose_nothing(Arc::clone(&memory), Arc::clone(&memory))
        .await?;
    // …and the file says the same to a freshly started process, once the
    // compactions in the background have ended.
    memory.flush().await;
    let reopened = memory_in(dir.path()).await?;
    store_suite::memory_contended_scope_is_complete(&reopened).await?;
    // 1000 writes to 250 keys: compaction has kept the file well below 1000 lines.
    let lines = line_count(&dir.path().join("shared/contended.jsonl"))?;
    assert!(lines < 1000, "file has {lines} lines");
    Ok(())
}

#[tokio::test]
async fn suite_status_lifecycle() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_lifecycle(status_in(dir.path()).await?).await
}

#[tokio::test]
async fn suite_status_isolation_and_implicit_create() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_isolation_and_implicit_create(status_in(dir.path()).await?).await
}

#[tokio::test]
async fn suite_status_cleanup_by_retention() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::status_cleanup_by_retention(status_in(dir.path()).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_status_concurrent_updates_lose_nothing() -> TestResult {
    let dir = TempDir::new()?;
    let status = status_in(dir.path()).await?;
    store_suite::status_concurrent_updates_lose_nothing(Arc::clone(&status), status).await
}

async fn runs_in(
    dir: &Path,
) -> Result<Arc<dyn RunStore>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Arc::new(FileRunStore::open(dir).await?))
}

#[tokio::test]
async fn suite_runs_claims_and_records() -> TestResult {
    let dir = TempDir::new()?;
    store_suite::runs_claims_and_records(runs_in(dir.path()).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_runs_one_claim_wins_across_handles() -> TestResult {
    let dir = TempDir::new()?;
    let runs = runs_in(dir.path()).await?;
    store_suite::runs_one_claim_wins_across_handles(Arc::clone(&runs), runs).await
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

#[tokio::test]
async fn documents_are_markdown_files_named_by_id() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    docs.put(&doc_id("S1", "prd")?, "# PRD\n").await?;
    // A write reaches its file in the background; `flush` waits for that.
    docs.flush().await?;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("S1__prd.md"))?,
        "# PRD\n"
    );

    // Files that are not documents stay invisible.
    std::fs::write(dir.path().join("readme.txt"), "x")?;
    std::fs::write(dir.path().join(".S1__x.md.tmp-1234"), "x")?;
    std::fs::write(dir.path().join("bad..name.md"), "x")?;
    let ids: Vec<String> = docs
        .list(None)
        .await?
        .into_iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids, ["S1__prd"]);
    Ok(())
}

#[tokio::test]
async fn a_document_that_is_not_utf8_is_reported_as_corrupt() -> TestResult {
    let dir = TempDir::new()?;
    let docs = docs_in(dir.path()).await?;
    std::fs::write(dir.path().join("binary.md"), [0xff, 0xfe, 0x00])?;
    let err = docs
        .get(&DocId::parse("binary")?)
        .await
        .err()
        .ok_or("read succeeded")?;
    assert_eq!(err.code(), "storage_corrupt");
    assert!(
        !err.to_string().contains(&dir.path().display().to_string()),
        "no paths in messages"
    );
    Ok(())
}

// ---------------------------------------------------------------- memory

#[tokio::test]
async fn memory_files_follow_the_spec_layout_and_line_format() -> TestResult {
    let dir = TempDir::new()?;
    let memory = memory_in(dir.path()).await?;
    memory
        .set(
            &MemoryScope::isolated("pm", "S1")?,
            &MemoryKey::parse("plan")?,
            json!({"a": 1}),
        )
        .await?;
    memory
        .set(
            &MemoryScope::parse("shared:team")?,
            &MemoryKey::parse("x")?,
            json!(1),
        )
        .await?;
    memory
        .delete(&MemoryScope::parse("shared:team")?, &MemoryKey::parse("x")?)
        .await?;

    let isolated = std::fs::read_to_string(dir.path().join("isolated/pm_S1.jsonl"))?;
    let line: Value = serde_json::from_str(isolated.trim_end())?;
    assert_eq!(line.get("k"), Some(&json!("plan")));
    assert_eq!(line.get("v"), Some(&json!({"a": 1})));
    assert!(line.get("t").and_then(Value::as_u64).is_some());

    let shared = std::fs::read_to_string(dir.path().join("shared/team.jsonl"))?;
    let lines: Vec<Value> = shared
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].get("d"), Some(&json!(true)));
    assert_eq!(lines[1].get("v"), None);
    Ok(())
}

#[tokio::test]
async fn a_torn_last_line_is_ignored_and_the_file_stays_valid() -> TestResult {
    let dir = TempDir::new()?;
    let scope = MemoryScope::parse("shared:crash")?;
    let file = dir.path().join("shared/crash.jsonl");
    {
        let memory = memory_in(dir.path()).await?;
        memory
            .set(&scope, &MemoryKey::parse("a")?, json!(1))
            .await?;
        memory
            .set(&scope, &MemoryKey::parse("b")?, json!(2))
            .await?;
    }
    // A crash in the middle of the third write.
    let mut bytes = std::fs::read(&file)?;
    bytes.extend_from_slice(br#"{"k":"c","v":"half a val"#);
    std::fs::write(&file, &bytes)?;

    let memory = memory_in(dir.path()).await?;
    let loaded = memory.load(&scope).await?;
    assert_eq!(
        loaded,
        [("a".to_string(), json!(1)), ("b".to_string(), json!(2))].into()
    );
    memory
        .set(&scope, &MemoryKey::parse("c")?, json!(3))
        .await?;

    // Every line parses: the torn bytes were cut before appending.
    let text = std::fs::read_to_string(&file)?;
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        serde_json::from_str::<Value>(line)?;
    }
    let reopened = memory_in(dir.path()).await?;
    assert_eq!(reopened.keys(&scope).await?, ["a", "b", "c"]);
    Ok(())
}

#[tokio::test]
async fn compaction_keeps_live_values_and_shrinks_the_file() -> TestResult {
    let dir = TempDir::new()?;
    let scope = MemoryScope::parse("shared:busy")?;
    let file = dir.path().join("shared/busy.jsonl");
    let memory = memory_in(dir.path()).await?;
    for i in 0..10 {
        memory
            .set(&scope, &MemoryKey::parse(&format!("keep{i}"))?, json!(i))
            .await?;
    }
    for round in 0..30 {
        memory
            .set(&scope, &MemoryKey::parse("hot")?, json!(round))
            .await?;
        memory
            .set(&scope, &MemoryKey::parse("temp")?, json!(round))
            .await?;
        memory.delete(&scope, &MemoryKey::parse("temp")?).await?;
    }
    // 100 lines were written for 11 live keys.
    memory.flush().await;
    let lines = line_count(&file)?;
    assert!(lines < 100, "file has {lines} lines");

    let reopened = memory_in(dir.path()).await?;
    let loaded = reopened.load(&scope).await?;
    assert_eq!(loaded.len(), 11);
    assert_eq!(loaded.get("hot"), Some(&json!(29)));
    assert_eq!(loaded.get("keep7"), Some(&json!(7)));
    assert_eq!(loaded.get("temp"), None);
    Ok(())
}

#[tokio::test]
async fn a_compaction_a_crash_interrupted_leaves_nothing_behind_after_a_restart() -> TestResult {
    let dir = TempDir::new()?;
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared)?;
    std::fs::write(shared.join("s.jsonl"), "{\"k\":\"a\",\"v\":1,\"t\":1}\n")?;
    // A compacted file that was still being written, or not yet renamed.
    let leftover = shared.join(".s.jsonl.tmp-0123456789abcdef");
    std::fs::write(&leftover, "{\"k\":\"a\",\"v\":0,")?;
    let memory = memory_in(dir.path()).await?;
    assert!(!leftover.exists(), "the temporary file was removed");
    let scope = MemoryScope::parse("shared:s")?;
    assert_eq!(
        memory.get(&scope, &MemoryKey::parse("a")?).await?,
        Some(json!(1))
    );
    Ok(())
}

#[tokio::test]
async fn a_garbled_complete_line_is_an_error_not_a_guess() -> TestResult {
    let dir = TempDir::new()?;
    std::fs::create_dir_all(dir.path().join("shared"))?;
    std::fs::write(
        dir.path().join("shared/bad.jsonl"),
        "{\"k\":\"a\",\"v\":1,\"t\":1}\nGARBAGE\n",
    )?;
    let memory = memory_in(dir.path()).await?;
    let err = memory
        .keys(&MemoryScope::parse("shared:bad")?)
        .await
        .err()
        .ok_or("load succeeded")?;
    assert_eq!(err.code(), "storage_corrupt");
    assert!(err.to_string().contains("line 2"), "{err}");
    Ok(())
}

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_survives_a_restart_with_its_history() -> TestResult {
    let dir = TempDir::new()?;
    let wf = WorkflowId::parse("wf-restart")?;
    let before = {
        let status = status_in(dir.path()).await?;
        status
            .create(Some(wf.clone()), "S1", &["pm".into(), "dev".into()])
            .await?;
        for state in [AgentState::Running, AgentState::Completed] {
            status
                .update(StatusUpdate {
                    workflow_id: wf.clone(),
                    story_id: None,
                    agent_id: "pm".into(),
                    status: state,
                    output_summary: Some(format!("pm {state}")),
                })
                .await?;
        }
        let gone = status.create(None, "S2", &[]).await?;
        status.delete(&gone.workflow_id).await?;
        (status.get(&wf).await?, status.history(&wf).await?)
    };
    let status = status_in(dir.path()).await?;
    assert_eq!((status.get(&wf).await?, status.history(&wf).await?), before);
    assert_eq!(status.list().await?.len(), 1);
    assert!(dir.path().join("status.jsonl").is_file());
    Ok(())
}

#[tokio::test]
async fn status_compaction_drops_deleted_workflows_only() -> TestResult {
    let dir = TempDir::new()?;
    let file = dir.path().join("status.jsonl");
    let status = status_in(dir.path()).await?;
    for i in 0..100 {
        let id = WorkflowId::parse(&format!("wf-{i:03}"))?;
        status
            .create(Some(id.clone()), "S1", &["pm".into()])
            .await?;
        status
            .update(StatusUpdate {
                workflow_id: id,
                story_id: None,
                agent_id: "pm".into(),
                status: AgentState::Completed,
                output_summary: Some(format!("done {i}")),
            })
            .await?;
    }
    let kept_before = status.get(&WorkflowId::parse("wf-095")?).await?;
    let history_before = status.history(&WorkflowId::parse("wf-095")?).await?;
    for i in 0..90 {
        status
            .delete(&WorkflowId::parse(&format!("wf-{i:03}"))?)
            .await?;
    }
    // 200 lines for the workflows plus 90 deletions, of which 20 are live.
    status.flush().await;
    let lines = line_count(&file)?;
    assert!(lines < 290, "file has {lines} lines");

    let reopened = status_in(dir.path()).await?;
    assert_eq!(reopened.list().await?.len(), 10);
    let id = WorkflowId::parse("wf-095")?;
    assert_eq!(reopened.get(&id).await?, kept_before);
    assert_eq!(reopened.history(&id).await?, history_before);
    Ok(())
}

#[tokio::test]
async fn status_log_with_a_torn_tail_reopens() -> TestResult {
    let dir = TempDir::new()?;
    {
        let status = status_in(dir.path()).await?;
        status
            .create(Some(WorkflowId::parse("wf-a")?), "S1", &[])
            .await?;
    }
    let file = dir.path().join("status.jsonl");
    let mut bytes = std::fs::read(&file)?;
    bytes.extend_from_slice(br#"{"op":"create","workflow_id":"wf-b""#);
    std::fs::write(&file, &bytes)?;
    let status = status_in(dir.path()).await?;
    let ids: Vec<String> = status
        .list()
        .await?
        .into_iter()
        .map(|s| s.workflow_id.to_string())
        .collect();
    assert_eq!(ids, ["wf-a"]);
    status
        .create(Some(WorkflowId::parse("wf-b")?), "S1", &[])
        .await?;
    assert_eq!(status_in(dir.path()).await?.list().await?.len(), 2);
    Ok(())
}
