//! The metric families and their Prometheus text exposition.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use prometheus_client::registry::Registry;

use super::labels::{
    BandwidthLabels, BreakerLabels, ConnectionLabels, RejectionLabels, RequestLabels, RouteLabels,
    TargetLabels,
};
use super::local::{Families, Local, SummedHistogram};
use crate::circuit::{Breaker, State};

/// Reads a balancer's endpoints at scrape time.
type Endpoints = Box<dyn Fn() -> Vec<crate::balance::EndpointStatus> + Send + Sync>;

/// The gateway's Prometheus metrics, named as Kong's `prometheus` plugin names them so that
/// existing dashboards keep working.
///
/// | metric | labels |
/// | --- | --- |
/// | `kong_http_requests_total` | `service`, `route`, `code`, `source` (`service`: the upstream answered; `kong`: the gateway did; `client`: the gateway answered the client's own broken or stalled request), `consumer` |
/// | `kong_request_latency_ms` (histogram, Kong's buckets) | `service`, `route` |
/// | `kong_upstream_latency_ms` (histogram, Kong's buckets) | `service`, `route` |
/// | `kong_bandwidth_bytes_total` | `service`, `route`, `direction` (`ingress`, `egress`), `consumer` |
/// | `tower_gateway_rejections_total` | `service`, `route`, `by` (the [`AnsweredBy`](crate::reject::AnsweredBy) that answered: `auth`, `rate-limiting`, `circuit-breaker`, `balancer`, `proxy`, `router`, `server`, `client`) |
/// | `tower_gateway_circuit_state` (0 closed, 1 open, 2 half-open) | `breaker` |
/// | `kong_upstream_target_health` (1 for the current state) | `upstream`, `target`, `state` (`healthy`, `unhealthy`) |
/// | `kong_nginx_connections_total` (a gauge, as Kong's) | `state` (`accepted`, `active`, `refused`: closed at accept over a connection cap) |
/// | `kong_nginx_requests_total` (a gauge, as Kong's) | |
///
/// The status class (`2xx`, `5xx`…) is not a label of its own: `code` refines it, and
/// `sum by (route) (rate(kong_http_requests_total{code=~"5.."}[1m]))` gives it, as with Kong.
/// `consumer` is empty unless [`per_consumer`](Self::per_consumer) is on (Kong's
/// `per_consumer`).
///
/// Label values come from the configuration (route, service and consumer names) and the
/// status code, never from client input, so the number of series is bounded. Requests that
/// matched no route are counted under `route=""`.
///
/// Cheap to clone; clones share the metrics.
///
/// ```
/// use tower_gateway::metrics::{Metrics, MetricsLayer};
///
/// // One registry per process, shared by the layer and whatever serves `/metrics`.
/// let metrics = Metrics::new().per_consumer(true);
/// let layer = MetricsLayer::new(metrics.clone());
/// assert!(metrics.encode().ends_with("# EOF
/// "));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct Metrics {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    registry: Mutex<Registry>,
    breakers: Mutex<Vec<(String, Breaker)>>,
    breaker_state: Family<BreakerLabels, Gauge>,
    connections: Mutex<Vec<crate::server::ConnectionStats>>,
    connection_state: Family<ConnectionLabels, Gauge>,
    total_requests: Gauge,
    pub(crate) per_consumer: std::sync::atomic::AtomicBool,
    pub(crate) rejections: Family<RejectionLabels, Counter>,
    balancers: Mutex<Vec<(String, Endpoints)>>,
    target_health: Family<TargetLabels, Gauge>,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) latency: Family<RouteLabels, SummedHistogram>,
    pub(crate) upstream_latency: Family<RouteLabels, SummedHistogram>,
    pub(crate) bandwidth: Family<BandwidthLabels, Counter>,
    /// What requests counted since the last scrape, per thread.
    pub(crate) local: Local,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, SummedHistogram>::default();
        let upstream_latency = Family::<RouteLabels, SummedHistogram>::default();
        let bandwidth = Family::<BandwidthLabels, Counter>::default();
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        let target_health = Family::<TargetLabels, Gauge>::default();
        let rejections = Family::<RejectionLabels, Counter>::default();
        let connection_state = Family::<ConnectionLabels, Gauge>::default();
        let total_requests = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "tower_gateway_rejections",
            "Requests the gateway answered itself, by the part that answered",
            rejections.clone(),
        );
        registry.register(
            "kong_nginx_connections_total",
            "Client connections: accepted since start, active now",
            connection_state.clone(),
        );
        registry.register(
            "kong_nginx_requests_total",
            "Requests begun since start",
            total_requests.clone(),
        );
        registry.register(
            "kong_upstream_target_health",
            "Health of each target of a balanced upstream: 1 for its current state",
            target_health.clone(),
        );
        registry.register(
            "tower_gateway_circuit_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        registry.register(
            "kong_http_requests",
            "HTTP requests by route and status code",
            requests.clone(),
        );
        registry.register(
            "kong_request_latency_ms",
            "Time from the request head to the end of the response body, in milliseconds",
            latency.clone(),
        );
        registry.register(
            "kong_upstream_latency_ms",
            "Time the upstream took to send its response head, in milliseconds",
            upstream_latency.clone(),
        );
        registry.register(
            "kong_bandwidth_bytes",
            "Body bytes by route and direction",
            bandwidth.clone(),
        );
        Self {
            shared: Arc::new(Shared {
                registry: Mutex::new(registry),
                breakers: Mutex::new(Vec::new()),
                breaker_state,
                connections: Mutex::new(Vec::new()),
                connection_state,
                total_requests,
                per_consumer: std::sync::atomic::AtomicBool::new(false),
                rejections,
                requests,
                latency,
                upstream_latency,
                bandwidth,
                local: Local::new(),
                balancers: Mutex::new(Vec::new()),
                target_health,
            }),
        }
    }

    /// Reports the health of `balancer`'s endpoints at every scrape as Kong's
    /// `kong_upstream_target_health{upstream, target, state}` (1 for the current state,
    /// `healthy` or `unhealthy`, 0 for the other).
    pub fn watch_balancer<S>(
        &self,
        upstream: impl Into<String>,
        balancer: crate::balance::Balancer<S>,
    ) where
        S: Send + Sync + 'static,
    {
        let read: Endpoints = Box::new(move || balancer.endpoints());
        self.shared
            .balancers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((upstream.into(), read));
    }

    /// Labels requests and bandwidth with the authenticated consumer (its username, else its
    /// id), as Kong's `per_consumer`; off by default. Consumers come from the configuration,
    /// so the series stay bounded.
    pub fn per_consumer(self, yes: bool) -> Self {
        self.shared
            .per_consumer
            .store(yes, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Reports a server's connection counts at every scrape (add each listener's).
    pub fn watch_connections(&self, stats: crate::server::ConnectionStats) {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stats);
    }

    /// Stops reporting every breaker and balancer watched so far (their series disappear),
    /// before watching those of a new configuration.
    pub fn unwatch_all(&self) {
        self.shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.shared
            .balancers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.shared.breaker_state.clear();
        self.shared.target_health.clear();
    }

    /// Reports `breaker`'s state under `name` at every scrape.
    pub fn watch_breaker(&self, name: impl Into<String>, breaker: Breaker) {
        self.shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), breaker));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let shared = &*self.shared;
        shared.local.fold_into(Families {
            requests: &shared.requests,
            rejections: &shared.rejections,
            latency: &shared.latency,
            upstream_latency: &shared.upstream_latency,
            bandwidth: &shared.bandwidth,
        });
        let servers = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !servers.is_empty() {
            let accepted = servers.iter().map(|s| s.accepted()).sum::<u64>();
            let active = servers.iter().map(|s| s.active()).sum::<u64>();
            let requests = servers.iter().map(|s| s.requests()).sum::<u64>();
            let refused = servers.iter().map(|s| s.refused()).sum::<u64>();
            self.shared
                .total_requests
                .set(i64::try_from(requests).unwrap_or(i64::MAX));
            for (state, value) in [
                ("accepted", accepted),
                ("active", active),
                ("refused", refused),
            ] {
                let gauge = self
                    .shared
                    .connection_state
                    .get_or_create(&ConnectionLabels { state });
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        for (name, breaker) in self
            .shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let state = match breaker.state() {
                State::Closed => 0,
                State::Open { .. } => 1,
                State::HalfOpen => 2,
            };
            let labels = BreakerLabels {
                breaker: name.clone(),
            };
            self.shared.breaker_state.get_or_create(&labels).set(state);
        }
        for (upstream, endpoints) in self
            .shared
            .balancers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for endpoint in endpoints() {
                for (state, is) in [
                    ("healthy", endpoint.healthy),
                    ("unhealthy", !endpoint.healthy),
                ] {
                    let labels = TargetLabels {
                        upstream: upstream.clone(),
                        target: endpoint.endpoint.name().to_owned(),
                        state,
                    };
                    self.shared
                        .target_health
                        .get_or_create(&labels)
                        .set(i64::from(is));
                }
            }
        }
        let mut out = String::new();
        let registry = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Writing to a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::Policy;

    #[tokio::test]
    async fn breaker_states_are_reported_at_each_scrape() {
        let metrics = Metrics::new();
        let breaker = Breaker::new(Policy::default());
        metrics.watch_breaker("users", breaker.clone());
        assert!(
            metrics
                .encode()
                .contains(r#"tower_gateway_circuit_state{breaker="users"} 0"#)
        );
        for _ in 0..5 {
            let _ = breaker.call(async { Err::<(), ()>(()) }).await;
        }
        assert!(
            metrics
                .encode()
                .contains(r#"tower_gateway_circuit_state{breaker="users"} 1"#)
        );
    }
}
