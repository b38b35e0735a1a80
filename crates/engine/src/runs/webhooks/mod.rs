//! Webhooks (SPEC 8.5): a run started with `webhook: "https://…"` tells
//! that URL when it ends (`run.finished`) and each time it waits for a
//! person (`run.interrupted`), in a signed POST, retried until delivered.
//!
//! # Layout
//! - this file: [`Webhooks`], what the runner uses — checking a request's
//!   URL, keeping it as the run's target, storing an event as a delivery
//!   ([`Webhooks::enqueue`]) and showing a run's deliveries; the shapes the
//!   run shows ([`RunWebhook`], [`WebhookDelivery`]).
//! - `target.rs`: the URL — checked, masked, reduced to its host for logs.
//! - `signature.rs`: the `X-Bmad2pf-Signature` header.
//! - `retry.rs`: which answers are delivered, failed or retried, and when.
//! - `sender.rs`: the background task that sends due deliveries.
//!
//! # The outbox
//! A delivery is stored ([`DeliveryStore`]) before the change of the run
//! that causes it, then sent by a background task, so a slow or dead
//! receiver never blocks, slows or fails the run, and a restart loses
//! nothing: delivery is *at least once*. Its id is derived from the run,
//! the event and the interrupts it reports, so storing the same event twice
//! (two replicas marking one dead run, a retry after a failed write) keeps
//! one delivery. A process that dies after storing a `run.finished` but
//! before writing the run's end has its run marked `interrupted_by_restart`
//! later, whose `run.finished` has the same id and is not stored again: the
//! receiver gets the body stored first. Every attempt carries the same
//! `X-Bmad2pf-Delivery`, so receivers drop repeats by it.
//!
//! # Who sends
//! Only a server (`bmad2pf serve`) sends: [`Webhooks::start_sender`] is
//! called by `Runner::take_over_queued_runs`, which only a server calls,
//! for the same reason — a `bmad2pf run` exits after its run, and would
//! leave an attempt, or a retry due minutes later, half done. Deliveries a
//! CLI run stores wait in the store for a server on it. The sender is woken
//! when this process stores a delivery and polls the store every second
//! for the due ones of other processes, of restarts and of retries.

mod retry;
mod sender;
mod signature;
mod target;

pub(crate) use target::Target;
pub use target::webhook_url_pattern;

use super::{Run, RunSummary};
use crate::error::EngineError;
use crate::outbound::{self, HttpVersions};
use crate::store::{
    DeliveryAttempt, DeliveryState, DeliveryStore, StoreError, StoredDelivery, now_ms,
};
use bmad2pf_compiler::config::WebhooksConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// What a webhook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WebhookEvent {
    /// The run ended: success, pending, error or cancelled.
    #[serde(rename = "run.finished")]
    RunFinished,
    /// The run waits for a person (SPEC 8.3).
    #[serde(rename = "run.interrupted")]
    RunInterrupted,
}

impl WebhookEvent {
    /// The wire name (`run.finished`), also the `X-Bmad2pf-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunFinished => "run.finished",
            Self::RunInterrupted => "run.interrupted",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::RunFinished, Self::RunInterrupted]
            .into_iter()
            .find(|event| event.as_str() == text)
    }
}

/// A run's webhook as the run shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunWebhook {
    /// The URL, its userinfo and query masked (`https://***@host/path?***`).
    pub url: String,
    /// Each event sent or to send, oldest first.
    #[serde(default)]
    pub deliveries: Vec<WebhookDelivery>,
}

/// One webhook event and its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// The `X-Bmad2pf-Delivery` header, the same on every attempt.
    pub delivery_id: String,
    pub event: WebhookEvent,
    pub state: DeliveryState,
    /// Oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

impl WebhookDelivery {
    fn from_stored(stored: StoredDelivery) -> Result<Self, StoreError> {
        let event = WebhookEvent::parse(&stored.event).ok_or_else(|| {
            StoreError::corrupt(
                format!("webhook delivery `{}`", stored.delivery_id),
                format!("unknown event {:?}", stored.event),
            )
        })?;
        Ok(Self {
            delivery_id: stored.delivery_id,
            event,
            state: stored.state,
            attempts: stored.attempts,
        })
    }
}

/// Deliveries by outcome, for `/metrics`.
#[derive(Debug, Default)]
struct Outcomes {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

/// A run's webhooks: checked, stored, sent (see the module docs). One per engine.
pub(crate) struct Webhooks {
    store: Arc<dyn DeliveryStore>,
    config: WebhooksConfig,
    /// The signing secret, read from `webhooks.secret_env` at start;
    /// without it no webhook is accepted, or sent.
    secret: Option<String>,
    /// Sends every attempt: per-attempt timeout, no redirects (`retry.rs`).
    /// Made at the first attempt: a process that sends no webhook never
    /// loads TLS roots for it.
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Wakes the sender when this process stores a delivery.
    wake: Arc<Notify>,
    /// Whether the sender was started (it is, once).
    sending: AtomicBool,
    /// Bounds the attempts in flight, so a burst of slow receivers cannot
    /// hold an unbounded number of connections.
    in_flight: Arc<Semaphore>,
    outcomes: Outcomes,
}

impl Webhooks {
    pub fn new(
        config: &WebhooksConfig,
        secret: Option<String>,
        store: Arc<dyn DeliveryStore>,
    ) -> Self {
        Self {
            store,
            config: config.clone(),
            secret: secret.filter(|s| !s.is_empty()),
            client: OnceLock::new(),
            wake: Arc::new(Notify::new()),
            sending: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(sender::MAX_IN_FLIGHT)),
            outcomes: Outcomes::default(),
        }
    }

    /// A request's `webhook`, checked: an http(s) URL with an allowed host
    /// (`invalid_webhook`), and a secret to sign with (`webhook_secret_missing`).
    pub fn check(&self, url: &str) -> Result<Target, EngineError> {
        let target = Target::parse(url, &self.config.allowed_hosts)?;
        if self.secret.is_none() {
            return Err(EngineError::WebhookSecretMissing {
                var: self.config.secret_env.clone(),
            });
        }
        Ok(target)
    }

    /// The client that sends attempts, made on first use.
    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                outbound::builder(None, HttpVersions::Any)
                    .and_then(|builder| {
                        builder
                            .timeout(Duration::from_secs(self.config.timeout.max(1)))
                            .redirect(reqwest::redirect::Policy::none())
                            .build()
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("the webhook HTTP client could not be made: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Keeps `target` as the webhook of run `run_id`, before the run is
    /// stored; `false` when that run id has a webhook already (it is taken).
    pub async fn register(&self, run_id: &str, target: &Target) -> Result<bool, StoreError> {
        self.store.save_target(run_id, target.as_str()).await
    }

    /// Forgets the webhook of a run that was refused after [`register`](Self::register).
    pub async fn forget(&self, run_id: &str) {
        if let Err(error) = self.store.delete_target(run_id).await {
            tracing::warn!(run_id, %error, "removing the webhook of a refused run failed");
        }
    }

    /// [`enqueue`] on this engine's store, then wakes the sender: how the
    /// runner stores an event of a run (see [`enqueue`] for when to call it).
    pub async fn enqueue(&self, run: &mut Run, event: WebhookEvent, interrupts: Option<Value>) {
        if enqueue(self.store.as_ref(), run, event, interrupts).await {
            self.wake.notify_one();
        }
    }

    /// The outbox, for [`enqueue`] where the runner ends a run without
    /// waking the sender (it finds the delivery at its next poll).
    pub fn store(&self) -> &dyn DeliveryStore {
        self.store.as_ref()
    }

    /// Sets `run.webhook.deliveries` to those stored, when it has a webhook.
    pub async fn show_deliveries(&self, run: &mut Run) -> Result<(), StoreError> {
        let Some(webhook) = run.webhook.as_mut() else {
            return Ok(());
        };
        webhook.deliveries = self
            .store
            .deliveries_of(&run.outcome.run_id)
            .await?
            .into_iter()
            .map(WebhookDelivery::from_stored)
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Starts the sender, once (see "Who sends" in the module docs). It
    /// ends once these webhooks are dropped.
    pub fn start_sender(self: &Arc<Self>) {
        if self.sending.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.secret.is_none() {
            tracing::info!(
                variable = self.config.secret_env,
                "no webhook signing secret is set: this process sends no webhooks"
            );
            return;
        }
        sender::start(self);
    }

    /// Attempts by outcome: `delivered`, `failed` (given up), `retried`
    /// (failed, to be tried again).
    pub fn outcomes(&self) -> BTreeMap<&'static str, u64> {
        let o = &self.outcomes;
        [
            ("delivered", &o.delivered),
            ("failed", &o.failed),
            ("retried", &o.retried),
        ]
        .into_iter()
        .map(|(name, count)| (name, count.load(Ordering::Relaxed)))
        .collect()
    }
}

/// Stores `event` of `run` as a delivery to its webhook, when it has one;
/// call it *before* storing the change of the run that causes the event
/// (see the module docs). `interrupts` (`run.interrupted`: the open
/// interrupts) is added to the body as `interrupts`. The delivery, pending,
/// is added to `run.webhook.deliveries`, so the run as stored next (and its
/// `done` event) shows it. Whether it was stored: the sender of a process
/// polls for it, [`Webhooks::enqueue`] also wakes it.
///
/// Never fails the run: a failure to store the delivery is logged, and
/// that event is not sent.
pub(crate) async fn enqueue(
    store: &dyn DeliveryStore,
    run: &mut Run,
    event: WebhookEvent,
    interrupts: Option<Value>,
) -> bool {
    if run.webhook.is_none() {
        return false;
    }
    let run_id = run.outcome.run_id.clone();
    match store_delivery(store, run, event, interrupts).await {
        Ok(Some(delivery)) => {
            if let Some(webhook) = run.webhook.as_mut() {
                webhook
                    .deliveries
                    .retain(|d| d.delivery_id != delivery.delivery_id);
                webhook.deliveries.push(delivery);
            }
            true
        }
        Ok(None) => {
            tracing::warn!(
                run_id,
                "the run shows a webhook but none is stored; nothing is sent"
            );
            false
        }
        Err(error) => {
            tracing::error!(
                run_id,
                event = event.as_str(),
                %error,
                "storing a webhook delivery failed; it will not be sent"
            );
            false
        }
    }
}

/// Stores the delivery [`enqueue`] describes; `None` when the run has no
/// stored target.
async fn store_delivery(
    store: &dyn DeliveryStore,
    run: &Run,
    event: WebhookEvent,
    interrupts: Option<Value>,
) -> Result<Option<WebhookDelivery>, StoreError> {
    let run_id = &run.outcome.run_id;
    let Some(url) = store.target(run_id).await? else {
        return Ok(None);
    };
    let delivery_id = delivery_id(run_id, event, interrupts.as_ref());
    let mut body = json!({
        "event": event.as_str(),
        "delivery_id": delivery_id,
        "run": RunSummary::from(run.clone()),
    });
    if let (Some(interrupts), Some(fields)) = (interrupts, body.as_object_mut()) {
        fields.insert("interrupts".into(), interrupts);
    }
    let now = now_ms();
    let stored = StoredDelivery {
        delivery_id,
        run_id: run_id.clone(),
        event: event.as_str().into(),
        url,
        body: body.to_string(),
        state: DeliveryState::Pending,
        attempts: Vec::new(),
        created_at: now,
        next_attempt_at: Some(now),
    };
    store.enqueue(&stored).await?;
    WebhookDelivery::from_stored(stored).map(Some)
}

/// `dlv-` and 16 hex digits of SHA-256 over what identifies the event: the
/// same event stored twice gets the same id (see the module docs).
fn delivery_id(run_id: &str, event: WebhookEvent, interrupts: Option<&Value>) -> String {
    let mut hash = Sha256::new();
    hash.update(run_id.as_bytes());
    hash.update([0]);
    hash.update(event.as_str().as_bytes());
    hash.update([0]);
    if let Some(interrupts) = interrupts {
        hash.update(interrupts.to_string().as_bytes());
    }
    format!("dlv-{}", &hex::encode(hash.finalize())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_name_the_event_of_the_run() {
        let finished = delivery_id("run-1", WebhookEvent::RunFinished, None);
        assert!(
            finished.starts_with("dlv-") && finished.len() == 20,
            "{finished}"
        );
        assert_eq!(
            finished,
            delivery_id("run-1", WebhookEvent::RunFinished, None)
        );
        assert_ne!(
            finished,
            delivery_id("run-2", WebhookEvent::RunFinished, None)
        );
        let asked = json!([{"id": "int-1"}]);
        let interrupted = delivery_id("run-1", WebhookEvent::RunInterrupted, Some(&asked));
        assert_ne!(finished, interrupted);
        assert_ne!(
            interrupted,
            delivery_id(
                "run-1",
                WebhookEvent::RunInterrupted,
                Some(&json!([{"id": "int-2"}]))
            )
        );
        assert_eq!(
            serde_json::to_value(WebhookEvent::RunInterrupted).ok(),
            Some(json!("run.interrupted"))
        );
    }
}
