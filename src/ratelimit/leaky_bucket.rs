//! The leaky bucket with nginx `limit_req` semantics.

use std::time::Duration;

use super::decision::{Decision, Nanos, Rate, Verdict, nanos};

/// One request, in the bucket's units (nanorequests: nginx keeps milli-requests).
const ONE: u128 = 1_000_000_000;

/// nginx's `limit_req`: the bucket leaks at `rate`; each request adds one; a request that
/// would make the excess exceed `burst` is rejected and changes nothing.
///
/// The arithmetic is nginx's, at nanosecond instead of millisecond resolution:
/// `excess = max(0, previous_excess − rate × elapsed + 1)`, the first request of a key has
/// excess 0. So `rate = 100/s, burst = 0` admits one request per 10 ms, not "100 in any
/// second": a second request 1 ms after the first is rejected (excess 0.9 > 0).
///
/// Modes (nginx's): by default every request with excess above 0 is **delayed** until it
/// conforms (`Verdict::Delay`); [`nodelay`](Self::nodelay) admits everything within burst at
/// once while still recording its excess; [`delay`](Self::delay)`(n)` admits the first `n`
/// excess requests at once and delays the rest up to `burst`.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::ratelimit::{LeakyBucket, Rate, Verdict};
///
/// // OpenResty's example: 100 r/s, burst 200, requests over the rate are delayed.
/// let bucket = LeakyBucket::new(Rate::per_second(100), 200);
/// let (first, state) = bucket.decide(&None, 0);
/// assert_eq!(first.verdict, Verdict::Allow);
/// let (second, _) = bucket.decide(&state, 0);
/// assert_eq!(second.verdict, Verdict::Delay(Duration::from_millis(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakyBucket {
    rate: Rate,
    burst: u64,
    /// Excess (in requests) admitted without delay; `u64::MAX` for nodelay.
    no_delay_up_to: u64,
}

/// Per-key state of a [`LeakyBucket`]: `None` until the key's first request.
pub type LeakyBucketState = Option<LeakyState>;

/// The excess and the time it was last updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakyState {
    excess: u128,
    last: Nanos,
}

#[cfg(feature = "redis")]
impl LeakyState {
    /// The excess (in 1/10⁹ requests) and when it was last updated.
    pub(crate) fn parts(&self) -> (u128, Nanos) {
        (self.excess, self.last)
    }

    pub(crate) fn from_parts(excess: u128, last: Nanos) -> Self {
        Self { excess, last }
    }
}

impl LeakyBucket {
    /// Leaks at `rate`; up to `burst` requests of excess are queued (delayed).
    pub fn new(rate: Rate, burst: u64) -> Self {
        Self {
            rate,
            burst,
            no_delay_up_to: 0,
        }
    }

    /// nginx's `nodelay`: requests within burst pass at once.
    pub fn nodelay(mut self) -> Self {
        self.no_delay_up_to = u64::MAX;
        self
    }

    /// nginx's `delay=N`: the first `n` requests of excess pass at once, the rest up to
    /// `burst` are delayed.
    pub fn delay(mut self, n: u64) -> Self {
        self.no_delay_up_to = n;
        self
    }

    /// The quota (`burst + 1`) and the seconds it takes to leak, for `RateLimit-Policy`.
    pub(crate) fn quota_window(&self) -> (u64, u64) {
        let quota = self.burst + 1;
        let leak = self.rate.drain_time(u128::from(quota) * ONE);
        (quota, leak.div_ceil(ONE) as u64)
    }

    /// Whether `state` has leaked empty by `now` (it then decides as a fresh key would, except
    /// that a fresh key's first request has no excess at all, which is never stricter).
    pub(crate) fn drained_by(&self, state: &LeakyState, now: Nanos) -> bool {
        let elapsed = u128::from(now.saturating_sub(state.last));
        self.rate.drained(elapsed) >= state.excess + ONE
    }

    /// Decides at `now`; the returned state is to be stored only if the request is admitted
    /// (on rejection it equals `state`).
    pub fn decide(&self, state: &LeakyBucketState, now: Nanos) -> (Decision, LeakyBucketState) {
        let excess = match state {
            None => 0,
            Some(s) => {
                let elapsed = u128::from(now.saturating_sub(s.last));
                (s.excess + ONE).saturating_sub(self.rate.drained(elapsed))
            }
        };
        let burst = u128::from(self.burst) * ONE;
        let limit = self.burst + 1;
        if excess > burst {
            let current = state.map_or(0, |s| {
                let elapsed = u128::from(now.saturating_sub(s.last));
                s.excess.saturating_sub(self.rate.drained(elapsed))
            });
            let decision = Decision {
                verdict: Verdict::Reject,
                limit,
                remaining: 0,
                reset: nanos(self.rate.drain_time(current)),
                retry_after: nanos(self.rate.drain_time(excess - burst)),
            };
            return (decision, *state);
        }
        let threshold = u128::from(self.no_delay_up_to).saturating_mul(ONE);
        let verdict = if excess > threshold {
            Verdict::Delay(nanos(self.rate.drain_time(excess - threshold)))
        } else {
            Verdict::Allow
        };
        let decision = Decision {
            verdict,
            limit,
            remaining: ((burst - excess) / ONE) as u64,
            reset: nanos(self.rate.drain_time(excess)),
            retry_after: Duration::ZERO,
        };
        (decision, Some(LeakyState { excess, last: now }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn run(bucket: &LeakyBucket, state: &mut LeakyBucketState, now: Nanos) -> Verdict {
        let (d, next) = bucket.decide(state, now);
        if d.admitted() {
            *state = next;
        }
        d.verdict
    }

    #[test]
    fn rate_100_burst_0_admits_one_request_per_10_ms() {
        let bucket = LeakyBucket::new(Rate::per_second(100), 0);
        let mut state = None;
        assert_eq!(run(&bucket, &mut state, 0), Verdict::Allow);
        assert_eq!(run(&bucket, &mut state, MS), Verdict::Reject);
        assert_eq!(run(&bucket, &mut state, 9 * MS), Verdict::Reject);
        assert_eq!(run(&bucket, &mut state, 10 * MS), Verdict::Allow);
    }

    #[test]
    fn within_burst_requests_are_delayed_until_they_conform() {
        let bucket = LeakyBucket::new(Rate::per_second(100), 3);
        let mut state = None;
        let verdicts: Vec<_> = (0..5).map(|_| run(&bucket, &mut state, 0)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allow,
                Verdict::Delay(Duration::from_millis(10)),
                Verdict::Delay(Duration::from_millis(20)),
                Verdict::Delay(Duration::from_millis(30)),
                Verdict::Reject,
            ]
        );
    }

    #[test]
    fn nodelay_admits_the_burst_at_once_but_slots_refill_only_at_the_rate() {
        let bucket = LeakyBucket::new(Rate::per_second(100), 2).nodelay();
        let mut state = None;
        let verdicts: Vec<_> = (0..4).map(|_| run(&bucket, &mut state, 0)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Reject
            ]
        );
        assert_eq!(run(&bucket, &mut state, 5 * MS), Verdict::Reject);
        assert_eq!(run(&bucket, &mut state, 10 * MS), Verdict::Allow);
        assert_eq!(run(&bucket, &mut state, 10 * MS), Verdict::Reject);
    }

    #[test]
    fn delay_n_is_two_stage() {
        let bucket = LeakyBucket::new(Rate::per_second(100), 4).delay(2);
        let mut state = None;
        let verdicts: Vec<_> = (0..6).map(|_| run(&bucket, &mut state, 0)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Delay(Duration::from_millis(10)),
                Verdict::Delay(Duration::from_millis(20)),
                Verdict::Reject,
            ]
        );
    }

    #[test]
    fn a_rejection_does_not_fill_the_bucket() {
        let bucket = LeakyBucket::new(Rate::per_second(10), 0);
        let mut state = None;
        assert_eq!(run(&bucket, &mut state, 0), Verdict::Allow);
        for t in [10, 50, 90] {
            assert_eq!(run(&bucket, &mut state, t * MS), Verdict::Reject);
        }
        assert_eq!(run(&bucket, &mut state, 100 * MS), Verdict::Allow);
    }

    #[test]
    fn a_rejection_says_when_to_retry() {
        let bucket = LeakyBucket::new(Rate::per_second(100), 0);
        let (_, state) = bucket.decide(&None, 0);
        let (d, _) = bucket.decide(&state, 3 * MS);
        assert_eq!(d.verdict, Verdict::Reject);
        assert_eq!(d.retry_after, Duration::from_millis(7));
    }
}
