//! The `Router` service and its future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use pin_project_lite::pin_project;
use tower::Service;

use super::table::{Lookup, Table};
use super::{ReportMatch, Route, RouteError, RouteMatch};
use crate::body::ResponseBody;
use crate::future::{self, CallOrReject, Rejection};
use crate::reject;

/// Dispatches each request to the service of the route that matches it best.
///
/// Cheap to clone: the compiled table and the services are shared. Each request is sent to a
/// clone of its route's service, driven to readiness and called (tower's `oneshot`), so the
/// router itself is always ready, as axum's is: the route depends on the request, so its
/// backpressure (a [`Balancer`](crate::balance::Balancer) whose endpoints are all busy, a
/// `ConcurrencyLimit`) makes that request wait in its response future. Put `LoadShed` or
/// `ConcurrencyLimit` around a route's service, not around the router.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{ServiceExt, service_fn};
/// use tower_gateway::router::{Route, Router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let answer = |name: &'static str| {
///     service_fn(move |_req: Request<String>| async move {
///         Ok::<_, Infallible>(Response::new(name.to_owned()))
///     })
/// };
/// let router = Router::builder()
///     .route(Route::new().name("users").path("/api/users"), answer("users"))
///     .route(Route::new().name("orders").path("/api/orders").method(http::Method::GET), answer("orders"))
///     .build()
///     .unwrap();
/// let res = router.clone().oneshot(Request::get("/api/users/7").body(String::new()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 200);
/// let res = router.oneshot(Request::get("/elsewhere").body(String::new()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 404);
/// # }
/// ```
#[derive(Debug)]
pub struct Router<S> {
    shared: Arc<Shared<S>>,
    /// This handle's own clones of the route services it has used (at most
    /// [`LOCAL_SERVICES`]), so that requests on one connection do not clone a shared service
    /// each time. Filled from the second request on: a handle cloned for a single request (as
    /// axum does) never allocates it.
    local: Vec<(usize, S)>,
    reused: bool,
}

/// How many route services one router handle keeps clones of.
const LOCAL_SERVICES: usize = 8;

#[derive(Debug)]
struct Shared<S> {
    table: Table,
    services: Vec<S>,
}

/// Collects routes and their services; [`RouterBuilder::build`] compiles them.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::service_fn;
/// use tower_gateway::router::{Route, RouteError, Router};
///
/// let ok = service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::new()))
/// });
/// let router = Router::builder()
///     .route(Route::new().name("a").path("/a"), ok.clone())
///     .route(Route::new().name("b").path("b"), ok)
///     .build();
/// // A malformed route is refused when the router is built, not when a request comes.
/// assert!(matches!(router, Err(RouteError::InvalidPath { .. })));
/// ```
#[derive(Debug)]
pub struct RouterBuilder<S> {
    routes: Vec<Route>,
    services: Vec<S>,
    kong_matching: bool,
}

pin_project! {
    /// Response future of [`Router`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        inner: CallOrReject<S, Request<B>>,
        report: Option<RouteMatch>,
    }
}

// === impl Router ===

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            local: Vec::new(),
            reused: false,
        }
    }
}

impl<S> Router<S> {
    /// Starts a router.
    pub fn builder() -> RouterBuilder<S> {
        RouterBuilder {
            routes: Vec::new(),
            services: Vec::new(),
            kong_matching: false,
        }
    }
}

impl<S> RouterBuilder<S> {
    /// Adds a route and the service that handles its requests.
    pub fn route(mut self, route: Route, service: S) -> Self {
        self.routes.push(route);
        self.services.push(service);
        self
    }

    /// Kong's matching instead of this router's (the gateway does this for Kong files): a
    /// plain path is a raw string prefix (`/pre` matches `/prefix`, as Kong's router), and a
    /// request that only a route's method condition turned away gets `404`, not `405`.
    pub fn kong_matching(mut self, kong: bool) -> Self {
        self.kong_matching = kong;
        self
    }

    /// Compiles the routes; fails on the first malformed one.
    pub fn build(self) -> Result<Router<S>, RouteError> {
        let table = Table::build(&self.routes, self.kong_matching)?;
        Ok(Router {
            shared: Arc::new(Shared {
                table,
                services: self.services,
            }),
            local: Vec::new(),
            reused: false,
        })
    }
}

impl<S, B, ResB> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut report = None;
        let inner = match self.shared.table.lookup(&req) {
            Lookup::Found(index, matched) => {
                if matched.stripped_len > 0 {
                    strip_prefix(req.uri_mut(), matched.stripped_len);
                }
                if req.extensions().get::<ReportMatch>().is_some() {
                    report = Some(matched.clone());
                }
                req.extensions_mut().insert(matched);
                let first_call = !std::mem::replace(&mut self.reused, true);
                let local = match self.local.iter().position(|(i, _)| *i == index) {
                    Some(at) => Some(&mut self.local[at].1),
                    None if first_call => None,
                    None if self.local.len() < LOCAL_SERVICES => {
                        let service = self.shared.services[index].clone();
                        self.local.push((index, service));
                        self.local.last_mut().map(|(_, s)| s)
                    }
                    None => None,
                };
                match local {
                    Some(service) => future::call_ready(service, req),
                    None => CallOrReject::call(self.shared.services[index].clone(), req),
                }
            }
            Lookup::MethodNotAllowed(methods) => CallOrReject::reject_with(Rejection {
                by: reject::AnsweredBy::ROUTER,
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: reject::METHOD_NOT_ALLOWED,
                header: allow_header(&methods).map(|allow| (header::ALLOW, allow)),
                json: None,
            }),
            Lookup::NotFound => CallOrReject::reject(
                reject::AnsweredBy::ROUTER,
                StatusCode::NOT_FOUND,
                reject::NO_ROUTE,
            ),
        };
        ResponseFuture { inner, report }
    }
}

/// Removes the first `len` bytes of the path, keeping the query.
fn strip_prefix(uri: &mut Uri, len: usize) {
    let rest = &uri.path()[len..];
    // What a regex or a raw string prefix leaves may start mid-segment (`/pre` of `/prefix`):
    // the upstream path still starts with `/`.
    let slash = if rest.starts_with('/') { "" } else { "/" };
    let path_and_query = match uri.query() {
        Some(q) => format!("{slash}{rest}?{q}"),
        None => format!("{slash}{rest}"),
    };
    let mut parts = std::mem::take(uri).into_parts();
    // A suffix of a valid path plus the same query is valid; should it fail, keep the request
    // whole rather than panic.
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
    }
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
}

fn allow_header(methods: &[Method]) -> Option<HeaderValue> {
    let joined = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&joined).ok()
}

// === impl ResponseFuture ===

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Some(matched) = this.report.take() {
            res.extensions_mut().insert(matched);
        }
        Poll::Ready(Ok(res))
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
