//! Endpoints and the state the balancer keeps for each one.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::ewma::Ewma;
use super::passive::Outlier;

/// Kong's default target weight.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One instance the balancer may send a request to: a name (for the gateway, its `host:port`)
/// and a weight. A weight of 0 keeps the endpoint known but sends it no traffic.
///
/// ```
/// use tower_gateway::balance::Endpoint;
///
/// let endpoint = Endpoint::new("10.0.0.7:8080").weight(5);
/// assert_eq!(endpoint.name(), "10.0.0.7:8080");
/// assert_eq!(endpoint.get_weight(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    name: Arc<str>,
    weight: u32,
}

impl Endpoint {
    /// An endpoint with Kong's default weight, 100.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            weight: DEFAULT_WEIGHT,
        }
    }

    /// Sets the weight (0 = no traffic).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The endpoint's name, unique within a balancer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint's weight.
    pub fn get_weight(&self) -> u32 {
        self.weight
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }
}

/// Which endpoint served a request, and after how many attempts: in the request's extensions
/// (for the endpoint service) and in the response's (for access logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The endpoint's name (`host:port` in the gateway).
    pub endpoint: Arc<str>,
    /// 1 for the first try; more when earlier endpoints failed to connect.
    pub attempt: u32,
}

/// What the balancer tracks for one endpoint. It outlives membership changes: an endpoint that
/// stays keeps its in-flight count, latency estimate and health.
#[derive(Debug)]
pub(crate) struct EndpointState {
    /// Requests sent and not finished (until the response body ends or is dropped).
    in_flight: AtomicU32,
    latency: Mutex<Ewma>,
    /// Passive ejection: nanoseconds after the balancer's epoch until which the endpoint gets
    /// no traffic; 0 when not ejected.
    ejected_until: AtomicU64,
    outlier: Mutex<Outlier>,
    /// Whether a failure was recorded since the last success (saves the lock on successes).
    failing: AtomicBool,
    /// Marked unhealthy by active health checks.
    probed_down: AtomicBool,
}

/// RAII in-flight count: taken when a request is sent, released when its response body ends
/// or is dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<EndpointState>);

// === impl EndpointState ===

impl EndpointState {
    pub(crate) fn new(initial_latency: Duration) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            latency: Mutex::new(Ewma::new(initial_latency)),
            ejected_until: AtomicU64::new(0),
            outlier: Mutex::new(Outlier::default()),
            failing: AtomicBool::new(false),
            probed_down: AtomicBool::new(false),
        }
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub(crate) fn latency(&self) -> MutexGuard<'_, Ewma> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn outlier(&self) -> MutexGuard<'_, Outlier> {
        self.outlier.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn failing(&self) -> &AtomicBool {
        &self.failing
    }

    /// Whether the endpoint is ejected or probed down at `now` (nanoseconds since the epoch;
    /// computed only when needed).
    pub(crate) fn is_down(&self, now: &mut dyn FnMut() -> u64) -> bool {
        if self.probed_down.load(Ordering::Relaxed) {
            return true;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now() < until
    }

    pub(crate) fn is_ejected_at(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    pub(crate) fn eject_until(&self, until: u64) {
        self.ejected_until.store(until.max(1), Ordering::Relaxed);
    }

    pub(crate) fn clear_ejection(&self) {
        self.ejected_until.store(0, Ordering::Relaxed);
    }

    pub(crate) fn set_probed_down(&self, down: bool) {
        self.probed_down.store(down, Ordering::Relaxed);
    }

    pub(crate) fn is_probed_down(&self) -> bool {
        self.probed_down.load(Ordering::Relaxed)
    }
}

/// Nanoseconds from `epoch` to `now`, never 0 (0 means "not ejected").
pub(crate) fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

// === impl InFlight ===

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
