//! A gateway replaced whole while it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::Request;
use tower::Service;

use super::{Gateway, RouteService};
use crate::router::Router;

/// A [`Gateway`] that can be replaced while it serves (the Admin API's changes, a reloaded
/// file): [`swap`](Self::swap) puts a new one in place atomically; each request is routed by
/// the gateway current when it starts and finishes on it, so nothing in flight is dropped
/// or mixed. Build the replacement with [`Gateway::rebuild`] so that it takes over the
/// balancers, breakers and rate-limit counters of whatever did not change.
///
/// ```
/// use tower_gateway::config::{Config, Gateway, LiveGateway, Settings};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let yaml = |path: &str| format!(
///     "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n      - paths: [{path}]\n"
/// );
/// let settings = Settings::default();
/// let first = Gateway::from_config(&Config::from_yaml(&yaml("/a")).unwrap(), &settings).unwrap();
/// let live = LiveGateway::new(first);
/// let service = live.service(); // serve this; it follows every swap
/// let next = Config::from_yaml(&yaml("/b")).unwrap();
/// live.swap(Gateway::rebuild(&next, &settings, &live.current()).unwrap());
/// assert_eq!(live.current().routes()[0].matches, "/b");
/// # drop(service);
/// # }
/// ```
#[derive(Clone)]
pub struct LiveGateway {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Gateway>,
    /// Bumped after each swap, so that service handles notice it with one load.
    generation: AtomicU64,
}

impl std::fmt::Debug for LiveGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveGateway")
            .field(
                "generation",
                &self.shared.generation.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl LiveGateway {
    /// Serves `gateway` until the first swap.
    pub fn new(gateway: Gateway) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(gateway),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The gateway serving now.
    pub fn current(&self) -> Arc<Gateway> {
        self.shared.current.load_full()
    }

    /// Puts `gateway` in place: requests that start from now on are routed by it.
    pub fn swap(&self, gateway: Gateway) {
        self.shared.current.store(Arc::new(gateway));
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// A service that routes each request with the gateway current when it starts.
    pub fn service(&self) -> LiveRouter {
        let generation = self.shared.generation.load(Ordering::Acquire);
        LiveRouter {
            live: self.clone(),
            router: self.shared.current.load().router(),
            generation,
        }
    }
}

/// The router of a [`LiveGateway`]; built by [`LiveGateway::service`].
///
/// Each handle (one per connection, as servers clone it) keeps the current router and
/// checks one counter per request to notice a swap.
#[derive(Clone, Debug)]
pub struct LiveRouter {
    live: LiveGateway,
    router: Router<RouteService>,
    generation: u64,
}

impl<B> Service<Request<B>> for LiveRouter
where
    Router<RouteService>: Service<Request<B>>,
{
    type Response = <Router<RouteService> as Service<Request<B>>>::Response;
    type Error = <Router<RouteService> as Service<Request<B>>>::Error;
    type Future = <Router<RouteService> as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let generation = self.live.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.router = self.live.shared.current.load().router();
            self.generation = generation;
        }
        self.router.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.router.call(req)
    }
}
