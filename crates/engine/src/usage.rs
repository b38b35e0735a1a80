//! Usage accounting (SPEC 8.4): what one model call used and cost
//! ([`CallRecord`]), what a set of calls adds up to ([`UsageTotals`]), and the
//! price of a call from runtime.yaml's `pricing` ([`call_cost`]).
//!
//! The conversation ([`crate::conversation`]), the one path to a model,
//! makes a record of every call that returns an answer — tool rounds,
//! repairs and retries included — adds it to its totals and hands it to an
//! optional [`CallSink`], through which a run follows its calls as they
//! happen. Token counts arrive already normalised by the providers
//! ([`crate::llm::Usage`]). A cost is only ever computed from a price the
//! operator configured for the model: when one is missing, or the counts
//! are estimates, the call is left unpriced rather than given a guessed cost.

use crate::llm::Usage;
use bmad2pf_compiler::config::ModelPrice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Receives each call's record as soon as the call has answered.
pub type CallSink = dyn Fn(&CallRecord) + Send + Sync;

/// Prices are per million tokens.
const TOKENS_PER_PRICE_UNIT: f64 = 1_000_000.0;

/// One model call that returned an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallRecord {
    /// The agent whose conversation made the call.
    pub agent: String,
    /// The flow step the agent ran in; `null` for stateless execute, which has no step.
    pub step: Option<String>,
    /// The provider as bmad2pf names it (`openai`, `anthropic`, `gemini`,
    /// `openai_compatible`, `mock`, `replay`).
    pub provider: String,
    /// The model as configured (the key of `pricing`), not the vendor's
    /// more specific snapshot name.
    pub model: String,
    /// Which attempt answered, from 1: a retried call (or, in a flow, a
    /// retried agent) has a higher number.
    pub attempt: u32,
    /// Every prompt token, cache reads and writes included.
    pub input_tokens: u64,
    /// Every billed output token, reasoning included.
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// Time of the answering attempt, streaming included.
    pub latency_ms: u64,
    /// The counts are estimated from the text, not reported by the vendor.
    pub estimated: bool,
    /// USD, when the model has a price for every count it used (see [`call_cost`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Unix milliseconds when the answer arrived.
    pub at: u64,
}

/// What a set of calls used: a run, an agent, a model, one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageTotals {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// USD of the priced calls; absent when none was priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Calls without a cost, which `cost_usd` therefore leaves out: a
    /// non-zero count here means the real spend is higher than `cost_usd`.
    #[serde(default)]
    pub unpriced_calls: u64,
}

impl UsageTotals {
    /// Counts one call.
    pub fn add(&mut self, call: &CallRecord) {
        self.merge(&Self {
            calls: 1,
            input_tokens: call.input_tokens,
            output_tokens: call.output_tokens,
            cache_read_tokens: call.cache_read_tokens,
            cache_write_tokens: call.cache_write_tokens,
            reasoning_tokens: call.reasoning_tokens,
            cost_usd: call.cost_usd,
            unpriced_calls: u64::from(call.cost_usd.is_none()),
        });
    }

    /// Adds another set of calls to this one.
    pub fn merge(&mut self, other: &UsageTotals) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.unpriced_calls += other.unpriced_calls;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

/// The cost in USD of a call of `model` that used `usage`, per SPEC 8.4:
/// the uncached prompt tokens at the input price, cache reads and writes at
/// their own prices, every output token (reasoning included) at the output
/// price.
///
/// `None` when the cost cannot be known: `model` has no entry in `pricing`,
/// a count that is not zero has no price (cache reads without
/// `cache_read_per_mtok`, cache writes without `cache_write_per_mtok`), or
/// the counts are estimates.
pub fn call_cost(
    pricing: &BTreeMap<String, ModelPrice>,
    model: &str,
    usage: &Usage,
) -> Option<f64> {
    if usage.estimated {
        return None;
    }
    let price = pricing.get(model)?;
    let part = |tokens: u64, per_mtok: Option<f64>| match (tokens, per_mtok) {
        (0, _) => Some(0.0),
        (tokens, Some(per_mtok)) => Some(tokens as f64 * per_mtok),
        (_, None) => None,
    };
    // A server that reports more cache tokens than prompt tokens would
    // otherwise make the uncached part negative.
    let uncached = usage
        .input_tokens
        .saturating_sub(usage.cache_read_tokens)
        .saturating_sub(usage.cache_write_tokens);
    let sum = part(uncached, Some(price.input_per_mtok))?
        + part(usage.cache_read_tokens, price.cache_read_per_mtok)?
        + part(usage.cache_write_tokens, price.cache_write_per_mtok)?
        + part(usage.output_tokens, Some(price.output_per_mtok))?;
    Some(sum / TOKENS_PER_PRICE_UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(cache_read: Option<f64>, cache_write: Option<f64>) -> ModelPrice {
        ModelPrice {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cache_read_per_mtok: cache_read,
            cache_write_per_mtok: cache_write,
        }
    }

    fn pricing(model: &str, price: ModelPrice) -> BTreeMap<String, ModelPrice> {
        BTreeMap::from([(model.to_string(), price)])
    }

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0,
            estimated: false,
        }
    }

    fn record(input: u64, output: u64, cost_usd: Option<f64>) -> CallRecord {
        CallRecord {
            agent: "pm".into(),
            step: Some("plan".into()),
            provider: "anthropic".into(),
            model: "claude".into(),
            attempt: 1,
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: 1,
            cache_write_tokens: 2,
            reasoning_tokens: 3,
            latency_ms: 40,
            estimated: false,
            cost_usd,
            at: 1_700_000_000_000,
        }
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|a| (a - expected).abs() < 1e-12)
    }

    #[test]
    fn cost_prices_each_part_of_the_prompt_at_its_own_rate() {
        let pricing = pricing("claude", price(Some(0.3), Some(3.75)));
        // 10,000 prompt tokens, of which 6,000 cache reads and 1,000 cache
        // writes: 3,000 uncached.
        let cost = call_cost(&pricing, "claude", &usage(10_000, 2_000, 6_000, 1_000));
        let expected = (3_000.0 * 3.0 + 6_000.0 * 0.3 + 1_000.0 * 3.75 + 2_000.0 * 15.0) / 1e6;
        assert!(close(cost, expected), "{cost:?} != {expected}");
    }

    #[test]
    fn reasoning_tokens_are_paid_as_part_of_the_output() {
        let pricing = pricing("o3", price(None, None));
        let mut thinking = usage(100, 1_000, 0, 0);
        thinking.reasoning_tokens = 800;
        let cost = call_cost(&pricing, "o3", &thinking);
        assert!(
            close(cost, (100.0 * 3.0 + 1_000.0 * 15.0) / 1e6),
            "{cost:?}"
        );
    }

    #[test]
    fn a_model_without_a_price_has_no_cost() {
        let pricing = pricing("claude", price(Some(0.3), Some(3.75)));
        assert_eq!(call_cost(&pricing, "gpt-4o", &usage(10, 10, 0, 0)), None);
        assert_eq!(
            call_cost(&BTreeMap::new(), "claude", &usage(10, 10, 0, 0)),
            None
        );
    }

    #[test]
    fn cache_counts_without_their_price_leave_the_call_unpriced() {
        let no_cache_prices = pricing("m", price(None, None));
        assert_eq!(
            call_cost(&no_cache_prices, "m", &usage(100, 10, 40, 0)),
            None
        );
        assert_eq!(
            call_cost(&no_cache_prices, "m", &usage(100, 10, 0, 40)),
            None
        );
        let reads_only = pricing("m", price(Some(0.3), None));
        assert_eq!(call_cost(&reads_only, "m", &usage(100, 10, 0, 40)), None);
        // A missing price for a count that is zero does not matter.
        assert!(close(
            call_cost(&no_cache_prices, "m", &usage(100, 10, 0, 0)),
            (100.0 * 3.0 + 10.0 * 15.0) / 1e6
        ));
    }

    #[test]
    fn estimated_counts_have_no_cost() {
        let pricing = pricing("m", price(None, None));
        let mut estimate = usage(100, 10, 0, 0);
        estimate.estimated = true;
        assert_eq!(call_cost(&pricing, "m", &estimate), None);
    }

    #[test]
    fn more_cache_tokens_than_prompt_tokens_do_not_make_a_negative_cost() {
        let pricing = pricing("m", price(Some(0.3), None));
        let cost = call_cost(&pricing, "m", &usage(10, 0, 50, 0));
        assert!(close(cost, 50.0 * 0.3 / 1e6), "{cost:?}");
    }

    #[test]
    fn totals_sum_the_priced_calls_and_count_the_others() {
        let mut totals = UsageTotals::default();
        totals.add(&record(100, 10, Some(0.25)));
        totals.add(&record(200, 20, None));
        totals.add(&record(300, 30, Some(0.5)));
        assert_eq!(totals.calls, 3);
        assert_eq!(totals.input_tokens, 600);
        assert_eq!(totals.output_tokens, 60);
        assert_eq!(
            (
                totals.cache_read_tokens,
                totals.cache_write_tokens,
                totals.reasoning_tokens
            ),
            (3, 6, 9)
        );
        assert!(close(totals.cost_usd, 0.75));
        assert_eq!(totals.unpriced_calls, 1);
    }

    #[test]
    fn totals_of_unpriced_calls_have_no_cost_at_all() {
        let mut totals = UsageTotals::default();
        totals.add(&record(100, 10, None));
        assert_eq!(totals.cost_usd, None);
        assert_eq!(totals.unpriced_calls, 1);
        let json = serde_json::to_value(totals).unwrap_or_default();
        assert!(json.get("cost_usd").is_none(), "{json}");
        assert_eq!(json["unpriced_calls"], 1);
    }

    #[test]
    fn merging_totals_adds_every_field() {
        let mut priced = UsageTotals::default();
        priced.add(&record(100, 10, Some(0.25)));
        let mut unpriced = UsageTotals::default();
        unpriced.add(&record(200, 20, None));

        let mut all = UsageTotals::default();
        all.merge(&unpriced);
        assert_eq!(all.cost_usd, None);
        all.merge(&priced);
        assert_eq!(
            (all.calls, all.input_tokens, all.output_tokens),
            (2, 300, 30)
        );
        assert!(close(all.cost_usd, 0.25));
        assert_eq!(all.unpriced_calls, 1);
        all.merge(&priced);
        assert!(close(all.cost_usd, 0.5));
    }

    #[test]
    fn a_record_serialises_with_the_spec_field_names() {
        let json = serde_json::to_value(record(5, 6, Some(0.1))).unwrap_or_default();
        for field in [
            "agent",
            "step",
            "provider",
            "model",
            "attempt",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "latency_ms",
            "estimated",
            "cost_usd",
            "at",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        let unpriced = serde_json::to_value(record(5, 6, None)).unwrap_or_default();
        assert!(unpriced.get("cost_usd").is_none(), "{unpriced}");
        let back: Result<CallRecord, _> = serde_json::from_value(unpriced);
        assert_eq!(back.ok(), Some(record(5, 6, None)));
    }
}
