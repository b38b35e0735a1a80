//! A node: one step of work in three phases, with retries around the middle one.
//!
//! `prep` reads the shared store, `exec` does the work without seeing the
//! store, `post` writes back and names the next action. Because `exec` is
//! isolated it can be attempted again: `max_retries` is the total number of
//! attempts, `wait` the pause between them, and `exec_fallback` decides what
//! the last failure means. [`NodeRunner`] is the loop that drives the phases
//! and turns a node into a [`Runnable`] a flow can hold.

use crate::{Action, FlowError, NodeError, Params, Phase, Runnable, Shared};
use async_trait::async_trait;
use std::future::Future;
use std::time::Duration;

/// One step of a flow, over a shared store of type `S`.
///
/// Implement the methods with `async fn`; the futures must be `Send`.
/// `exec` takes the prep result by reference because it may run several times.
pub trait Node<S: Send + Sync>: Send + Sync {
    /// What `prep` hands to `exec` (and then, by value, to `post`).
    type Prep: Send + Sync;
    /// What a successful `exec` (or `exec_fallback`) produces.
    type Exec: Send;

    /// Names the node in errors and logs. Defaults to the type's name.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Total attempts of `exec`, the first included. `0` counts as `1`.
    fn max_retries(&self) -> u32 {
        1
    }

    /// How long to wait after attempt `failed_attempt` (1-based) failed with
    /// `error`, before the next one. Default: no wait. A constant is
    /// PocketFlow's `wait`; the arguments allow backoff or honouring a
    /// rate limiter's `Retry-After` found by downcasting `error`.
    fn wait(&self, _failed_attempt: u32, _error: &NodeError) -> Duration {
        Duration::ZERO
    }

    /// Reads what the step needs from the store (held under a read lock).
    fn prep(
        &self,
        shared: &S,
        params: &Params,
    ) -> impl Future<Output = Result<Self::Prep, NodeError>> + Send;

    /// Does the work. Never sees the store; may be attempted several times.
    fn exec(&self, prep: &Self::Prep)
    -> impl Future<Output = Result<Self::Exec, NodeError>> + Send;

    /// Runs once after the last attempt failed, with that attempt's error.
    /// Return `Ok` to carry on with a substitute result; the default
    /// returns the error, which stops the flow.
    fn exec_fallback(
        &self,
        _prep: &Self::Prep,
        error: NodeError,
    ) -> impl Future<Output = Result<Self::Exec, NodeError>> + Send {
        async move { Err(error) }
    }

    /// Writes results to the store (held under the write lock) and returns
    /// the action that picks the successor. Default: `"default"`.
    fn post(
        &self,
        _shared: &mut S,
        _params: &Params,
        _prep: Self::Prep,
        _exec: Self::Exec,
    ) -> impl Future<Output = Result<Action, NodeError>> + Send {
        async { Ok(Action::DEFAULT) }
    }
}

/// A [`Node`] made runnable: drives prep → exec (with retries) → post.
///
/// [`crate::Flow::add`] wraps nodes in it; use it directly to run one node
/// on its own (`NodeRunner::new(node).run(&mut store)`) or to share one node
/// as an `Arc<dyn Runnable<S>>`.
pub struct NodeRunner<N>(N);

impl<N> NodeRunner<N> {
    /// Wraps `node`.
    pub fn new(node: N) -> Self {
        NodeRunner(node)
    }

    /// The wrapped node.
    pub fn node(&self) -> &N {
        &self.0
    }
}

#[async_trait]
impl<S: Send + Sync, N: Node<S>> Runnable<S> for NodeRunner<N> {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn run_with(&self, shared: &Shared<'_, S>, params: &Params) -> Result<Action, FlowError> {
        let node = &self.0;
        let failed = |phase| {
            move |source| FlowError::Node {
                node: node.name().to_owned(),
                phase,
                source,
            }
        };
        // Each lock guard is a temporary: it lives for its statement only.
        let prep = node
            .prep(&*shared.read().await, params)
            .await
            .map_err(failed(Phase::Prep))?;
        let exec = exec_with_retries(
            node.name(),
            node.max_retries(),
            |attempt, error| node.wait(attempt, error),
            || node.exec(&prep),
            |error| node.exec_fallback(&prep, error),
        )
        .await
        .map_err(failed(Phase::Exec))?;
        node.post(&mut *shared.write().await, params, prep, exec)
            .await
            .map_err(failed(Phase::Post))
    }
}

/// PocketFlow's retry loop: up to `max_retries` attempts of `exec`, `wait`
/// between them, `fallback` with the last error if none succeeded.
pub(crate) async fn exec_with_retries<T, Attempt, Fallback>(
    node: &str,
    max_retries: u32,
    wait: impl Fn(u32, &NodeError) -> Duration,
    exec: impl Fn() -> Attempt,
    fallback: impl FnOnce(NodeError) -> Fallback,
) -> Result<T, NodeError>
where
    Attempt: Future<Output = Result<T, NodeError>>,
    Fallback: Future<Output = Result<T, NodeError>>,
{
    let attempts = max_retries.max(1);
    let mut attempt = 1;
    loop {
        match exec().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= attempts => {
                tracing::debug!(node, attempts, %error, "exec failed on its last attempt; falling back");
                return fallback(error).await;
            }
            Err(error) => {
                let pause = wait(attempt, &error);
                tracing::debug!(node, attempt, %error, ?pause, "exec failed; retrying");
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                attempt += 1;
            }
        }
    }
}
