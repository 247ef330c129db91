//! Consistent hashing on a ketama ring (nginx's `hash ... consistent`, Kong's
//! `consistent-hashing`): each endpoint owns points on a 64-bit circle in proportion to its
//! weight, and a request goes to the owner of the first point at or after its hash key.
//!
//! Adding or removing one of N endpoints only moves the keys between its points and its
//! neighbours', about 1/N of them. An unusable endpoint keeps its points; its keys go to the
//! next usable owner along the ring, and come back when it recovers.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::strategy::weight_units;
use super::{Candidates, Endpoint, Strategy};

/// Points per weight unit, the unit being the greatest common divisor of the weights (so
/// weights 100, 100, 50 are 2, 2 and 1 units). nginx uses 160; more points spread keys more
/// evenly (about ±3% at 1024), for 8 bytes each.
pub const POINTS_PER_UNIT: u32 = 1024;

/// The ring never exceeds this many points; weights that would need more (large coprime
/// weights) get proportionally fewer points each.
const MAX_RING: u64 = 1 << 21;

/// Ketama consistent hashing over the balancer's [`HashOn`](super::HashOn) key. Requests
/// without a key (no input and no fallback) are spread round-robin.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{ServiceExt, service_fn};
/// use tower_gateway::balance::{BalancedBody, Balancer, Chosen, Endpoint, ConsistentHash, HashOn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoint = |name: &'static str| {
///     service_fn(move |_req: Request<BalancedBody<String>>| async move {
///         Ok::<_, Infallible>(Response::new(name.to_owned()))
///     })
/// };
/// let balancer = Balancer::builder(ConsistentHash::new())
///     .hash_on(HashOn::Header(http::HeaderName::from_static("x-user")))
///     .endpoint(Endpoint::new("a"), endpoint("a"))
///     .endpoint(Endpoint::new("b"), endpoint("b"))
///     .endpoint(Endpoint::new("c"), endpoint("c"))
///     .build();
/// let served = |user: &'static str| {
///     let balancer = balancer.clone();
///     async move {
///         let req = Request::builder().header("x-user", user).body(String::new()).unwrap();
///         let res = balancer.oneshot(req).await.unwrap();
///         res.extensions().get::<Chosen>().unwrap().endpoint.to_string()
///     }
/// };
/// // One user always reaches the same endpoint.
/// let first = served("ann").await;
/// for _ in 0..5 {
///     assert_eq!(served("ann").await, first);
/// }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct ConsistentHash {
    /// `(point, endpoint index)`, sorted by point.
    ring: Box<[(u32, u32)]>,
    /// For requests without a key.
    next: AtomicUsize,
}

impl ConsistentHash {
    /// A consistent-hashing strategy.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ring for `endpoints`.
    fn ring(endpoints: &[Endpoint]) -> Self {
        let weights = weight_units(endpoints);
        let units: u64 = weights.iter().sum();
        let per_unit = u64::from(POINTS_PER_UNIT).min((MAX_RING / units.max(1)).max(1));
        let mut ring = Vec::with_capacity(usize::try_from(units * per_unit).unwrap_or(0));
        for (i, endpoint) in endpoints.iter().enumerate() {
            let base = hash64(endpoint.name().as_bytes());
            for p in 1..=weights[i] * per_unit {
                let point = mix(base ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                ring.push(((point >> 32) as u32, i as u32));
            }
        }
        ring.sort_unstable();
        Self {
            ring: ring.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }
}

/// 64-bit FNV-1a followed by murmur3's finalizer: stable across processes and versions (every
/// gateway instance maps a key to the same endpoint), well mixed.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// murmur3's 64-bit finalizer.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Strategy for ConsistentHash {
    fn build(&self, endpoints: &[Endpoint]) -> Box<dyn Strategy> {
        Box::new(Self::ring(endpoints))
    }

    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        let Some(key) = candidates.hash_key() else {
            let n = candidates.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            return (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| candidates.is_usable(i));
        };
        let key = (key >> 32) as u32;
        let start = self.ring.partition_point(|&(point, _)| point < key);
        let (after, before) = self.ring.split_at(start);
        before
            .iter()
            .chain(after)
            .map(|&(_, i)| i as usize)
            .find(|&i| candidates.is_usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategy::testing::{endpoints, tracked};
    use super::super::strategy::{Candidates, Tracked};
    use super::*;

    fn owner(ring: &dyn Strategy, t: &[Tracked], key: u64) -> String {
        let usable = |i: usize| t[i].endpoint.get_weight() > 0;
        let i = ring.pick(&Candidates::new(t, &usable, Some(key))).unwrap();
        t[i].endpoint.name().to_owned()
    }

    fn keys(n: usize) -> impl Iterator<Item = u64> {
        (0..n).map(|k| hash64(format!("client-{k}").as_bytes()))
    }

    fn names(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:8080"), 100)).collect()
    }

    fn build(list: &[(String, u32)]) -> (Box<dyn Strategy>, Vec<Tracked>) {
        let refs: Vec<(&str, u32)> = list.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        let t = tracked(&refs);
        (ConsistentHash::new().build(&endpoints(&t)), t)
    }

    #[test]
    fn the_same_key_always_reaches_the_same_endpoint() {
        let (ring, t) = build(&names(5));
        for key in keys(100) {
            assert_eq!(owner(&*ring, &t, key), owner(&*ring, &t, key));
        }
    }

    #[test]
    fn removing_one_of_ten_endpoints_moves_at_most_a_tenth_and_a_half() {
        let all = names(10);
        let (ring, t) = build(&all);
        let (smaller, t9) = build(&all[..9]);
        let moved = keys(10_000)
            .filter(|&k| owner(&*ring, &t, k) != owner(&*smaller, &t9, k))
            .count();
        // Only the removed endpoint's keys move: about 1/10.
        assert!(moved as f64 / 10_000.0 <= 0.15, "moved {moved}");
        let removed = keys(10_000)
            .filter(|&k| owner(&*ring, &t, k) == all[9].0)
            .count();
        assert_eq!(moved, removed);
    }

    #[test]
    fn adding_an_eleventh_endpoint_moves_at_most_a_tenth_and_a_half() {
        let all = names(11);
        let (ring, t) = build(&all[..10]);
        let (bigger, t11) = build(&all);
        let moved = keys(10_000)
            .filter(|&k| owner(&*ring, &t, k) != owner(&*bigger, &t11, k))
            .count();
        assert!(moved as f64 / 10_000.0 <= 0.15, "moved {moved}");
    }

    #[test]
    fn load_follows_the_weights_within_ten_percent() {
        let list: Vec<(String, u32)> = (0..6)
            .map(|i| (format!("10.0.1.{i}:80"), if i < 3 { 200 } else { 100 }))
            .collect();
        let (ring, t) = build(&list);
        let mut counts = std::collections::HashMap::new();
        for key in keys(100_000) {
            *counts.entry(owner(&*ring, &t, key)).or_insert(0u32) += 1;
        }
        for (name, weight) in &list {
            let expected = 100_000.0 * f64::from(*weight) / 900.0;
            let got = f64::from(counts[name]);
            assert!(
                (got - expected).abs() <= 0.10 * expected,
                "{name}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn an_unusable_endpoint_s_keys_go_to_the_next_usable_and_come_back() {
        let (ring, t) = build(&names(4));
        let victim = owner(&*ring, &t, 42);
        let usable = |i: usize| t[i].endpoint.name() != victim;
        let i = ring.pick(&Candidates::new(&t, &usable, Some(42))).unwrap();
        assert_ne!(t[i].endpoint.name(), victim);
        // Other keys keep their owner.
        for key in keys(1000) {
            let before = owner(&*ring, &t, key);
            if before != victim {
                let i = ring.pick(&Candidates::new(&t, &usable, Some(key))).unwrap();
                assert_eq!(t[i].endpoint.name(), before);
            }
        }
        assert_eq!(owner(&*ring, &t, 42), victim);
    }

    #[test]
    fn points_are_per_weight_unit() {
        let equal = ConsistentHash::ring(&[Endpoint::new("a:1"), Endpoint::new("b:1")]);
        assert_eq!(equal.ring.len(), 2 * 1024);
        let skewed = ConsistentHash::ring(&[
            Endpoint::new("a:1").weight(50),
            Endpoint::new("b:1").weight(150),
            Endpoint::new("c:1").weight(0),
        ]);
        let of = |i: u32| skewed.ring.iter().filter(|&&(_, e)| e == i).count();
        assert_eq!((of(0), of(1), of(2)), (1024, 3 * 1024, 0));
    }
}
