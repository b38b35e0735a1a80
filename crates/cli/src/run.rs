//! `bmad2pf run FLOW --story ID --input TEXT`: one flow run, from the terminal.
//!
//! Per-agent progress goes to stderr as it happens; the outcome goes to
//! stdout (a short table, or the API's JSON body with `--json`). The run is
//! stored like every run (SPEC 8): a server on the same data directory
//! lists it, follows it and can cancel it. It runs headless: agents cannot
//! ask questions yet. Exit code: 0 success, 1 the run failed or was
//! cancelled (or the flow is already running for this story in another
//! process: `error[run_in_progress]`), 130 Ctrl-C (the run is cancelled,
//! its documents kept), 3 the run is pending
//! (documents missing: put them into the docs directory and run again), 2
//! usage or start-up error.

use crate::Outcome;
use crate::report::stdout;
use crate::runtime::{BundleArgs, StartError, init_logging, start_engine, tokio_runtime};
use bmad2pf_engine::EngineError;
use bmad2pf_engine::outcome::{ProgressStatus, RunEvent, RunRequest, RunStatus};
use bmad2pf_engine::runs::{Run, RunMode};
use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flow to run (see `bmad2pf graph`).
    #[arg(value_name = "FLOW")]
    flow: String,
    /// The story the documents belong to.
    #[arg(long, value_name = "ID")]
    story: String,
    /// The input handed to the agents.
    #[arg(long, value_name = "TEXT", default_value = "")]
    input: String,
    /// Re-run agents whose outputs are up to date.
    #[arg(long)]
    force: bool,
    /// Print the outcome as JSON (the body `POST /run` answers with).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bundle: BundleArgs,
}

pub fn run(args: &RunArgs) -> Outcome {
    StartError::finish(execute(args))
}

fn execute(args: &RunArgs) -> Result<Outcome, StartError> {
    let loaded = args.bundle.load()?;
    init_logging(&loaded.config, true);
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let engine = start_engine(loaded).await?;
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                print_progress(&event);
            }
        });
        let request = RunRequest {
            flow: args.flow.clone(),
            story_id: args.story.clone(),
            input: args.input.clone(),
            force: args.force,
            budget: None,
        };
        let started = engine
            .begin_run(request, RunMode::Headless, Some(events))
            .await;
        let mut interrupted = false;
        let result = match started {
            Ok((run, mut end)) => {
                tokio::select! {
                    ended = end.wait() => ended,
                    _ = tokio::signal::ctrl_c() => {
                        interrupted = true;
                        eprintln!("interrupted: cancelling run {}…", run.outcome.run_id);
                        if let Err(error) = engine.cancel_run(&run.outcome.run_id).await {
                            eprintln!("error: cancelling failed: {error}");
                        }
                        end.wait().await
                    }
                }
            }
            Err(error) => Err(error),
        };
        let _ = printer.await;
        let run = match result {
            Ok(run) => run,
            Err(error @ EngineError::UnknownFlow(_)) => {
                let flows: Vec<&str> = engine.bundle().flows.keys().map(String::as_str).collect();
                return Err(StartError {
                    message: format!("{error} (flows: {})", flows.join(", ")),
                    invalid_sources: false,
                });
            }
            // Another process (a server, another CLI run) runs this flow
            // for this story: a failed run, named by its code.
            Err(error @ EngineError::RunInProgress { .. }) => {
                eprintln!("error[{}]: {error}", error.code());
                return Ok(Outcome::Invalid);
            }
            Err(error) => {
                return Err(StartError {
                    message: error.to_string(),
                    invalid_sources: false,
                });
            }
        };
        engine.shutdown().await;
        print_run(&run, args.json);
        if interrupted {
            return Ok(Outcome::Interrupted);
        }
        Ok(match run.outcome.status {
            RunStatus::Success => Outcome::Success,
            RunStatus::Pending => Outcome::Pending,
            RunStatus::Interrupted => Outcome::WaitsForAnswer,
            RunStatus::Error | RunStatus::Cancelled | RunStatus::Queued | RunStatus::Running => {
                Outcome::Invalid
            }
        })
    })
}

fn print_progress(event: &RunEvent) {
    if let RunEvent::Progress {
        agent,
        status,
        duration_ms,
        ..
    } = event
    {
        let word = match status {
            ProgressStatus::Started => "started",
            ProgressStatus::Completed => "completed",
            ProgressStatus::Failed => "FAILED",
            ProgressStatus::Skipped => "up to date",
            ProgressStatus::Waiting => "waiting for documents",
            ProgressStatus::Interrupted => "waiting for an answer",
            ProgressStatus::Cancelled => "cancelled",
        };
        match duration_ms {
            Some(ms) if *status != ProgressStatus::Started => {
                eprintln!("  {agent:<24} {word} ({ms} ms)")
            }
            _ => eprintln!("  {agent:<24} {word}"),
        }
    }
}

fn print_run(run: &Run, json: bool) {
    let outcome = &run.outcome;
    let text = if json {
        serde_json::to_string_pretty(run).unwrap_or_default()
    } else {
        let mut lines = vec![format!(
            "{} {}: {} in {} ms",
            "run",
            outcome.run_id,
            outcome.status.as_str(),
            outcome.duration_ms
        )];
        for (agent, result) in &outcome.results {
            let status = serde_json::to_value(result.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            lines.push(format!(
                "  {agent:<24} {status:<10} {:<32} {} ms, {} → {} tokens",
                result.document.as_deref().unwrap_or("-"),
                result.duration_ms,
                result.usage.input_tokens,
                result.usage.output_tokens
            ));
        }
        if !outcome.pending_docs.is_empty() {
            lines.push(format!(
                "pending: waiting for {}; add them (PUT /doc/<story>__<name>, or a file in the docs directory) and run again",
                outcome.pending_docs.join(", ")
            ));
        }
        for (who, message) in &outcome.errors {
            lines.push(format!("error: {who}: {message}"));
        }
        lines.join("\n")
    };
    if stdout(&text).is_err() {
        eprintln!("error: cannot write to stdout");
    }
}
