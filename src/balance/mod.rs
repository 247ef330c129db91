//! Load balancing: spread a service's requests over its endpoints.
//!
//! [`Balancer`] is a `Service` in front of one service per endpoint (for the gateway, a
//! [`ReverseProxy`](crate::proxy::ReverseProxy) per `host:port`, all sharing one connection
//! pool). It picks an endpoint per request with a [`Strategy`]:
//!
//! | strategy | Kong `algorithm` | picks |
//! | --- | --- | --- |
//! | [`RoundRobin`] | | each endpoint in turn, lock-free |
//! | [`WeightedRoundRobin`] | `round-robin` | nginx's smooth weighted round-robin: weights 5, 1, 1 give `a a b a c a a` |
//! | [`LeastConnections`] | `least-connections` | lowest `(in flight + 1) / weight`, requests counted until their response bodies end; ties take turns |
//! | [`ConsistentHash`] | `consistent-hashing` | a ketama ring over the request's [`HashOn`] key; one endpoint more or less moves about 1/N of the keys |
//! | [`PeakEwma`] | `latency` | power of two choices over peak-EWMA latency × in-flight |
//!
//! Endpoints come and go at run time ([`Balancer::insert`], [`Balancer::remove`],
//! [`Balancer::set_weight`]) without disturbing requests in flight. [`PassiveHealth`] ejects an
//! endpoint that keeps failing live traffic and brings it back after a while that doubles
//! with repeated ejections; [`ActiveHealth`] probes endpoints in the background. A connection
//! failure is retried on another endpoint. With no usable endpoint the answer is `503`
//! `{"message":"failure to get a peer from the ring-balancer"}` (Kong's).
//!
//! Circuit breakers compose per endpoint: wrap each endpoint's service in its own
//! [`CircuitBreakerLayer`](crate::circuit::CircuitBreakerLayer); while one is open its fast
//! `503` is retried on another endpoint (nothing reached the endpoint), so clients do not see
//! it, and with [`PassiveHealth`] the endpoint is ejected as well. A breaker in front of the
//! balancer is a breaker for the whole service: it opens when the service as a whole fails.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceExt, service_fn};
//! use tower_gateway::balance::{BalancedBody, Balancer, Chosen, WeightedRoundRobin};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoint = |name: &'static str| {
//!     service_fn(move |_req: Request<BalancedBody<String>>| async move {
//!         Ok::<_, Infallible>(Response::new(name.to_owned()))
//!     })
//! };
//! let balancer = Balancer::builder(WeightedRoundRobin::new())
//!     .endpoint(tower_gateway::balance::Endpoint::new("a").weight(2), endpoint("a"))
//!     .endpoint(tower_gateway::balance::Endpoint::new("b").weight(1), endpoint("b"))
//!     .build();
//! let mut served = Vec::new();
//! for _ in 0..3 {
//!     let res = balancer.clone().oneshot(Request::new(String::new())).await.unwrap();
//!     served.push(res.extensions().get::<Chosen>().unwrap().endpoint.to_string());
//! }
//! assert_eq!(served, ["a", "b", "a"]);
//! # }
//! ```

mod active;
mod body;
mod consistent_hash;
mod endpoint;
mod ewma;
mod hash;
mod least_conn;
mod passive;
mod peak_ewma;
mod round_robin;
mod service;
mod strategy;
mod weighted;

pub use crate::body::BalancedBody;
pub use active::ActiveHealth;
pub use body::TrackedBody;
pub(crate) use consistent_hash::hash64;
pub use consistent_hash::{ConsistentHash, POINTS_PER_UNIT};
pub use endpoint::{Chosen, DEFAULT_WEIGHT, Endpoint};
pub use hash::HashOn;
pub use least_conn::LeastConnections;
pub use passive::{PassiveHealth, StatusSet};
pub use peak_ewma::PeakEwma;
pub use round_robin::RoundRobin;
pub use service::{Balancer, BalancerBuilder, DEFAULT_RETRIES, EndpointStatus, ResponseFuture};
pub use strategy::{Candidates, Strategy};
pub use weighted::WeightedRoundRobin;

impl From<&str> for Endpoint {
    fn from(name: &str) -> Self {
        Endpoint::new(name)
    }
}

impl From<String> for Endpoint {
    fn from(name: String) -> Self {
        Endpoint::new(name)
    }
}

/// An endpoint named `ip:port`, with the default weight.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_gateway::balance::Endpoint;
///
/// let addr: SocketAddr = "10.0.0.7:8080".parse().unwrap();
/// assert_eq!(Endpoint::from(addr).name(), "10.0.0.7:8080");
/// ```
impl From<std::net::SocketAddr> for Endpoint {
    fn from(addr: std::net::SocketAddr) -> Self {
        Endpoint::new(addr.to_string())
    }
}
