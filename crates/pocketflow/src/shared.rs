//! The shared store as the runners hold it: one borrow, behind a read/write lock.
//!
//! A caller lends its store once (`flow.run(&mut store)`). Every node step
//! then takes the read lock for `prep` (`&S`) and the write lock for `post`
//! (`&mut S`), and holds neither during `exec`. In a sequential flow the lock
//! is never contended; in the parallel variants it is what lets concurrent
//! runs share one store: their `exec`s overlap, their `prep`s may overlap,
//! and each `post` has the store to itself.

use tokio::sync::{RwLock, RwLockMappedWriteGuard, RwLockReadGuard, RwLockWriteGuard};

/// A borrowed shared store, lockable for reading (prep) or writing (post).
pub struct Shared<'a, S> {
    /// The caller's store; `&mut` because posts write to it.
    lock: RwLock<&'a mut S>,
}

impl<'a, S> Shared<'a, S> {
    /// Lends `store` to a run.
    pub fn new(store: &'a mut S) -> Self {
        Shared {
            lock: RwLock::new(store),
        }
    }

    /// Waits for shared read access (other readers may hold it too).
    pub async fn read(&self) -> RwLockReadGuard<'_, S> {
        RwLockReadGuard::map(self.lock.read().await, |store| &**store)
    }

    /// Waits for exclusive write access.
    pub async fn write(&self) -> RwLockMappedWriteGuard<'_, S> {
        RwLockWriteGuard::map(self.lock.write().await, |store| &mut **store)
    }
}
