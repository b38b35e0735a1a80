//! Webhooks of runs that wait for a person (SPEC 8.3, 8.5): the engine,
//! sending as a server does, tells a local receiver `run.interrupted` with
//! the open question, and `run.finished` once the interrupted run is
//! cancelled — two deliveries, each delivered and shown on the run. The
//! model is a local OpenAI-compatible server playing a scripted question.

mod llm_common;

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{ProviderKind, RuntimeConfig};
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::{RunRequest, RunStatus};
use bmad2pf_engine::runs::{Cancelled, RunMode};
use llm_common::{Recorded, Reply, VendorServer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The receiver's requests once there are `n` (30 s at most).
async fn received(receiver: &VendorServer, n: usize) -> Result<Vec<Recorded>, String> {
    for _ in 0..300 {
        let requests = receiver.requests();
        if requests.len() >= n {
            return Ok(requests);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the receiver never got {n} requests"))
}

#[tokio::test]
async fn a_question_and_a_cancel_are_told_to_the_webhook() -> TestResult {
    let dir = tempfile::tempdir()?;
    let agents = dir.path().join("src/agents");
    std::fs::create_dir_all(&agents)?;
    std::fs::write(
        agents.join("pm.md"),
        "---\nid: pm\ncreates: [prd.md]\ntools: [ask_human]\n---\nYou are the PM.\n",
    )?;
    let call = json!({"id": "call_ask", "type": "function",
                      "function": {"name": "ask_human",
                                   "arguments": json!({"kind": "ask", "prompt": "Which platform?"}).to_string()}});
    let model = VendorServer::start(vec![Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                            "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    )])
    .await;
    let receiver = VendorServer::start(vec![
        Reply::json(200, json!({})),
        Reply::json(200, json!({})),
    ])
    .await;

    let mut config = RuntimeConfig::default();
    config.docs.path = dir.path().join("docs").display().to_string();
    config.memory.path = dir.path().join("memory").display().to_string();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = Some(format!("{}/v1", model.url));
    let bundle = compile(&dir.path().join("src"))
        .bundle
        .ok_or("the sources compile")?;
    let env = |name: &str| (name == "BMAD2PF_WEBHOOK_SECRET").then(|| "s3cret".to_string());
    let engine = Engine::start(Arc::new(bundle), config, &env).await?;
    engine.take_over_queued_runs();

    let request = RunRequest {
        flow: "default".into(),
        story_id: "asked".into(),
        input: "A todo app".into(),
        force: false,
        budget: None,
    };
    let webhook = format!("{}/hook", receiver.url);
    let (run, _) = engine
        .begin_run_with_webhook(request, RunMode::Interactive, Some(&webhook))
        .await?;
    let run_id = run.outcome.run_id;
    let waiting = engine.wait_run(&run_id, Duration::from_secs(10)).await?;
    assert_eq!(waiting.outcome.status, RunStatus::Interrupted);

    let first = received(&receiver, 1).await?;
    assert_eq!(first[0].header("x-bmad2pf-event"), Some("run.interrupted"));
    assert!(
        first[0]
            .header("x-bmad2pf-signature")
            .is_some_and(|s| s.starts_with("t=") && s.contains(",v1="))
    );
    let body = &first[0].body;
    assert_eq!(body["event"], "run.interrupted");
    assert_eq!(body["run"]["status"], "interrupted", "{body}");
    assert_eq!(body["interrupts"][0]["prompt"], "Which platform?", "{body}");
    assert_eq!(body["interrupts"][0]["status"], "open", "{body}");

    let Cancelled::Ended(cancelled) = engine.cancel_run(&run_id).await? else {
        return Err("an interrupted run is cancelled at once".into());
    };
    assert_eq!(cancelled.outcome.status, RunStatus::Cancelled);
    let both = received(&receiver, 2).await?;
    assert_eq!(both[1].header("x-bmad2pf-event"), Some("run.finished"));
    assert_eq!(both[1].body["run"]["status"], "cancelled");
    assert!(both[1].body.get("interrupts").is_none());
    assert_ne!(
        both[0].header("x-bmad2pf-delivery"),
        both[1].header("x-bmad2pf-delivery")
    );

    // Both delivered, as the run shows (the attempt is recorded just after
    // the answer arrives).
    for _ in 0..100 {
        let run = engine.get_run(&run_id).await?;
        let shown = run.webhook.ok_or("the run shows its webhook")?;
        let states: Vec<String> = shown
            .deliveries
            .iter()
            .map(|d| format!("{:?} {:?}", d.event, d.state))
            .collect();
        if states == ["RunInterrupted Delivered", "RunFinished Delivered"] {
            assert_eq!(shown.url, webhook);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the run never showed both deliveries delivered".into())
}
