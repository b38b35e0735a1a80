//! Spreading independent per-item work (agent files, prompt previews,
//! output comparisons) over the machine's cores, with results in input order.
//!
//! The compiler's results must not depend on how work was split: every
//! helper here returns one result per item, in the order of the items, so a
//! caller that merges diagnostics or files in that order produces the same
//! output on one core or sixteen. Threads (scoped, no pool and no global
//! state) take the next unclaimed item from a shared counter until none is
//! left, so a thread that gets slow items, or starts late, does not hold the
//! others up; small inputs stay on the calling thread, where spawning would
//! cost more than it saves.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many items, work stays on the calling thread.
const MIN_PARALLEL_ITEMS: usize = 32;
/// Never more threads than this, however many cores the machine reports.
const MAX_THREADS: usize = 8;

/// How many threads CPU-bound work should use: the cores this process may
/// run on (cgroup and affinity limits included), at most [`MAX_THREADS`].
pub fn cpu_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS)
}

/// `f` applied to every item, results in item order. Each thread first
/// builds its own state with `init` (caches that would otherwise need a
/// lock), then runs `f` on each item it takes with it.
pub fn map_with_state<T, S, R>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let threads = cpu_threads();
    if threads < 2 || items.len() < MIN_PARALLEL_ITEMS {
        let mut state = init();
        return items.iter().map(|item| f(&mut state, item)).collect();
    }
    let next = AtomicUsize::new(0);
    // Each thread's results, tagged with their item's index.
    let work = || {
        let mut state = init();
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return done;
            };
            done.push((index, f(&mut state, item)));
        }
    };
    let tagged: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(items.len()))
            .map(|_| scope.spawn(work))
            .collect();
        // The calling thread works too instead of idling.
        let mut tagged = work();
        for helper in helpers {
            match helper.join() {
                Ok(part) => tagged.extend(part),
                // A panic in `f` is a bug; surface it where it would have
                // surfaced without threads.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        tagged
    });
    // Each result moves once into its slot: sorting would move large
    // results (a parsed agent) many times over.
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (index, result) in tagged {
        slots[index] = Some(result);
    }
    slots.into_iter().flatten().collect()
}

/// `f` applied to every item, results in item order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_with_state(items, || (), |(), item| f(item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_input_order_and_gives_each_thread_its_state() {
        let items: Vec<usize> = (0..1000).collect();
        let doubled = map(&items, |n| n * 2);
        assert_eq!(doubled, (0..1000).map(|n| n * 2).collect::<Vec<_>>());

        // Each thread's counter starts at zero, so the counts restart once
        // per thread and every item is seen exactly once.
        let seen = map_with_state(
            &items,
            || 0usize,
            |count, n| {
                *count += 1;
                (*n, *count)
            },
        );
        assert_eq!(seen.len(), items.len());
        assert!(seen.iter().map(|(n, _)| *n).eq(0..1000));
        let thread_starts = seen.iter().filter(|(_, count)| *count == 1).count();
        assert!((1..=MAX_THREADS).contains(&thread_starts));
    }

    #[test]
    fn small_inputs_and_empty_inputs() {
        assert_eq!(map(&[1, 2, 3], |n| n + 1), [2, 3, 4]);
        assert!(map(&[] as &[u8], |n| *n).is_empty());
    }
}
