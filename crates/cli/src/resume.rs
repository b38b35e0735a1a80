//! `bmad2pf resume RUN_ID [--interrupt ID] (--answer TEXT | --approve |
//! --reject [--feedback TEXT])`: answers a question of a run that waits
//! for a person (SPEC 8.3), then follows the run like `run` does.
//!
//! The answer goes to `--interrupt`, by default the run's oldest open
//! question. `--answer` answers an `ask` (any non-empty text) or a
//! `choose` (one of the options, exactly); `--approve` and `--reject`
//! decide an `approve`, and only a rejection takes `--feedback` (an
//! approval carries none to the agent). The run then continues in this
//! process, from where it stopped, with the same bundle flags as `run`:
//! further questions are asked on the terminal, or off one the command
//! stops at the next with exit 4 ([`follow`](crate::follow)).
//!
//! Exit code: as `run`'s once the run continues; before that, 1 when the
//! run refuses the answer by its state (`error[not_interrupted]`: it waits
//! for no answer; `error[interrupt_not_open]`: that question is not open),
//! 2 when the command does not fit (`error[not_found]`: no such run;
//! `error[invalid_id]`; `error[invalid_answer]`: an answer of the wrong
//! kind, or not one of the options). Either way the open questions are
//! listed with the commands that answer them.

use crate::Outcome;
use crate::follow::{Follow, refused};
use crate::run_text::{open_interrupts, waiting};
use crate::runtime::{BundleArgs, StartError, init_logging, start_engine, tokio_runtime};
use bmad2pf_engine::EngineError;
use bmad2pf_engine::runs::interrupts::{Answer, Decision};
use clap::{ArgGroup, Args};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("reply").required(true).args(["answer", "approve", "reject"])))]
pub struct ResumeArgs {
    /// The run that waits (`run-` and 16 hex digits).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// The question to answer (`int-…`; default: the oldest open one).
    #[arg(long, value_name = "ID")]
    interrupt: Option<String>,
    /// The answer to an `ask` question, or the chosen option of a `choose`.
    #[arg(long, value_name = "TEXT")]
    answer: Option<String>,
    /// Approve (an `approve` question).
    #[arg(long)]
    approve: bool,
    /// Reject (an `approve` question).
    #[arg(long)]
    reject: bool,
    /// Why it is rejected; the agent receives `rejected: <feedback>`.
    #[arg(long, value_name = "TEXT", requires = "reject")]
    feedback: Option<String>,
    /// Print the outcome as JSON (the run as `GET /runs/{id}` shows it).
    #[arg(long)]
    json: bool,
    /// The bundle the run continues with: as given to `run`.
    #[command(flatten)]
    bundle: BundleArgs,
}

pub fn run(args: &ResumeArgs) -> Outcome {
    StartError::finish(execute(args))
}

fn execute(args: &ResumeArgs) -> Result<Outcome, StartError> {
    let loaded = args.bundle.load()?;
    init_logging(&loaded.config, true);
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let engine = start_engine(loaded).await?;
        let follow = Follow::new(&engine, args.json, &args.bundle);
        let run = match engine.get_run(&args.run_id).await {
            Ok(run) => run,
            Err(error) => return Ok(refused(&error)),
        };
        // A run with no open question is not interrupted, which the engine
        // says (`not_interrupted`) whatever the id.
        let interrupt_id = args
            .interrupt
            .clone()
            .or_else(|| open_interrupts(&run).first().map(|i| i.id.clone()))
            .unwrap_or_default();
        let decision = match (args.approve, args.reject) {
            (true, _) => Some(Decision::Approve),
            (_, true) => Some(Decision::Reject),
            _ => None,
        };
        let answer = Answer {
            interrupt_id,
            answer: args.answer.clone(),
            decision,
            feedback: args.feedback.clone(),
        };
        let started = follow
            .start(|observer| engine.resume_run(&args.run_id, &answer, Some(observer)))
            .await;
        match started {
            Ok(pass) => Ok(follow.until_end(pass).await),
            Err(error) => {
                let outcome = refused(&error);
                if matches!(
                    error,
                    EngineError::InterruptNotOpen { .. } | EngineError::InvalidAnswer { .. }
                ) {
                    eprintln!("{}", waiting(&run, &args.bundle).join("\n"));
                }
                Ok(outcome)
            }
        }
    })
}
