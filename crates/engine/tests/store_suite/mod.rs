//! The behavioural contract of the store traits, written once against
//! `Arc<dyn DocStore>`, `Arc<dyn MemoryStore>`, `Arc<dyn StatusStore>`,
//! `Arc<dyn RunStore>` and `Arc<dyn DeliveryStore>`.
//!
//! Every backend's test file (`store_file.rs`, `store_redis.rs`) calls these
//! functions with fresh, empty stores. Functions that take two handles
//! (`a`, `b`) check that concurrent use through both loses nothing: a
//! backend shared between replicas passes two independently opened stores
//! on the same data, a single-process backend passes one store twice.
//! Nothing here knows how a backend keeps its data; backend-specific checks
//! (file layout, torn lines, reopening, key layout, TTLs) live in the
//! backend's own test file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bmad2pf_engine::store::{
    AgentRecord, AgentState, Created, DeliveryAttempt, DeliveryState, DeliveryStore, DocId,
    DocStore, DocWriter, MAX_VALUE_DEPTH, MemoryKey, MemoryScope, MemoryStore, RunQuery, RunRecord,
    RunStore, StatusStore, StatusUpdate, StoreError, StoredDelivery, StoredEvent, StoredRun,
    WorkflowId, doc_id, now_ms,
};
use serde_json::{Value, json};

/// Error type of the suite's functions: any failure, with its message.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn doc(id: &str) -> Result<DocId, Box<dyn std::error::Error + Send + Sync>> {
    Ok(DocId::parse(id)?)
}

fn key(k: &str) -> Result<MemoryKey, Box<dyn std::error::Error + Send + Sync>> {
    Ok(MemoryKey::parse(k)?)
}

fn workflow(id: &str) -> Result<WorkflowId, Box<dyn std::error::Error + Send + Sync>> {
    Ok(WorkflowId::parse(id)?)
}

// ---------------------------------------------------------------- documents

/// put / get / meta / list / delete on a fresh store.
/// The ids of the documents `docs` lists (of `story`, or all).
pub async fn listed(docs: &dyn DocStore, story: Option<&str>) -> Result<Vec<String>, StoreError> {
    let listed = docs.list(story).await?;
    Ok(listed.into_iter().map(|m| m.id.to_string()).collect())
}

pub async fn docs_roundtrip(docs: Arc<dyn DocStore>) -> TestResult {
    docs.health().await?;
    let prd = doc_id("S1", "prd.md")?;
    assert_eq!(prd.as_str(), "S1__prd");
    assert_eq!(docs.get(&prd).await?, None);
    assert_eq!(docs.meta(&prd).await?, None);

    let text = "# PRD\n\nCafé — ünïcode ✓\n";
    let written = docs.put(&prd, text, DocWriter::Api).await?;
    assert_eq!((written.version, written.bytes), (1, text.len() as u64));
    let got = docs.get(&prd).await?.ok_or("document missing after put")?;
    assert_eq!(got.content, text);
    assert_eq!(got.bytes, text.len() as u64);
    assert!(got.modified > 0);
    let meta = docs.meta(&prd).await?.ok_or("meta missing after put")?;
    assert_eq!(
        (meta.id.as_str(), meta.bytes),
        ("S1__prd", text.len() as u64)
    );

    // The same document with and without `.md`.
    let same = doc("S1__prd.md")?;
    assert_eq!(
        docs.get(&same).await?.map(|d| d.content),
        Some(text.to_string())
    );

    // Replace, and empty content is a document too.
    assert_eq!(docs.put(&prd, "v2", DocWriter::Api).await?.bytes, 2);
    assert_eq!(docs.get(&prd).await?.map(|d| d.content), Some("v2".into()));
    docs.put(&doc("S1__empty")?, "", DocWriter::Api).await?;
    assert_eq!(
        docs.meta(&doc("S1__empty")?).await?.map(|m| m.bytes),
        Some(0)
    );

    docs.put(&doc("S2__prd")?, "other story", DocWriter::Api)
        .await?;
    docs.put(&doc("S10__prd")?, "prefix lookalike", DocWriter::Api)
        .await?;
    docs.put(&doc("notes")?, "no story", DocWriter::Api).await?;
    // Ids that start like S1's but belong to no story (`S1_` and `S1__x`
    // are not story ids).
    docs.put(&doc("S1___prd")?, "no story", DocWriter::Api)
        .await?;

    let all: Vec<String> = listed(docs.as_ref(), None).await?;
    assert_eq!(
        all,
        [
            "S10__prd",
            "S1___prd",
            "S1__empty",
            "S1__prd",
            "S2__prd",
            "notes"
        ]
    );
    let s1: Vec<String> = listed(docs.as_ref(), Some("S1")).await?;
    assert_eq!(s1, ["S1__empty", "S1__prd"]);
    assert!(docs.list(Some("none")).await?.is_empty());
    for bad_story in ["../S1", "S1_", "S1__x"] {
        let refused = docs.list(Some(bad_story)).await.err().map(|e| e.code());
        assert_eq!(refused, Some("invalid_id"), "{bad_story}");
    }

    assert!(docs.delete(&prd).await?);
    assert!(!docs.delete(&prd).await?);
    assert_eq!(docs.get(&prd).await?, None);
    assert_eq!(docs.meta(&prd).await?, None);
    let s1: Vec<String> = listed(docs.as_ref(), Some("S1")).await?;
    assert_eq!(s1, ["S1__empty"]);
    Ok(())
}

/// Every write is a version, numbered from 1, with its writer; old
/// versions stay readable; a delete removes them all.
pub async fn docs_versions(docs: Arc<dyn DocStore>) -> TestResult {
    let id = doc_id("S1", "prd")?;
    assert!(docs.versions(&id).await?.is_empty());
    assert_eq!(docs.get_version(&id, 1).await?, None);
    let agent = DocWriter::Agent {
        agent: "pm".into(),
        run_id: "run-1".into(),
    };
    docs.put(&id, "first", agent.clone()).await?;
    docs.put(&id, "second, longer", DocWriter::Api).await?;
    let latest = docs.get(&id).await?.ok_or("latest")?;
    assert_eq!(
        (latest.content.as_str(), latest.version, &latest.writer),
        ("second, longer", 2, &DocWriter::Api)
    );
    let versions = docs.versions(&id).await?;
    let listed: Vec<(u64, u64, &DocWriter)> = versions
        .iter()
        .map(|v| (v.version, v.bytes, &v.writer))
        .collect();
    assert_eq!(listed, [(1, 5, &agent), (2, 14, &DocWriter::Api)]);
    assert!(versions[0].at <= versions[1].at && versions[0].at > 0);
    let first = docs.get_version(&id, 1).await?.ok_or("version 1")?;
    assert_eq!((first.content.as_str(), first.writer), ("first", agent));
    assert_eq!(docs.get_version(&id, 3).await?, None);
    assert_eq!(docs.get_version(&id, u64::MAX).await?, None);
    assert!(docs.delete(&id).await?);
    assert!(docs.versions(&id).await?.is_empty());
    assert_eq!(docs.get_version(&id, 1).await?, None);
    // A new document of the same id starts again at version 1.
    assert_eq!(docs.put(&id, "again", DocWriter::Api).await?.version, 1);
    Ok(())
}

/// One document's content for writer `writer`, round `round`: many lines that
/// all carry the same tag, so a mix of two versions is detectable.
fn version(writer: usize, round: usize) -> String {
    let tag = format!("writer {writer:02} round {round:02}\n");
    tag.repeat(200)
}

fn is_whole_version(content: &str) -> bool {
    let mut lines = content.lines();
    let Some(first) = lines.next() else {
        return false;
    };
    first.starts_with("writer ") && lines.all(|l| l == first) && content.lines().count() == 200
}

/// 50 tasks × 20 puts to one id while readers read it: readers and the
/// final state only ever see one complete version.
pub async fn docs_concurrent_puts_never_tear(docs: Arc<dyn DocStore>) -> TestResult {
    const WRITERS: usize = 50;
    const ROUNDS: usize = 20;
    let id = doc("S1__contended")?;
    docs.put(&id, &version(0, 0), DocWriter::Api).await?;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (docs, id) = (Arc::clone(&docs), id.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                docs.put(&id, &version(writer, round), DocWriter::Api)
                    .await?;
            }
            Ok::<(), bmad2pf_engine::store::StoreError>(())
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (docs, id) = (Arc::clone(&docs), id.clone());
        readers.push(tokio::spawn(async move {
            let mut torn = 0usize;
            for _ in 0..50 {
                match docs.get(&id).await? {
                    Some(d) if is_whole_version(&d.content) => {}
                    _ => torn += 1,
                }
                tokio::task::yield_now().await;
            }
            Ok::<usize, bmad2pf_engine::store::StoreError>(torn)
        }));
    }
    for writer in writers {
        writer.await??;
    }
    for reader in readers {
        assert_eq!(reader.await??, 0, "a reader saw a torn or missing document");
    }
    let last = docs.get(&id).await?.ok_or("document vanished")?;
    assert!(is_whole_version(&last.content));
    assert!(last.content.contains(&format!("round {:02}", ROUNDS - 1)));
    let listed: Vec<String> = listed(docs.as_ref(), Some("S1")).await?;
    assert_eq!(
        listed,
        ["S1__contended"],
        "temporary files must not show up"
    );
    Ok(())
}

// ------------------------------------------------------------------- memory

/// get / set / delete / keys / load / set_many, and scope isolation.
pub async fn memory_roundtrip(memory: Arc<dyn MemoryStore>) -> TestResult {
    memory.health().await?;
    let pm = MemoryScope::parse("isolated:pm:S1")?;
    let pm_other_story = MemoryScope::parse("isolated:pm:S2")?;
    let shared = MemoryScope::parse("shared")?;
    let team = MemoryScope::parse("shared:team")?;

    assert!(memory.keys(&pm).await?.is_empty());
    assert!(memory.load(&pm).await?.is_empty());
    assert_eq!(memory.get(&pm, &key("plan")?).await?, None);

    memory
        .set(&pm, &key("plan")?, json!({"steps": [1, 2]}))
        .await?;
    memory.set(&pm, &key("notes:v2")?, json!("text")).await?;
    memory.set(&pm, &key("nothing")?, Value::Null).await?;
    memory.set(&shared, &key("plan")?, json!(42)).await?;

    assert_eq!(
        memory.get(&pm, &key("plan")?).await?,
        Some(json!({"steps": [1, 2]}))
    );
    assert_eq!(memory.get(&pm, &key("nothing")?).await?, Some(Value::Null));
    assert_eq!(memory.get(&shared, &key("plan")?).await?, Some(json!(42)));
    assert_eq!(memory.get(&pm_other_story, &key("plan")?).await?, None);
    assert_eq!(memory.get(&team, &key("plan")?).await?, None);
    assert_eq!(
        memory
            .get(&MemoryScope::parse("shared:default")?, &key("plan")?)
            .await?,
        Some(json!(42)),
        "`shared` is `shared:default`"
    );
    assert_eq!(
        memory.keys(&pm).await?,
        ["notes:v2", "nothing", "plan"],
        "byte order"
    );

    memory.set(&pm, &key("plan")?, json!("replaced")).await?;
    assert_eq!(
        memory.get(&pm, &key("plan")?).await?,
        Some(json!("replaced"))
    );

    assert!(memory.delete(&pm, &key("nothing")?).await?);
    assert!(!memory.delete(&pm, &key("nothing")?).await?);
    assert!(!memory.delete(&team, &key("never-set")?).await?);
    assert_eq!(memory.get(&pm, &key("nothing")?).await?, None);

    let batch: BTreeMap<MemoryKey, Value> =
        [(key("a")?, json!(1)), (key("plan")?, json!("from batch"))].into();
    memory.set_many(&pm, batch).await?;
    memory.set_many(&pm, BTreeMap::new()).await?;
    let loaded = memory.load(&pm).await?;
    let expected: BTreeMap<String, Value> = [
        ("a".to_string(), json!(1)),
        ("notes:v2".to_string(), json!("text")),
        ("plan".to_string(), json!("from batch")),
    ]
    .into();
    assert_eq!(loaded, expected);

    // A pack-qualified agent maps to the same scope as its dotted form.
    let qualified = MemoryScope::isolated("pack/pm", "S1")?;
    memory.set(&qualified, &key("x")?, json!(true)).await?;
    let dotted = MemoryScope::parse("isolated:pack.pm:S1")?;
    assert_eq!(memory.get(&dotted, &key("x")?).await?, Some(json!(true)));

    // A value too deep to be read back is refused, alone or in a batch,
    // and nothing of the batch is written.
    let nest = |levels: usize| -> Result<Value, serde_json::Error> {
        serde_json::from_str(&format!("{}0{}", "[".repeat(levels), "]".repeat(levels)))
    };
    let too_deep = memory
        .set(&pm, &key("deep")?, nest(MAX_VALUE_DEPTH + 1)?)
        .await;
    assert!(
        matches!(too_deep, Err(StoreError::InvalidValue { .. })),
        "{too_deep:?}"
    );
    let batch: BTreeMap<MemoryKey, Value> = [
        (key("fine")?, json!(1)),
        (key("deep")?, nest(MAX_VALUE_DEPTH + 60)?),
    ]
    .into();
    assert!(memory.set_many(&pm, batch).await.is_err());
    memory
        .set(&pm, &key("deepest")?, nest(MAX_VALUE_DEPTH)?)
        .await?;
    assert_eq!(
        memory.keys(&pm).await?,
        ["a", "deepest", "notes:v2", "plan"]
    );
    Ok(())
}

/// 50 tasks × 20 writes to one scope (each task overwriting its own five
/// keys four times), the tasks alternating between handles `a` and `b`:
/// every key ends with its last value, seen through both.
pub async fn memory_concurrent_writes_lose_nothing(
    a: Arc<dyn MemoryStore>,
    b: Arc<dyn MemoryStore>,
) -> TestResult {
    const TASKS: usize = 50;
    const WRITES: usize = 20;
    const KEYS_PER_TASK: usize = 5;
    let scope = MemoryScope::parse("shared:contended")?;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let memory = if task % 2 == 0 { &a } else { &b };
        let (memory, scope) = (Arc::clone(memory), scope.clone());
        tasks.push(tokio::spawn(async move {
            for write in 0..WRITES {
                let key = MemoryKey::parse(&format!("t{task}.{}", write % KEYS_PER_TASK))?;
                memory
                    .set(&scope, &key, json!({"task": task, "write": write}))
                    .await?;
            }
            Ok::<(), bmad2pf_engine::store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    memory_contended_scope_is_complete(&a).await?;
    memory_contended_scope_is_complete(&b).await
}

/// The state [`memory_concurrent_writes_lose_nothing`] must leave; public so
/// a backend's test can check it again after reopening the store.
pub async fn memory_contended_scope_is_complete(memory: &Arc<dyn MemoryStore>) -> TestResult {
    let scope = MemoryScope::parse("shared:contended")?;
    let loaded = memory.load(&scope).await?;
    assert_eq!(loaded.len(), 50 * 5);
    for task in 0..50 {
        for slot in 0..5 {
            let last_write = 15 + slot;
            assert_eq!(
                loaded.get(&format!("t{task}.{slot}")),
                Some(&json!({"task": task, "write": last_write})),
                "task {task} key {slot}"
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- status

/// create / AlreadyExists / get / update / history / list / delete.
pub async fn status_lifecycle(status: Arc<dyn StatusStore>) -> TestResult {
    status.health().await?;
    let wf = workflow("wf-story-1")?;
    assert_eq!(status.get(&wf).await?, None);

    let created = status
        .create(
            Some(wf.clone()),
            "S1",
            &["analyst".into(), "pack/pm".into()],
        )
        .await?;
    assert_eq!(created.workflow_id, wf);
    assert_eq!(created.story_id.as_deref(), Some("S1"));
    assert_eq!(created.agent_statuses.len(), 2);
    assert!(
        created
            .agent_statuses
            .values()
            .all(|a| a.status == AgentState::Pending && a.last_execution.is_none())
    );
    assert_eq!(status.get(&wf).await?, Some(created.clone()));
    assert!(status.history(&wf).await?.is_empty());

    let again = status
        .create(Some(wf.clone()), "S1", &[])
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(again, Some("already_exists"));

    let update = |agent: &str, state: AgentState, summary: Option<&str>| StatusUpdate {
        workflow_id: wf.clone(),
        story_id: None,
        agent_id: agent.to_string(),
        status: state,
        output_summary: summary.map(str::to_string),
    };
    // `record` is `update` without the workflow back (what runs use).
    status
        .record(update("analyst", AgentState::Running, None))
        .await?;
    status
        .update(update(
            "analyst",
            AgentState::Completed,
            Some("brief written"),
        ))
        .await?;
    let after = status
        .update(update("pack/pm", AgentState::NeedsInput, Some("needs prd")))
        .await?;
    let analyst = after
        .agent_statuses
        .get("analyst")
        .ok_or("analyst missing")?;
    assert_eq!(analyst.status, AgentState::Completed);
    assert_eq!(analyst.output_summary.as_deref(), Some("brief written"));
    assert!(
        analyst
            .last_execution
            .is_some_and(|t| t >= created.created_at)
    );
    assert!(after.updated_at >= created.created_at);
    assert_eq!(status.get(&wf).await?, Some(after.clone()));

    // No logic: any state may follow any other, and a new agent may appear.
    status
        .update(update("analyst", AgentState::Pending, None))
        .await?;
    let latest = status
        .update(update("architect", AgentState::Skipped, None))
        .await?;
    assert_eq!(
        latest
            .agent_statuses
            .get("analyst")
            .map(|a| (a.status, a.output_summary.clone())),
        Some((AgentState::Pending, None))
    );
    assert_eq!(latest.agent_statuses.len(), 3);

    let history: Vec<(String, AgentState)> = status
        .history(&wf)
        .await?
        .into_iter()
        .map(|c| (c.agent_id, c.status))
        .collect();
    assert_eq!(
        history,
        [
            ("analyst".to_string(), AgentState::Running),
            ("analyst".to_string(), AgentState::Completed),
            ("pack/pm".to_string(), AgentState::NeedsInput),
            ("analyst".to_string(), AgentState::Pending),
            ("architect".to_string(), AgentState::Skipped),
        ]
    );
    let times: Vec<u64> = status.history(&wf).await?.iter().map(|c| c.at).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "history is oldest first"
    );

    // A different story for the same workflow is refused; bad ids too.
    let mut wrong_story = update("analyst", AgentState::Running, None);
    wrong_story.story_id = Some("S9".into());
    assert_eq!(
        status
            .update(wrong_story.clone())
            .await
            .err()
            .map(|e| e.code()),
        Some("conflict")
    );
    assert_eq!(
        status.record(wrong_story).await.err().map(|e| e.code()),
        Some("conflict")
    );
    let bad_agent = status
        .update(update("../x", AgentState::Running, None))
        .await;
    assert_eq!(bad_agent.err().map(|e| e.code()), Some("invalid_id"));
    let bad_agent = status
        .record(update("../x", AgentState::Running, None))
        .await;
    assert_eq!(bad_agent.err().map(|e| e.code()), Some("invalid_id"));
    let bad_story = status
        .create(None, "a/b", &[])
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(bad_story, Some("invalid_id"));

    let listed = status.list().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].workflow_id, wf);
    assert_eq!(
        listed[0].agents.get("architect"),
        Some(&AgentState::Skipped)
    );

    assert!(status.delete(&wf).await?);
    assert!(!status.delete(&wf).await?);
    assert_eq!(status.get(&wf).await?, None);
    assert_eq!(
        status.history(&wf).await.err().map(|e| e.code()),
        Some("not_found")
    );
    assert!(status.list().await?.is_empty());
    Ok(())
}

/// Workflows do not see each other's agents or history; ids are generated
/// when absent; an update creates an unknown workflow.
pub async fn status_isolation_and_implicit_create(status: Arc<dyn StatusStore>) -> TestResult {
    let a = status.create(None, "S1", &["pm".into()]).await?;
    let b = status.create(None, "S1", &["pm".into()]).await?;
    assert_ne!(a.workflow_id, b.workflow_id);
    assert!(a.workflow_id.as_str().starts_with("wf-"));

    status
        .update(StatusUpdate {
            workflow_id: a.workflow_id.clone(),
            story_id: Some("S1".into()),
            agent_id: "pm".into(),
            status: AgentState::Failed,
            output_summary: Some("boom".into()),
        })
        .await?;
    let b_now = status.get(&b.workflow_id).await?.ok_or("b missing")?;
    assert_eq!(
        b_now.agent_statuses.get("pm").map(|s| s.status),
        Some(AgentState::Pending)
    );
    assert!(status.history(&b.workflow_id).await?.is_empty());
    assert_eq!(status.history(&a.workflow_id).await?.len(), 1);

    let implicit = workflow("wf-implicit")?;
    let made = status
        .update(StatusUpdate {
            workflow_id: implicit.clone(),
            story_id: Some("S7".into()),
            agent_id: "dev".into(),
            status: AgentState::Running,
            output_summary: None,
        })
        .await?;
    assert_eq!(made.story_id.as_deref(), Some("S7"));
    assert_eq!(
        made.agent_statuses.get("dev").map(|s| s.status),
        Some(AgentState::Running)
    );
    assert_eq!(status.history(&implicit).await?.len(), 1);

    let ids: Vec<String> = status
        .list()
        .await?
        .into_iter()
        .map(|s| s.workflow_id.to_string())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "list is sorted by id");
    assert_eq!(ids.len(), 3);
    Ok(())
}

/// Cleanup removes exactly the workflows whose last change is older than
/// the retention before `now`.
pub async fn status_cleanup_by_retention(status: Arc<dyn StatusStore>) -> TestResult {
    let old = status.create(Some(workflow("wf-old")?), "S1", &[]).await?;
    // Make the second workflow's timestamp strictly later (ordering only,
    // nothing is asserted about durations).
    while now_ms() <= old.updated_at {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let fresh = status
        .create(Some(workflow("wf-fresh")?), "S1", &[])
        .await?;
    assert!(fresh.updated_at > old.updated_at);

    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(status.cleanup(week, now_ms()).await?, 0);

    let retention = Duration::from_secs(3600);
    let now = fresh.updated_at + 3_600_000;
    assert_eq!(status.cleanup(retention, now).await?, 1);
    assert_eq!(status.get(&old.workflow_id).await?, None);
    assert!(status.get(&fresh.workflow_id).await?.is_some());

    assert_eq!(status.cleanup(retention, now + 1).await?, 1);
    assert!(status.list().await?.is_empty());
    Ok(())
}

/// 2 × 25 tasks, alternating between handles `a` and `b`, each reporting
/// its own agent `running` then `completed` on one workflow: every agent
/// ends `completed` and the history holds all 100 changes, each agent's in
/// its order.
pub async fn status_concurrent_updates_lose_nothing(
    a: Arc<dyn StatusStore>,
    b: Arc<dyn StatusStore>,
) -> TestResult {
    const AGENTS: usize = 50;
    let wf = workflow("wf-contended")?;
    a.create(Some(wf.clone()), "S1", &[]).await?;
    let mut tasks = Vec::new();
    for agent in 0..AGENTS {
        let status = Arc::clone(if agent % 2 == 0 { &a } else { &b });
        let wf = wf.clone();
        tasks.push(tokio::spawn(async move {
            for state in [AgentState::Running, AgentState::Completed] {
                let now = status
                    .update(StatusUpdate {
                        workflow_id: wf.clone(),
                        story_id: Some("S1".into()),
                        agent_id: format!("agent-{agent:02}"),
                        status: state,
                        output_summary: None,
                    })
                    .await?;
                // The returned state includes this very update.
                assert_eq!(
                    now.agent_statuses
                        .get(&format!("agent-{agent:02}"))
                        .map(|s| s.status),
                    Some(state)
                );
            }
            Ok::<(), bmad2pf_engine::store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    for status in [&a, &b] {
        let now = status.get(&wf).await?.ok_or("workflow missing")?;
        assert_eq!(now.agent_statuses.len(), AGENTS);
        assert!(
            now.agent_statuses
                .values()
                .all(|s| s.status == AgentState::Completed)
        );
        let history = status.history(&wf).await?;
        assert_eq!(history.len(), 2 * AGENTS);
        for agent in 0..AGENTS {
            let id = format!("agent-{agent:02}");
            let states: Vec<AgentState> = history
                .iter()
                .filter(|c| c.agent_id == id)
                .map(|c| c.status)
                .collect();
            assert_eq!(states, [AgentState::Running, AgentState::Completed], "{id}");
        }
    }
    Ok(())
}

// --------------------------------------------------------------- run records

fn record(run_id: &str, status: &str, agents: &[(&str, &str)]) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        status: status.into(),
        agents: agents
            .iter()
            .map(|(agent, hash)| {
                (
                    (*agent).to_string(),
                    AgentRecord {
                        input_hash: (*hash).to_string(),
                        outputs: vec![format!("S1__{agent}")],
                        finished_at: 1_700_000_000_000,
                    },
                )
            })
            .collect(),
        updated_at: 1_700_000_000_000,
    }
}

/// Claims are exclusive per (flow, story) and released only by their run;
/// records round-trip and are kept per (flow, story).
pub async fn runs_claims_and_records(runs: Arc<dyn RunStore>) -> TestResult {
    assert_eq!(runs.claim("planning", "S1", "run-a").await?, None);
    assert_eq!(
        runs.claim("planning", "S1", "run-b").await?,
        Some("run-a".to_string()),
        "a second run of the same pair names the active one"
    );
    // Other stories and other flows are independent.
    assert_eq!(runs.claim("planning", "S2", "run-c").await?, None);
    assert_eq!(runs.claim("brief", "S1", "run-d").await?, None);

    // Releasing with the wrong run id leaves the claim alone.
    runs.release("planning", "S1", "run-b").await?;
    assert_eq!(
        runs.claim("planning", "S1", "run-e").await?,
        Some("run-a".to_string())
    );
    runs.release("planning", "S1", "run-a").await?;
    assert_eq!(runs.claim("planning", "S1", "run-e").await?, None);
    // Releasing twice, or a pair nobody holds, is harmless.
    runs.release("planning", "S1", "run-e").await?;
    runs.release("planning", "S1", "run-e").await?;
    runs.release("never", "S9", "run-x").await?;
    assert_eq!(runs.claim("planning", "S1", "run-f").await?, None);
    // Only the holder renews.
    assert!(runs.renew("planning", "S1", "run-f").await?);
    assert!(!runs.renew("planning", "S1", "run-a").await?);
    assert!(!runs.renew("never", "S9", "run-x").await?);
    for (flow, story, run) in [
        ("planning", "S1", "run-f"),
        ("planning", "S2", "run-c"),
        ("brief", "S1", "run-d"),
    ] {
        runs.release(flow, story, run).await?;
    }

    assert_eq!(runs.load("planning", "S1").await?, None);
    let first = record("run-a", "pending", &[("analyst", "h1")]);
    runs.save("planning", "S1", &first).await?;
    assert_eq!(runs.load("planning", "S1").await?, Some(first));
    let second = record("run-e", "success", &[("analyst", "h1"), ("pm", "h2")]);
    runs.save("planning", "S1", &second).await?;
    assert_eq!(runs.load("planning", "S1").await?, Some(second));
    assert_eq!(runs.load("planning", "S2").await?, None);
    assert_eq!(runs.load("brief", "S1").await?, None);

    // A run ends by saving its record and releasing its claim together…
    assert_eq!(runs.claim("brief", "S1", "run-g").await?, None);
    let third = record("run-g", "success", &[("analyst", "h3")]);
    runs.finish("brief", "S1", "run-g", Some(&third)).await?;
    assert_eq!(runs.load("brief", "S1").await?, Some(third.clone()));
    // …or, when its work must be redone, by releasing it alone.
    assert_eq!(runs.claim("brief", "S1", "run-h").await?, None);
    runs.finish("brief", "S1", "run-h", None).await?;
    assert_eq!(runs.load("brief", "S1").await?, Some(third));
    assert_eq!(runs.claim("brief", "S1", "run-i").await?, None);
    runs.release("brief", "S1", "run-i").await?;
    Ok(())
}

/// 20 runs claim one (flow, story) at once through handles `a` and `b`:
/// exactly one wins and every other is told the winner; after the winner
/// releases (through the other handle), the pair is free.
pub async fn runs_one_claim_wins_across_handles(
    a: Arc<dyn RunStore>,
    b: Arc<dyn RunStore>,
) -> TestResult {
    const RUNS: usize = 20;
    let mut tasks = Vec::new();
    for run in 0..RUNS {
        let runs = Arc::clone(if run % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            let run_id = format!("run-{run:02}");
            let holder = runs.claim("planning", "contended", &run_id).await?;
            Ok::<_, bmad2pf_engine::store::StoreError>((run_id, holder))
        }));
    }
    let mut winners = Vec::new();
    let mut told = Vec::new();
    for task in tasks {
        match task.await?? {
            (run_id, None) => winners.push(run_id),
            (_, Some(holder)) => told.push(holder),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    let winner = winners.remove(0);
    assert_eq!(told.len(), RUNS - 1);
    assert!(told.iter().all(|holder| *holder == winner), "{told:?}");

    let (holder_side, other_side) = if winner[4..].parse::<usize>()? % 2 == 0 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(
        other_side
            .claim("planning", "contended", "run-late")
            .await?,
        Some(winner.clone())
    );
    holder_side
        .release("planning", "contended", &winner)
        .await?;
    assert_eq!(
        other_side
            .claim("planning", "contended", "run-late")
            .await?,
        None
    );
    other_side
        .release("planning", "contended", "run-late")
        .await?;
    Ok(())
}

fn stored_run(run_id: &str, flow: &str, story: &str, status: &str, created_at: u64) -> StoredRun {
    StoredRun {
        run_id: run_id.into(),
        flow: flow.into(),
        story_id: story.into(),
        status: status.into(),
        created_at,
        updated_at: created_at,
        finished_at: None,
        cancel_requested: false,
        body: format!("{{\"run_id\":\"{run_id}\"}}"),
    }
}

fn event(id: u64, name: &str) -> StoredEvent {
    StoredEvent {
        id,
        event: name.into(),
        data: format!("{{\"n\":{id}}}"),
    }
}

/// Run resources: creating one claims its (flow, story) and stores its
/// first events, and a refused one stores neither; updates move its
/// status (conditionally when asked); events replay in order from any id;
/// listings filter and page newest first; ending releases the claim and
/// saves the record; a cancel request survives later writes of the run;
/// a queued or running run without its claim is an orphan.
pub async fn runs_as_resources(runs: Arc<dyn RunStore>) -> TestResult {
    let base = 1_700_000_000_000;
    let first = stored_run("run-1", "planning", "S1", "queued", base);
    assert_eq!(
        runs.create_run(&first, &[event(1, "status")]).await?,
        Created::Stored
    );
    assert_eq!(runs.get_run("run-1").await?, Some(first.clone()));
    // The pair is claimed: a second run of it is refused and not stored.
    let second = stored_run("run-2", "planning", "S1", "queued", base + 1);
    assert_eq!(
        runs.create_run(&second, &[event(1, "status")]).await?,
        Created::Held("run-1".into())
    );
    assert_eq!(runs.get_run("run-2").await?, None);
    assert_eq!(runs.last_event_id("run-2").await?, None);
    // A stored run's id is refused, whatever its (flow, story), and the
    // pair is not claimed by the refused run.
    let same_id = stored_run("run-1", "planning", "S9", "queued", base + 2);
    assert_eq!(
        runs.create_run(&same_id, &[event(3, "status")]).await?,
        Created::IdTaken
    );
    assert_eq!(runs.get_run("run-1").await?, Some(first.clone()));
    assert_eq!(runs.claim("planning", "S9", "run-3").await?, None);
    runs.release("planning", "S9", "run-3").await?;
    assert_eq!(runs.get_run("run-none").await?, None);

    // Running, with events; a conditional update on a stale status loses.
    let mut running = first.clone();
    running.status = "running".into();
    running.updated_at = base + 5;
    runs.update_run(&running, &[event(2, "progress")]).await?;
    let mut stale = running.clone();
    stale.status = "error".into();
    assert!(
        !runs
            .update_run_if(&stale, "queued", &[event(9, "x")])
            .await?
    );
    assert_eq!(runs.get_run("run-1").await?, Some(running.clone()));
    runs.append_events("run-1", &[event(4, "result"), event(5, "progress")])
        .await?;
    let ids = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(runs.events_after("run-1", 0, 100).await?), [1, 2, 4, 5]);
    assert_eq!(ids(runs.events_after("run-1", 2, 100).await?), [4, 5]);
    assert_eq!(ids(runs.events_after("run-1", 3, 1).await?), [4]);
    assert_eq!(
        runs.events_after("run-1", 0, 100).await?[0],
        event(1, "status")
    );
    assert!(runs.events_after("run-none", 0, 100).await?.is_empty());
    assert_eq!(runs.last_event_id("run-1").await?, Some(5));
    assert_eq!(runs.last_event_id("run-none").await?, None);

    // A cancel request is kept across writes of the run.
    assert!(runs.request_cancel("run-1").await?);
    assert!(!runs.request_cancel("run-none").await?);
    runs.update_run(&running, &[]).await?;
    assert_eq!(
        runs.cancel_requested(&["run-1".into(), "run-none".into()])
            .await?,
        ["run-1"]
    );
    assert!(
        runs.get_run("run-1")
            .await?
            .is_some_and(|r| r.cancel_requested)
    );

    // Ending saves the record, releases the claim, keeps the events.
    let mut ended = running.clone();
    ended.status = "cancelled".into();
    ended.finished_at = Some(base + 9);
    ended.updated_at = base + 9;
    let rec = record("run-1", "cancelled", &[("analyst", "h1")]);
    assert!(
        runs.end_run(&ended, &[event(6, "done")], Some(&rec), None)
            .await?
    );
    assert_eq!(runs.load("planning", "S1").await?, Some(rec));
    let stored = runs.get_run("run-1").await?.ok_or("run-1 is stored")?;
    assert_eq!(
        (stored.status.as_str(), stored.finished_at),
        ("cancelled", Some(base + 9))
    );
    assert_eq!(ids(runs.events_after("run-1", 5, 100).await?), [6]);
    // An ended run is not written over by a process that does not know it
    // ended (one paused past its claim, which another process marked dead).
    let mut late = running.clone();
    late.status = "success".into();
    late.finished_at = Some(base + 20);
    runs.update_run(&late, &[event(7, "status")]).await?;
    assert!(!runs.end_run(&late, &[event(8, "done")], None, None).await?);
    let stored = runs.get_run("run-1").await?.ok_or("run-1 is stored")?;
    assert_eq!(stored.status, "cancelled");
    assert_eq!(ids(runs.events_after("run-1", 5, 100).await?), [6]);
    assert_eq!(runs.create_run(&second, &[]).await?, Created::Stored);

    // More runs, to list: newest first, filtered, paged by a cursor.
    for (i, (flow, story, status)) in [
        ("planning", "S2", "queued"),
        ("brief", "S1", "running"),
        ("brief", "S2", "success"),
    ]
    .into_iter()
    .enumerate()
    {
        let run = stored_run(
            &format!("run-{}", i + 3),
            flow,
            story,
            status,
            base + 10 + i as u64,
        );
        assert_eq!(runs.create_run(&run, &[]).await?, Created::Stored);
    }
    let listed = |query: RunQuery| {
        let runs = runs.clone();
        async move {
            Ok::<_, StoreError>(
                runs.list_runs(&query)
                    .await?
                    .into_iter()
                    .map(|r| r.run_id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    let all = RunQuery {
        limit: 10,
        ..RunQuery::default()
    };
    assert_eq!(
        listed(all.clone()).await?,
        ["run-5", "run-4", "run-3", "run-2", "run-1"]
    );
    let story = RunQuery {
        story_id: Some("S1".into()),
        ..all.clone()
    };
    assert_eq!(listed(story).await?, ["run-4", "run-2", "run-1"]);
    let flow_and_status = RunQuery {
        flow: Some("planning".into()),
        statuses: vec!["queued".into(), "cancelled".into()],
        ..all.clone()
    };
    assert_eq!(listed(flow_and_status).await?, ["run-3", "run-2", "run-1"]);
    let page = RunQuery {
        limit: 2,
        ..all.clone()
    };
    assert_eq!(listed(page).await?, ["run-5", "run-4"]);
    let next = RunQuery {
        limit: 2,
        before: Some((base + 11, "run-4".into())),
        ..all.clone()
    };
    assert_eq!(listed(next).await?, ["run-3", "run-2"]);

    // Queued and running runs that lost their claim are orphans.
    assert!(runs.orphaned_runs().await?.is_empty());
    runs.release("planning", "S2", "run-3").await?;
    runs.release("brief", "S1", "run-4").await?;
    let orphans: Vec<String> = runs
        .orphaned_runs()
        .await?
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(orphans, ["run-3", "run-4"]);
    Ok(())
}

/// A run waiting for a person: suspending stores its checkpoint and keeps
/// its claim (it is no orphan); resuming is a compare-and-set on
/// `interrupted` that only one caller wins; an end conditional on
/// `interrupted` loses to it; ending drops the checkpoint.
pub async fn runs_wait_for_a_person(runs: Arc<dyn RunStore>) -> TestResult {
    let base = 1_700_000_000_000;
    let run = stored_run("run-7", "planning", "S7", "queued", base);
    assert_eq!(runs.create_run(&run, &[]).await?, Created::Stored);
    let mut interrupted = run.clone();
    interrupted.status = "interrupted".into();
    runs.suspend_run(
        &interrupted,
        &[event(1, "interrupt")],
        "{\"step\":\"plan\"}",
    )
    .await?;
    assert_eq!(
        runs.checkpoint("run-7").await?.as_deref(),
        Some("{\"step\":\"plan\"}")
    );
    assert_eq!(runs.checkpoint("run-none").await?, None);
    let other = stored_run("run-8", "planning", "S7", "queued", base + 1);
    assert_eq!(
        runs.create_run(&other, &[]).await?,
        Created::Held("run-7".into())
    );
    assert!(runs.orphaned_runs().await?.is_empty());
    let listed = runs
        .list_runs(&RunQuery {
            statuses: vec!["interrupted".into()],
            limit: 10,
            ..RunQuery::default()
        })
        .await?;
    assert_eq!(listed.len(), 1);

    let mut queued = interrupted.clone();
    queued.status = "queued".into();
    assert!(runs.resume_run(&queued, &[event(2, "status")]).await?);
    assert!(!runs.resume_run(&queued, &[event(3, "status")]).await?);
    let mut cancelled = interrupted.clone();
    cancelled.status = "cancelled".into();
    assert!(
        !runs
            .end_run(&cancelled, &[event(3, "done")], None, Some("interrupted"))
            .await?
    );
    assert_eq!(
        runs.get_run("run-7").await?.map(|r| r.status),
        Some("queued".into())
    );
    assert!(
        runs.renew("planning", "S7", "run-7").await?,
        "the claim is still the run's"
    );

    let mut ended = queued.clone();
    ended.status = "success".into();
    ended.finished_at = Some(base + 9);
    assert!(
        runs.end_run(&ended, &[event(3, "done")], None, None)
            .await?
    );
    assert_eq!(runs.checkpoint("run-7").await?, None);
    assert_eq!(
        runs.create_run(&other, &[]).await?,
        Created::Stored,
        "the claim went with the end"
    );
    Ok(())
}

// ------------------------------------------------------- webhook deliveries

fn delivery(id: &str, run_id: &str, created_at: u64, due: u64) -> StoredDelivery {
    StoredDelivery {
        delivery_id: id.into(),
        run_id: run_id.into(),
        event: "run.finished".into(),
        url: "https://user:pw@hooks.example.com/in?token=t".into(),
        body: format!("{{\"delivery_id\":\"{id}\"}}"),
        state: DeliveryState::Pending,
        attempts: Vec::new(),
        created_at,
        next_attempt_at: Some(due),
    }
}

fn ids_of(deliveries: &[StoredDelivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.delivery_id.as_str()).collect()
}

/// Targets round-trip; a delivery is stored once per id; due deliveries
/// are claimed under a lease, which only its holder can record an attempt
/// under; delivered and failed ones are never due again; an expired lease
/// makes a delivery due again.
pub async fn deliveries_outbox(store: Arc<dyn DeliveryStore>) -> TestResult {
    let base = 1_700_000_000_000;
    let url = "https://user:pw@hooks.example.com/in?token=t";
    assert!(store.save_target("run-1", url).await?);
    assert_eq!(store.target("run-1").await?.as_deref(), Some(url));
    // A run id with a webhook is taken: another is not written over it.
    assert!(
        !store
            .save_target("run-1", "https://other.example.com/")
            .await?
    );
    assert_eq!(store.target("run-1").await?.as_deref(), Some(url));
    assert_eq!(store.target("run-none").await?, None);
    assert!(store.save_target("run-gone", url).await?);
    store.delete_target("run-gone").await?;
    assert_eq!(store.target("run-gone").await?, None);

    let first = delivery("dlv-1", "run-1", base, base);
    let second = delivery("dlv-2", "run-1", base + 1, base + 1);
    let other = delivery("dlv-3", "run-2", base + 2, base + 100);
    for d in [&first, &second, &other] {
        assert!(store.enqueue(d).await?);
    }
    let mut again = first.clone();
    again.body = "{}".into();
    assert!(!store.enqueue(&again).await?, "an id is stored once");
    assert_eq!(
        store.deliveries_of("run-1").await?,
        [first.clone(), second.clone()]
    );
    assert!(store.deliveries_of("run-none").await?.is_empty());

    // Due at base + 50: the first two, oldest due first, leased.
    let lease = base + 1_000;
    let claimed = store.claim_due(base + 50, lease, 10).await?;
    assert_eq!(ids_of(&claimed), ["dlv-1", "dlv-2"]);
    assert!(claimed.iter().all(|d| d.next_attempt_at == Some(lease)));
    assert!(store.claim_due(base + 50, lease, 10).await?.is_empty());
    assert_eq!(
        ids_of(&store.claim_due(base + 100, lease, 1).await?),
        ["dlv-3"]
    );

    // Delivered, under the lease only.
    let mut delivered = claimed[0].clone();
    delivered.state = DeliveryState::Delivered;
    delivered.next_attempt_at = None;
    delivered.attempts.push(DeliveryAttempt {
        at: base + 60,
        status_code: Some(200),
        error: None,
        duration_ms: 12,
    });
    assert!(!store.record_attempt(&delivered, lease + 1).await?);
    assert!(store.record_attempt(&delivered, lease).await?);
    // Retried later, with an attempt that got no answer.
    let mut retried = claimed[1].clone();
    retried.next_attempt_at = Some(base + 2_000);
    retried.attempts.push(DeliveryAttempt {
        at: base + 60,
        status_code: None,
        error: Some("timed out after 1 s".into()),
        duration_ms: 1_000,
    });
    assert!(store.record_attempt(&retried, lease).await?);
    assert_eq!(
        store.deliveries_of("run-1").await?,
        [delivered.clone(), retried.clone()]
    );

    // The lease of dlv-3 ends unrecorded (its sender died): due again,
    // and the late sender's record is refused.
    let reclaimed = store.claim_due(lease, lease + 5_000, 10).await?;
    assert_eq!(ids_of(&reclaimed), ["dlv-3"]);
    let mut late = other.clone();
    late.state = DeliveryState::Failed;
    late.next_attempt_at = None;
    assert!(!store.record_attempt(&late, lease).await?);
    assert!(store.record_attempt(&late, lease + 5_000).await?);

    // Only the retried one is ever due again, at its time.
    assert!(
        store
            .claim_due(base + 1_999, base + 9_000, 10)
            .await?
            .is_empty()
    );
    assert_eq!(
        ids_of(&store.claim_due(base + 2_000, base + 9_000, 10).await?),
        ["dlv-2"]
    );
    Ok(())
}

/// 20 deliveries due at once, claimed by 2 × 10 tasks through handles `a`
/// and `b` at the same time: each is claimed exactly once.
pub async fn deliveries_one_claim_per_lease(
    a: Arc<dyn DeliveryStore>,
    b: Arc<dyn DeliveryStore>,
) -> TestResult {
    let base = 1_700_000_000_000;
    for i in 0..20 {
        a.enqueue(&delivery(&format!("dlv-{i:02}"), "run-1", base, base))
            .await?;
    }
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.claim_due(base + 1, base + 60_000, 2).await
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await??.into_iter().map(|d| d.delivery_id));
    }
    claimed.sort();
    let expected: Vec<String> = (0..20).map(|i| format!("dlv-{i:02}")).collect();
    assert_eq!(claimed, expected);
    Ok(())
}

/// Retention (SPEC 8.8): only runs that ended before the cutoff are
/// found, oldest end first; deleting them removes the run, its events and
/// checkpoint, and their webhook and deliveries — and nothing of the
/// other runs, ended later or not ended at all.
pub async fn runs_past_their_retention(
    runs: Arc<dyn RunStore>,
    deliveries: Arc<dyn DeliveryStore>,
) -> TestResult {
    let base = 1_700_000_000_000;
    let cutoff = base + 10_000;
    let ended = |run_id: &str, story: &str, status: &str, finished_at: u64| {
        let run = stored_run(run_id, "planning", story, "queued", base);
        (run, finished_at, status.to_string())
    };
    let mut kept = Vec::new();
    for (mut run, finished_at, status) in [
        ended("run-old-2", "R1", "success", base + 2_000),
        ended("run-old-1", "R2", "error", base + 1_000),
        ended("run-recent", "R3", "success", cutoff + 1),
    ] {
        assert_eq!(runs.create_run(&run, &[]).await?, Created::Stored);
        runs.append_events(&run.run_id, &[event(1, "status")])
            .await?;
        run.status = status;
        run.finished_at = Some(finished_at);
        run.updated_at = finished_at;
        assert!(runs.end_run(&run, &[event(2, "done")], None, None).await?);
        assert!(
            deliveries
                .save_target(&run.run_id, "https://hooks.example.com/in")
                .await?
        );
        let id = format!("dlv-{}", run.run_id);
        assert!(
            deliveries
                .enqueue(&delivery(&id, &run.run_id, base, base))
                .await?
        );
        kept.push(run);
    }
    // Waiting for a person since long before the cutoff: never removed.
    let waiting = stored_run("run-waiting", "planning", "R4", "queued", base);
    assert_eq!(runs.create_run(&waiting, &[]).await?, Created::Stored);
    let mut interrupted = waiting.clone();
    interrupted.status = "interrupted".into();
    runs.suspend_run(&interrupted, &[event(1, "status")], "{}")
        .await?;

    let expired = runs.ended_before(cutoff, 10).await?;
    assert_eq!(expired, ["run-old-1", "run-old-2"], "oldest end first");
    assert_eq!(runs.ended_before(cutoff, 1).await?, ["run-old-1"]);
    deliveries.delete_of_runs(&expired).await?;
    runs.delete_runs(&expired).await?;

    for gone in &expired {
        assert_eq!(runs.get_run(gone).await?, None, "{gone}");
        assert!(runs.events_after(gone, 0, 10).await?.is_empty(), "{gone}");
        assert_eq!(deliveries.target(gone).await?, None, "{gone}");
        assert!(deliveries.deliveries_of(gone).await?.is_empty(), "{gone}");
    }
    let listed = runs
        .list_runs(&RunQuery {
            limit: 10,
            ..RunQuery::default()
        })
        .await?;
    let mut ids: Vec<&str> = listed.iter().map(|r| r.run_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["run-recent", "run-waiting"]);
    let success = RunQuery {
        statuses: vec!["success".into()],
        limit: 10,
        ..RunQuery::default()
    };
    assert_eq!(
        runs.list_runs(&success).await?.len(),
        1,
        "the index forgot the deleted run"
    );
    assert_eq!(runs.events_after("run-recent", 0, 10).await?.len(), 2);
    assert_eq!(deliveries.deliveries_of("run-recent").await?.len(), 1);
    assert!(runs.checkpoint("run-waiting").await?.is_some());
    assert!(runs.ended_before(cutoff, 10).await?.is_empty());
    // Deleting again, or runs that never were, is no error.
    runs.delete_runs(&expired).await?;
    deliveries
        .delete_of_runs(&["run-never".to_string()])
        .await?;
    Ok(())
}
