//! The graph's own overhead: how long a node step and a batch item cost when
//! the nodes do nothing.
//!
//! `chain` runs a flow of 1,000 no-op nodes, so its time divided by 1,000 is
//! the per-step cost (prep, exec, post, two store locks, routing); divan's
//! item counter prints that rate. `parallel_batch` runs 1,000 no-op items
//! through a `ParallelBatch`. Run with `cargo bench -p pocketflow`.

use divan::Bencher;
use divan::counter::ItemsCount;
use pocketflow::{BatchNode, Flow, Node, NodeError, NodeRunner, ParallelBatch, Params, Runnable};

fn main() {
    divan::main();
}

const SIZE: usize = 1_000;

/// A node that does nothing in every phase.
struct Noop;

impl Node<()> for Noop {
    type Prep = ();
    type Exec = ();

    async fn prep(&self, _: &(), _: &Params) -> Result<(), NodeError> {
        Ok(())
    }

    async fn exec(&self, _: &()) -> Result<(), NodeError> {
        Ok(())
    }
}

/// A batch of `SIZE` items that each do nothing.
struct NoopItems;

impl BatchNode<()> for NoopItems {
    type Item = u32;
    type Output = u32;

    async fn prep(&self, _: &(), _: &Params) -> Result<Vec<u32>, NodeError> {
        Ok((0..SIZE as u32).collect())
    }

    async fn exec(&self, item: &u32) -> Result<u32, NodeError> {
        Ok(*item)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
}

#[divan::bench]
fn chain(bencher: Bencher) {
    let mut flow = Flow::new();
    let mut previous = flow.add(Noop);
    for _ in 1..SIZE {
        let node = flow.add(Noop);
        flow.next(previous, node);
        previous = node;
    }
    let runtime = runtime();
    bencher
        .counter(ItemsCount::new(SIZE))
        .bench_local(|| runtime.block_on(flow.run(&mut ())));
}

#[divan::bench]
fn parallel_batch(bencher: Bencher) {
    let node = NodeRunner::new(ParallelBatch(NoopItems));
    let runtime = runtime();
    bencher
        .counter(ItemsCount::new(SIZE))
        .bench_local(|| runtime.block_on(node.run(&mut ())));
}
