//! Plain round-robin: each usable endpoint in turn, weights ignored (but weight 0 takes no
//! traffic). One atomic increment per pick.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidates, Endpoint, Strategy};

/// Each endpoint in turn, lock-free. An unusable endpoint's turn goes to the next usable one.
///
/// ```
/// use tower_gateway::balance::{Balancer, RoundRobin};
/// # fn f<S: Clone + Send + Sync + 'static>(a: S, b: S) {
/// let balancer: Balancer<S> = Balancer::builder(RoundRobin::new())
///     .endpoint("10.0.0.1:80", a)
///     .endpoint("10.0.0.2:80", b)
///     .build();
/// # }
/// ```
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round-robin strategy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Strategy for RoundRobin {
    fn build(&self, _endpoints: &[Endpoint]) -> Box<dyn Strategy> {
        Box::new(Self::new())
    }

    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| candidates.is_usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategy::testing::{endpoints, sequence, tracked};
    use super::*;

    #[test]
    fn takes_each_endpoint_in_turn_ignoring_weights() {
        let t = tracked(&[("a", 5), ("b", 1), ("c", 1)]);
        let rr = RoundRobin::new().build(&endpoints(&t));
        assert_eq!(sequence(&*rr, &t, 6), ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn weight_zero_takes_no_traffic() {
        let t = tracked(&[("a", 1), ("b", 0), ("c", 1)]);
        let rr = RoundRobin::new().build(&endpoints(&t));
        let seq = sequence(&*rr, &t, 30);
        assert!(!seq.iter().any(|n| n == "b"));
    }
}
