//! A held (flow, story) claim, renewed while its run lives.
//!
//! Creating a run takes its claim (SPEC 4.3: one run per flow and story,
//! queued and running runs included). The claim lives [`CLAIM_TTL`] unless
//! renewed, so a [`Claim`] renews it every third of that until the run's
//! end releases it in the same write that stores the ending; if the run's
//! task is dropped midway, `Drop` releases it on a spawned task, so the
//! pair is never left blocked. A claim found lost (this process was paused
//! or cut off past its lifetime, and another process may have marked the
//! run dead) stops the run: see [`Claim::when_lost`].

use crate::store::{CLAIM_TTL, RunStore};
use std::sync::{Arc, Mutex, PoisonError};

/// What to do once the claim is found lost.
type OnLost = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

pub(crate) struct Claim {
    runs: Arc<dyn RunStore>,
    flow: String,
    story: String,
    run_id: String,
    released: bool,
    renewal: tokio::task::JoinHandle<()>,
    on_lost: OnLost,
}

impl Claim {
    /// A claim just taken by `run_id`; starts its renewal.
    pub fn held(runs: Arc<dyn RunStore>, flow: String, story: String, run_id: String) -> Self {
        let on_lost: OnLost = Arc::default();
        let renewal = tokio::spawn({
            let (runs, flow, story, run_id) =
                (runs.clone(), flow.clone(), story.clone(), run_id.clone());
            let on_lost = on_lost.clone();
            async move {
                loop {
                    tokio::time::sleep(CLAIM_TTL / 3).await;
                    match runs.renew(&flow, &story, &run_id).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(
                                run_id,
                                flow,
                                story,
                                "the run's claim expired before it was renewed; the run stops"
                            );
                            let lost = on_lost
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .take();
                            if let Some(stop) = lost {
                                stop();
                            }
                            break;
                        }
                        // The store is down: keep trying while the claim lives.
                        Err(error) => {
                            tracing::warn!(run_id, %error, "renewing the run claim failed")
                        }
                    }
                }
            }
        });
        Self {
            runs,
            flow,
            story,
            run_id,
            released: false,
            renewal,
            on_lost,
        }
    }

    /// Calls `stop` if the claim is found lost: the run must stop, as
    /// another run may hold its story now, and its ending would not be
    /// stored anyway (the store keeps the ending another process gave it).
    pub fn when_lost(&self, stop: impl FnOnce() + Send + 'static) {
        *self.on_lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(stop));
    }

    /// The run's ending, which released the claim, is stored: stop renewing.
    pub fn released(mut self) {
        self.released = true;
    }

    /// Gives the claim up now and waits for the store: a run left queued
    /// at a shutdown, for the next process on the store to take over.
    pub async fn give_up(mut self) {
        self.renewal.abort();
        self.released = true;
        if let Err(error) = self
            .runs
            .release(&self.flow, &self.story, &self.run_id)
            .await
        {
            tracing::error!(run_id = self.run_id, %error, "releasing the claim of a run failed");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.released {
            return;
        }
        let (runs, flow, story, run_id) = (
            self.runs.clone(),
            std::mem::take(&mut self.flow),
            std::mem::take(&mut self.story),
            std::mem::take(&mut self.run_id),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(error) = runs.release(&flow, &story, &run_id).await {
                    tracing::error!(run_id, %error, "releasing the claim of a run failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Database, Incidents, SqliteRunStore};

    #[tokio::test(start_paused = true)]
    async fn a_claim_found_lost_stops_its_run() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let runs: Arc<dyn RunStore> = Arc::new(SqliteRunStore::new(Database::open(
            dir.path(),
            Incidents::default(),
        )?));
        assert_eq!(runs.claim("f", "s", "run-a").await?, None);
        let claim = Claim::held(runs.clone(), "f".into(), "s".into(), "run-a".into());
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        claim.when_lost(move || {
            let _ = stop.send(true);
        });
        // Another run holds the story now, as after this process was
        // paused past its claim.
        runs.release("f", "s", "run-a").await?;
        assert_eq!(runs.claim("f", "s", "run-b").await?, None);
        let told = tokio::time::timeout(CLAIM_TTL, stopped.wait_for(|lost| *lost)).await;
        assert!(matches!(told, Ok(Ok(_))), "the run was not stopped");
        drop(claim);
        Ok(())
    }
}
