//! `EngineError`: what can go wrong when a caller asks the engine for something.
//!
//! Failures *inside* a run (an agent's LLM call failing, a document missing)
//! are not errors of this kind: they are part of the [`RunOutcome`](crate::outcome::RunOutcome).
//! These variants are about the request itself or the machinery, and each
//! maps to one HTTP status in the server.

use crate::failure::error_codes;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bundle has no flow of that name (404).
    #[error("unknown flow `{0}`")]
    UnknownFlow(String),
    /// The bundle has no agent of that id (404).
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
    /// The request is well-formed JSON but a field of it is not acceptable,
    /// e.g. a negative budget (422; `field` is its path, as `budget.usd`).
    #[error("{message}")]
    InvalidRequest {
        field: &'static str,
        message: String,
    },
    /// The story id is valid but too long for an id the request would make
    /// (a document's, an isolated memory scope's); see `story_limit` (400).
    #[error(
        "story id is {len} characters long, too long for {too_long_for}: {of} accepts story ids of at most {max_len} characters"
    )]
    StoryIdTooLong {
        len: usize,
        max_len: usize,
        /// The flow or agent whose limit it is: "flow `brief`", "agent `pm`".
        of: String,
        /// The id that sets the limit, in words.
        too_long_for: String,
    },
    /// This flow has a queued or running run for this story (409); its
    /// status, when it could be read.
    #[error("flow is already running for this story (run {run_id})")]
    RunInProgress {
        run_id: String,
        status: Option<String>,
    },
    /// Too many runs wait for a slot (503).
    #[error("too many runs are queued ({0}); retry later")]
    QueueFull(usize),
    /// No run of that id (404).
    #[error("unknown run `{0}`")]
    UnknownRun(String),
    /// A run id this program never makes (400).
    #[error("{0}")]
    InvalidRunId(String),
    /// A listing cursor that this program never makes (400).
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A budget in US dollars on a flow whose agents use a model without
    /// a price in runtime.yaml `pricing` (422).
    #[error(
        "a budget in US dollars needs a price for every model of the flow; `{0}` has none in runtime.yaml `pricing`"
    )]
    BudgetUnenforceable(String),
    /// A `webhook` that is not an http(s) URL, or whose host is not in
    /// runtime.yaml `webhooks.allowed_hosts` (422).
    #[error("invalid webhook: {0}")]
    InvalidWebhook(String),
    /// A `webhook` while the signing secret is not set: webhooks are never
    /// sent unsigned (422). `var` names the environment variable.
    #[error(
        "webhooks are signed, and the signing secret is not set: the server's environment variable `{var}` (runtime.yaml `webhooks.secret_env`) is unset or empty"
    )]
    WebhookSecretMissing { var: String },
    /// Cancel of a run that ended other than cancelled (409).
    #[error("run `{run_id}` has ended ({status}); only a queued or running run can be cancelled")]
    RunNotActive { run_id: String, status: String },
    /// Resume of a run that waits for no answer (409).
    #[error("run `{run_id}` is {status}, not interrupted: it waits for no answer")]
    NotInterrupted { run_id: String, status: String },
    /// Resume naming an interrupt the run does not have open (409).
    #[error("interrupt `{interrupt_id}` is not open on run `{run_id}`")]
    InterruptNotOpen {
        run_id: String,
        interrupt_id: String,
        /// The ids of the run's open interrupts.
        open: Vec<String>,
    },
    /// An answer that does not fit its question (422).
    #[error("{message}")]
    InvalidAnswer {
        message: String,
        /// For a `choose` question, its options.
        options: Option<Vec<String>>,
    },
    /// A store failed (status per the store error's kind).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not be set up from the configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else; the message is safe to show.
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// A stable snake_case code for the HTTP layer's `error.code`.
    pub fn code(&self) -> &'static str {
        let code = match self {
            Self::UnknownFlow(_) => EngineErrorCode::UnknownFlow,
            Self::UnknownAgent(_) => EngineErrorCode::UnknownAgent,
            Self::InvalidRequest { .. } => EngineErrorCode::InvalidRequest,
            Self::StoryIdTooLong { .. } => EngineErrorCode::InvalidId,
            Self::RunInProgress { .. } => EngineErrorCode::RunInProgress,
            Self::QueueFull(_) => EngineErrorCode::QueueFull,
            Self::UnknownRun(_) => EngineErrorCode::NotFound,
            Self::InvalidRunId(_) => EngineErrorCode::InvalidId,
            Self::InvalidCursor(_) => EngineErrorCode::InvalidCursor,
            Self::RunNotActive { .. } => EngineErrorCode::RunNotActive,
            Self::BudgetUnenforceable(_) => EngineErrorCode::BudgetUnenforceable,
            Self::NotInterrupted { .. } => EngineErrorCode::NotInterrupted,
            Self::InterruptNotOpen { .. } => EngineErrorCode::InterruptNotOpen,
            Self::InvalidAnswer { .. } => EngineErrorCode::InvalidAnswer,
            Self::InvalidWebhook(_) => EngineErrorCode::InvalidWebhook,
            Self::WebhookSecretMissing { .. } => EngineErrorCode::WebhookSecretMissing,
            Self::Store(e) => return e.code(),
            Self::Config(_) => EngineErrorCode::ConfigError,
            Self::Internal(_) => EngineErrorCode::InternalError,
        };
        code.as_str()
    }
}

error_codes! {
    /// The codes of [`EngineError`] other than a store's (`StoreError::code`).
    pub enum EngineErrorCode {
        UnknownFlow => "unknown_flow",
        UnknownAgent => "unknown_agent",
        InvalidRequest => "invalid_request",
        InvalidId => "invalid_id",
        RunInProgress => "run_in_progress",
        QueueFull => "queue_full",
        NotFound => "not_found",
        InvalidCursor => "invalid_cursor",
        RunNotActive => "run_not_active",
        BudgetUnenforceable => "budget_unenforceable",
        NotInterrupted => "not_interrupted",
        InterruptNotOpen => "interrupt_not_open",
        InvalidAnswer => "invalid_answer",
        InvalidWebhook => "invalid_webhook",
        WebhookSecretMissing => "webhook_secret_missing",
        ConfigError => "config_error",
        InternalError => "internal_error",
    }
}
