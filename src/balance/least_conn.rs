//! Least connections (Kong's `least-connections`, nginx's `least_conn`): the usable endpoint
//! with the lowest `(in flight + 1) / weight`, requests counted until their response bodies end.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidates, Endpoint, Strategy};

/// The endpoint with the fewest requests in flight for its weight. The `+ 1` makes the heaviest
/// endpoint win when all are idle (Kong). Ties are broken round-robin: the scan starts one
/// endpoint further at each pick, so equal endpoints take turns instead of the first one
/// taking everything.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{ServiceExt, service_fn};
/// use tower_gateway::balance::{BalancedBody, Balancer, Chosen, Endpoint, LeastConnections};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoint = |name: &'static str| {
///     service_fn(move |_req: Request<BalancedBody<String>>| async move {
///         Ok::<_, Infallible>(Response::new(name.to_owned()))
///     })
/// };
/// // Weights default to 100 (Kong's); idle, the heavier endpoint wins: (0 + 1) / 300 < 1 / 100.
/// let balancer = Balancer::builder(LeastConnections::new())
///     .endpoint(Endpoint::new("a"), endpoint("a"))
///     .endpoint(Endpoint::new("b").weight(300), endpoint("b"))
///     .build();
/// for _ in 0..2 {
///     let res = balancer.clone().oneshot(Request::new(String::new())).await.unwrap();
///     assert_eq!(&*res.extensions().get::<Chosen>().unwrap().endpoint, "b");
/// }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct LeastConnections {
    start: AtomicUsize,
}

impl LeastConnections {
    /// A least-connections strategy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Strategy for LeastConnections {
    fn build(&self, _endpoints: &[Endpoint]) -> Box<dyn Strategy> {
        Box::new(Self::new())
    }

    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.start.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64, u64)> = None;
        for i in (0..n).map(|k| (start + k) % n) {
            if !candidates.is_usable(i) {
                continue;
            }
            let load = u64::from(candidates.in_flight(i)) + 1;
            let weight = u64::from(candidates.weight(i));
            // load / weight < best_load / best_weight, without division.
            if best.is_none_or(|(_, l, w)| load * w < l * weight) {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategy::testing::{endpoints, sequence, tracked};
    use super::*;

    #[test]
    fn idle_equal_endpoints_take_turns() {
        let t = tracked(&[("a", 100), ("b", 100), ("c", 100)]);
        let lc = LeastConnections::new().build(&endpoints(&t));
        assert_eq!(sequence(&*lc, &t, 6), ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn the_endpoint_with_fewest_in_flight_wins() {
        let t = tracked(&[("a", 100), ("b", 100), ("c", 100)]);
        let lc = LeastConnections::new().build(&endpoints(&t));
        let _a = [t[0].state.start(), t[0].state.start()];
        let _c = t[2].state.start();
        assert_eq!(sequence(&*lc, &t, 3), ["b", "b", "b"]);
    }

    #[test]
    fn load_is_divided_by_weight() {
        // a with 3 in flight: (3 + 1) / 3 > b idle: (0 + 1) / 1.
        let t = tracked(&[("a", 3), ("b", 1)]);
        let lc = LeastConnections::new().build(&endpoints(&t));
        let _a = [t[0].state.start(), t[0].state.start(), t[0].state.start()];
        assert_eq!(sequence(&*lc, &t, 2), ["b", "b"]);
        // Idle: the heavier endpoint wins (1/3 < 1/1).
        let idle = tracked(&[("a", 3), ("b", 1)]);
        assert_eq!(sequence(&*lc, &idle, 2), ["a", "a"]);
    }

    #[test]
    fn released_requests_no_longer_count() {
        let t = tracked(&[("a", 1), ("b", 1)]);
        let lc = LeastConnections::new().build(&endpoints(&t));
        let held = t[0].state.start();
        assert_eq!(sequence(&*lc, &t, 2), ["b", "b"]);
        drop(held);
        assert_eq!(t[0].state.in_flight(), 0);
    }
}
