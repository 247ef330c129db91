//! A route's plugins, in priority order, around its upstream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::util::{BoxCloneSyncService, MapRequest, MapResponse};
use tower::{Layer, Service, ServiceExt};

use super::{
    GatewayBody, HostRewrite, Next, PluginProtocols, PluginRequest, UpstreamBody, UpstreamResponse,
};
use crate::auth::BodyAuthLayer;
use crate::body::{RequestBody, ResponseBody};

/// One configured plugin as a layer of a route's stack, type-erased. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RouteLayer(Arc<dyn Fn(Next) -> Next + Send + Sync>);

impl std::fmt::Debug for RouteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteLayer")
    }
}

impl RouteLayer {
    /// A layer whose service answers with the body type it was given.
    pub(crate) fn new<L>(layer: L) -> Self
    where
        L: Layer<Next> + Send + Sync + 'static,
        L::Service: Service<PluginRequest, Response = UpstreamResponse, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<PluginRequest>>::Future: Send + 'static,
    {
        Self(Arc::new(move |next| {
            BoxCloneSyncService::new(layer.layer(next))
        }))
    }

    /// A layer of this crate, whose service wraps the body in one more [`ResponseBody`].
    pub(crate) fn wrapping<L>(layer: L) -> Self
    where
        L: Layer<Next> + Send + Sync + 'static,
        L::Service: Service<
                PluginRequest,
                Response = http::Response<ResponseBody<UpstreamBody>>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<PluginRequest>>::Future: Send + 'static,
    {
        Self(Arc::new(move |next| {
            BoxCloneSyncService::new(MapResponse::new(
                layer.layer(next),
                flatten_response as fn(_) -> _,
            ))
        }))
    }

    fn apply(&self, next: Next) -> Next {
        (self.0)(next)
    }

    /// This layer for the requests of `protocols` only; the others go straight on.
    pub(crate) fn for_protocols(self, protocols: PluginProtocols) -> Self {
        Self(Arc::new(move |next: Next| {
            let plugin = self.apply(next.clone());
            BoxCloneSyncService::new(ForProtocols {
                plugin,
                bypass: next,
                protocols,
            })
        }))
    }
}

/// A plugin's service for the request protocols it runs for (Kong's `protocols`).
#[derive(Clone)]
struct ForProtocols {
    plugin: Next,
    bypass: Next,
    protocols: PluginProtocols,
}

impl Service<PluginRequest> for ForProtocols {
    type Response = UpstreamResponse;
    type Error = Infallible;
    type Future = <Next as Service<PluginRequest>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        std::task::ready!(self.plugin.poll_ready(cx))?;
        self.bypass.poll_ready(cx)
    }

    fn call(&mut self, req: PluginRequest) -> Self::Future {
        let secure = req
            .extensions()
            .get::<crate::identity::ConnectionInfo>()
            .is_some_and(crate::identity::ConnectionInfo::is_secure);
        let grpc = crate::server::is_grpc(req.headers());
        if self.protocols.allows(secure, grpc) {
            self.plugin.call(req)
        } else {
            self.bypass.call(req)
        }
    }
}

fn flatten_response(res: http::Response<ResponseBody<UpstreamBody>>) -> UpstreamResponse {
    res.map(ResponseBody::flatten)
}

fn flatten_request(req: Request<RequestBody<GatewayBody>>) -> PluginRequest {
    req.map(RequestBody::flatten)
}

pin_project! {
    /// The response future of a [`RouteService`].
    pub struct RouteFuture {
        #[pin]
        kind: FutureKind,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind {
        // A route without plugins: the balancer's own future.
        Direct { #[pin] future: <HostRewrite as Service<PluginRequest>>::Future },
        // A route with plugins: the boxed future of its stack.
        Stacked { #[pin] future: <Next as Service<PluginRequest>>::Future },
    }
}

impl Future for RouteFuture {
    type Output = Result<UpstreamResponse, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Direct { future } => future.poll(cx),
            FutureKindProj::Stacked { future } => future.poll(cx),
        }
    }
}

impl std::fmt::Debug for RouteFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteFuture").finish_non_exhaustive()
    }
}

/// What a route runs: its plugins in priority order around its service's balancer. A route
/// without plugins calls the balancer directly (no boxed service, no boxed future per
/// request). A route without authentication removes client-sent identity headers
/// (`X-Consumer-*`) first, as authentication does.
#[derive(Clone)]
pub struct RouteService {
    inner: RouteKind,
    /// Whether `call` removes identity headers (no authentication step does).
    strip_identity: bool,
}

#[derive(Clone)]
enum RouteKind {
    Direct(HostRewrite),
    Stacked(Next),
}

impl std::fmt::Debug for RouteService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            RouteKind::Direct(_) => "without plugins",
            RouteKind::Stacked(_) => "with plugins",
        };
        f.debug_tuple("RouteService").field(&kind).finish()
    }
}

impl Service<Request<Incoming>> for RouteService {
    type Response = UpstreamResponse;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match &mut self.inner {
            RouteKind::Direct(service) => service.poll_ready(cx),
            RouteKind::Stacked(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<Incoming>) -> RouteFuture {
        let mut req = req.map(RequestBody::new);
        if self.strip_identity {
            crate::auth::strip_identity(req.headers_mut());
        }
        let kind = match &mut self.inner {
            RouteKind::Direct(service) => FutureKind::Direct {
                future: service.call(req),
            },
            RouteKind::Stacked(service) => FutureKind::Stacked {
                future: service.call(req),
            },
        };
        RouteFuture { kind }
    }
}

/// The plugins of one route, collected before they are stacked.
#[derive(Debug, Default)]
pub(crate) struct Stack {
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    priority: i32,
    name: String,
    kind: StepKind,
}

#[derive(Debug)]
enum StepKind {
    Plugin {
        /// The instance for everybody (none: requests pass straight on) …
        default: Option<RouteLayer>,
        /// … and consumers' own instances, by consumer id.
        own: Vec<(Arc<str>, RouteLayer)>,
    },
    Auth(BodyAuthLayer),
}

impl Stack {
    /// Adds a plugin's layer for everybody and consumers' own layers.
    pub(crate) fn plugin(
        &mut self,
        name: &str,
        priority: i32,
        default: Option<RouteLayer>,
        own: Vec<(Arc<str>, RouteLayer)>,
    ) {
        if default.is_none() && own.is_empty() {
            return;
        }
        self.steps.push(Step {
            priority,
            name: name.to_owned(),
            kind: StepKind::Plugin { default, own },
        });
    }

    /// Adds the authentication step (for a route without authentication, the removal of
    /// client-sent identity headers).
    pub(crate) fn auth(&mut self, priority: i32, layer: BodyAuthLayer) {
        self.steps.push(Step {
            priority,
            name: String::new(),
            kind: StepKind::Auth(layer),
        });
    }

    /// The route's service: the steps from the lowest priority (next to `upstream`) to the
    /// highest (first to see a request).
    pub(crate) fn around(mut self, upstream: HostRewrite) -> RouteService {
        // Without authentication, the route's service strips identity headers itself.
        let before = self.steps.len();
        self.steps
            .retain(|step| !matches!(&step.kind, StepKind::Auth(auth) if auth.strips_only()));
        let strip_identity = self.steps.len() < before;
        if self.steps.is_empty() {
            return RouteService {
                inner: RouteKind::Direct(upstream),
                strip_identity,
            };
        }
        self.steps
            .sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        let mut next: Next = BoxCloneSyncService::new(upstream);
        for step in self.steps.into_iter().rev() {
            next = match step.kind {
                StepKind::Auth(auth) => BoxCloneSyncService::new(MapResponse::new(
                    auth.layer(MapRequest::new(next, flatten_request as fn(_) -> _)),
                    flatten_response as fn(_) -> _,
                )),
                StepKind::Plugin { default, own } => {
                    let default = match default {
                        Some(layer) => layer.apply(next.clone()),
                        None => next.clone(),
                    };
                    if own.is_empty() {
                        default
                    } else {
                        let own = own
                            .into_iter()
                            .map(|(id, layer)| (id, layer.apply(next.clone())))
                            .collect();
                        BoxCloneSyncService::new(PerConsumer {
                            default,
                            own: Arc::new(own),
                        })
                    }
                }
            };
        }
        RouteService {
            inner: RouteKind::Stacked(next),
            strip_identity,
        }
    }
}

/// A plugin's instance chosen by the authenticated consumer: the consumer's own, or the one
/// for everybody.
#[derive(Clone)]
struct PerConsumer {
    default: Next,
    own: Arc<HashMap<Arc<str>, Next>>,
}

impl Service<PluginRequest> for PerConsumer {
    type Response = UpstreamResponse;
    type Error = Infallible;
    type Future = <Next as Service<PluginRequest>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.default.poll_ready(cx)
    }

    fn call(&mut self, req: PluginRequest) -> Self::Future {
        let own = req
            .extensions()
            .get::<crate::identity::Consumer>()
            .and_then(|c| self.own.get(&c.id))
            .cloned();
        match own {
            None => self.default.call(req),
            Some(service) => Box::pin(service.oneshot(req)),
        }
    }
}
