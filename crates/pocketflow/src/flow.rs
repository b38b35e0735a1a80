//! A flow: a graph of members joined by actions, itself runnable as a member.
//!
//! Build it by adding nodes ([`Flow::add`]) or other runnables such as nested
//! flows ([`Flow::add_runnable`]), each returning a [`NodeId`], then wiring
//! edges: `next(a, b)` for the `"default"` action, `on(a, "approve", c)` for a
//! named one. Running starts at the first member added (or the one given to
//! [`Flow::start`]), runs it, and follows the action it returns; the flow ends
//! when that action has no edge. Edges may point backwards, so flows loop.

use crate::{Action, FlowError, Node, NodeError, NodeRunner, Params, Phase, Runnable, Shared};
use async_trait::async_trait;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A member's handle, valid only in the flow whose `add` returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The hook that replaces a flow's post: store, params, last action → action.
type PostHook<S> = dyn Fn(&mut S, &Params, Action) -> Result<Action, NodeError> + Send + Sync;

/// One vertex of the graph.
struct Member<S> {
    runnable: Box<dyn Runnable<S>>,
    /// Outgoing edges by action; at most one successor per action.
    successors: BTreeMap<Action, NodeId>,
}

/// A graph of nodes and nested flows over a shared store of type `S`.
pub struct Flow<S> {
    /// Names the flow in errors and logs.
    name: String,
    /// The flow's own params: defaults its members see unless a parent
    /// passes the same key down.
    params: Params,
    members: Vec<Member<S>>,
    start: Option<NodeId>,
    /// The first id `start`/`next`/`on` received that this flow never
    /// issued; reported by the next run instead of panicking at build time.
    miswired: Option<NodeId>,
    /// Replaces the default post (which returns the last action unchanged).
    post: Option<Box<PostHook<S>>>,
}

impl<S: Send + Sync> Default for Flow<S> {
    fn default() -> Self {
        Flow::new()
    }
}

impl<S: Send + Sync> Flow<S> {
    /// An empty flow named `"flow"`.
    pub fn new() -> Self {
        Flow::named("flow")
    }

    /// An empty flow with a name for errors and logs.
    pub fn named(name: impl Into<String>) -> Self {
        Flow {
            name: name.into(),
            params: Params::new(),
            members: Vec::new(),
            start: None,
            miswired: None,
            post: None,
        }
    }

    /// Sets the flow's own params. Each member sees them overlaid by whatever
    /// the parent passes down (the parent wins, as in PocketFlow, where a
    /// flow sets its params on every node it runs).
    pub fn with_params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// Replaces the flow's post step, which receives the store, the params
    /// and the action the last member returned, and returns the flow's own
    /// action (what an enclosing flow routes on). Default: the last action.
    pub fn with_post(
        mut self,
        post: impl Fn(&mut S, &Params, Action) -> Result<Action, NodeError> + Send + Sync + 'static,
    ) -> Self {
        self.post = Some(Box::new(post));
        self
    }

    /// Adds a node. The first member added is where the flow starts.
    pub fn add<N: Node<S> + 'static>(&mut self, node: N) -> NodeId {
        self.add_runnable(NodeRunner::new(node))
    }

    /// Adds any runnable: a nested [`Flow`], a batch flow, an `Arc<dyn Runnable<S>>`.
    pub fn add_runnable(&mut self, runnable: impl Runnable<S> + 'static) -> NodeId {
        let id = NodeId(self.members.len());
        self.members.push(Member {
            runnable: Box::new(runnable),
            successors: BTreeMap::new(),
        });
        self.start.get_or_insert(id);
        id
    }

    /// Starts runs at `id` instead of the first member added.
    pub fn start(&mut self, id: NodeId) -> &mut Self {
        self.check(id);
        self.start = Some(id);
        self
    }

    /// Runs `to` after `from` returns `"default"`.
    pub fn next(&mut self, from: NodeId, to: NodeId) -> &mut Self {
        self.on(from, Action::DEFAULT, to)
    }

    /// Runs `to` after `from` returns `action`. Replacing an existing edge
    /// for the same action logs a warning; the new edge wins.
    pub fn on(&mut self, from: NodeId, action: impl Into<Action>, to: NodeId) -> &mut Self {
        self.check(to);
        let Some(member) = self.members.get_mut(from.0) else {
            self.check(from);
            return self;
        };
        let action = action.into();
        if let Some(old) = member.successors.insert(action.clone(), to) {
            tracing::warn!(
                flow = %self.name,
                node = member.runnable.name(),
                %action,
                "overwriting successor {old} with {to}"
            );
        }
        self
    }

    /// The member `from` hands over to on `action`, if any.
    pub fn successor(&self, from: NodeId, action: &str) -> Option<NodeId> {
        self.members.get(from.0)?.successors.get(action).copied()
    }

    /// Remembers the first id this flow did not issue.
    fn check(&mut self, id: NodeId) {
        if id.0 >= self.members.len() && self.miswired.is_none() {
            self.miswired = Some(id);
        }
    }

    fn unknown(&self, node: NodeId) -> FlowError {
        FlowError::UnknownNode {
            flow: self.name.clone(),
            node,
        }
    }
}

#[async_trait]
impl<S: Send + Sync> Runnable<S> for Flow<S> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run_with(&self, shared: &Shared<'_, S>, params: &Params) -> Result<Action, FlowError> {
        if let Some(node) = self.miswired {
            return Err(self.unknown(node));
        }
        let params = overlay(&self.params, params);
        let mut current = self.start.ok_or_else(|| FlowError::Empty {
            flow: self.name.clone(),
        })?;
        let last = loop {
            let member = self
                .members
                .get(current.0)
                .ok_or_else(|| self.unknown(current))?;
            let action = member.runnable.run_with(shared, &params).await?;
            tracing::trace!(flow = %self.name, node = member.runnable.name(), %action, "step done");
            match member.successors.get(action.as_str()) {
                Some(&next) => current = next,
                None => {
                    if !member.successors.is_empty() {
                        tracing::warn!(
                            flow = %self.name,
                            node = member.runnable.name(),
                            %action,
                            expected = ?member.successors.keys().collect::<Vec<_>>(),
                            "flow ends: no successor for this action"
                        );
                    }
                    break action;
                }
            }
        };
        match &self.post {
            None => Ok(last),
            Some(post) => {
                post(&mut *shared.write().await, &params, last).map_err(|source| FlowError::Node {
                    node: self.name.clone(),
                    phase: Phase::Post,
                    source,
                })
            }
        }
    }
}

/// `base` with `top`'s entries laid over it (`top` wins); borrows when one is empty.
pub(crate) fn overlay<'a>(base: &'a Params, top: &'a Params) -> Cow<'a, Params> {
    if base.is_empty() {
        Cow::Borrowed(top)
    } else if top.is_empty() {
        Cow::Borrowed(base)
    } else {
        let mut merged = base.clone();
        merged.extend(top.iter().map(|(key, value)| (key.clone(), value.clone())));
        Cow::Owned(merged)
    }
}
