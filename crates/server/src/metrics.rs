//! Request metrics and the Prometheus text encoder behind `GET /metrics`.
//!
//! The server counts requests and their latency per *route template*
//! (`/doc/{id}`, never `/doc/story-1__prd`), so ids cannot blow up the number
//! of series; the engine counts runs, agent executions, LLM calls, tokens
//! and cost per provider and model, and LLM errors ([`EngineStats`]). Model
//! names come from the operator's configuration, so like every label value
//! they are escaped. [`encode`] writes both in the
//! Prometheus text exposition format (version 0.0.4). Writing it here is a
//! few dozen lines for a handful of counter families and one histogram,
//! smaller than wiring a metrics crate.

use bmad2pf_engine::stats::EngineStats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Requests and latencies of one (method, route template).
#[derive(Debug, Default, Clone)]
struct RouteStats {
    /// Status code → count.
    statuses: BTreeMap<u16, u64>,
    /// Count per bucket of [`LATENCY_BUCKETS`] (not cumulative; summed on output).
    buckets: [u64; LATENCY_BUCKETS.len()],
    /// Requests slower than the last bucket.
    overflow: u64,
    sum_seconds: f64,
}

/// HTTP request counters, shared by every request of one server.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// (method, route template) → stats. A std mutex: held for a few
    /// additions, never across an await.
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
}

/// Totals for the `/health` summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpTotals {
    pub requests: u64,
    /// Responses with a 5xx status.
    pub server_errors: u64,
    /// Responses with a 4xx status.
    pub client_errors: u64,
}

impl HttpMetrics {
    /// Records one finished request.
    pub fn record(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let stats = routes
            .entry((method.to_string(), route.to_string()))
            .or_default();
        *stats.statuses.entry(status).or_default() += 1;
        let seconds = latency.as_secs_f64();
        stats.sum_seconds += seconds;
        match LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => stats.buckets[index] += 1,
            None => stats.overflow += 1,
        }
    }

    pub fn totals(&self) -> HttpTotals {
        let mut totals = HttpTotals::default();
        let Ok(routes) = self.routes.lock() else {
            return totals;
        };
        for (status, count) in routes.values().flat_map(|s| s.statuses.iter()) {
            totals.requests += count;
            match status {
                500.. => totals.server_errors += count,
                400..500 => totals.client_errors += count,
                _ => {}
            }
        }
        totals
    }

    fn snapshot(&self) -> BTreeMap<(String, String), RouteStats> {
        self.routes.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The whole `/metrics` body.
pub fn encode(http: &HttpMetrics, engine: &EngineStats, uptime: Duration) -> String {
    let mut out = String::new();
    let routes = http.snapshot();

    family(
        &mut out,
        "bmad2pf_http_requests_total",
        "counter",
        "HTTP requests by method, route template and status.",
    );
    for ((method, route), stats) in &routes {
        for (status, count) in &stats.statuses {
            let labels = labels(&[
                ("method", method),
                ("route", route),
                ("status", &status.to_string()),
            ]);
            let _ = writeln!(out, "bmad2pf_http_requests_total{labels} {count}");
        }
    }

    let name = "bmad2pf_http_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "HTTP request latency by method and route template.",
    );
    for ((method, route), stats) in &routes {
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(stats.buckets) {
            cumulative += count;
            let labels = labels(&[
                ("method", method),
                ("route", route),
                ("le", &bound.to_string()),
            ]);
            let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
        }
        let total = cumulative + stats.overflow;
        let _ = writeln!(
            out,
            "{name}_bucket{} {total}",
            labels(&[("method", method), ("route", route), ("le", "+Inf")])
        );
        let series = labels(&[("method", method), ("route", route)]);
        let _ = writeln!(out, "{name}_sum{series} {}", stats.sum_seconds);
        let _ = writeln!(out, "{name}_count{series} {total}");
    }

    labelled_counter(
        &mut out,
        "bmad2pf_runs_total",
        "Finished flow runs by status.",
        "status",
        &engine.runs,
    );
    labelled_counter(
        &mut out,
        "bmad2pf_agent_executions_total",
        "Agent executions within runs by result.",
        "status",
        &engine.agent_executions,
    );
    family(
        &mut out,
        "bmad2pf_llm_calls_total",
        "counter",
        "LLM call attempts, retries included.",
    );
    let _ = writeln!(out, "bmad2pf_llm_calls_total {}", engine.llm_calls);
    llm_usage(&mut out, engine);
    labelled_counter(
        &mut out,
        "bmad2pf_llm_errors_total",
        "Failed LLM attempts by error code.",
        "code",
        &engine.llm_errors,
    );
    labelled_counter(
        &mut out,
        "bmad2pf_interrupts_total",
        "Questions runs asked of a person, by kind (gates are approve).",
        "kind",
        &engine.interrupts,
    );
    labelled(
        &mut out,
        ("bmad2pf_runs", "gauge"),
        "Runs of this process now, by status (queued, running).",
        "status",
        &engine.runs_now,
    );
    labelled_counter(
        &mut out,
        "bmad2pf_webhook_deliveries_total",
        "Webhook attempts by outcome: delivered, failed (given up), retried (due again).",
        "outcome",
        &engine.webhook_deliveries,
    );

    family(
        &mut out,
        "bmad2pf_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(out, "bmad2pf_uptime_seconds {}", uptime.as_secs());
    out
}

/// Tokens and cost of answered LLM calls, per provider and model.
fn llm_usage(out: &mut String, engine: &EngineStats) {
    let models = || {
        engine.llm_usage.iter().flat_map(|(provider, models)| {
            models
                .iter()
                .map(move |(model, totals)| (provider.as_str(), model.as_str(), totals))
        })
    };
    let name = "bmad2pf_llm_tokens_total";
    family(
        out,
        name,
        "counter",
        "Tokens of answered LLM calls by provider, model and direction; \
         cache_read and cache_write are parts of in, reasoning a part of out.",
    );
    for (provider, model, totals) in models() {
        for (direction, count) in [
            ("in", totals.input_tokens),
            ("out", totals.output_tokens),
            ("cache_read", totals.cache_read_tokens),
            ("cache_write", totals.cache_write_tokens),
            ("reasoning", totals.reasoning_tokens),
        ] {
            let labels = labels(&[
                ("provider", provider),
                ("model", model),
                ("direction", direction),
            ]);
            let _ = writeln!(out, "{name}{labels} {count}");
        }
    }
    let name = "bmad2pf_llm_cost_usd_total";
    family(
        out,
        name,
        "counter",
        "USD of the LLM calls priced by runtime.yaml's pricing, by provider and model.",
    );
    for (provider, model, totals) in models() {
        if let Some(cost) = totals.cost_usd {
            let labels = labels(&[("provider", provider), ("model", model)]);
            let _ = writeln!(out, "{name}{labels} {cost}");
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labelled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<&'static str, u64>,
) {
    labelled(out, (name, "counter"), help, label, values);
}

/// A family of metric `name` of `kind` with one label.
fn labelled(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    label: &str,
    values: &BTreeMap<&'static str, u64>,
) {
    family(out, name, kind, help);
    for (value, count) in values {
        let _ = writeln!(out, "{name}{} {count}", labels(&[(label, value)]));
    }
}

/// `{a="x",b="y"}` with values escaped as the format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_add_up() {
        let metrics = HttpMetrics::default();
        metrics.record("GET", "/doc/{id}", 200, Duration::from_micros(500));
        metrics.record("GET", "/doc/{id}", 404, Duration::from_millis(20));
        metrics.record("GET", "/doc/{id}", 200, Duration::from_secs(60));
        let text = encode(&metrics, &EngineStats::default(), Duration::from_secs(3));
        assert!(text.contains(
            r#"bmad2pf_http_requests_total{method="GET",route="/doc/{id}",status="200"} 2"#
        ));
        assert!(text.contains(r#"bmad2pf_http_request_duration_seconds_bucket{method="GET",route="/doc/{id}",le="0.001"} 1"#));
        assert!(text.contains(r#"bmad2pf_http_request_duration_seconds_bucket{method="GET",route="/doc/{id}",le="0.025"} 2"#));
        assert!(text.contains(r#"bmad2pf_http_request_duration_seconds_bucket{method="GET",route="/doc/{id}",le="+Inf"} 3"#));
        assert!(text.contains(
            r#"bmad2pf_http_request_duration_seconds_count{method="GET",route="/doc/{id}"} 3"#
        ));
        assert_eq!(
            metrics.totals(),
            HttpTotals {
                requests: 3,
                server_errors: 0,
                client_errors: 1
            }
        );
    }

    #[test]
    fn llm_tokens_and_cost_are_per_provider_and_model() {
        let totals = |cost_usd| bmad2pf_engine::usage::UsageTotals {
            calls: 2,
            input_tokens: 100,
            output_tokens: 40,
            cache_read_tokens: 60,
            cache_write_tokens: 10,
            reasoning_tokens: 25,
            cost_usd,
            unpriced_calls: 0,
        };
        let mut engine = EngineStats::default();
        engine.llm_usage.insert(
            "anthropic".into(),
            BTreeMap::from([("claude-sonnet-4-5".to_string(), totals(Some(0.5)))]),
        );
        engine.llm_usage.insert(
            "openai_compatible".into(),
            BTreeMap::from([("my \"local\" \\ model\n".to_string(), totals(None))]),
        );
        let text = encode(&HttpMetrics::default(), &engine, Duration::ZERO);
        for (direction, count) in [
            ("in", 100),
            ("out", 40),
            ("cache_read", 60),
            ("cache_write", 10),
            ("reasoning", 25),
        ] {
            let line = format!(
                r#"bmad2pf_llm_tokens_total{{provider="anthropic",model="claude-sonnet-4-5",direction="{direction}"}} {count}"#
            );
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
        assert!(text.contains(
            r#"bmad2pf_llm_cost_usd_total{provider="anthropic",model="claude-sonnet-4-5"} 0.5"#
        ));
        assert!(text.contains(
            r#"bmad2pf_llm_tokens_total{provider="openai_compatible",model="my \"local\" \\ model\n",direction="in"} 100"#
        ), "{text}");
        assert!(
            !text.contains(r#"bmad2pf_llm_cost_usd_total{provider="openai_compatible""#),
            "an unpriced model adds no cost series: {text}"
        );
        assert!(text.contains("# TYPE bmad2pf_llm_cost_usd_total counter"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), r#"{a="x\"y\\z\n"}"#);
    }
}
