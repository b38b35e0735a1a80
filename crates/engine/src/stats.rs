//! Counters the engine keeps for `/metrics` and `/health`.
//!
//! Plain atomics behind one struct: cheap to bump on the hot path, read as
//! a consistent-enough snapshot ([`EngineStats`]) by the server. Token and
//! cost counts are kept per provider and model, as [`UsageTotals`] fed with
//! each call's record.

use crate::runs::interrupts::InterruptKind;
use crate::usage::{CallRecord, UsageTotals};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters (one per engine).
#[derive(Debug, Default)]
pub struct Counters {
    runs_success: AtomicU64,
    runs_pending: AtomicU64,
    runs_error: AtomicU64,
    runs_cancelled: AtomicU64,
    agents_completed: AtomicU64,
    agents_failed: AtomicU64,
    agents_skipped: AtomicU64,
    agents_waiting: AtomicU64,
    interrupts_ask: AtomicU64,
    interrupts_choose: AtomicU64,
    interrupts_approve: AtomicU64,
    llm_calls: AtomicU64,
    /// Provider → model → what its answered calls used. A mutex: held for a
    /// few additions once per call, which takes far longer itself.
    llm_usage: Mutex<BTreeMap<String, BTreeMap<String, UsageTotals>>>,
    /// LLM error code → count. A mutex, since codes are few and errors rare.
    llm_errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EngineStats {
    /// Finished runs by status (`success`, `pending`, `error`, `cancelled`).
    pub runs: BTreeMap<&'static str, u64>,
    /// Agent executions by result (`completed`, `failed`, `skipped`, `waiting`).
    pub agent_executions: BTreeMap<&'static str, u64>,
    /// Questions asked of a person by kind (`ask`, `choose`, `approve`; gates are `approve`).
    pub interrupts: BTreeMap<&'static str, u64>,
    /// Runs of this process now, by status (`queued`, `running`); added to
    /// the snapshot by `Engine::stats` from its runner.
    pub runs_now: BTreeMap<&'static str, u64>,
    /// LLM call attempts, including retries.
    pub llm_calls: u64,
    /// Input tokens of all answered calls (the sum over `llm_usage`).
    pub tokens_in: u64,
    /// Output tokens of all answered calls (the sum over `llm_usage`).
    pub tokens_out: u64,
    /// Provider → model (as configured) → what the answered calls used and cost.
    pub llm_usage: BTreeMap<String, BTreeMap<String, UsageTotals>>,
    /// Failed LLM attempts by error code.
    pub llm_errors: BTreeMap<&'static str, u64>,
    /// Webhook attempts by outcome (`delivered`, `failed`: given up,
    /// `retried`: failed and due again), SPEC 8.5; kept by the engine's
    /// webhooks rather than these counters, and added to the snapshot by
    /// `Engine::stats`.
    pub webhook_deliveries: BTreeMap<&'static str, u64>,
}

impl Counters {
    pub(crate) fn run_finished(&self, status: crate::outcome::RunStatus) {
        use crate::outcome::RunStatus::*;
        let counter = match status {
            Success => &self.runs_success,
            Pending => &self.runs_pending,
            Error => &self.runs_error,
            Cancelled => &self.runs_cancelled,
            // Not an end: nothing to count.
            Queued | Running | Interrupted => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn agent_finished(&self, status: crate::outcome::AgentRunStatus) {
        use crate::outcome::AgentRunStatus::*;
        match status {
            Completed => &self.agents_completed,
            Failed | Fallback => &self.agents_failed,
            Skipped => &self.agents_skipped,
            Waiting => &self.agents_waiting,
            // Not an end of its work: counted when it finishes.
            Interrupted | Cancelled => return,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts a question a run asked of a person.
    pub(crate) fn interrupt_opened(&self, kind: InterruptKind) {
        match kind {
            InterruptKind::Ask => &self.interrupts_ask,
            InterruptKind::Choose => &self.interrupts_choose,
            InterruptKind::Approve => &self.interrupts_approve,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts an LLM attempt that answered, with its tokens and cost.
    pub(crate) fn llm_answered(&self, call: &CallRecord) {
        self.llm_calls.fetch_add(1, Relaxed);
        if let Ok(mut usage) = self.llm_usage.lock() {
            usage
                .entry(call.provider.clone())
                .or_default()
                .entry(call.model.clone())
                .or_default()
                .add(call);
        }
    }

    /// Counts an LLM attempt that failed with error `code`.
    pub(crate) fn llm_failed(&self, code: &'static str) {
        self.llm_calls.fetch_add(1, Relaxed);
        if let Ok(mut errors) = self.llm_errors.lock() {
            *errors.entry(code).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> EngineStats {
        let runs = [
            ("success", &self.runs_success),
            ("pending", &self.runs_pending),
            ("error", &self.runs_error),
            ("cancelled", &self.runs_cancelled),
        ];
        let agents = [
            ("completed", &self.agents_completed),
            ("failed", &self.agents_failed),
            ("skipped", &self.agents_skipped),
            ("waiting", &self.agents_waiting),
        ];
        let interrupts = [
            ("ask", &self.interrupts_ask),
            ("choose", &self.interrupts_choose),
            ("approve", &self.interrupts_approve),
        ];
        let read = |pairs: &[(&'static str, &AtomicU64)]| {
            pairs.iter().map(|(k, v)| (*k, v.load(Relaxed))).collect()
        };
        let llm_usage = self.llm_usage.lock().map(|u| u.clone()).unwrap_or_default();
        let all = llm_usage.values().flat_map(BTreeMap::values);
        let (tokens_in, tokens_out) = all.fold((0, 0), |(i, o), t| {
            (i + t.input_tokens, o + t.output_tokens)
        });
        EngineStats {
            runs: read(&runs),
            agent_executions: read(&agents),
            interrupts: read(&interrupts),
            runs_now: BTreeMap::new(),
            llm_calls: self.llm_calls.load(Relaxed),
            tokens_in,
            tokens_out,
            llm_usage,
            llm_errors: self
                .llm_errors
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
            webhook_deliveries: BTreeMap::new(),
        }
    }
}
