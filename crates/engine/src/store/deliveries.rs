//! Webhook deliveries in the store: the outbox of SPEC 8.5.
//!
//! A run with a webhook has a *target*, the URL its client gave, kept here
//! rather than in the run's body because the run is shown to clients and
//! the URL may carry credentials (the run shows it masked). Each event to
//! send is a *delivery* ([`StoredDelivery`]): stored before the change of
//! the run that causes it, so that it survives a restart and any process
//! on the store sends it (at least once).
//!
//! Senders take turns through a lease: [`DeliveryStore::claim_due`] moves
//! a due delivery's `next_attempt_at` forward to the end of the lease in
//! the same step that selects it, so no other process claims it while the
//! attempt is made; [`DeliveryStore::record_attempt`] writes the result
//! only while `next_attempt_at` is still that lease (a sender whose lease
//! ran out, and whose delivery another claimed, writes nothing). A sender
//! that dies mid-attempt leaves the delivery due again when its lease ends.

use super::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not sent yet, or to be tried again at `next_attempt_at`.
    Pending,
    /// A receiver answered with a 2xx.
    Delivered,
    /// Given up: a 4xx other than 408/429, or the last attempt failed.
    Failed,
}

impl DeliveryState {
    /// The stored form (`pending`, `delivered`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state a stored string names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// When it started, unix ms.
    pub at: u64,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it failed without an answer (a timeout, a refused connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// One webhook event to send, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// `dlv-` and 16 hex digits; the `X-Bmad2pf-Delivery` header, the same
    /// on every attempt.
    pub delivery_id: String,
    pub run_id: String,
    /// `run.finished` or `run.interrupted`.
    pub event: String,
    /// Where it goes (the run's target when it was stored).
    pub url: String,
    /// The JSON body, sent and signed byte for byte the same on every attempt.
    pub body: String,
    pub state: DeliveryState,
    /// Oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// Unix ms; the order of a run's deliveries.
    pub created_at: u64,
    /// When it is next due (or, while claimed, when the lease ends), unix
    /// ms; `None` once it is delivered or failed.
    pub next_attempt_at: Option<u64>,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Records `url` as the webhook of run `run_id` (before the run is
    /// created); `false`, writing nothing, when that run id has one already.
    async fn save_target(&self, run_id: &str, url: &str) -> Result<bool, StoreError>;
    /// Forgets the webhook of a run that was refused after its target was saved.
    async fn delete_target(&self, run_id: &str) -> Result<(), StoreError>;
    /// The webhook of run `run_id`, or `None`.
    async fn target(&self, run_id: &str) -> Result<Option<String>, StoreError>;
    /// Stores a new delivery; one whose id is already stored is left as it
    /// is (`false`), so storing the same event twice sends it once.
    async fn enqueue(&self, delivery: &StoredDelivery) -> Result<bool, StoreError>;
    /// Claims up to `limit` pending deliveries due at `now` (oldest due
    /// first): each is returned with `next_attempt_at` set to `lease_until`,
    /// as stored, so no other caller claims it before then.
    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>, StoreError>;
    /// Writes `delivery`'s state, attempts and `next_attempt_at` while the
    /// stored `next_attempt_at` is still `leased_until` (the claim's lease);
    /// `false` when it was not (the lease ran out and another claimed it).
    async fn record_attempt(
        &self,
        delivery: &StoredDelivery,
        leased_until: u64,
    ) -> Result<bool, StoreError>;
    /// The deliveries of run `run_id`, oldest first.
    async fn deliveries_of(&self, run_id: &str) -> Result<Vec<StoredDelivery>, StoreError>;
    /// Deletes the webhook and every delivery of these runs (retention).
    async fn delete_of_runs(&self, run_ids: &[String]) -> Result<(), StoreError>;
}
