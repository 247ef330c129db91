//! The `Layer` that wraps a service in a circuit breaker.

use tower::Layer;

use super::service::server_error;
use super::{Breaker, CircuitBreaker, Policy};

/// Wraps services in a [`CircuitBreaker`].
///
/// [`CircuitBreakerLayer::new`] gives every service it wraps a breaker of its own (one per
/// route when applied per route); [`CircuitBreakerLayer::shared`] makes them all use one.
/// Clones of a wrapped service always share their breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    policy: Policy,
    shared: Option<Breaker>,
    failure: fn(http::StatusCode) -> bool,
}

impl CircuitBreakerLayer {
    /// A layer whose services each get a breaker with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            shared: None,
            failure: server_error,
        }
    }

    /// A layer whose services all report to `breaker`.
    pub fn shared(breaker: Breaker) -> Self {
        Self {
            policy: Policy::default(),
            shared: Some(breaker),
            failure: server_error,
        }
    }

    /// Which response statuses count as failures (default: every 5xx, which includes the
    /// proxy's 502 for refused connections and 504 for timeouts). Errors of the inner service
    /// always count; cancelled requests never do.
    pub fn failure_statuses(mut self, is_failure: fn(http::StatusCode) -> bool) -> Self {
        self.failure = is_failure;
        self
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        let breaker = self
            .shared
            .clone()
            .unwrap_or_else(|| Breaker::new(self.policy.clone()));
        CircuitBreaker::new(inner, breaker).failure_statuses(self.failure)
    }
}
