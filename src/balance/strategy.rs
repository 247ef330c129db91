//! The `Strategy` trait and what a strategy sees when it picks.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Endpoint;
use super::endpoint::EndpointState;

/// How a [`Balancer`](super::Balancer) picks an endpoint for each request.
///
/// A strategy is built for one endpoint list ([`build`](Strategy::build) is called again,
/// on the current strategy, after every membership or weight change) and then asked to
/// [`pick`](Strategy::pick) among [`Candidates`] many times, concurrently. The balancer keeps
/// per-endpoint in-flight counts and latency estimates across rebuilds, so a strategy keeps
/// only what derives from the list itself (a ring, a schedule, a cursor).
///
/// ```
/// use tower_gateway::balance::{Candidates, Endpoint, Strategy};
///
/// /// Always the first usable endpoint: active/passive failover.
/// #[derive(Debug)]
/// struct Failover;
///
/// impl Strategy for Failover {
///     fn build(&self, _endpoints: &[Endpoint]) -> Box<dyn Strategy> {
///         Box::new(Failover)
///     }
///     fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
///         (0..candidates.len()).find(|&i| candidates.is_usable(i))
///     }
/// }
/// ```
pub trait Strategy: Send + Sync + std::fmt::Debug + 'static {
    /// This strategy for the endpoint list `endpoints` (indices in later picks refer to it).
    fn build(&self, endpoints: &[Endpoint]) -> Box<dyn Strategy>;

    /// The index of the endpoint to use, among those for which
    /// [`Candidates::is_usable`] holds, or `None` when none is.
    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize>;

    /// The decay time of the latency estimates this strategy reads, if it reads any; the
    /// balancer measures latencies only for strategies that do.
    fn latency_decay(&self) -> Option<Duration> {
        None
    }
}

/// A strategy chosen at run time (from configuration, say).
impl Strategy for Box<dyn Strategy> {
    fn build(&self, endpoints: &[Endpoint]) -> Box<dyn Strategy> {
        (**self).build(endpoints)
    }

    fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        (**self).pick(candidates)
    }

    fn latency_decay(&self) -> Option<Duration> {
        (**self).latency_decay()
    }
}

/// Each endpoint's weight in units of the weights' greatest common divisor (100, 100, 50 give
/// 2, 2, 1): what weighted schedules and rings are built from.
pub(crate) fn weight_units(endpoints: &[Endpoint]) -> Vec<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let weights: Vec<u64> = endpoints.iter().map(|e| e.get_weight().into()).collect();
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    weights.into_iter().map(|w| w / divisor).collect()
}

/// An endpoint as the balancer tracks it.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub(crate) endpoint: Endpoint,
    pub(crate) state: Arc<EndpointState>,
}

/// The endpoints a strategy picks from, with their load and whether each may take this
/// request (healthy, weight above 0, not already tried for it).
pub struct Candidates<'a> {
    endpoints: &'a [Tracked],
    usable: &'a dyn Fn(usize) -> bool,
    hash: Option<u64>,
}

impl std::fmt::Debug for Candidates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("len", &self.endpoints.len())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl<'a> Candidates<'a> {
    pub(crate) fn new(
        endpoints: &'a [Tracked],
        usable: &'a dyn Fn(usize) -> bool,
        hash: Option<u64>,
    ) -> Self {
        Self {
            endpoints,
            usable,
            hash,
        }
    }

    /// How many endpoints there are (usable or not).
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are no endpoints at all.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Endpoint `i`.
    pub fn endpoint(&self, i: usize) -> &Endpoint {
        &self.endpoints[i].endpoint
    }

    /// Endpoint `i`'s weight.
    pub fn weight(&self, i: usize) -> u32 {
        self.endpoints[i].endpoint.get_weight()
    }

    /// Whether endpoint `i` may take this request: healthy, weight above 0, not tried yet.
    pub fn is_usable(&self, i: usize) -> bool {
        i < self.endpoints.len() && (self.usable)(i)
    }

    /// Requests in flight on endpoint `i`, counted until their response bodies end.
    pub fn in_flight(&self, i: usize) -> u32 {
        self.endpoints[i].state.in_flight()
    }

    /// Endpoint `i`'s peak-EWMA latency estimate now, decaying over `decay` (measured only
    /// when the strategy's [`Strategy::latency_decay`] asks for it).
    pub fn latency(&self, i: usize, decay: Duration) -> Duration {
        let nanos = self.endpoints[i]
            .state
            .latency()
            .estimate(Instant::now(), decay);
        Duration::from_nanos(nanos as u64)
    }

    /// The request's hash key (see [`HashOn`](super::HashOn)), when the balancer hashes and the
    /// request has the input.
    pub fn hash_key(&self) -> Option<u64> {
        self.hash
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Candidates without a balancer, for exact-sequence tests of the strategies.

    use super::*;

    pub(crate) fn tracked(weights: &[(&str, u32)]) -> Vec<Tracked> {
        weights
            .iter()
            .map(|(name, weight)| Tracked {
                endpoint: Endpoint::new(*name).weight(*weight),
                state: Arc::new(EndpointState::new(Duration::from_millis(1))),
            })
            .collect()
    }

    pub(crate) fn endpoints(tracked: &[Tracked]) -> Vec<Endpoint> {
        tracked.iter().map(|t| t.endpoint.clone()).collect()
    }

    /// Picks `n` times with every endpoint of positive weight usable; returns the names.
    pub(crate) fn sequence(strategy: &dyn Strategy, tracked: &[Tracked], n: usize) -> Vec<String> {
        let usable = |i: usize| tracked[i].endpoint.get_weight() > 0;
        (0..n)
            .map(|_| {
                let i = strategy
                    .pick(&Candidates::new(tracked, &usable, None))
                    .expect("a usable endpoint");
                tracked[i].endpoint.name().to_owned()
            })
            .collect()
    }
}
