//! End-to-end runs of the engine on small projects: compiled from real
//! source files, executed on the mock provider (or a local OpenAI-compatible
//! server playing scripted replies), with the embedded store in a temp directory.

mod llm_common;

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{OnMissingDoc, ProviderKind, RuntimeConfig};
use bmad2pf_engine::outcome::{
    AgentRunStatus, ExecuteRequest, ExecuteStatus, RunEvent, RunRequest, RunStatus,
};
use bmad2pf_engine::runs::{Cancelled, Run, RunMode};
use bmad2pf_engine::store::{DocId, MemoryKey, MemoryScope, StoreError, WorkflowId};
use bmad2pf_engine::{Engine, EngineError};
use llm_common::{Reply, VendorServer};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// A project written to a temp dir, and a place for its stores.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join("src").join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write source");
        }
        Self { dir }
    }

    fn config(&self) -> RuntimeConfig {
        let root = self.dir.path();
        let mut config = RuntimeConfig::default();
        config.docs.path = root.join("docs").display().to_string();
        config.memory.path = root.join("memory").display().to_string();
        config.replay.path = root.join("replay").display().to_string();
        config
    }

    async fn engine_with(&self, config: RuntimeConfig) -> Engine {
        let compiled = compile(&self.dir.path().join("src"));
        let problems: Vec<String> = compiled
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        let bundle = compiled
            .bundle
            .unwrap_or_else(|| panic!("sources compile: {problems:#?}"));
        Engine::start(Arc::new(bundle), config, &|_| None)
            .await
            .expect("engine starts")
    }

    async fn engine(&self) -> Engine {
        self.engine_with(self.config()).await
    }
}

fn agent(id: &str, front: &str) -> (String, String) {
    (
        format!("agents/{id}.md"),
        format!("---\nid: {id}\n{front}---\nYou are {id}. Story {{{{ story_id }}}}.\n"),
    )
}

fn files(agents: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = agents.to_vec();
    all.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    all
}

fn project(all: &[(String, String)]) -> Project {
    let borrowed: Vec<(&str, &str)> = all.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    Project::new(&borrowed)
}

fn run(flow: &str, story: &str) -> RunRequest {
    RunRequest {
        flow: flow.into(),
        story_id: story.into(),
        input: "Build a todo app".into(),
        force: false,
        budget: None,
    }
}

async fn doc(engine: &Engine, id: &str) -> Option<String> {
    let id = DocId::parse(id).expect("doc id");
    engine
        .docs()
        .get(&id)
        .await
        .expect("doc store")
        .map(|d| d.content)
}

/// analyst → (pm ‖ architect) → po, documents handed along.
fn planning() -> Project {
    let agents = [
        agent(
            "analyst",
            "creates: [brief.md]\nmemory_scope: shared:plan\n",
        ),
        agent(
            "pm",
            "requires: [brief.md]\ncreates: [prd.md]\nparallel: true\n",
        ),
        agent(
            "architect",
            "requires: [brief.md]\ncreates: [arch.md]\nparallel: true\n",
        ),
        agent("po", "requires: [prd.md, arch.md]\n"),
    ];
    project(&files(&agents, &[]))
}

#[tokio::test]
async fn a_derived_flow_runs_end_to_end_and_writes_documents() {
    let project = planning();
    let engine = project.engine().await;
    let outcome = engine
        .run(run("default", "s1"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    for agent in ["analyst", "pm", "architect", "po"] {
        assert_eq!(
            outcome.results[agent].status,
            AgentRunStatus::Completed,
            "{agent}"
        );
        assert!(outcome.results[agent].usage.output_tokens > 0);
    }
    let brief = doc(&engine, "s1__brief").await.expect("brief written");
    assert!(brief.starts_with("mock reply"), "{brief}");
    assert!(doc(&engine, "s1__prd").await.is_some());
    assert!(doc(&engine, "s1__arch").await.is_some());
    assert_eq!(outcome.results["po"].document.as_deref(), Some("s1__po"));
    assert!(doc(&engine, "s1__po").await.is_some());
    // Memory was flushed at the end, in the analyst's shared scope.
    let scope = MemoryScope::parse("shared:plan").expect("scope");
    let key = MemoryKey::parse("analyst.last_output").expect("key");
    let last = engine
        .memory()
        .get(&scope, &key)
        .await
        .expect("memory")
        .expect("set");
    assert_eq!(last["documents"], json!(["s1__brief"]));
    // The orchestration status recorded every agent.
    let wf = WorkflowId::parse("default__s1").expect("wf id");
    let status = engine
        .status()
        .get(&wf)
        .await
        .expect("status")
        .expect("recorded");
    assert_eq!(status.agent_statuses.len(), 4);
}

#[tokio::test]
async fn a_second_run_skips_up_to_date_agents_unless_forced() {
    let project = planning();
    let engine = project.engine().await;
    engine
        .run(run("default", "s1"), RunMode::Headless, None)
        .await
        .expect("first run");
    let again = engine
        .run(run("default", "s1"), RunMode::Headless, None)
        .await
        .expect("second run")
        .outcome;
    assert_eq!(again.status, RunStatus::Success);
    assert!(
        again
            .results
            .values()
            .all(|r| r.status == AgentRunStatus::Skipped),
        "{again:#?}"
    );
    let forced = engine
        .run(
            RunRequest {
                force: true,
                budget: None,
                ..run("default", "s1")
            },
            RunMode::Headless,
            None,
        )
        .await
        .expect("forced run")
        .outcome;
    assert!(
        forced
            .results
            .values()
            .all(|r| r.status == AgentRunStatus::Completed)
    );
    // A changed input re-runs the agents that read it.
    let changed = engine
        .run(
            RunRequest {
                input: "Build a calendar".into(),
                ..run("default", "s1")
            },
            RunMode::Headless,
            None,
        )
        .await
        .expect("changed input")
        .outcome;
    assert_eq!(
        changed.results["analyst"].status,
        AgentRunStatus::Completed,
        "{changed:#?}"
    );
}

#[tokio::test]
async fn missing_documents_make_the_run_pending_until_they_are_put() {
    let agents = [agent("writer", "requires: [spec.md]\n")];
    let project = project(&files(&agents, &[]));
    let engine = project.engine().await;
    let pending = engine
        .run(run("default", "s2"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(pending.status, RunStatus::Pending);
    assert_eq!(pending.pending_docs, vec!["spec.md".to_string()]);
    assert_eq!(pending.results["writer"].status, AgentRunStatus::Waiting);
    assert!(doc(&engine, "s2__writer").await.is_none());

    let spec = DocId::parse("s2__spec.md").expect("id");
    engine
        .docs()
        .put(&spec, "# Spec\n", bmad2pf_engine::store::DocWriter::Api)
        .await
        .expect("put");
    let done = engine
        .run(run("default", "s2"), RunMode::Headless, None)
        .await
        .expect("rerun")
        .outcome;
    assert_eq!(done.status, RunStatus::Success, "{done:#?}");
    assert!(doc(&engine, "s2__writer").await.is_some());
}

#[tokio::test]
async fn on_missing_doc_error_fails_the_agent_and_skip_runs_it() {
    let agents = [agent("writer", "requires: [spec.md]\n")];
    let project = project(&files(&agents, &[]));
    let mut config = project.config();
    config.on_missing_doc = OnMissingDoc::Error;
    let engine = project.engine_with(config.clone()).await;
    let failed = engine
        .run(run("default", "s3"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(failed.status, RunStatus::Error);
    assert!(
        failed.errors["writer"].starts_with("dependency_missing"),
        "{failed:#?}"
    );

    config.on_missing_doc = OnMissingDoc::Skip;
    let engine = project.engine_with(config).await;
    let ran = engine
        .run(run("default", "s3"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(ran.status, RunStatus::Success, "{ran:#?}");
}

#[tokio::test]
async fn an_llm_outage_is_never_a_success() {
    let agents = [
        agent("first", "retry_count: 0\n"),
        agent("second", "wait_for: {agents: [first]}\n"),
    ];
    let project = project(&files(&agents, &[]));
    let mut config = project.config();
    config.llm.mock.failure_rate = 1.0;
    let engine = project.engine_with(config).await;
    let outcome = engine
        .run(run("default", "s4"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Error);
    assert_eq!(outcome.error_code.as_deref(), Some("agent_failed"));
    assert_eq!(outcome.results["first"].status, AgentRunStatus::Failed);
    assert!(
        outcome.errors["first"].contains("simulated failure"),
        "{outcome:#?}"
    );
    // `stop` (the default) halts the run: the second agent never ran.
    assert!(!outcome.results.contains_key("second"));
    assert!(doc(&engine, "s4__first").await.is_none());
}

#[tokio::test]
async fn continue_and_fallback_go_on_but_still_report_the_failure() {
    let agents = [
        agent("flaky", "retry_count: 0\nerror_handling: fallback\n"),
        agent(
            "careless",
            "retry_count: 0\nerror_handling: continue\nwait_for: {agents: [flaky]}\n",
        ),
    ];
    let project = project(&files(&agents, &[]));
    let mut config = project.config();
    config.llm.mock.failure_rate = 1.0;
    let engine = project.engine_with(config).await;
    let outcome = engine
        .run(run("default", "s5"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
    assert_eq!(outcome.results["flaky"].status, AgentRunStatus::Fallback);
    let placeholder = doc(&engine, "s5__flaky")
        .await
        .expect("placeholder written");
    assert!(placeholder.contains("fallback placeholder"));
    assert_eq!(outcome.results["careless"].status, AgentRunStatus::Failed);
    assert!(outcome.errors.contains_key("careless"));
}

fn openai_reply(text: &str) -> Reply {
    openai_reply_ending(text, "stop")
}

/// A whole chat completion whose choice ended for `finish_reason`.
fn openai_reply_ending(text: &str, finish_reason: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": "c1", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    )
}

#[tokio::test]
async fn a_reply_cut_off_at_max_tokens_fails_the_agent_instead_of_becoming_its_document() {
    let project = project(&files(
        &[agent(
            "pm",
            "retry_count: 0
",
        )],
        &[],
    ));
    let server = VendorServer::start(vec![openai_reply_ending(
        "# PRD\n\n## Goals\n\nThe app lets",
        "length",
    )])
    .await;
    let mut config = scripted_config(&project, &server);
    config.llm.max_tokens = 12;
    let engine = project.engine_with(config).await;
    let outcome = engine
        .run(run("default", "cut"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
    assert_eq!(outcome.results["pm"].status, AgentRunStatus::Failed);
    let error = &outcome.errors["pm"];
    assert!(
        error.starts_with("output_truncated: ") && error.contains("(12 tokens)"),
        "{error}"
    );
    assert!(doc(&engine, "cut__pm").await.is_none(), "no half document");
}

fn scripted_config(project: &Project, server: &VendorServer) -> RuntimeConfig {
    let mut config = project.config();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = Some(format!("{}/v1", server.url));
    config
}

fn review_loop(max_visits: u32) -> Project {
    let agents = [
        agent("pm", "creates: [prd.md]\nreads: [review.md]\n"),
        agent(
            "po",
            "requires: [prd.md]\ncreates: [review.md]\ncommands:\n  - \"*approve\"\n  - \"*revise\"\n",
        ),
    ];
    let workflow = format!(
        "flows:\n  plan:\n    max_visits: {max_visits}\n    steps:\n      - id: write\n        agent: pm\n      - id: review\n        agent: po\n        next: {{\"*revise\": write, \"*approve\": end}}\n      - id: never\n        agent: pm\n"
    );
    let mut all = files(&agents, &[]);
    all.push(("workflow.yaml".into(), workflow));
    project(&all)
}

#[tokio::test]
async fn actions_route_between_steps() {
    let project = review_loop(10);
    let server = VendorServer::start(vec![
        openai_reply("PRD v1"),
        openai_reply("Needs work.\nACTION: *revise"),
        openai_reply("PRD v2"),
        openai_reply("Good.\nACTION: *approve"),
    ])
    .await;
    let engine = project
        .engine_with(scripted_config(&project, &server))
        .await;
    let outcome = engine
        .run(run("plan", "s6"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(
        server.requests().len(),
        4,
        "write, review, write again, review again — then end"
    );
    assert_eq!(doc(&engine, "s6__prd").await.as_deref(), Some("PRD v2"));
    // The ACTION line is routing, not content.
    assert_eq!(doc(&engine, "s6__review").await.as_deref(), Some("Good.\n"));
}

#[tokio::test]
async fn a_loop_stops_at_max_visits_with_loop_limit() {
    let project = review_loop(2);
    let replies = (0..4)
        .flat_map(|i| {
            [
                openai_reply(&format!("PRD v{i}")),
                openai_reply(&format!("Again {i}\nACTION: *revise")),
            ]
        })
        .collect();
    let server = VendorServer::start(replies).await;
    let engine = project
        .engine_with(scripted_config(&project, &server))
        .await;
    let outcome = engine
        .run(run("plan", "s7"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Error);
    assert_eq!(outcome.error_code.as_deref(), Some("loop_limit"));
    assert!(outcome.errors["run"].contains("`write`"), "{outcome:#?}");
    assert_eq!(
        server.requests().len(),
        4,
        "write and review ran twice each"
    );
}

#[tokio::test]
async fn one_run_per_flow_and_story_at_a_time() {
    let agents = [agent("slow", "")];
    let project = project(&files(&agents, &[]));
    let mut config = project.config();
    config.llm.mock.latency_ms = 300;
    let engine = Arc::new(project.engine_with(config).await);
    let first = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .run(run("default", "s8"), RunMode::Headless, None)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let refused = engine
        .run(run("default", "s8"), RunMode::Headless, None)
        .await;
    let other_story = engine
        .run(run("default", "s9"), RunMode::Headless, None)
        .await
        .expect("other story runs")
        .outcome;
    let first = first.await.expect("join").expect("first run").outcome;
    match refused {
        Err(EngineError::RunInProgress { run_id, status }) => {
            assert_eq!(run_id, first.run_id);
            assert_eq!(status.as_deref(), Some("running"));
        }
        other => panic!("expected run_in_progress, got {other:?}"),
    }
    assert_eq!(other_story.status, RunStatus::Success);
    // The claim is released: the same pair may run again.
    engine
        .run(run("default", "s8"), RunMode::Headless, None)
        .await
        .expect("third run");
}

#[tokio::test]
async fn streaming_callers_get_progress_tokens_and_results_in_order() {
    let project = planning();
    let engine = project.engine().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = engine
        .run(run("default", "s10"), RunMode::Headless, Some(tx))
        .await
        .expect("run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Success);
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    let position = |wanted: &dyn Fn(&RunEvent) -> bool| events.iter().position(wanted);
    let started = position(
        &|e| matches!(e, RunEvent::Progress { agent, status, .. } if agent == "analyst" && *status == bmad2pf_engine::outcome::ProgressStatus::Started),
    );
    let token = position(&|e| matches!(e, RunEvent::Token { agent, .. } if agent == "analyst"));
    let result = position(&|e| matches!(e, RunEvent::Result { agent, .. } if agent == "analyst"));
    let po_started = position(&|e| matches!(e, RunEvent::Progress { agent, .. } if agent == "po"));
    assert!(
        started < token && token < result && result < po_started,
        "{events:#?}"
    );
    assert!(started.is_some());
}

#[tokio::test]
async fn stateless_execute_asks_for_missing_inputs_without_calling_the_llm() {
    let agents = [agent("pm", "requires: [brief.md]\n")];
    let project = project(&files(&agents, &[]));
    let mut config = project.config();
    config.llm.mock.failure_rate = 1.0; // any LLM call would fail
    let engine = project.engine_with(config).await;
    let request = ExecuteRequest {
        instruction: "Write the PRD".into(),
        ..ExecuteRequest::default()
    };
    let answer = engine
        .execute("pm", request.clone())
        .await
        .expect("execute");
    assert_eq!(answer.status, ExecuteStatus::NeedsInput);
    assert_eq!(answer.missing_inputs, vec!["brief.md".to_string()]);
    assert_eq!(engine.stats().llm_calls, 0);

    let mut with_doc = request;
    with_doc
        .documents
        .insert("brief.md".into(), "# Brief".into());
    let failed = engine.execute("pm", with_doc).await.expect("execute");
    assert_eq!(
        failed.status,
        ExecuteStatus::Failed,
        "an outage is not a completion"
    );
    assert!(
        failed
            .metadata
            .error
            .as_deref()
            .unwrap_or("")
            .contains("simulated failure")
    );
    assert!(matches!(
        engine.execute("nobody", ExecuteRequest::default()).await,
        Err(EngineError::UnknownAgent(_))
    ));
}

#[tokio::test]
async fn stateless_execute_validates_structured_output_with_one_repair() {
    let agents = [agent(
        "scorer",
        "output_schema: {type: object, required: [score], properties: {score: {type: integer}}}\n",
    )];
    let project = project(&files(&agents, &[]));
    let server = VendorServer::start(vec![
        openai_reply(r#"{"content": "c", "summary": "s", "data": {"score": "high"}}"#),
        openai_reply(r#"{"content": "Scored.", "summary": "score 4", "data": {"score": 4}}"#),
        openai_reply("not json at all"),
        openai_reply("still not json"),
    ])
    .await;
    let engine = project
        .engine_with(scripted_config(&project, &server))
        .await;
    let request = ExecuteRequest {
        instruction: "Score it".into(),
        execution_id: Some("e-1".into()),
        ..ExecuteRequest::default()
    };
    let repaired = engine
        .execute("scorer", request.clone())
        .await
        .expect("execute");
    assert_eq!(repaired.status, ExecuteStatus::Completed, "{repaired:#?}");
    assert_eq!(repaired.content, "Scored.");
    assert_eq!(repaired.metadata.execution_id, "e-1");
    assert_eq!(repaired.metadata.provider, "openai_compatible");
    let second = server.requests()[1].body.clone();
    let repair_text = second["messages"].to_string();
    assert!(
        repair_text.contains("score"),
        "the repair message names the problem: {repair_text}"
    );

    let failed = engine.execute("scorer", request).await.expect("execute");
    assert_eq!(failed.status, ExecuteStatus::Failed);
    assert!(failed.metadata.error.is_some());
}

#[tokio::test]
async fn stateless_execute_hashes_the_same_request_the_same_whatever_its_key_order() {
    let agents = [agent("pm", "")];
    let project = project(&files(&agents, &[]));
    let engine = project.engine().await;
    let request_with = |context: &str| -> ExecuteRequest {
        let body = format!(r#"{{"instruction": "Write the PRD", "context_data": {context}}}"#);
        serde_json::from_str(&body).expect("request")
    };
    let ordered = request_with(r#"{"a": 1, "b": {"x": true, "y": [1, {"c": 0, "d": 1}]}}"#);
    let reordered = request_with(r#"{"b": {"y": [1, {"d": 1, "c": 0}], "x": true}, "a": 1}"#);
    let first = engine.execute("pm", ordered).await.expect("execute");
    let second = engine.execute("pm", reordered).await.expect("execute");
    assert_eq!(first.metadata.input_hash, second.metadata.input_hash);
    let other = request_with(r#"{"a": 2}"#);
    let third = engine.execute("pm", other).await.expect("execute");
    assert_ne!(first.metadata.input_hash, third.metadata.input_hash);
}

#[tokio::test]
async fn readiness_lists_missing_documents_and_agents() {
    let project = planning();
    let engine = project.engine().await;
    let before = engine.readiness("pm", "s11").await.expect("ready");
    assert!(!before.ready);
    assert_eq!(before.missing_docs, vec!["brief.md".to_string()]);
    engine
        .run(run("default", "s11"), RunMode::Headless, None)
        .await
        .expect("run");
    let after = engine.readiness("pm", "s11").await.expect("ready");
    assert!(after.ready);
    assert!(after.last_execution.is_some());
}

#[tokio::test]
async fn unknown_flows_and_bad_story_ids_are_request_errors() {
    let project = planning();
    let engine = project.engine().await;
    assert!(matches!(
        engine.run(run("nope", "s"), RunMode::Headless, None).await,
        Err(EngineError::UnknownFlow(_))
    ));
    assert!(matches!(
        engine
            .run(run("default", "../etc"), RunMode::Headless, None)
            .await,
        Err(EngineError::Store(StoreError::InvalidId(_)))
    ));
    assert!(matches!(
        engine.readiness("pm", "..").await,
        Err(EngineError::Store(StoreError::InvalidId(_)))
    ));
    assert!(!Path::new("/etc/__brief.md").exists());
}

/// A caller that goes away does not stop its run (it finishes and
/// writes its documents); a cancel does, at once, and gives the claim back.
#[tokio::test]
async fn a_run_outlives_its_caller_and_a_cancel_gives_its_claim_back() {
    let agents = [agent("slow", "")];
    let project = project(&files(&agents, &[]));
    let mut config = project.config();
    config.llm.mock.latency_ms = 5_000;
    let engine = Arc::new(project.engine_with(config).await);
    let caller = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .run(run("default", "s12"), RunMode::Headless, None)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let Err(EngineError::RunInProgress { run_id, .. }) = engine
        .run(run("default", "s12"), RunMode::Headless, None)
        .await
    else {
        panic!("the first run holds the story");
    };
    caller.abort();
    let _ = caller.await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let running = engine.get_run(&run_id).await.expect("stored");
    assert_eq!(running.outcome.status, RunStatus::Running, "{running:#?}");
    assert_eq!(running.running_agents, ["slow"], "{running:#?}");

    let cancelled = engine.cancel_run(&run_id).await.expect("cancel");
    assert!(
        matches!(cancelled, Cancelled::Requested { .. }),
        "{cancelled:?}"
    );
    let ended = engine
        .wait_run(&run_id, std::time::Duration::from_secs(2))
        .await
        .expect("wait");
    assert_eq!(ended.outcome.status, RunStatus::Cancelled, "{ended:#?}");
    // The agent that was running ended too, and said so.
    let slow = ended.outcome.results.get("slow").map(|r| r.status);
    assert_eq!(slow, Some(AgentRunStatus::Cancelled), "{ended:#?}");
    let mut events = engine.follow_run(&run_id, 0).await.expect("events");
    let mut progress = Vec::new();
    while let Some(event) = events.recv().await {
        if event.event == "progress" {
            let data: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
            progress.push(format!("{} {}", data["agent"], data["status"]));
        }
    }
    assert_eq!(progress, [r#""slow" "started""#, r#""slow" "cancelled""#]);
    // Cancelling again answers the run; the story is free.
    assert!(matches!(
        engine.cancel_run(&run_id).await,
        Ok(Cancelled::Ended(_))
    ));
    let probe = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        engine.submit(run("default", "s12"), RunMode::Headless),
    )
    .await;
    assert!(matches!(probe, Ok(Ok(_))), "{probe:?}");
}

/// SPEC 8.1: a run cut off (kill -9) keeps what finished, so running it
/// again redoes only what was in flight: each agent that completes saves
/// the run record (after its memory), not only the run's end.
#[tokio::test]
async fn what_completed_is_recorded_before_the_run_ends() {
    let agents = [
        agent(
            "writer",
            "creates: [draft.md]\nmemory_scope: shared:notes\n",
        ),
        agent("editor", "requires: [draft.md]\n"),
    ];
    let mut all = files(&agents, &[]);
    all.push((
        "workflow.yaml".into(),
        "flows:\n  edit: {steps: [{agent: writer}, {agent: editor}]}\n".into(),
    ));
    let project = project(&all);
    let server = VendorServer::start(vec![openai_reply("The draft"), Reply::Hang]).await;
    let engine = project
        .engine_with(scripted_config(&project, &server))
        .await;
    let started = engine.submit(run("edit", "s30"), RunMode::Headless).await;
    let run_id = started.expect("submitted").outcome.run_id;
    // The editor talks with its model, which never answers.
    while server.requests().len() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let stores = engine.stores();
    let record = stores.runs.load("edit", "s30").await.expect("store");
    let record = record.expect("the record is saved while the run still runs");
    assert_eq!(record.run_id, run_id);
    assert_eq!(
        record.agents.keys().collect::<Vec<_>>(),
        ["writer"],
        "{record:?}"
    );
    let scope = MemoryScope::parse("shared:notes").expect("scope");
    let keys = stores.memory.keys(&scope).await.expect("memory");
    assert!(!keys.is_empty(), "the writer's memory is written first");
    engine.cancel_run(&run_id).await.expect("cancel");
}

/// A run marked ended by another process while this one still ran it
/// (this process was paused past its claim): that ending stands, and is
/// what this process answers, not the outcome it could not store.
#[tokio::test]
async fn a_run_ended_elsewhere_is_answered_as_it_was_ended() {
    let project = project(&files(&[agent("slow", "")], &[]));
    let mut config = project.config();
    config.llm.mock.latency_ms = 300;
    let engine = project.engine_with(config).await;
    // Answered as `bmad2pf run` is: by the process that runs it.
    let (started, mut end) = engine
        .begin_run(run("default", "s31"), RunMode::Headless, None)
        .await
        .expect("started");
    let run_id = started.outcome.run_id;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let runs = engine.stores().runs;
    let mut stored = runs.get_run(&run_id).await.expect("store").expect("stored");
    // As another process's sweep marks it.
    stored.status = "error".into();
    stored.finished_at = Some(stored.updated_at + 1);
    let mut marked = Run::from_stored(&stored).expect("readable");
    marked.outcome.status = RunStatus::Error;
    marked.outcome.error_code = Some("interrupted_by_restart".into());
    stored.body = serde_json::to_string(&marked).expect("JSON");
    let swept = runs.update_run_if(&stored, "running", &[]).await;
    assert_eq!(swept.ok(), Some(true));
    let answered = end.wait().await.expect("answered");
    assert_eq!(answered.outcome.status, RunStatus::Error, "{answered:#?}");
    assert_eq!(
        answered.outcome.error_code.as_deref(),
        Some("interrupted_by_restart")
    );
    let kept = runs.get_run(&run_id).await.expect("store").expect("stored");
    assert_eq!(kept.status, "error");
}

#[tokio::test]
async fn a_damaged_run_is_left_out_of_the_listing_and_hides_no_other() {
    let project = project(&files(&[agent("solo", "")], &[]));
    let config = project.config();
    let engine = project.engine_with(config.clone()).await;
    let mut ids = Vec::new();
    for story in ["d1", "d2"] {
        let ran = engine
            .run(run("default", story), RunMode::Headless, None)
            .await;
        ids.push(ran.expect("run").outcome.run_id);
    }
    let database = Path::new(&config.memory.path).join(bmad2pf_engine::store::DATABASE_FILE);
    let raw = rusqlite::Connection::open(database).expect("open");
    let damaged = raw.execute(
        "UPDATE runs SET body = 'not JSON' WHERE run_id = ?1",
        [&ids[0]],
    );
    assert_eq!(damaged.ok(), Some(1));
    let filter = bmad2pf_engine::runs::RunFilter {
        limit: 10,
        ..Default::default()
    };
    let listed = engine.list_runs(filter).await.expect("list").runs;
    let listed: Vec<&str> = listed.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(listed, [ids[1].as_str()]);
    // Read by id, the damaged one says what is wrong with it.
    let read = engine.get_run(&ids[0]).await.err().map(|e| e.code());
    assert_eq!(read, Some("storage_corrupt"));
}

#[tokio::test]
async fn runtime_retries_apply_unless_the_agent_sets_its_own() {
    let agents = [agent("plain", ""), agent("stubborn", "retry_count: 1\n")];
    let mut all = files(&agents, &[]);
    all.push((
        "workflow.yaml".into(),
        "flows:\n  plain: {steps: [{agent: plain}]}\n  stubborn: {steps: [{agent: stubborn}]}\n"
            .into(),
    ));
    let project = project(&all);
    let failing = || {
        Reply::json(
            500,
            json!({"error": {"message": "boom", "type": "server_error"}}),
        )
    };
    let server = VendorServer::start(vec![failing(), failing(), openai_reply("second try")]).await;
    let mut config = scripted_config(&project, &server);
    config.llm.max_retries = 0;
    let engine = project.engine_with(config).await;
    // llm.max_retries = 0 and the agent says nothing: one attempt, then failure.
    let plain = engine
        .run(run("plain", "s13"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(plain.status, RunStatus::Error, "{plain:#?}");
    assert_eq!(server.requests().len(), 1);
    // The agent's own retry_count wins: a second attempt succeeds.
    let stubborn = engine
        .run(run("stubborn", "s13"), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome;
    assert_eq!(stubborn.status, RunStatus::Success, "{stubborn:#?}");
    assert_eq!(server.requests().len(), 3);
}
