//! The codes of failures inside a run: why an agent failed, why a run
//! stopped early.
//!
//! These are results, not [`EngineError`](crate::EngineError)s: a failed
//! agent is reported in the run's outcome (`errors`, `error_code`). Each code
//! is a variant of an enum made by the `error_codes!` macro, which also lists every
//! variant in `ALL`, so the documentation can be checked against the enums
//! rather than against the source text. The wire strings never change:
//! clients branch on them.

/// Declares a code enum: each variant with its wire string, `as_str()`, and
/// `ALL`, every variant in declaration order (one list, so none is left out).
macro_rules! error_codes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stable snake_case code clients see.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $code, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use error_codes;

use crate::llm::{LlmError, LlmErrorCode};
use crate::store::StoreError;

error_codes! {
    /// Why an agent failed, when the failure is its own rather than the
    /// LLM's ([`LlmErrorCode`]) or a store's (`StoreError::code`).
    pub enum AgentErrorCode {
        /// A required document is missing and `on_missing_doc` is `error`.
        DependencyMissing => "dependency_missing",
        /// An output or sequence document name is not a valid id.
        InvalidDocumentName => "invalid_document_name",
        /// The agent's memory scope is not valid for this story.
        InvalidMemoryScope => "invalid_memory_scope",
        /// The prompt template (or a sequence step's) failed to render.
        PromptRenderError => "prompt_render_error",
        /// The reply did not fit the output schema, also after one repair.
        InvalidOutput => "invalid_output",
        /// A sequence step's tool arguments are not JSON.
        ToolArguments => "tool_arguments",
        /// A sequence step's tool call failed.
        ToolFailed => "tool_failed",
        /// The model kept calling tools past the limit.
        ToolLoopLimit => "tool_loop_limit",
        /// The reply stopped at `llm.max_tokens`, unfinished.
        OutputTruncated => "output_truncated",
        /// The run's budget was used up before the agent's next LLM call.
        BudgetExceeded => "budget_exceeded",
        /// A skill run headless closed with `"status": "blocked"` (SPEC 1.7).
        Blocked => "blocked",
        /// Every attempt failed, the last for a reason other than the LLM's.
        AgentFailed => "agent_failed",
        /// The engine itself went wrong (the agent did not run).
        Internal => "internal_error",
    }
}

error_codes! {
    /// Why a run stopped early (its outcome's `error_code`), unless its
    /// state could not be loaded (then a store's code).
    pub enum HaltCode {
        /// An agent failed and its `error_handling` is `stop`.
        AgentFailed => "agent_failed",
        /// A step would run more often than its `max_visits`.
        LoopLimit => "loop_limit",
        /// The graph itself failed, or a bug panicked inside the run.
        Internal => "internal_error",
        /// The process running it died or was stopped (SPEC 8.1); the run
        /// is marked, never replayed.
        InterruptedByRestart => "interrupted_by_restart",
        /// Its flow is no longer in the bundle of the process that took it over.
        BundleChanged => "bundle_changed",
        /// It used its budget (SPEC 8.4); what was written is kept.
        BudgetExceeded => "budget_exceeded",
        /// A question stayed open past `runs.interrupt_timeout_s` (SPEC 8.3).
        InterruptTimeout => "interrupt_timeout",
        /// A person rejected a step at its `before` gate; the run ends
        /// `cancelled` (SPEC 8.3).
        ApprovalRejected => "approval_rejected",
    }
}

/// The code of one agent's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureCode {
    Agent(AgentErrorCode),
    Llm(LlmErrorCode),
    /// A document store failed; its code is the store error's.
    Store(&'static str),
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent(code) => code.as_str(),
            Self::Llm(code) => code.as_str(),
            Self::Store(code) => code,
        }
    }
}

impl From<AgentErrorCode> for FailureCode {
    fn from(code: AgentErrorCode) -> Self {
        Self::Agent(code)
    }
}

impl From<&LlmError> for FailureCode {
    fn from(error: &LlmError) -> Self {
        Self::Llm(error.kind())
    }
}

impl From<&StoreError> for FailureCode {
    fn from(error: &StoreError) -> Self {
        Self::Store(error.code())
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caught panic said, for the log and the failure it becomes.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_snake_case() {
        let codes: Vec<&str> = AgentErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), 13);
        assert!(codes.contains(&"tool_loop_limit"));
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
        for code in codes.iter().chain(
            HaltCode::ALL
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .iter(),
        ) {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }
}
