//! Counters the engine keeps for `/metrics` and `/health`.
//!
//! Plain atomics behind one struct: cheap to bump on the hot path, read as
//! a consistent-enough snapshot ([`EngineStats`]) by the server.

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
    llm_calls: AtomicU64,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    /// LLM error code → count. A mutex, since codes are few and errors rare.
    llm_errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Finished runs by status (`success`, `pending`, `error`, `cancelled`).
    pub runs: BTreeMap<&'static str, u64>,
    /// Agent executions by result (`completed`, `failed`, `skipped`, `waiting`).
    pub agent_executions: BTreeMap<&'static str, u64>,
    /// LLM call attempts, including retries.
    pub llm_calls: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Failed LLM attempts by error code.
    pub llm_errors: BTreeMap<&'static str, u64>,
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
            Queued | Running => return,
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
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn llm_call(&self, result: Result<(u64, u64), &'static str>) {
        self.llm_calls.fetch_add(1, Relaxed);
        match result {
            Ok((tokens_in, tokens_out)) => {
                self.tokens_in.fetch_add(tokens_in, Relaxed);
                self.tokens_out.fetch_add(tokens_out, Relaxed);
            }
            Err(code) => {
                if let Ok(mut errors) = self.llm_errors.lock() {
                    *errors.entry(code).or_default() += 1;
                }
            }
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
        let read = |pairs: &[(&'static str, &AtomicU64)]| {
            pairs.iter().map(|(k, v)| (*k, v.load(Relaxed))).collect()
        };
        EngineStats {
            runs: read(&runs),
            agent_executions: read(&agents),
            llm_calls: self.llm_calls.load(Relaxed),
            tokens_in: self.tokens_in.load(Relaxed),
            tokens_out: self.tokens_out.load(Relaxed),
            llm_errors: self
                .llm_errors
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }
}
