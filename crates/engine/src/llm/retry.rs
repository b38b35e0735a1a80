//! Retries around one LLM call: the policy of spec 4.1 (`retry_count` extra
//! attempts, exponential backoff with jitter, `Retry-After` honoured, `timeout`
//! per attempt), the same for every provider.
//!
//! Only errors that may go away are retried ([`LlmError::is_retryable`]: 429,
//! 5xx, timeouts, network failures); a bad key or an unknown model fails at
//! once. The wait before retry `n` (0-based) is "equal jitter" over
//! `min(max_delay, base_delay * 2^n)`: half of it fixed, half random, so
//! clients that failed together do not come back together. When the vendor
//! said how long to wait (`Retry-After`), the wait is at least that, capped at
//! [`RetryPolicy::MAX_RETRY_AFTER`].
//!
//! A streamed attempt that fails after sending some tokens is retried from the
//! start: the token sink then sees the new attempt's tokens after the old ones.

use std::time::Duration;

use bmad2pf_compiler::config::LlmConfig;
use rand::Rng;

use super::{LlmError, LlmProvider, LlmRequest, LlmResponse, TokenSink};

/// How a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first (`retry_count` / `llm.max_retries`).
    pub max_retries: u32,
    /// The wait before the first retry, before jitter; doubles each retry.
    pub base_delay: Duration,
    /// The longest backoff (a larger `Retry-After` still wins, up to its cap).
    pub max_delay: Duration,
    /// Time limit of one attempt, streaming included; zero means none.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The longest `Retry-After` obeyed: a vendor asking for an hour gets a minute.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

    /// The runtime.yaml defaults (`llm.max_retries`, `llm.timeout`); an agent's
    /// own `retry_count` and `timeout` replace the two fields.
    pub fn from_config(config: &LlmConfig) -> Self {
        Self {
            max_retries: config.max_retries,
            attempt_timeout: Duration::from_secs(config.timeout),
            ..Self::default()
        }
    }

    /// The backoff before retry `retry` (0-based), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry `retry` after `error`: equal jitter over the
    /// backoff, raised to the vendor's `Retry-After` when that is longer.
    pub fn delay_before_retry(&self, retry: u32, error: &LlmError) -> Duration {
        let backoff = self.backoff(retry);
        let half = backoff / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(rand::rng().random_range(0..=jitter_ms));
        let delay = half + jitter;
        match error.retry_after() {
            Some(asked) => delay.max(asked.min(Self::MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

/// What it took to get an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempts {
    /// Attempts made, the successful one included.
    pub count: u32,
    /// The errors of the failed attempts, oldest first.
    pub failures: Vec<LlmError>,
    /// Total time spent waiting between attempts.
    pub waited: Duration,
    /// How long the attempt that answered took (the waits and failed attempts not included).
    pub latency: Duration,
}

/// One attempt under a time limit (zero: none). A hung connection, or a
/// stream that stops sending, becomes [`LlmError::Timeout`].
pub async fn complete_with_timeout(
    provider: &dyn LlmProvider,
    request: &LlmRequest,
    on_token: Option<&TokenSink>,
    timeout: Duration,
) -> Result<LlmResponse, LlmError> {
    if timeout.is_zero() {
        return provider.complete(request, on_token).await;
    }
    tokio::time::timeout(timeout, provider.complete(request, on_token))
        .await
        .unwrap_or_else(|_| {
            Err(LlmError::Timeout {
                provider: provider.name().to_string(),
                after: timeout,
            })
        })
}

/// Calls `provider` until it answers, an error is not retryable, or
/// `policy.max_retries` retries are spent; then returns the last error.
pub async fn complete_with_retry(
    provider: &dyn LlmProvider,
    request: &LlmRequest,
    on_token: Option<&TokenSink>,
    policy: &RetryPolicy,
) -> Result<(LlmResponse, Attempts), LlmError> {
    let mut attempts = Attempts::default();
    loop {
        attempts.count += 1;
        let started = tokio::time::Instant::now();
        let error = match complete_with_timeout(provider, request, on_token, policy.attempt_timeout)
            .await
        {
            Ok(response) => {
                attempts.latency = started.elapsed();
                return Ok((response, attempts));
            }
            Err(error) => error,
        };
        let retry = attempts.count - 1;
        if !error.is_retryable() || retry >= policy.max_retries {
            return Err(error);
        }
        let delay = policy.delay_before_retry(retry, &error);
        tracing::warn!(
            provider = provider.name(),
            attempt = attempts.count,
            code = error.code(),
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "LLM call failed, retrying: {error}"
        );
        attempts.failures.push(error);
        attempts.waited += delay;
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(5),
        }
    }

    fn server_error() -> LlmError {
        LlmError::Server {
            provider: "p".into(),
            status: 500,
            retry_after: None,
            message: String::new(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let steps: Vec<u128> = (0..6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(u32::MAX), p.max_delay);
    }

    #[test]
    fn jittered_delay_stays_between_half_and_full_backoff() {
        let p = policy();
        for retry in 0..5 {
            for _ in 0..50 {
                let d = p.delay_before_retry(retry, &server_error());
                assert!(d >= p.backoff(retry) / 2 && d <= p.backoff(retry), "{d:?}");
            }
        }
    }

    #[test]
    fn retry_after_raises_the_delay_up_to_its_cap() {
        let p = policy();
        let limited = |secs| LlmError::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(secs)),
            message: String::new(),
        };
        assert!(p.delay_before_retry(0, &limited(3)) >= Duration::from_secs(3));
        assert_eq!(
            p.delay_before_retry(0, &limited(3600)),
            RetryPolicy::MAX_RETRY_AFTER
        );
    }
}
