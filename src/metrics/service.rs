//! The metrics layer, service, response future and body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::Metrics;
use super::labels::{Name, RejectionLabels, RequestLabels, RouteLabels};
use crate::proxy::UpstreamInfo;
use crate::reject::AnsweredBy;
use crate::router::{ReportMatch, RouteMatch};

/// Counts every request into [`Metrics`].
///
/// ```
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_gateway::metrics::{Metrics, MetricsLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let metrics = Metrics::new();
/// let service = ServiceBuilder::new()
///     .layer(MetricsLayer::new(metrics.clone()))
///     .service(service_fn(|_req: Request<()>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
///     }));
/// let res = service.oneshot(Request::new(())).await.unwrap();
/// drop(res); // counted when the response body is done (here: dropped)
/// assert!(metrics.encode().contains("kong_http_requests_total"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Option<Metrics>,
}

/// The service built by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Option<Metrics>,
}

/// What is known of a request until its response body ends.
#[derive(Debug)]
struct Pending {
    metrics: Metrics,
    started: Instant,
    bytes_in: crate::body::Size,
    route: Name,
    service: Name,
    consumer: Name,
    bytes_out: u64,
}

pin_project! {
    /// Response future of [`MetricsService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

pin_project! {
    /// A response body that records latency and bandwidth when it ends or is dropped.
    #[derive(Debug)]
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }

    impl<B> PinnedDrop for MetricsBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.finish();
            }
        }
    }
}

// === impl MetricsLayer ===

impl MetricsLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics: Some(metrics),
        }
    }

    /// Counts nothing and costs next to nothing: for a stack whose metrics are switched off
    /// at run time without changing its type.
    pub fn disabled() -> Self {
        Self { metrics: None }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

// === impl MetricsService ===

impl<S> MetricsService<S> {
    inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<MetricsBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(metrics) = &self.metrics else {
            return ResponseFuture {
                inner: self.inner.call(req),
                pending: None,
            };
        };
        let bytes_in = crate::body::RequestBytes::of(&mut req);
        req.extensions_mut().insert(ReportMatch);
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(Pending {
                metrics: metrics.clone(),
                started: Instant::now(),
                bytes_in,
                route: None,
                service: None,
                consumer: None,
                bytes_out: 0,
            }),
        }
    }
}

// === impl ResponseFuture ===

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<MetricsBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(mut pending) = this.pending.take() else {
            // Disabled: pass the response through.
            return Poll::Ready(result.map(|res| {
                res.map(|inner| MetricsBody {
                    inner,
                    pending: None,
                })
            }));
        };
        let res = match result {
            Ok(res) => res,
            Err(err) => {
                pending.count(500, Some(AnsweredBy::SERVER));
                pending.finish();
                return Poll::Ready(Err(err));
            }
        };
        let ext = res.extensions();
        if let Some(matched) = ext.get::<RouteMatch>() {
            pending.route = matched.names.name.clone();
            pending.service = matched.names.service.clone();
        }
        if pending
            .metrics
            .shared
            .per_consumer
            .load(std::sync::atomic::Ordering::Relaxed)
            && let Some(consumer) = ext.get::<crate::identity::Consumer>()
        {
            let name = consumer.username.as_deref().unwrap_or(&consumer.id);
            pending.consumer = Some(Arc::from(name));
        }
        if let Some(UpstreamInfo { latency, .. }) = ext.get::<UpstreamInfo>() {
            let labels = RouteLabels {
                service: pending.service.clone(),
                route: pending.route.clone(),
            };
            let ms = latency.as_secs_f64() * 1000.0;
            pending
                .metrics
                .shared
                .local
                .observe_upstream_latency(&labels, ms);
        }
        let answered_by = ext.get::<AnsweredBy>().copied();
        pending.count(res.status().as_u16(), answered_by);
        Poll::Ready(Ok(res.map(|inner| MetricsBody {
            inner,
            pending: Some(pending),
        })))
    }
}

// === impl Pending ===

impl Pending {
    fn count(&self, code: u16, answered_by: Option<AnsweredBy>) {
        let shared = &self.metrics.shared;
        let labels = RequestLabels {
            service: self.service.clone(),
            route: self.route.clone(),
            code,
            source: match answered_by {
                None => "service",
                Some(AnsweredBy::CLIENT) => "client",
                Some(_) => "kong",
            },
            consumer: self.consumer.clone(),
        };
        shared.local.count_request(&labels);
        if let Some(by) = answered_by {
            let labels = RejectionLabels {
                service: self.service.clone(),
                route: self.route.clone(),
                by: by.as_str(),
            };
            shared.local.count_rejection(&labels);
        }
    }

    fn finish(self) {
        let shared = &self.metrics.shared;
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let route = RouteLabels {
            service: self.service,
            route: self.route,
        };
        shared.local.finish(
            &route,
            ms,
            &self.consumer,
            [("ingress", self.bytes_in.get()), ("egress", self.bytes_out)],
        );
    }
}

// === impl MetricsBody ===

impl<B: Body<Data = Bytes>> Body for MetricsBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(frame)), Some(pending)) = (&frame, this.pending.as_mut())
            && let Some(data) = frame.data_ref()
        {
            pending.bytes_out += data.len() as u64;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
