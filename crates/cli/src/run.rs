//! `bmad2pf run FLOW --story ID [--input TEXT] [--headless]`: one flow run,
//! from the terminal.
//!
//! The run is stored like every run (SPEC 8): a server on the same data
//! directory lists it, follows it and can cancel it. It is interactive
//! unless `--headless`: an agent may ask a person (SPEC 8.3), inline on a
//! terminal, or else the run is left waiting for `bmad2pf resume`; see
//! [`follow`](crate::follow) for how it is followed, shown, cancelled with
//! Ctrl-C, and for the exit codes by its status. `--headless`: questions
//! are answered on assumptions at once and listed with the outcome.
//!
//! Exit code: 0 success; 1 the run failed or was cancelled, or the flow is
//! already running for this story in another process
//! (`error[run_in_progress]`); 2 usage or start-up error (an unknown flow,
//! sources that do not load); 3 pending (documents missing: put them into
//! the docs directory and run again); 4 waiting for an answer
//! (`bmad2pf resume`); 130 Ctrl-C (the run is cancelled, its documents
//! kept).

use crate::Outcome;
use crate::follow::{Follow, refused};
use crate::runtime::{BundleArgs, StartError, init_logging, start_engine, tokio_runtime};
use bmad2pf_engine::EngineError;
use bmad2pf_engine::outcome::RunRequest;
use bmad2pf_engine::runs::RunMode;
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
    /// Print the outcome as JSON (the run as `GET /runs/{id}` shows it).
    #[arg(long)]
    json: bool,
    /// Ask no person: agents proceed on assumptions, and their questions
    /// are listed with the outcome. Without it, questions are asked on the
    /// terminal, or off one the run waits for `bmad2pf resume` (exit 4).
    #[arg(long)]
    headless: bool,
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
        let follow = Follow::new(&engine, args.json, &args.bundle);
        let request = RunRequest {
            flow: args.flow.clone(),
            story_id: args.story.clone(),
            input: args.input.clone(),
            force: args.force,
            budget: None,
        };
        let mode = if args.headless {
            RunMode::Headless
        } else {
            RunMode::Interactive
        };
        let started = follow
            .start(|observer| engine.begin_run(request, mode, Some(observer)))
            .await;
        match started {
            Ok(pass) => Ok(follow.until_end(pass).await),
            Err(error @ EngineError::UnknownFlow(_)) => {
                let flows: Vec<&str> = engine.bundle().flows.keys().map(String::as_str).collect();
                Err(StartError {
                    message: format!("{error} (flows: {})", flows.join(", ")),
                    invalid_sources: false,
                })
            }
            Err(error) => Ok(refused(&error)),
        }
    })
}
