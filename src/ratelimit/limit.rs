//! One configured limit: any of the algorithms, behind one type, with its per-key state.

use std::time::Duration;

use super::decision::{Decision, Nanos};
use super::{
    FixedWindow, FixedWindowState, LeakyBucket, LeakyBucketState, Period, SlidingLog,
    SlidingLogState, SlidingWindow, SlidingWindowState, TokenBucket, TokenBucketState,
};

/// A limit the [`RateLimitLayer`](super::RateLimitLayer) enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// A [`TokenBucket`].
    TokenBucket(TokenBucket),
    /// An nginx [`LeakyBucket`]; its delays are served by waiting on a timer.
    LeakyBucket(LeakyBucket),
    /// Kong's [`FixedWindow`]s.
    FixedWindow(FixedWindow),
    /// A weighted [`SlidingWindow`] counter.
    SlidingWindow(SlidingWindow),
    /// The exact [`SlidingLog`]: a key keeps up to `limit` timestamps.
    SlidingLog(SlidingLog),
}

macro_rules! limit_from {
    ($($algorithm:ident),*) => {$(
        impl From<$algorithm> for Limit {
            fn from(algorithm: $algorithm) -> Self {
                Limit::$algorithm(algorithm)
            }
        }
    )*};
}

// `RateLimitBuilder::limit(TokenBucket::new(..))` without naming the variant.
limit_from!(
    TokenBucket,
    LeakyBucket,
    FixedWindow,
    SlidingWindow,
    SlidingLog
);

/// The per-key state of one [`Limit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitState {
    /// State of a [`TokenBucket`].
    TokenBucket(TokenBucketState),
    /// State of a [`LeakyBucket`].
    LeakyBucket(LeakyBucketState),
    /// State of a [`FixedWindow`].
    FixedWindow(FixedWindowState),
    /// State of a [`SlidingWindow`].
    SlidingWindow(SlidingWindowState),
    /// State of a [`SlidingLog`].
    SlidingLog(SlidingLogState),
}

impl Limit {
    /// The state of a key never seen.
    pub fn fresh(&self) -> LimitState {
        match self {
            Self::TokenBucket(_) => LimitState::TokenBucket(Default::default()),
            Self::LeakyBucket(_) => LimitState::LeakyBucket(None),
            Self::FixedWindow(_) => LimitState::FixedWindow(Default::default()),
            Self::SlidingWindow(_) => LimitState::SlidingWindow(Default::default()),
            Self::SlidingLog(_) => LimitState::SlidingLog(Default::default()),
        }
    }

    /// What admitting a request at `now` would give, without changing `state`.
    pub fn check(&self, state: &LimitState, now: Nanos) -> Decision {
        match (self, state) {
            (Self::SlidingLog(a), LimitState::SlidingLog(log)) => a.check(log, now),
            (Self::SlidingLog(a), _) => a.check(&SlidingLogState::new(), now),
            _ => self.decide(state, now).0,
        }
    }

    /// Records a request admitted at `now` (after every limit's [`check`](Self::check)
    /// admitted it).
    pub fn commit(&self, state: &mut LimitState, now: Nanos) {
        match (self, &mut *state) {
            (Self::SlidingLog(a), LimitState::SlidingLog(log)) => a.commit(log, now),
            (Self::SlidingLog(a), other) => {
                let mut log = SlidingLogState::new();
                a.commit(&mut log, now);
                *other = LimitState::SlidingLog(log);
            }
            _ => *state = self.decide(state, now).1,
        }
    }

    /// Decides at `now`; the next state is to be stored only if every limit on the request
    /// admits it. A state of another algorithm counts as fresh.
    pub fn decide(&self, state: &LimitState, now: Nanos) -> (Decision, LimitState) {
        match self {
            Self::TokenBucket(a) => {
                let s = match state {
                    LimitState::TokenBucket(s) => *s,
                    _ => TokenBucketState::default(),
                };
                let (d, next) = a.decide(&s, now);
                (d, LimitState::TokenBucket(next))
            }
            Self::LeakyBucket(a) => {
                let s = match state {
                    LimitState::LeakyBucket(s) => *s,
                    _ => None,
                };
                let (d, next) = a.decide(&s, now);
                (d, LimitState::LeakyBucket(next))
            }
            Self::FixedWindow(a) => {
                let s = match state {
                    LimitState::FixedWindow(s) => *s,
                    _ => FixedWindowState::default(),
                };
                let (d, next) = a.decide(&s, now);
                (d, LimitState::FixedWindow(next))
            }
            Self::SlidingWindow(a) => {
                let s = match state {
                    LimitState::SlidingWindow(s) => *s,
                    _ => SlidingWindowState::default(),
                };
                let (d, next) = a.decide(&s, now);
                (d, LimitState::SlidingWindow(next))
            }
            // Copies the log: stores use `check` and `commit` instead.
            Self::SlidingLog(a) => {
                let mut log = match state {
                    LimitState::SlidingLog(log) => log.clone(),
                    _ => SlidingLogState::new(),
                };
                let d = a.decide(&mut log, now);
                (d, LimitState::SlidingLog(log))
            }
        }
    }

    /// Whether `state` decides exactly as a fresh state would from `now` on, so forgetting it
    /// cannot loosen the limit.
    pub fn is_idle(&self, state: &LimitState, now: Nanos) -> bool {
        match state {
            LimitState::TokenBucket(s) => s.tat() <= now,
            LimitState::LeakyBucket(s) => match (self, s) {
                (_, None) => true,
                (Self::LeakyBucket(a), Some(s)) => a.drained_by(s, now),
                _ => true,
            },
            LimitState::FixedWindow(s) => match self {
                Self::FixedWindow(a) => a.expired(s, now),
                _ => true,
            },
            LimitState::SlidingWindow(s) => match self {
                Self::SlidingWindow(a) => a.expired(s, now),
                _ => true,
            },
            LimitState::SlidingLog(log) => match self {
                Self::SlidingLog(a) => a.expired(log, now),
                _ => true,
            },
        }
    }

    /// The IETF `RateLimit-Policy` items of this limit at `now`: `(name, quota, window in
    /// seconds)`; one per period for fixed windows (a month's window is the current month's
    /// length).
    pub fn policies(&self, now: Nanos) -> Vec<(String, u64, u64)> {
        match self {
            Self::TokenBucket(a) => {
                let (q, w) = a.quota_window();
                vec![("token-bucket".into(), q, w)]
            }
            Self::LeakyBucket(a) => {
                let (q, w) = a.quota_window();
                vec![("leaky-bucket".into(), q, w)]
            }
            Self::SlidingWindow(a) => {
                let (q, w) = a.quota_window();
                vec![("sliding-window".into(), q, w)]
            }
            Self::SlidingLog(a) => {
                let (q, w) = a.quota_window();
                vec![("sliding-log".into(), q, w)]
            }
            Self::FixedWindow(a) => a
                .limits()
                .iter()
                .map(|&(period, limit)| {
                    let (start, end) = period.window(now / 1_000_000_000);
                    (period.name().to_ascii_lowercase(), limit, end - start)
                })
                .collect(),
        }
    }

    /// For fixed windows, the per-period limits (for Kong's `X-RateLimit-*-<Period>` headers).
    pub fn periods(&self) -> &[(Period, u64)] {
        match self {
            Self::FixedWindow(a) => a.limits(),
            _ => &[],
        }
    }
}

#[cfg(feature = "redis")]
impl LimitState {
    /// A compact text form, for stores across the network: a letter for the algorithm, then
    /// numbers (`t 1700000000000000000`).
    pub(crate) fn encode(&self) -> String {
        let join = |numbers: &[String]| numbers.join(" ");
        match self {
            Self::TokenBucket(s) => format!("t {}", s.tat()),
            Self::LeakyBucket(None) => "l".into(),
            Self::LeakyBucket(Some(s)) => {
                let (excess, last) = s.parts();
                format!("l {excess} {last}")
            }
            Self::FixedWindow(s) => {
                let numbers: Vec<String> = s
                    .windows()
                    .iter()
                    .flat_map(|(window, count)| [window.to_string(), count.to_string()])
                    .collect();
                format!("f {}", join(&numbers))
            }
            Self::SlidingWindow(s) => {
                let (index, current, previous) = s.parts();
                format!("s {index} {current} {previous}")
            }
            Self::SlidingLog(log) => {
                let numbers: Vec<String> = log.iter().map(ToString::to_string).collect();
                format!("g {}", join(&numbers)).trim_end().to_owned()
            }
        }
    }

    /// The state [`encode`](Self::encode) wrote, or `None` for text it did not write.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let kind = words.next()?;
        let numbers: Vec<u128> = words
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        let n = |i: usize| numbers.get(i).and_then(|v| u64::try_from(*v).ok());
        Some(match (kind, numbers.len()) {
            ("t", 1) => Self::TokenBucket(TokenBucketState::from_tat(n(0)?)),
            ("l", 0) => Self::LeakyBucket(None),
            ("l", 2) => Self::LeakyBucket(Some(super::leaky_bucket::LeakyState::from_parts(
                numbers[0],
                n(1)?,
            ))),
            ("f", 12) => {
                let mut windows = [(0, 0); 6];
                for (i, slot) in windows.iter_mut().enumerate() {
                    *slot = (n(2 * i)?, n(2 * i + 1)?);
                }
                Self::FixedWindow(FixedWindowState::from_windows(windows))
            }
            ("s", 3) => Self::SlidingWindow(SlidingWindowState::from_parts(n(0)?, n(1)?, n(2)?)),
            ("g", _) => Self::SlidingLog(
                (0..numbers.len())
                    .map(n)
                    .collect::<Option<SlidingLogState>>()?,
            ),
            _ => return None,
        })
    }
}

/// The longest of `retry_after` among rejecting decisions.
pub(crate) fn longest_wait(decisions: &[Decision]) -> Duration {
    decisions
        .iter()
        .filter(|d| !d.admitted())
        .map(|d| d.retry_after)
        .max()
        .unwrap_or_default()
}
