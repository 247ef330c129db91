//! Circuit breaking: stop calling a failing upstream, then probe it back to health.
//!
//! A [`Breaker`] is closed while calls succeed. When its [`Policy`] trips (by default 5
//! failures in a row; or a failure rate over the last N calls or the last T seconds; or a
//! share of slow calls, see [`Trip`]) it opens: calls fail fast for the open time, without reaching the
//! upstream. Then it is half-open: a bounded number of probes (default 1) go through while
//! every other call still fails fast. Enough probe successes close it; a probe failure opens it
//! again for twice as long, up to a cap (10 s, 20 s, … 300 s by default), as APISIX's
//! `api-breaker` does. Every transition is a `tracing` event.
//!
//! [`CircuitBreakerLayer`] puts a breaker in front of any HTTP service: failures are 5xx
//! responses (configurable) and errors, never 4xx or cancelled requests; while open the answer
//! is `503 {"message":"Service unavailable"}` with `Retry-After`. [`Breaker::call`] guards any
//! async operation the same way.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_gateway::circuit::{CircuitBreakerLayer, Policy, Trip};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let failing = service_fn(|_req: Request<()>| async {
//!     let mut res = Response::new(String::new());
//!     *res.status_mut() = StatusCode::BAD_GATEWAY;
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//! let service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(Policy::default().trip(Trip::ConsecutiveFailures(2))))
//!     .service(failing);
//!
//! for _ in 0..2 {
//!     let res = service.clone().oneshot(Request::new(())).await.unwrap();
//!     assert_eq!(res.status(), 502);
//! }
//! let res = service.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["retry-after"], "10");
//! # }
//! ```
//!
//! # In an axum app
//!
//! Around an axum handler or router, the breaker counts its 5xx answers (the handler's own
//! errors included) and answers `503` while open. The layer owns its breaker: every route and
//! clone it wraps shares it; one breaker per route is one layer per route.
//!
//! ```
//! use axum::body::Body;
//! use axum::{Router, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_gateway::circuit::{CircuitBreakerLayer, Policy, Trip};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
//!     .layer(CircuitBreakerLayer::new(Policy::default().trip(Trip::ConsecutiveFailures(2))));
//! for expected in [500, 500, 503] {
//!     let req = Request::get("/").body(Body::empty()).unwrap();
//!     assert_eq!(app.clone().oneshot(req).await.unwrap().status(), expected);
//! }
//! # }
//! ```

mod breaker;
mod layer;
mod policy;
mod service;
mod state;

pub use breaker::{Breaker, CallError};
pub use layer::CircuitBreakerLayer;
pub use policy::{Policy, Trip};
pub use service::{CircuitBreaker, ResponseFuture};
pub use state::{Admission, Machine, Outcome, State};
