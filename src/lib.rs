//! An API-gateway toolkit on [tower]: every capability is a `Layer` or a `Service` over
//! `http::Request` / `http::Response`, to be stacked in an axum or hyper server, plus a
//! complete gateway program driven by a Kong-compatible declarative file (`examples/gateway.rs`).
//!
//! | module | what it gives you |
//! | --- | --- |
//! | [`router`] | [`Router`](router::Router): host / method / path / header matching with precedence by specificity, `strip_path`, 404 / 405 |
//! | [`proxy`] | [`ReverseProxy`](proxy::ReverseProxy): pooled, streaming HTTP/1.1 forwarding with RFC 9110 hop-by-hop rules, `X-Forwarded-*`, timeouts |
//! | [`auth`] | [`AuthLayer`](auth::AuthLayer): Kong's key-auth and jwt with consumers, anonymous access, skip rules, identity headers that cannot be spoofed |
//! | [`identity`] | [`Consumer`](identity::Consumer): who a request comes from, written by auth, read by the other layers |
//! | [`balance`] | [`Balancer`](balance::Balancer): round-robin, nginx's smooth weighted round-robin, least connections, consistent hashing, peak-EWMA; passive and active health; retries on connection failures |
//! | [`circuit`] | [`CircuitBreakerLayer`](circuit::CircuitBreakerLayer): fail fast while an upstream is failing, probe it back; [`Breaker::call`](circuit::Breaker::call) for any async operation |
//! | [`log`] | [`AccessLogLayer`](log::AccessLogLayer): one structured event per finished request, JSON fields or nginx's combined format |
//! | [`request_id`] | [`RequestIdLayer`](request_id::RequestIdLayer): tower-http's request-id layers with Kong's `correlation-id` options |
#![cfg_attr(
    feature = "metrics",
    doc = "| [`metrics`] | [`MetricsLayer`](metrics::MetricsLayer) and [`Metrics`](metrics::Metrics): Prometheus requests, latency and bandwidth per route, Kong's metric names (feature `metrics`) |"
)]
#![cfg_attr(
    not(feature = "metrics"),
    doc = "| `metrics` | `MetricsLayer` and `Metrics`: Prometheus requests, latency and bandwidth per route, Kong's metric names (feature `metrics`) |"
)]
//! | [`ratelimit`] | [`RateLimitLayer`](ratelimit::RateLimitLayer) over exact, time-injected algorithms: token bucket, nginx's leaky bucket, Kong's fixed windows, sliding log and window; a pluggable [`Store`](ratelimit::Store) |
//! | [`server`] | [`Server`](server::Server): hyper with header limits, header-read timeout, `Host` checks and graceful shutdown |
#![cfg_attr(
    feature = "config",
    doc = "| [`config`] | Kong's declarative format (services, routes, upstreams, consumers, key-auth, jwt, rate-limiting, circuit-breaker) → a running gateway, with precise errors (feature `config`) |"
)]
#![cfg_attr(
    not(feature = "config"),
    doc = "| `config` | Kong's declarative format (services, routes, upstreams, consumers, key-auth, jwt, rate-limiting, circuit-breaker) → a running gateway, with precise errors (feature `config`) |"
)]
#![cfg_attr(
    feature = "program",
    doc = "| [`program`] | The gateway program (`examples/gateway.rs`) as a library entry point, for a binary with plugins of its own (feature `program`) |"
)]
#![cfg_attr(
    not(feature = "program"),
    doc = "| `program` | The gateway program (`examples/gateway.rs`) as a library entry point, for a binary with plugins of its own (feature `program`) |"
)]
#![cfg_attr(
    feature = "config",
    doc = "| [`plugin`] | Plugins by name: the built-in ones and an application's own Layers, configured like Kong's (feature `config`) |"
)]
#![cfg_attr(
    not(feature = "config"),
    doc = "| `plugin` | Plugins by name: the built-in ones and an application's own Layers, configured like Kong's (feature `config`) |"
)]
//! | [`body`], [`reject`] | the response body and the JSON error responses every part shares |
//!
//! The architecture and the contracts between modules are described in the repository's
//! README.
//!
//! ```no_run
//! use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
//! use tower_gateway::router::{Route, Router};
//! use tower_gateway::server::{Server, shutdown_signal};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users = ReverseProxy::new(ProxyConfig::new("http://127.0.0.1:3000")?);
//! let router = Router::builder()
//!     .route(Route::new().name("users").path("/api/users"), users)
//!     .build()?;
//! Server::bind("0.0.0.0:8000".parse()?)
//!     .serve_with_shutdown(router, shutdown_signal())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! [tower]: https://docs.rs/tower

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a wrapper service whose inner service is the
/// field `inner` (tower-http's convention).
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
pub mod auth;
pub mod balance;
pub mod body;
mod calendar;
pub mod circuit;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
mod cookie;
mod future;
pub mod identity;
#[cfg(feature = "config")]
mod lenient;
pub mod log;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "tls")]
mod pem;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod plugin;
#[cfg(feature = "program")]
#[cfg_attr(docsrs, doc(cfg(feature = "program")))]
pub mod program;
pub mod proxy;
pub mod ratelimit;
pub mod reject;
pub mod request_id;
pub mod router;
pub mod server;
mod shard;
mod spare;
mod timer;

/// The boxed error type used where errors of several kinds meet (as in tower).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
