//! Following a run to its end, for `run` and `resume` alike (SPEC 8.3).
//!
//! A run goes in passes: from its start, or from an answer, to its end or
//! to the next time it waits for a person (`interrupted`). Each pass's
//! progress goes to stderr as it happens. When a pass ends interrupted and
//! a person is at the terminal (stdin and stderr are terminals), the
//! oldest open question is asked inline ([`ask`](crate::ask)), the answer
//! resumes the run in this process, and the next pass is followed, until
//! the run ends. Off a terminal, or when the input ends (Ctrl-D) instead
//! of an answer, the run is left waiting: its open questions are printed
//! with the `bmad2pf resume …` commands that answer them, exit 4.
//!
//! Ctrl-C at any point, while a pass runs or while a question waits,
//! cancels the run (its documents are kept): exit 130.
//!
//! The outcome goes to stdout: the table of [`run_text`](crate::run_text),
//! or with `--json` the run as the API shows it (`GET /runs/{id}`); the
//! open questions of a run left waiting go to stderr. Exit
//! codes by the run's status: 0 `success`, 3 `pending`, 4 `interrupted`,
//! 1 `error` or `cancelled`.

use crate::Outcome;
use crate::ask::Keyboard;
use crate::report::{stderr, stdout};
use crate::run_text::{console_hint, open_interrupts, outcome, progress_line, waiting};
use crate::runtime::BundleArgs;
use bmad2pf_engine::outcome::{RunEvent, RunStatus};
use bmad2pf_engine::runs::{Cancelled, Run};
use bmad2pf_engine::{Engine, EngineError, RunEnd};
use std::future::Future;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A run being followed from this terminal.
pub struct Follow<'a> {
    engine: &'a Engine,
    /// The outcome as the API's JSON instead of the table.
    json: bool,
    /// Where the bundle came from, repeated in the printed `resume` commands.
    bundle: &'a BundleArgs,
    ctrl_c: CtrlC,
}

/// One pass of a run: from its start or an answer to its end or its next
/// question.
pub struct Pass {
    run_id: String,
    end: RunEnd,
    /// Prints the pass's progress; it finishes once the run's task has let
    /// go of the observer, so awaiting it flushes every progress line.
    printer: JoinHandle<()>,
}

impl<'a> Follow<'a> {
    /// Starts listening for Ctrl-C: from here on it cancels the run
    /// instead of killing the process.
    pub fn new(engine: &'a Engine, json: bool, bundle: &'a BundleArgs) -> Self {
        Self {
            engine,
            json,
            bundle,
            ctrl_c: CtrlC::listen(),
        }
    }

    /// Starts a pass with `start` (the engine's `begin_run` or
    /// `resume_run`), handing it the observer whose events are printed.
    pub async fn start<F, Fut>(&self, start: F) -> Result<Pass, EngineError>
    where
        F: FnOnce(UnboundedSender<RunEvent>) -> Fut,
        Fut: Future<Output = Result<(Run, RunEnd), EngineError>>,
    {
        let (events, mut received) = unbounded_channel();
        let printer = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                if let Some(line) = progress_line(&event) {
                    eprintln!("{line}");
                }
            }
        });
        // On an error the observer is dropped with `start`'s future, so
        // the printer ends by itself.
        let (run, end) = start(events).await?;
        Ok(Pass {
            run_id: run.outcome.run_id,
            end,
            printer,
        })
    }

    /// Follows the run from `pass` to its end (module docs), prints it and
    /// tells how the command ends; then lets the engine finish its calls.
    pub async fn until_end(mut self, pass: Pass) -> Outcome {
        let outcome = self.passes(pass).await;
        self.engine.shutdown().await;
        outcome
    }

    async fn passes(&mut self, mut pass: Pass) -> Outcome {
        // Opened at the first question, and kept: it reads stdin ahead.
        let mut keyboard: Option<Keyboard> = None;
        loop {
            let Some(ended) = self.ctrl_c.unless(pass.end.wait()).await else {
                return self.cancel(&pass.run_id.clone(), Some(pass)).await;
            };
            // Every progress line is out before the outcome or a question.
            let _ = pass.printer.await;
            let run = match ended {
                Ok(run) => run,
                Err(error) => return refused(&error),
            };
            let waits = run.outcome.status == RunStatus::Interrupted;
            let question = match open_interrupts(&run).first() {
                Some(&interrupt) if waits && Keyboard::is_available() => interrupt.clone(),
                _ => return self.finish(&run),
            };
            let keyboard = match &mut keyboard {
                Some(keyboard) => keyboard,
                None => match Keyboard::open() {
                    Ok(opened) => keyboard.insert(opened),
                    Err(error) => {
                        eprintln!("error: cannot read the terminal: {error}");
                        return self.finish(&run);
                    }
                },
            };
            let run_id = run.outcome.run_id.clone();
            let answer = match self.ctrl_c.unless(keyboard.ask(&question)).await {
                None => return self.cancel(&run_id, None).await,
                Some(None) => {
                    eprintln!("\nno answer (end of input): the run keeps waiting");
                    return self.finish(&run);
                }
                Some(Some(answer)) => answer,
            };
            pass = match self
                .start(|observer| self.engine.resume_run(&run_id, &answer, Some(observer)))
                .await
            {
                Ok(next) => next,
                Err(error) => return refused(&error),
            };
        }
    }

    /// Ctrl-C: cancels the run (a running `pass` stops within a second; a
    /// run waiting for an answer ends at once), shows how it ended.
    async fn cancel(&self, run_id: &str, pass: Option<Pass>) -> Outcome {
        eprintln!("interrupted: cancelling run {run_id}…");
        let cancelled = self.engine.cancel_run(run_id).await;
        if let Err(error) = &cancelled {
            eprintln!("error: cancelling failed: {error}");
        }
        let run = match (cancelled, pass) {
            (Ok(Cancelled::Ended(run)), _) => Ok(*run),
            (_, Some(mut pass)) => {
                let ended = pass.end.wait().await;
                let _ = pass.printer.await;
                ended
            }
            (_, None) => self.engine.get_run(run_id).await,
        };
        match run {
            Ok(run) => self.show(&run),
            Err(error) => eprintln!("error[{}]: {error}", error.code()),
        }
        Outcome::Interrupted
    }

    /// Shows the run as it stands, and the command's outcome by its status.
    fn finish(&self, run: &Run) -> Outcome {
        self.show(run);
        match run.outcome.status {
            RunStatus::Success => Outcome::Success,
            RunStatus::Pending => Outcome::Pending,
            RunStatus::Interrupted => Outcome::WaitsForAnswer,
            RunStatus::Error | RunStatus::Cancelled | RunStatus::Queued | RunStatus::Running => {
                Outcome::Invalid
            }
        }
    }

    /// The run on stdout (the table, or the API's JSON); the questions it
    /// waits for, and how to answer them, on stderr: they are for the
    /// person, and stdout stays the result alone (one JSON document with
    /// `--json`).
    fn show(&self, run: &Run) {
        let text = if self.json {
            serde_json::to_string_pretty(run).unwrap_or_default()
        } else {
            outcome(run)
        };
        if stdout(&text).is_err() {
            eprintln!("error: cannot write to stdout");
        }
        if run.outcome.status == RunStatus::Interrupted {
            eprintln!("{}", waiting(run, self.bundle).join("\n"));
        }
        if !self.json {
            let server = &self.engine.config().server;
            // Nobody reading stderr any more is no reason to fail the run.
            let _ = stderr(&console_hint(run, self.bundle, server));
        }
    }
}

/// Reports a request the engine refused — a run's start, an answer — as
/// `error[code]: message` on stderr, and how the command ends: 1 when the
/// state of the run or story refuses it (`run_in_progress`,
/// `not_interrupted`, `interrupt_not_open`), 2 when the command names what
/// is not there or does not fit (an unknown run, an invalid id or answer),
/// or a store fails.
pub fn refused(error: &EngineError) -> Outcome {
    eprintln!("error[{}]: {error}", error.code());
    match error {
        EngineError::RunInProgress { .. }
        | EngineError::NotInterrupted { .. }
        | EngineError::InterruptNotOpen { .. } => Outcome::Invalid,
        _ => Outcome::Failure,
    }
}

/// Ctrl-C, heard from when the follow starts to when the process exits.
struct CtrlC(watch::Receiver<bool>);

impl CtrlC {
    fn listen() -> Self {
        let (pressed, heard) = watch::channel(false);
        tokio::spawn(async move {
            match tokio::signal::ctrl_c().await {
                Ok(()) => {
                    pressed.send_replace(true);
                }
                Err(error) => eprintln!("warning: Ctrl-C cannot be heard: {error}"),
            }
            // Kept until nobody listens, so that listeners never see it
            // closed: a failed registration means Ctrl-C never comes.
            pressed.closed().await;
        });
        Self(heard)
    }

    /// `work`'s result, or `None` when Ctrl-C comes first (then `work` is
    /// dropped unfinished).
    async fn unless<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            done = work => Some(done),
            Ok(_) = self.0.wait_for(|pressed| *pressed) => None,
        }
    }
}
