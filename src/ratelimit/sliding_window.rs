//! Sliding windows: the exact log, and the weighted two-window counter.

use std::collections::VecDeque;
use std::time::Duration;

use super::decision::{Decision, Nanos, Verdict, nanos};

/// At most `limit` requests in any `window`-long interval, exactly: the key keeps the times of
/// its last `limit` admitted requests (so its memory is bounded by `limit`).
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::ratelimit::{SlidingLog, Verdict};
///
/// let limit = SlidingLog::new(2, Duration::from_secs(10));
/// let mut log = Default::default();
/// assert!(limit.decide(&mut log, 0).admitted());
/// assert!(limit.decide(&mut log, 4_000_000_000).admitted());
/// let rejected = limit.decide(&mut log, 9_000_000_000);
/// assert_eq!(rejected.verdict, Verdict::Reject);
/// assert_eq!(rejected.retry_after, Duration::from_secs(1));
/// assert!(limit.decide(&mut log, 10_000_000_000).admitted());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingLog {
    limit: u64,
    window: Duration,
}

/// Per-key state of a [`SlidingLog`]: admission times, oldest first, at most `limit` of them.
pub type SlidingLogState = VecDeque<Nanos>;

/// At most `limit` requests per `window`, estimated from two fixed windows: the count of the
/// previous window weighted by how much of it still overlaps the sliding window, plus the
/// current count (Cloudflare's and Kong Advanced's sliding window). 24 bytes per key; exact
/// integer arithmetic; a rejection counts nothing.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::ratelimit::{SlidingWindow, Verdict};
///
/// let limit = SlidingWindow::new(10, Duration::from_secs(60));
/// let mut state = Default::default();
/// for _ in 0..10 {
///     let (decision, next) = limit.decide(&state, 0);
///     assert!(decision.admitted());
///     state = next;
/// }
/// // Half-way through the next window, half of the previous window still counts.
/// let mut admitted = 0;
/// for _ in 0..10 {
///     let (decision, next) = limit.decide(&state, 90_000_000_000);
///     if decision.admitted() {
///         admitted += 1;
///         state = next;
///     }
/// }
/// assert_eq!(admitted, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    limit: u64,
    window: Duration,
}

/// Per-key state of a [`SlidingWindow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindowState {
    /// Index of the current fixed window (`now / window`).
    index: u64,
    current: u64,
    previous: u64,
}

#[cfg(feature = "redis")]
impl SlidingWindowState {
    /// The current window's index, its count and the previous window's.
    pub(crate) fn parts(&self) -> (u64, u64, u64) {
        (self.index, self.current, self.previous)
    }

    pub(crate) fn from_parts(index: u64, current: u64, previous: u64) -> Self {
        Self {
            index,
            current,
            previous,
        }
    }
}

// === impl SlidingLog ===

impl SlidingLog {
    /// At most `limit` (at least 1) requests in any `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window: window.max(Duration::from_nanos(1)),
        }
    }

    /// What admitting a request at `now` would give, without recording it.
    pub fn check(&self, log: &SlidingLogState, now: Nanos) -> Decision {
        let window = self.window.as_nanos();
        let now128 = u128::from(now);
        // Times are oldest first; a request stays in the window until `window` after it.
        let first_live = log.partition_point(|t| u128::from(*t) + window <= now128);
        let count = (log.len() - first_live) as u64;
        let expiry = |t: Nanos| nanos((u128::from(t) + window).saturating_sub(now128));
        if count >= self.limit {
            // The oldest live request must leave the window first.
            return Decision {
                verdict: Verdict::Reject,
                limit: self.limit,
                remaining: 0,
                reset: log.back().map_or(Duration::ZERO, |t| expiry(*t)),
                retry_after: log.get(first_live).map_or(Duration::ZERO, |t| expiry(*t)),
            };
        }
        Decision {
            verdict: Verdict::Allow,
            limit: self.limit,
            remaining: self.limit - count - 1,
            reset: self.window,
            retry_after: Duration::ZERO,
        }
    }

    /// Records a request admitted at `now` (after [`check`](Self::check) admitted it).
    pub fn commit(&self, log: &mut SlidingLogState, now: Nanos) {
        let window = self.window.as_nanos();
        while log
            .front()
            .is_some_and(|t| u128::from(*t) + window <= u128::from(now))
        {
            log.pop_front();
        }
        while log.len() as u64 >= self.limit {
            log.pop_front();
        }
        log.push_back(now);
    }

    /// Whether every logged request has left the window (the log decides as an empty one).
    pub(crate) fn expired(&self, log: &SlidingLogState, now: Nanos) -> bool {
        log.back()
            .is_none_or(|t| u128::from(*t) + self.window.as_nanos() <= u128::from(now))
    }

    /// `(quota, window in whole seconds)` for the IETF policy field.
    pub(crate) fn quota_window(&self) -> (u64, u64) {
        (self.limit, self.window.as_secs().max(1))
    }

    /// [`check`](Self::check), then [`commit`](Self::commit) if admitted.
    pub fn decide(&self, log: &mut SlidingLogState, now: Nanos) -> Decision {
        let decision = self.check(log, now);
        if decision.admitted() {
            self.commit(log, now);
        }
        decision
    }
}

// === impl SlidingWindow ===

impl SlidingWindow {
    /// At most `limit` (at least 1) requests per `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window: window.max(Duration::from_nanos(1)),
        }
    }

    /// The quota and the window in seconds, for `RateLimit-Policy`.
    pub(crate) fn quota_window(&self) -> (u64, u64) {
        (self.limit, self.window.as_secs().max(1))
    }

    /// Whether `state` no longer counts at `now`: both its windows are over.
    pub(crate) fn expired(&self, state: &SlidingWindowState, now: Nanos) -> bool {
        let index = (u128::from(now) / self.window.as_nanos()) as u64;
        index >= state.index + 2 || (state.current == 0 && state.previous == 0)
    }

    /// Decides at `now`; the returned state is to be stored only if the request is admitted
    /// (on rejection it equals `state`).
    pub fn decide(&self, state: &SlidingWindowState, now: Nanos) -> (Decision, SlidingWindowState) {
        let window = self.window.as_nanos();
        let now128 = u128::from(now);
        let index = (now128 / window) as u64;
        let (previous, current) = match index.checked_sub(state.index) {
            Some(0) => (state.previous, state.current),
            Some(1) => (state.current, 0),
            _ => (0, 0),
        };
        let elapsed = now128 - u128::from(index) * window;
        let overlap = window - elapsed; // how much of the previous window still counts
        let limit = u128::from(self.limit);
        // estimate + 1 <= limit, scaled by `window`.
        let used = u128::from(previous) * overlap + (u128::from(current) + 1) * window;
        if used > limit * window {
            let retry = self.retry_after(previous, current, elapsed);
            let decision = Decision {
                verdict: Verdict::Reject,
                limit: self.limit,
                remaining: 0,
                reset: nanos(2 * window - elapsed),
                retry_after: nanos(retry),
            };
            return (decision, *state);
        }
        let decision = Decision {
            verdict: Verdict::Allow,
            limit: self.limit,
            remaining: ((limit * window - used) / window) as u64,
            reset: nanos(2 * window - elapsed),
            retry_after: Duration::ZERO,
        };
        let next = SlidingWindowState {
            index,
            current: current + 1,
            previous,
        };
        (decision, next)
    }

    /// Nanoseconds from `elapsed` into the current window until one more request fits.
    fn retry_after(&self, previous: u64, current: u64, elapsed: u128) -> u128 {
        let window = self.window.as_nanos();
        let limit = u128::from(self.limit);
        let (previous, current) = (u128::from(previous), u128::from(current));
        // Later in this window: previous * (window - e) + (current + 1) * window <= limit * window.
        if current < limit && previous > 0 {
            let room = (limit - current - 1) * window; // what the previous window may still use
            let needed = window.saturating_sub(room / previous); // smallest e with overlap <= room/previous
            if needed < window {
                return needed.saturating_sub(elapsed).max(1);
            }
        }
        // In the next window the current count becomes the previous one.
        let to_next = window - elapsed;
        if current < limit {
            return to_next;
        }
        let room = (limit - 1) * window;
        let needed = window.saturating_sub(room / current.max(1));
        to_next + needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn the_log_allows_exactly_limit_in_any_window() {
        let limit = SlidingLog::new(3, Duration::from_secs(10));
        let mut log = SlidingLogState::new();
        let mut admitted = Vec::new();
        for t in 0..30u64 {
            if limit.decide(&mut log, t * SEC).admitted() {
                admitted.push(t);
            }
        }
        assert_eq!(admitted, [0, 1, 2, 10, 11, 12, 20, 21, 22]);
        assert!(log.len() <= 3);
    }

    #[test]
    fn the_log_stays_bounded_under_rejections() {
        let limit = SlidingLog::new(5, Duration::from_secs(60));
        let mut log = SlidingLogState::new();
        for i in 0..10_000 {
            limit.decide(&mut log, i);
        }
        assert_eq!(log.len(), 5);
    }

    #[test]
    fn the_counter_weights_the_previous_window_by_its_overlap() {
        let limit = SlidingWindow::new(10, Duration::from_secs(60));
        let mut state = SlidingWindowState::default();
        for _ in 0..10 {
            let (d, next) = limit.decide(&state, 0);
            assert!(d.admitted());
            state = next;
        }
        let (d, _) = limit.decide(&state, 30 * SEC);
        assert_eq!(
            d.verdict,
            Verdict::Reject,
            "the full previous window still counts at 30 s"
        );
        assert_eq!(d.retry_after, Duration::from_secs(36));
        // 75% into the next window, a quarter of the previous ten (2.5) still counts: 7 fit.
        let mut admitted = 0;
        for _ in 0..10 {
            let (d, next) = limit.decide(&state, 105 * SEC);
            if d.admitted() {
                admitted += 1;
                state = next;
            }
        }
        assert_eq!(admitted, 7);
    }

    #[test]
    fn the_counter_forgets_windows_older_than_the_previous_one() {
        let limit = SlidingWindow::new(2, Duration::from_secs(1));
        let mut state = SlidingWindowState::default();
        for _ in 0..2 {
            state = limit.decide(&state, 0).1;
        }
        let (d, _) = limit.decide(&state, 5 * SEC);
        assert_eq!(d.remaining, 1);
    }
}
