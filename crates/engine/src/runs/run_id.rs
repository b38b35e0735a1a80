//! New run ids: `run-` and 16 hex digits that grow with time.
//!
//! The embedded store keeps runs and their events in B-trees ordered by
//! run id. Random ids put every new run on a page of its own in each, so
//! every write of a run rewrote (and logged) whole pages for it alone; ids
//! that grow with time keep the runs in flight together on the last few
//! pages, which one commit writes once for all of them. The high 44 bits
//! are the unix time in milliseconds, the low 20 bits count this process's
//! ids from a random start, so a process never makes the same id twice.
//! Two processes on one store can, rarely (the same millisecond and the
//! same count), so storing a run refuses an id that is taken and the
//! runner draws another ([`crate::store::Created::IdTaken`]).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::now_ms;

const COUNT_BITS: u32 = 20;

/// A new run id.
pub(crate) fn new_run_id() -> String {
    static COUNT: LazyLock<AtomicU64> = LazyLock::new(|| AtomicU64::new(rand::random()));
    let count = COUNT.fetch_add(1, Ordering::Relaxed) & ((1 << COUNT_BITS) - 1);
    let ms = now_ms() & ((1 << (64 - COUNT_BITS)) - 1);
    format!("run-{:016x}", (ms << COUNT_BITS) | count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::check_run_id;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_distinct_and_start_with_the_time() {
        let before = now_ms();
        let ids: Vec<String> = (0..10_000).map(|_| new_run_id()).collect();
        let after = now_ms();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        for id in &ids {
            assert!(check_run_id(id).is_ok(), "{id}");
            let bits = u64::from_str_radix(&id["run-".len()..], 16).expect("hex");
            let ms = bits >> COUNT_BITS;
            assert!(
                (before..=after).contains(&ms),
                "{id}: {ms} not in {before}..={after}"
            );
        }
    }
}
