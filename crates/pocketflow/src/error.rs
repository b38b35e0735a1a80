//! What can go wrong while a flow runs, in one enum a caller can match on.
//!
//! Nodes report failures as a [`NodeError`] (any boxed error, so `?` works on
//! whatever a node calls). The runner wraps it in [`FlowError::Node`] with the
//! node's name and the phase that failed, and keeps the original as the
//! `source`, so a caller can `downcast_ref` back to its own error type.

use crate::flow::NodeId;
use std::fmt;

/// The error a node's `prep`, `exec`, `exec_fallback` or `post` returns.
pub type NodeError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The phase of a node step that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the shared store (`prep`, or a batch flow's param sets).
    Prep,
    /// The work itself, after the last attempt and `exec_fallback`.
    Exec,
    /// Writing back to the shared store (`post`, or a flow's post hook).
    Post,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Prep => "prep",
            Phase::Exec => "exec",
            Phase::Post => "post",
        })
    }
}

/// Why a flow (or a single node run through [`crate::NodeRunner`]) stopped.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A node failed; the flow stopped there. In nested flows this is the
    /// innermost failing node, passed up unchanged.
    #[error("node `{node}` failed in {phase}")]
    Node {
        /// The failing node's [`crate::Node::name`] (or the flow's name).
        node: String,
        /// Which phase failed.
        phase: Phase,
        /// The node's own error.
        #[source]
        source: NodeError,
    },
    /// The flow has no nodes, so nothing to start at.
    #[error("flow `{flow}` has no start node")]
    Empty {
        /// The flow's name.
        flow: String,
    },
    /// An edge or the start refers to a [`NodeId`] this flow never issued
    /// (ids are only meaningful in the flow whose `add` returned them).
    #[error("flow `{flow}` has no node {node}")]
    UnknownNode {
        /// The flow's name.
        flow: String,
        /// The id that does not exist in it.
        node: NodeId,
    },
}
