//! Batch flows: run a flow once per param set.
//!
//! A [`ParamSets`] implementation lists the sets (its `prep`) and may write a
//! summary afterwards (its `post`). [`BatchFlow`] runs the flow for each set
//! in order; [`ParallelBatchFlow`] runs all of them concurrently against the
//! same shared store (see [`crate::Shared`] for how they share it). Each run
//! sees the batch flow's params with its set laid over them (the set wins).

use crate::flow::overlay;
use crate::{Action, FlowError, NodeError, Params, Phase, Runnable, Shared};
use async_trait::async_trait;
use std::future::Future;

/// The param sets a batch flow runs over: PocketFlow's `BatchFlow.prep`/`post`.
pub trait ParamSets<S: Send + Sync>: Send + Sync {
    /// Lists one param set per run, read from the store.
    fn prep(
        &self,
        shared: &S,
        params: &Params,
    ) -> impl Future<Output = Result<Vec<Params>, NodeError>> + Send;

    /// Runs after every run finished; returns the batch flow's action.
    fn post(
        &self,
        _shared: &mut S,
        _params: &Params,
        _sets: Vec<Params>,
    ) -> impl Future<Output = Result<Action, NodeError>> + Send {
        async { Ok(Action::DEFAULT) }
    }
}

/// Runs a flow once per param set, one run after another.
pub struct BatchFlow<S, P> {
    flow: Box<dyn Runnable<S>>,
    sets: P,
}

/// Runs a flow once per param set, all runs at once; the first failure
/// cancels the runs still going.
pub struct ParallelBatchFlow<S, P> {
    flow: Box<dyn Runnable<S>>,
    sets: P,
}

impl<S: Send + Sync, P: ParamSets<S>> BatchFlow<S, P> {
    /// Runs `flow` (usually a [`crate::Flow`]) once per set `sets` lists.
    pub fn new(flow: impl Runnable<S> + 'static, sets: P) -> Self {
        BatchFlow {
            flow: Box::new(flow),
            sets,
        }
    }
}

impl<S: Send + Sync, P: ParamSets<S>> ParallelBatchFlow<S, P> {
    /// Runs `flow` (usually a [`crate::Flow`]) concurrently, once per set.
    pub fn new(flow: impl Runnable<S> + 'static, sets: P) -> Self {
        ParallelBatchFlow {
            flow: Box::new(flow),
            sets,
        }
    }
}

#[async_trait]
impl<S: Send + Sync, P: ParamSets<S>> Runnable<S> for BatchFlow<S, P> {
    fn name(&self) -> &str {
        self.flow.name()
    }

    async fn run_with(&self, shared: &Shared<'_, S>, params: &Params) -> Result<Action, FlowError> {
        let sets = prep_sets(self.name(), &self.sets, shared, params).await?;
        for set in &sets {
            self.flow.run_with(shared, &overlay(params, set)).await?;
        }
        post_sets(self.name(), &self.sets, shared, params, sets).await
    }
}

#[async_trait]
impl<S: Send + Sync, P: ParamSets<S>> Runnable<S> for ParallelBatchFlow<S, P> {
    fn name(&self) -> &str {
        self.flow.name()
    }

    async fn run_with(&self, shared: &Shared<'_, S>, params: &Params) -> Result<Action, FlowError> {
        let sets = prep_sets(self.name(), &self.sets, shared, params).await?;
        let runs = sets
            .iter()
            .map(|set| async move { self.flow.run_with(shared, &overlay(params, set)).await });
        futures::future::try_join_all(runs).await?;
        post_sets(self.name(), &self.sets, shared, params, sets).await
    }
}

async fn prep_sets<S: Send + Sync, P: ParamSets<S>>(
    name: &str,
    sets: &P,
    shared: &Shared<'_, S>,
    params: &Params,
) -> Result<Vec<Params>, FlowError> {
    sets.prep(&*shared.read().await, params)
        .await
        .map_err(|source| FlowError::Node {
            node: name.to_owned(),
            phase: Phase::Prep,
            source,
        })
}

async fn post_sets<S: Send + Sync, P: ParamSets<S>>(
    name: &str,
    sets: &P,
    shared: &Shared<'_, S>,
    params: &Params,
    done: Vec<Params>,
) -> Result<Action, FlowError> {
    sets.post(&mut *shared.write().await, params, done)
        .await
        .map_err(|source| FlowError::Node {
            node: name.to_owned(),
            phase: Phase::Post,
            source,
        })
}
