//! The slots of runs executing at once in a process
//! (`runs.max_running_runs`): handed out first come, first served, except
//! that a resumed run goes before every new run waiting (SPEC 8.3: a
//! person who answered has waited already).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Which line a run waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// A run continuing after a person's answer.
    Resumed,
    New,
}

pub(crate) struct Slots {
    count: usize,
    state: Mutex<State>,
}

struct State {
    free: usize,
    resumed: VecDeque<oneshot::Sender<()>>,
    new: VecDeque<oneshot::Sender<()>>,
}

impl State {
    /// The next waiter that is still waiting gets the slot; else it is free.
    fn hand_over(&mut self) {
        while let Some(waiter) = self.resumed.pop_front().or_else(|| self.new.pop_front()) {
            if waiter.send(()).is_ok() {
                return;
            }
        }
        self.free += 1;
    }
}

/// A slot held: given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().hand_over();
    }
}

/// A place in line; dropped before its slot came, it leaves the line, and
/// a slot handed to it in the meantime goes to the next.
struct Waiting {
    slots: Arc<Slots>,
    handed: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut handed) = self.handed.take()
            && handed.try_recv().is_ok()
        {
            self.slots.lock().hand_over();
        }
    }
}

impl Slots {
    pub fn new(count: usize) -> Arc<Self> {
        let count = count.max(1);
        Arc::new(Self {
            count,
            state: Mutex::new(State {
                free: count,
                resumed: VecDeque::new(),
                new: VecDeque::new(),
            }),
        })
    }

    /// How many slots are held.
    pub fn held(&self) -> usize {
        self.count.saturating_sub(self.lock().free)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot in `line`. Cancel-safe: dropping the future gives
    /// up the place (and any slot it was just handed).
    pub async fn acquire(self: &Arc<Self>, line: Line) -> Slot {
        let handed = {
            let mut state = self.lock();
            let nobody_waits = state.resumed.is_empty() && state.new.is_empty();
            if state.free > 0 && nobody_waits {
                state.free -= 1;
                return Slot {
                    slots: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            match line {
                Line::Resumed => state.resumed.push_back(tx),
                Line::New => state.new.push_back(tx),
            }
            rx
        };
        let mut waiting = Waiting {
            slots: self.clone(),
            handed: Some(handed),
        };
        if let Some(handed) = waiting.handed.as_mut() {
            // The sender lives in the line until it hands a slot over.
            let _ = handed.await;
        }
        waiting.handed = None;
        Slot {
            slots: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn pending<F: std::future::Future>(future: &mut std::pin::Pin<Box<F>>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), future.as_mut())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn resumed_runs_go_first_and_a_run_that_gives_up_loses_no_slot() {
        let slots = Slots::new(1);
        let held = slots.acquire(Line::New).await;
        let mut new = Box::pin(slots.acquire(Line::New));
        let mut resumed = Box::pin(slots.acquire(Line::Resumed));
        assert!(pending(&mut new).await);
        assert!(pending(&mut resumed).await);

        drop(held);
        // The resumed run came later but gets the slot.
        let slot = tokio::time::timeout(Duration::from_secs(1), resumed)
            .await
            .unwrap_or_else(|_| panic!("the resumed run gets the freed slot"));
        assert!(pending(&mut new).await);

        // A waiter that gives up takes no slot with it.
        drop(new);
        drop(slot);
        let again = tokio::time::timeout(Duration::from_secs(1), slots.acquire(Line::New)).await;
        assert!(again.is_ok(), "the slot is free again");
    }
}
