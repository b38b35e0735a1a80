//! Usage and cost (SPEC 8.4) through the engine: the counts a local vendor
//! server reports, normalised, summed per agent and per execution, priced from
//! runtime.yaml's `pricing`, and counted per provider and model.

mod llm_common;

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{ModelPrice, ProviderKind, RuntimeConfig};
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::{
    ExecuteOutcome, ExecuteRequest, ExecuteStatus, RunOutcome, RunRequest, RunStatus,
};
use bmad2pf_engine::runs::RunMode;
use llm_common::{Reply, VendorServer};
use serde_json::json;
use std::sync::Arc;

const MODEL: &str = "gpt-4.1";

/// An OpenAI reply whose usage has cached prompt tokens and reasoning tokens.
fn reply(text: &str, prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Reply {
    Reply::json(
        200,
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4.1-2025-04-14",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion,
                         "prompt_tokens_details": {"cached_tokens": cached},
                         "completion_tokens_details": {"reasoning_tokens": reasoning}}}),
    )
}

fn price() -> ModelPrice {
    ModelPrice {
        input_per_mtok: 2.0,
        output_per_mtok: 8.0,
        cache_read_per_mtok: Some(0.5),
        cache_write_per_mtok: None,
    }
}

/// One agent `pm`, compiled from source in a temp dir, on `config` adjusted
/// to that dir; `server` (if any) plays OpenAI.
async fn engine(dir: &tempfile::TempDir, server: Option<&VendorServer>, pricing: bool) -> Engine {
    let src = dir.path().join("src/agents");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(
        src.join("pm.md"),
        "---\nid: pm\ncreates: [prd.md]\n---\nYou are the PM of story {{ story_id }}.\n",
    )
    .expect("write agent");
    let compiled = compile(&dir.path().join("src"));
    let bundle = compiled.bundle.expect("the agent compiles");
    let mut config = RuntimeConfig::default();
    config.docs.path = dir.path().join("docs").display().to_string();
    config.memory.path = dir.path().join("data").display().to_string();
    config.llm.model = MODEL.into();
    if let Some(server) = server {
        config.llm.provider = ProviderKind::Openai;
        config.llm.base_url = Some(format!("{}/v1", server.url));
    }
    if pricing {
        config.pricing.insert(MODEL.into(), price());
    }
    Engine::start(Arc::new(bundle), config, &|var: &str| {
        (var == "OPENAI_API_KEY").then(|| "sk-test".to_string())
    })
    .await
    .expect("engine starts")
}

/// Executes `pm` statelessly.
async fn execute_pm(engine: &Engine) -> ExecuteOutcome {
    let request = ExecuteRequest {
        instruction: "Write the PRD".into(),
        ..ExecuteRequest::default()
    };
    engine.execute("pm", request).await.expect("execute")
}

/// Runs the default flow (the agent `pm`) for `story`, which must succeed.
async fn run_pm(engine: &Engine, story: &str) -> RunOutcome {
    let request = RunRequest {
        flow: "default".into(),
        story_id: story.into(),
        input: "a todo app".into(),
        force: false,
        budget: None,
    };
    let run = engine
        .run(request, RunMode::Headless, None)
        .await
        .expect("run");
    assert_eq!(run.outcome.status, RunStatus::Success, "{run:#?}");
    run.outcome
}

fn cost(prompt: u64, cached: u64, completion: u64) -> f64 {
    ((prompt - cached) as f64 * 2.0 + cached as f64 * 0.5 + completion as f64 * 8.0) / 1e6
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() < 1e-12)
}

#[tokio::test]
async fn execute_counts_and_prices_every_call_repair_included() {
    let server = VendorServer::start(vec![
        reply("not json", 3000, 2048, 400, 300),
        reply(
            r#"{"content": "PRD.", "summary": "prd"}"#,
            3100,
            2048,
            200,
            120,
        ),
    ])
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&dir, Some(&server), true).await;
    let outcome = execute_pm(&engine).await;
    assert_eq!(outcome.status, ExecuteStatus::Completed, "{outcome:#?}");
    let usage = outcome.metadata.usage;
    assert_eq!(usage.calls, 2);
    assert_eq!((usage.input_tokens, usage.output_tokens), (6100, 600));
    assert_eq!(
        (
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens
        ),
        (4096, 0, 420)
    );
    let expected = cost(3000, 2048, 400) + cost(3100, 2048, 200);
    assert!(close(usage.cost_usd, expected), "{usage:?} vs {expected}");
    assert_eq!(usage.unpriced_calls, 0);

    let body = serde_json::to_value(&outcome.metadata).expect("serialises");
    assert_eq!(body["usage"]["cache_read_tokens"], 4096);
    assert!(body["usage"]["cost_usd"].is_f64(), "{body}");

    let stats = engine.stats();
    let by_model = &stats.llm_usage["openai"][MODEL];
    assert_eq!(*by_model, usage);
}

#[tokio::test]
async fn a_run_reports_each_agents_usage_and_leaves_unpriced_models_without_cost() {
    let server = VendorServer::start(vec![reply("# PRD\n\nThe plan.", 900, 0, 150, 0)]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&dir, Some(&server), false).await;
    let outcome = run_pm(&engine, "s1").await;
    let usage = outcome.results["pm"].usage;
    assert_eq!(
        (usage.calls, usage.input_tokens, usage.output_tokens),
        (1, 900, 150)
    );
    assert_eq!(usage.cost_usd, None, "no price for the model");
    assert_eq!(usage.unpriced_calls, 1);
    let body = serde_json::to_value(&outcome).expect("serialises");
    assert!(
        body["results"]["pm"]["usage"].get("cost_usd").is_none(),
        "{body}"
    );
}

#[tokio::test]
async fn the_mock_providers_estimates_are_never_priced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&dir, None, true).await;
    let outcome = execute_pm(&engine).await;
    let usage = outcome.metadata.usage;
    assert_eq!(usage.calls, 1);
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert_eq!(usage.cost_usd, None, "estimated counts have no cost");
    assert_eq!(usage.unpriced_calls, 1);
}

#[tokio::test]
async fn a_retried_agent_reports_the_calls_of_its_failed_attempts_too() {
    // Attempt 1: a tool round answers, then the vendor fails (retryable),
    // so the node runs the agent again; attempt 2 answers at once. Both
    // answered calls were paid for, the one of the failed attempt too.
    let tool_round = Reply::json(
        200,
        json!({"id": "chatcmpl-2", "object": "chat.completion", "model": MODEL,
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": null, "tool_calls": [{
                       "id": "call_1", "type": "function",
                       "function": {"name": "lookup", "arguments": "{}"}}]}}],
               "usage": {"prompt_tokens": 500, "completion_tokens": 20, "total_tokens": 520}}),
    );
    let outage = Reply::json(
        500,
        json!({"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}}),
    );
    let server = VendorServer::start(vec![
        tool_round,
        outage,
        reply("# PRD\n\nDone.", 700, 0, 90, 0),
    ])
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&dir, Some(&server), true).await;
    let outcome = run_pm(&engine, "s2").await;
    let usage = outcome.results["pm"].usage;
    assert_eq!(
        (usage.calls, usage.input_tokens, usage.output_tokens),
        (2, 500 + 700, 20 + 90)
    );
    assert!(close(usage.cost_usd, cost(500, 0, 20) + cost(700, 0, 90)));
    assert_eq!(server.requests().len(), 3);
}
