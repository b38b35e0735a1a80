//! LLM providers: one trait, [`LlmProvider`], and its implementations.
//!
//! The engine asks for a completion in vendor-neutral terms ([`LlmRequest`]) and
//! gets a [`LlmResponse`] or an [`LlmError`] it can act on. A provider makes
//! exactly one attempt per call; retries, backoff and the per-attempt time
//! limit live in [`complete_with_retry`], so every provider (vendors, mock,
//! replay) gets the same policy.
//!
//! # Layout
//!
//! - [`request`]: the request / response data types.
//! - [`error`]: [`LlmError`] and the mapping of vendor HTTP errors to it.
//! - `transport`: the HTTP exchange shared by the vendors (send, map errors,
//!   read a JSON body or an SSE stream), driven by each vendor's wire format.
//! - [`sse`]: the Server-Sent Events decoder used by every streaming vendor.
//! - [`openai`] (also `openai_compatible`), [`anthropic`], [`gemini`]: the vendors.
//! - [`mock`]: a deterministic offline provider for tests, demos and benchmarks.
//! - [`replay`]: records calls to disk and answers from the recordings.
//! - [`retry`]: retries with exponential backoff, jitter, `Retry-After` and time limits.
//! - [`factory`]: builds the configured provider from runtime.yaml's `llm:` and `replay:`.

pub mod anthropic;
pub mod error;
pub mod factory;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod replay;
pub mod request;
pub mod retry;
pub mod sse;
mod transport;

pub use anthropic::AnthropicProvider;
pub use error::{LlmError, LlmErrorCode};
pub use factory::build_provider;
pub use gemini::GeminiProvider;
pub use mock::MockProvider;
pub use openai::OpenAiProvider;
pub use replay::ReplayProvider;
pub use request::{Cutoff, LlmRequest, LlmResponse, Message, ToolCall, ToolDefinition, Usage};
pub use retry::{Attempts, RetryPolicy, complete_with_retry, complete_with_timeout};

use async_trait::async_trait;

/// Receives the reply's text deltas as they arrive, in order.
pub type TokenSink = dyn Fn(&str) + Send + Sync;

/// A chat model behind some API.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// `openai`, `anthropic`, `gemini`, `openai_compatible`, `mock` or `replay`.
    fn name(&self) -> &str;

    /// Makes one attempt. When `on_token` is given the reply is streamed and each
    /// text delta is passed to it as it arrives; the returned text is then their
    /// concatenation. No retries and no time limit here: see [`complete_with_retry`].
    async fn complete(
        &self,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError>;
}
