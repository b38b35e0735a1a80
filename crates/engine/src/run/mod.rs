//! Running a flow: the shared store of a run and the code around one run.
//!
//! A flow of the bundle becomes a PocketFlow graph once, at engine start
//! ([`graph`]): one node per step, edges for `next` routes. Every agent is a
//! PocketFlow node ([`agent::AgentNode`]): prep gathers its documents and
//! memory and renders its prompt, exec talks with the LLM (retried by the
//! node) and writes the output documents outside the run's lock,
//! exec_fallback turns the last failure into a result, post applies
//! `error_handling`, records memory and status and returns the action.
//!
//! The shared store of one run is a [`RunState`]. It holds what the run has
//! learnt so far (results, errors, documents waited for, step visits) and a
//! RAM cache of the memory scopes its agents use, flushed once at the end.
//!
//! A run whose agent asks a person (interactive) stops once no agent runs
//! and a question is open: it ends its pass `interrupted`, with a
//! [`checkpoint::Checkpoint`] of its state, and a resume runs the graph
//! again from the step it stopped in ([`Resumption`]).

pub(crate) mod agent;
pub(crate) mod checkpoint;
mod closing_report;
mod docs;
pub(crate) mod gate;
pub(crate) mod graph;
mod growing;
mod inputs;
mod sequence;

use crate::core::Core;
use crate::failure::HaltCode;
use crate::outcome::{
    AgentResult, AgentRunStatus, ProgressStatus, RunEvent, RunOutcome, RunRequest, RunStatus,
};
use crate::runs::interrupts::{Interrupt, InterruptStatus, OpenQuestion};
use crate::runs::{Budget, EventLog, RunMode};
use crate::store::{
    AgentState, DocWriter, MemoryKey, MemoryScope, RunRecord, StatusUpdate, StoreError, WorkflowId,
    now_ms,
};
use crate::usage::{CallRecord, UsageTotals};
use checkpoint::{AgentCheckpoint, Checkpoint};
use docs::RunDocs;
use gate::{GateDecision, Gates};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// Facts about a run that never change while it runs.
pub(crate) struct RunContext {
    pub run_id: String,
    pub flow: String,
    pub story_id: String,
    pub input: String,
    pub force: bool,
    /// Whether agents may stop to ask a person.
    pub mode: RunMode,
    /// The questions answered on assumptions (headless).
    open_questions: std::sync::Mutex<Vec<OpenQuestion>>,
    /// The agents running now, with their step (from their progress events):
    /// a cancel ends each of them `cancelled`.
    running: std::sync::Mutex<BTreeMap<String, String>>,
    /// The run's event log: numbered, stored, followed by clients.
    pub log: EventLog,
    /// Who started the run in this process and watches it (the CLI's progress).
    observer: Option<UnboundedSender<RunEvent>>,
    /// The documents as this run sees them (its own writes kept in memory).
    pub docs: Arc<RunDocs>,
    /// Orchestration status updates, written in order by the run's status
    /// writer (so no agent waits for that I/O while holding the run's lock).
    status: UnboundedSender<StatusUpdate>,
    /// What the run may use, and what it used so far (SPEC 8.4).
    budget: Option<Budget>,
    spent: std::sync::Mutex<UsageTotals>,
    over_budget: AtomicBool,
}

impl RunContext {
    /// Logs an event of the run and shows it to the observer; an observer
    /// that went away is ignored.
    pub fn emit(&self, event: RunEvent) {
        if let RunEvent::Progress {
            agent,
            step,
            status,
            ..
        } = &event
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if *status == ProgressStatus::Started {
                running.insert(agent.clone(), step.clone());
            } else {
                running.remove(agent);
            }
        }
        if let Some(observer) = &self.observer {
            let _ = observer.send(event.clone());
        }
        self.log.emit(event);
    }

    /// Records what happened to `agent` in the orchestration status of
    /// this (flow, story), under workflow id `{flow}__{story}`.
    pub fn report_status(&self, agent: String, status: AgentState, output_summary: Option<String>) {
        // A pack qualifier's `/` in a BMAD flow name is written `.`.
        let id = format!("{}__{}", self.flow.replace('/', "."), self.story_id);
        let Ok(workflow_id) = WorkflowId::parse(&id) else {
            tracing::debug!(
                workflow_id = id,
                "no orchestration status: not a valid workflow id"
            );
            return;
        };
        let _ = self.status.send(StatusUpdate {
            workflow_id,
            story_id: Some(self.story_id.clone()),
            agent_id: agent,
            status,
            output_summary,
        });
    }

    /// Who `agent`'s document writes in this run are recorded as written by.
    pub fn writer(&self, agent: &str) -> DocWriter {
        DocWriter::Agent {
            agent: agent.to_string(),
            run_id: self.run_id.clone(),
        }
    }

    /// Records an LLM call that returned: a `usage` event, and the run's
    /// spending, checked against its budget.
    pub fn record_call(&self, record: &CallRecord) {
        self.emit(RunEvent::Usage(Box::new(record.clone())));
        let Some(budget) = &self.budget else { return };
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        spent.add(record);
        if budget.reached_by(&spent) {
            self.over_budget.store(true, Ordering::Relaxed);
        }
    }

    /// Notes a question a headless run answered on its own assumptions.
    pub fn assumed(&self, question: OpenQuestion) {
        self.open_questions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(question);
    }

    /// Whether the run has used its budget: no new LLM call may start.
    pub fn over_budget(&self) -> bool {
        self.over_budget.load(Ordering::Relaxed)
    }

    /// Whether anyone watches tokens as they come (else replies are not streamed).
    pub fn streaming(&self) -> bool {
        self.observer.as_ref().is_some_and(|e| !e.is_closed()) || self.log.followed()
    }
}

/// Why a run stopped early.
#[derive(Debug, Clone)]
pub(crate) struct Halt {
    /// A [`HaltCode`]'s, or a store error's when the run's state could not be loaded.
    code: &'static str,
    message: String,
}

impl Halt {
    pub fn new(code: HaltCode, message: String) -> Self {
        Self {
            code: code.as_str(),
            message,
        }
    }

    /// Whether the run ends `cancelled` rather than `error` (a person
    /// rejected a step before it ran).
    fn cancels(&self) -> bool {
        self.code == HaltCode::ApprovalRejected.as_str()
    }
}

impl From<StoreError> for Halt {
    fn from(error: StoreError) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

/// The shared store of one run (the `S` of its PocketFlow graph).
pub(crate) struct RunState {
    pub ctx: Arc<RunContext>,
    pub results: BTreeMap<String, AgentResult>,
    pub errors: BTreeMap<String, String>,
    pub pending_docs: BTreeSet<String>,
    /// Step id → times it has run.
    pub visits: HashMap<String, u32>,
    /// Agent id → the action its last execution returned in this run.
    pub actions: HashMap<String, String>,
    /// Set when an agent failed with `error_handling: stop` or a loop hit its limit.
    pub halted: Option<Halt>,
    /// The record of the previous runs (input hashes), updated as agents finish.
    pub record: RunRecord,
    pub memory: MemoryCache,
    /// Every question the run asked, earlier passes' included.
    pub interrupts: Vec<Interrupt>,
    /// Agents waiting for an answer, and where each stopped.
    pub waiting: BTreeMap<String, AgentCheckpoint>,
    /// Agents to continue with an answer in this pass, and the answer.
    pub resuming: BTreeMap<String, (AgentCheckpoint, String)>,
    /// Agents of the current step that are done in this visit of it.
    pub step_done: BTreeSet<String>,
    /// The step a resumed run enters again (the same visit, not a new one).
    pub resume_step: Option<String>,
    /// Approval gates: the one waiting, a decision to apply, feedback.
    pub gates: Gates,
    /// A flush of the run's memory failed: its record must not be saved.
    pub memory_lost: bool,
}

/// What a run continues from: its checkpoint and the answers given.
pub(crate) struct Resumption {
    pub checkpoint: Checkpoint,
    /// The run's interrupts, those answered now marked answered.
    pub interrupts: Vec<Interrupt>,
    /// Agent id → what it receives as its `ask_human` result.
    pub answers: BTreeMap<String, String>,
    /// The decision on the run's open gate, when that is what was answered.
    pub gate: Option<GateDecision>,
}

/// What to run: a new run, or the next pass of an interrupted one.
pub(crate) struct RunPlan {
    pub run_id: String,
    pub request: RunRequest,
    pub mode: RunMode,
    pub resumption: Option<Resumption>,
}

/// The memory scopes a run's agents use, loaded at the start and written
/// back once at the end (also when the run fails).
#[derive(Default)]
pub(crate) struct MemoryCache {
    scopes: HashMap<MemoryScope, BTreeMap<String, Value>>,
    dirty: HashMap<MemoryScope, BTreeMap<MemoryKey, Value>>,
}

impl MemoryCache {
    pub fn view(&self, scope: &MemoryScope) -> BTreeMap<String, Value> {
        self.scopes.get(scope).cloned().unwrap_or_default()
    }

    pub fn set(&mut self, scope: &MemoryScope, key: MemoryKey, value: Value) {
        self.scopes
            .entry(scope.clone())
            .or_default()
            .insert(key.as_str().to_string(), value.clone());
        self.dirty
            .entry(scope.clone())
            .or_default()
            .insert(key, value);
    }
}

/// How a run ended: its outcome, and the record to save when its claim is
/// released (`None` when its memory could not be written, so that the
/// next run does the work again).
pub(crate) struct Finished {
    pub outcome: RunOutcome,
    pub record: Option<RunRecord>,
    /// Set when the run stopped to wait for a person (`interrupted`).
    pub checkpoint: Option<Checkpoint>,
    pub interrupts: Vec<Interrupt>,
    pub open_questions: Vec<OpenQuestion>,
}

/// Runs `plan` on `graph` to its end, until it waits for a person, or
/// until `cancel` turns true (then it ends `cancelled`, keeping what was
/// written). The caller holds the (flow, story) claim, and saves the
/// record as it gives it up.
pub(crate) async fn run_flow(
    core: &Arc<Core>,
    graph: &pocketflow::Flow<RunState>,
    plan: RunPlan,
    observer: Option<UnboundedSender<RunEvent>>,
    log: EventLog,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Finished {
    let RunPlan {
        run_id,
        request,
        mode,
        resumption,
    } = plan;
    use pocketflow::Runnable;
    let started = Instant::now();
    let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel::<StatusUpdate>();
    let status_store = core.status.clone();
    // Updates are written in order by this task, so no agent waits for
    // them; the run waits for the last one before it answers.
    let status_writer = tokio::spawn(async move {
        while let Some(update) = status_rx.recv().await {
            let agent = update.agent_id.clone();
            if let Err(error) = status_store.record(update).await {
                tracing::warn!(agent, %error, "orchestration status update failed");
            }
        }
    });
    let mut state = RunState {
        ctx: Arc::new(RunContext {
            run_id: run_id.clone(),
            flow: request.flow,
            story_id: request.story_id,
            input: request.input,
            force: request.force,
            mode,
            open_questions: std::sync::Mutex::default(),
            running: std::sync::Mutex::default(),
            docs: Arc::new(RunDocs::new(core.docs.clone())),
            log,
            observer,
            status: status_tx,
            budget: request.budget,
            spent: std::sync::Mutex::new(
                resumption
                    .as_ref()
                    .map(|r| r.checkpoint.spent)
                    .unwrap_or_default(),
            ),
            over_budget: AtomicBool::new(false),
        }),
        results: BTreeMap::new(),
        errors: BTreeMap::new(),
        pending_docs: BTreeSet::new(),
        visits: HashMap::new(),
        actions: HashMap::new(),
        halted: None,
        record: RunRecord::default(),
        memory: MemoryCache::default(),
        interrupts: Vec::new(),
        waiting: BTreeMap::new(),
        resuming: BTreeMap::new(),
        step_done: BTreeSet::new(),
        resume_step: None,
        gates: Gates::default(),
        memory_lost: false,
    };
    let earlier_ms = resumption.as_ref().map_or(0, |r| r.checkpoint.duration_ms);
    let resumed = resumption.is_some();
    if let Some(resumption) = resumption {
        state.resume_from(resumption);
    }
    let mut cancelled = false;
    if let Err(halt) = load_state(core, &mut state, !resumed).await {
        state.halted = Some(halt);
    } else {
        // A cancel drops the graph mid-step: calls in flight are dropped,
        // `command` tools killed (kill_on_drop); what was written stays.
        tokio::select! {
            ran = graph.run(&mut state) => {
                if let Err(error) = ran {
                    // Agent failures are results, not errors; this is the machinery failing.
                    tracing::error!(run_id, %error, "run failed");
                    state.halted = Some(Halt::new(HaltCode::Internal, error.to_string()));
                }
            }
            Ok(_) = cancel.wait_for(|asked| *asked) => cancelled = true,
        }
    }
    if cancelled {
        state.cancel_running_agents();
    }
    if state.ctx.over_budget() && !cancelled {
        state.halted = Some(Halt::new(
            HaltCode::BudgetExceeded,
            "the run used its budget; no LLM call was started after that".into(),
        ));
    }
    let memory_written = flush_memory(core, &mut state).await && !state.memory_lost;
    let asked = !state.waiting.is_empty() || state.gates.open.is_some();
    let waits = asked && !cancelled && state.halted.is_none() && memory_written;
    let checkpoint = if waits {
        Some(state.checkpoint(&core.bundle.source_hash, earlier_ms + elapsed_ms(started)))
    } else {
        state.close_questions();
        None
    };
    let open_questions = std::mem::take(
        &mut *state
            .ctx
            .open_questions
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let RunState {
        ctx,
        results,
        mut errors,
        pending_docs,
        halted,
        mut record,
        mut interrupts,
        ..
    } = state;
    // Listed open first, each part in the order asked (SPEC 8.3).
    interrupts.sort_by_key(|i| !i.is_open());
    // The last sender goes with the context: the writer drains and ends, so
    // every status update is written before the run answers.
    drop(ctx);
    if let Err(error) = status_writer.await {
        tracing::error!(run_id, %error, "the status writer stopped early");
    }
    let status = if cancelled || halted.as_ref().is_some_and(Halt::cancels) {
        RunStatus::Cancelled
    } else if waits {
        RunStatus::Interrupted
    } else if halted.is_some() || !errors.is_empty() {
        RunStatus::Error
    } else if !pending_docs.is_empty() {
        RunStatus::Pending
    } else {
        RunStatus::Success
    };
    record.run_id = run_id.clone();
    record.status = status.as_str().to_string();
    record.updated_at = now_ms();
    // The record is the commit point: saved, it tells the next run that
    // this one's work is done, so it must not be saved over memory that was
    // not written (the errors say which scope failed). Documents are
    // durable when their write returns; one that failed failed its agent.
    // The caller saves it, together with the claim's release.
    let record = if waits {
        // Kept in the checkpoint: saved when the run ends.
        None
    } else if memory_written {
        Some(record)
    } else {
        errors.insert(
            "run_record".into(),
            "not saved: the run's memory could not be written; the next run will redo this one"
                .into(),
        );
        None
    };
    let error_code = halted.as_ref().map(|h| h.code.to_string());
    if let Some(halt) = halted {
        errors.entry("run".to_string()).or_insert(halt.message);
    }
    Finished {
        outcome: RunOutcome {
            run_id,
            status,
            results,
            pending_docs: pending_docs.into_iter().collect(),
            errors,
            error_code,
            duration_ms: earlier_ms + elapsed_ms(started),
        },
        record,
        checkpoint,
        interrupts,
        open_questions,
    }
}

impl RunState {
    /// Takes up an interrupted run where it stopped (module docs).
    fn resume_from(&mut self, resumption: Resumption) {
        let Resumption {
            checkpoint,
            interrupts,
            answers,
            gate,
        } = resumption;
        self.results = checkpoint.results;
        self.errors = checkpoint.errors;
        self.pending_docs = checkpoint.pending_docs;
        self.visits = checkpoint.visits;
        self.actions = checkpoint.actions;
        self.record = checkpoint.record;
        self.step_done = checkpoint.step_done;
        self.interrupts = interrupts;
        self.resume_step = Some(checkpoint.step);
        self.gates.feedback = checkpoint.feedback;
        match (checkpoint.gate, gate) {
            (Some(open), Some(decision)) if open.interrupt_id == decision.interrupt_id => {
                self.gates.decided = Some((open, decision));
            }
            (open, _) => self.gates.open = open,
        }
        for (agent, waiting) in checkpoint.agents {
            match answers.get(&agent) {
                Some(answer) => {
                    self.resuming.insert(agent, (waiting, answer.clone()));
                }
                None => {
                    self.waiting.insert(agent, waiting);
                }
            }
        }
    }

    /// The state to continue from once a person answers.
    fn checkpoint(&mut self, source_hash: &str, duration_ms: u64) -> Checkpoint {
        Checkpoint {
            source_hash: source_hash.to_string(),
            step: self.ctx.log.progress().step.unwrap_or_default(),
            step_done: self.step_done.clone(),
            results: self.results.clone(),
            errors: self.errors.clone(),
            pending_docs: self.pending_docs.clone(),
            visits: self.visits.clone(),
            actions: self.actions.clone(),
            record: self.record.clone(),
            agents: std::mem::take(&mut self.waiting),
            gate: self.gates.open.take(),
            feedback: self.gates.feedback.clone(),
            spent: *self
                .ctx
                .spent
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            duration_ms,
        }
    }

    /// A run that ends with questions open (cancelled, or stopped by a
    /// failure): they are cancelled, and so are the agents waiting on them.
    /// An agent that asked before and was resumed, but did not finish, is
    /// no longer waiting for anyone: it is cancelled too.
    fn close_questions(&mut self) {
        for interrupt in self.interrupts.iter_mut().filter(|i| i.is_open()) {
            interrupt.status = InterruptStatus::Cancelled;
        }
        self.waiting.clear();
        for result in self.results.values_mut() {
            if result.status == AgentRunStatus::Interrupted {
                result.status = AgentRunStatus::Cancelled;
            }
        }
    }

    /// After a cancel dropped the graph: every agent that was running ends
    /// `cancelled`, with a progress event saying so, and a result.
    fn cancel_running_agents(&mut self) {
        let running = std::mem::take(
            &mut *self
                .ctx
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (agent, step) in running {
            self.ctx.emit(RunEvent::Progress {
                agent: agent.clone(),
                step,
                status: ProgressStatus::Cancelled,
                duration_ms: None,
                timestamp: now_ms(),
            });
            let result = self.results.entry(agent).or_insert_with(|| AgentResult {
                status: AgentRunStatus::Cancelled,
                document: None,
                summary: String::new(),
                duration_ms: 0,
                usage: UsageTotals::default(),
            });
            result.status = AgentRunStatus::Cancelled;
        }
    }
}

/// Loads the memory scopes of the flow's agents and, unless the run
/// continues from a checkpoint that holds it, the previous run record.
async fn load_state(core: &Core, state: &mut RunState, load_record: bool) -> Result<(), Halt> {
    let ctx = state.ctx.clone();
    if load_record {
        state.record = core
            .runs
            .load(&ctx.flow, &ctx.story_id)
            .await
            .map_err(Halt::from)?
            .unwrap_or_default();
    }
    let Some(flow) = core.bundle.flows.get(&ctx.flow) else {
        return Ok(());
    };
    let scopes: BTreeSet<MemoryScope> = flow
        .steps
        .iter()
        .flat_map(|step| step.agents.iter())
        .filter_map(|id| core.agent(id))
        .filter_map(|agent| agent::memory_scope(agent, &ctx.story_id).ok())
        .collect();
    for scope in scopes {
        let values = core.memory.load(&scope).await.map_err(Halt::from)?;
        state.memory.scopes.insert(scope, values);
    }
    Ok(())
}

/// Writes the run's changed memory entries back to the store, every scope
/// at once; false when a scope could not be written (recorded in the run's
/// errors as `memory:{scope}`).
async fn flush_memory(core: &Core, state: &mut RunState) -> bool {
    let writes =
        std::mem::take(&mut state.memory.dirty)
            .into_iter()
            .map(|(scope, entries)| async move {
                let written = core.memory.set_many(&scope, entries).await;
                (scope, written)
            });
    let mut written = true;
    for (scope, result) in futures::future::join_all(writes).await {
        if let Err(error) = result {
            tracing::error!(run_id = state.ctx.run_id, %scope, %error, "memory flush failed");
            state
                .errors
                .insert(format!("memory:{scope}"), error.to_string());
            written = false;
        }
    }
    written
}

/// After an agent of a flow of several completes: the run's memory, then
/// its record, so that a run cut off later (kill -9, a crash) has kept
/// what finished, and running it again redoes only what was in flight
/// (SPEC 8.1). Memory first: a saved record says its memory is written.
/// A failure here is logged; the run's end tries again, and says so.
pub(crate) async fn save_progress(core: &Core, state: &mut RunState) {
    if !flush_memory(core, state).await {
        state.memory_lost = true;
    }
    if state.memory_lost {
        return;
    }
    let ctx = &state.ctx;
    let record = RunRecord {
        run_id: ctx.run_id.clone(),
        status: RunStatus::Running.as_str().to_string(),
        updated_at: now_ms(),
        ..state.record.clone()
    };
    if let Err(error) = core.runs.save(&ctx.flow, &ctx.story_id, &record).await {
        tracing::warn!(run_id = ctx.run_id, %error, "saving the run's progress failed");
    }
}

pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Stores};
    use crate::outcome::AgentRunStatus;
    use crate::runs::RunMode;
    use crate::store::{
        Database, DocId, Incidents, MemoryStore, SqliteDeliveryStore, SqliteDocStore,
        SqliteMemoryStore, SqliteRunStore, SqliteStatusStore, StoreError,
    };
    use async_trait::async_trait;
    use bmad2pf_compiler::config::RuntimeConfig;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn injected() -> StoreError {
        StoreError::Io {
            message: "storage error: could not write (injected)".into(),
            detail: "write: ENOSPC".into(),
        }
    }

    /// Memory whose `set_many` (a run's flush) and health check fail
    /// while `failing` is set; failures are counted in `incidents`, as a
    /// real backend counts them. While `panicking` is set, `set_many`
    /// panics instead, as a bug would.
    struct FlakyMemory {
        inner: SqliteMemoryStore,
        failing: AtomicBool,
        panicking: AtomicBool,
        incidents: Incidents,
    }

    #[async_trait]
    impl MemoryStore for FlakyMemory {
        async fn get(
            &self,
            scope: &MemoryScope,
            key: &MemoryKey,
        ) -> Result<Option<Value>, StoreError> {
            self.inner.get(scope, key).await
        }
        async fn set(
            &self,
            scope: &MemoryScope,
            key: &MemoryKey,
            value: Value,
        ) -> Result<(), StoreError> {
            self.inner.set(scope, key, value).await
        }
        async fn delete(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<bool, StoreError> {
            self.inner.delete(scope, key).await
        }
        async fn keys(&self, scope: &MemoryScope) -> Result<Vec<String>, StoreError> {
            self.inner.keys(scope).await
        }
        async fn load(&self, scope: &MemoryScope) -> Result<BTreeMap<String, Value>, StoreError> {
            self.inner.load(scope).await
        }
        async fn set_many(
            &self,
            scope: &MemoryScope,
            entries: BTreeMap<MemoryKey, Value>,
        ) -> Result<(), StoreError> {
            assert!(!self.panicking.load(Ordering::SeqCst), "a bug in the store");
            if self.failing.load(Ordering::SeqCst) {
                self.incidents.record();
                return Err(injected());
            }
            self.inner.set_many(scope, entries).await
        }
        async fn health(&self) -> Result<(), StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(injected());
            }
            self.inner.health().await
        }
    }

    /// An engine whose one flow runs an analyst writing `brief.md` with
    /// memory `shared:plan`, on the embedded store `db` (documents in
    /// `root/docs`) but `memory`.
    async fn analyst_engine(
        root: &Path,
        db: Database,
        memory: Arc<FlakyMemory>,
    ) -> Result<(Engine, String), Box<dyn std::error::Error>> {
        let agents = root.join("src/agents");
        std::fs::create_dir_all(&agents)?;
        std::fs::write(
            agents.join("analyst.md"),
            "---\nid: analyst\ncreates: [brief.md]\nmemory_scope: shared:plan\n---\nYou are the analyst.\n",
        )?;
        let bundle = bmad2pf_compiler::compile(&root.join("src"))
            .bundle
            .ok_or("the sources compile")?;
        let flow = bundle.flows.keys().next().cloned().ok_or("a flow")?;
        let stores = Stores {
            docs: Arc::new(SqliteDocStore::open(db.clone(), root.join("docs")).await?),
            incidents: memory.incidents.clone(),
            memory,
            status: Arc::new(SqliteStatusStore::new(db.clone())),
            deliveries: Arc::new(SqliteDeliveryStore::new(db.clone())),
            runs: Arc::new(SqliteRunStore::new(db)),
        };
        let engine =
            Engine::with_stores(Arc::new(bundle), RuntimeConfig::default(), stores, &|_| {
                None
            })?;
        Ok((engine, flow))
    }

    /// A run of the analyst's `flow` for story `s1`.
    fn analyst_request(flow: &str) -> RunRequest {
        RunRequest {
            flow: flow.to_string(),
            story_id: "s1".into(),
            input: "a todo app".into(),
            force: false,
            budget: None,
        }
    }

    /// Runs the analyst's flow while a store fails (`failing`), then again
    /// after it recovered: the first run is an error naming `failed` and
    /// saves no record, so the second redoes the work and saves one.
    async fn a_failed_write_saves_no_record(
        engine: &Engine,
        flow: &str,
        failing: &AtomicBool,
        failed: &str,
    ) -> TestResult {
        let request = || analyst_request(flow);

        let outcome = engine
            .run(request(), RunMode::Headless, None)
            .await?
            .outcome;
        assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
        assert!(
            outcome.errors[failed].contains("(injected)"),
            "{outcome:#?}"
        );
        assert!(
            outcome.errors["run_record"].starts_with("not saved"),
            "{outcome:#?}"
        );
        assert!(
            engine
                .docs()
                .get(&DocId::parse("s1__brief")?)
                .await?
                .is_some()
        );

        // No record was saved, so the next run does the work again, and
        // with the store back its record is saved.
        failing.store(false, Ordering::SeqCst);
        let again = engine
            .run(request(), RunMode::Headless, None)
            .await?
            .outcome;
        assert_eq!(again.status, RunStatus::Success, "{again:#?}");
        assert_eq!(
            again.results["analyst"].status,
            AgentRunStatus::Completed,
            "{again:#?}"
        );
        let third = engine
            .run(request(), RunMode::Headless, None)
            .await?
            .outcome;
        assert_eq!(
            third.results["analyst"].status,
            AgentRunStatus::Skipped,
            "{third:#?}"
        );
        Ok(())
    }

    /// A flaky memory store on a fresh database in `root`, working for now.
    fn flaky_memory(root: &Path) -> Result<(Database, Arc<FlakyMemory>), StoreError> {
        let db = Database::open(&root.join("data"), Incidents::default())?;
        let memory = Arc::new(FlakyMemory {
            inner: SqliteMemoryStore::new(db.clone()),
            failing: AtomicBool::new(false),
            panicking: AtomicBool::new(false),
            incidents: Incidents::default(),
        });
        Ok((db, memory))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_says_degraded_at_once_after_a_backend_fails() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (db, memory) = flaky_memory(dir.path())?;
        let (engine, _) = analyst_engine(dir.path(), db, memory.clone()).await?;
        let memory_health = |report: crate::BackendHealth| {
            report
                .into_iter()
                .find(|(name, _)| *name == "memory")
                .map(|(_, h)| h.is_ok())
        };
        assert_eq!(memory_health(engine.health().await), Some(true));
        // The backend breaks; a request finds out…
        memory.failing.store(true, Ordering::SeqCst);
        let scope = MemoryScope::parse("shared:plan")?;
        let entries = BTreeMap::from([(MemoryKey::parse("k")?, Value::Bool(true))]);
        assert!(engine.memory().set_many(&scope, entries).await.is_err());
        // …and the very next /health says so, within the reuse window.
        assert_eq!(memory_health(engine.health().await), Some(false));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_memory_was_not_written_saves_no_record() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (db, memory) = flaky_memory(dir.path())?;
        memory.failing.store(true, Ordering::SeqCst);
        let (engine, flow) = analyst_engine(dir.path(), db, memory.clone()).await?;
        a_failed_write_saves_no_record(&engine, &flow, &memory.failing, "memory:shared:plan").await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_that_panics_ends_as_an_internal_error_and_frees_its_story() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (db, memory) = flaky_memory(dir.path())?;
        memory.panicking.store(true, Ordering::SeqCst);
        let (engine, flow) = analyst_engine(dir.path(), db, memory.clone()).await?;
        let request = || analyst_request(&flow);
        // Bounded: before the panic was caught, this waited forever.
        let limit = std::time::Duration::from_secs(30);
        let run =
            tokio::time::timeout(limit, engine.run(request(), RunMode::Headless, None)).await??;
        assert_eq!(run.outcome.status, RunStatus::Error, "{:#?}", run.outcome);
        assert_eq!(run.outcome.error_code.as_deref(), Some("internal_error"));
        assert!(
            run.outcome.errors["run"].contains("a bug in the store"),
            "{:#?}",
            run.outcome
        );
        // The stored run says the same, and the story is free again.
        let stored = engine.get_run(&run.outcome.run_id).await?;
        assert_eq!(stored.outcome.status, RunStatus::Error);
        memory.panicking.store(false, Ordering::SeqCst);
        let again =
            tokio::time::timeout(limit, engine.run(request(), RunMode::Headless, None)).await??;
        assert_eq!(
            again.outcome.status,
            RunStatus::Success,
            "{:#?}",
            again.outcome
        );
        Ok(())
    }
}
