//! Peak-EWMA with the power of two choices (Kong's `latency`, linkerd's and Envoy's default,
//! tower's `PeakEwma`): pick two usable endpoints at random and send to the one with the lower
//! `latency estimate × (in flight + 1)`.

use std::time::Duration;

use super::ewma::DEFAULT_DECAY;
use super::{Candidates, Endpoint, Strategy};

/// Power of two choices over peak-EWMA latency times in-flight requests. Latency is the time
/// to the response head; a slower sample raises the estimate at once, faster ones lower it over
/// the decay time (Kong: 10 s), and an idle endpoint's estimate decays so it is tried again.
/// Weights other than 0 are not used (as in Kong).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{ServiceExt, service_fn};
/// use tower_gateway::balance::{BalancedBody, Balancer, Chosen, Endpoint, PeakEwma};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoint = |name: &'static str| {
///     service_fn(move |_req: Request<BalancedBody<String>>| async move {
///         Ok::<_, Infallible>(Response::new(name.to_owned()))
///     })
/// };
/// let balancer = Balancer::builder(PeakEwma::new().decay(std::time::Duration::from_secs(5)))
///     .endpoint(Endpoint::new("a"), endpoint("a"))
///     .endpoint(Endpoint::new("b"), endpoint("b"))
///     .build();
/// let res = balancer.oneshot(Request::new(String::new())).await.unwrap();
/// let chosen = res.extensions().get::<Chosen>().unwrap();
/// assert!(["a", "b"].contains(&&*chosen.endpoint));
/// # }
/// ```
#[derive(Debug)]
pub struct PeakEwma {
    decay: Duration,
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self {
            decay: DEFAULT_DECAY,
        }
    }
}

impl PeakEwma {
    /// Peak-EWMA with Kong's 10 s decay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how fast old latencies are forgotten.
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    fn cost(&self, candidates: &Candidates<'_>, i: usize) -> f64 {
        let latency = candidates.latency(i, self.decay).as_nanos() as f64;
        latency * f64::from(candidates.in_flight(i).saturating_add(1))
    }
}

impl Strategy for PeakEwma {
    fn build(&self, _endpoints: &[Endpoint]) -> Box<dyn Strategy> {
        Box::new(Self { decay: self.decay })
    }

    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        if n > 1 {
            let a = rand::random_range(0..n);
            let mut b = rand::random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            if candidates.is_usable(a) && candidates.is_usable(b) {
                return Some(if self.cost(candidates, b) < self.cost(candidates, a) {
                    b
                } else {
                    a
                });
            }
        }
        // Some endpoint is unusable: the cheapest usable one.
        (0..n)
            .filter(|&i| candidates.is_usable(i))
            .map(|i| (i, self.cost(candidates, i)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .map(|(i, _)| i)
    }

    fn latency_decay(&self) -> Option<Duration> {
        Some(self.decay)
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategy::testing::{endpoints, sequence, tracked};
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_slow_endpoint_is_avoided() {
        let t = tracked(&[("fast-1", 100), ("slow", 100), ("fast-2", 100)]);
        let now = Instant::now();
        for (i, ms) in [(0, 2), (1, 200), (2, 2)] {
            t[i].state
                .latency()
                .observe(now, Duration::from_millis(ms), DEFAULT_DECAY);
        }
        let p2c = PeakEwma::new().build(&endpoints(&t));
        let picks = sequence(&*p2c, &t, 1000);
        assert_eq!(picks.iter().filter(|n| *n == "slow").count(), 0);
        // The two fast ones share the traffic.
        let first = picks.iter().filter(|n| *n == "fast-1").count();
        assert!((300..=700).contains(&first), "{first}");
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_raise_the_cost() {
        let t = tracked(&[("a", 100), ("b", 100)]);
        let now = Instant::now();
        for endpoint in &t {
            endpoint
                .state
                .latency()
                .observe(now, Duration::from_millis(10), DEFAULT_DECAY);
        }
        let _busy = [t[0].state.start(), t[0].state.start()];
        let p2c = PeakEwma::new().build(&endpoints(&t));
        assert_eq!(sequence(&*p2c, &t, 10), vec!["b"; 10]);
    }
}
