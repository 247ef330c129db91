//! The rate-limiting service, its response future and its headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;
use tower::util::Oneshot;

use super::clock::Clock;
use super::decision::{Decision, Nanos};
use super::key::KeyBy;
use super::key::NoPeerAddress;
use super::limit::Limit;
use super::limit::longest_wait;
use super::store::Store;
use super::store::{Decided, Outcome, StoreError};
use super::{Period, Verdict};
use crate::body::ResponseBody;
use crate::reject;

/// What a [`RateLimitLayer`](super::RateLimitLayer) and every service it wraps share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: Vec<Limit>,
    pub(crate) key: KeyBy,
    pub(crate) store: std::sync::Arc<dyn Store>,
    pub(crate) fault_tolerant: bool,
    pub(crate) clock: Clock,
    pub(crate) status: StatusCode,
    pub(crate) message: std::sync::Arc<str>,
    pub(crate) hide_client_headers: bool,
    pub(crate) ietf_headers: bool,
    /// Whether a request without a peer address was logged already (once per layer).
    pub(crate) reported_no_peer: std::sync::atomic::AtomicBool,
}

/// A service behind rate limits: see [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

pin_project! {
    /// Response future of [`RateLimit`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
        headers: Headers,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        Called { #[pin] future: S::Future },
        Deciding { decided: PendingOutcome, waiting: Option<(S, Request<B>)>, shared: Arc<Shared>, now: Nanos },
        Delayed { #[pin] sleep: Sleep, waiting: Option<(S, Request<B>)> },
        Released { #[pin] call: Oneshot<S, Request<B>> },
        Rejected { retry_after: Option<Duration>, status: http::StatusCode, message: std::sync::Arc<str> },
    }
}

// === impl RateLimit ===

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let key = if shared.limits.is_empty() {
            None
        } else {
            match shared.key.lookup(&req) {
                Ok(key) => key,
                Err(NoPeerAddress) => {
                    if !shared.reported_no_peer.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "rate limiting by client address, but requests carry no peer address \
                             (serve with tower_gateway's Server, axum's ConnectInfo with the \
                             `axum` feature, or insert a SocketAddr): answering 500"
                        );
                    }
                    return ResponseFuture {
                        kind: Kind::Rejected {
                            retry_after: None,
                            status: http::StatusCode::INTERNAL_SERVER_ERROR,
                            message: Arc::from(reject::INTERNAL_ERROR),
                        },
                        headers: Headers::default(),
                    };
                }
            }
        };
        let Some(key) = key else {
            return ResponseFuture {
                kind: Kind::Called {
                    future: self.inner.call(req),
                },
                headers: Headers::default(),
            };
        };
        let now = shared.clock.now();
        let mut headers = Headers::default();
        let kind = match shared.store.decide(&key, &shared.limits, now) {
            Decided::Ready(result) => match plan(shared, result, now, &mut headers) {
                Plan::Call => Kind::Called {
                    future: self.inner.call(req),
                },
                Plan::Delay(delay) => Kind::Delayed {
                    sleep: tokio::time::sleep(delay),
                    waiting: Some((self.take_ready(), req)),
                },
                Plan::Answer {
                    retry_after,
                    status,
                    message,
                } => Kind::Rejected {
                    retry_after,
                    status,
                    message,
                },
            },
            // The ready handle answers this request once the store has; a clone takes its
            // place.
            Decided::Pending(decided) => Kind::Deciding {
                decided,
                waiting: Some((self.take_ready(), req)),
                shared: self.shared.clone(),
                now,
            },
        };
        ResponseFuture { kind, headers }
    }
}

/// Rate limits chosen by the authenticated [`Consumer`](crate::identity::Consumer): a consumer
/// with limits of its own is counted by those, everybody else by the default ones (Kong's
/// consumer-scoped `rate-limiting`). Build it with [`ByConsumer::new`] around a
/// [`RateLimit`]; an authentication layer must run before it.
///
/// ```
/// use std::sync::Arc;
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_gateway::identity::Consumer;
/// use tower_gateway::ratelimit::{ByConsumer, KeyBy, Rate, RateLimitLayer, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ok = service_fn(|_req: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
/// });
/// let everybody = RateLimitLayer::new(KeyBy::Consumer, TokenBucket::new(Rate::per_minute(1), 1));
/// let partner = RateLimitLayer::new(KeyBy::Consumer, TokenBucket::new(Rate::per_minute(100), 100));
/// let service = ByConsumer::new(everybody.layer(ok), [(Arc::<str>::from("partner"), partner)]);
/// let call = |id: &'static str| {
///     let mut req = Request::new(());
///     req.extensions_mut().insert(Consumer::new(id));
///     service.clone().oneshot(req)
/// };
/// assert_eq!(call("ann").await.unwrap().status(), 200);
/// assert_eq!(call("ann").await.unwrap().status(), 429);
/// assert_eq!(call("partner").await.unwrap().status(), 200);
/// assert_eq!(call("partner").await.unwrap().status(), 200);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ByConsumer<S> {
    default: RateLimit<S>,
    consumers: Arc<std::collections::HashMap<Arc<str>, Arc<Shared>>>,
}

impl<S> ByConsumer<S> {
    /// `default` for everybody, and each consumer id's own layer for that consumer.
    pub fn new(
        default: RateLimit<S>,
        consumers: impl IntoIterator<Item = (Arc<str>, super::RateLimitLayer)>,
    ) -> Self {
        Self {
            default,
            consumers: Arc::new(
                consumers
                    .into_iter()
                    .map(|(id, layer)| (id, layer.shared))
                    .collect(),
            ),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for ByConsumer<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.default.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.consumers.is_empty() {
            return self.default.call(req);
        }
        let own = req
            .extensions()
            .get::<crate::identity::Consumer>()
            .and_then(|c| self.consumers.get(&c.id))
            .cloned();
        match own {
            None => self.default.call(req),
            // The ready inner service goes to the consumer's limiter.
            Some(shared) => RateLimit::new(self.default.take_ready(), shared).call(req),
        }
    }
}

impl<S: Clone> RateLimit<S> {
    /// The ready inner service, for a call made later; a clone takes its place.
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

/// A store's answer still on its way.
type PendingOutcome = Pin<Box<dyn Future<Output = Result<Outcome, StoreError>> + Send>>;

/// What to do with a request once the store has decided.
enum Plan {
    Call,
    Delay(Duration),
    Answer {
        retry_after: Option<Duration>,
        status: http::StatusCode,
        message: Arc<str>,
    },
}

/// Turns the store's outcome into the response headers and what to do with the request.
fn plan(
    shared: &Shared,
    result: Result<Outcome, StoreError>,
    now: Nanos,
    headers: &mut Headers,
) -> Plan {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(err) if shared.fault_tolerant => {
            tracing::warn!(%err, "rate limiting off for this request: the store failed");
            return Plan::Call;
        }
        Err(err) => {
            tracing::error!(%err, "request refused: the rate-limit store failed");
            return Plan::Answer {
                retry_after: None,
                status: http::StatusCode::INTERNAL_SERVER_ERROR,
                message: Arc::from(reject::INTERNAL_ERROR),
            };
        }
    };
    if !shared.hide_client_headers {
        client_headers(&outcome, headers);
        if shared.ietf_headers {
            ietf_headers(&shared.limits, &outcome, now, headers);
        }
    }
    let admitted = !outcome.full && outcome.decisions.iter().all(Decision::admitted);
    if !admitted {
        let retry_after = if outcome.full {
            Duration::from_secs(1)
        } else {
            longest_wait(&outcome.decisions)
        };
        return Plan::Answer {
            retry_after: Some(retry_after),
            status: shared.status,
            message: shared.message.clone(),
        };
    }
    let delay = outcome
        .decisions
        .iter()
        .filter_map(|d| match d.verdict {
            Verdict::Delay(delay) => Some(delay),
            _ => None,
        })
        .max();
    match delay {
        Some(delay) => Plan::Delay(delay),
        None => Plan::Call,
    }
}

/// Kong's headers: `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>` per
/// fixed window, and `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` for the
/// tightest limit.
fn client_headers(outcome: &Outcome, headers: &mut Headers) {
    for (period, limit, remaining) in &outcome.periods {
        let (l, r) = period_headers(*period);
        headers.insert(l, number(*limit));
        headers.insert(r, number(*remaining));
    }
    let tightest = outcome
        .decisions
        .iter()
        .min_by_key(|d| (d.admitted(), d.remaining));
    if let Some(d) = tightest {
        headers.insert(HeaderName::from_static("ratelimit-limit"), number(d.limit));
        let remaining = if d.admitted() { d.remaining } else { 0 };
        headers.insert(
            HeaderName::from_static("ratelimit-remaining"),
            number(remaining),
        );
        headers.insert(
            HeaderName::from_static("ratelimit-reset"),
            number(whole_seconds(d.reset)),
        );
    }
}

/// `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`, without allocating.
fn period_headers(period: Period) -> (HeaderName, HeaderName) {
    let (limit, remaining) = match period {
        Period::Second => ("x-ratelimit-limit-second", "x-ratelimit-remaining-second"),
        Period::Minute => ("x-ratelimit-limit-minute", "x-ratelimit-remaining-minute"),
        Period::Hour => ("x-ratelimit-limit-hour", "x-ratelimit-remaining-hour"),
        Period::Day => ("x-ratelimit-limit-day", "x-ratelimit-remaining-day"),
        Period::Month => ("x-ratelimit-limit-month", "x-ratelimit-remaining-month"),
        Period::Year => ("x-ratelimit-limit-year", "x-ratelimit-remaining-year"),
    };
    (
        HeaderName::from_static(limit),
        HeaderName::from_static(remaining),
    )
}

/// The IETF draft's fields: `RateLimit-Policy` lists every quota, `RateLimit` reports the one
/// with the fewest requests left, e.g. `RateLimit: "minute";r=0;t=30`.
fn ietf_headers(limits: &[Limit], outcome: &Outcome, now: Nanos, headers: &mut Headers) {
    let policies: Vec<String> = limits
        .iter()
        .flat_map(|limit| limit.policies(now))
        .map(|(name, quota, window)| format!("\"{name}\";q={quota};w={window}"))
        .collect();
    // (name, remaining, seconds to reset) per quota.
    let secs = now / 1_000_000_000;
    let mut usage: Vec<(String, u64, u64)> = outcome
        .periods
        .iter()
        .map(|(period, _, remaining)| {
            let (_, end) = period.window(secs);
            let reset = (end * 1_000_000_000)
                .saturating_sub(now)
                .div_ceil(1_000_000_000);
            (period.name().to_ascii_lowercase(), *remaining, reset)
        })
        .collect();
    for (limit, decision) in limits.iter().zip(&outcome.decisions) {
        if !matches!(limit, Limit::FixedWindow(_)) {
            let name = limit
                .policies(now)
                .into_iter()
                .next()
                .map(|p| p.0)
                .unwrap_or_default();
            let remaining = if decision.admitted() {
                decision.remaining
            } else {
                0
            };
            usage.push((name, remaining, whole_seconds(decision.reset)));
        }
    }
    if let Ok(value) = HeaderValue::from_str(&policies.join(", ")) {
        headers.insert(HeaderName::from_static("ratelimit-policy"), value);
    }
    if let Some((name, remaining, reset)) = usage.into_iter().min_by_key(|u| u.1)
        && let Ok(value) = HeaderValue::from_str(&format!("\"{name}\";r={remaining};t={reset}"))
    {
        headers.insert(HeaderName::from_static("ratelimit"), value);
    }
}

/// Seconds, rounded up, at least 1 when not zero.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

// === impl ResponseFuture ===

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let released = match this.kind.as_mut().project() {
                KindProj::Called { future } => {
                    let res = std::task::ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(with_headers(res.map(ResponseBody::new), this.headers)));
                }
                KindProj::Released { call } => {
                    let res = std::task::ready!(call.poll(cx))?;
                    return Poll::Ready(Ok(with_headers(res.map(ResponseBody::new), this.headers)));
                }
                KindProj::Rejected {
                    retry_after,
                    status,
                    message,
                } => {
                    let mut res =
                        reject::answer(reject::AnsweredBy::RATE_LIMITING, *status, message);
                    if let Some(retry_after) = retry_after {
                        res.headers_mut().insert(
                            header::RETRY_AFTER,
                            number(whole_seconds(*retry_after).max(1)),
                        );
                    }
                    return Poll::Ready(Ok(with_headers(res, this.headers)));
                }
                KindProj::Deciding {
                    decided,
                    waiting,
                    shared,
                    now,
                } => {
                    let result = std::task::ready!(decided.as_mut().poll(cx));
                    let Some(waiting) = waiting.take() else {
                        // Polled after completion.
                        return Poll::Pending;
                    };
                    match plan(shared, result, *now, this.headers) {
                        Plan::Call => waiting,
                        Plan::Delay(delay) => {
                            this.kind.set(Kind::Delayed {
                                sleep: tokio::time::sleep(delay),
                                waiting: Some(waiting),
                            });
                            continue;
                        }
                        Plan::Answer {
                            retry_after,
                            status,
                            message,
                        } => {
                            this.kind.set(Kind::Rejected {
                                retry_after,
                                status,
                                message,
                            });
                            continue;
                        }
                    }
                }
                KindProj::Delayed { sleep, waiting } => {
                    std::task::ready!(sleep.poll(cx));
                    match waiting.take() {
                        Some(waiting) => waiting,
                        // Polled after completion.
                        None => return Poll::Pending,
                    }
                }
            };
            let (service, req) = released;
            this.kind.set(Kind::Released {
                call: Oneshot::new(service, req),
            });
        }
    }
}

fn with_headers<B>(mut res: Response<B>, headers: &mut Headers) -> Response<B> {
    for (name, value) in headers.0.drain(..) {
        res.headers_mut().insert(name, value);
    }
    res
}

/// The rate-limit headers of a response, gathered before it exists: a few distinct names,
/// kept in one small list rather than a `HeaderMap` (whose table and entries are two
/// allocations).
#[derive(Debug, Default)]
struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// Sets `name` (there is one value per name).
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => {
                if self.0.capacity() == 0 {
                    // Kong's headers for one window, and the IETF pair: one allocation.
                    self.0.reserve_exact(8);
                }
                self.0.push((name, value));
            }
        }
    }
}

/// The digits of 0 to 999 back to back: 0–9, then 10–99, then 100–999.
const SMALL_NUMBERS: [u8; 2890] = {
    let mut out = [0u8; 2890];
    let (mut n, mut at) = (0usize, 0usize);
    while n < 1000 {
        if n >= 100 {
            out[at] = b'0' + (n / 100) as u8;
            at += 1;
        }
        if n >= 10 {
            out[at] = b'0' + (n / 10 % 10) as u8;
            at += 1;
        }
        out[at] = b'0' + (n % 10) as u8;
        at += 1;
        n += 1;
    }
    out
};

/// [`SMALL_NUMBERS`] as text.
static SMALL_NUMBER_TEXT: &str = match std::str::from_utf8(&SMALL_NUMBERS) {
    Ok(text) => text,
    Err(_) => panic!("digits are UTF-8"),
};

/// `n` as a header value: below 1000 a static slice (no allocation, as most limits, counts
/// left and seconds to a reset are), otherwise formatted.
fn number(n: u64) -> HeaderValue {
    let (at, len) = match n {
        0..10 => (n as usize, 1),
        10..100 => (10 + (n as usize - 10) * 2, 2),
        100..1000 => (190 + (n as usize - 100) * 3, 3),
        _ => return HeaderValue::from(n),
    };
    HeaderValue::from_static(&SMALL_NUMBER_TEXT[at..at + len])
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod numbers {
    use super::number;

    #[test]
    fn numbers_render_as_decimal_digits_with_or_without_the_table() {
        for n in (0..1200).chain([u64::MAX, 1_000_000_000]) {
            assert_eq!(number(n).to_str().unwrap(), n.to_string(), "{n}");
        }
    }
}
