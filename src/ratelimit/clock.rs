//! Where the rate limiter takes the time from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Nanos;

/// The time source of a [`RateLimitLayer`](super::RateLimitLayer).
///
/// ```
/// use tower_gateway::ratelimit::Clock;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The default: the wall clock read once, then tokio's monotonic time.
/// let clock = Clock::runtime();
/// assert!(clock.now() > 1_600_000_000 * 1_000_000_000);
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum Clock {
    /// Wall-clock time at start-up, advanced by tokio's monotonic clock: never jumps back, and
    /// follows tokio's paused time in tests.
    Runtime {
        /// Nanoseconds since the epoch when the clock was made.
        unix_at_start: Nanos,
        /// tokio's instant when the clock was made.
        start: tokio::time::Instant,
    },
    /// Set by hand: for exact tests of calendar windows.
    Manual(ManualClock),
}

/// A clock a test sets and advances.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::ratelimit::{Clock, KeyBy, ManualClock, Rate, RateLimitLayer, TokenBucket};
///
/// // A rate limit whose time a test moves by hand.
/// let time = ManualClock::at(0);
/// let clock = Clock::Manual(time.clone());
/// let layer = RateLimitLayer::builder(KeyBy::Global)
///     .limit(TokenBucket::new(Rate::per_second(1), 1))
///     .clock(clock.clone())
///     .build();
/// time.advance(Duration::from_secs(1));
/// assert_eq!(clock.now(), 1_000_000_000);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl Clock {
    /// The runtime clock, anchored now.
    pub fn runtime() -> Self {
        let unix_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self::Runtime {
            unix_at_start,
            start: tokio::time::Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now(&self) -> Nanos {
        match self {
            Self::Runtime {
                unix_at_start,
                start,
            } => {
                let since = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                unix_at_start.saturating_add(since)
            }
            Self::Manual(clock) => clock.0.load(Ordering::Relaxed),
        }
    }
}

impl ManualClock {
    /// A clock reading `now` nanoseconds since the epoch.
    pub fn at(now: Nanos) -> Self {
        Self(Arc::new(AtomicU64::new(now)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Ordering::Relaxed);
    }
}
