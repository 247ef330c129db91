//! The `Layer` that applies rate limits to a service.

use std::sync::Arc;

use http::StatusCode;
use tower::Layer;

use super::clock::Clock;
use super::key::KeyBy;
use super::limit::Limit;
use super::memory::MemoryStore;
use super::service::{RateLimit, Shared};
use super::store::Store;

/// Kong's default message for a rejected request.
pub const RATE_LIMIT_EXCEEDED: &str = "API rate limit exceeded";

/// Applies one set of limits, counted per key, to the wrapped service.
///
/// Every service this layer wraps (and every clone of those) shares one store: apply one layer
/// per route for per-route limits.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    pub(crate) shared: Arc<Shared>,
}

/// Builds a [`RateLimitLayer`].
///
/// ```
/// use http::{HeaderName, StatusCode};
/// use tower_gateway::ratelimit::{FixedWindow, KeyBy, Period, RateLimitLayer};
///
/// // Kong's `rate-limiting` with `limit_by: header`: 100 a minute and 1000 an hour per API
/// // client, answered 503 with a message of your own.
/// let layer = RateLimitLayer::builder(KeyBy::Header(HeaderName::from_static("x-client")))
///     .limit(FixedWindow::new([(Period::Minute, 100), (Period::Hour, 1000)]))
///     .max_keys(10_000)
///     .status(StatusCode::SERVICE_UNAVAILABLE)
///     .message("Slow down")
///     .build();
/// # let _ = layer;
/// ```
#[derive(Debug)]
pub struct RateLimitBuilder {
    limits: Vec<Limit>,
    key: KeyBy,
    max_keys: usize,
    clock: Option<Clock>,
    status: StatusCode,
    message: std::sync::Arc<str>,
    hide_client_headers: bool,
    ietf_headers: bool,
    store: Option<std::sync::Arc<dyn Store>>,
    fault_tolerant: bool,
}

impl RateLimitLayer {
    /// A layer counting by `key` against one limit, with the builder's defaults (a
    /// [`MemoryStore`] of a million keys, Kong's headers, 429).
    ///
    /// ```
    /// use tower_gateway::proxy::TrustedProxies;
    /// use tower_gateway::ratelimit::{KeyBy, Rate, RateLimitLayer, TokenBucket};
    ///
    /// // 10 requests per second per client, bursts of 20.
    /// let layer = RateLimitLayer::new(
    ///     KeyBy::ClientIp(TrustedProxies::none()),
    ///     TokenBucket::new(Rate::per_second(10), 20),
    /// );
    /// # let _ = layer;
    /// ```
    pub fn new(key: KeyBy, limit: impl Into<Limit>) -> Self {
        Self::builder(key).limit(limit).build()
    }

    /// Starts a layer counting by `key`.
    pub fn builder(key: KeyBy) -> RateLimitBuilder {
        RateLimitBuilder {
            limits: Vec::new(),
            key,
            max_keys: 1_000_000,
            clock: None,
            status: StatusCode::TOO_MANY_REQUESTS,
            message: RATE_LIMIT_EXCEEDED.into(),
            hide_client_headers: false,
            ietf_headers: false,
            store: None,
            fault_tolerant: true,
        }
    }
}

impl RateLimitBuilder {
    /// Adds a limit; a request passes only if every limit admits it.
    pub fn limit(mut self, limit: impl Into<Limit>) -> Self {
        self.limits.push(limit.into());
        self
    }

    /// Where the state lives (default: a [`MemoryStore`] of `max_keys` keys).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(std::sync::Arc::new(store));
        self
    }

    /// When the store fails: let requests through uncounted (`true`, the default, as Kong) or
    /// answer 500 (`false`).
    pub fn fault_tolerant(mut self, tolerant: bool) -> Self {
        self.fault_tolerant = tolerant;
        self
    }

    /// The most keys kept in memory (default 1 000 000); see [`MemoryStore`].
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// The time source (default: [`Clock::runtime`], made when the layer is built).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The status of a rejection (default 429; Kong's `error_code`).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The message of a rejection (default "API rate limit exceeded"; Kong's `error_message`).
    pub fn message(mut self, message: impl Into<std::sync::Arc<str>>) -> Self {
        self.message = message.into();
        self
    }

    /// Leaves out the `RateLimit-*` and `X-RateLimit-*` headers (Kong's `hide_client_headers`).
    pub fn hide_client_headers(mut self, hide: bool) -> Self {
        self.hide_client_headers = hide;
        self
    }

    /// Also sends the current IETF draft's `RateLimit-Policy` and `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers; off by default, as no gateway sends them yet).
    pub fn ietf_headers(mut self, send: bool) -> Self {
        self.ietf_headers = send;
        self
    }

    /// The layer. Needs a tokio runtime when the default clock is used.
    pub fn build(self) -> RateLimitLayer {
        RateLimitLayer {
            shared: Arc::new(Shared {
                limits: self.limits,
                key: self.key,
                store: self
                    .store
                    .unwrap_or_else(|| std::sync::Arc::new(MemoryStore::new(self.max_keys))),
                fault_tolerant: self.fault_tolerant,
                clock: self.clock.unwrap_or_else(Clock::runtime),
                status: self.status,
                message: self.message,
                hide_client_headers: self.hide_client_headers,
                ietf_headers: self.ietf_headers,
                reported_no_peer: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.shared.clone())
    }
}
