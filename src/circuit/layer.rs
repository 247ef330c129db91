//! The `Layer` that wraps a service in a circuit breaker.

use tower::Layer;

use super::service::{FailureRule, server_error};
use super::{Breaker, CircuitBreaker, Policy};

/// Wraps services in a [`CircuitBreaker`].
///
/// The layer owns its breaker: [`CircuitBreakerLayer::new`] creates one, and every service it
/// wraps, every clone of the layer and of those services, reports to that one breaker, so a
/// layer given to axum's `Router::layer` (which calls [`Layer::layer`] once per route) or
/// rebuilt around a service per request still opens. In front of a balancer it is a
/// whole-service breaker: it opens when the service as a whole fails, not when one of its
/// endpoints does (the balancer's passive health checks eject a failing endpoint).
/// [`CircuitBreakerLayer::per_service`] gives each wrapped service a breaker of its own
/// instead (one per route when applied per route).
///
/// ```
/// use tower::Layer;
/// use tower_gateway::circuit::{CircuitBreakerLayer, Policy};
///
/// let layer = CircuitBreakerLayer::new(Policy::default());
/// let a = layer.layer(tower::service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let b = layer.clone().layer(a.clone());
/// // One breaker behind both.
/// assert!(a.breaker().unwrap().same_as(b.breaker().unwrap()));
/// assert!(layer.breaker().unwrap().same_as(a.breaker().unwrap()));
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    /// `Some`: a breaker of its own for every wrapped service.
    policy: Option<Policy>,
    /// The breaker of every wrapped service (`None` with `policy`, or disabled).
    shared: Option<Breaker>,
    failure: FailureRule,
}

impl CircuitBreakerLayer {
    /// A layer with one breaker, with `policy`, for everything it wraps.
    pub fn new(policy: Policy) -> Self {
        Self::shared(Breaker::new(policy))
    }

    /// A layer that gives every service it wraps a breaker of its own, with `policy`
    /// (clones of a wrapped service still share theirs).
    pub fn per_service(policy: Policy) -> Self {
        Self {
            policy: Some(policy),
            shared: None,
            failure: FailureRule::Fn(server_error),
        }
    }

    /// A layer whose services all report to `breaker`.
    pub fn shared(breaker: Breaker) -> Self {
        Self {
            policy: None,
            shared: Some(breaker),
            failure: FailureRule::Fn(server_error),
        }
    }

    /// A layer that adds no breaker (every request passes).
    pub fn disabled() -> Self {
        Self {
            policy: None,
            shared: None,
            failure: FailureRule::Fn(server_error),
        }
    }

    /// The breaker every wrapped service reports to (`None` for
    /// [`per_service`](Self::per_service) and [`disabled`](Self::disabled) layers).
    pub fn breaker(&self) -> Option<&Breaker> {
        self.shared.as_ref()
    }

    /// The statuses that count as failures, as a list (Kong-style configuration).
    pub fn failure_status_list(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.failure = FailureRule::Set(crate::balance::StatusSet::new(statuses));
        self
    }

    /// Classifies responses with a tower-http classifier
    /// ([`StatusInRangeAsFailures`](tower_http::classify::StatusInRangeAsFailures),
    /// [`GrpcErrorsAsFailures`](tower_http::classify::GrpcErrorsAsFailures), or your own): a
    /// response it classifies as a failure from its head counts as one. The breaker decides
    /// when the head arrives, so a classification that needs the end of the stream (a gRPC
    /// status sent in trailers) counts as a success; a trailers-only gRPC error counts.
    /// The default, every 5xx, is tower-http's
    /// [`ServerErrorsAsFailures`](tower_http::classify::ServerErrorsAsFailures).
    ///
    /// ```
    /// use tower_gateway::circuit::{CircuitBreakerLayer, Policy};
    /// use tower_http::classify::StatusInRangeAsFailures;
    ///
    /// // 429s and 5xx both trip the breaker.
    /// let layer = CircuitBreakerLayer::new(Policy::default())
    ///     .classify(StatusInRangeAsFailures::new(429..=599));
    /// # let _ = layer;
    /// ```
    pub fn classify<C>(mut self, classifier: C) -> Self
    where
        C: tower_http::classify::ClassifyResponse + Clone + Send + Sync + 'static,
    {
        self.failure = FailureRule::classifier(classifier);
        self
    }

    /// Which response statuses count as failures (default: every 5xx, which includes the
    /// proxy's 502 for refused connections and 504 for timeouts). Errors of the inner service
    /// always count; cancelled requests never do.
    pub fn failure_statuses(mut self, is_failure: fn(http::StatusCode) -> bool) -> Self {
        self.failure = FailureRule::Fn(is_failure);
        self
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        let breaker = self
            .shared
            .clone()
            .or_else(|| self.policy.clone().map(Breaker::new));
        let service = match breaker {
            Some(breaker) => CircuitBreaker::new(inner, breaker),
            None => CircuitBreaker::disabled(inner),
        };
        service.failure_rule(self.failure.clone())
    }
}
