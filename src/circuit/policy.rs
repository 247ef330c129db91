//! When a breaker opens, how long it stays open, and how it closes again.

use std::time::Duration;

/// What trips a closed breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trip {
    /// This many failures in a row (the seed gateway's rule, default 5).
    ConsecutiveFailures(u32),
    /// The share of failures among the last `window` calls reaches `threshold` (0.0–1.0),
    /// once at least `min_calls` calls are in the window.
    FailureRate {
        /// Share of failures that trips, e.g. `0.5`.
        threshold: f64,
        /// How many recent calls are considered.
        window: u32,
        /// Calls needed in the window before the rate is trusted.
        min_calls: u32,
    },
    /// The share of failures among the calls of the last `period` reaches `threshold`, once
    /// at least `min_calls` calls fell in it. Counted in ten buckets, so calls leave the
    /// window with a granularity of a tenth of the period; memory does not grow with traffic.
    FailureRateOver {
        /// Share of failures that trips, e.g. `0.5`.
        threshold: f64,
        /// How far back calls count.
        period: Duration,
        /// Calls needed in the period before the rate is trusted.
        min_calls: u32,
    },
    /// The share of calls slower than `slower_than` (failed or not) among the last `window`
    /// calls reaches `threshold`, once at least `min_calls` calls are in the window.
    SlowCallRate {
        /// Share of slow calls that trips, e.g. `0.8`.
        threshold: f64,
        /// A call taking at least this long is slow.
        slower_than: Duration,
        /// How many recent calls are considered.
        window: u32,
        /// Calls needed in the window before the rate is trusted.
        min_calls: u32,
    },
}

/// The settings of a circuit breaker.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::circuit::{Policy, Trip};
///
/// let policy = Policy::default()
///     .trip(Trip::FailureRate { threshold: 0.5, window: 20, min_calls: 10 })
///     .open_for(Duration::from_secs(2), Duration::from_secs(300))
///     .probes(1)
///     .successes_to_close(2);
/// assert_eq!(policy.open_duration(3), Duration::from_secs(16));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub(crate) trip: Trip,
    pub(crate) base_open: Duration,
    pub(crate) max_open: Duration,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: u32,
    pub(crate) jitter: f64,
}

impl Default for Policy {
    /// Opens after 5 consecutive failures, for 10 s doubling up to 300 s; half-open admits
    /// one probe at a time and closes after one success.
    fn default() -> Self {
        Self {
            trip: Trip::ConsecutiveFailures(5),
            base_open: Duration::from_secs(10),
            max_open: Duration::from_secs(300),
            probes: 1,
            successes_to_close: 1,
            jitter: 0.0,
        }
    }
}

impl Policy {
    /// What trips the breaker.
    pub fn trip(mut self, trip: Trip) -> Self {
        self.trip = trip;
        self
    }

    /// Open for `base` the first time, doubling on every re-open (a failed probe) up to `max`
    /// (APISIX: 2 s … 300 s).
    pub fn open_for(mut self, base: Duration, max: Duration) -> Self {
        self.base_open = base;
        self.max_open = max.max(base);
        self
    }

    /// How many probes may be in flight at once while half-open (at least 1).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes.max(1);
        self
    }

    /// How many probe successes close the breaker (at least 1).
    pub fn successes_to_close(mut self, successes: u32) -> Self {
        self.successes_to_close = successes.max(1);
        self
    }

    /// Lengthens every open time by a random share up to `fraction` (0.0–1.0, default 0), so
    /// that many gateways do not probe a recovering upstream at the same instant.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How long the breaker stays open after it has re-opened `reopens` times in a row, before
    /// jitter.
    pub fn open_duration(&self, reopens: u32) -> Duration {
        let factor = 1u32.checked_shl(reopens.min(31)).unwrap_or(u32::MAX);
        self.base_open
            .checked_mul(factor)
            .unwrap_or(self.max_open)
            .min(self.max_open)
    }
}
