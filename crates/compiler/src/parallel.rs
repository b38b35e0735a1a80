//! Spreading independent per-item work (agent files, prompt previews,
//! output comparisons) over the machine's cores, with results in input order.
//!
//! The compiler's results must not depend on how work was split: every
//! helper here returns one result per item, in the order of the items, so a
//! caller that merges diagnostics or files in that order produces the same
//! output on one core or sixteen. Items are cut into one contiguous chunk
//! per thread (scoped threads, no pool and no global state); small inputs
//! stay on the calling thread, where spawning would cost more than it saves.

use std::num::NonZeroUsize;

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
/// lock), then runs `f` over its chunk with it.
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
    let chunk = items.len().div_ceil(threads);
    let (init, f) = (&init, &f);
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        // The calling thread takes the first chunk itself instead of idling.
        let first = chunks.next().unwrap_or_default();
        let workers: Vec<_> = chunks
            .map(|part| {
                scope.spawn(move || {
                    let mut state = init();
                    part.iter()
                        .map(|item| f(&mut state, item))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        let mut state = init();
        let mut results: Vec<R> = first.iter().map(|item| f(&mut state, item)).collect();
        for worker in workers {
            match worker.join() {
                Ok(part) => results.extend(part),
                // A panic in `f` is a bug; surface it where it would have
                // surfaced without threads.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
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
        // per chunk and every item is seen exactly once.
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
        let chunk_starts = seen.iter().filter(|(_, count)| *count == 1).count();
        assert!((1..=MAX_THREADS).contains(&chunk_starts));
    }

    #[test]
    fn small_inputs_and_empty_inputs() {
        assert_eq!(map(&[1, 2, 3], |n| n + 1), [2, 3, 4]);
        assert!(map(&[] as &[u8], |n| *n).is_empty());
    }
}
