//! The `Balancer` service: membership, picking, retries, passive health.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::Service;
use tower::util::Oneshot;

use super::body::TrackedBody;
use super::endpoint::{EndpointState, InFlight, nanos_since};
use super::ewma::MIN_INITIAL;
use super::passive::{Failure, Observed};
use super::strategy::Tracked;
use super::{ActiveHealth, Candidates, Chosen, Endpoint, HashOn, PassiveHealth, Strategy};
use crate::body::ResponseBody;
use crate::body::{BalancedBody, Slot, unread};
use crate::proxy::UpstreamFailure;
use crate::reject;

/// Kong's default for a service's `retries`.
pub const DEFAULT_RETRIES: u32 = 5;

/// Spreads requests over a set of endpoint services with a pluggable [`Strategy`], keeping
/// each endpoint's in-flight count (until the response body ends), latency and health.
///
/// - An endpoint is skipped while passive health has ejected it, active health checks find it
///   down, or its weight is 0; with no endpoint left the answer is `503` with Kong's message
///   "failure to get a peer from the ring-balancer".
/// - A connection failure (the endpoint service answered with an
///   [`UpstreamFailure`] `Connect` or `ConnectTimeout`, as the [`ReverseProxy`] does) is
///   retried on another endpoint, up to `retries` times (Kong: 5). So is a connection closed
///   before the response head for an idempotent method. A request whose body an endpoint
///   started to read is never retried, nor are timeouts after sending.
/// - Endpoints can be added, removed and re-weighted while traffic flows; those that stay keep
///   their in-flight counts, latency estimates and health, and requests in flight finish where
///   they are.
/// - The chosen endpoint is recorded as [`Chosen`] in the request's extensions and the
///   response's.
/// - Backpressure: `poll_ready` chooses the endpoint (round-robin, weighted, least
///   connections, peak-EWMA) and drives its service to readiness; when it is not ready it
///   tries the others, and is ready as soon as one usable endpoint is, pending while none is
///   (each waiting endpoint's service wakes it). So tower's `LoadShed`, `ConcurrencyLimit`
///   and `Buffer` work in front of a balancer over endpoints that apply backpressure
///   (`ConcurrencyLimit`, `RateLimit`…). With consistent hashing the endpoint depends on the
///   request: `poll_ready` is always ready, and the chosen endpoint's readiness is awaited
///   in the response future. A [`ReverseProxy`] is always ready.
///
/// Clones share everything but a prepared endpoint: a clone starts unprepared, so no
/// capacity an endpoint reserved is held twice.
///
/// [`ReverseProxy`]: crate::proxy::ReverseProxy
pub struct Balancer<S> {
    shared: Arc<Shared<S>>,
    /// The endpoint `poll_ready` chose, its service ready; the next `call` goes there.
    prepared: Option<Prepared<S>>,
    /// Endpoints `poll_ready` found not ready, kept so that their wake-ups reach this handle.
    waiting: Option<Waiting<S>>,
}

/// An endpoint chosen and ready, in the snapshot of the members it was chosen from.
struct Prepared<S> {
    members: Arc<Members<S>>,
    index: usize,
    service: S,
}

/// Endpoint services that answered `Pending`, in their snapshot of the members.
struct Waiting<S> {
    members: Arc<Members<S>>,
    services: Vec<(usize, S)>,
}

/// Builds a [`Balancer`]; see [`Balancer::builder`].
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use tower::service_fn;
/// use tower_gateway::balance::{BalancedBody, Balancer, Endpoint, PassiveHealth, RoundRobin};
///
/// let endpoint = service_fn(|_req: Request<BalancedBody<String>>| async {
///     Ok::<_, Infallible>(Response::new(String::new()))
/// });
/// let balancer = Balancer::builder(RoundRobin::new())
///     .endpoint(Endpoint::new("10.0.0.1:8080"), endpoint.clone())
///     .endpoint(Endpoint::new("10.0.0.2:8080"), endpoint)
///     .retries(2)
///     .passive_health(PassiveHealth::default().tcp_failures(3))
///     .build();
/// assert_eq!(balancer.endpoints().len(), 2);
/// ```
pub struct BalancerBuilder<S> {
    strategy: Box<dyn Strategy>,
    endpoints: Vec<(Endpoint, S)>,
    settings: Settings,
    active: Option<ActiveHealth>,
}

/// What every snapshot of the membership shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    retries: u32,
    hash_on: HashOn,
    hash_fallback: HashOn,
    passive: Option<PassiveHealth>,
    /// Base of the ejection times stored in atomics.
    epoch: Instant,
}

pub(crate) struct Shared<S> {
    members: ArcSwap<Members<S>>,
    /// Serializes membership changes.
    update: Mutex<()>,
    /// Stops the active health checks when the last clone is dropped.
    checks: std::sync::OnceLock<super::active::Handle>,
}

/// One immutable snapshot of the endpoints.
pub(crate) struct Members<S> {
    pub(crate) tracked: Vec<Tracked>,
    services: Vec<S>,
    strategy: Box<dyn Strategy>,
    latency_decay: Option<Duration>,
    pub(crate) settings: Settings,
}

/// An endpoint's state as seen from outside, for status pages and the Admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Requests in flight on it.
    pub in_flight: u32,
    /// Whether it may take traffic: not ejected by passive health, not down for active health
    /// checks (weight aside).
    pub healthy: bool,
}

// === impl Balancer ===

impl<S> Balancer<S> {
    /// A builder with `strategy` and no endpoint yet.
    ///
    /// ```
    /// use tower_gateway::balance::{Balancer, Endpoint, WeightedRoundRobin};
    /// use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Behind a balancer, name the client's body type: the same proxy also takes plain
    /// // requests (`ReverseProxy<B>` serves `Request<B>` and the balancer's
    /// // `Request<BalancedBody<B>>` on one pool), so it cannot be inferred.
    /// let pool = ReverseProxy::<hyper::body::Incoming>::new(ProxyConfig::new("http://10.0.0.1:8080")?);
    /// let balancer = Balancer::builder(WeightedRoundRobin::new())
    ///     .endpoint(Endpoint::new("10.0.0.1:8080").weight(5), pool.clone())
    ///     .endpoint("10.0.0.2:8080", pool.to_origin("http://10.0.0.2:8080")?)
    ///     .retries(2)
    ///     .build();
    /// # let _ = balancer;
    /// # Ok(()) }
    /// ```
    pub fn builder(strategy: impl Strategy) -> BalancerBuilder<S> {
        BalancerBuilder {
            strategy: Box::new(strategy),
            endpoints: Vec::new(),
            settings: Settings {
                retries: DEFAULT_RETRIES,
                hash_on: HashOn::None,
                hash_fallback: HashOn::None,
                passive: None,
                epoch: Instant::now(),
            },
            active: None,
        }
    }

    /// Adds an endpoint, or replaces the service and weight of the endpoint with that name
    /// (keeping its in-flight count, latency and health).
    pub fn insert(&self, endpoint: impl Into<Endpoint>, service: S)
    where
        S: Clone,
    {
        let endpoint = endpoint.into();
        self.change(|tracked, services| {
            match tracked
                .iter()
                .position(|t| t.endpoint.name() == endpoint.name())
            {
                Some(i) => {
                    tracked[i].endpoint = endpoint;
                    services[i] = service;
                }
                None => {
                    tracked.push(Tracked {
                        state: Arc::new(EndpointState::new(slow_start(tracked))),
                        endpoint,
                    });
                    services.push(service);
                }
            }
            true
        });
    }

    /// Removes the endpoint named `name`; requests in flight on it finish. `false` if there
    /// was none.
    pub fn remove(&self, name: &str) -> bool
    where
        S: Clone,
    {
        self.change(|tracked, services| {
            let Some(i) = tracked.iter().position(|t| t.endpoint.name() == name) else {
                return false;
            };
            tracked.remove(i);
            services.remove(i);
            true
        })
    }

    /// Changes the weight of endpoint `name`. `false` if there is none.
    pub fn set_weight(&self, name: &str, weight: u32) -> bool
    where
        S: Clone,
    {
        self.change(|tracked, _| {
            let Some(t) = tracked.iter_mut().find(|t| t.endpoint.name() == name) else {
                return false;
            };
            t.endpoint = t.endpoint.clone().weight(weight);
            true
        })
    }

    /// Marks endpoint `name` healthy or unhealthy by hand (Kong's
    /// `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`); active health checks, when
    /// configured, may change it again. Marking healthy also ends a passive ejection. `false`
    /// if there is no such endpoint.
    pub fn set_healthy(&self, name: &str, healthy: bool) -> bool {
        let members = self.shared.members.load();
        let Some(t) = members.tracked.iter().find(|t| t.endpoint.name() == name) else {
            return false;
        };
        t.state.set_probed_down(!healthy);
        if healthy {
            t.state.outlier().end_ejection(Instant::now());
            t.state.clear_ejection();
        }
        true
    }

    /// The endpoints and their state.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        let members = self.shared.members.load();
        let now = nanos_since(members.settings.epoch, Instant::now());
        members
            .tracked
            .iter()
            .map(|t| EndpointStatus {
                endpoint: t.endpoint.clone(),
                in_flight: t.state.in_flight(),
                healthy: !t.state.is_probed_down() && !t.state.is_ejected_at(now),
            })
            .collect()
    }

    /// Applies `edit` to a copy of the membership and publishes it if `edit` returns `true`.
    fn change(&self, edit: impl FnOnce(&mut Vec<Tracked>, &mut Vec<S>) -> bool) -> bool
    where
        S: Clone,
    {
        let _serial = self
            .shared
            .update
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.shared.members.load();
        let mut tracked = current.tracked.clone();
        let mut services = current.services.clone();
        if !edit(&mut tracked, &mut services) {
            return false;
        }
        let next = Members::new(
            &*current.strategy,
            tracked,
            services,
            current.settings.clone(),
        );
        self.shared.members.store(Arc::new(next));
        true
    }
}

/// The latency a new endpoint starts with: the mean of the others' (Kong's slow start), so it
/// is neither flooded nor starved.
fn slow_start(tracked: &[Tracked]) -> Duration {
    if tracked.is_empty() {
        return MIN_INITIAL;
    }
    let now = Instant::now();
    let sum: f64 = tracked
        .iter()
        .map(|t| t.state.latency().estimate(now, super::ewma::DEFAULT_DECAY))
        .sum();
    Duration::from_nanos((sum / tracked.len() as f64) as u64)
}

impl<S> Balancer<S> {
    /// Keeps endpoint `index`'s ready service for the next `call` (the endpoints still
    /// waiting are dropped by the caller, releasing what they queued for).
    fn prepare<E>(
        &mut self,
        members: Arc<Members<S>>,
        index: usize,
        service: S,
    ) -> Poll<Result<(), E>> {
        self.prepared = Some(Prepared {
            members,
            index,
            service,
        });
        Poll::Ready(Ok(()))
    }
}

impl<S> Clone for Balancer<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            prepared: None,
            waiting: None,
        }
    }
}

impl<S> std::fmt::Debug for Balancer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members = self.shared.members.load();
        f.debug_struct("Balancer")
            .field("strategy", &members.strategy)
            .field(
                "endpoints",
                &members
                    .tracked
                    .iter()
                    .map(|t| &t.endpoint)
                    .collect::<Vec<_>>(),
            )
            .field("settings", &members.settings)
            .finish()
    }
}

// === impl BalancerBuilder ===

impl<S> BalancerBuilder<S> {
    /// Adds an endpoint served by `service` (a `&str` is an endpoint of weight 100).
    pub fn endpoint(mut self, endpoint: impl Into<Endpoint>, service: S) -> Self {
        self.endpoints.push((endpoint.into(), service));
        self
    }

    /// How many times a connection failure is retried on another endpoint (Kong's `retries`,
    /// default 5; 0 = never).
    pub fn retries(mut self, retries: u32) -> Self {
        self.settings.retries = retries;
        self
    }

    /// What requests are hashed on, for [`ConsistentHash`](super::ConsistentHash) (Kong's
    /// `hash_on`; default none).
    pub fn hash_on(mut self, on: HashOn) -> Self {
        self.settings.hash_on = on;
        self
    }

    /// What requests are hashed on when the `hash_on` input is missing (Kong's
    /// `hash_fallback`).
    pub fn hash_fallback(mut self, on: HashOn) -> Self {
        self.settings.hash_fallback = on;
        self
    }

    /// Ejects endpoints that fail live traffic (off by default, as in Kong).
    pub fn passive_health(mut self, passive: PassiveHealth) -> Self {
        self.settings.passive = Some(passive);
        self
    }

    /// Probes endpoints in a background task (off by default). The task runs while any clone
    /// of the balancer exists.
    pub fn active_health(mut self, active: ActiveHealth) -> Self {
        self.active = Some(active);
        self
    }

    /// The balancer. With active health checks, must be called inside a tokio runtime.
    pub fn build(self) -> Balancer<S>
    where
        S: Send + Sync + 'static,
    {
        let (tracked, services): (Vec<Tracked>, Vec<S>) = self
            .endpoints
            .into_iter()
            .map(|(endpoint, service)| {
                let state = Arc::new(EndpointState::new(MIN_INITIAL));
                (Tracked { endpoint, state }, service)
            })
            .unzip();
        let members = Members::new(&*self.strategy, tracked, services, self.settings);
        let shared = Arc::new(Shared {
            members: ArcSwap::from_pointee(members),
            update: Mutex::new(()),
            checks: std::sync::OnceLock::new(),
        });
        // Spawned once the balancer exists: the task gives up when it cannot reach it.
        if let Some(active) = self.active {
            let balancer = Arc::downgrade(&shared);
            let endpoints = move || Some(balancer.upgrade()?.members().tracked.clone());
            let handle = super::active::spawn(active, endpoints);
            let _ = shared.checks.set(handle);
        }
        Balancer {
            shared,
            prepared: None,
            waiting: None,
        }
    }
}

impl<S> std::fmt::Debug for BalancerBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancerBuilder")
            .field("strategy", &self.strategy)
            .field(
                "endpoints",
                &self.endpoints.iter().map(|(e, _)| e).collect::<Vec<_>>(),
            )
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl<S> Shared<S> {
    pub(crate) fn members(&self) -> arc_swap::Guard<Arc<Members<S>>> {
        self.members.load()
    }
}

// === impl Members ===

impl<S> Members<S> {
    fn new(
        strategy: &dyn Strategy,
        tracked: Vec<Tracked>,
        services: Vec<S>,
        settings: Settings,
    ) -> Self {
        let list: Vec<Endpoint> = tracked.iter().map(|t| t.endpoint.clone()).collect();
        let strategy = strategy.build(&list);
        Self {
            latency_decay: strategy.latency_decay(),
            strategy,
            tracked,
            services,
            settings,
        }
    }

    /// Picks a usable endpoint that is not in `tried`.
    fn pick(&self, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        let epoch = self.settings.epoch;
        let now = Cell::new(0u64);
        let usable = |i: usize| {
            let t = &self.tracked[i];
            t.endpoint.get_weight() > 0
                && !tried.contains(&i)
                && !t.state.is_down(&mut || {
                    if now.get() == 0 {
                        now.set(nanos_since(epoch, Instant::now()));
                    }
                    now.get()
                })
        };
        self.strategy
            .pick(&Candidates::new(&self.tracked, &usable, hash))
    }

    /// Feeds passive health with how a request to endpoint `i` went.
    fn observe(&self, i: usize, status: Option<StatusCode>, failure: Failure) {
        let Some(passive) = &self.settings.passive else {
            return;
        };
        let state = &self.tracked[i].state;
        match passive.classify(status, failure) {
            Observed::Neutral => {}
            Observed::Success => {
                if state.failing().load(std::sync::atomic::Ordering::Relaxed) {
                    state.outlier().record(passive, Observed::Success);
                    state
                        .failing()
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
            }
            failed => {
                state
                    .failing()
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let mut outlier = state.outlier();
                if !outlier.record(passive, failed) {
                    return;
                }
                let now = Instant::now();
                let at = nanos_since(self.settings.epoch, now);
                let ejected = self
                    .tracked
                    .iter()
                    .filter(|t| t.state.is_ejected_at(at))
                    .count();
                let name = self.tracked[i].endpoint.name();
                if ejected >= passive.max_ejected(self.tracked.len()) {
                    outlier.reset_counts();
                    tracing::warn!(
                        endpoint = name,
                        ejected,
                        "endpoint failing but not ejected: too many endpoints ejected already"
                    );
                    return;
                }
                let until = outlier.eject(passive, now);
                state.eject_until(nanos_since(self.settings.epoch, until));
                tracing::warn!(
                    endpoint = name,
                    seconds = (until - now).as_secs_f64(),
                    observed = ?failed,
                    "endpoint ejected by passive health check"
                );
            }
        }
    }
}

// === impl Settings ===

impl Settings {
    fn key(&self, parts: &http::request::Parts) -> super::hash::Key {
        if matches!(self.hash_on, HashOn::None) {
            return super::hash::Key::default();
        }
        let key = self.hash_on.key(parts);
        if key.hash.is_some() {
            return key;
        }
        self.hash_fallback.key(parts)
    }
}

// === impl Service ===

impl<S, B, ResB> Service<Request<B>> for Balancer<S>
where
    S: Service<Request<BalancedBody<B>>, Response = Response<ResB>> + Clone,
    B: Body,
{
    type Response = Response<ResponseBody<TrackedBody<ResB>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.prepared.is_some() {
            return Poll::Ready(Ok(()));
        }
        let members = self.shared.members.load_full();
        if !matches!(members.settings.hash_on, HashOn::None) {
            // The endpoint depends on the request: its readiness is awaited in the response
            // future.
            self.waiting = None;
            return Poll::Ready(Ok(()));
        }
        // Endpoints found busy before: the first ready one now is taken.
        let mut waiting = match self.waiting.take() {
            Some(w) if Arc::ptr_eq(&w.members, &members) => w.services,
            _ => Vec::new(),
        };
        let mut tried: Vec<usize> = waiting.iter().map(|(i, _)| *i).collect();
        let mut k = 0;
        while k < waiting.len() {
            match waiting[k].1.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let (index, service) = waiting.swap_remove(k);
                    return self.prepare(members, index, service);
                }
                // A failed endpoint service is passed over.
                Poll::Ready(Err(_)) => drop(waiting.swap_remove(k)),
                Poll::Pending => k += 1,
            }
        }
        // The others, in the strategy's order.
        while let Some(index) = members.pick(None, &tried) {
            let mut service = members.services[index].clone();
            match service.poll_ready(cx) {
                Poll::Ready(Ok(())) => return self.prepare(members, index, service),
                Poll::Ready(Err(_)) => tried.push(index),
                Poll::Pending => {
                    tried.push(index);
                    waiting.push((index, service));
                }
            }
        }
        if waiting.is_empty() {
            // No usable endpoint: `call` answers 503.
            Poll::Ready(Ok(()))
        } else {
            self.waiting = Some(Waiting {
                members,
                services: waiting,
            });
            Poll::Pending
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        // The endpoint `poll_ready` prepared, or one chosen now.
        let (members, prepared) = match self.prepared.take() {
            Some(p) => (p.members, Some((p.index, p.service))),
            None => (self.shared.members.load_full(), None),
        };
        let key = members.settings.key(&parts);
        let (first, ready) = match prepared {
            Some((index, service)) => (index, Some(service)),
            None => match members.pick(key.hash, &[]) {
                Some(index) => (index, None),
                None => return ResponseFuture::unavailable(),
            },
        };
        let may_retry = members.settings.retries > 0 && members.tracked.len() > 1;
        let (body, retry) = if may_retry {
            let template = copy_head(&parts);
            let (body, slot) = if body.is_end_stream() {
                (BalancedBody::empty(), None)
            } else {
                let slot: Slot<B> = Arc::new(Mutex::new(Some(body)));
                (BalancedBody::parked(slot.clone()), Some(slot))
            };
            let retry = Retry {
                template,
                slot,
                tried: Vec::new(),
                hash: key.hash,
                left: members.settings.retries,
            };
            (body, Some(Box::new(retry)))
        } else {
            (BalancedBody::direct(body), None)
        };
        let request = Request::from_parts(parts, body);
        let (call, attempt) = Attempt::start(&members, first, 1, request, ready);
        ResponseFuture {
            kind: Kind::Calling {
                call,
                members,
                current: Some(attempt),
                retry,
                set_cookie: key.set_cookie,
            },
        }
    }
}

/// A copy of a request head (`Parts` is not `Clone`).
fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    *head.extensions_mut() = parts.extensions.clone();
    head.into_parts().0
}

/// What a retry needs.
struct Retry<B> {
    /// The head, kept to send the request again.
    template: http::request::Parts,
    /// `None` when the body had ended before the first attempt.
    slot: Option<Slot<B>>,
    tried: Vec<usize>,
    hash: Option<u64>,
    left: u32,
}

/// The attempt under way.
struct Attempt {
    index: usize,
    number: u32,
    started: Instant,
    in_flight: InFlight,
}

impl Attempt {
    /// Sends `request` to endpoint `index`, through `ready` (its service, prepared by
    /// `poll_ready`) or a clone of its service.
    fn start<S, B>(
        members: &Members<S>,
        index: usize,
        number: u32,
        mut request: Request<BalancedBody<B>>,
        ready: Option<S>,
    ) -> (Oneshot<S, Request<BalancedBody<B>>>, Self)
    where
        S: Service<Request<BalancedBody<B>>> + Clone,
    {
        let tracked = &members.tracked[index];
        request.extensions_mut().insert(Chosen {
            endpoint: tracked.endpoint.shared_name().clone(),
            attempt: number,
        });
        let attempt = Self {
            index,
            number,
            started: Instant::now(),
            in_flight: tracked.state.start(),
        };
        let service = ready.unwrap_or_else(|| members.services[index].clone());
        (Oneshot::new(service, request), attempt)
    }
}

impl<B> Retry<B> {
    /// The request again, for the next endpoint.
    fn request(&self) -> Request<BalancedBody<B>> {
        let body = self
            .slot
            .as_ref()
            .map_or_else(BalancedBody::empty, |s| BalancedBody::parked(s.clone()));
        Request::from_parts(copy_head(&self.template), body)
    }
}

pin_project! {
    /// Response future of [`Balancer`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<BalancedBody<B>>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<BalancedBody<B>>>,
    {
        Calling {
            #[pin]
            call: Oneshot<S, Request<BalancedBody<B>>>,
            members: Arc<Members<S>>,
            current: Option<Attempt>,
            retry: Option<Box<Retry<B>>>,
            set_cookie: Option<HeaderValue>,
        },
        Unavailable,
        Done,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<BalancedBody<B>>>,
{
    fn unavailable() -> Self {
        Self {
            kind: Kind::Unavailable,
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<BalancedBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What failed below HTTP, as the proxy reports it.
fn failure_of<T>(res: &Response<T>) -> Failure {
    match res.extensions().get::<UpstreamFailure>() {
        None => Failure::None,
        Some(UpstreamFailure::ConnectTimeout | UpstreamFailure::Timeout) => Failure::Timeout,
        Some(_) => Failure::Connection,
    }
}

/// Whether the gateway answered for the client's own fault (a broken or stalled request).
fn is_clients_fault<T>(res: &Response<T>) -> bool {
    res.extensions().get::<reject::AnsweredBy>() == Some(&reject::AnsweredBy::CLIENT)
}

/// Whether the failed exchange may be sent to another endpoint: nothing reached the endpoint
/// (connect failures, or the endpoint's own circuit breaker is open), or it closed before
/// answering a request that may be repeated.
fn retriable<T>(res: &Response<T>, method: &Method) -> bool {
    if res.extensions().get::<reject::AnsweredBy>() == Some(&reject::AnsweredBy::CIRCUIT_BREAKER) {
        return true;
    }
    match res.extensions().get::<UpstreamFailure>() {
        Some(UpstreamFailure::Connect(_) | UpstreamFailure::ConnectTimeout) => true,
        Some(UpstreamFailure::Protocol(_)) => method.is_idempotent(),
        _ => false,
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<BalancedBody<B>>, Response = Response<ResB>> + Clone,
{
    type Output = Result<Response<ResponseBody<TrackedBody<ResB>>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let (mut call, members, current, retry, set_cookie) = match kind.as_mut().project() {
                KindProj::Calling {
                    call,
                    members,
                    current,
                    retry,
                    set_cookie,
                } => (call, members, current, retry, set_cookie),
                KindProj::Unavailable => {
                    kind.set(Kind::Done);
                    return Poll::Ready(Ok(reject::answer(
                        reject::AnsweredBy::BALANCER,
                        StatusCode::SERVICE_UNAVAILABLE,
                        reject::NO_PEER,
                    )));
                }
                // Polled after completion: the future contract allows anything, but a panic is
                // unkind on the request path.
                KindProj::Done => return Poll::Pending,
            };
            let result = std::task::ready!(call.as_mut().poll(cx));
            let Some(attempt) = current.take() else {
                // Every `Calling` state is made with its attempt.
                return Poll::Pending;
            };
            let index = attempt.index;
            let res = match result {
                Ok(res) => res,
                Err(err) => {
                    members.observe(index, None, Failure::Connection);
                    kind.set(Kind::Done);
                    return Poll::Ready(Err(err));
                }
            };
            // The client broke or stalled its own request: nothing to learn about the
            // endpoint (its health, its latency), and nothing to retry elsewhere.
            let clients_fault = is_clients_fault(&res);
            let failure = failure_of(&res);
            let status = (failure == Failure::None).then(|| res.status());
            if !clients_fault {
                members.observe(index, status, failure);
            }
            if let Some(decay) = members.latency_decay.filter(|_| !clients_fault) {
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(attempt.started);
                members.tracked[index]
                    .state
                    .latency()
                    .observe(now, elapsed, decay);
            }

            // Another endpoint, if this one failed in a way that may be retried.
            if let Some(r) = retry.as_deref_mut()
                && !clients_fault
                && r.left > 0
                && retriable(&res, &r.template.method)
                && r.slot.as_ref().is_none_or(unread)
            {
                r.tried.push(index);
                if let Some(next) = members.pick(r.hash, &r.tried) {
                    r.left -= 1;
                    tracing::debug!(
                        failed = members.tracked[index].endpoint.name(),
                        next = members.tracked[next].endpoint.name(),
                        "retrying on another endpoint"
                    );
                    drop(res);
                    let request = r.request();
                    let (next_call, next_attempt) =
                        Attempt::start(members, next, attempt.number + 1, request, None);
                    call.set(next_call);
                    *current = Some(next_attempt);
                    continue;
                }
            }

            let (mut parts, body) = res.into_parts();
            parts.extensions.insert(Chosen {
                endpoint: members.tracked[index].endpoint.shared_name().clone(),
                attempt: attempt.number,
            });
            if let Some(cookie) = set_cookie.take() {
                parts.headers.append(header::SET_COOKIE, cookie);
            }
            kind.set(Kind::Done);
            let body = ResponseBody::new(TrackedBody::new(body, attempt.in_flight));
            return Poll::Ready(Ok(Response::from_parts(parts, body)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::balance::RoundRobin;

    const S: Duration = Duration::from_secs(1);

    /// Balancer over `bad` (failing to connect while the switch is on) and `good`.
    fn pair(
        failing: Arc<AtomicBool>,
    ) -> Balancer<
        impl Service<
            Request<BalancedBody<String>>,
            Response = Response<String>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + Sync,
    > {
        let endpoint = move |name: &'static str, failing: Option<Arc<AtomicBool>>| {
            service_fn(move |_req: Request<BalancedBody<String>>| {
                let fail = failing.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                async move {
                    let mut res = Response::new(name.to_owned());
                    if fail {
                        *res.status_mut() = StatusCode::BAD_GATEWAY;
                        res.extensions_mut()
                            .insert(UpstreamFailure::Connect("refused".into()));
                    }
                    Ok::<_, Infallible>(res)
                }
            })
        };
        Balancer::builder(RoundRobin::new())
            .endpoint("bad", endpoint("bad", Some(failing)))
            .endpoint("good", endpoint("good", None))
            .retries(0)
            .passive_health(
                PassiveHealth::default()
                    .tcp_failures(2)
                    .ejection(30 * S, 300 * S),
            )
            .build()
    }

    async fn served<S2>(lb: &Balancer<S2>, n: usize) -> Vec<String>
    where
        S2: Service<Request<BalancedBody<String>>, Response = Response<String>, Error = Infallible>
            + Clone,
    {
        let mut out = Vec::new();
        for _ in 0..n {
            let res = lb
                .clone()
                .oneshot(Request::new(String::new()))
                .await
                .unwrap();
            let chosen = res
                .extensions()
                .get::<Chosen>()
                .unwrap()
                .endpoint
                .to_string();
            out.push(format!("{chosen}:{}", res.status().as_u16()));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_endpoint_returns_by_itself_and_repeat_ejections_double() {
        let failing = Arc::new(AtomicBool::new(true));
        let lb = pair(failing.clone());
        assert_eq!(
            served(&lb, 4).await,
            ["bad:502", "good:200", "bad:502", "good:200"]
        );
        // Ejected after the second failure: only the good one for 30 s.
        assert_eq!(served(&lb, 3).await, ["good:200"; 3]);
        tokio::time::advance(29 * S).await;
        assert_eq!(served(&lb, 2).await, ["good:200"; 2]);
        tokio::time::advance(S).await;
        // Back, still failing: ejected again soon after its return, now for 60 s.
        let back = served(&lb, 4).await;
        assert_eq!(
            back.iter().filter(|s| *s == "bad:502").count(),
            2,
            "{back:?}"
        );
        tokio::time::advance(59 * S).await;
        assert_eq!(served(&lb, 2).await, ["good:200"; 2]);
        tokio::time::advance(S).await;
        failing.store(false, Ordering::SeqCst);
        let healed = served(&lb, 4).await;
        assert_eq!(
            healed.iter().filter(|s| *s == "bad:200").count(),
            2,
            "{healed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn marking_an_endpoint_healthy_ends_its_ejection() {
        let lb = pair(Arc::new(AtomicBool::new(true)));
        served(&lb, 4).await;
        assert!(!lb.endpoints()[0].healthy);
        assert!(lb.set_healthy("bad", true));
        assert!(lb.endpoints()[0].healthy);
        assert!(lb.set_healthy("good", false));
        assert!(!lb.endpoints()[1].healthy);
        assert!(!lb.set_healthy("nobody", true));
    }
}

#[cfg(test)]
mod more_tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::balance::{ConsistentHash, RoundRobin};

    fn named(
        name: &'static str,
        fail: bool,
    ) -> impl Service<
        Request<BalancedBody<String>>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + Sync {
        service_fn(move |_req: Request<BalancedBody<String>>| async move {
            let mut res = Response::new(name.to_owned());
            if fail {
                *res.status_mut() = StatusCode::BAD_GATEWAY;
                res.extensions_mut()
                    .insert(UpstreamFailure::Connect("refused".into()));
            }
            Ok::<_, Infallible>(res)
        })
    }

    async fn served<S2>(lb: &Balancer<S2>, uri: &str) -> String
    where
        S2: Service<Request<BalancedBody<String>>, Response = Response<String>, Error = Infallible>
            + Clone,
    {
        let req = Request::get(uri).body(String::new()).unwrap();
        let res = lb.clone().oneshot(req).await.unwrap();
        res.extensions()
            .get::<Chosen>()
            .unwrap()
            .endpoint
            .to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_capped_share_is_ejected() {
        let lb = Balancer::builder(RoundRobin::new())
            .endpoint("a", named("a", true))
            .endpoint("b", named("b", true))
            .endpoint("c", named("c", true))
            .retries(0)
            .passive_health(
                PassiveHealth::default()
                    .tcp_failures(1)
                    .max_ejected_percent(50),
            )
            .build();
        for _ in 0..30 {
            served(&lb, "/").await;
        }
        let ejected = lb.endpoints().iter().filter(|e| !e.healthy).count();
        assert_eq!(ejected, 1, "{:?}", lb.endpoints());
    }

    #[tokio::test]
    async fn the_hash_fallback_keys_requests_without_the_first_input() {
        let lb = Balancer::builder(ConsistentHash::new())
            .endpoint("a", named("a", false))
            .endpoint("b", named("b", false))
            .endpoint("c", named("c", false))
            .hash_on(HashOn::Header(http::HeaderName::from_static("x-user")))
            .hash_fallback(HashOn::QueryArg("u".into()))
            .build();
        for user in ["1", "2", "3", "4"] {
            let first = served(&lb, &format!("/?u={user}")).await;
            for _ in 0..10 {
                assert_eq!(served(&lb, &format!("/?u={user}")).await, first);
            }
        }
        // Neither input: spread round-robin, not stuck on one endpoint.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            seen.insert(served(&lb, "/").await);
        }
        assert_eq!(seen.len(), 3);
    }
}
