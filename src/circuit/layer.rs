//! The `Layer` that wraps a service in a circuit breaker.

use tower::Layer;

use super::service::{FailureRule, server_error};
use super::{Breaker, CircuitBreaker, Policy};

/// Wraps services in a [`CircuitBreaker`].
///
/// [`CircuitBreakerLayer::new`] gives every service it wraps a breaker of its own (one per
/// route when applied per route); [`CircuitBreakerLayer::shared`] makes them all use one.
/// Clones of a wrapped service always share their breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    /// `None`: services pass through without a breaker.
    policy: Option<Policy>,
    shared: Option<Breaker>,
    failure: FailureRule,
}

impl CircuitBreakerLayer {
    /// A layer whose services each get a breaker with `policy`.
    pub fn new(policy: Policy) -> Self {
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
