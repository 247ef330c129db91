//! Kong's rate-limiting plugin: counters in UTC calendar-aligned windows.

use std::time::Duration;

use super::decision::{Decision, Nanos, Verdict};
use crate::calendar::{civil_from_days, days_from_civil};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A calendar-aligned window length, as Kong's `second` … `year` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// From one second to the next.
    Second,
    /// From `hh:mm:00` to the next minute.
    Minute,
    /// From `hh:00:00` to the next hour.
    Hour,
    /// From midnight UTC to the next.
    Day,
    /// From the 1st of the month, 00:00 UTC, to the 1st of the next (calendar months: Kong
    /// resets some counters after 30 days instead; here a month is a month).
    Month,
    /// From January 1st, 00:00 UTC, to the next.
    Year,
}

/// Kong's `rate-limiting` plugin: for each configured period, at most `limit` requests per
/// UTC calendar window. Several periods at once; a request passes only if every period has
/// room, and a rejected request counts in none (Kong's local policy counts before checking;
/// here nothing is consumed on denial, so concurrent bursts cannot overshoot either).
///
/// ```
/// use tower_gateway::ratelimit::{FixedWindow, Period, Verdict};
///
/// let limit = FixedWindow::new([(Period::Second, 2), (Period::Minute, 3)]);
/// let mut state = Default::default();
/// let t = 1_700_000_000 * 1_000_000_000; // 2023-11-14T22:13:20Z
/// let mut verdicts = Vec::new();
/// for offset in [0, 0, 0, 1, 2] {
///     let (decision, next) = limit.decide(&state, t + offset * 1_000_000_000);
///     if decision.admitted() {
///         state = next;
///     }
///     verdicts.push(decision.verdict);
/// }
/// assert_eq!(verdicts, [Verdict::Allow, Verdict::Allow, Verdict::Reject, Verdict::Allow, Verdict::Reject]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedWindow {
    limits: Vec<(Period, u64)>,
}

/// Per-key state of a [`FixedWindow`]: the start (in seconds) and count of each period's
/// current window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    windows: [(u64, u64); 6],
}

#[cfg(feature = "redis")]
impl FixedWindowState {
    /// Per period: the window it counts in and its count.
    pub(crate) fn windows(&self) -> &[(u64, u64); 6] {
        &self.windows
    }

    pub(crate) fn from_windows(windows: [(u64, u64); 6]) -> Self {
        Self { windows }
    }

    /// A state whose `period` counts `count` requests in the window starting at `start`.
    pub(crate) fn with_count(mut self, period: Period, start: u64, count: u64) -> Self {
        self.windows[period.index()] = (start, count);
        self
    }
}

// === impl Period ===

impl Period {
    fn index(self) -> usize {
        self as usize
    }

    /// The window containing `secs` (seconds since the epoch): `[start, end)`.
    pub fn window(self, secs: u64) -> (u64, u64) {
        let fixed = |len: u64| {
            let start = secs - secs % len;
            (start, start + len)
        };
        match self {
            Self::Second => fixed(1),
            Self::Minute => fixed(60),
            Self::Hour => fixed(3600),
            Self::Day => fixed(86_400),
            Self::Month | Self::Year => {
                let days = (secs / 86_400) as i64;
                let (year, month, _) = civil_from_days(days);
                let (start, end) = if self == Self::Month {
                    let (ny, nm) = if month == 12 {
                        (year + 1, 1)
                    } else {
                        (year, month + 1)
                    };
                    (days_from_civil(year, month, 1), days_from_civil(ny, nm, 1))
                } else {
                    (days_from_civil(year, 1, 1), days_from_civil(year + 1, 1, 1))
                };
                (start as u64 * 86_400, end as u64 * 86_400)
            }
        }
    }

    /// Kong's header suffix: `Second`, `Minute`, …
    pub fn name(self) -> &'static str {
        match self {
            Self::Second => "Second",
            Self::Minute => "Minute",
            Self::Hour => "Hour",
            Self::Day => "Day",
            Self::Month => "Month",
            Self::Year => "Year",
        }
    }
}

// === impl FixedWindow ===

impl FixedWindow {
    /// Limits per period; a period given twice keeps the smaller limit.
    pub fn new(limits: impl IntoIterator<Item = (Period, u64)>) -> Self {
        let mut by_period: Vec<(Period, u64)> = Vec::new();
        for (period, limit) in limits {
            match by_period.iter_mut().find(|(p, _)| *p == period) {
                Some((_, l)) => *l = (*l).min(limit),
                None => by_period.push((period, limit)),
            }
        }
        by_period.sort();
        Self { limits: by_period }
    }

    /// Whether every window in `state` has ended by `now`.
    pub(crate) fn expired(&self, state: &FixedWindowState, now: Nanos) -> bool {
        let secs = now / NANOS_PER_SEC;
        self.limits.iter().all(|&(period, _)| {
            let (start, _) = period.window(secs);
            let (seen_start, count) = state.windows[period.index()];
            count == 0 || seen_start < start
        })
    }

    /// Requests left per period after `state`, at `now` (for Kong's per-period headers).
    pub fn remaining(&self, state: &FixedWindowState, now: Nanos) -> Vec<(Period, u64, u64)> {
        let secs = now / NANOS_PER_SEC;
        self.limits
            .iter()
            .map(|&(period, limit)| {
                let (start, _) = period.window(secs);
                let (seen_start, count) = state.windows[period.index()];
                let used = if seen_start == start { count } else { 0 };
                (period, limit, limit.saturating_sub(used))
            })
            .collect()
    }

    /// The configured limits, shortest period first.
    pub fn limits(&self) -> &[(Period, u64)] {
        &self.limits
    }

    /// Decides at `now`; the returned state is to be stored only if the request is admitted
    /// (on rejection it equals `state`). The decision describes the tightest period: the one
    /// with the fewest requests left (on rejection, the one that frees up last).
    pub fn decide(&self, state: &FixedWindowState, now: Nanos) -> (Decision, FixedWindowState) {
        let secs = now / NANOS_PER_SEC;
        let until = |end: u64| Duration::from_nanos((end * NANOS_PER_SEC).saturating_sub(now));
        let mut next = *state;
        let mut blocked: Option<(u64, Duration)> = None;
        let mut tightest: Option<(u64, u64, Duration)> = None;
        for &(period, limit) in &self.limits {
            let (start, end) = period.window(secs);
            let (seen_start, seen_count) = state.windows[period.index()];
            let count = if seen_start == start { seen_count } else { 0 };
            if count >= limit {
                let wait = until(end);
                if blocked.is_none_or(|(_, w)| wait > w) {
                    blocked = Some((limit, wait));
                }
                continue;
            }
            next.windows[period.index()] = (start, count + 1);
            let remaining = limit - count - 1;
            if tightest.is_none_or(|(_, r, _)| remaining < r) {
                tightest = Some((limit, remaining, until(end)));
            }
        }
        if let Some((limit, wait)) = blocked {
            let decision = Decision {
                verdict: Verdict::Reject,
                limit,
                remaining: 0,
                reset: wait,
                retry_after: wait,
            };
            return (decision, *state);
        }
        let (limit, remaining, reset) = tightest.unwrap_or((0, 0, Duration::ZERO));
        let decision = Decision {
            verdict: Verdict::Allow,
            limit,
            remaining,
            reset,
            retry_after: Duration::ZERO,
        };
        (decision, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    fn at(y: i64, m: u32, d: u32, hh: u64, mm: u64, ss: u64) -> Nanos {
        ((days_from_civil(y, m, d) as u64) * 86_400 + hh * 3600 + mm * 60 + ss) * SEC
    }

    fn run(limit: &FixedWindow, state: &mut FixedWindowState, now: Nanos) -> Decision {
        let (d, next) = limit.decide(state, now);
        if d.admitted() {
            *state = next;
        }
        d
    }

    #[test]
    fn a_minute_limit_resets_at_the_minute_boundary_not_sixty_seconds_later() {
        let limit = FixedWindow::new([(Period::Minute, 100)]);
        let mut state = FixedWindowState::default();
        let t = at(2026, 11, 28, 9, 0, 30);
        let admitted = (0..110)
            .filter(|_| run(&limit, &mut state, t).admitted())
            .count();
        assert_eq!(admitted, 100);
        let d = run(&limit, &mut state, t);
        assert_eq!(d.retry_after, Duration::from_secs(30));
        assert!(run(&limit, &mut state, at(2026, 11, 28, 9, 1, 0)).admitted());
    }

    #[test]
    fn rejected_requests_count_in_no_period() {
        let limit = FixedWindow::new([(Period::Second, 1), (Period::Hour, 3)]);
        let mut state = FixedWindowState::default();
        let t = at(2026, 1, 1, 0, 0, 0);
        assert!(run(&limit, &mut state, t).admitted());
        for _ in 0..10 {
            assert!(!run(&limit, &mut state, t).admitted());
        }
        // The hour still has two left: the ten rejections took nothing from it.
        assert!(run(&limit, &mut state, t + SEC).admitted());
        assert!(run(&limit, &mut state, t + 2 * SEC).admitted());
        let d = run(&limit, &mut state, t + 3 * SEC);
        assert!(!d.admitted());
        assert_eq!(d.retry_after, Duration::from_secs(3600 - 3));
    }

    #[test]
    fn month_and_year_windows_follow_the_calendar() {
        assert_eq!(
            Period::Month.window(at(2024, 2, 29, 23, 59, 59) / SEC),
            (at(2024, 2, 1, 0, 0, 0) / SEC, at(2024, 3, 1, 0, 0, 0) / SEC)
        );
        assert_eq!(
            Period::Month.window(at(2025, 12, 31, 12, 0, 0) / SEC),
            (
                at(2025, 12, 1, 0, 0, 0) / SEC,
                at(2026, 1, 1, 0, 0, 0) / SEC
            )
        );
        assert_eq!(
            Period::Year.window(at(2026, 11, 28, 9, 0, 0) / SEC),
            (at(2026, 1, 1, 0, 0, 0) / SEC, at(2027, 1, 1, 0, 0, 0) / SEC)
        );
        let limit = FixedWindow::new([(Period::Month, 1)]);
        let mut state = FixedWindowState::default();
        assert!(run(&limit, &mut state, at(2026, 2, 28, 23, 0, 0)).admitted());
        let d = run(&limit, &mut state, at(2026, 2, 28, 23, 0, 0));
        assert_eq!(d.retry_after, Duration::from_secs(3600));
        assert!(run(&limit, &mut state, at(2026, 3, 1, 0, 0, 0)).admitted());
    }

    #[test]
    fn the_decision_reports_the_tightest_period() {
        let limit = FixedWindow::new([(Period::Second, 10), (Period::Minute, 3)]);
        let mut state = FixedWindowState::default();
        let d = run(&limit, &mut state, at(2026, 1, 1, 0, 0, 10));
        assert_eq!(
            (d.limit, d.remaining, d.reset),
            (3, 2, Duration::from_secs(50))
        );
    }
}
