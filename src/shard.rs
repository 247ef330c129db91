//! Per-thread shards: each thread gets an index at its first use, so that state touched on
//! every request (counters, pools, log buffers) can be kept in a slot of the thread's own,
//! on a cache line no other worker writes.

use std::sync::atomic::{AtomicUsize, Ordering};

/// This thread's index, handed out in order of first use; `% shards` picks its shard.
/// Threads beyond the shard count share shards (still correct, a little contended).
pub(crate) fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}

/// How many shards a structure sharded by thread should have: two per core, so that the
/// workers of a thread-per-core server (and a runtime's other threads) rarely share one.
pub(crate) fn count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_mul(2)
        .clamp(2, 256)
}
