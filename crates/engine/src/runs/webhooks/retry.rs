//! What an attempt's answer means for a delivery, and when a failed one is
//! tried again (SPEC 8.5).
//!
//! A 2xx is delivered. Any other 4xx but 408 and 429 is the receiver
//! refusing this request, which sending it again would not change: failed.
//! Anything else — a 5xx, 408, 429, a 3xx (redirects are not followed, as
//! a redirect could lead past `webhooks.allowed_hosts`), a timeout, a
//! connection error — may pass later: retried after 1 s, 5 s, 30 s, 2 min,
//! then every 10 min, each ±20 % so that receivers coming back are not hit
//! by every sender at once, and never sooner than a `Retry-After` (in
//! seconds) asks, up to 10 min.

use std::time::Duration;

/// The delay after the first, second… failed attempt; the last repeats.
const SCHEDULE: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];
/// The longest wait, also for a `Retry-After`.
const MAX_DELAY: Duration = Duration::from_secs(600);
/// How far a delay may move either way (a fraction of it).
pub(crate) const JITTER: f64 = 0.2;

/// What an attempt's HTTP status (`None`: no answer) makes of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    Failed,
    Retry,
}

pub(crate) fn verdict(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(408 | 429) => Verdict::Retry,
        Some(400..=499) => Verdict::Failed,
        _ => Verdict::Retry,
    }
}

/// The wait after failed attempt number `attempt` (1 for the first),
/// scaled by `1 + jitter` (`jitter` within ±[`JITTER`]), and at least
/// `retry_after` (capped at 10 min).
pub(crate) fn delay(attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let base = SCHEDULE[index.min(SCHEDULE.len() - 1)];
    let jittered = base.mul_f64(1.0 + jitter.clamp(-JITTER, JITTER));
    jittered.max(retry_after.unwrap_or_default().min(MAX_DELAY))
}

/// A `Retry-After` header in seconds; an HTTP date or garbage is ignored
/// (the schedule applies).
pub(crate) fn retry_after(header: Option<&str>) -> Option<Duration> {
    header?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decide_delivered_failed_or_retry() {
        for (status, expected) in [
            (Some(200), Verdict::Delivered),
            (Some(204), Verdict::Delivered),
            (Some(404), Verdict::Failed),
            (Some(400), Verdict::Failed),
            (Some(410), Verdict::Failed),
            (Some(408), Verdict::Retry),
            (Some(429), Verdict::Retry),
            (Some(500), Verdict::Retry),
            (Some(503), Verdict::Retry),
            (Some(301), Verdict::Retry),
            (None, Verdict::Retry),
        ] {
            assert_eq!(verdict(status), expected, "{status:?}");
        }
    }

    #[test]
    fn the_schedule_is_1s_5s_30s_2min_10min_then_10min() {
        let plain: Vec<u64> = (1..=7).map(|n| delay(n, 0.0, None).as_secs()).collect();
        assert_eq!(plain, [1, 5, 30, 120, 600, 600, 600]);
        assert_eq!(delay(2, 0.2, None), Duration::from_secs(6));
        assert_eq!(delay(2, -0.2, None), Duration::from_secs(4));
        // Jitter beyond ±20 % is clamped.
        assert_eq!(delay(3, 5.0, None), Duration::from_secs(36));
    }

    #[test]
    fn retry_after_is_a_floor_of_at_most_ten_minutes() {
        assert_eq!(
            delay(1, 0.0, retry_after(Some("7"))),
            Duration::from_secs(7)
        );
        assert_eq!(
            delay(3, 0.0, retry_after(Some(" 2 "))),
            Duration::from_secs(30)
        );
        assert_eq!(
            delay(1, 0.0, retry_after(Some("86400"))),
            Duration::from_secs(600)
        );
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
