//! The shipped examples run end to end on the mock provider.

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{ReplayMode, RuntimeConfig};
use bmad2pf_engine::outcome::{RunRequest, RunStatus};
use bmad2pf_engine::runs::RunMode;
use bmad2pf_engine::{Engine, EngineError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// The example's runtime.yaml, with every store path moved into `root`
/// (the database in `root/memory`).
fn config_in(runtime: RuntimeConfig, root: &Path) -> RuntimeConfig {
    let mut config = runtime;
    config.docs.path = root.join("docs").display().to_string();
    config.memory.path = root.join("memory").display().to_string();
    config.replay.path = root.join("replay").display().to_string();
    config
}

async fn engine_for(name: &str, root: &Path, adjust: impl FnOnce(&mut RuntimeConfig)) -> Engine {
    let compiled = compile(&example(name));
    let problems: Vec<String> = compiled
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    let bundle = compiled
        .bundle
        .unwrap_or_else(|| panic!("{name} compiles: {problems:#?}"));
    let mut config = config_in(compiled.runtime, root);
    adjust(&mut config);
    Engine::start(Arc::new(bundle), config, &|_| None)
        .await
        .expect("engine starts")
}

fn request(flow: &str) -> RunRequest {
    RunRequest {
        flow: flow.into(),
        story_id: "demo".into(),
        input: "A small web app to share shopping lists".into(),
        force: false,
        budget: None,
    }
}

#[tokio::test]
async fn the_planning_example_runs_every_flow() {
    let root = tempfile::tempdir().expect("temp dir");
    let engine = engine_for("planning", root.path(), |_| {}).await;
    let flows: Vec<String> = engine.bundle().flows.keys().cloned().collect();
    assert!(!flows.is_empty());
    for flow in flows {
        let outcome = engine
            .run(request(&flow), RunMode::Headless, None)
            .await
            .expect("run")
            .outcome;
        assert_eq!(
            outcome.status,
            RunStatus::Success,
            "flow {flow}: {outcome:#?}"
        );
    }
}

#[tokio::test]
async fn the_bmad_example_runs_until_it_needs_a_human() {
    let root = tempfile::tempdir().expect("temp dir");
    let engine = engine_for("bmad-core", root.path(), |_| {}).await;
    let flows: Vec<String> = engine.bundle().flows.keys().cloned().collect();
    assert!(!flows.is_empty());
    for flow in flows {
        let outcome = engine
            .run(request(&flow), RunMode::Headless, None)
            .await
            .expect("run")
            .outcome;
        assert_ne!(
            outcome.status,
            RunStatus::Error,
            "flow {flow}: {outcome:#?}"
        );
        assert!(
            outcome.results.values().any(|r| r.document.is_some()),
            "flow {flow} wrote nothing"
        );
    }
}

#[tokio::test]
async fn a_replayed_run_reproduces_the_recorded_documents_byte_for_byte() {
    let root = tempfile::tempdir().expect("temp dir");
    let recorded = {
        let engine = engine_for("planning", root.path(), |c| {
            c.replay.mode = ReplayMode::Record
        })
        .await;
        let outcome = engine
            .run(request("planning"), RunMode::Headless, None)
            .await
            .expect("record run")
            .outcome;
        assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
        read_docs(&root.path().join("docs"))
    };
    std::fs::remove_dir_all(root.path().join("docs")).expect("clear docs");
    std::fs::remove_dir_all(root.path().join("memory")).expect("clear the database");
    let engine = engine_for("planning", root.path(), |c| {
        c.replay.mode = ReplayMode::Replay
    })
    .await;
    let outcome = engine
        .run(request("planning"), RunMode::Headless, None)
        .await
        .expect("replay run")
        .outcome;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(read_docs(&root.path().join("docs")), recorded);
    assert!(!recorded.is_empty());
}

fn read_docs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut docs: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("docs dir")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read doc"),
            )
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    docs.sort();
    docs
}

/// The limit `engine` puts on story ids for `flow`: what a 200-character
/// story is refused with, or 200 when it is not refused.
async fn story_limit_of(engine: &Engine, flow: &str) -> usize {
    let longest = RunRequest {
        story_id: "s".repeat(200),
        ..request(flow)
    };
    match engine.run(longest, RunMode::Headless, None).await {
        Err(EngineError::StoryIdTooLong { max_len, .. }) => max_len,
        Err(other) => panic!("flow {flow}: {other}"),
        Ok(_) => 200,
    }
}

#[tokio::test]
async fn story_ids_too_long_for_a_flows_documents_are_refused_before_the_run() {
    let root = tempfile::tempdir().expect("temp dir");
    let engine = engine_for("planning", root.path(), |_| {}).await;
    // 190 characters: valid on its own, but `{story}__project-brief` is 205.
    let refused = RunRequest {
        story_id: "s".repeat(190),
        ..request("brief")
    };
    let error = engine
        .run(refused, RunMode::Headless, None)
        .await
        .expect_err("refused");
    assert_eq!(error.code(), "invalid_id");
    let message = error.to_string();
    assert!(
        message.contains("document `project-brief`")
            && message.contains("200 characters")
            && message.contains("at most 185 characters"),
        "{message}"
    );
    // Nothing ran and nothing was written.
    assert!(engine.docs().list(None).await.expect("docs").is_empty());
    assert!(engine.status().list().await.expect("status").is_empty());
    // Readiness of an agent applies that agent's own limit.
    let pm = engine.readiness("pm", &"s".repeat(199)).await;
    assert!(
        matches!(&pm, Err(EngineError::StoryIdTooLong { of, .. }) if of == "agent `pm`"),
        "{pm:?}"
    );
}

#[tokio::test]
async fn a_story_exactly_at_a_flows_limit_runs() {
    for example_name in ["planning", "bmad-core"] {
        let root = tempfile::tempdir().expect("temp dir");
        let engine = engine_for(example_name, root.path(), |_| {}).await;
        let flows: Vec<String> = engine.bundle().flows.keys().cloned().collect();
        for flow in flows {
            let limit = story_limit_of(&engine, &flow).await;
            let at_limit = RunRequest {
                story_id: "s".repeat(limit),
                ..request(&flow)
            };
            let outcome = engine
                .run(at_limit, RunMode::Headless, None)
                .await
                .expect("runs")
                .outcome;
            assert_ne!(
                outcome.status,
                RunStatus::Error,
                "{example_name} flow {flow} at {limit}: {outcome:#?}"
            );
        }
        for agent in engine.bundle().agents.keys() {
            let limit = match engine.readiness(agent, &"s".repeat(200)).await {
                Err(EngineError::StoryIdTooLong { max_len, .. }) => max_len,
                Err(other) => panic!("agent {agent}: {other}"),
                Ok(_) => 200,
            };
            let ready = engine.readiness(agent, &"s".repeat(limit)).await;
            assert!(
                ready.is_ok(),
                "{example_name} agent {agent} at {limit}: {ready:?}"
            );
        }
    }
}
