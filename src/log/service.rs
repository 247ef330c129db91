//! The access-log layer, service and response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::Format;
use super::LineWriter;
use super::body::LogBody;
use super::record::{Record, Sink};
use crate::proxy::{ClientFault, UpstreamFailure, UpstreamInfo};
use crate::router::{ReportMatch, RouteMatch};

/// Logs every finished request with [`AccessLog`].
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_gateway::log::{AccessLogLayer, Format, LineWriter};
///
/// // JSON lines on stdout, or combined lines into a file through a non-blocking writer.
/// let json = ServiceBuilder::new().layer(AccessLogLayer::json());
/// let path = std::env::temp_dir().join("tower-gateway-doc-access.log");
/// let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
/// let to_file = AccessLogLayer::combined().write_to(Format::Combined, LineWriter::new(file));
/// # let _ = (json, to_file);
/// ```
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    format: Format,
    sinks: Option<Arc<[Sink]>>,
}

/// Writes one access-log event per request when its response body ends (see the
/// [module docs](super)).
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    format: Format,
    sinks: Option<Arc<[Sink]>>,
}

pin_project! {
    /// Response future of [`AccessLog`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<Box<Record>>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response head: the client went away while the request was
            // being handled. Logged as nginx does, with status 499.
            if let Some(mut record) = this.project().record.take() {
                record.status = CLIENT_CLOSED_REQUEST;
                record.emit(false);
            }
        }
    }
}

/// nginx's non-standard status for a request whose client closed the connection first.
const CLIENT_CLOSED_REQUEST: http::StatusCode = match http::StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => http::StatusCode::BAD_REQUEST,
};

// === impl AccessLogLayer ===

impl AccessLogLayer {
    /// A layer writing events in `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            sinks: None,
        }
    }

    /// Structured events, one field per value (format them as JSON lines with a JSON
    /// subscriber).
    pub fn json() -> Self {
        Self::new(Format::Json)
    }

    /// nginx's `combined` format, plus the latency in seconds, the route and the request id.
    pub fn combined() -> Self {
        Self::new(Format::Combined)
    }

    /// Writes each record as a line in `format` to `writer` instead of a `tracing` event;
    /// call again for more destinations (each with its format). A JSON line has the shape of
    /// `tracing-subscriber`'s JSON events (`timestamp`, `level`, `fields`, `target`); a
    /// combined line is nginx's, followed by the latency, the route and the request id.
    pub fn write_to(mut self, format: Format, writer: LineWriter) -> Self {
        let mut sinks: Vec<Sink> = self.sinks.as_deref().unwrap_or_default().to_vec();
        sinks.push(Sink { format, writer });
        self.sinks = Some(sinks.into());
        self
    }

    /// Writes out what the layer's [`LineWriter`]s still buffer (before the process exits).
    pub fn flush(&self) {
        for sink in self.sinks.as_deref().unwrap_or_default() {
            sink.writer.flush();
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            format: self.format,
            sinks: self.sinks.clone(),
        }
    }
}

// === impl AccessLog ===

impl<S> AccessLog<S> {
    inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body,
{
    type Response = Response<LogBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let client = crate::identity::peer_addr(req.extensions()).map(|p| p.ip().to_canonical());
        let bytes_in = crate::body::RequestBytes::of(&mut req);
        // Under axum's `nest_service`, the URI as the client sent it, not as nested.
        #[cfg(feature = "axum")]
        let uri = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or(req.uri(), |original| &original.0);
        #[cfg(not(feature = "axum"))]
        let uri = req.uri();
        let record = Box::new(Record::new(
            self.format,
            self.sinks.clone(),
            req.method(),
            uri,
            req.version(),
            req.headers(),
            client,
            bytes_in,
        ));
        // Ask the router to say, in the response, which route it chose.
        req.extensions_mut().insert(ReportMatch);
        ResponseFuture {
            inner: self.inner.call(req),
            record: Some(record),
        }
    }
}

// === impl ResponseFuture ===

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: http_body::Body,
{
    type Output = Result<Response<LogBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(mut record) = this.record.take() else {
            return Poll::Pending;
        };
        match result {
            Ok(res) => {
                record.status = res.status();
                let ext = res.extensions();
                if let Some(matched) = ext.get::<RouteMatch>() {
                    record.route = matched.names.name.clone();
                    record.service = matched.names.service.clone();
                }
                let upstream = ext.get::<UpstreamInfo>();
                record.upstream = upstream.and_then(|u| u.remote_addr);
                record.upstream_latency = upstream.map(|u| u.latency);
                record.chosen = ext.get::<crate::balance::Chosen>().cloned();
                record.consumer = ext
                    .get::<crate::identity::Consumer>()
                    .map(|c| c.username.clone().unwrap_or_else(|| c.id.clone()));
                record.failure = ext
                    .get::<UpstreamFailure>()
                    .map(ToString::to_string)
                    .or_else(|| ext.get::<ClientFault>().map(ToString::to_string));
                Poll::Ready(Ok(res.map(|body| LogBody::new(body, record))))
            }
            Err(err) => {
                // The inner service failed: the server closes the connection without an answer.
                record.status = http::StatusCode::INTERNAL_SERVER_ERROR;
                record.emit(false);
                Poll::Ready(Err(err))
            }
        }
    }
}
