//! What a rate-limiting algorithm answers, and the rate it is configured with.

use std::time::Duration;

/// Nanoseconds since the UNIX epoch: the time every algorithm is given.
///
/// Wall-clock based so that fixed windows align with UTC calendar boundaries, as Kong's do; the
/// layer derives it from a monotonic clock anchored at start-up, so it never jumps backwards.
pub type Nanos = u64;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A rate: `count` requests per `per`.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::ratelimit::{Rate, TokenBucket};
///
/// assert_eq!(Rate::per_minute(60).period(), Duration::from_secs(60));
/// assert_eq!(Rate::new(5, Duration::from_secs(2)).count(), 5);
/// let bucket = TokenBucket::new(Rate::per_second(10), 20);
/// # let _ = bucket;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u64,
    per: Duration,
}

impl Rate {
    /// `count` requests per `per`. A zero count or period is raised to 1 (request, nanosecond).
    pub fn new(count: u64, per: Duration) -> Self {
        Self {
            count: count.max(1),
            per: per.max(Duration::from_nanos(1)),
        }
    }

    /// `count` requests per second.
    pub fn per_second(count: u64) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub fn per_minute(count: u64) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// How many requests per period.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.per
    }

    pub(crate) fn per_nanos(&self) -> u128 {
        self.per.as_nanos()
    }

    /// Nanoseconds for `units` (in 1e-9 requests) to drain at this rate, rounded up.
    pub(crate) fn drain_time(&self, units: u128) -> u128 {
        // units / (count per per_nanos) in requests → time = units * per / (count * 1e9)
        (units * self.per_nanos()).div_ceil(u128::from(self.count) * NANOS_PER_SEC)
    }

    /// Units (1e-9 requests) drained in `elapsed` nanoseconds.
    pub(crate) fn drained(&self, elapsed: u128) -> u128 {
        elapsed * u128::from(self.count) * NANOS_PER_SEC / self.per_nanos()
    }
}

/// Whether a request may go on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on now.
    Allow,
    /// Go on after this long (traffic shaping: the caller waits on a timer).
    Delay(Duration),
    /// Refuse; nothing was consumed.
    Reject,
}

/// An algorithm's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Allow, delay or reject.
    pub verdict: Verdict,
    /// The limit the decision was taken against (for `RateLimit-Limit`).
    pub limit: u64,
    /// Requests still allowed now, after this one if it was admitted.
    pub remaining: u64,
    /// Time until the quota is whole again (for `RateLimit-Reset`).
    pub reset: Duration,
    /// On rejection, time until a request could be admitted (for `Retry-After`); zero otherwise.
    pub retry_after: Duration,
}

impl Decision {
    /// Whether the request is admitted, now or after a delay.
    pub fn admitted(&self) -> bool {
        self.verdict != Verdict::Reject
    }
}

pub(crate) fn nanos(d: u128) -> Duration {
    Duration::from_nanos(u64::try_from(d).unwrap_or(u64::MAX))
}
