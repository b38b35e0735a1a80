//! `FileMemoryStore`: memory scopes as JSON Lines logs (SPEC 4.4).
//!
//! Layout under `memory.path`:
//! - `isolated/{agent}_{story}.jsonl` for `isolated:<agent>:<story>`. An `_`
//!   inside the agent id is written `+` in the file name, so that the first
//!   `_` always separates agent from story and two scopes never share a file
//!   (`a_b` + `c` → `a+b_c.jsonl`, `a` + `b_c` → `a_b_c.jsonl`). Agent ids
//!   without `_` (all BMAD ones) keep the plain form.
//! - `shared/{ns}.jsonl` for `shared:<ns>` (`shared` is `shared/default.jsonl`).
//!
//! Each line is `{"k": key, "v": value, "t": unix_ms}`, or
//! `{"k": key, "d": true, "t": unix_ms}` for a deletion; the last line for a
//! key wins. Crash safety (torn last line ignored and cut off on the next
//! write) comes from the `jsonl` log. When dead lines (overwritten values
//! and deletions) are the majority of a file, it is rewritten with only the
//! live entries, atomically and in the background: the scope's writers wait
//! only while the lines appended meanwhile are copied (see `jsonl`).
//!
//! Concurrency: each scope has an async mutex; all reads and writes of the
//! scope hold it, so writes are serialized per scope. Writes queue up while
//! the lock is held, and the next holder runs the whole queue in order as
//! one append. Every write is fsync'd before it returns —
//! after the lock is released, so that the writes queued meanwhile share one
//! fsync (group commit). Scopes are independent. The scope's index (its
//! live entries) is loaded from the file on first use and then kept in
//! memory, so reads never touch the disk again. That makes this backend
//! single-process: another process writing the same files would not be
//! seen. It also keeps every scope used since start-up in memory; that is
//! the data of the stories this process has worked on, which is the
//! intended scale of the file backend.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;

use super::files::{DurableDir, blocking, now_ms, probe_dir, remove_temp_files};
use super::jsonl::{CompactionPlan, Compactions, JsonlLog, settle};
use super::values::check_value;
use super::{MemoryKey, MemoryScope, MemoryStore, StoreError};

/// One line of a memory file. It borrows the key and value when a
/// compaction writes the scope's live entries (no copy of the scope is made
/// under its lock), and owns them otherwise.
#[derive(Debug, Serialize, Deserialize)]
struct MemoryLine<'a> {
    /// The key.
    k: Cow<'a, str>,
    /// The value; absent for a deletion (a set to JSON `null` writes `"v": null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<Cow<'a, Value>>,
    /// Marks a deletion.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    d: bool,
    /// When it was written, unix ms.
    t: u64,
}

/// A live entry of a scope, with the time it was written (kept so
/// compaction rewrites the original line).
#[derive(Debug)]
struct Entry {
    value: Value,
    t: u64,
}

/// A loaded scope: its log file and its live entries.
#[derive(Debug)]
struct ScopeLog {
    log: JsonlLog,
    live: BTreeMap<String, Entry>,
}

impl ScopeLog {
    fn load(dir: Arc<DurableDir>, name: String, what: String) -> Result<Self, StoreError> {
        let (log, lines) = JsonlLog::load::<MemoryLine<'static>>(dir, name, what)?;
        let mut scope = Self {
            log,
            live: BTreeMap::new(),
        };
        scope.index(lines);
        Ok(scope)
    }

    fn index(&mut self, lines: Vec<MemoryLine<'static>>) {
        for line in lines {
            if line.d {
                self.live.remove(&*line.k);
            } else {
                let value = line.v.map_or(Value::Null, Cow::into_owned);
                let entry = Entry { value, t: line.t };
                self.live.insert(line.k.into_owned(), entry);
            }
        }
    }

    /// Appends `lines` (durable once the log's pending sync is waited
    /// for), then applies them to the index, and plans a compaction when
    /// dead lines dominate.
    fn write(&mut self, lines: Vec<MemoryLine<'static>>) -> Result<(), StoreError> {
        self.log.append(&lines)?;
        self.index(lines);
        let live = &self.live;
        self.log.plan_compaction(live.len(), || {
            live.iter()
                .map(|(k, entry)| MemoryLine {
                    k: Cow::Borrowed(k),
                    v: Some(Cow::Borrowed(&entry.value)),
                    d: false,
                    t: entry.t,
                })
                .collect()
        });
        Ok(())
    }
}

/// A scope: its log (`None` until the file has been read) and the writes
/// waiting for it.
#[derive(Default)]
struct Scope {
    log: Arc<AsyncMutex<Option<ScopeLog>>>,
    queue: Mutex<Vec<QueuedWrite>>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

/// A write waiting for its scope. It runs on the loaded scope (or is given
/// the error that kept the scope from loading) and returns what answers its
/// writer once the batch's appends are durable, or failed to be.
type QueuedWrite = Box<dyn FnOnce(Result<&mut ScopeLog, &StoreError>) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

type ScopeSlot = Arc<Scope>;

/// Marks a queued write as abandoned when its writer's future is dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Memory scopes as JSON Lines files under one directory (see the module docs).
#[derive(Debug)]
pub struct FileMemoryStore {
    /// The `memory.path` directory.
    root: PathBuf,
    /// Its `isolated/` and `shared/` directories.
    isolated: Arc<DurableDir>,
    shared: Arc<DurableDir>,
    /// One slot per scope used so far. The std mutex guards only the map
    /// lookup; the per-scope async mutex is held across file I/O.
    scopes: Mutex<HashMap<MemoryScope, ScopeSlot>>,
    /// The scope compactions under way.
    compactions: Compactions,
}

impl FileMemoryStore {
    /// Opens (creating when missing) the memory directory `root`. Scope
    /// files are read lazily, on a scope's first use.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root: PathBuf = root.into();
        let open = root.clone();
        let (isolated, shared) = blocking(move || {
            // Also removes the temporary files of compactions a crash
            // interrupted.
            let dir = |name: &str| {
                let path = open.join(name);
                let dir = DurableDir::open(path.clone())
                    .map(Arc::new)
                    .map_err(|err| StoreError::io("create the memory directory", &path, &err))?;
                remove_temp_files(&path, "the memory directory")?;
                Ok::<_, StoreError>(dir)
            };
            Ok((dir("isolated")?, dir("shared")?))
        })
        .await?;
        Ok(Self {
            root,
            isolated,
            shared,
            scopes: Mutex::new(HashMap::new()),
            compactions: Compactions::default(),
        })
    }

    /// The directory and file name of `scope` (see the module docs for the
    /// layout).
    fn file_of(&self, scope: &MemoryScope) -> (Arc<DurableDir>, String) {
        match scope {
            MemoryScope::Isolated { agent, story } => (
                Arc::clone(&self.isolated),
                format!("{}_{story}.jsonl", agent.replace('_', "+")),
            ),
            MemoryScope::Shared { namespace } => {
                (Arc::clone(&self.shared), format!("{namespace}.jsonl"))
            }
        }
    }

    fn slot(&self, scope: &MemoryScope) -> ScopeSlot {
        let mut scopes = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(scopes.entry(scope.clone()).or_default())
    }

    /// Runs `read` on the loaded scope, loading it first when needed.
    async fn with_scope<T, F>(&self, scope: &MemoryScope, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ScopeLog) -> T + Send + 'static,
    {
        let mut guard = Arc::clone(&self.slot(scope).log).lock_owned().await;
        if let Some(loaded) = guard.as_ref() {
            return Ok(read(loaded));
        }
        let ((dir, name), what) = (self.file_of(scope), format!("memory scope `{scope}`"));
        blocking(move || {
            let loaded = ScopeLog::load(dir, name, what)?;
            let out = read(&loaded);
            *guard = Some(loaded);
            Ok(out)
        })
        .await
    }

    /// Runs `write` on the loaded scope and answers once what it appended
    /// is durable. Writes are batched: each is queued, and whoever gets the
    /// scope's lock next runs every queued write, in queue order, as one
    /// append, then releases the lock; a task of the batch's own waits for
    /// one fsync covering them all (group commit) and answers each writer.
    async fn with_scope_mut<T, F>(&self, scope: &MemoryScope, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut ScopeLog) -> Result<T, StoreError> + Send + 'static,
    {
        let slot = self.slot(scope);
        let (answer, answered) = tokio::sync::oneshot::channel();
        // A writer that goes away (its request was dropped) before its write
        // ran leaves it undone, as an unqueued write would be.
        let abandoned = AbandonOnDrop(Arc::new(AtomicBool::new(false)));
        let gone = Arc::clone(&abandoned.0);
        let queued: QueuedWrite = Box::new(move |log| {
            if gone.load(Ordering::Acquire) {
                return Box::new(|_| ());
            }
            let result = log.map_err(Clone::clone).and_then(write);
            Box::new(move |synced| {
                let _ =
                    answer.send(result.and_then(|out| synced.map(|()| out).map_err(Clone::clone)));
            })
        });
        slot.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(queued);
        let mut guard = Arc::clone(&slot.log).lock_owned().await;
        let batch = std::mem::take(&mut *slot.queue.lock().unwrap_or_else(PoisonError::into_inner));
        if batch.is_empty() {
            // An earlier holder of the lock ran this write with its batch.
            drop(guard);
        } else {
            let ((dir, name), what) = (self.file_of(scope), format!("memory scope `{scope}`"));
            let scope_loaded = guard.is_some();
            let run_batch = move || {
                let mut loaded = match guard.take() {
                    Some(loaded) => Ok(loaded),
                    None => ScopeLog::load(dir, name, what),
                };
                let answers: Vec<Answer> = batch
                    .into_iter()
                    .map(|write| write(loaded.as_mut().map_err(|e| &*e)))
                    .collect();
                let (pending, compaction) = match loaded.as_mut() {
                    Ok(scope) => (scope.log.take_pending(), scope.log.take_compaction()),
                    Err(_) => (None, None),
                };
                *guard = loaded.ok();
                drop(guard);
                // Waited for and answered by a task of its own, so that every
                // writer of the batch is answered even if this one's request
                // goes away meanwhile.
                tokio::spawn(async move {
                    let synced = settle(Ok(()), pending).await;
                    for answer in answers {
                        answer(synced.as_ref().map(|_| ()));
                    }
                });
                Ok(compaction)
            };
            // Appends are done in place (see `files`); a scope's first
            // load reads its whole file, on the blocking pool.
            let compaction: Option<CompactionPlan> = if scope_loaded {
                run_batch()?
            } else {
                blocking(run_batch).await?
            };
            if let Some(plan) = compaction {
                self.compactions
                    .start(Arc::clone(&slot.log), plan, |scope| {
                        scope.as_mut().map(|scope| &mut scope.log)
                    });
            }
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Io {
                message: "storage error: a storage task did not finish".into(),
                detail: "a batched memory write was dropped unanswered".into(),
            })
        })
    }
}

#[async_trait]
impl MemoryStore for FileMemoryStore {
    async fn get(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<Option<Value>, StoreError> {
        let key = key.as_str().to_string();
        self.with_scope(scope, move |s| s.live.get(&key).map(|e| e.value.clone()))
            .await
    }

    async fn set(
        &self,
        scope: &MemoryScope,
        key: &MemoryKey,
        value: Value,
    ) -> Result<(), StoreError> {
        check_value(&value)?;
        let line = MemoryLine {
            k: Cow::Owned(key.as_str().to_string()),
            v: Some(Cow::Owned(value)),
            d: false,
            t: now_ms(),
        };
        self.with_scope_mut(scope, move |s| s.write(vec![line]))
            .await
    }

    async fn delete(&self, scope: &MemoryScope, key: &MemoryKey) -> Result<bool, StoreError> {
        let key = key.as_str().to_string();
        self.with_scope_mut(scope, move |s| {
            if !s.live.contains_key(&key) {
                return Ok(false);
            }
            s.write(vec![MemoryLine {
                k: Cow::Owned(key),
                v: None,
                d: true,
                t: now_ms(),
            }])?;
            Ok(true)
        })
        .await
    }

    async fn keys(&self, scope: &MemoryScope) -> Result<Vec<String>, StoreError> {
        self.with_scope(scope, |s| s.live.keys().cloned().collect())
            .await
    }

    async fn load(&self, scope: &MemoryScope) -> Result<BTreeMap<String, Value>, StoreError> {
        self.with_scope(scope, |s| {
            s.live
                .iter()
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect()
        })
        .await
    }

    async fn set_many(
        &self,
        scope: &MemoryScope,
        entries: BTreeMap<MemoryKey, Value>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        entries.values().try_for_each(check_value)?;
        let t = now_ms();
        let lines = entries
            .into_iter()
            .map(|(k, v)| MemoryLine {
                k: Cow::Owned(k.as_str().to_string()),
                v: Some(Cow::Owned(v)),
                d: false,
                t,
            })
            .collect();
        self.with_scope_mut(scope, move |s| s.write(lines)).await
    }

    async fn flush(&self) {
        self.compactions.wait().await;
    }

    async fn health(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || probe_dir(&root, "memory")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn isolated_file_names_never_collide() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = FileMemoryStore::open(dir.path()).await?;
        let path_of = |scope: &MemoryScope| {
            let (dir, name) = store.file_of(scope);
            dir.path().join(name)
        };
        let a = path_of(&MemoryScope::isolated("a_b", "c")?);
        let b = path_of(&MemoryScope::isolated("a", "b_c")?);
        assert_ne!(a, b);
        assert_eq!(
            path_of(&MemoryScope::isolated("pack/pm", "S-1")?),
            dir.path().join("isolated/pack.pm_S-1.jsonl")
        );
        assert_eq!(
            path_of(&MemoryScope::parse("shared")?),
            dir.path().join("shared/default.jsonl")
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_write_abandoned_in_the_queue_is_not_applied()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = FileMemoryStore::open(dir.path()).await?;
        let scope = MemoryScope::parse("shared:t")?;
        let (a, b) = (MemoryKey::parse("a")?, MemoryKey::parse("b")?);
        let held = Arc::clone(&store.slot(&scope).log).lock_owned().await;
        // Queued behind the held lock, then given up by its writer.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            store.set(&scope, &a, Value::from(1)),
        )
        .await;
        assert!(waiting.is_err(), "the write waited for the lock");
        drop(held);
        store.set(&scope, &b, Value::from(2)).await?;
        assert_eq!(store.get(&scope, &a).await?, None);
        assert_eq!(store.get(&scope, &b).await?, Some(Value::from(2)));
        Ok(())
    }

    #[tokio::test]
    async fn batched_writes_apply_in_order_and_survive_a_restart()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(FileMemoryStore::open(dir.path()).await?);
        let scope = MemoryScope::parse("shared:t")?;
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (store, scope) = (Arc::clone(&store), scope.clone());
                tokio::spawn(async move {
                    let key = MemoryKey::parse(&format!("k{i}"))?;
                    store.set(&scope, &key, Value::from(i)).await?;
                    if i % 2 == 0 {
                        assert!(store.delete(&scope, &key).await?);
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let expected: BTreeMap<String, Value> = (0..32)
            .filter(|i| i % 2 == 1)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        assert_eq!(store.load(&scope).await?, expected);
        drop(store);
        let reopened = FileMemoryStore::open(dir.path()).await?;
        assert_eq!(reopened.load(&scope).await?, expected);
        Ok(())
    }

    #[test]
    fn lines_have_the_documented_shape() -> Result<(), serde_json::Error> {
        let set = MemoryLine {
            k: "a".into(),
            v: Some(Cow::Owned(Value::Null)),
            d: false,
            t: 5,
        };
        let del = MemoryLine {
            k: "a".into(),
            v: None,
            d: true,
            t: 6,
        };
        assert_eq!(serde_json::to_string(&set)?, r#"{"k":"a","v":null,"t":5}"#);
        assert_eq!(serde_json::to_string(&del)?, r#"{"k":"a","d":true,"t":6}"#);
        Ok(())
    }
}
