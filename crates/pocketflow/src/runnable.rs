//! The one object-safe trait a flow stores its members as.
//!
//! [`crate::Node`] has associated types, so a flow of different nodes cannot
//! hold them directly. Everything that can sit in a graph (a node wrapped in
//! [`crate::NodeRunner`], a [`crate::Flow`], a batch flow, or your own type)
//! is a `Runnable<S>`: given the store and the params, run, and say which
//! action came out. Implement it by hand only for new kinds of graph member;
//! use `#[pocketflow::async_trait]` on the impl.

use crate::{Action, FlowError, Params, Shared};
use async_trait::async_trait;
use std::sync::Arc;

/// Something a flow can run as one step: a node, a nested flow, a batch.
#[async_trait]
pub trait Runnable<S: Send + Sync>: Send + Sync {
    /// Names this member in errors and logs.
    fn name(&self) -> &str;

    /// Runs against a store already lent to the current run, with the params
    /// its parent passes down. Locks `shared` only briefly (never across a
    /// call into another member), so concurrent siblings make progress.
    async fn run_with(&self, shared: &Shared<'_, S>, params: &Params) -> Result<Action, FlowError>;

    /// Runs on its own: lends `shared` for the duration, starts with no params,
    /// and returns the last action.
    async fn run(&self, shared: &mut S) -> Result<Action, FlowError> {
        self.run_with(&Shared::new(shared), &Params::new()).await
    }
}

/// One member instance may be shared by several flows.
#[async_trait]
impl<S: Send + Sync, R: Runnable<S> + ?Sized> Runnable<S> for Arc<R> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn run_with(&self, shared: &Shared<'_, S>, params: &Params) -> Result<Action, FlowError> {
        (**self).run_with(shared, params).await
    }
}
