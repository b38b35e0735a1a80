//! The run tools: `run_<flow>`, `get_run`, `list_runs`, `answer_question`.
//!
//! Runs are the engine's background runs (SPEC 8), so a tool call never
//! holds a run: `run_<flow>` starts one and then waits — like `GET
//! /runs/{id}/wait` — until it ends, stops with a question, or `wait_s`
//! passes, and answers the run as it is then; `get_run` polls it later
//! (waiting too, if asked). While it waits, a call whose client sent a
//! progress token gets an MCP progress notification for each agent that
//! starts or finishes. A client that cancels its call stops the wait, not
//! the run.

use crate::arguments::Arguments;
use crate::catalog::DEFAULT_RUN_WAIT_S;
use crate::errors::refused;
use crate::report::RunReport;
use bmad2pf_engine::outcome::{ProgressStatus, RunRequest, RunStatus};
use bmad2pf_engine::runs::interrupts::{Answer, Decision};
use bmad2pf_engine::runs::{Run, RunFilter, RunMode};
use bmad2pf_engine::store::StoredEvent;
use bmad2pf_engine::{Engine, EngineError};
use rmcp::model::{CallToolResult, ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde::Deserialize;
use std::time::Duration;

/// Arguments of `run_<flow>`.
#[derive(Debug, Deserialize)]
struct RunFlowArguments {
    story_id: String,
    input: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    mode: Option<RunMode>,
    #[serde(default)]
    wait_s: Option<u64>,
}

/// Arguments of `get_run`.
#[derive(Debug, Deserialize)]
struct GetRunArguments {
    run_id: String,
    #[serde(default)]
    wait_s: Option<u64>,
}

/// Arguments of `list_runs`.
#[derive(Debug, Deserialize)]
struct ListRunsArguments {
    story_id: Option<String>,
    flow: Option<String>,
    #[serde(default)]
    status: Vec<RunStatus>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Arguments of `answer_question`.
#[derive(Debug, Deserialize)]
struct AnswerArguments {
    run_id: String,
    interrupt_id: String,
    answer: Option<String>,
    decision: Option<Decision>,
    feedback: Option<String>,
    #[serde(default)]
    wait_s: Option<u64>,
}

/// `GET /runs`'s page size, when `limit` is not given.
const DEFAULT_PAGE: usize = 20;

/// How a waiting call tells its client what happens, and learns that the
/// client gave up.
pub struct Progress {
    context: RequestContext<RoleServer>,
    token: Option<ProgressToken>,
}

impl Progress {
    pub fn for_request(context: &RequestContext<RoleServer>) -> Self {
        Self {
            token: context.meta.get_progress_token(),
            context: context.clone(),
        }
    }

    /// The run once it has ended or waits for a person, or as it is after
    /// `wait`; meanwhile a progress notification (when the client sent a
    /// token) for each agent that starts, finishes, fails or asks. Events
    /// before `since` (unix ms) belong to earlier calls and are skipped.
    /// `None` when the client cancelled the call.
    ///
    /// The wait follows the run's events rather than only waiting for its
    /// end, so every agent's notification is sent before the answer.
    async fn settle(
        &self,
        engine: &Engine,
        run_id: &str,
        wait: Duration,
        since: u64,
    ) -> Option<Result<Run, EngineError>> {
        let deadline = tokio::time::Instant::now() + wait;
        let run = match engine.get_run(run_id).await {
            Ok(run) => run,
            Err(error) => return Some(Err(error)),
        };
        if run.outcome.status.is_settled() || wait.is_zero() {
            return Some(Ok(run));
        }
        let mut events = match engine.follow_run(run_id, 0).await {
            Ok(events) => events,
            Err(error) => return Some(Err(error)),
        };
        let mut sent = 0u32;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        if self.observe(&event, since, &mut sent).await {
                            break;
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = self.context.ct.cancelled() => return None,
            }
        }
        // The run as the engine has it: settled by now, or as it is at the deadline.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        Some(engine.wait_run(run_id, left).await)
    }

    /// Notifies the client of a `progress` event from `since` on; whether
    /// `event` says the run has settled.
    async fn observe(&self, event: &StoredEvent, since: u64, sent: &mut u32) -> bool {
        match event.event.as_str() {
            "progress" => {
                let Ok(progress) = serde_json::from_str::<AgentProgress>(&event.data) else {
                    return false;
                };
                if let Some(token) = self.token.as_ref().filter(|_| progress.timestamp >= since) {
                    *sent += 1;
                    let message = format!(
                        "{}: {} (step {})",
                        progress.agent,
                        describe(progress.status),
                        progress.step
                    );
                    let notification =
                        ProgressNotificationParam::new(token.clone(), f64::from(*sent))
                            .with_message(message);
                    if let Err(error) = self.context.peer.notify_progress(notification).await {
                        tracing::debug!(%error, "a progress notification was not sent");
                    }
                }
                false
            }
            "status" => serde_json::from_str::<StatusChange>(&event.data)
                .is_ok_and(|change| change.at >= since && change.status.is_settled()),
            "done" => true,
            _ => false,
        }
    }
}

/// The fields of a `status` event this module reads.
#[derive(Debug, Deserialize)]
struct StatusChange {
    status: RunStatus,
    at: u64,
}

/// The fields of a `progress` event this module reads.
#[derive(Debug, Deserialize)]
struct AgentProgress {
    agent: String,
    step: String,
    status: ProgressStatus,
    timestamp: u64,
}

/// An agent's progress in words, for a notification's message.
fn describe(status: ProgressStatus) -> &'static str {
    match status {
        ProgressStatus::Started => "started",
        ProgressStatus::Completed => "completed",
        ProgressStatus::Failed => "failed",
        ProgressStatus::Skipped => "skipped (up to date)",
        ProgressStatus::Waiting => "waits for documents",
        ProgressStatus::Interrupted => "asks a question",
        ProgressStatus::Cancelled => "cancelled",
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The run as a tool result.
fn report(run: Run) -> CallToolResult {
    let report = RunReport::from(run);
    match serde_json::to_value(&report) {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!(
            "the run could not be encoded: {e}"
        ))]),
    }
}

/// What a waiting tool answers: the run once settled, or as it is.
async fn wait_and_report(
    engine: &Engine,
    run_id: &str,
    wait_s: u64,
    since: u64,
    progress: Progress,
) -> Result<CallToolResult, McpError> {
    match progress
        .settle(engine, run_id, Duration::from_secs(wait_s), since)
        .await
    {
        Some(Ok(run)) => Ok(report(run)),
        Some(Err(error)) => refused(error),
        None => Err(McpError::internal_error(
            "the call was cancelled; the run goes on (poll it with `get_run`)",
            None,
        )),
    }
}

/// `run_<flow>`: starts a background run, then waits for it.
pub async fn run_flow(
    engine: &Engine,
    flow: &str,
    arguments: Arguments,
    progress: Progress,
) -> Result<CallToolResult, McpError> {
    let arguments: RunFlowArguments = arguments.read()?;
    let request = RunRequest {
        flow: flow.to_string(),
        story_id: arguments.story_id,
        input: arguments.input,
        force: arguments.force,
        budget: None,
    };
    let mode = arguments.mode.unwrap_or(RunMode::Interactive);
    let since = now_ms();
    let run = match engine.submit(request, mode).await {
        Ok(run) => run,
        Err(error) => return refused(error),
    };
    let wait_s = arguments.wait_s.unwrap_or(DEFAULT_RUN_WAIT_S);
    wait_and_report(engine, &run.outcome.run_id, wait_s, since, progress).await
}

/// `get_run`: the run now, or once it settles within `wait_s`.
pub async fn get_run(
    engine: &Engine,
    arguments: Arguments,
    progress: Progress,
) -> Result<CallToolResult, McpError> {
    let arguments: GetRunArguments = arguments.read()?;
    let wait_s = arguments.wait_s.unwrap_or(0);
    wait_and_report(engine, &arguments.run_id, wait_s, now_ms(), progress).await
}

/// `list_runs`: one page of runs, newest first.
pub async fn list_runs(engine: &Engine, arguments: Arguments) -> Result<CallToolResult, McpError> {
    let arguments: ListRunsArguments = arguments.read()?;
    let filter = RunFilter {
        story_id: arguments.story_id,
        flow: arguments.flow,
        statuses: arguments.status,
        limit: arguments.limit.unwrap_or(DEFAULT_PAGE),
        cursor: arguments.cursor,
    };
    match engine.list_runs(filter).await {
        Ok(page) => match serde_json::to_value(&page) {
            Ok(value) => Ok(CallToolResult::structured(value)),
            Err(e) => Err(McpError::internal_error(
                format!("the runs could not be encoded: {e}"),
                None,
            )),
        },
        Err(error) => refused(error),
    }
}

/// `answer_question`: answers an open question (as `POST /runs/{id}/resume`),
/// then waits for the run like `run_<flow>`.
pub async fn answer_question(
    engine: &Engine,
    arguments: Arguments,
    progress: Progress,
) -> Result<CallToolResult, McpError> {
    let arguments: AnswerArguments = arguments.read()?;
    let answer = Answer {
        interrupt_id: arguments.interrupt_id,
        answer: arguments.answer,
        decision: arguments.decision,
        feedback: arguments.feedback,
    };
    let since = now_ms();
    if let Err(error) = engine.resume_run(&arguments.run_id, &answer, None).await {
        return refused(error);
    }
    let wait_s = arguments.wait_s.unwrap_or(DEFAULT_RUN_WAIT_S);
    wait_and_report(engine, &arguments.run_id, wait_s, since, progress).await
}
