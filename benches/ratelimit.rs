//! Rate-limit decision cost per algorithm (one key; one hot key from 2 threads; 100 000 keys)
//! and the store's memory per key at 1 000 000 keys; and the same decisions over a `DashMap`
//! of key states (the design card's map crate) next to `MemoryStore`'s own shards.
//!
//! `cargo bench --bench ratelimit`

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use tower_gateway::ratelimit::{
    Decision, FixedWindow, Key, LeakyBucket, Limit, LimitState, MemoryStore, Nanos, Period, Rate,
    SlidingWindow, TokenBucket, Verdict,
};

/// Counts live heap bytes, to measure memory per key.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same pointer and layout, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn limits() -> Vec<(&'static str, Limit)> {
    vec![
        (
            "token-bucket",
            Limit::TokenBucket(TokenBucket::new(Rate::per_second(1_000_000_000), 1_000_000)),
        ),
        (
            "leaky-bucket",
            Limit::LeakyBucket(
                LeakyBucket::new(Rate::per_second(1_000_000_000), 1_000_000).nodelay(),
            ),
        ),
        (
            "fixed-window",
            Limit::FixedWindow(FixedWindow::new([
                (Period::Second, u64::MAX / 2),
                (Period::Minute, u64::MAX / 2),
            ])),
        ),
        (
            "sliding-window",
            Limit::SlidingWindow(SlidingWindow::new(u64::MAX / 2, Duration::from_secs(60))),
        ),
    ]
}

fn ip(i: u32) -> Key {
    Key::Ip(IpAddr::V4(Ipv4Addr::from(i)))
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit");
    let start = 1_800_000_000u64 * 1_000_000_000;
    for (name, limit) in limits() {
        let limits = [limit];
        let store = MemoryStore::new(1_000_000);
        let mut now = start;
        group.bench_function(BenchmarkId::new("one-key", name), |b| {
            b.iter(|| {
                now += 1_000;
                store.decide(&Key::Global, &limits, now)
            })
        });
        group.bench_function(BenchmarkId::new("hot-key-2-threads", name), |b| {
            b.iter_custom(|iters| {
                let began = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2u64 {
                        let (store, limits) = (&store, &limits);
                        s.spawn(move || {
                            for i in 0..iters / 2 {
                                store.decide(&Key::Global, limits, start + (i * 2 + t) * 1_000);
                            }
                        });
                    }
                });
                began.elapsed()
            })
        });
        let store = MemoryStore::new(1_000_000);
        for i in 0..100_000 {
            store.decide(&ip(i), &limits, start);
        }
        let mut i = 0u32;
        group.bench_function(BenchmarkId::new("100k-keys", name), |b| {
            b.iter(|| {
                i = (i + 7919) % 100_000;
                store.decide(&ip(i), &limits, start + 1_000)
            })
        });
    }
    group.finish();
}

fn memory_per_key(_c: &mut Criterion) {
    for (name, limit) in limits() {
        let limits = [limit];
        let before = LIVE.load(Ordering::Relaxed);
        let store = MemoryStore::new(1_000_000);
        for i in 0..1_000_000 {
            store.decide(&ip(i), &limits, 1_800_000_000u64 * 1_000_000_000);
        }
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        eprintln!(
            "ratelimit/memory/{name}: {} keys, {:.0} bytes per key",
            store.len(),
            bytes as f64 / store.len() as f64
        );
    }
}

/// The same decision as `MemoryStore::decide` (every limit checked, all committed only when all
/// admit) over a `DashMap`, without a bound on its keys: what a store built on dashmap would
/// cost before the eviction and overflow `MemoryStore` needs to stay bounded.
#[derive(Default)]
struct DashStore(DashMap<Key, Vec<LimitState>>);

impl DashStore {
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Vec<Decision> {
        let mut states = self
            .0
            .entry(key.clone())
            .or_insert_with(|| limits.iter().map(Limit::fresh).collect());
        let decisions: Vec<Decision> = limits
            .iter()
            .zip(states.iter())
            .map(|(limit, state)| limit.check(state, now))
            .collect();
        if decisions.iter().all(|d| d.verdict == Verdict::Allow) {
            for (limit, state) in limits.iter().zip(states.iter_mut()) {
                limit.commit(state, now);
            }
        }
        decisions
    }
}

fn maps(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit-map");
    let start = 1_800_000_000u64 * 1_000_000_000;
    let limits = [limits().swap_remove(0).1];
    let memory = MemoryStore::new(1_000_000);
    let dash = DashStore::default();
    let mut now = start;
    group.bench_function(BenchmarkId::new("one-key", "memory-store"), |b| {
        b.iter(|| {
            now += 1_000;
            memory.decide(&Key::Global, &limits, now)
        })
    });
    group.bench_function(BenchmarkId::new("one-key", "dashmap"), |b| {
        b.iter(|| {
            now += 1_000;
            dash.decide(&Key::Global, &limits, now)
        })
    });
    let two_threads = |decide: &(dyn Fn(Nanos) + Sync), iters: u64| {
        let began = Instant::now();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                s.spawn(move || {
                    for i in 0..iters / 2 {
                        decide(start + (i * 2 + t) * 1_000);
                    }
                });
            }
        });
        began.elapsed()
    };
    group.bench_function(BenchmarkId::new("hot-key-2-threads", "memory-store"), |b| {
        let decide = |now| drop(memory.decide(&Key::Global, &limits, now));
        b.iter_custom(|iters| two_threads(&decide, iters))
    });
    group.bench_function(BenchmarkId::new("hot-key-2-threads", "dashmap"), |b| {
        let decide = |now| drop(dash.decide(&Key::Global, &limits, now));
        b.iter_custom(|iters| two_threads(&decide, iters))
    });
    for i in 0..100_000 {
        memory.decide(&ip(i), &limits, start);
        dash.decide(&ip(i), &limits, start);
    }
    let mut i = 0u32;
    group.bench_function(BenchmarkId::new("100k-keys", "memory-store"), |b| {
        b.iter(|| {
            i = (i + 7919) % 100_000;
            memory.decide(&ip(i), &limits, start + 1_000)
        })
    });
    group.bench_function(BenchmarkId::new("100k-keys", "dashmap"), |b| {
        b.iter(|| {
            i = (i + 7919) % 100_000;
            dash.decide(&ip(i), &limits, start + 1_000)
        })
    });
    group.finish();
    let before = LIVE.load(Ordering::Relaxed);
    let dash = DashStore::default();
    for i in 0..1_000_000 {
        dash.decide(&ip(i), &limits, start);
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    eprintln!(
        "ratelimit-map/memory/dashmap: {} keys, {:.0} bytes per key",
        dash.0.len(),
        bytes as f64 / dash.0.len() as f64
    );
}

criterion_group!(benches, decisions, memory_per_key, maps);
criterion_main!(benches);
