//! Kong's `sync_rate`: fixed-window counts kept locally and synchronised with Redis
//! periodically, so that a decision costs no round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::decision::Nanos;
use super::store::Outcome;
use super::{FixedWindow, FixedWindowState, Period};

/// Windows tracked at most per store; past it, new keys are decided synchronously.
const MAX_WINDOWS: usize = 100_000;

/// One window's count: the cluster's as of the last synchronisation, and what this instance
/// admitted since.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    known: u64,
    pending: u64,
    /// When the window ends (nanoseconds since the epoch, by the deciding clock).
    end: Nanos,
    /// The time to live to give the Redis key, in milliseconds.
    ttl_ms: u64,
}

/// The locally kept windows of a store with `sync_rate`.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) every: Duration,
    counts: Mutex<HashMap<String, Count>>,
    started: std::sync::Once,
    /// The latest decision time seen: windows end by the deciding clock.
    latest: std::sync::atomic::AtomicU64,
}

/// One window as a decision sees it: its Redis key, period, start, end and time to live.
pub(crate) type Window = (String, Period, u64, Nanos, u64);

impl Batch {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            counts: Mutex::new(HashMap::new()),
            started: std::sync::Once::new(),
            latest: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Decides on the local counts and counts an admitted request locally; `None` when the
    /// key's windows cannot be tracked (the map is full).
    pub(crate) fn decide(
        &self,
        window: &FixedWindow,
        windows: &[Window],
        now: Nanos,
    ) -> Option<Outcome> {
        self.latest
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let new = windows
            .iter()
            .filter(|w| !counts.contains_key(&w.0))
            .count();
        if counts.len() + new > MAX_WINDOWS {
            return None;
        }
        let mut state = FixedWindowState::default();
        for (key, period, start, end, ttl_ms) in windows {
            let count = counts.entry(key.clone()).or_insert(Count {
                end: *end,
                ttl_ms: *ttl_ms,
                ..Count::default()
            });
            state = state.with_count(*period, *start, count.known + count.pending);
        }
        let (decision, next) = window.decide(&state, now);
        if decision.admitted() {
            for (key, ..) in windows {
                if let Some(count) = counts.get_mut(key) {
                    count.pending += 1;
                }
            }
        }
        let counted = if decision.admitted() { &next } else { &state };
        Some(Outcome {
            periods: window.remaining(counted, now),
            decisions: vec![decision],
            full: false,
        })
    }

    /// Starts the synchronisation task once (on the first decision, inside the runtime).
    pub(crate) fn start(self: &Arc<Self>, connection: redis::aio::ConnectionManager) {
        self.started.call_once(|| {
            tokio::spawn(sync(Arc::downgrade(self), connection));
        });
    }

    /// Sends what this instance counted and takes the cluster's counts; forgets windows that
    /// ended. A failed round trip keeps the pending counts for the next.
    async fn sync_once(
        &self,
        connection: &mut redis::aio::ConnectionManager,
        now: Nanos,
    ) -> Result<(), redis::RedisError> {
        let snapshot: Vec<(String, Count)> = {
            let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            counts.retain(|_, c| c.end > now || c.pending > 0);
            counts.iter().map(|(k, c)| (k.clone(), *c)).collect()
        };
        if snapshot.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, count) in &snapshot {
            pipe.cmd("INCRBY").arg(key).arg(count.pending);
            pipe.cmd("PEXPIRE").arg(key).arg(count.ttl_ms).ignore();
        }
        let totals: Vec<u64> = pipe.query_async(connection).await?;
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for ((key, sent), total) in snapshot.iter().zip(totals) {
            if let Some(count) = counts.get_mut(key) {
                count.pending -= sent.pending.min(count.pending);
                count.known = total;
            }
        }
        Ok(())
    }
}

async fn sync(batch: Weak<Batch>, mut connection: redis::aio::ConnectionManager) {
    loop {
        let every = match batch.upgrade() {
            Some(batch) => batch.every,
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(batch) = batch.upgrade() else {
            return;
        };
        let now = batch.latest.load(std::sync::atomic::Ordering::Relaxed);
        if let Err(err) = batch.sync_once(&mut connection, now).await {
            tracing::warn!(%err, "rate-limit counts not synchronised with redis; retrying");
        }
    }
}
