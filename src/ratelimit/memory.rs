//! Per-key state in memory: sharded, bounded, evicting only what cannot loosen a limit.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};

use hashbrown::HashTable;

use super::decision::{Decision, Nanos};
use super::limit::{Limit, LimitState};
use super::overflow::Overflow;
use super::store::{Decided, Key, Outcome, Store, check_all, commit_all, periods, refused};

/// 16 shards: the bits of a key's hash below hashbrown's 7-bit tag pick one.
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
/// The pause between sweeps of a full shard that found nothing idle: one second.
const SWEEP_PAUSE: Nanos = 1_000_000_000;

/// Per-key limit state in memory, for one set of limits.
///
/// Memory is bounded by `max_keys` exact states plus an overflow of `2 × max_keys` cells. A key's
/// state is forgotten only when it decides exactly as a fresh key would (its bucket is full
/// again, its windows are over), so eviction never makes a limit looser. When the store is
/// full of keys that are all still limited (a flood of distinct keys), a new key is counted in
/// the overflow: a count-min sketch of two rows of `max_keys` cells, each holding the
/// state of every request admitted through it, that admits a request only when both of the
/// key's cells do. It can over-count (a key sharing its cells with busy ones is refused
/// early), never under-count, so no key ever gets more than its limit, and new clients keep
/// being served while the flood's requests per window stay well under `max_keys × limit`.
/// A warning with the count is logged at most every 10 s while the overflow is in use.
///
/// ```
/// use tower_gateway::ratelimit::{Key, Limit, MemoryStore, Rate, TokenBucket};
///
/// // Shared by every layer given it (a store per set of limits is the usual choice).
/// let store = std::sync::Arc::new(MemoryStore::new(10_000));
/// let limits = [Limit::from(TokenBucket::new(Rate::per_second(1), 1))];
/// assert!(store.decide(&Key::Global, &limits, 0).decisions[0].admitted());
/// assert!(!store.decide(&Key::Global, &limits, 1).decisions[0].admitted());
/// assert_eq!(store.len(), 1);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    /// Hashes each key once: its shard, then its place in the shard's table (a randomly keyed
    /// SipHash, so that clients cannot aim their keys at one shard or one probe sequence).
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    max_per_shard: usize,
    overflow: Overflow,
}

#[derive(Debug, Default)]
struct Shard {
    keys: HashTable<(Key, Vec<LimitState>)>,
    /// The latest time a decision of this shard was made at: a request that read the clock
    /// before another but reached the lock after it is decided at that later time, so that
    /// time never runs backwards for a key (with a tight bucket, a few microseconds back would
    /// read as a burst over the limit).
    latest: Nanos,
    /// After a sweep that freed nothing, no other sweep before this time.
    no_sweep_before: Nanos,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` keys: the bound applies per shard (16 of
    /// them), so a shard that fills first refuses new keys a little before the total is
    /// reached.
    pub fn new(max_keys: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            overflow: Overflow::new(max_keys),
        }
    }

    /// How many cells of the overflow sketch hold state (at most `2 × max_keys`).
    pub fn overflow_len(&self) -> usize {
        self.overflow.cells_in_use()
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
        let hash = self.hasher.hash_one(key);
        let shard = ((hash << 7) >> (64 - SHARD_BITS)) as usize;
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = now.max(shard.latest);
        shard.latest = now;

        // Check every limit first; the states change only if all of them admit.
        if let Some((_, states)) = shard.keys.find_mut(hash, |(k, _)| k == key) {
            let decisions = check_all(limits, Some(states), now);
            if !decisions.iter().all(Decision::admitted) {
                return refused(limits, Some(states), decisions, now);
            }
            commit_all(limits, states, now);
            return Outcome {
                periods: periods(limits, states, now),
                decisions,
                full: false,
            };
        }
        let decisions = check_all(limits, None, now);
        if !decisions.iter().all(Decision::admitted) {
            return refused(limits, None, decisions, now);
        }
        // A key whose requests the overflow may hold stays there until they no longer count;
        // so does one the full store has no room for.
        if self.overflow.may_hold(key, limits, now) || !self.make_room(&mut shard, limits, now) {
            drop(shard);
            return self.overflow.decide(key, limits, now);
        }
        let mut states: Vec<LimitState> = limits.iter().map(Limit::fresh).collect();
        commit_all(limits, &mut states, now);
        let periods = periods(limits, &states, now);
        let rehash = |(k, _): &(Key, Vec<LimitState>)| self.hasher.hash_one(k);
        shard
            .keys
            .insert_unique(hash, (key.clone(), states), rehash);
        Outcome {
            periods,
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
        shard.keys.retain(|(_, states)| {
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

impl Store for MemoryStore {
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided {
        Decided::Ready(Ok(MemoryStore::decide(self, key, limits, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{FixedWindow, Period, Rate, TokenBucket};

    const SEC: u64 = 1_000_000_000;

    fn key(i: u32) -> Key {
        Key::Text(i.to_string().into())
    }

    #[test]
    fn a_request_that_read_the_clock_before_another_but_decides_after_it_is_not_refused() {
        // A bucket far above the load: 10^9 a second, burst 200 (200 ns of slack). Two
        // workers read the clock 5 µs apart and reach the store in the other order.
        let limits = [Limit::TokenBucket(TokenBucket::new(
            Rate::per_second(1_000_000_000),
            200,
        ))];
        let store = MemoryStore::new(16);
        let t = 100 * SEC;
        assert!(store.decide(&key(1), &limits, t + 5_000).decisions[0].admitted());
        assert!(
            store.decide(&key(1), &limits, t).decisions[0].admitted(),
            "an earlier reading of the clock, decided later, was refused"
        );
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
        for i in 0..10_000 {
            let outcome = store.decide(&key(i), &limits, t);
            assert!(!outcome.full);
        }
        assert!(store.len() <= 160, "{} keys kept", store.len());
        assert!(
            store.overflow_len() <= 320,
            "{} cells",
            store.overflow_len()
        );
        // Key 0 is still limited in this minute: it was not forgotten.
        assert!(!store.decide(&key(0), &limits, t).decisions[0].admitted());
        // Next minute every key is idle again and new keys find room.
        assert!(store.decide(&key(20_000), &limits, t + 60 * SEC).decisions[0].admitted());
    }

    /// The issue's flood: a million distinct keys within one window, against a store of the
    /// gateway's size (100 000 keys per route).
    #[test]
    fn a_flood_of_a_million_keys_neither_locks_out_new_clients_nor_loosens_a_limit() {
        const LIMIT: u64 = 60;
        let limits = [Limit::FixedWindow(FixedWindow::new([(
            Period::Minute,
            LIMIT,
        )]))];
        let store = MemoryStore::new(100_000);
        let t = 1_000 * 60 * SEC;
        let (mut sent, mut admitted) = (0u32, 0u32);
        let mut hostile_admitted = 0u64;
        for i in 0..1_000_000u32 {
            store.decide(
                &Key::Text(format!("flood-{i}").into()),
                &limits,
                t + u64::from(i),
            );
            // A new, well-behaved client every 1000 flood keys: 30 requests of its 60.
            if i % 1_000 == 999 {
                let client = Key::Text(format!("client-{i}").into());
                for _ in 0..30 {
                    sent += 1;
                    let outcome = store.decide(&client, &limits, t + u64::from(i));
                    admitted += u32::from(outcome.decisions[0].admitted());
                }
            }
            // One hostile key that asks far more than its limit, in the overflow too.
            if i % 10_000 == 9_999 {
                let outcome = store.decide(&Key::Text("greedy".into()), &limits, t + u64::from(i));
                hostile_admitted += u64::from(outcome.decisions[0].admitted());
            }
        }
        for _ in 0..200 {
            let outcome = store.decide(&Key::Text("greedy".into()), &limits, t + 1_000_000);
            hostile_admitted += u64::from(outcome.decisions[0].admitted());
        }
        assert!(
            hostile_admitted <= LIMIT,
            "a key got {hostile_admitted} of {LIMIT}"
        );
        let share = f64::from(admitted) / f64::from(sent);
        assert!(
            share >= 0.99,
            "well-behaved clients got {admitted} of {sent}"
        );
        assert!(store.len() <= 100_000 + 16);
        assert!(store.overflow_len() <= 200_000);
    }
}
