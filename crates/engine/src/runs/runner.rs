//! The runs of this process, and the clients who watch runs.
//!
//! [`Runner`] starts runs: each is stored `queued` with its (flow, story)
//! claim, waits for one of `runs.max_running_runs` slots (first come,
//! first served, resumed runs first: [`Slots`]), runs, and stores its ending
//! with its record in one write. Beyond `runs.max_queued_runs` waiting, a
//! new run is refused (`queue_full`).
//!
//! Watching works for a run of any process on the store: a run of this
//! process is followed through its [`EventLog`] (live, no polling); a run
//! of another process (a CLI run beside a server, another replica on
//! Redis) by reading the store every [`POLL`].
//!
//! Two background tasks per runner: every [`CANCEL_POLL`] it reads which
//! of its runs a client (through any process) asked to cancel; every
//! [`SWEEP`], and at start, it looks for runs whose process died — their
//! claim expired — and marks the running ones `error` /
//! `interrupted_by_restart` (a mid-flight agent may have paid for a reply
//! or run a tool the store never saw, so it is never replayed); a server
//! also takes over the queued ones, which had not started.
//!
//! A run whose agent asks a person ends its pass `interrupted`: its
//! checkpoint is stored with it, its slot freed, its claim kept with no
//! expiry. Any process resumes it ([`Runner::resume`]): the answer is
//! recorded and the run queued again in one compare-and-set, then it runs
//! here from its checkpoint. Cancelling an interrupted run, or its question
//! expiring (`runs.interrupt_timeout_s`, checked by the sweep), ends it
//! where it is stored.
//!
//! At a shutdown (SIGTERM, SPEC 8.1, [`Runner::shut_down`]) no queued run
//! starts: each stays queued in the store with its claim given up, for the
//! next process on the store to take over. Running runs get
//! `runs.shutdown_grace_s` to end; the rest are then stopped and marked
//! `error` / `interrupted_by_restart` with `details.graceful`, and the
//! streams of clients following runs end (they resume on another process
//! with `Last-Event-ID`).

use super::claim::Claim;
use super::interrupts::{Answer, Decision, Interrupt, InterruptSource, InterruptStatus};
use super::log::{EventLog, RunChange};
use super::run_id::new_run_id;
use super::slots::{Line, Slot, Slots};
use super::webhooks::{self, Target, WebhookEvent, Webhooks};
use super::{Budget, Run, RunMode, RunSummary, RunWebhook};
use crate::core::Core;
use crate::error::EngineError;
use crate::failure::{HaltCode, panic_message};
use crate::outcome::{
    AgentResult, AgentRunStatus, ProgressStatus, RunEvent, RunOutcome, RunRequest, RunStatus,
};
use crate::run::checkpoint::Checkpoint;
use crate::run::gate::GateDecision;
use crate::run::{Resumption, RunPlan, RunState, run_flow};
use crate::store::{
    Created, DeliveryStore, EVENTS_PAGE, RunQuery, RunStore, StoreError, StoredEvent, StoredRun,
    now_ms,
};
use crate::usage::{CallRecord, UsageTotals};
use futures::FutureExt;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{mpsc, watch};

/// How often a run of another process is re-read while watched.
const POLL: Duration = Duration::from_millis(200);
/// How often this process reads the cancel requests of its runs (SPEC 8.2: within 1 s).
const CANCEL_POLL: Duration = Duration::from_millis(500);
/// How often runs whose process died are looked for.
const SWEEP: Duration = Duration::from_secs(10);
/// How long stopped runs get to store their endings at a shutdown (a
/// cancel ends a run within a second).
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How often a shutdown looks whether this process's runs have ended.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// Most runs a listing returns.
pub const MAX_PAGE: usize = 100;
/// New ids a run is given before storing it fails: one is taken only when
/// another process made the same id in the same millisecond.
const ID_DRAWS: usize = 8;

/// Where this process is in a shutdown (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Queued runs start as slots free.
    Serving,
    /// No queued run starts; running runs have the grace period.
    Draining,
    /// The grace period is over: the runs still running are stopped.
    Stopping,
    /// This process's runs have ended; so do the streams of their followers.
    Stopped,
}

/// Completes once the shutdown has reached `at`; never, while serving.
async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    if phase.wait_for(|now| *now >= at).await.is_err() {
        // The runner is gone, and with it any shutdown.
        std::future::pending::<()>().await;
    }
}

/// A run this process executes.
struct LiveRun {
    log: EventLog,
    /// Set to ask the run to stop.
    cancel: watch::Sender<bool>,
    /// Whether a shutdown, not a client, asked it to stop.
    stopped_by_shutdown: AtomicBool,
    /// The run, once it has ended.
    ended: watch::Sender<Option<Arc<Run>>>,
}

/// Which runs to list (`GET /runs`).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub story_id: Option<String>,
    pub flow: Option<String>,
    /// Any of these; empty: any status.
    pub statuses: Vec<RunStatus>,
    /// 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// What a run's LLM calls used (`GET /runs/{id}/usage`, SPEC 8.4).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunUsage {
    pub run_id: String,
    pub totals: UsageTotals,
    pub by_agent: BTreeMap<String, UsageTotals>,
    /// By the model as configured.
    pub by_model: BTreeMap<String, UsageTotals>,
    /// Each call, oldest first, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<CallRecord>>,
}

/// What a cancel did.
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// The run ended at once (it was queued, or already cancelled).
    Ended(Box<Run>),
    /// The run is running; it stops within a second.
    Requested { run_id: String },
}

pub(crate) struct Runner {
    core: Arc<Core>,
    /// Flow name → its PocketFlow graph.
    graphs: BTreeMap<String, Arc<pocketflow::Flow<RunState>>>,
    live: Mutex<HashMap<String, Arc<LiveRun>>>,
    slots: Arc<Slots>,
    /// Runs of this process waiting for a slot.
    queued: AtomicUsize,
    /// Whether this process takes over the queued runs of a dead one: a
    /// server does; a `bmad2pf run` does not, as it exits after its own
    /// run and would leave them unfinished.
    takes_over: AtomicBool,
    /// The webhooks of its runs (SPEC 8.5).
    webhooks: Arc<Webhooks>,
    phase: watch::Sender<Phase>,
}

impl Runner {
    pub fn new(
        core: Arc<Core>,
        graphs: BTreeMap<String, Arc<pocketflow::Flow<RunState>>>,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        let slots = Slots::new(core.config.runs.max_running_runs);
        Self {
            core,
            graphs,
            live: Mutex::new(HashMap::new()),
            slots,
            queued: AtomicUsize::new(0),
            takes_over: AtomicBool::new(false),
            webhooks,
            phase: watch::Sender::new(Phase::Serving),
        }
    }

    /// Makes this process take over the queued runs of dead ones, and
    /// send webhooks (for the same reason: see `webhooks/mod.rs`).
    pub fn take_over_queued_runs(&self) {
        self.takes_over.store(true, Ordering::Relaxed);
        self.webhooks.start_sender();
    }

    /// This process's runs now: queued (waiting for a slot) and running.
    pub fn runs_now(&self) -> BTreeMap<&'static str, u64> {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        BTreeMap::from([
            (
                RunStatus::Queued.as_str(),
                count(self.queued.load(Ordering::Relaxed)),
            ),
            (RunStatus::Running.as_str(), count(self.slots.held())),
        ])
    }

    pub fn has_flow(&self, flow: &str) -> bool {
        self.graphs.contains_key(flow)
    }

    fn live_run(&self, run_id: &str) -> Option<Arc<LiveRun>> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run_id)
            .cloned()
    }

    /// Starts the background tasks (see the module docs). They hold the
    /// runner weakly, so they end once it is dropped: when its engine is,
    /// and the last of its runs has ended (a run outlives an engine
    /// replaced by `serve --watch`, and stays cancellable).
    pub fn start_background(self: &Arc<Self>) {
        {
            let runner = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CANCEL_POLL).await;
                    let Some(runner) = runner.upgrade() else {
                        return;
                    };
                    runner.read_cancel_requests().await;
                }
            });
        }
        {
            let runner = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    {
                        let Some(runner) = runner.upgrade() else {
                            return;
                        };
                        if let Err(error) = runner.sweep().await {
                            tracing::warn!(%error, "looking for runs of dead processes failed");
                        }
                    }
                    tokio::time::sleep(SWEEP).await;
                }
            });
        }
    }

    /// Stores a new run `queued` and starts it; the run as stored.
    /// `observer` gets the run's events as they happen (the CLI's progress);
    /// `webhook` is told when it ends (SPEC 8.5).
    pub async fn submit(
        self: &Arc<Self>,
        request: RunRequest,
        mode: RunMode,
        observer: Option<UnboundedSender<RunEvent>>,
        webhook: Option<Target>,
    ) -> Result<(Run, watch::Receiver<Option<Arc<Run>>>), EngineError> {
        let mut request = request;
        request.budget = self.budget_of(&request)?;
        let now = now_ms();
        let run_id = new_run_id();
        let runs = &self.core.runs;
        let max_queued = self.core.config.runs.max_queued_runs;
        if self.queued.load(Ordering::Relaxed) >= max_queued {
            // A client retrying a lost request learns its run rather than
            // `queue_full`: the story's claim is looked at first.
            let (flow, story) = (&request.flow, &request.story_id);
            return match runs.claim(flow, story, &run_id).await? {
                Some(holder) => Err(self.in_progress(holder).await?),
                None => {
                    runs.release(flow, story, &run_id).await?;
                    Err(EngineError::QueueFull(max_queued))
                }
            };
        }
        let mut run = Run {
            outcome: RunOutcome {
                run_id,
                status: RunStatus::Queued,
                results: BTreeMap::new(),
                pending_docs: Vec::new(),
                errors: BTreeMap::new(),
                error_code: None,
                duration_ms: 0,
            },
            flow: request.flow.clone(),
            story_id: request.story_id.clone(),
            input: request.input.clone(),
            force: request.force,
            mode,
            step: None,
            running_agents: Vec::new(),
            interrupts: Vec::new(),
            open_questions: Vec::new(),
            usage: UsageTotals::default(),
            budget: request.budget,
            details: None,
            webhook: webhook.as_ref().map(|target| RunWebhook {
                url: target.masked(),
                deliveries: Vec::new(),
            }),
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
        };
        let next_event = self.store_new(&mut run, webhook.as_ref()).await?;
        let run_id = run.outcome.run_id.clone();
        let claim = Claim::held(
            runs.clone(),
            run.flow.clone(),
            run.story_id.clone(),
            run_id.clone(),
        );
        tracing::info!(run_id, flow = run.flow, story = run.story_id, "run queued");
        let plan = RunPlan {
            run_id,
            request,
            mode,
            resumption: None,
        };
        let ended = self.launch(run.clone(), plan, claim, next_event, observer);
        Ok((run, ended))
    }

    /// Stores a new `run` with its claim and its first event (`queued`),
    /// drawing another id while its id is taken (see `run_id.rs`), and
    /// returns the id of its next event. The webhook target first: a run is
    /// never stored without the webhook it was accepted with.
    async fn store_new(&self, run: &mut Run, webhook: Option<&Target>) -> Result<u64, EngineError> {
        let queued = numbered(
            &[RunEvent::Status {
                status: RunStatus::Queued,
                error_code: None,
                at: run.created_at,
            }],
            1,
        );
        for _ in 0..ID_DRAWS {
            let run_id = run.outcome.run_id.clone();
            let registered = match webhook {
                Some(target) => self.webhooks.register(&run_id, target).await?,
                None => true,
            };
            if registered {
                let created = self
                    .core
                    .runs
                    .create_run(&run.to_stored()?, &queued)
                    .await?;
                if created != Created::Stored && webhook.is_some() {
                    self.webhooks.forget(&run_id).await;
                }
                match created {
                    Created::Stored => return Ok(queued.len() as u64 + 1),
                    Created::Held(holder) => return Err(self.in_progress(holder).await?),
                    Created::IdTaken => {}
                }
            }
            tracing::debug!(run_id, "the run id is taken; drawing another");
            run.outcome.run_id = new_run_id();
        }
        Err(EngineError::Internal(format!(
            "{ID_DRAWS} new run ids in a row were taken in the store"
        )))
    }

    /// The budget a run of `request` runs under: its own, else the
    /// defaults of runtime.yaml `runs`. A budget in dollars needs a price
    /// for every model the flow's agents use (else `budget_unenforceable`).
    fn budget_of(&self, request: &RunRequest) -> Result<Option<Budget>, EngineError> {
        if let Some((field, message)) = request.budget.as_ref().and_then(Budget::problem) {
            return Err(EngineError::InvalidRequest { field, message });
        }
        let config = &self.core.config;
        let budget = request
            .budget
            .filter(|b| !b.is_empty())
            .or(Some(Budget {
                usd: config.runs.budget_usd,
                tokens: config.runs.budget_tokens,
            }))
            .filter(|b| !b.is_empty());
        if budget.is_some_and(|b| b.usd.is_some())
            && let Some(flow) = self.core.bundle.flows.get(&request.flow)
        {
            let agents = flow.steps.iter().flat_map(|step| &step.agents);
            for agent in agents.filter_map(|id| self.core.agent(id)) {
                let model = self.core.llm_for(agent).map_err(EngineError::Config)?.model;
                if !config.pricing.contains_key(&model) {
                    return Err(EngineError::BudgetUnenforceable(model));
                }
            }
        }
        Ok(budget)
    }

    /// The refusal of a run whose (flow, story) `holder` holds.
    async fn in_progress(&self, holder: String) -> Result<EngineError, StoreError> {
        let status = self.core.runs.get_run(&holder).await?.map(|s| s.status);
        Ok(EngineError::RunInProgress {
            run_id: holder,
            status,
        })
    }

    /// Registers a queued run, stored with its `queued` event, and spawns
    /// its task; its `ended` receiver (told when the run ends or waits for a
    /// person). `next_event` is the id of the run's next event.
    fn launch(
        self: &Arc<Self>,
        run: Run,
        plan: RunPlan,
        claim: Claim,
        next_event: u64,
        observer: Option<UnboundedSender<RunEvent>>,
    ) -> watch::Receiver<Option<Arc<Run>>> {
        let run_id = run.outcome.run_id.clone();
        let log = EventLog::start(
            self.core.runs.clone(),
            run_id.clone(),
            next_event,
            run.usage,
        );
        let (cancel, _) = watch::channel(false);
        let (ended, ended_rx) = watch::channel(None);
        let live = Arc::new(LiveRun {
            log,
            cancel,
            stopped_by_shutdown: AtomicBool::new(false),
            ended,
        });
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run_id, live.clone());
        self.queued.fetch_add(1, Ordering::Relaxed);
        claim.when_lost({
            let live = live.clone();
            move || {
                let _ = live.cancel.send(true);
            }
        });
        tokio::spawn(self.clone().drive(run, plan, claim, live, observer));
        ended_rx
    }

    /// A run's life after it is queued: a slot (or a cancel), the flow,
    /// the end — or a stop to wait for a person.
    async fn drive(
        self: Arc<Self>,
        mut run: Run,
        plan: RunPlan,
        claim: Claim,
        live: Arc<LiveRun>,
        observer: Option<UnboundedSender<RunEvent>>,
    ) {
        let run_id = run.outcome.run_id.clone();
        let mut cancel = live.cancel.subscribe();
        let line = match plan.resumption {
            Some(_) => Line::Resumed,
            None => Line::New,
        };
        let mut phase = self.phase.subscribe();
        /// How a run's wait in the queue ends.
        enum Wait {
            Slot(Slot),
            Cancelled,
            ShuttingDown,
        }
        let waited = tokio::select! {
            biased;
            Ok(_) = cancel.wait_for(|asked| *asked) => Wait::Cancelled,
            () = reached(&mut phase, Phase::Draining) => Wait::ShuttingDown,
            slot = self.slots.acquire(line) => Wait::Slot(slot),
        };
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let permit = match waited {
            Wait::Slot(slot) => Some(slot),
            Wait::Cancelled => None,
            Wait::ShuttingDown => return self.leave_queued(run, claim, &live).await,
        };
        let mut change = RunChange::End(None);
        match (permit, self.graphs.get(&run.flow)) {
            (Some(permit), Some(graph)) => {
                let now = now_ms();
                run.outcome.status = RunStatus::Running;
                run.started_at.get_or_insert(now);
                run.updated_at = now;
                let running = RunEvent::Status {
                    status: RunStatus::Running,
                    error_code: None,
                    at: now,
                };
                // Not waited for: the run's first events go in the same write.
                match run.to_stored() {
                    Ok(stored) => live.log.update_run(stored, vec![running]),
                    Err(error) => tracing::error!(run_id, %error, "encoding the run failed"),
                }
                tracing::info!(run_id, "run started");
                // A bug that panics inside the flow ends this run as an
                // internal error; uncaught, it would end this task and
                // leave the run `running` and its waiters waiting forever.
                let finished = AssertUnwindSafe(run_flow(
                    &self.core,
                    graph,
                    plan,
                    observer,
                    live.log.clone(),
                    cancel,
                ))
                .catch_unwind()
                .await;
                drop(permit);
                match finished {
                    Ok(finished) => {
                        run.outcome = finished.outcome;
                        run.interrupts = finished.interrupts;
                        run.open_questions = finished.open_questions;
                        change = match finished.checkpoint.map(|c| c.encode()) {
                            Some(Ok(checkpoint)) => RunChange::Suspend(checkpoint),
                            Some(Err(error)) => {
                                run.outcome.status = RunStatus::Error;
                                run.outcome.error_code = Some(error.code().into());
                                run.outcome.errors.insert("run".into(), error.to_string());
                                RunChange::End(None)
                            }
                            None => RunChange::End(finished.record),
                        };
                    }
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        tracing::error!(run_id, panic = message, "the run's execution panicked");
                        run.outcome.status = RunStatus::Error;
                        run.outcome.error_code = Some(HaltCode::Internal.as_str().into());
                        run.outcome
                            .errors
                            .insert("run".into(), format!("internal error: {message}"));
                    }
                }
            }
            (None, _) => run.outcome.status = RunStatus::Cancelled,
            (Some(_), None) => {
                run.outcome.status = RunStatus::Error;
                run.outcome.error_code = Some(HaltCode::BundleChanged.as_str().into());
            }
        }
        let now = now_ms();
        let progress = live.log.progress();
        run.step = progress.step;
        run.usage = progress.usage;
        run.running_agents.clear();
        run.updated_at = now;
        if run.outcome.status == RunStatus::Cancelled
            && live.stopped_by_shutdown.load(Ordering::Relaxed)
        {
            stopped_by_shutdown(&mut run);
        }
        let status = run.outcome.status;
        let mut events = vec![RunEvent::Status {
            status,
            error_code: run.outcome.error_code.clone(),
            at: now,
        }];
        let suspended = matches!(change, RunChange::Suspend(_));
        if suspended {
            let open: Vec<_> = run.interrupts.iter().filter(|i| i.is_open()).collect();
            let open = serde_json::to_value(open).ok();
            self.webhooks
                .enqueue(&mut run, WebhookEvent::RunInterrupted, open)
                .await;
        } else {
            run.finished_at = Some(now);
            self.core.counters.run_finished(status);
            self.webhooks
                .enqueue(&mut run, WebhookEvent::RunFinished, None)
                .await;
            events.push(RunEvent::Done(Box::new(run.clone())));
        }
        let written = match run.to_stored() {
            Ok(stored) => live.log.write_run(stored, events, change).await,
            Err(error) => Err(error),
        };
        match written {
            // Ended, the claim was released; waiting, it is kept for the resume.
            Ok(()) => claim.released(),
            // Ended meanwhile by another process, which found this one's
            // claim expired: its ending stands, and is what this run's
            // waiters are told, not an outcome the store never took.
            Err(error @ StoreError::Conflict { .. }) => {
                tracing::warn!(run_id, %error, "the run's ending was not stored");
                let stored = self.core.runs.get_run(&run_id).await.ok().flatten();
                match stored.as_ref().map(Run::from_stored) {
                    Some(Ok(ended)) => run = ended,
                    _ => {
                        run.outcome
                            .errors
                            .insert("run_record".into(), error.to_string());
                    }
                }
            }
            Err(error) => {
                // The claim is released as `claim` drops; the stored run
                // stays `running` until a sweep marks it.
                tracing::error!(run_id, %error, "storing the run's end failed; the next run will redo this one");
                run.outcome
                    .errors
                    .insert("run_record".into(), error.to_string());
            }
        }
        tracing::info!(
            run_id,
            status = status.as_str(),
            duration_ms = run.outcome.duration_ms,
            "run finished its pass"
        );
        self.pass_over(&live, run);
    }

    /// A run's pass in this process is over: it leaves the live runs, and
    /// whoever waits for it gets it as it stands.
    fn pass_over(&self, live: &LiveRun, run: Run) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&run.outcome.run_id);
        live.ended.send_replace(Some(Arc::new(run)));
    }

    /// A queued run at a shutdown: it stays queued in the store and its
    /// claim is given up, so the next process on the store takes it over
    /// (the sweep); whoever waits for it gets it as it stands.
    async fn leave_queued(&self, run: Run, claim: Claim, live: &LiveRun) {
        claim.give_up().await;
        tracing::info!(
            run_id = run.outcome.run_id,
            "shutting down: the run stays queued for the next process"
        );
        self.pass_over(live, run);
    }

    /// Shuts this process's runs down (SIGTERM; module docs): starts no
    /// queued run, gives running runs `grace` to end, then stops and marks
    /// the rest. Returns once they have ended (or [`STOP_WAIT`] after they
    /// were asked to stop).
    pub async fn shut_down(&self, grace: Duration) {
        self.phase.send_replace(Phase::Draining);
        let running = self.slots.held();
        if running > 0 {
            tracing::info!(
                running,
                ?grace,
                "shutting down: running runs have the grace period to end"
            );
        }
        self.all_ended_within(grace).await;
        self.phase.send_replace(Phase::Stopping);
        let left: Vec<Arc<LiveRun>> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        if !left.is_empty() {
            tracing::warn!(
                runs = left.len(),
                "shutting down: stopping the runs still running (interrupted_by_restart)"
            );
        }
        for live in left {
            live.stopped_by_shutdown.store(true, Ordering::Relaxed);
            live.cancel.send_replace(true);
        }
        self.all_ended_within(STOP_WAIT).await;
        self.phase.send_replace(Phase::Stopped);
    }

    /// Waits until this process runs nothing, at most `limit`.
    async fn all_ended_within(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        // Polled: this runs once, at a shutdown.
        while !self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(SHUTDOWN_POLL).await;
        }
    }

    /// The run as stored, with what a run of this process is doing now.
    pub async fn get(&self, run_id: &str) -> Result<Run, EngineError> {
        check_run_id(run_id)?;
        let stored = self
            .core
            .runs
            .get_run(run_id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(run_id.to_string()))?;
        let mut run = Run::from_stored(&stored)?;
        if let Some(live) = self.live_run(run_id)
            && !run.outcome.status.has_ended()
        {
            let progress = live.log.progress();
            run.step = progress.step;
            run.running_agents = progress.running_agents.into_iter().collect();
            run.usage = progress.usage;
        }
        self.webhooks.show_deliveries(&mut run).await?;
        Ok(run)
    }

    /// A page of runs, newest first.
    pub async fn list(&self, filter: RunFilter) -> Result<RunPage, EngineError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let before = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let query = RunQuery {
            story_id: filter.story_id,
            flow: filter.flow,
            statuses: filter
                .statuses
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
            before,
            limit: limit + 1,
        };
        let mut stored = self.core.runs.list_runs(&query).await?;
        let next_cursor = if stored.len() > limit {
            stored.truncate(limit);
            stored
                .last()
                .map(|last| encode_cursor(last.created_at, &last.run_id))
        } else {
            None
        };
        // A damaged record is left out (and logged), not allowed to hide
        // the others; reading it by id still says what is wrong with it.
        let runs = stored
            .iter()
            .filter_map(|s| match Run::from_stored(s) {
                Ok(run) => Some(RunSummary::from(run)),
                Err(error) => {
                    tracing::error!(run_id = s.run_id, %error, "a stored run is damaged; left out of the listing");
                    None
                }
            })
            .collect();
        Ok(RunPage { runs, next_cursor })
    }

    /// The run's events after id `after`: those stored, then live ones,
    /// until `done` (see the module docs). The receiver ends with the run,
    /// or early when the store fails.
    pub async fn follow(
        &self,
        run_id: &str,
        after: u64,
    ) -> Result<mpsc::Receiver<Arc<StoredEvent>>, EngineError> {
        check_run_id(run_id)?;
        let runs = self.core.runs.clone();
        let mut live = self.live_run(run_id).map(|live| live.log.subscribe());
        // Stored events prove the run exists: only a follow that finds
        // none (and no live run) reads the run itself.
        let mut first_page = Some(runs.events_after(run_id, after, EVENTS_PAGE).await?);
        if first_page.as_ref().is_some_and(Vec::is_empty)
            && live.is_none()
            && runs.get_run(run_id).await?.is_none()
        {
            return Err(EngineError::UnknownRun(run_id.to_string()));
        }
        let run_id = run_id.to_string();
        let (tx, rx) = mpsc::channel(64);
        let mut phase = self.phase.subscribe();
        let forward = async move {
            let mut last = after;
            let mut ended_seen = false;
            loop {
                // What is stored after `last`.
                loop {
                    let read = match first_page.take() {
                        Some(page) => Ok(page),
                        None => runs.events_after(&run_id, last, EVENTS_PAGE).await,
                    };
                    let page = match read {
                        Ok(page) => page,
                        Err(error) => {
                            tracing::warn!(run_id, %error, "reading a run's events failed");
                            return;
                        }
                    };
                    let full = page.len() == EVENTS_PAGE;
                    for event in page {
                        last = event.id;
                        let end = is_last(&event);
                        if tx.send(Arc::new(event)).await.is_err() || end {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
                match &mut live {
                    Some(events) => loop {
                        match events.recv().await {
                            Ok(event) if event.id <= last => {}
                            Ok(event) => {
                                last = event.id;
                                let end = is_last(&event);
                                if tx.send(event).await.is_err() || end {
                                    return;
                                }
                            }
                            // Fell behind: read the rest from the store.
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            // The run ended here: its last events are stored.
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                live = None;
                                break;
                            }
                        }
                    },
                    None => {
                        if ended_seen {
                            return;
                        }
                        match runs.get_run(&run_id).await {
                            Ok(Some(stored))
                                if RunStatus::parse(&stored.status)
                                    .is_none_or(RunStatus::has_ended) =>
                            {
                                ended_seen = true
                            }
                            Ok(Some(_)) => tokio::time::sleep(POLL).await,
                            Ok(None) | Err(_) => return,
                        }
                    }
                }
            }
        };
        tokio::spawn(async move {
            // At a shutdown the stream ends once this process's runs have:
            // the client resumes on another process with `Last-Event-ID`.
            tokio::select! {
                () = forward => {}
                () = reached(&mut phase, Phase::Stopped) => {}
            }
        });
        Ok(rx)
    }

    /// The run once it has ended or waits for a person, or as it is after `timeout`.
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Result<Run, EngineError> {
        let run = self.get(run_id).await?;
        if run.outcome.status.is_settled() {
            return Ok(run);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(live) = self.live_run(run_id) {
            let mut ended = live.ended.subscribe();
            if let Ok(Ok(run)) =
                tokio::time::timeout_at(deadline, ended.wait_for(Option::is_some)).await
                && let Some(run) = run.as_ref()
            {
                return Ok(run.as_ref().clone());
            }
            return self.get(run_id).await;
        }
        loop {
            let run = self.get(run_id).await?;
            if run.outcome.status.is_settled() || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL)).await;
        }
    }

    /// Asks a run to stop (SPEC 8.2).
    pub async fn cancel(&self, run_id: &str) -> Result<Cancelled, EngineError> {
        let run = self.get(run_id).await?;
        match run.outcome.status {
            RunStatus::Cancelled => return Ok(Cancelled::Ended(Box::new(run))),
            RunStatus::Interrupted => {
                let ending = Ending {
                    status: RunStatus::Cancelled,
                    error_code: None,
                    interrupts: InterruptStatus::Cancelled,
                };
                return match self.end_interrupted(run, ending).await? {
                    Some(run) => Ok(Cancelled::Ended(Box::new(run))),
                    // A resume got there first: cancel the run it became.
                    None => Box::pin(self.cancel(run_id)).await,
                };
            }
            status if status.has_ended() => {
                return Err(EngineError::RunNotActive {
                    run_id: run_id.to_string(),
                    status: status.as_str().to_string(),
                });
            }
            _ => {}
        }
        if let Some(live) = self.live_run(run_id) {
            let mut ended = live.ended.subscribe();
            live.cancel.send_replace(true);
            if run.outcome.status == RunStatus::Queued {
                // Not started: it ends at once.
                if let Ok(Ok(run)) =
                    tokio::time::timeout(Duration::from_secs(5), ended.wait_for(Option::is_some))
                        .await
                    && let Some(run) = run.as_ref()
                {
                    return Ok(Cancelled::Ended(Box::new(run.as_ref().clone())));
                }
            }
        } else {
            // Another process runs it and reads the request within a second.
            self.core.runs.request_cancel(run_id).await?;
        }
        Ok(Cancelled::Requested {
            run_id: run_id.to_string(),
        })
    }

    /// Answers one open question of an interrupted run and queues it again
    /// to continue here (module docs); the run as queued, or as it ended
    /// when its flow or agent is gone from the bundle (`bundle_changed`).
    /// `observer` gets its events as they happen.
    pub async fn resume(
        self: &Arc<Self>,
        run_id: &str,
        answer: &Answer,
        observer: Option<UnboundedSender<RunEvent>>,
    ) -> Result<(Run, watch::Receiver<Option<Arc<Run>>>), EngineError> {
        let mut run = self.get(run_id).await?;
        if run.outcome.status != RunStatus::Interrupted {
            return Err(EngineError::NotInterrupted {
                run_id: run_id.to_string(),
                status: run.outcome.status.as_str().to_string(),
            });
        }
        let open: Vec<String> = run
            .interrupts
            .iter()
            .filter(|i| i.is_open())
            .map(|i| i.id.clone())
            .collect();
        let not_open = || EngineError::InterruptNotOpen {
            run_id: run_id.to_string(),
            interrupt_id: answer.interrupt_id.clone(),
            open: open.clone(),
        };
        let interrupt = run
            .interrupts
            .iter_mut()
            .find(|i| i.id == answer.interrupt_id && i.is_open())
            .ok_or_else(not_open)?;
        let reply = interrupt
            .reply_to(answer)
            .map_err(|e| EngineError::InvalidAnswer {
                message: e.message,
                options: e.options,
            })?;
        let now = now_ms();
        interrupt.status = InterruptStatus::Answered;
        interrupt.answered_at = Some(now);
        interrupt.answer = Some(reply);
        let interrupt = interrupt.clone();
        // A resumed run waits for a slot like a new one, so it counts
        // against the same bound; refused, the run still waits for its answer.
        let max_queued = self.core.config.runs.max_queued_runs;
        if self.queued.load(Ordering::Relaxed) >= max_queued {
            return Err(EngineError::QueueFull(max_queued));
        }
        let text = self.core.runs.checkpoint(run_id).await?.ok_or_else(|| {
            StoreError::corrupt(format!("run `{run_id}`"), "its checkpoint is missing")
        })?;
        let checkpoint = Checkpoint::decode(run_id, &text)?;
        if !self.graphs.contains_key(&run.flow) || !self.still_asks(&run.flow, &interrupt) {
            let ending = Ending {
                status: RunStatus::Error,
                error_code: Some(HaltCode::BundleChanged),
                interrupts: InterruptStatus::Cancelled,
            };
            let run = self
                .end_interrupted(run, ending)
                .await?
                .ok_or_else(not_open)?;
            let (_, ended) = watch::channel(Some(Arc::new(run.clone())));
            return Ok((run, ended));
        }
        run.outcome.status = RunStatus::Queued;
        run.updated_at = now;
        let next_event = next_event_id(self.core.runs.as_ref(), run_id).await?;
        let queued = RunEvent::Status {
            status: RunStatus::Queued,
            error_code: None,
            at: now,
        };
        let events = numbered(&[queued], next_event);
        if !self
            .core
            .runs
            .resume_run(&run.to_stored()?, &events)
            .await?
        {
            // Another answer, or a cancel, got there first.
            let now_is = self.get(run_id).await?.outcome.status;
            return Err(EngineError::NotInterrupted {
                run_id: run_id.to_string(),
                status: now_is.as_str().to_string(),
            });
        }
        let claim = Claim::held(
            self.core.runs.clone(),
            run.flow.clone(),
            run.story_id.clone(),
            run_id.to_string(),
        );
        tracing::info!(run_id, interrupt = answer.interrupt_id, "run resumed");
        let plan = plan_of(
            &run,
            Some(resumption(checkpoint, &run.interrupts, &interrupt)),
        );
        let ended = self.launch(run.clone(), plan, claim, next_event + 1, observer);
        Ok((run, ended))
    }

    /// Whether this bundle still has what raised `interrupt` in `flow`: the
    /// agent that asked, or the step's gate.
    fn still_asks(&self, flow: &str, interrupt: &Interrupt) -> bool {
        match interrupt.source {
            InterruptSource::Tool => self.core.agent(&interrupt.agent).is_some(),
            InterruptSource::Gate => self.core.bundle.flows.get(flow).is_some_and(|flow| {
                flow.steps
                    .iter()
                    .any(|step| step.id == interrupt.step && step.gate.is_some())
            }),
        }
    }

    /// [`end_interrupted`] on this process's store, counted.
    async fn end_interrupted(&self, run: Run, ending: Ending) -> Result<Option<Run>, EngineError> {
        let outbox = self.webhooks.store();
        let ended = end_interrupted(self.core.runs.as_ref(), outbox, run, ending).await?;
        if let Some(run) = &ended {
            self.core.counters.run_finished(run.outcome.status);
        }
        Ok(ended)
    }

    /// What a run's LLM calls used, in all and per agent and model, read
    /// from its stored `usage` events; each call too when `calls`.
    pub async fn usage(&self, run_id: &str, calls: bool) -> Result<RunUsage, EngineError> {
        self.get(run_id).await?;
        let records: Vec<CallRecord> = self
            .stored_events(run_id)
            .await?
            .iter()
            .filter(|event| event.event == "usage")
            .filter_map(|event| serde_json::from_str(&event.data).ok())
            .collect();
        let mut usage = RunUsage {
            run_id: run_id.to_string(),
            totals: UsageTotals::default(),
            by_agent: BTreeMap::new(),
            by_model: BTreeMap::new(),
            calls: None,
        };
        for record in &records {
            usage.totals.add(record);
            usage
                .by_agent
                .entry(record.agent.clone())
                .or_default()
                .add(record);
            usage
                .by_model
                .entry(record.model.clone())
                .or_default()
                .add(record);
        }
        usage.calls = calls.then_some(records);
        Ok(usage)
    }

    /// Passes the cancel requests stored for this process's runs on to them.
    async fn read_cancel_requests(&self) {
        let ids: Vec<String> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            return;
        }
        match self.core.runs.cancel_requested(&ids).await {
            Ok(asked) => {
                for run_id in asked {
                    if let Some(live) = self.live_run(&run_id) {
                        live.cancel.send_replace(true);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "reading cancel requests failed"),
        }
    }

    /// Marks or takes over the runs of processes that died, ends the runs
    /// whose questions expired, and deletes those past their retention
    /// (module docs).
    async fn sweep(self: &Arc<Self>) -> Result<(), StoreError> {
        self.expire_questions().await?;
        for stored in self.core.runs.orphaned_runs().await? {
            let run = match Run::from_stored(&stored) {
                Ok(run) => run,
                Err(error) => {
                    tracing::error!(run_id = stored.run_id, %error, "an orphaned run is unreadable");
                    continue;
                }
            };
            let queued = run.outcome.status == RunStatus::Queued;
            if queued && !self.takes_over.load(Ordering::Relaxed) {
                continue;
            }
            let events = self.stored_events(&stored.run_id).await?;
            let next_event = events.last().map_or(1, |e| e.id + 1);
            if queued
                && self.graphs.contains_key(&run.flow)
                && self
                    .core
                    .runs
                    .claim(&run.flow, &run.story_id, &run.outcome.run_id)
                    .await?
                    .is_none()
            {
                let claim = Claim::held(
                    self.core.runs.clone(),
                    run.flow.clone(),
                    run.story_id.clone(),
                    run.outcome.run_id.clone(),
                );
                tracing::info!(
                    run_id = run.outcome.run_id,
                    "took over a queued run of a process that stopped"
                );
                match self.answered_before(&run).await {
                    Ok(resumption) => {
                        let plan = plan_of(&run, resumption);
                        drop(self.launch(run, plan, claim, next_event, None));
                    }
                    // Its claim is given back as `claim` drops; the others go on.
                    Err(error) => {
                        tracing::error!(run_id = stored.run_id, %error, "a queued run cannot be taken over")
                    }
                }
                continue;
            }
            self.mark_interrupted(&stored, run, &events, next_event)
                .await?;
        }
        if self.takes_over.load(Ordering::Relaxed) {
            self.remove_expired_runs().await?;
        }
        Ok(())
    }

    /// Deletes the runs that ended more than `runs.retention_days` ago, and
    /// all of theirs (SPEC 8.8). Servers do it, a few hundred runs per
    /// write; a CLI run, which lives for one run, does not.
    async fn remove_expired_runs(&self) -> Result<(), StoreError> {
        const BATCH: usize = 200;
        let days = u64::from(self.core.config.runs.retention_days);
        let cutoff = now_ms().saturating_sub(days.saturating_mul(24 * 3600 * 1000));
        loop {
            let expired = self.core.runs.ended_before(cutoff, BATCH).await?;
            if expired.is_empty() {
                return Ok(());
            }
            // The webhooks first: should the process die between the two
            // writes, the run is still there for the next sweep to find,
            // and nothing of it is left behind.
            self.webhooks.store().delete_of_runs(&expired).await?;
            self.core.runs.delete_runs(&expired).await?;
            tracing::info!(
                runs = expired.len(),
                "deleted runs past runs.retention_days"
            );
            if expired.len() < BATCH {
                return Ok(());
            }
        }
    }

    /// How a queued run taken over goes on: a run queued by an answer
    /// still has the checkpoint it stopped at, and goes on from there with
    /// its latest answer; a new run (no checkpoint) starts from the top.
    async fn answered_before(&self, run: &Run) -> Result<Option<Resumption>, StoreError> {
        let run_id = &run.outcome.run_id;
        let Some(text) = self.core.runs.checkpoint(run_id).await? else {
            return Ok(None);
        };
        let answered = run
            .interrupts
            .iter()
            .filter(|i| i.status == InterruptStatus::Answered)
            .max_by_key(|i| i.answered_at)
            .ok_or_else(|| {
                StoreError::corrupt(format!("run `{run_id}`"), "a checkpoint but no answer")
            })?;
        let checkpoint = Checkpoint::decode(run_id, &text)?;
        Ok(Some(resumption(checkpoint, &run.interrupts, answered)))
    }

    /// Ends the interrupted runs with a question open longer than
    /// `runs.interrupt_timeout_s`: `error` / `interrupt_timeout`, their
    /// open questions `expired`. Every process on the store looks; the
    /// compare-and-set of the ending lets one of them end each run.
    async fn expire_questions(&self) -> Result<(), StoreError> {
        let Some(timeout_s) = self.core.config.runs.interrupt_timeout_s else {
            return Ok(());
        };
        let deadline = now_ms().saturating_sub(timeout_s.saturating_mul(1000));
        let mut query = RunQuery {
            statuses: vec![RunStatus::Interrupted.as_str().to_string()],
            limit: 100,
            ..RunQuery::default()
        };
        loop {
            let page = self.core.runs.list_runs(&query).await?;
            for stored in &page {
                let run = match Run::from_stored(stored) {
                    Ok(run) => run,
                    Err(error) => {
                        tracing::error!(run_id = stored.run_id, %error, "an interrupted run is unreadable");
                        continue;
                    }
                };
                let expired = run
                    .interrupts
                    .iter()
                    .any(|i| i.is_open() && i.created_at <= deadline);
                if expired {
                    let ending = Ending {
                        status: RunStatus::Error,
                        error_code: Some(HaltCode::InterruptTimeout),
                        interrupts: InterruptStatus::Expired,
                    };
                    if let Err(error) = self.end_interrupted(run, ending).await {
                        tracing::warn!(run_id = stored.run_id, %error, "ending a run whose question expired failed");
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == query.limit => {
                    query.before = Some((last.created_at, last.run_id.clone()));
                }
                _ => return Ok(()),
            }
        }
    }

    /// Ends a run whose process died: `error` / `interrupted_by_restart`,
    /// with what its stored events tell — the results of the agents that
    /// finished, the step it was in, the agents it completed.
    async fn mark_interrupted(
        &self,
        stored: &StoredRun,
        mut run: Run,
        events: &[StoredEvent],
        next_event: u64,
    ) -> Result<(), StoreError> {
        let mut completed = Vec::new();
        for event in events {
            match serde_json::from_str::<RunEventData>(&event.data) {
                Ok(RunEventData::Progress {
                    agent,
                    step,
                    status,
                }) if event.event == "progress" => {
                    run.step = Some(step);
                    if status == ProgressStatus::Completed {
                        completed.push(agent);
                    }
                }
                Ok(RunEventData::Result { agent, data }) if event.event == "result" => {
                    run.outcome.results.insert(agent, data);
                }
                Ok(RunEventData::Usage(record)) if event.event == "usage" => {
                    run.usage.add(&record);
                }
                _ => {}
            }
        }
        let now = now_ms();
        run.outcome.status = RunStatus::Error;
        run.outcome.error_code = Some(HaltCode::InterruptedByRestart.as_str().into());
        run.outcome.errors.insert(
            "run".into(),
            "the process running it stopped; it was not replayed (run it again to redo what was in flight)".into(),
        );
        run.details = Some(json!({ "step": run.step, "completed_agents": completed }));
        run.running_agents.clear();
        run.finished_at = Some(now);
        run.updated_at = now;
        self.webhooks
            .enqueue(&mut run, WebhookEvent::RunFinished, None)
            .await;
        let ending = [
            RunEvent::Status {
                status: RunStatus::Error,
                error_code: run.outcome.error_code.clone(),
                at: now,
            },
            RunEvent::Done(Box::new(run.clone())),
        ];
        let events = numbered(&ending, next_event);
        if self
            .core
            .runs
            .update_run_if(&run.to_stored()?, &stored.status, &events)
            .await?
        {
            tracing::warn!(
                run_id = run.outcome.run_id,
                "marked a run whose process died: interrupted_by_restart"
            );
            self.core.counters.run_finished(RunStatus::Error);
        }
        Ok(())
    }

    async fn stored_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        stored_events(self.core.runs.as_ref(), run_id).await
    }
}

/// What to run for `run`: its request, and how it resumes, if it does.
fn plan_of(run: &Run, resumption: Option<Resumption>) -> RunPlan {
    RunPlan {
        run_id: run.outcome.run_id.clone(),
        request: RunRequest {
            flow: run.flow.clone(),
            story_id: run.story_id.clone(),
            input: run.input.clone(),
            force: run.force,
            budget: run.budget,
        },
        mode: run.mode,
        resumption,
    }
}

/// How an interrupted run goes on once `answered` (one of its
/// `interrupts`) is: from its `checkpoint`, with the answer handed to the
/// agent that asked, or the decision to the step's gate.
fn resumption(
    checkpoint: Checkpoint,
    interrupts: &[Interrupt],
    answered: &Interrupt,
) -> Resumption {
    let (answers, gate) = match answered.source {
        InterruptSource::Tool => {
            let reply = answered.answer.clone().unwrap_or_default();
            (BTreeMap::from([(answered.agent.clone(), reply)]), None)
        }
        InterruptSource::Gate => {
            let gate = answered
                .decision()
                .map(|(decision, feedback)| GateDecision {
                    interrupt_id: answered.id.clone(),
                    approved: decision == Decision::Approve,
                    feedback,
                });
            (BTreeMap::new(), gate)
        }
    };
    Resumption {
        checkpoint,
        interrupts: interrupts.to_vec(),
        answers,
        gate,
    }
}

/// A run a shutdown stopped after its grace period: `error` /
/// `interrupted_by_restart`, as the sweep marks a run whose process died,
/// with `details.graceful` (SPEC 8.1).
fn stopped_by_shutdown(run: &mut Run) {
    let completed: Vec<&String> = run
        .outcome
        .results
        .iter()
        .filter(|(_, result)| result.status == AgentRunStatus::Completed)
        .map(|(agent, _)| agent)
        .collect();
    run.details =
        Some(json!({ "step": run.step, "completed_agents": completed, "graceful": true }));
    run.outcome.status = RunStatus::Error;
    run.outcome.error_code = Some(HaltCode::InterruptedByRestart.as_str().into());
    run.outcome.errors.insert(
        "run".into(),
        "the server shut down before it finished (runs.shutdown_grace_s); it was not replayed (run it again to redo what was in flight)".into(),
    );
}

/// The data of the stored events a sweep reads back.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RunEventData {
    Progress {
        agent: String,
        step: String,
        status: ProgressStatus,
    },
    Result {
        agent: String,
        data: AgentResult,
    },
    Usage(Box<CallRecord>),
}

/// Ends an interrupted run where it is stored (cancelled, or its question
/// expired): its open questions closed, the agents waiting on them marked,
/// the record of what it completed saved, its claim released. `None` when
/// the run was no longer interrupted (a resume got there first). Its
/// `run.finished` is stored first in `outbox` (SPEC 8.5), where the
/// sender of a server finds it.
async fn end_interrupted(
    runs: &dyn RunStore,
    outbox: &dyn DeliveryStore,
    mut run: Run,
    ending: Ending,
) -> Result<Option<Run>, StoreError> {
    let run_id = run.outcome.run_id.clone();
    let checkpoint = match runs.checkpoint(&run_id).await? {
        Some(text) => Some(Checkpoint::decode(&run_id, &text)?),
        None => None,
    };
    let now = now_ms();
    for interrupt in run.interrupts.iter_mut().filter(|i| i.is_open()) {
        interrupt.status = ending.interrupts;
        // A gate's agent is done; one that asked never finished.
        if interrupt.source == InterruptSource::Tool
            && let Some(result) = run.outcome.results.get_mut(&interrupt.agent)
        {
            result.status = AgentRunStatus::Cancelled;
        }
    }
    run.outcome.status = ending.status;
    run.outcome.error_code = ending.error_code.map(|c| c.as_str().to_string());
    run.finished_at = Some(now);
    run.updated_at = now;
    webhooks::enqueue(outbox, &mut run, WebhookEvent::RunFinished, None).await;
    let next_event = next_event_id(runs, &run_id).await?;
    let ending_events = [
        RunEvent::Status {
            status: run.outcome.status,
            error_code: run.outcome.error_code.clone(),
            at: now,
        },
        RunEvent::Done(Box::new(run.clone())),
    ];
    let events = numbered(&ending_events, next_event);
    let record = checkpoint.map(|c| c.record);
    let ended = runs
        .end_run(
            &run.to_stored()?,
            &events,
            record.as_ref(),
            Some("interrupted"),
        )
        .await?;
    if !ended {
        return Ok(None);
    }
    tracing::info!(
        run_id,
        status = run.outcome.status.as_str(),
        "interrupted run ended"
    );
    Ok(Some(run))
}

/// Cancels an interrupted run where it is stored (`bmad2pf cancel`, which
/// runs no engine): the run as cancelled, or `None` when it was no longer
/// interrupted. Its webhook's `run.finished` goes to `outbox`, for a
/// server on the store to send.
pub async fn cancel_interrupted(
    runs: &dyn RunStore,
    outbox: &dyn DeliveryStore,
    run: Run,
) -> Result<Option<Run>, StoreError> {
    let ending = Ending {
        status: RunStatus::Cancelled,
        error_code: None,
        interrupts: InterruptStatus::Cancelled,
    };
    end_interrupted(runs, outbox, run, ending).await
}

/// The id the run's next event takes.
async fn next_event_id(runs: &dyn RunStore, run_id: &str) -> Result<u64, StoreError> {
    Ok(runs.last_event_id(run_id).await?.map_or(1, |id| id + 1))
}

/// Every stored event of a run, in order.
async fn stored_events(runs: &dyn RunStore, run_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
    let mut all: Vec<StoredEvent> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.id);
        let page = runs.events_after(run_id, after, EVENTS_PAGE).await?;
        let full = page.len() == EVENTS_PAGE;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// How an interrupted run ends where it is stored.
struct Ending {
    status: RunStatus,
    error_code: Option<HaltCode>,
    /// What its open questions become.
    interrupts: InterruptStatus,
}

/// `events` as stored, numbered from `first`.
fn numbered(events: &[RunEvent], first: u64) -> Vec<StoredEvent> {
    events
        .iter()
        .zip(first..)
        .map(|(event, id)| {
            let (name, data) = event.name_and_data();
            StoredEvent {
                id,
                event: name.into(),
                data,
            }
        })
        .collect()
}

/// Whether the stream of a run ends with this event.
fn is_last(event: &StoredEvent) -> bool {
    event.event == "done" || event.event == "error"
}

/// Run ids are `run-` and 16 hex digits; anything else names no run.
pub fn check_run_id(run_id: &str) -> Result<(), EngineError> {
    let valid = run_id
        .strip_prefix("run-")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if valid {
        Ok(())
    } else {
        Err(EngineError::InvalidRunId(format!(
            "invalid run id {:?}: run ids are `run-` and 16 hexadecimal digits",
            run_id.chars().take(64).collect::<String>()
        )))
    }
}

/// The cursor after a run: opaque to clients (hex of `created_at:run_id`).
fn encode_cursor(created_at: u64, run_id: &str) -> String {
    hex::encode(format!("{created_at}:{run_id}"))
}

fn decode_cursor(cursor: &str) -> Result<(u64, String), EngineError> {
    let invalid = || EngineError::InvalidCursor("pass a `next_cursor` of a previous page".into());
    let text = hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let (at, run_id) = text.split_once(':').ok_or_else(invalid)?;
    let at = at.parse().map_err(|_| invalid())?;
    check_run_id(run_id).map_err(|_| invalid())?;
    Ok((at, run_id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = encode_cursor(1_700_000_000_123, "run-0123456789abcdef");
        assert_eq!(
            decode_cursor(&cursor).ok(),
            Some((1_700_000_000_123, "run-0123456789abcdef".to_string()))
        );
        for bad in [
            "",
            "zz",
            "00",
            &hex::encode("12:run-x"),
            &hex::encode("x:run-0123456789abcdef"),
        ] {
            assert!(
                matches!(decode_cursor(bad), Err(EngineError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(check_run_id("run-0123456789abcdef").is_ok());
        for bad in [
            "",
            "run-",
            "run-0123456789abcdeg",
            "x-0123456789abcdef",
            "run-0123456789abcdef0",
        ] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }
}
