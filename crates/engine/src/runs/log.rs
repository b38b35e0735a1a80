//! One run's events, in order: numbered, stored, then handed to the
//! clients that follow the run live (SPEC 8.6).
//!
//! Every event of a run — from its agents, running in parallel, and from
//! the run's own changes of status — goes through one writer task per run,
//! which numbers it (1, 2, …), stores what is stored (all but `token`) and
//! only then broadcasts it. Broadcasting after storing is what lets a
//! follower join at any moment without a gap: it subscribes first, then
//! reads the store; an event it does not find stored had not been
//! broadcast yet, so it will arrive live (duplicates are skipped by id).
//! The writer drains whatever has queued before each write and stores it
//! as one: a change of the run itself ([`EventLog::write_run`]: an update,
//! its end, or its stop to wait for a person) goes together with the
//! events around it, so a busy run stores many events per commit. A new
//! run's first event, `queued`, is stored with the run itself, so its log
//! numbers on from 2; a run resumed after a question gets a new log that
//! numbers on from its last stored event. The live channel is made by the
//! first follower: a run nobody follows (most runs, and every run waiting
//! for a slot) keeps no buffer of live events.

use crate::outcome::RunEvent;
use crate::store::{RunRecord, RunStore, StoreError, StoredEvent, StoredRun};
use crate::usage::UsageTotals;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Events a live follower may fall behind by before it re-reads the store.
const LIVE_BUFFER: usize = 256;

/// The run's live events, once someone follows it.
type Live = Arc<OnceLock<broadcast::Sender<Arc<StoredEvent>>>>;

/// What a run is doing now, as its events tell.
#[derive(Debug, Default, Clone)]
pub(crate) struct Progress {
    /// The step running now, or the last one that ran.
    pub step: Option<String>,
    /// Agents started and not yet finished.
    pub running_agents: BTreeSet<String>,
    /// What the run's LLM calls used so far.
    pub usage: UsageTotals,
}

/// What a write of the run's state does besides storing it.
pub(crate) enum RunChange {
    Update,
    /// The run ends: its record (or `None` when it must not be saved) is
    /// saved and its claim released.
    End(Option<RunRecord>),
    /// The run waits for a person: its checkpoint (JSON) is stored and its
    /// claim kept until it ends.
    Suspend(String),
}

/// A change of the run, with the events that announce it.
struct RunWrite {
    run: StoredRun,
    events: Vec<RunEvent>,
    change: RunChange,
    /// Told once it is written, when the sender waits for that.
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

enum Entry {
    Event(RunEvent),
    Run(RunWrite),
}

/// The event log of one run (see the module docs). Cloning shares it; the
/// writer ends when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct EventLog {
    entries: mpsc::UnboundedSender<Entry>,
    live: Live,
    progress: Arc<Mutex<Progress>>,
}

impl EventLog {
    /// Starts the writer of run `run_id`, whose next event id is `next_id`
    /// and whose calls so far used `usage`.
    pub fn start(
        runs: Arc<dyn RunStore>,
        run_id: String,
        next_id: u64,
        usage: UsageTotals,
    ) -> Self {
        let (entries, receiver) = mpsc::unbounded_channel();
        let live = Live::default();
        let progress = Arc::new(Mutex::new(Progress {
            usage,
            ..Progress::default()
        }));
        let writer = Writer {
            runs,
            run_id,
            next_id,
            live: live.clone(),
            progress: progress.clone(),
        };
        tokio::spawn(writer.run(receiver));
        Self {
            entries,
            live,
            progress,
        }
    }

    /// Logs an event of the run.
    pub fn emit(&self, event: RunEvent) {
        let _ = self.entries.send(Entry::Event(event));
    }

    /// Stores `run` as it is now, with `events` after those queued before,
    /// and makes `change`. Returns once written.
    pub async fn write_run(
        &self,
        run: StoredRun,
        events: Vec<RunEvent>,
        change: RunChange,
    ) -> Result<(), StoreError> {
        let (done, written) = oneshot::channel();
        let entry = Entry::Run(RunWrite {
            run,
            events,
            change,
            done: Some(done),
        });
        if self.entries.send(entry).is_err() {
            return Err(writer_gone());
        }
        written.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Stores `run` as it is now, with `events`, without waiting for the
    /// write: what follows in the log is stored with it or after it.
    pub fn update_run(&self, run: StoredRun, events: Vec<RunEvent>) {
        let _ = self.entries.send(Entry::Run(RunWrite {
            run,
            events,
            change: RunChange::Update,
            done: None,
        }));
    }

    /// Live events from now on (see the module docs for joining without a gap).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.live
            .get_or_init(|| broadcast::channel(LIVE_BUFFER).0)
            .subscribe()
    }

    /// Whether anyone follows the run live now.
    pub fn followed(&self) -> bool {
        self.live
            .get()
            .is_some_and(|live| live.receiver_count() > 0)
    }

    /// Records the step the run has entered.
    pub fn enter_step(&self, step: &str) {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .step = Some(step.to_string());
    }

    /// What the run is doing now.
    pub fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The run's ending was refused: it had ended already, marked by another
/// process that found this one's claim expired (this process was paused
/// or cut off past it).
fn ended_elsewhere() -> StoreError {
    StoreError::Conflict {
        message: "the run was ended meanwhile by another process, which found its claim expired: this ending is not stored".into(),
    }
}

fn writer_gone() -> StoreError {
    StoreError::Io {
        message: "storage error: the run's event log stopped".into(),
        detail: "the event writer of the run is gone".into(),
    }
}

/// The writer task's state.
struct Writer {
    runs: Arc<dyn RunStore>,
    run_id: String,
    next_id: u64,
    live: Live,
    progress: Arc<Mutex<Progress>>,
}

impl Writer {
    /// Each pass takes everything queued and stores it in one write: the
    /// events in order, with the last state of the run when it changed
    /// (a later state supersedes an earlier one; an ending is always the
    /// last entry, as the run sends nothing after it).
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Entry>) {
        let mut batch = Vec::new();
        while receiver.recv_many(&mut batch, 512).await > 0 {
            let mut numbered = Vec::new();
            let mut state: Option<(StoredRun, RunChange)> = None;
            let mut acks = Vec::new();
            for entry in batch.drain(..) {
                match entry {
                    Entry::Event(event) => numbered.push(self.number(&event)),
                    Entry::Run(write) => {
                        numbered.extend(write.events.iter().map(|e| self.number(e)));
                        state = Some((write.run, write.change));
                        acks.extend(write.done);
                    }
                }
            }
            let stored = stored_only(&numbered);
            let result = match &state {
                Some((run, RunChange::End(record))) => self
                    .runs
                    .end_run(run, &stored, record.as_ref(), None)
                    .await
                    .and_then(|ended| {
                        if ended {
                            Ok(())
                        } else {
                            Err(ended_elsewhere())
                        }
                    }),
                Some((run, RunChange::Suspend(checkpoint))) => {
                    self.runs.suspend_run(run, &stored, checkpoint).await
                }
                Some((run, RunChange::Update)) => self.runs.update_run(run, &stored).await,
                None if stored.is_empty() => Ok(()),
                None => self.runs.append_events(&self.run_id, &stored).await,
            };
            if let Err(error) = &result
                && acks.is_empty()
            {
                // Live followers still get them; a replay will miss them,
                // and a sweep marks a run whose state was not stored.
                tracing::error!(run_id = self.run_id, %error, "storing the run's events failed");
            }
            self.publish(numbered);
            for ack in acks {
                let _ = ack.send(result.clone());
            }
        }
    }

    /// Gives `event` the next id, and notes what it says about progress.
    fn number(&mut self, event: &RunEvent) -> StoredEvent {
        match event {
            RunEvent::Progress { agent, status, .. } => {
                let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
                if *status == crate::outcome::ProgressStatus::Started {
                    progress.running_agents.insert(agent.clone());
                } else {
                    progress.running_agents.remove(agent);
                }
            }
            RunEvent::Usage(record) => {
                let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
                progress.usage.add(record);
            }
            _ => {}
        }
        let id = self.next_id;
        self.next_id += 1;
        let (name, data) = event.name_and_data();
        StoredEvent {
            id,
            event: name.to_string(),
            data,
        }
    }

    fn publish(&self, events: Vec<StoredEvent>) {
        // Nobody followed yet: a follower that comes later finds these
        // stored (they were stored before this check).
        let Some(live) = self.live.get() else {
            return;
        };
        for event in events {
            // No follower is not an error.
            let _ = live.send(Arc::new(event));
        }
    }
}

/// The events that are stored: all but tokens (SPEC 8.6).
fn stored_only(events: &[StoredEvent]) -> Vec<StoredEvent> {
    events
        .iter()
        .filter(|e| e.event != "token")
        .cloned()
        .collect()
}
