//! Where a [`MemoryStore`](super::MemoryStore) counts the keys it has no room for: a sketch
//! that can only over-count.
//!
//! A flood of distinct keys (a header the client chooses, addresses behind a trusted proxy)
//! fills the exact store with keys that are still limited. Refusing every new key from then on
//! locks out every new client; forgetting a limited key loosens its limit. The overflow does
//! neither: each key maps to one cell in each of two rows (by hashes keyed per process, so a
//! client cannot aim at another's cells), a cell holds the limit state of every request
//! admitted through it, and a request is admitted only if the cells of both rows admit it, then
//! counted in both. A cell's history contains its keys' histories, and a limit never admits
//! more after more requests, so the sketch never admits a request the key's own state would
//! refuse. The price is false refusals when the flood's admitted requests per cell approach
//! the limit: with `w` cells per row and `n` requests of a flood in one window, a cell carries
//! about `n / w` of them (a count-min sketch's error).
//!
//! Memory: `2 × w` cells, each the limits' state of one key, allocated on the first overflow.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::decision::{Decision, Nanos};
use super::limit::{Limit, LimitState};
use super::store::{Key, Outcome, check_all, commit_all, periods};

const ROWS: usize = 2;
/// At most one warning about the overflow per this many nanoseconds (10 s).
const WARN_EVERY: Nanos = 10_000_000_000;

/// The overflow of one store.
#[derive(Debug)]
pub(crate) struct Overflow {
    width: usize,
    sketch: OnceLock<Mutex<Sketch>>,
    /// Requests decided here since the last warning, and when the next may be written.
    unwarned: AtomicU64,
    next_warning: AtomicU64,
}

#[derive(Debug)]
struct Sketch {
    /// `ROWS` rows of `width` cells; `None` is a fresh state.
    cells: Vec<Option<Box<[LimitState]>>>,
    hashers: [RandomState; ROWS],
}

// === impl Overflow ===

impl Overflow {
    pub(crate) fn new(width: usize) -> Self {
        Self {
            width: width.max(1),
            sketch: OnceLock::new(),
            unwarned: AtomicU64::new(0),
            next_warning: AtomicU64::new(0),
        }
    }

    /// How many cells hold state (for tests and the memory bound).
    pub(crate) fn cells_in_use(&self) -> usize {
        self.sketch.get().map_or(0, |sketch| {
            let sketch = sketch.lock().unwrap_or_else(PoisonError::into_inner);
            sketch.cells.iter().filter(|c| c.is_some()).count()
        })
    }

    /// Whether requests of `key` may have been counted here and still bear on its limits: if
    /// so, the key must go on being decided here, not start afresh in the exact store.
    pub(crate) fn may_hold(&self, key: &Key, limits: &[Limit], now: Nanos) -> bool {
        let Some(sketch) = self.sketch.get() else {
            return false;
        };
        let sketch = sketch.lock().unwrap_or_else(PoisonError::into_inner);
        sketch.slots(key, self.width).iter().any(|&i| {
            sketch.cells[i]
                .as_deref()
                .is_some_and(|s| !idle(limits, s, now))
        })
    }

    /// Decides a request of `key`, whose state the exact store could not take.
    pub(crate) fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Outcome {
        self.warn(now);
        let width = self.width;
        let sketch = self.sketch.get_or_init(|| {
            Mutex::new(Sketch {
                cells: (0..ROWS * width).map(|_| None).collect(),
                hashers: std::array::from_fn(|_| RandomState::new()),
            })
        });
        let mut sketch = sketch.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = sketch.slots(key, width);
        // A cell whose every limit is idle decides as a fresh one: forget it.
        for &i in &slots {
            if sketch.cells[i]
                .as_deref()
                .is_some_and(|s| idle(limits, s, now))
            {
                sketch.cells[i] = None;
            }
        }
        let rows: [Vec<Decision>; ROWS] =
            slots.map(|i| check_all(limits, sketch.cells[i].as_deref(), now));
        if let Some(row) = rows.iter().position(|d| !d.iter().all(Decision::admitted)) {
            let fresh: Vec<LimitState> = limits.iter().map(Limit::fresh).collect();
            let states = sketch.cells[slots[row]].as_deref().unwrap_or(&fresh);
            return Outcome {
                periods: periods(limits, states, now),
                decisions: rows[row].clone(),
                full: false,
            };
        }
        let mut remaining: Vec<(super::Period, u64, u64)> = Vec::new();
        for &i in &slots {
            let mut states = sketch.cells[i]
                .take()
                .map_or_else(|| limits.iter().map(Limit::fresh).collect(), Vec::from);
            commit_all(limits, &mut states, now);
            // What the client may still send: the least any of its cells leaves.
            for (period, limit, left) in periods(limits, &states, now) {
                match remaining.iter_mut().find(|(p, ..)| *p == period) {
                    Some(entry) => entry.2 = entry.2.min(left),
                    None => remaining.push((period, limit, left)),
                }
            }
            sketch.cells[i] = Some(states.into_boxed_slice());
        }
        let [first, _] = rows;
        Outcome {
            decisions: first,
            periods: remaining,
            full: false,
        }
    }

    /// Counts a request decided here; writes one summary line per interval, not one per key.
    fn warn(&self, now: Nanos) {
        let unwarned = self.unwarned.fetch_add(1, Ordering::Relaxed) + 1;
        let next = self.next_warning.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_warning
                .compare_exchange(
                    next,
                    now.saturating_add(WARN_EVERY),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.unwarned.fetch_sub(unwarned, Ordering::Relaxed);
            tracing::warn!(
                requests = unwarned,
                "rate-limit store full of active keys; new keys are counted in its overflow sketch (never looser, may refuse early)"
            );
        }
    }
}

// === impl Sketch ===

impl Sketch {
    /// The key's cell in each row.
    fn slots(&self, key: &Key, width: usize) -> [usize; ROWS] {
        std::array::from_fn(|row| {
            let hash = self.hashers[row].hash_one(key);
            row * width + (hash % width as u64) as usize
        })
    }
}

fn idle(limits: &[Limit], states: &[LimitState], now: Nanos) -> bool {
    limits
        .iter()
        .zip(states)
        .all(|(limit, state)| limit.is_idle(state, now))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ratelimit::{FixedWindow, Period};

    const SEC: Nanos = 1_000_000_000;

    /// Log lines written while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_flood_writes_one_warning_per_interval_with_a_count() {
        let limits = [Limit::FixedWindow(FixedWindow::new([(Period::Hour, 10)]))];
        let overflow = Overflow::new(64);
        let t = 1_000 * 3_600 * SEC;
        let out = logged(|| {
            for i in 0..10_000u32 {
                let key = Key::Text(i.to_string().into());
                overflow.decide(&key, &limits, t + u64::from(i) * 1_000);
            }
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("requests=1"), "{out}");
        // Ten seconds later: one more line, counting everything since the first.
        let out = logged(|| {
            overflow.decide(&Key::Global, &limits, t + 10 * SEC + 1);
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("requests=10000"), "{out}");
    }
}
