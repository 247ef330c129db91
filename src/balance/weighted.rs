//! nginx's smooth weighted round-robin (`ngx_http_upstream_get_peer`).
//!
//! Every pick adds each usable endpoint's weight to its current value, takes the endpoint with
//! the largest current value and subtracts the total weight from it. For weights 5, 1, 1 the
//! sequence is `a a b a c a a`: heavy endpoints are spread out instead of served in bursts.
//!
//! The sequence repeats after `total weight / gcd` picks when every endpoint is usable, so it
//! is computed once per membership change and walked with an atomic cursor: picks are
//! lock-free. While some endpoint is unusable (unhealthy, or already tried for the request),
//! its turns are given by nginx's loop itself, run under a lock over the usable endpoints, so
//! the usable ones still share traffic by weight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::strategy::weight_units;
use super::{Candidates, Endpoint, Strategy};

/// Longest precomputed schedule; longer cycles (large coprime weights) always use the locked
/// loop.
const MAX_SCHEDULE: u64 = 1 << 16;

/// nginx's smooth weighted round-robin; Kong's `round-robin` algorithm.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{ServiceExt, service_fn};
/// use tower_gateway::balance::{BalancedBody, Balancer, Chosen, Endpoint, WeightedRoundRobin};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoint = |name: &'static str| {
///     service_fn(move |_req: Request<BalancedBody<String>>| async move {
///         Ok::<_, Infallible>(Response::new(name.to_owned()))
///     })
/// };
/// // Weights 5, 1, 1: nginx's smooth order.
/// let balancer = Balancer::builder(WeightedRoundRobin::new())
///     .endpoint(Endpoint::new("a").weight(5), endpoint("a"))
///     .endpoint(Endpoint::new("b").weight(1), endpoint("b"))
///     .endpoint(Endpoint::new("c").weight(1), endpoint("c"))
///     .build();
/// let mut served = String::new();
/// for _ in 0..7 {
///     let res = balancer.clone().oneshot(Request::new(String::new())).await.unwrap();
///     served.push_str(&res.extensions().get::<Chosen>().unwrap().endpoint);
/// }
/// assert_eq!(served, "aabacaa");
/// # }
/// ```
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// One full cycle of picks when all endpoints are usable; empty if too long.
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
    /// nginx's `current_weight` per endpoint, for picks among a subset.
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    /// A smooth weighted round-robin strategy.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One step of nginx's loop over the endpoints for which `usable` holds.
fn smooth_step(
    current: &mut [i64],
    weight: impl Fn(usize) -> i64,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0;
    let mut best: Option<usize> = None;
    for i in 0..current.len() {
        let w = weight(i);
        if w <= 0 || !usable(i) {
            continue;
        }
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let best = best?;
    current[best] -= total;
    Some(best)
}

impl Strategy for WeightedRoundRobin {
    fn build(&self, endpoints: &[Endpoint]) -> Box<dyn Strategy> {
        let units = weight_units(endpoints);
        let period: u64 = units.iter().sum();
        let schedule = if period > 0 && period <= MAX_SCHEDULE {
            let mut current = vec![0; endpoints.len()];
            let scaled = |i: usize| units[i] as i64;
            (0..period)
                .filter_map(|_| smooth_step(&mut current, scaled, |_| true))
                .map(|i| i as u32)
                .collect()
        } else {
            Box::default()
        };
        Box::new(Self {
            schedule,
            cursor: AtomicUsize::new(0),
            current: Mutex::new(vec![0; endpoints.len()]),
        })
    }

    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        if !self.schedule.is_empty() {
            let turn = self.cursor.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
            let i = self.schedule[turn] as usize;
            if candidates.is_usable(i) {
                return Some(i);
            }
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.len() != candidates.len() {
            current.resize(candidates.len(), 0);
        }
        smooth_step(
            &mut current,
            |i| candidates.weight(i).into(),
            |i| candidates.is_usable(i),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategy::testing::{endpoints, sequence, tracked};
    use super::*;
    use crate::balance::strategy::Candidates;

    #[test]
    fn weights_5_1_1_give_nginx_sequence_repeating() {
        let t = tracked(&[("a", 5), ("b", 1), ("c", 1)]);
        let wrr = WeightedRoundRobin::new().build(&endpoints(&t));
        let cycle = ["a", "a", "b", "a", "c", "a", "a"];
        let expected: Vec<&str> = cycle.iter().chain(&cycle).chain(&cycle).copied().collect();
        assert_eq!(sequence(&*wrr, &t, 21), expected);
    }

    #[test]
    fn scaled_weights_give_the_same_sequence() {
        let t = tracked(&[("a", 500), ("b", 100), ("c", 100)]);
        let wrr = WeightedRoundRobin::new().build(&endpoints(&t));
        assert_eq!(sequence(&*wrr, &t, 7), ["a", "a", "b", "a", "c", "a", "a"]);
    }

    #[test]
    fn long_cycles_use_the_loop_with_the_same_result() {
        // Coprime weights whose cycle exceeds the schedule limit.
        let t = tracked(&[("a", 65_521), ("b", 65_519), ("c", 1)]);
        let wrr = WeightedRoundRobin::new().build(&endpoints(&t));
        let mut current = vec![0i64; 3];
        let weights = [65_521i64, 65_519, 1];
        let expected: Vec<String> = (0..50)
            .map(|_| {
                let i = smooth_step(&mut current, |i| weights[i], |_| true).unwrap();
                ["a", "b", "c"][i].to_owned()
            })
            .collect();
        assert_eq!(sequence(&*wrr, &t, 50), expected);
    }

    #[test]
    fn weight_zero_takes_no_traffic() {
        let t = tracked(&[("a", 2), ("b", 0), ("c", 1)]);
        let wrr = WeightedRoundRobin::new().build(&endpoints(&t));
        assert_eq!(sequence(&*wrr, &t, 6), ["a", "c", "a", "a", "c", "a"]);
    }

    #[test]
    fn an_unusable_endpoint_leaves_the_others_their_weights() {
        let t = tracked(&[("a", 5), ("b", 1), ("c", 1)]);
        let wrr = WeightedRoundRobin::new().build(&endpoints(&t));
        let usable = |i: usize| i != 0;
        let picks: Vec<usize> = (0..700)
            .map(|_| wrr.pick(&Candidates::new(&t, &usable, None)).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 350);
        assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 350);
    }
}
