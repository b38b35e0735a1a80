//! A held (flow, story) claim, renewed while its run lives.
//!
//! Creating a run takes its claim (SPEC 4.3: one run per flow and story,
//! queued and running runs included). The claim lives [`CLAIM_TTL`] unless
//! renewed, so a [`Claim`] renews it every third of that until the run's
//! end releases it in the same write that stores the ending; if the run's
//! task is dropped midway, `Drop` releases it on a spawned task, so the
//! pair is never left blocked.

use crate::store::{CLAIM_TTL, RunStore};
use std::sync::Arc;

pub(crate) struct Claim {
    runs: Arc<dyn RunStore>,
    flow: String,
    story: String,
    run_id: String,
    released: bool,
    renewal: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// A claim just taken by `run_id`; starts its renewal.
    pub fn held(runs: Arc<dyn RunStore>, flow: String, story: String, run_id: String) -> Self {
        let renewal = tokio::spawn({
            let (runs, flow, story, run_id) =
                (runs.clone(), flow.clone(), story.clone(), run_id.clone());
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
                                "the run's claim expired before it was renewed; another run may take this story"
                            );
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
        }
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
