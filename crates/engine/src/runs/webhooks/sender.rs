//! The sender: the background task that claims due deliveries from the
//! store and makes one attempt at each, concurrently, recording every
//! attempt on its delivery (SPEC 8.5).
//!
//! It wakes when this process stores a delivery and otherwise every
//! [`POLL`], so it also finds the due deliveries of other processes, of a
//! restart and of retries. A claim holds a delivery for the attempt's
//! timeout plus [`LEASE_MARGIN`] (see the `DeliveryStore` docs): two
//! servers never send the same attempt at once, and the deliveries of a
//! sender that died are due again when its lease ends.

use super::Webhooks;
use super::retry::{self, Verdict};
use super::signature::signature;
use super::target::host_of;
use crate::store::{DeliveryAttempt, DeliveryState, StoredDelivery, now_ms};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// How often the store is read for due deliveries without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// Most attempts in flight at once.
pub(super) const MAX_IN_FLIGHT: usize = 32;
/// How long a claim outlives the attempt's timeout: time to record it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Spawns the sender of `webhooks`; it ends once they are dropped.
pub(super) fn start(webhooks: &Arc<Webhooks>) {
    let weak = Arc::downgrade(webhooks);
    let wake = webhooks.wake.clone();
    tokio::spawn(async move {
        loop {
            {
                let Some(webhooks) = weak.upgrade() else {
                    return;
                };
                webhooks.send_due().await;
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    });
}

impl Webhooks {
    /// Claims what is due, as many as attempts may start, and starts them.
    async fn send_due(self: &Arc<Self>) {
        let free = self.in_flight.available_permits();
        if free == 0 {
            return;
        }
        let now = now_ms();
        let lease = Duration::from_secs(self.config.timeout.max(1)) + LEASE_MARGIN;
        let lease_until = now.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
        let claimed = match self.store.claim_due(now, lease_until, free).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "reading due webhook deliveries failed");
                return;
            }
        };
        for delivery in claimed {
            // This task alone takes permits, and claimed no more than were free.
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(self.clone().attempt(delivery, lease_until, permit));
        }
    }

    /// One attempt at `delivery`, recorded under the lease `lease_until`.
    async fn attempt(
        self: Arc<Self>,
        mut delivery: StoredDelivery,
        lease_until: u64,
        _permit: OwnedSemaphorePermit,
    ) {
        let Some(secret) = &self.secret else { return };
        let at = now_ms();
        let started = Instant::now();
        let sent = match (signature(secret, at / 1000, &delivery.body), self.client()) {
            (_, Err(error)) => Err(error),
            (Some(signed), Ok(client)) => client
                .post(&delivery.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Bmad2pf-Event", &delivery.event)
                .header("X-Bmad2pf-Delivery", &delivery.delivery_id)
                .header("X-Bmad2pf-Signature", signed)
                .body(delivery.body.clone())
                .send()
                .await
                .map_err(|error| self.describe(&error)),
            (None, Ok(_)) => Err("the body could not be signed".to_string()),
        };
        let (status_code, retry_after, error) = match sent {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok());
                let retry_after = retry::retry_after(retry_after);
                (Some(response.status().as_u16()), retry_after, None)
            }
            Err(error) => (None, None, Some(error)),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        delivery.attempts.push(DeliveryAttempt {
            at,
            status_code,
            error: error.clone(),
            duration_ms,
        });
        let attempts = u32::try_from(delivery.attempts.len()).unwrap_or(u32::MAX);
        let verdict = match retry::verdict(status_code) {
            Verdict::Retry if attempts >= self.config.max_attempts.max(1) => Verdict::Failed,
            verdict => verdict,
        };
        let outcome = match verdict {
            Verdict::Delivered => {
                delivery.state = DeliveryState::Delivered;
                delivery.next_attempt_at = None;
                &self.outcomes.delivered
            }
            Verdict::Failed => {
                delivery.state = DeliveryState::Failed;
                delivery.next_attempt_at = None;
                &self.outcomes.failed
            }
            Verdict::Retry => {
                let jitter = rand::random_range(-retry::JITTER..=retry::JITTER);
                let wait = retry::delay(attempts, jitter, retry_after);
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                delivery.next_attempt_at = Some(now_ms().saturating_add(wait_ms));
                &self.outcomes.retried
            }
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            delivery_id = delivery.delivery_id,
            run_id = delivery.run_id,
            host = host_of(&delivery.url),
            status_code,
            error,
            attempt = attempts,
            state = delivery.state.as_str(),
            "webhook attempt"
        );
        match self.store.record_attempt(&delivery, lease_until).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery_id = delivery.delivery_id,
                "a webhook attempt outlasted its lease; another sender has the delivery"
            ),
            Err(error) => tracing::warn!(
                delivery_id = delivery.delivery_id,
                %error,
                "recording a webhook attempt failed; it is tried again when its lease ends"
            ),
        }
    }

    /// A failed request in words, without its URL (it may carry credentials).
    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("timed out after {} s", self.config.timeout.max(1));
        }
        let mut text = if error.is_connect() {
            "connection failed".to_string()
        } else {
            "request failed".to_string()
        };
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }
}
