//! `bmad2pf exec AGENT --instruction TEXT [--doc NAME=FILE]…`: one stateless
//! agent execution, as `POST /agent/{id}/execute` does it.
//!
//! Prints the agent's content to stdout (or the whole answer as JSON with
//! `--json`). Exit code: 0 completed, 1 failed, 3 needs input (the missing
//! documents are named on stderr), 2 usage or start-up error.

use crate::Outcome;
use crate::report::stdout;
use crate::runtime::{BundleArgs, StartError, init_logging, start_engine, tokio_runtime};
use bmad2pf_engine::outcome::{ExecuteRequest, ExecuteStatus};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The agent to execute.
    #[arg(value_name = "AGENT")]
    agent: String,
    /// What the agent should do.
    #[arg(long, value_name = "TEXT")]
    instruction: String,
    /// A document the agent may need, as NAME=FILE (repeatable).
    #[arg(long = "doc", value_name = "NAME=FILE", value_parser = parse_doc)]
    docs: Vec<(String, PathBuf)>,
    /// Print the whole answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bundle: BundleArgs,
}

fn parse_doc(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("expected NAME=FILE, got {value:?}")),
    }
}

pub fn run(args: &ExecArgs) -> Outcome {
    StartError::finish(execute(args))
}

fn execute(args: &ExecArgs) -> Result<Outcome, StartError> {
    let mut request = ExecuteRequest {
        instruction: args.instruction.clone(),
        ..ExecuteRequest::default()
    };
    for (name, file) in &args.docs {
        let content = std::fs::read_to_string(file).map_err(|e| StartError {
            message: format!("--doc {name}: cannot read {}: {e}", file.display()),
            invalid_sources: false,
        })?;
        request.documents.insert(name.clone(), content);
    }
    let loaded = args.bundle.load()?;
    init_logging(&loaded.config, true);
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let engine = start_engine(loaded).await?;
        let answer = engine
            .execute(&args.agent, request)
            .await
            .map_err(|e| StartError {
                message: e.to_string(),
                invalid_sources: false,
            })?;
        let printed = if args.json {
            stdout(&serde_json::to_string_pretty(&answer).unwrap_or_default())
        } else {
            match answer.status {
                ExecuteStatus::Completed => stdout(&answer.content),
                ExecuteStatus::NeedsInput => {
                    eprintln!(
                        "needs input: pass {} with --doc NAME=FILE",
                        answer.missing_inputs.join(", ")
                    );
                    Ok(())
                }
                ExecuteStatus::Failed => {
                    eprintln!(
                        "failed: {}",
                        answer.metadata.error.as_deref().unwrap_or(&answer.summary)
                    );
                    Ok(())
                }
            }
        };
        if printed.is_err() {
            eprintln!("error: cannot write to stdout");
        }
        Ok(match answer.status {
            ExecuteStatus::Completed => Outcome::Success,
            ExecuteStatus::Failed => Outcome::Invalid,
            ExecuteStatus::NeedsInput => Outcome::Pending,
        })
    })
}
