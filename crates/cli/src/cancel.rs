//! `bmad2pf cancel RUN_ID`: stop a queued or running run, wherever it runs.
//!
//! The run may execute in any process on the store (a server, another
//! `bmad2pf run`, another replica on Redis), so this does not stop it
//! itself: it stores the request, which that process reads within a
//! second (SPEC 8.2), then waits a few seconds for the run to end and
//! prints how it ended. A run waiting for a person runs nowhere: it is
//! cancelled here, in the store. Exit code: 0 the run is cancelled (or the request
//! is stored and it is still stopping), 1 it had ended otherwise, 2 no such
//! run or a store error.

use crate::Outcome;
use crate::runtime::{BundleArgs, StartError, init_logging, tokio_runtime};
use bmad2pf_engine::Stores;
use bmad2pf_engine::outcome::RunStatus;
use bmad2pf_engine::runs::{Run, cancel_interrupted, check_run_id};
use clap::Args;
use std::time::{Duration, Instant};

/// How long `cancel` waits to see the run end.
const PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run to cancel (`run-` and 16 hex digits).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// Where runtime.yaml is found (the store comes from it): the sources,
    /// the bundle, or `--config FILE` alone.
    #[command(flatten)]
    bundle: BundleArgs,
}

pub fn run(args: &CancelArgs) -> Outcome {
    StartError::finish(cancel(args))
}

fn cancel(args: &CancelArgs) -> Result<Outcome, StartError> {
    let failed = |message: String| StartError {
        message,
        invalid_sources: false,
    };
    check_run_id(&args.run_id).map_err(|e| failed(e.to_string()))?;
    let config = args.bundle.load_config()?;
    init_logging(&config, true);
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let stores = Stores::open(&config)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let read = || async {
            let stored = stores
                .runs
                .get_run(&args.run_id)
                .await
                .map_err(|e| failed(e.to_string()))?
                .ok_or_else(|| failed(format!("no run `{}` in this store", args.run_id)))?;
            Run::from_stored(&stored).map_err(|e| failed(e.to_string()))
        };
        let mut run = read().await?;
        if run.outcome.status == RunStatus::Interrupted {
            // Nobody executes it: it ends here, where it is stored.
            match cancel_interrupted(stores.runs.as_ref(), stores.deliveries.as_ref(), run)
                .await
                .map_err(|e| failed(e.to_string()))?
            {
                Some(cancelled) => return Ok(ended(&cancelled)),
                // A resume got there first: it runs now, somewhere.
                None => run = read().await?,
            }
        }
        if run.outcome.status.has_ended() {
            return Ok(ended(&run));
        }
        stores
            .runs
            .request_cancel(&args.run_id)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let asked = Instant::now();
        while asked.elapsed() < PATIENCE {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let run = read().await?;
            if run.outcome.status.has_ended() {
                return Ok(ended(&run));
            }
        }
        eprintln!(
            "cancel requested: run {} is still stopping (it ends within a second of its process reading the request)",
            args.run_id
        );
        Ok(Outcome::Success)
    })
}

/// Reports a run that has ended: success for `cancelled`.
fn ended(run: &Run) -> Outcome {
    let status = run.outcome.status.as_str();
    if run.outcome.status == RunStatus::Cancelled {
        eprintln!("run {} is cancelled", run.outcome.run_id);
        Outcome::Success
    } else {
        eprintln!(
            "run {} had already ended: {status}; only a queued or running run can be cancelled",
            run.outcome.run_id
        );
        Outcome::Invalid
    }
}
