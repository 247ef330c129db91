//! Per-key state in memory: sharded, bounded, evicting only what cannot loosen a limit.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use super::Period;
use super::decision::{Decision, Nanos};
use super::limit::{Limit, LimitState};

const SHARDS: usize = 16;
/// The pause between sweeps of a full shard that found nothing idle: one second.
const SWEEP_PAUSE: Nanos = 1_000_000_000;

/// What a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address.
    Ip(IpAddr),
    /// Any text: a header value, a consumer, a credential.
    Text(Box<str>),
    /// One counter for everybody.
    Global,
}

/// The outcome of asking the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One decision per limit, in order. The request passes only if all admit it; then, and
    /// only then, every limit counted it.
    pub decisions: Vec<Decision>,
    /// For fixed-window limits: `(period, limit, remaining)` after this request.
    pub periods: Vec<(Period, u64, u64)>,
    /// The key could not be tracked: the store is full of keys that are still limited.
    pub full: bool,
}

/// Per-key limit state in memory, for one set of limits.
///
/// Memory is bounded by `max_keys`. A key's state is forgotten only when it decides exactly as
/// a fresh key would (its bucket is full again, its windows are over), so eviction never makes
/// a limit looser. When the store is full of keys that are all still limited, a new key is
/// refused (fail closed) rather than let through uncounted or counted by forgetting another.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    max_per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    keys: HashMap<Key, Vec<LimitState>>,
    /// After a sweep that freed nothing, no other sweep before this time.
    no_sweep_before: Nanos,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` keys: the bound applies per shard (16 of
    /// them), so a shard that fills first refuses new keys a little before the total is
    /// reached.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).keys.len())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides a request under `key` against every limit at `now`, atomically: concurrent
    /// requests on one key are decided one after the other.
    pub fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Outcome {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);

        // Check every limit first; the states change only if all of them admit.
        let known = shard.keys.get(key).map(Vec::as_slice);
        let decisions = check_all(limits, known, now);
        if !decisions.iter().all(Decision::admitted) {
            return refused(limits, known, decisions, now);
        }

        if !shard.keys.contains_key(key) {
            if !self.make_room(&mut shard, limits, now) {
                tracing::warn!("rate-limit store full of active keys; refusing a new key");
                let fresh: Vec<LimitState> = limits.iter().map(Limit::fresh).collect();
                return Outcome {
                    periods: periods(limits, &fresh, now),
                    decisions,
                    full: true,
                };
            }
            shard
                .keys
                .insert(key.clone(), limits.iter().map(Limit::fresh).collect());
        }
        let Some(states) = shard.keys.get_mut(key) else {
            // Inserted just above under the same lock.
            return Outcome {
                decisions,
                periods: Vec::new(),
                full: true,
            };
        };
        commit_all(limits, states, now);
        Outcome {
            periods: periods(limits, states, now),
            decisions,
            full: false,
        }
    }

    /// Frees a slot in a full shard by forgetting idle keys; false if none is idle.
    fn make_room(&self, shard: &mut Shard, limits: &[Limit], now: Nanos) -> bool {
        if shard.keys.len() < self.max_per_shard {
            return true;
        }
        if now < shard.no_sweep_before {
            return false;
        }
        shard.keys.retain(|_, states| {
            !limits
                .iter()
                .zip(states.iter())
                .all(|(limit, state)| limit.is_idle(state, now))
        });
        if shard.keys.len() < self.max_per_shard {
            true
        } else {
            // Everything is still limited; do not pay a full sweep for every new key.
            shard.no_sweep_before = now.saturating_add(SWEEP_PAUSE);
            false
        }
    }
}

/// What every limit decides for a key in state `known` (a key never seen when `None`).
pub(crate) fn check_all(
    limits: &[Limit],
    known: Option<&[LimitState]>,
    now: Nanos,
) -> Vec<Decision> {
    limits
        .iter()
        .enumerate()
        .map(|(i, limit)| match known.and_then(|states| states.get(i)) {
            Some(state) => limit.check(state, now),
            None => limit.check(&limit.fresh(), now),
        })
        .collect()
}

/// Counts an admitted request in every limit's state.
pub(crate) fn commit_all(limits: &[Limit], states: &mut Vec<LimitState>, now: Nanos) {
    states.resize_with(limits.len(), || LimitState::TokenBucket(Default::default()));
    for (limit, state) in limits.iter().zip(states.iter_mut()) {
        limit.commit(state, now);
    }
}

/// The outcome of a refused request: nothing counted.
pub(crate) fn refused(
    limits: &[Limit],
    known: Option<&[LimitState]>,
    decisions: Vec<Decision>,
    now: Nanos,
) -> Outcome {
    let periods = match known {
        Some(states) => periods(limits, states, now),
        None => periods(
            limits,
            &limits.iter().map(Limit::fresh).collect::<Vec<_>>(),
            now,
        ),
    };
    Outcome {
        periods,
        decisions,
        full: false,
    }
}

pub(crate) fn periods(
    limits: &[Limit],
    states: &[LimitState],
    now: Nanos,
) -> Vec<(Period, u64, u64)> {
    let mut out = Vec::new();
    for (limit, state) in limits.iter().zip(states) {
        if let (Limit::FixedWindow(window), LimitState::FixedWindow(state)) = (limit, state) {
            out.extend(window.remaining(state, now));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{FixedWindow, Rate, TokenBucket};

    const SEC: u64 = 1_000_000_000;

    fn key(i: u32) -> Key {
        Key::Text(i.to_string().into())
    }

    #[test]
    fn a_sliding_log_admits_exactly_its_limit_in_any_window_and_is_forgotten_when_idle() {
        use std::time::Duration;
        let limits = [Limit::SlidingLog(crate::ratelimit::SlidingLog::new(
            3,
            Duration::from_secs(10),
        ))];
        let store = MemoryStore::new(16);
        let s = 1_000_000_000u64;
        let admitted = |t: u64| store.decide(&Key::Global, &limits, t).decisions[0].admitted();
        assert!(admitted(0));
        assert!(admitted(4 * s));
        assert!(admitted(8 * s));
        // A refusal is not logged, so the window moves on from the first request.
        assert!(!admitted(9 * s));
        assert!(admitted(10 * s));
        assert!(!admitted(13 * s));
        assert!(admitted(14 * s));
        // Idle for a whole window: forgotten to make room.
        let limits_one = [Limit::SlidingLog(crate::ratelimit::SlidingLog::new(
            1,
            Duration::from_secs(1),
        ))];
        let small = MemoryStore::new(1);
        for i in 0..64u32 {
            let key = Key::Text(format!("k{i}").into());
            let outcome = small.decide(&key, &limits_one, u64::from(i) * 2 * s);
            assert!(outcome.decisions[0].admitted() && !outcome.full, "key {i}");
        }
        assert!(small.len() <= 16);
    }

    #[test]
    fn several_limits_are_all_or_nothing() {
        let limits = [
            Limit::FixedWindow(FixedWindow::new([(Period::Minute, 5)])),
            Limit::TokenBucket(TokenBucket::new(Rate::per_second(1), 2)),
        ];
        let store = MemoryStore::new(100);
        let t = 1_000 * 60 * SEC;
        let admitted: Vec<bool> = (0..4)
            .map(|_| {
                store
                    .decide(&Key::Global, &limits, t)
                    .decisions
                    .iter()
                    .all(Decision::admitted)
            })
            .collect();
        assert_eq!(admitted, [true, true, false, false]);
        // The two rejections took nothing from the minute: three are left, and the bucket's
        // pace (one per second) decides.
        let outcome = store.decide(&Key::Global, &limits, t + SEC);
        assert!(outcome.decisions.iter().all(Decision::admitted));
        assert_eq!(outcome.periods, [(Period::Minute, 5, 2)]);
    }

    #[test]
    fn memory_stays_bounded_and_active_keys_keep_their_state() {
        let limits = [Limit::FixedWindow(FixedWindow::new([(Period::Minute, 1)]))];
        let store = MemoryStore::new(160);
        let t = 1_000 * 60 * SEC;
        let mut refused = 0;
        for i in 0..10_000 {
            if store.decide(&key(i), &limits, t).full {
                refused += 1;
            }
        }
        assert!(store.len() <= 160, "{} keys kept", store.len());
        assert!(refused > 0);
        // Key 0 is still limited in this minute: it was not forgotten.
        assert!(!store.decide(&key(0), &limits, t).decisions[0].admitted());
        // Next minute every key is idle again and new keys find room.
        assert!(!store.decide(&key(20_000), &limits, t + 60 * SEC).full);
    }
}

/// Where per-key limit state lives: in this process ([`MemoryStore`]) or shared by several
/// gateways (Redis, in the cluster release). A store decides a request against every limit
/// atomically: it counts the request in all of them, or, when any refuses, in none.
///
/// A store answers at once ([`Decided::Ready`], no allocation: the in-memory store) or later
/// ([`Decided::Pending`], a network round trip); the layer awaits it either way.
///
/// ```
/// use tower_gateway::ratelimit::{Decided, Key, Limit, MemoryStore, Nanos, Store};
///
/// /// Every decision from the in-memory store, logged.
/// #[derive(Debug)]
/// struct Logged(MemoryStore);
///
/// impl Store for Logged {
///     fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided {
///         let outcome = self.0.decide(key, limits, now);
///         println!("{key:?}: {:?}", outcome.decisions);
///         Decided::Ready(Ok(outcome))
///     }
/// }
/// ```
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Decides a request under `key` against `limits` at `now`.
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided;
}

/// A store's answer: now, or once its round trip completes.
pub enum Decided {
    /// The outcome, known at once.
    Ready(Result<Outcome, StoreError>),
    /// The outcome, known later.
    Pending(
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, StoreError>> + Send>>,
    ),
}

impl std::fmt::Debug for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decided::Ready(result) => f.debug_tuple("Ready").field(result).finish(),
            Decided::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// A store could not decide (its server is unreachable, say). With `fault_tolerant` (the
/// default, as Kong) the request passes uncounted; otherwise it is answered 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer.
    #[error("the rate-limit store is unavailable: {0}")]
    Unavailable(String),
}

impl Store for MemoryStore {
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided {
        Decided::Ready(Ok(MemoryStore::decide(self, key, limits, now)))
    }
}
