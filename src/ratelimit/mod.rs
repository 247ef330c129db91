//! Rate limiting algorithms as pure state machines: no I/O, time passed in, exact integer
//! arithmetic, rejected requests consume nothing.
//!
//! Each algorithm is a small configuration value with a `decide(&state, now)` method that
//! returns a [`Decision`] and the key's next state; the caller stores the next state only when
//! the request is admitted (and, with several limits on one request, only when all of them
//! admit it), which is what makes a denial consume nothing and several limits all-or-nothing.
//! Per-key state is a few bytes, so keyed stores stay small.
//!
//! | algorithm | semantics |
//! | --- | --- |
//! | [`TokenBucket`] | `burst` tokens refilled at `rate`; after a long idle exactly `burst` pass |
//! | [`LeakyBucket`] | nginx `limit_req`: excess at nanosecond resolution, delay / `nodelay` / `delay=N` |
//! | [`FixedWindow`] | Kong's `rate-limiting`: UTC calendar windows, second to year, several at once |
//! | [`SlidingLog`] | exactly `limit` in any window; memory bounded by `limit` per key |
//! | [`SlidingWindow`] | the weighted two-window counter (Cloudflare, Kong Advanced); 24 bytes per key |
//!
//! [`RateLimitLayer`] applies a set of [`Limit`]s per [`KeyBy`] key (client IP behind trusted
//! proxies, a header, global, or any rule), all-or-nothing and atomically per key, in a
//! bounded [`MemoryStore`]: a rejection answers `429 {"message":"API rate limit exceeded"}`
//! with `Retry-After`; responses carry Kong's `X-RateLimit-Limit-<Period>`,
//! `X-RateLimit-Remaining-<Period>` and `RateLimit-Limit/-Remaining/-Reset` headers; a leaky
//! bucket's delays are served by waiting on a timer.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_gateway::ratelimit::{FixedWindow, KeyBy, Limit, Period, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limited = ServiceBuilder::new()
//!     .layer(
//!         RateLimitLayer::builder(KeyBy::Global)
//!             .limit(Limit::FixedWindow(FixedWindow::new([(Period::Minute, 1)])))
//!             .build(),
//!     )
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let first = limited.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(first.headers()["x-ratelimit-remaining-minute"], "0");
//! let second = limited.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(second.status(), 429);
//! # }
//! ```
//!
//! Opt in to the IETF draft's `RateLimit-Policy` and `RateLimit` fields with
//! [`RateLimitBuilder::ietf_headers`].
//!
//! State lives in a [`Store`]: the bounded [`MemoryStore`] by default; a store may answer
//! later (a shared store over the network), and with `fault_tolerant` (the default, as Kong)
//! a store that fails lets requests through uncounted.
//!
//! # In an axum app
//!
//! Under `axum::serve`, limits by client address need the `axum` feature and
//! `into_make_service_with_connect_info::<SocketAddr>()`: [`KeyBy::ClientIp`] then reads axum's
//! `ConnectInfo` (without any peer address it answers `500` rather than limit nothing).
//!
//! ```
//! use axum::body::Body;
//! use axum::{Router, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_gateway::ratelimit::{KeyBy, Rate, RateLimitLayer, TokenBucket};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // One request per minute for everybody, bursts of two.
//! let app = Router::new().route("/", get(|| async { "hello" })).layer(RateLimitLayer::new(
//!     KeyBy::Global,
//!     TokenBucket::new(Rate::per_minute(1), 2),
//! ));
//! for expected in [200, 200, 429] {
//!     let req = Request::get("/").body(Body::empty()).unwrap();
//!     assert_eq!(app.clone().oneshot(req).await.unwrap().status(), expected);
//! }
//! # }
//! ```

#[cfg(feature = "redis")]
mod batch;
mod clock;
mod decision;
mod fixed_window;
mod key;
mod layer;
mod leaky_bucket;
mod limit;
mod memory;
mod overflow;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod sliding_window;
mod store;
mod token_bucket;

pub use clock::{Clock, ManualClock};
pub use decision::{Decision, Nanos, Rate, Verdict};
pub use fixed_window::{FixedWindow, FixedWindowState, Period};
pub use key::{KeyBy, KeyRule};
pub use layer::{RATE_LIMIT_EXCEEDED, RateLimitBuilder, RateLimitLayer};
pub use leaky_bucket::{LeakyBucket, LeakyBucketState, LeakyState};
pub use limit::{Limit, LimitState};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{DEFAULT_REDIS_TIMEOUT, RedisStore};
pub use service::{ByConsumer, RateLimit, ResponseFuture};
pub use sliding_window::{SlidingLog, SlidingLogState, SlidingWindow, SlidingWindowState};
pub use store::{Decided, Key, Outcome, Store, StoreError};
pub use token_bucket::{TokenBucket, TokenBucketState};
