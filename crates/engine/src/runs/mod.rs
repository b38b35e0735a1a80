//! Runs as resources (SPEC 8): every run — from `POST /run`, `POST /runs`
//! or the CLI — is stored with its status and its events, so that clients
//! list, follow, wait for and cancel it, from any process on the same store.
//!
//! # Layout
//! - this file: a run as clients see it ([`Run`], [`RunSummary`]) and its
//!   stored form.
//! - `log.rs`: one run's events in order: numbered, stored, then handed to
//!   the clients following it live.
//! - `runner.rs`: the runs this process executes — running slots and the
//!   queue, cancel requests — the clients who watch runs, and the sweep
//!   that marks the runs of a process that died.
//! - `run_id.rs`: new run ids, in the order they are made.
//! - `claim.rs`: a run's (flow, story) claim, renewed while it lives.
//! - `interrupts.rs`: the questions a run asks a person, and their answers.
//! - `webhooks/`: the signed webhooks a run sends when it ends or waits
//!   for a person, through an outbox in the store.

mod claim;
pub mod interrupts;
mod log;
mod run_id;
mod runner;
mod slots;
mod webhooks;

pub(crate) use log::EventLog;
pub(crate) use runner::Runner;
pub use runner::{
    Cancelled, MAX_PAGE, RunFilter, RunPage, RunUsage, cancel_interrupted, check_run_id,
};
pub(crate) use webhooks::Webhooks;
pub use webhooks::{RunWebhook, WebhookDelivery, WebhookEvent, webhook_url_pattern};

use crate::outcome::{RunOutcome, RunStatus};
use crate::store::{StoreError, StoredRun};
use crate::usage::UsageTotals;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether a run may stop to ask a person (SPEC 8.3): interactive, an
/// agent's `ask_human` call interrupts the run until a person answers;
/// headless, the engine answers it at once and lists the question in the
/// run's `open_questions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    #[default]
    Interactive,
    Headless,
}

/// What a run may use before it is stopped with `budget_exceeded` (SPEC 8.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Budget {
    /// US dollars, of priced calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub usd: Option<f64>,
    /// Tokens, input plus output; at most 2^63 - 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub tokens: Option<u64>,
}

/// Read from a JSON object only: serde would also take a struct from an
/// array (`[1.5, 1000]`), which the API does not promise.
impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            usd: Option<f64>,
            /// A JSON number: `1000.0` is the integer JSON Schema says it is.
            #[serde(default)]
            tokens: Option<serde_json::Number>,
        }
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object {usd?, tokens?}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        let Fields { usd, tokens } = deserializer.deserialize_map(ObjectOnly)?;
        let tokens = tokens
            .map(|n| {
                n.as_u64()
                    .or_else(|| {
                        n.as_f64()
                            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
                            .map(|f| f as u64)
                    })
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "`tokens` must be a whole number of tokens, 0 or more, found {n}"
                        ))
                    })
            })
            .transpose()?;
        Ok(Self { usd, tokens })
    }
}

impl Budget {
    /// Whether `usage` has reached this budget.
    pub fn reached_by(&self, usage: &UsageTotals) -> bool {
        let tokens = usage.input_tokens + usage.output_tokens;
        self.tokens.is_some_and(|max| tokens >= max)
            || self
                .usd
                .is_some_and(|max| usage.cost_usd.unwrap_or(0.0) >= max)
    }

    pub fn is_empty(&self) -> bool {
        self.usd.is_none() && self.tokens.is_none()
    }

    /// Why this budget cannot be one (a negative or infinite amount, more
    /// tokens than the documented limit), if so: the field and the reason.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.usd.is_some_and(|usd| !usd.is_finite() || usd < 0.0) {
            let message = "`budget.usd` must be a number of dollars, 0 or more";
            return Some(("budget.usd", message.into()));
        }
        if self.tokens.is_some_and(|tokens| tokens > i64::MAX as u64) {
            let message = format!("`budget.tokens` must be at most {}", i64::MAX);
            return Some(("budget.tokens", message));
        }
        None
    }
}

/// A run as clients see it: its outcome so far and what it was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// `run_id`, `status`, `results`, `pending_docs`, `errors`,
    /// `error_code`, `duration_ms`: the body `POST /run` always answered.
    #[serde(flatten)]
    pub outcome: RunOutcome,
    pub flow: String,
    pub story_id: String,
    pub input: String,
    /// Whether agents re-run although their outputs are up to date.
    pub force: bool,
    pub mode: RunMode,
    /// The step running now, or the last one that ran.
    pub step: Option<String>,
    /// Agents executing now.
    pub running_agents: Vec<String>,
    /// Every question the run asked a person, open ones first (SPEC 8.3).
    #[serde(default)]
    pub interrupts: Vec<interrupts::Interrupt>,
    /// The questions a headless run answered on its own assumptions.
    #[serde(default)]
    pub open_questions: Vec<interrupts::OpenQuestion>,
    /// What its LLM calls used so far (SPEC 8.4).
    pub usage: UsageTotals,
    /// The budget it runs under, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// More about `error_code`, e.g. `{step, completed_agents}` for
    /// `interrupted_by_restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Its webhook (SPEC 8.5), when it was started with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<RunWebhook>,
    /// Unix ms.
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub updated_at: u64,
}

/// A run in a listing: the run without `results`, `errors` and `input`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub flow: String,
    pub story_id: String,
    pub mode: RunMode,
    pub step: Option<String>,
    pub running_agents: Vec<String>,
    pub pending_docs: Vec<String>,
    /// How many of its interrupts wait for an answer.
    pub open_interrupts: usize,
    pub usage: UsageTotals,
    pub duration_ms: u64,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub updated_at: u64,
}

impl From<Run> for RunSummary {
    fn from(run: Run) -> Self {
        Self {
            run_id: run.outcome.run_id,
            status: run.outcome.status,
            error_code: run.outcome.error_code,
            flow: run.flow,
            story_id: run.story_id,
            mode: run.mode,
            step: run.step,
            running_agents: run.running_agents,
            pending_docs: run.outcome.pending_docs,
            open_interrupts: run.interrupts.iter().filter(|i| i.is_open()).count(),
            usage: run.usage,
            duration_ms: run.outcome.duration_ms,
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            updated_at: run.updated_at,
        }
    }
}

impl RunStatus {
    /// Whether a run in this status has ended (it will not change again).
    pub fn has_ended(self) -> bool {
        !matches!(self, Self::Queued | Self::Running | Self::Interrupted)
    }

    /// Whether nothing executes for the run: it has ended, or it waits for a person.
    pub fn is_settled(self) -> bool {
        self.has_ended() || self == Self::Interrupted
    }
}

impl Run {
    /// The run's stored form.
    pub(crate) fn to_stored(&self) -> Result<StoredRun, StoreError> {
        let body = serde_json::to_string(self).map_err(|e| StoreError::Io {
            message: "storage error: could not encode a run".into(),
            detail: e.to_string(),
        })?;
        Ok(StoredRun {
            run_id: self.outcome.run_id.clone(),
            flow: self.flow.clone(),
            story_id: self.story_id.clone(),
            status: self.outcome.status.as_str().to_string(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            cancel_requested: false,
            body,
        })
    }

    /// A run read back from the store.
    pub fn from_stored(stored: &StoredRun) -> Result<Self, StoreError> {
        serde_json::from_str(&stored.body)
            .map_err(|e| StoreError::corrupt(format!("the stored run `{}`", stored.run_id), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_read_from_an_object_only_with_whole_tokens() {
        let read = |text: &str| serde_json::from_str::<Budget>(text);
        assert_eq!(
            read(r#"{"usd": 1.5, "tokens": 1000.0}"#).ok(),
            Some(Budget {
                usd: Some(1.5),
                tokens: Some(1000)
            })
        );
        assert_eq!(read("{}").ok(), Some(Budget::default()));
        for bad in [
            r#"[1.5, 1000]"#,
            r#"{"tokens": 1.5}"#,
            r#"{"tokens": -1}"#,
            r#"{"cents": 3}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let negative = Budget {
            usd: Some(-1.0),
            tokens: None,
        };
        assert!(negative.problem().is_some());
        let usage = UsageTotals {
            input_tokens: 600,
            output_tokens: 400,
            ..UsageTotals::default()
        };
        let tokens = |n| Budget {
            usd: None,
            tokens: Some(n),
        };
        assert!(tokens(1000).reached_by(&usage));
        assert!(!tokens(1001).reached_by(&usage));
    }
}
