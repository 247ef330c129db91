//! Passive health (outlier ejection): consecutive failures of live traffic take an endpoint
//! out for a while; it comes back by itself.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

/// A set of HTTP status codes (100–999).
///
/// ```
/// use http::StatusCode;
/// use tower_gateway::balance::StatusSet;
///
/// let failures = StatusSet::new([500, 502, 503]);
/// assert!(failures.contains(StatusCode::BAD_GATEWAY));
/// assert!(!failures.contains(StatusCode::NOT_FOUND));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StatusSet([u64; 16]);

impl StatusSet {
    /// The statuses in `codes`; codes outside 100–999 are ignored.
    pub fn new(codes: impl IntoIterator<Item = u16>) -> Self {
        let mut set = Self([0; 16]);
        for code in codes {
            if (100..1000).contains(&code) {
                set.0[usize::from(code / 64)] |= 1 << (code % 64);
            }
        }
        set
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        code < 1024 && self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codes = (100u16..1000).filter(|&c| self.0[usize::from(c / 64)] & (1 << (c % 64)) != 0);
        f.debug_set().entries(codes).finish()
    }
}

/// When live traffic takes an endpoint out (Kong's `healthchecks.passive` plus Envoy's outlier
/// detection): a threshold per kind of failure, counted in a row and reset by a healthy
/// response; an ejection that lasts `base_ejection`, doubling on each ejection that follows
/// soon after a return, up to `max_ejection`; and a cap on the share of endpoints ejected at
/// once, so a bad deploy or a client sending poison requests cannot empty the pool.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::balance::PassiveHealth;
///
/// let passive = PassiveHealth::default()
///     .tcp_failures(3)
///     .http_failures(5, [500, 502, 503, 504])
///     .ejection(Duration::from_secs(10), Duration::from_secs(120))
///     .max_ejected_percent(50);
/// # let _ = passive;
/// ```
#[derive(Debug, Clone)]
pub struct PassiveHealth {
    pub(crate) tcp_failures: u32,
    pub(crate) timeouts: u32,
    pub(crate) http_failures: u32,
    pub(crate) unhealthy_statuses: StatusSet,
    pub(crate) healthy_statuses: StatusSet,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    pub(crate) max_ejected_percent: u8,
}

impl Default for PassiveHealth {
    /// 5 connection failures, 5 timeouts or 5 responses with 500, 502, 503 or 504 in a row
    /// eject for 30 s, doubling up to 300 s (Envoy's times), at most half of the endpoints at
    /// once; 2xx and 3xx responses reset the counts.
    fn default() -> Self {
        Self {
            tcp_failures: 5,
            timeouts: 5,
            http_failures: 5,
            unhealthy_statuses: StatusSet::new([500, 502, 503, 504]),
            healthy_statuses: StatusSet::new(200..400),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

impl PassiveHealth {
    /// Connection failures (refused, reset, closed early) in a row that eject; 0 = never.
    pub fn tcp_failures(mut self, n: u32) -> Self {
        self.tcp_failures = n;
        self
    }

    /// Timeouts in a row that eject; 0 = never.
    pub fn timeouts(mut self, n: u32) -> Self {
        self.timeouts = n;
        self
    }

    /// Responses with one of `statuses` in a row that eject; 0 = never.
    pub fn http_failures(mut self, n: u32, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.http_failures = n;
        self.unhealthy_statuses = StatusSet::new(statuses);
        self
    }

    /// The statuses that count as healthy and reset the failure counts (default 2xx, 3xx).
    pub fn healthy_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.healthy_statuses = StatusSet::new(statuses);
        self
    }

    /// First ejection lasts `base`; an ejection within `max` of the previous return lasts twice
    /// the previous one, up to `max`.
    pub fn ejection(mut self, base: Duration, max: Duration) -> Self {
        self.base_ejection = base;
        self.max_ejection = max.max(base);
        self
    }

    /// At most this share of the endpoints (rounded down, but always at least one) is ejected
    /// at once; further endpoints that cross a threshold stay in.
    pub fn max_ejected_percent(mut self, percent: u8) -> Self {
        self.max_ejected_percent = percent.min(100);
        self
    }

    /// How many of `n` endpoints may be ejected at once.
    pub(crate) fn max_ejected(&self, n: usize) -> usize {
        (n * usize::from(self.max_ejected_percent) / 100).max(1)
    }

    /// What a response, or a failure to get one, says about the endpoint.
    pub(crate) fn classify(&self, status: Option<StatusCode>, failure: Failure) -> Observed {
        match (failure, status) {
            (Failure::Connection, _) => Observed::TcpFailure,
            (Failure::Timeout, _) => Observed::Timeout,
            (Failure::None, Some(s)) if self.unhealthy_statuses.contains(s) => {
                Observed::HttpFailure
            }
            (Failure::None, Some(s)) if self.healthy_statuses.contains(s) => Observed::Success,
            (Failure::None, _) => Observed::Neutral,
        }
    }
}

/// Whether the exchange failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    None,
    Connection,
    Timeout,
}

/// One observation of live traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    Success,
    TcpFailure,
    Timeout,
    HttpFailure,
    /// Neither healthy nor unhealthy (a 404, say): counts nothing.
    Neutral,
}

/// Passive health of one endpoint, as a pure state machine.
#[derive(Debug, Default)]
pub(crate) struct Outlier {
    tcp: u32,
    timeouts: u32,
    http: u32,
    /// Ejections in a row (each within `max_ejection` of the previous return).
    ejections: u32,
    /// When the last ejection ends or ended.
    ejected_until: Option<Instant>,
}

impl Outlier {
    /// Counts an observation; `true` when a threshold is reached and the endpoint should be
    /// ejected (the caller decides, given the share already ejected).
    pub(crate) fn record(&mut self, policy: &PassiveHealth, observed: Observed) -> bool {
        let reached = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
        match observed {
            Observed::Success => {
                self.tcp = 0;
                self.timeouts = 0;
                self.http = 0;
                false
            }
            Observed::Neutral => false,
            Observed::TcpFailure => {
                self.tcp += 1;
                reached(self.tcp, policy.tcp_failures)
            }
            Observed::Timeout => {
                self.timeouts += 1;
                reached(self.timeouts, policy.timeouts)
            }
            Observed::HttpFailure => {
                self.http += 1;
                reached(self.http, policy.http_failures)
            }
        }
    }

    /// Ejects at `now`; returns when the ejection ends.
    pub(crate) fn eject(&mut self, policy: &PassiveHealth, now: Instant) -> Instant {
        let soon_after_return = self
            .ejected_until
            .is_some_and(|returned| now.saturating_duration_since(returned) < policy.max_ejection);
        self.ejections = if soon_after_return {
            self.ejections.saturating_add(1)
        } else {
            1
        };
        let factor = 1u32.checked_shl(self.ejections - 1).unwrap_or(u32::MAX);
        let duration = policy
            .base_ejection
            .checked_mul(factor)
            .unwrap_or(policy.max_ejection)
            .min(policy.max_ejection);
        self.reset_counts();
        let until = now + duration;
        self.ejected_until = Some(until);
        until
    }

    /// Forgets the failures counted so far (a spared ejection, an active check's success).
    pub(crate) fn reset_counts(&mut self) {
        self.tcp = 0;
        self.timeouts = 0;
        self.http = 0;
    }

    /// Ends an ejection early (an active health check found the endpoint healthy).
    pub(crate) fn end_ejection(&mut self, now: Instant) {
        self.reset_counts();
        if self.ejected_until.is_some_and(|until| until > now) {
            self.ejected_until = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn consecutive_failures_reach_the_threshold_and_a_success_resets() {
        let policy = PassiveHealth::default().tcp_failures(3);
        let mut o = Outlier::default();
        assert!(!o.record(&policy, Observed::TcpFailure));
        assert!(!o.record(&policy, Observed::TcpFailure));
        assert!(!o.record(&policy, Observed::Success));
        assert!(!o.record(&policy, Observed::TcpFailure));
        assert!(!o.record(&policy, Observed::Neutral));
        assert!(!o.record(&policy, Observed::TcpFailure));
        assert!(o.record(&policy, Observed::TcpFailure));
    }

    #[test]
    fn a_zero_threshold_never_ejects() {
        let policy = PassiveHealth::default().timeouts(0);
        let mut o = Outlier::default();
        assert!((0..100).all(|_| !o.record(&policy, Observed::Timeout)));
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_soon_after_a_return_double_up_to_the_cap() {
        let policy = PassiveHealth::default().ejection(30 * S, 100 * S);
        let mut o = Outlier::default();
        let t0 = Instant::now();
        assert_eq!(o.eject(&policy, t0), t0 + 30 * S);
        let t1 = t0 + 31 * S;
        assert_eq!(o.eject(&policy, t1), t1 + 60 * S);
        let t2 = t1 + 61 * S;
        assert_eq!(o.eject(&policy, t2), t2 + 100 * S);
        // Healthy for longer than the cap: back to the base time.
        let t3 = t2 + 100 * S + 101 * S;
        assert_eq!(o.eject(&policy, t3), t3 + 30 * S);
    }

    #[test]
    fn statuses_are_classified_by_the_lists() {
        let policy = PassiveHealth::default();
        let c = |code| policy.classify(Some(StatusCode::from_u16(code).unwrap()), Failure::None);
        assert_eq!(c(200), Observed::Success);
        assert_eq!(c(302), Observed::Success);
        assert_eq!(c(503), Observed::HttpFailure);
        assert_eq!(c(404), Observed::Neutral);
        assert_eq!(c(501), Observed::Neutral);
        assert_eq!(policy.classify(None, Failure::Timeout), Observed::Timeout);
    }

    #[test]
    fn the_ejected_share_is_capped_but_one_may_always_go() {
        let policy = PassiveHealth::default().max_ejected_percent(50);
        assert_eq!(policy.max_ejected(1), 1);
        assert_eq!(policy.max_ejected(3), 1);
        assert_eq!(policy.max_ejected(4), 2);
        assert_eq!(
            PassiveHealth::default()
                .max_ejected_percent(10)
                .max_ejected(3),
            1
        );
    }
}
