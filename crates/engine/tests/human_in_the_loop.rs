//! Runs whose agents ask a person (SPEC 8.3), on a local OpenAI-compatible
//! server playing scripted replies: the run stops `interrupted`, a resume
//! continues the same conversation with the answer as the tool's result
//! (in this engine or a new one on the same store), a headless run answers
//! on assumptions, and a cancel closes the questions. Approval gates on
//! workflow steps ask the same way.

mod llm_common;

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{ProviderKind, RuntimeConfig};
use bmad2pf_engine::outcome::{AgentRunStatus, RunRequest, RunStatus};
use bmad2pf_engine::runs::interrupts::{
    Answer, Decision, InterruptKind, InterruptSource, InterruptStatus, OpenQuestion,
};
use bmad2pf_engine::runs::{Cancelled, Run, RunMode};
use bmad2pf_engine::store::DocId;
use bmad2pf_engine::{Engine, EngineError};
use llm_common::{Reply, VendorServer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// pm (may ask) writes prd.md; po reads it.
fn project() -> Result<tempfile::TempDir, std::io::Error> {
    let dir = tempfile::tempdir()?;
    let agents = dir.path().join("src/agents");
    std::fs::create_dir_all(&agents)?;
    std::fs::write(
        agents.join("pm.md"),
        "---\nid: pm\ncreates: [prd.md]\ntools: [ask_human]\n---\nYou are the PM.\n",
    )?;
    std::fs::write(
        agents.join("po.md"),
        "---\nid: po\nrequires: [prd.md]\ncreates: [review.md]\n---\nYou are the PO.\n",
    )?;
    Ok(dir)
}

async fn engine(
    dir: &tempfile::TempDir,
    server: &VendorServer,
) -> Result<Engine, Box<dyn std::error::Error>> {
    engine_with(dir, server, RuntimeConfig::default()).await
}

/// An engine on `dir`'s store and sources, talking to `server`, with `config` otherwise.
async fn engine_with(
    dir: &tempfile::TempDir,
    server: &VendorServer,
    mut config: RuntimeConfig,
) -> Result<Engine, Box<dyn std::error::Error>> {
    let root = dir.path();
    config.docs.path = root.join("docs").display().to_string();
    config.memory.path = root.join("memory").display().to_string();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = Some(format!("{}/v1", server.url));
    let bundle = compile(&root.join("src"))
        .bundle
        .ok_or("the sources compile")?;
    Ok(Engine::start(Arc::new(bundle), config, &|_| None).await?)
}

fn text(text: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    )
}

fn asks(arguments: Value) -> Reply {
    let call = json!({"id": "call_ask", "type": "function",
                      "function": {"name": "ask_human", "arguments": arguments.to_string()}});
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                            "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    )
}

fn request(story: &str) -> RunRequest {
    RunRequest {
        flow: "default".into(),
        story_id: story.into(),
        input: "A todo app".into(),
        force: false,
        budget: None,
    }
}

/// The last message the model was sent in request `n` (0-based).
fn last_message(server: &VendorServer, n: usize) -> Value {
    let requests = server.requests();
    requests[n].body["messages"]
        .as_array()
        .and_then(|m| m.last().cloned())
        .unwrap_or_default()
}

async fn settled(engine: &Engine, run_id: &str) -> Result<Run, EngineError> {
    engine.wait_run(run_id, Duration::from_secs(10)).await
}

/// Starts `request` interactive and waits until it stops for a person.
async fn waits_for_a_person(
    engine: &Engine,
    request: RunRequest,
) -> Result<Run, Box<dyn std::error::Error>> {
    let run_id = engine
        .submit(request, RunMode::Interactive)
        .await?
        .outcome
        .run_id;
    let run = settled(engine, &run_id).await?;
    if run.outcome.status != RunStatus::Interrupted {
        return Err(format!("the run should wait for a person: {run:#?}").into());
    }
    Ok(run)
}

fn answer(interrupt_id: &str, text: &str) -> Answer {
    Answer {
        interrupt_id: interrupt_id.into(),
        answer: Some(text.into()),
        ..Answer::default()
    }
}

#[tokio::test]
async fn a_question_interrupts_the_run_and_the_answer_continues_the_same_conversation() -> TestResult
{
    let dir = project()?;
    let server = VendorServer::start(vec![
        asks(json!({"kind": "choose", "prompt": "Which platform?", "options": ["web", "mobile"]})),
        text("PRD for the web"),
        text("Looks good"),
    ])
    .await;
    let engine = engine(&dir, &server).await?;
    let run = engine.submit(request("s1"), RunMode::Interactive).await?;
    let run_id = run.outcome.run_id;

    let waiting = settled(&engine, &run_id).await?;
    assert_eq!(
        waiting.outcome.status,
        RunStatus::Interrupted,
        "{waiting:#?}"
    );
    assert_eq!(waiting.interrupts.len(), 1);
    let question = &waiting.interrupts[0];
    assert_eq!(
        (question.agent.as_str(), question.kind),
        ("pm", InterruptKind::Choose)
    );
    assert_eq!(question.status, InterruptStatus::Open);
    assert_eq!(
        waiting.outcome.results["pm"].status,
        AgentRunStatus::Interrupted
    );
    assert!(
        !waiting.outcome.results.contains_key("po"),
        "po waits behind the question"
    );
    assert_eq!(server.requests().len(), 1);

    // The story stays claimed while the run waits.
    let again = engine.submit(request("s1"), RunMode::Interactive).await;
    assert!(
        matches!(&again, Err(EngineError::RunInProgress { status: Some(s), .. }) if s == "interrupted"),
        "{again:?}"
    );
    // Answers that do not fit are refused, and change nothing.
    let refused = engine
        .resume_run(&run_id, &answer(&question.id, "desktop"), None)
        .await;
    assert!(
        matches!(&refused, Err(EngineError::InvalidAnswer { options: Some(o), .. }) if o.len() == 2),
        "{refused:?}"
    );
    let unknown = engine
        .resume_run(&run_id, &answer("int-0000000000000000", "web"), None)
        .await;
    assert!(
        matches!(&unknown, Err(EngineError::InterruptNotOpen { open, .. }) if open == &vec![question.id.clone()]),
        "{unknown:?}"
    );

    let (queued, mut end) = engine
        .resume_run(&run_id, &answer(&question.id, "web"), None)
        .await?;
    assert_eq!(queued.outcome.status, RunStatus::Queued);
    let done = end.wait().await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    assert_eq!(done.interrupts[0].status, InterruptStatus::Answered);
    assert_eq!(done.interrupts[0].answer.as_deref(), Some("web"));
    assert_eq!(done.outcome.results["pm"].status, AgentRunStatus::Completed);
    assert_eq!(
        done.outcome.results["pm"].usage.calls, 2,
        "the call before the question counts"
    );
    assert_eq!(done.outcome.results["po"].status, AgentRunStatus::Completed);

    // Nothing was asked twice: the second request continues the first.
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "ask, answer, po");
    let tool_result = last_message(&server, 1);
    assert_eq!(tool_result["role"], "tool");
    assert_eq!(tool_result["tool_call_id"], "call_ask");
    assert_eq!(tool_result["content"], "web");
    let prd = engine
        .docs()
        .get(&DocId::parse("s1__prd")?)
        .await?
        .map(|d| d.content);
    assert_eq!(prd.as_deref(), Some("PRD for the web"));

    let late = engine
        .resume_run(&run_id, &answer(&question.id, "web"), None)
        .await;
    assert!(
        matches!(&late, Err(EngineError::NotInterrupted { status, .. }) if status == "success"),
        "{late:?}"
    );
    Ok(())
}

#[tokio::test]
async fn another_engine_on_the_same_store_resumes_the_run() -> TestResult {
    let dir = project()?;
    let server = VendorServer::start(vec![
        asks(json!({"kind": "approve", "prompt": "May I write the PRD?"})),
        text("PRD, approved"),
        text("Fine"),
    ])
    .await;
    let first = engine(&dir, &server).await?;
    let waiting = waits_for_a_person(&first, request("s2")).await?;
    let run_id = waiting.outcome.run_id.clone();
    let question = waiting.interrupts[0].id.clone();
    first.shutdown().await;
    drop(first);

    let second = engine(&dir, &server).await?;
    let no_decision = second
        .resume_run(&run_id, &answer(&question, "yes"), None)
        .await;
    assert!(
        matches!(no_decision, Err(EngineError::InvalidAnswer { .. })),
        "{no_decision:?}"
    );
    let approve = Answer {
        interrupt_id: question,
        decision: Some(Decision::Reject),
        feedback: Some("add a budget section".into()),
        ..Answer::default()
    };
    let (_, mut end) = second.resume_run(&run_id, &approve, None).await?;
    let done = end.wait().await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    assert_eq!(
        last_message(&server, 1)["content"],
        "rejected: add a budget section"
    );
    Ok(())
}

#[tokio::test]
async fn a_headless_run_proceeds_on_assumptions_and_lists_the_question() -> TestResult {
    let dir = project()?;
    let server = VendorServer::start(vec![
        asks(json!({"prompt": "Who are the users?", "assume": "office workers"})),
        text("PRD assuming office workers"),
        text("Fine"),
    ])
    .await;
    let engine = engine(&dir, &server).await?;
    let done = engine.run(request("s3"), RunMode::Headless, None).await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    assert!(done.interrupts.is_empty());
    let pm_step = engine.bundle().flows["default"]
        .steps
        .iter()
        .find(|s| s.agents.iter().any(|a| a == "pm"))
        .map(|s| s.id.clone());
    assert_eq!(
        done.open_questions,
        vec![OpenQuestion {
            agent: "pm".into(),
            step: pm_step,
            kind: InterruptKind::Ask,
            prompt: "Who are the users?".into(),
            options: None,
            assumed: Some("office workers".into()),
        }]
    );
    let told = last_message(&server, 1);
    assert_eq!(told["role"], "tool");
    assert!(
        told["content"]
            .as_str()
            .is_some_and(|c| c.contains("stated assumption: office workers")),
        "{told}"
    );
    Ok(())
}

#[tokio::test]
async fn cancelling_an_interrupted_run_closes_its_questions_and_frees_the_story() -> TestResult {
    let dir = project()?;
    let server = VendorServer::start(vec![
        asks(json!({"prompt": "Scope?"})),
        asks(json!({"prompt": "Scope, again?"})),
    ])
    .await;
    let engine = engine(&dir, &server).await?;
    let run_id = waits_for_a_person(&engine, request("s4"))
        .await?
        .outcome
        .run_id;
    let Cancelled::Ended(cancelled) = engine.cancel_run(&run_id).await? else {
        return Err("an interrupted run ends at once".into());
    };
    assert_eq!(cancelled.outcome.status, RunStatus::Cancelled);
    assert_eq!(cancelled.interrupts[0].status, InterruptStatus::Cancelled);
    assert_eq!(
        cancelled.outcome.results["pm"].status,
        AgentRunStatus::Cancelled
    );
    let stored = engine.get_run(&run_id).await?;
    assert_eq!(stored.outcome.status, RunStatus::Cancelled);
    assert!(stored.finished_at.is_some());
    // The claim went with it: the story takes a new run, which asks anew.
    let next = engine.submit(request("s4"), RunMode::Interactive).await?;
    let waiting = settled(&engine, &next.outcome.run_id).await?;
    assert_eq!(waiting.outcome.status, RunStatus::Interrupted);
    assert_eq!(waiting.interrupts[0].prompt, "Scope, again?");
    Ok(())
}

#[tokio::test]
async fn a_run_cancelled_after_its_answer_leaves_no_agent_waiting() -> TestResult {
    let dir = project()?;
    let server = VendorServer::start(vec![asks(json!({"prompt": "Scope?"})), Reply::Hang]).await;
    let engine = engine(&dir, &server).await?;
    let waiting = waits_for_a_person(&engine, request("s5")).await?;
    let run_id = waiting.outcome.run_id;
    let question = waiting.interrupts[0].id.clone();
    engine
        .resume_run(&run_id, &answer(&question, "web"), None)
        .await?;
    // The answered agent talks with its model again (which never answers).
    while server.requests().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.cancel_run(&run_id).await?;
    let ended = settled(&engine, &run_id).await?;
    assert_eq!(ended.outcome.status, RunStatus::Cancelled, "{ended:#?}");
    assert_eq!(ended.interrupts[0].status, InterruptStatus::Answered);
    assert_eq!(
        ended.outcome.results["pm"].status,
        AgentRunStatus::Cancelled,
        "{ended:#?}"
    );
    Ok(())
}

/// [`project`] with a `gated` flow: `workflow` lists its steps.
fn gated_project(steps: &str) -> Result<tempfile::TempDir, std::io::Error> {
    let dir = project()?;
    std::fs::write(
        dir.path().join("src/workflow.yaml"),
        format!("flows:\n  gated:\n    steps:\n{steps}"),
    )?;
    Ok(dir)
}

fn gated(story: &str) -> RunRequest {
    RunRequest {
        flow: "gated".into(),
        ..request(story)
    }
}

fn decide(interrupt_id: &str, decision: Decision, feedback: Option<&str>) -> Answer {
    Answer {
        interrupt_id: interrupt_id.into(),
        decision: Some(decision),
        feedback: feedback.map(str::to_string),
        ..Answer::default()
    }
}

#[tokio::test]
async fn a_rejected_after_gate_runs_the_step_again_with_the_feedback() -> TestResult {
    let dir = gated_project(
        "      - {id: draft, agent: pm, approve: after, approve_prompt: Is the PRD good?}\n      - {id: review, agent: po}\n",
    )?;
    let server = VendorServer::start(vec![
        text("PRD v1"),
        text("PRD v2, with a budget"),
        text("Looks good"),
    ])
    .await;
    let first = engine(&dir, &server).await?;
    let waiting = waits_for_a_person(&first, gated("g1")).await?;
    let run_id = waiting.outcome.run_id.clone();
    let gate = &waiting.interrupts[0];
    assert_eq!(
        (
            gate.kind,
            gate.source,
            gate.step.as_str(),
            gate.prompt.as_str()
        ),
        (
            InterruptKind::Approve,
            InterruptSource::Gate,
            "draft",
            "Is the PRD good?"
        )
    );
    assert_eq!(gate.documents, Some(vec!["g1__prd".to_string()]));
    assert_eq!(server.requests().len(), 1, "po waits for the approval");

    // Rejected with feedback, on another engine: the step runs again and
    // its agent is told why.
    let gate_id = gate.id.clone();
    first.shutdown().await;
    drop(first);
    let second = engine(&dir, &server).await?;
    let (_, mut end) = second
        .resume_run(
            &run_id,
            &decide(&gate_id, Decision::Reject, Some("add a budget")),
            None,
        )
        .await?;
    let again = end.wait().await?;
    assert_eq!(again.outcome.status, RunStatus::Interrupted, "{again:#?}");
    let told = last_message(&server, 1);
    assert!(
        told["content"]
            .as_str()
            .is_some_and(|c| c.contains("Their feedback:\nadd a budget")),
        "{told}"
    );
    let second_gate = again
        .interrupts
        .iter()
        .find(|i| i.is_open())
        .ok_or("the step's output is asked about again")?;
    assert_eq!(again.interrupts.len(), 2);
    let doc = second.docs().get(&DocId::parse("g1__prd")?).await?;
    assert_eq!(doc.map(|d| d.content), Some("PRD v2, with a budget".into()));

    // Approved: the flow goes on to the review.
    let (_, mut end) = second
        .resume_run(
            &run_id,
            &decide(&second_gate.id.clone(), Decision::Approve, None),
            None,
        )
        .await?;
    let done = end.wait().await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    assert_eq!(done.outcome.results["po"].status, AgentRunStatus::Completed);
    assert_eq!(server.requests().len(), 3);
    assert!(
        done.interrupts
            .iter()
            .all(|i| i.status == InterruptStatus::Answered)
    );
    Ok(())
}

#[tokio::test]
async fn a_rejected_before_gate_cancels_the_run_or_goes_to_on_reject() -> TestResult {
    let dir = gated_project(
        "      - {id: draft, agent: pm, approve: before}\n      - {id: review, agent: po, approve: before, on_reject: end}\n",
    )?;
    let server = VendorServer::start(vec![text("PRD")]).await;
    let engine = engine(&dir, &server).await?;

    // Rejected before the first step: nothing ran, the run is cancelled.
    let waiting = waits_for_a_person(&engine, gated("g2")).await?;
    let run_id = waiting.outcome.run_id.clone();
    assert_eq!(waiting.interrupts[0].documents, None);
    assert_eq!(
        waiting.interrupts[0].prompt,
        "Approve running step `draft`?"
    );
    let (_, mut end) = engine
        .resume_run(
            &run_id,
            &decide(&waiting.interrupts[0].id, Decision::Reject, Some("not now")),
            None,
        )
        .await?;
    let rejected = end.wait().await?;
    assert_eq!(rejected.outcome.status, RunStatus::Cancelled);
    assert_eq!(
        rejected.outcome.error_code.as_deref(),
        Some("approval_rejected")
    );
    assert!(rejected.outcome.errors["run"].contains("not now"));
    assert!(server.requests().is_empty());

    // Approved, then the review rejected: `on_reject: end` ends the flow.
    let waiting = waits_for_a_person(&engine, gated("g3")).await?;
    let run_id = waiting.outcome.run_id.clone();
    let first_gate = waiting.interrupts[0].id.clone();
    let (_, mut end) = engine
        .resume_run(&run_id, &decide(&first_gate, Decision::Approve, None), None)
        .await?;
    let at_review = end.wait().await?;
    let review_gate = at_review
        .interrupts
        .iter()
        .find(|i| i.is_open())
        .ok_or("the review asks first")?;
    assert_eq!(review_gate.step, "review");
    assert_eq!(
        at_review.outcome.results["pm"].status,
        AgentRunStatus::Completed
    );
    let (_, mut end) = engine
        .resume_run(
            &run_id,
            &decide(&review_gate.id.clone(), Decision::Reject, None),
            None,
        )
        .await?;
    let done = end.wait().await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    assert!(!done.outcome.results.contains_key("po"));
    assert_eq!(server.requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_headless_run_approves_its_gates_and_lists_them() -> TestResult {
    let dir = gated_project("      - {id: draft, agent: pm, approve: true}\n")?;
    let server = VendorServer::start(vec![text("PRD")]).await;
    let engine = engine(&dir, &server).await?;
    let done = engine.run(gated("g4"), RunMode::Headless, None).await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    assert!(done.interrupts.is_empty());
    assert_eq!(
        done.open_questions,
        vec![OpenQuestion {
            agent: "pm".into(),
            step: Some("draft".into()),
            kind: InterruptKind::Approve,
            prompt: "Approve the output of step `draft`?".into(),
            options: None,
            assumed: Some("approved".into()),
        }]
    );
    Ok(())
}

#[tokio::test]
async fn a_question_open_past_the_timeout_expires_and_ends_the_run() -> TestResult {
    let dir = project()?;
    let server = VendorServer::start(vec![asks(json!({"prompt": "Budget?"}))]).await;
    let first = engine(&dir, &server).await?;
    let run_id = waits_for_a_person(&first, request("t1"))
        .await?
        .outcome
        .run_id;
    first.shutdown().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A process on the store with a one-second timeout looks at its start.
    let mut config = RuntimeConfig::default();
    config.runs.interrupt_timeout_s = Some(1);
    let second = engine_with(&dir, &server, config).await?;
    let mut ended = second.get_run(&run_id).await?;
    for _ in 0..150 {
        if ended.outcome.status != RunStatus::Interrupted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ended = second.get_run(&run_id).await?;
    }
    assert_eq!(ended.outcome.status, RunStatus::Error, "{ended:#?}");
    assert_eq!(
        ended.outcome.error_code.as_deref(),
        Some("interrupt_timeout")
    );
    assert_eq!(ended.interrupts[0].status, InterruptStatus::Expired);
    assert_eq!(
        ended.outcome.results["pm"].status,
        AgentRunStatus::Cancelled
    );
    let late = second
        .resume_run(&run_id, &answer(&ended.interrupts[0].id, "10k"), None)
        .await;
    assert!(
        matches!(&late, Err(EngineError::NotInterrupted { .. })),
        "{late:?}"
    );
    Ok(())
}

/// Copies directory `from` into `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn calls(name: &str, arguments: Value) -> Reply {
    let call = json!({"id": format!("call_{name}"), "type": "function",
                      "function": {"name": name, "arguments": arguments.to_string()}});
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                            "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    )
}

#[tokio::test]
async fn a_bmad_v6_step_reads_its_resources_and_asks_the_person() -> TestResult {
    let dir = tempfile::tempdir()?;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bmad-v6");
    copy_tree(&example, &dir.path().join("src"))?;
    let server = VendorServer::start(vec![
        calls("read_resource", json!({"path": "data/cuts.csv"})),
        calls("read_resource", json!({"path": "fire-log.md"})),
        calls("ask_human", json!({"prompt": "How many guests?"})),
        text("12 guests"),
        text("Brisket and corn"),
        text("Reviewed"),
        text("Done"),
    ])
    .await;
    let engine = engine(&dir, &server).await?;
    let request = RunRequest {
        flow: "bbq/plan-menu".into(),
        ..request("v6")
    };
    let waiting = waits_for_a_person(&engine, request).await?;
    let run_id = waiting.outcome.run_id.clone();
    let question = &waiting.interrupts[0];
    assert_eq!(
        (question.agent.as_str(), question.step.as_str()),
        ("bbq/pitmaster", "step-01-guests")
    );
    // The step's file was read through the tool, from the flow's resources.
    let read = last_message(&server, 1);
    assert_eq!(read["role"], "tool");
    assert!(
        read["content"]
            .as_str()
            .is_some_and(|c| c.contains("brisket,720")),
        "{read}"
    );
    // And a file of the agent's own sidecar folder.
    let read = last_message(&server, 2);
    assert!(
        read["content"]
            .as_str()
            .is_some_and(|c| c.contains("Last cook: ribs")),
        "{read}"
    );

    let (_, mut end) = engine
        .resume_run(&run_id, &answer(&question.id, "12"), None)
        .await?;
    let done = end.wait().await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    let document = engine
        .docs()
        .get(&DocId::parse("v6__menu-plan")?)
        .await?
        .ok_or("the flow's document")?
        .content;
    assert!(
        document.starts_with(
            "---\nstepsCompleted: [step-01-guests, step-02-dishes, step-03-review, step-04-done]\n---\n\n12 guests\n\nBrisket and corn\n\nReviewed\n\nDone"
        ),
        "{document}"
    );
    Ok(())
}

/// The skills example in `dir`'s sources, and its flow with a headless
/// contract (`bmad-water-check`).
async fn skill_with_a_headless_contract(
    dir: &tempfile::TempDir,
    server: &VendorServer,
) -> Result<(Engine, String), Box<dyn std::error::Error>> {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bmad-skills");
    copy_tree(&example, &dir.path().join("src"))?;
    let engine = engine(dir, server).await?;
    let flow = engine
        .bundle()
        .flows
        .iter()
        .find(|(_, flow)| flow.metadata.get("headless_contract") == Some(&json!(true)))
        .map(|(id, _)| id.clone())
        .ok_or("the example has a skill with a headless contract")?;
    Ok((engine, flow))
}

#[tokio::test]
async fn a_skill_run_headless_is_told_so_and_its_closing_report_is_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = VendorServer::start(vec![text(
        "# Water check\n\nWater bed 2 tonight.\n\n```json\n{\"status\": \"partial\", \"assumptions\": [\"no rain since Monday\"], \"open_questions\": [\"Which bed was sown last?\"]}\n```\n",
    )])
    .await;
    let (engine, flow) = skill_with_a_headless_contract(&dir, &server).await?;
    let request = RunRequest {
        flow: flow.clone(),
        ..request("skill")
    };
    let done = engine.run(request, RunMode::Headless, None).await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    let told = last_message(&server, 0);
    assert!(
        told["content"]
            .as_str()
            .is_some_and(|c| c.contains("headless: true")),
        "{told}"
    );
    let listed: Vec<(&str, Option<&str>)> = done
        .open_questions
        .iter()
        .map(|q| (q.prompt.as_str(), q.assumed.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("Which bed was sown last?", None),
            ("(assumed without asking)", Some("no rain since Monday")),
        ]
    );
    // The report is for the engine: the document ends before it.
    let written = engine.docs().list(Some("skill")).await?;
    let doc = written.first().ok_or("the skill wrote a document")?;
    let content = engine
        .docs()
        .get(&doc.id)
        .await?
        .ok_or("its content")?
        .content;
    assert!(content.ends_with("Water bed 2 tonight."), "{content}");
    Ok(())
}

#[tokio::test]
async fn a_skill_that_reports_blocked_fails_with_its_reason() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = VendorServer::start(vec![text(
        "I cannot check the beds.\n{\"status\": \"blocked\", \"reason\": \"no soil readings for today\"}",
    )])
    .await;
    let (engine, flow) = skill_with_a_headless_contract(&dir, &server).await?;
    let request = RunRequest {
        flow,
        ..request("blocked")
    };
    let done = engine.run(request, RunMode::Headless, None).await?;
    assert_eq!(done.outcome.status, RunStatus::Error, "{done:#?}");
    let errors: Vec<&String> = done.outcome.errors.values().collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("blocked") && e.contains("no soil readings for today")),
        "{errors:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_workflow_yaml_step_reads_the_documents_its_patterns_match() -> TestResult {
    let dir = tempfile::tempdir()?;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bmad-v6");
    copy_tree(&example, &dir.path().join("src"))?;
    let server = VendorServer::start(vec![text("Buy 3 kg of brisket")]).await;
    let engine = engine(&dir, &server).await?;
    let api = bmad2pf_engine::store::DocWriter::Api;
    // `*menu-plan*.md` (the step's input_file_patterns) matches the first only.
    for (name, content) in [("menu-plan", "Brisket for 12"), ("guest-list", "Ana, Bo")] {
        engine
            .docs()
            .put(
                &DocId::parse(&format!("shop__{name}"))?,
                content,
                api.clone(),
            )
            .await?;
    }
    let request = RunRequest {
        flow: "bbq/shopping-list".into(),
        ..request("shop")
    };
    let done = engine.run(request, RunMode::Headless, None).await?;
    assert_eq!(done.outcome.status, RunStatus::Success, "{done:#?}");
    let sent = server.requests()[0].body["messages"].to_string();
    assert!(sent.contains("Brisket for 12"), "{sent}");
    assert!(!sent.contains("Ana, Bo"), "{sent}");
    Ok(())
}

#[tokio::test]
async fn an_answer_counts_against_the_queue_bound_and_a_refused_one_leaves_the_run_waiting()
-> TestResult {
    let dir = project()?;
    // Run 1 asks; run 2's call never answers, so it holds the only slot.
    let server = VendorServer::start(vec![
        asks(json!({"prompt": "Who are the users?"})),
        Reply::Hang,
    ])
    .await;
    let mut config = RuntimeConfig::default();
    config.runs.max_running_runs = 1;
    config.runs.max_queued_runs = 1;
    let engine = engine_with(&dir, &server, config).await?;
    let waiting = waits_for_a_person(&engine, request("q1")).await?;
    let running = engine.submit(request("q2"), RunMode::Headless).await?;
    while engine
        .get_run(&running.outcome.run_id)
        .await?
        .outcome
        .status
        != RunStatus::Running
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let queued = engine.submit(request("q3"), RunMode::Headless).await?;
    let question = &waiting.interrupts[0];
    let refused = engine
        .resume_run(
            &waiting.outcome.run_id,
            &answer(&question.id, "Nurses"),
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(EngineError::QueueFull(1))),
        "{:?}",
        refused.map(|(run, _)| run)
    );
    let still = engine.get_run(&waiting.outcome.run_id).await?;
    assert_eq!(still.outcome.status, RunStatus::Interrupted);
    assert!(still.interrupts[0].is_open());
    // Room again: the same answer is taken.
    engine.cancel_run(&queued.outcome.run_id).await?;
    let (resumed, _) = engine
        .resume_run(
            &waiting.outcome.run_id,
            &answer(&question.id, "Nurses"),
            None,
        )
        .await?;
    assert_eq!(resumed.outcome.status, RunStatus::Queued);
    Ok(())
}
