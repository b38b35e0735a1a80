//! PocketFlow's graph model in async Rust: small steps ("nodes") joined by
//! named actions into flows that branch, loop, nest and batch.
//!
//! # The model
//!
//! **Shared store.** Nodes communicate through one value of a type you
//! choose, `S`: a struct of results, handles to stores, whatever the steps
//! need. A run borrows it: `flow.run(&mut store)`.
//!
//! **Node.** A [`Node`] is one step, in three phases:
//!
//! 1. `prep(&S, &Params) -> Prep` reads what the step needs from the store;
//! 2. `exec(&Prep) -> Exec` does the work (an LLM call, a computation). It
//!    never sees the store, so it can be tried again: `max_retries()` is the
//!    total number of attempts (default 1) and `wait()` the pause between
//!    them. When the last attempt fails, `exec_fallback(&Prep, error)`
//!    decides: return a substitute result, or return the error (the
//!    default), which stops the flow with [`FlowError::Node`];
//! 3. `post(&mut S, &Params, Prep, Exec) -> Action` writes results back and
//!    returns an [`Action`]: a label such as `"approve"`, or `"default"`.
//!
//! **Flow.** A [`Flow`] is a graph: `flow.add(node)` returns a [`NodeId`];
//! `flow.next(a, b)` runs `b` after `a` returns `"default"`;
//! `flow.on(a, "approve", c)` runs `c` after `a` returns `"approve"`. A run
//! starts at the first node added and follows actions until one has no
//! edge; that action is the flow's result. Edges may point back, so flows
//! loop (bounding a loop is up to its nodes). Replacing an edge logs a
//! warning, and so does ending on an action a node has no edge for while it
//! has edges for others.
//!
//! **Nesting.** A flow is itself [`Runnable`], so `outer.add_runnable(inner)`
//! makes it one step of another flow; the outer flow routes on the inner
//! flow's last action, or on what the inner [`Flow::with_post`] hook makes
//! of it.
//!
//! **Params.** [`Params`] are named JSON values handed down the graph. Each
//! member sees its flow's own params ([`Flow::with_params`]) overlaid by
//! those the parent passes down: the parent wins, as in PocketFlow, where a
//! flow sets its params on each node it runs. Nodes read params in `prep`
//! and `post`; `exec` sees only what `prep` hands it.
//!
//! **Batches.** A [`BatchNode`]'s `prep` returns items and its `exec` runs
//! once per item, each with the retry policy. Add it as [`Batch`] (items in
//! order) or [`ParallelBatch`] (concurrently); either way `post` receives
//! the outputs in item order. A [`BatchFlow`] runs a flow once per param set
//! its [`ParamSets`] lists (each set wins over the inherited params);
//! [`ParallelBatchFlow`] runs the sets concurrently.
//!
//! # Concurrency and the shared store
//!
//! A run lends the store to a [`Shared`], a read/write lock around the
//! borrow. Every node step holds the read lock during `prep`, nothing during
//! `exec`, and the write lock during `post`. In a sequential flow that is
//! two uncontended lock operations per step. In [`ParallelBatch`] and
//! [`ParallelBatchFlow`] it is what lets concurrent branches share one
//! store: their `exec`s overlap freely, their `prep`s may overlap, and each
//! `post` has the store to itself. So `S` must be `Send + Sync` but needs no
//! locks of its own. Parallel branches run concurrently on the current task
//! (`try_join_all`, like `asyncio.gather`): ideal for I/O-bound work; spawn
//! inside `exec` for CPU-heavy work. A `prep` must not wait for something a
//! sibling writes in its `post`, which needs the write lock.
//!
//! # Example
//!
//! A writer and a reviewer loop until the review approves:
//!
//! ```
//! use pocketflow::{Action, Flow, Node, NodeError, Params, Runnable};
//!
//! /// The shared store.
//! #[derive(Default)]
//! struct Article { draft: String, reviews: u32, published: bool }
//!
//! /// Writes the next version of the draft.
//! struct Write;
//!
//! impl Node<Article> for Write {
//!     type Prep = u32; // the version to write
//!     type Exec = String; // the draft
//!
//!     async fn prep(&self, article: &Article, _: &Params) -> Result<u32, NodeError> {
//!         Ok(article.reviews + 1)
//!     }
//!     async fn exec(&self, version: &u32) -> Result<String, NodeError> {
//!         Ok(format!("draft v{version}"))
//!     }
//!     async fn post(&self, article: &mut Article, _: &Params, _: u32, draft: String)
//!         -> Result<Action, NodeError> {
//!         article.draft = draft;
//!         Ok(Action::DEFAULT)
//!     }
//! }
//!
//! /// Approves the second version, asks for a revision before that.
//! struct Review;
//!
//! impl Node<Article> for Review {
//!     type Prep = String;
//!     type Exec = bool;
//!
//!     async fn prep(&self, article: &Article, _: &Params) -> Result<String, NodeError> {
//!         Ok(article.draft.clone())
//!     }
//!     async fn exec(&self, draft: &String) -> Result<bool, NodeError> {
//!         Ok(draft.ends_with("v2"))
//!     }
//!     async fn post(&self, article: &mut Article, _: &Params, _: String, approved: bool)
//!         -> Result<Action, NodeError> {
//!         article.reviews += 1;
//!         Ok(if approved { "approve" } else { "revise" }.into())
//!     }
//! }
//!
//! /// Marks the article published.
//! struct Publish;
//!
//! impl Node<Article> for Publish {
//!     type Prep = ();
//!     type Exec = ();
//!
//!     async fn prep(&self, _: &Article, _: &Params) -> Result<(), NodeError> { Ok(()) }
//!     async fn exec(&self, _: &()) -> Result<(), NodeError> { Ok(()) }
//!     async fn post(&self, article: &mut Article, _: &Params, _: (), _: ())
//!         -> Result<Action, NodeError> {
//!         article.published = true;
//!         Ok(Action::DEFAULT)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pocketflow::FlowError> {
//! let mut flow = Flow::new();
//! let write = flow.add(Write);
//! let review = flow.add(Review);
//! let publish = flow.add(Publish);
//! flow.next(write, review)
//!     .on(review, "revise", write)
//!     .on(review, "approve", publish);
//!
//! let mut article = Article::default();
//! let last = flow.run(&mut article).await?;
//! assert_eq!(last, "default"); // Publish's action: it has no successor, so the flow ends
//! assert_eq!((article.draft.as_str(), article.reviews, article.published), ("draft v2", 2, true));
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `node`: the [`Node`] trait, and [`NodeRunner`], which drives its phases
//!   and retries.
//! - `batch`: the [`BatchNode`] trait and its [`Batch`] / [`ParallelBatch`]
//!   adapters.
//! - `flow`: [`Flow`] and [`NodeId`]: the graph, routing and params.
//! - `batch_flow`: [`ParamSets`], [`BatchFlow`] and [`ParallelBatchFlow`].
//! - `runnable`: [`Runnable`], the object-safe trait a flow stores its
//!   members as (nodes, nested flows, batch flows).
//! - `shared`: [`Shared`], the store behind its read/write lock.
//! - `action`, `error`: [`Action`]; [`FlowError`], [`NodeError`], [`Phase`].

mod action;
mod batch;
mod batch_flow;
mod error;
mod flow;
mod node;
mod runnable;
mod shared;

pub use action::Action;
pub use async_trait::async_trait;
pub use batch::{Batch, BatchNode, ParallelBatch};
pub use batch_flow::{BatchFlow, ParallelBatchFlow, ParamSets};
pub use error::{FlowError, NodeError, Phase};
pub use flow::{Flow, NodeId};
pub use node::{Node, NodeRunner};
pub use runnable::Runnable;
pub use shared::Shared;

/// Named JSON values a flow hands down to its members; sorted, so anything
/// derived from them is deterministic.
pub type Params = std::collections::BTreeMap<String, serde_json::Value>;
