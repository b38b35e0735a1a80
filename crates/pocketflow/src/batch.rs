//! Batch nodes: `prep` returns a list, `exec` runs once per item.
//!
//! Implement [`BatchNode`] once, then choose how the items run when adding it
//! to a flow: [`Batch`] runs them one after another, [`ParallelBatch`] all at
//! once (concurrently on the current task). Either way every item gets the
//! node's retry policy and fallback on its own, and `post` receives the
//! outputs in the order of the items.

use crate::node::exec_with_retries;
use crate::{Action, Node, NodeError, Params};
use std::future::Future;
use std::time::Duration;

/// A node whose work is a list of items, each processed by `exec` on its own.
pub trait BatchNode<S: Send + Sync>: Send + Sync {
    /// One unit of work.
    type Item: Send + Sync;
    /// What `exec` makes of one item.
    type Output: Send;

    /// Names the node in errors and logs. Defaults to the type's name.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Total attempts of `exec` per item. `0` counts as `1`.
    fn max_retries(&self) -> u32 {
        1
    }

    /// Pause after attempt `failed_attempt` of an item failed (see [`Node::wait`]).
    fn wait(&self, _failed_attempt: u32, _error: &NodeError) -> Duration {
        Duration::ZERO
    }

    /// Reads the items from the store.
    fn prep(
        &self,
        shared: &S,
        params: &Params,
    ) -> impl Future<Output = Result<Vec<Self::Item>, NodeError>> + Send;

    /// Processes one item. Never sees the store; may be attempted several times.
    fn exec(
        &self,
        item: &Self::Item,
    ) -> impl Future<Output = Result<Self::Output, NodeError>> + Send;

    /// Runs after an item's last attempt failed. Default: the error stops the flow.
    fn exec_fallback(
        &self,
        _item: &Self::Item,
        error: NodeError,
    ) -> impl Future<Output = Result<Self::Output, NodeError>> + Send {
        async move { Err(error) }
    }

    /// Writes the outputs (`outputs[i]` belongs to `items[i]`) and returns the action.
    fn post(
        &self,
        _shared: &mut S,
        _params: &Params,
        _items: Vec<Self::Item>,
        _outputs: Vec<Self::Output>,
    ) -> impl Future<Output = Result<Action, NodeError>> + Send {
        async { Ok(Action::DEFAULT) }
    }
}

/// Runs a [`BatchNode`]'s items in order, each finished before the next starts.
pub struct Batch<B>(pub B);

/// Runs a [`BatchNode`]'s items concurrently; outputs keep the items' order.
/// The first item to fail for good cancels the others.
pub struct ParallelBatch<B>(pub B);

/// One item through the node's retry policy and fallback.
async fn exec_item<S: Send + Sync, B: BatchNode<S>>(
    node: &B,
    item: &B::Item,
) -> Result<B::Output, NodeError> {
    exec_with_retries(
        node.name(),
        node.max_retries(),
        |attempt, error| node.wait(attempt, error),
        || node.exec(item),
        |error| node.exec_fallback(item, error),
    )
    .await
}

// Both adapters are plain nodes whose single `exec` covers the whole batch;
// the retries happen per item inside it.
impl<S: Send + Sync, B: BatchNode<S>> Node<S> for Batch<B> {
    type Prep = Vec<B::Item>;
    type Exec = Vec<B::Output>;

    fn name(&self) -> &str {
        self.0.name()
    }

    async fn prep(&self, shared: &S, params: &Params) -> Result<Vec<B::Item>, NodeError> {
        self.0.prep(shared, params).await
    }

    async fn exec(&self, items: &Vec<B::Item>) -> Result<Vec<B::Output>, NodeError> {
        let mut outputs = Vec::with_capacity(items.len());
        for item in items {
            outputs.push(exec_item(&self.0, item).await?);
        }
        Ok(outputs)
    }

    async fn post(
        &self,
        shared: &mut S,
        params: &Params,
        items: Vec<B::Item>,
        outputs: Vec<B::Output>,
    ) -> Result<Action, NodeError> {
        self.0.post(shared, params, items, outputs).await
    }
}

impl<S: Send + Sync, B: BatchNode<S>> Node<S> for ParallelBatch<B> {
    type Prep = Vec<B::Item>;
    type Exec = Vec<B::Output>;

    fn name(&self) -> &str {
        self.0.name()
    }

    async fn prep(&self, shared: &S, params: &Params) -> Result<Vec<B::Item>, NodeError> {
        self.0.prep(shared, params).await
    }

    async fn exec(&self, items: &Vec<B::Item>) -> Result<Vec<B::Output>, NodeError> {
        futures::future::try_join_all(items.iter().map(|item| exec_item(&self.0, item))).await
    }

    async fn post(
        &self,
        shared: &mut S,
        params: &Params,
        items: Vec<B::Item>,
        outputs: Vec<B::Output>,
    ) -> Result<Action, NodeError> {
        self.0.post(shared, params, items, outputs).await
    }
}
