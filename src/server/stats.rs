//! Connection counts, as nginx's `stub_status` reports them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A server's connection counts: accepted since start and open now; and the requests begun. Handed to
/// [`Server::connection_stats`](super::Server::connection_stats); read by the metrics at
/// scrape time (`kong_nginx_connections_total{state}`).
///
/// The connection counts are touched when a connection opens and closes; the request count
/// per request, in a shard of the calling thread's own (no cache line shared between worker
/// threads), summed when read. Cheap to clone; clones share the counts.
///
/// ```
/// use tower_gateway::server::ConnectionStats;
///
/// let stats = ConnectionStats::new();
/// assert_eq!((stats.accepted(), stats.active()), (0, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    closed: AtomicU64,
    requests: Sharded,
    refused: AtomicU64,
}

/// Shards per counter: more than the worker threads of any likely machine's runtime; threads
/// beyond share shards (still correct, a little contended).
const SHARDS: usize = 32;

/// A counter split into per-thread shards, each on its own cache line.
#[derive(Debug, Default)]
struct Sharded([Padded; SHARDS]);

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Sharded {
    fn add(&self, n: u64) {
        self.0[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The calling thread's shard.
fn shard() -> usize {
    crate::shard::thread_index() % SHARDS
}

/// Counts one open connection until dropped (also when its task is aborted).
#[derive(Debug)]
pub(crate) struct OpenGuard(ConnectionStats);

impl ConnectionStats {
    /// Counts starting at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections accepted since the server started.
    pub fn accepted(&self) -> u64 {
        self.0.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        // Read `closed` first: a connection closing between the two reads cannot make the
        // difference negative.
        let closed = self.0.closed.load(Ordering::Relaxed);
        self.accepted().saturating_sub(closed)
    }

    /// Requests begun since the server started (nginx's `requests`, Kong's
    /// `total_requests`).
    pub fn requests(&self) -> u64 {
        self.0.requests.sum()
    }

    /// Connections closed at accept because a connection cap was reached.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn count_refused(&self) {
        self.0.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_request(&self) {
        self.0.requests.add(1);
    }

    pub(crate) fn open(&self) -> OpenGuard {
        self.0.accepted.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_counted_on_many_threads_add_up() {
        let stats = ConnectionStats::new();
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        stats.count_request();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(stats.requests(), 40_000);
    }
}
