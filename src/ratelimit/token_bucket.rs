//! The token bucket: `burst` tokens, refilled at `rate`.

use super::decision::{Decision, Nanos, Rate, Verdict, nanos};

/// A token bucket holding at most `burst` tokens, refilled continuously at `rate`; each request
/// takes one token or is rejected.
///
/// Kept as its theoretical arrival time (GCRA), exact to the nanosecond in integers: after a
/// long idle exactly `burst` requests pass at once, not `burst + 1`, and a rejected request
/// takes nothing.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::ratelimit::{Rate, TokenBucket, Verdict};
///
/// let bucket = TokenBucket::new(Rate::per_second(10), 3);
/// let mut state = Default::default();
/// let now = 1_000_000_000;
/// for _ in 0..3 {
///     let (decision, next) = bucket.decide(&state, now);
///     assert_eq!(decision.verdict, Verdict::Allow);
///     state = next;
/// }
/// let (decision, _) = bucket.decide(&state, now);
/// assert_eq!(decision.verdict, Verdict::Reject);
/// assert_eq!(decision.retry_after, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    rate: Rate,
    burst: u64,
}

/// Per-key state of a [`TokenBucket`]: 8 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucketState {
    /// When the bucket would be full again if no more requests came (0: never used).
    tat: Nanos,
}

impl TokenBucketState {
    /// When the bucket is full again (nanoseconds since the epoch).
    pub(crate) fn tat(&self) -> Nanos {
        self.tat
    }

    #[cfg(feature = "redis")]
    pub(crate) fn from_tat(tat: Nanos) -> Self {
        Self { tat }
    }
}

impl TokenBucket {
    /// `burst` tokens (at least 1), refilled at `rate`.
    pub fn new(rate: Rate, burst: u64) -> Self {
        Self {
            rate,
            burst: burst.max(1),
        }
    }

    /// The quota and the seconds it takes to refill it, for `RateLimit-Policy`.
    pub(crate) fn quota_window(&self) -> (u64, u64) {
        let refill = self.rate.drain_time(u128::from(self.burst) * 1_000_000_000);
        (self.burst, refill.div_ceil(1_000_000_000) as u64)
    }

    /// Decides at `now`; the returned state is to be stored only if the request is admitted
    /// (on rejection it equals `state`).
    pub fn decide(&self, state: &TokenBucketState, now: Nanos) -> (Decision, TokenBucketState) {
        let interval = self.rate.drain_time(1_000_000_000); // one token, in ns
        let capacity = interval * u128::from(self.burst);
        let now = u128::from(now);
        let tat = u128::from(state.tat).max(now);
        let next_tat = tat + interval;
        let debt = next_tat - now; // how far the bucket is below full after this request
        if debt > capacity {
            let retry = debt - capacity;
            let decision = Decision {
                verdict: Verdict::Reject,
                limit: self.burst,
                remaining: 0,
                reset: nanos(tat - now),
                retry_after: nanos(retry),
            };
            return (decision, *state);
        }
        let remaining = ((capacity - debt) / interval) as u64;
        let decision = Decision {
            verdict: Verdict::Allow,
            limit: self.burst,
            remaining,
            reset: nanos(debt),
            retry_after: std::time::Duration::ZERO,
        };
        let next = TokenBucketState {
            tat: u64::try_from(next_tat).unwrap_or(u64::MAX),
        };
        (decision, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SEC: u64 = 1_000_000_000;

    fn run(bucket: &TokenBucket, state: &mut TokenBucketState, now: Nanos) -> Decision {
        let (d, next) = bucket.decide(state, now);
        if d.admitted() {
            *state = next;
        }
        d
    }

    #[test]
    fn after_a_long_idle_exactly_burst_requests_pass() {
        let bucket = TokenBucket::new(Rate::per_second(100), 200);
        let mut state = TokenBucketState::default();
        let now = 3600 * SEC;
        let passed = (0..250)
            .filter(|_| run(&bucket, &mut state, now).admitted())
            .count();
        assert_eq!(passed, 200);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_rejections_take_none() {
        let bucket = TokenBucket::new(Rate::per_second(10), 1);
        let mut state = TokenBucketState::default();
        let t0 = 10 * SEC;
        assert!(run(&bucket, &mut state, t0).admitted());
        // Hammering while empty consumes nothing...
        for ms in [1, 50, 99] {
            let d = run(&bucket, &mut state, t0 + ms * 1_000_000);
            assert_eq!(d.verdict, Verdict::Reject);
            assert_eq!(d.retry_after, Duration::from_millis(100 - ms));
        }
        // ...so the next token is there exactly one interval after the first request.
        assert!(run(&bucket, &mut state, t0 + 100_000_000).admitted());
    }

    #[test]
    fn remaining_and_reset_describe_the_bucket() {
        let bucket = TokenBucket::new(Rate::per_second(2), 4);
        let mut state = TokenBucketState::default();
        let d = run(&bucket, &mut state, 5 * SEC);
        assert_eq!(
            (d.limit, d.remaining, d.reset),
            (4, 3, Duration::from_millis(500))
        );
        let d = run(&bucket, &mut state, 5 * SEC);
        assert_eq!((d.remaining, d.reset), (2, Duration::from_secs(1)));
    }
}
