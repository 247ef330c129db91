//! The response body every layer and service of this crate returns.
//!
//! A layer that can answer on its own (a 404 from the router, a 502 from the proxy, a 429 from a
//! rate limiter) needs a body type it controls, while the body of the inner service passes
//! through untouched. [`ResponseBody`] is that choice, used everywhere in the crate: either the
//! inner service's body, or a small, fully buffered body produced by the gateway itself (see
//! [`crate::reject`]).
//!
//! [`RequestBody`] is the request-side counterpart, for the one layer that reads request
//! bodies ([`BodyAuth`](crate::auth::BodyAuth), for API keys in the body).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's body or a body produced by the gateway.
    ///
    /// Stacked layers nest it (`ResponseBody<ResponseBody<B>>`); that costs nothing at run time,
    /// and [`flatten`](Self::flatten) removes one level where a single type is wanted. At an
    /// axum boundary the nesting disappears: axum boxes a service's body into its own `Body`.
    ///
    /// ```
    /// use http_body_util::{BodyExt, Full};
    /// use tower_gateway::body::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A layer passes its inner service's body through, or answers with one of its own.
    /// let passed: ResponseBody<Full<bytes::Bytes>> = ResponseBody::new(Full::from("upstream"));
    /// let own: ResponseBody<Full<bytes::Bytes>> = ResponseBody::full(r#"{"message":"no"}"#);
    /// assert_eq!(passed.collect().await.unwrap().to_bytes(), "upstream");
    /// assert_eq!(own.collect().await.unwrap().to_bytes(), r#"{"message":"no"}"#);
    ///
    /// let nested = ResponseBody::new(ResponseBody::new(Full::from("deep")));
    /// let flat: ResponseBody<Full<bytes::Bytes>> = nested.flatten();
    /// assert_eq!(flat.collect().await.unwrap().to_bytes(), "deep");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        // The inner service's body, passed through unchanged.
        Inner { #[pin] body: B },
        // A complete body written by the gateway; `None` once sent.
        Full { data: Option<Bytes> },
    }
}

// === impl ResponseBody ===

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body produced by the gateway, sent in one frame.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }

    /// The inner service's body, unless the gateway wrote this one.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Inner { body } => Some(body),
            Kind::Full { .. } => None,
        }
    }
}

impl<B> ResponseBody<ResponseBody<B>> {
    /// One level of nesting less: the same bytes, as the inner type (a body the gateway wrote
    /// stays one).
    pub fn flatten(self) -> ResponseBody<B> {
        match self.kind {
            Kind::Inner { body } => body,
            Kind::Full { data } => ResponseBody {
                kind: Kind::Full { data },
            },
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

pin_project! {
    /// A request body as a layer that may have read it passes it on: the client's stream
    /// untouched, or the bytes the layer read (perhaps rewritten), or the part it read
    /// followed by the rest of the stream.
    ///
    /// [`BodyAuth`](crate::auth::BodyAuth) hands this to its inner service; a body it did not
    /// need to read streams through as it came.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use tower_gateway::body::RequestBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let streamed = RequestBody::new(Full::new(Bytes::from("as sent")));
    /// assert_eq!(streamed.collect().await.unwrap().to_bytes(), "as sent");
    /// // What a layer read and rewrote (a credential removed from a form body, say).
    /// let rewritten: RequestBody<Full<Bytes>> = RequestBody::buffered(Bytes::from("a=1"), None);
    /// assert_eq!(rewritten.collect().await.unwrap().to_bytes(), "a=1");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        kind: RequestKind<B>,
    }
}

pin_project! {
    #[project = RequestKindProj]
    #[derive(Debug)]
    enum RequestKind<B> {
        Stream { #[pin] body: B },
        Buffered { data: Option<Bytes>, trailers: Option<http::HeaderMap> },
        // A read that stopped at a size limit: what was read, then the rest of the stream.
        Partial { head: Option<Bytes>, rest: Pin<Box<B>> },
    }
}

// === impl RequestBody ===

impl<B> RequestBody<B> {
    /// The client's body, streamed through unchanged.
    pub fn new(body: B) -> Self {
        Self {
            kind: RequestKind::Stream { body },
        }
    }

    /// A body read whole: its bytes and trailers.
    pub fn buffered(data: Bytes, trailers: Option<http::HeaderMap>) -> Self {
        Self {
            kind: RequestKind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    /// The first `head` bytes of `rest`, already read, followed by what `rest` still yields.
    pub fn partial(head: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: RequestKind::Partial {
                head: (!head.is_empty()).then_some(head),
                rest,
            },
        }
    }
}

impl<B: Unpin> RequestBody<RequestBody<B>> {
    /// One level of nesting less: the same bytes, in the same order, as the inner type.
    pub fn flatten(self) -> RequestBody<B> {
        match self.kind {
            RequestKind::Stream { body } => body,
            RequestKind::Buffered { data, trailers } => RequestBody {
                kind: RequestKind::Buffered { data, trailers },
            },
            RequestKind::Partial { head, rest } => {
                let rest = Pin::into_inner(rest);
                match rest.kind {
                    RequestKind::Stream { body } => RequestBody {
                        kind: RequestKind::Partial {
                            head,
                            rest: Box::pin(body),
                        },
                    },
                    RequestKind::Buffered { data, trailers } => RequestBody {
                        kind: RequestKind::Buffered {
                            data: concat(head, data),
                            trailers,
                        },
                    },
                    RequestKind::Partial { head: inner, rest } => RequestBody {
                        kind: RequestKind::Partial {
                            head: concat(head, inner),
                            rest,
                        },
                    },
                }
            }
        }
    }
}

fn concat(first: Option<Bytes>, second: Option<Bytes>) -> Option<Bytes> {
    match (first, second) {
        (Some(a), Some(b)) => {
            let mut joined = bytes::BytesMut::with_capacity(a.len() + b.len());
            joined.extend_from_slice(&a);
            joined.extend_from_slice(&b);
            Some(joined.freeze())
        }
        (a, b) => a.or(b),
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            RequestKindProj::Stream { body } => body.poll_frame(cx),
            RequestKindProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            RequestKindProj::Partial { head, rest } => match head.take() {
                Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
                None => rest.as_mut().poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Stream { body } => body.is_end_stream(),
            RequestKind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            RequestKind::Partial { head, rest } => head.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Stream { body } => body.size_hint(),
            RequestKind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestKind::Partial { head, rest } => {
                let read = head.as_ref().map_or(0, |h| h.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
        }
    }
}

/// How long a client may take to send a request body: at most `between_reads` between two
/// reads the gateway is waiting on (nginx `client_body_timeout`, 60 s), and, when set, at most
/// `total` from the first read to the end (Envoy's `request_timeout`). Time the gateway spends
/// not reading (an upstream that takes the body slowly) does not count against the client.
///
/// The [`Server`](crate::server::Server) carries its setting to every request in the
/// [`ConnectionInfo`](crate::identity::ConnectionInfo); the
/// [`ReverseProxy`](crate::proxy::ReverseProxy) applies it while it streams the body, and
/// answers `408` when it runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The longest wait for the next piece of the body.
    pub between_reads: std::time::Duration,
    /// The longest time for the whole body, if any.
    pub total: Option<std::time::Duration>,
}

impl BodyTimeouts {
    /// nginx's default: 60 s between reads, no total.
    pub const DEFAULT: Self = Self {
        between_reads: std::time::Duration::from_secs(60),
        total: None,
    };
}

impl Default for BodyTimeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How many bytes of a request's body the proxy has sent upstream so far: put in a request's
/// extensions (the access log and the metrics do it for bodies of unknown length: chunked
/// HTTP/1.1, HTTP/2 without `content-length`, gRPC streams), counted by
/// [`ReverseProxy`](crate::proxy::ReverseProxy) as the body streams. Cheap to clone: clones
/// share the count.
///
/// ```
/// use tower_gateway::body::RequestBytes;
///
/// // Shared by the request body that counts what it yields and whoever reports it (the access
/// // log reads it once the request is done).
/// let bytes = RequestBytes::new();
/// let seen_by_log = bytes.clone();
/// assert_eq!(seen_by_log.get(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestBytes(Arc<AtomicU64>);

impl RequestBytes {
    /// A count at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The request's size as far as it is known now: its `Content-Length`, or, for a body of
    /// unknown length, a counter put in its extensions (shared with whoever put one there
    /// first) and read once the exchange is over.
    pub(crate) fn of<B>(req: &mut http::Request<B>) -> Size {
        let headers = req.headers();
        if let Some(length) = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            return Size::Known(length);
        }
        // HTTP/1.1 without a length or `Transfer-Encoding` has no body.
        let streamed = headers.contains_key(http::header::TRANSFER_ENCODING)
            || req.version() == http::Version::HTTP_2;
        if !streamed {
            return Size::Known(0);
        }
        let counter = req.extensions_mut().get_or_insert_default::<RequestBytes>();
        Size::Counted(counter.clone())
    }
}

/// A request body's size: known from its head, or counted as it streams.
#[derive(Debug, Clone)]
pub(crate) enum Size {
    Known(u64),
    Counted(RequestBytes),
}

impl Size {
    /// The size now.
    pub(crate) fn get(&self) -> u64 {
        match self {
            Size::Known(n) => *n,
            Size::Counted(counter) => counter.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    #[tokio::test]
    async fn full_body_yields_its_bytes_once_with_an_exact_size() {
        let body = ResponseBody::<Empty<Bytes>>::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn a_partly_read_request_body_yields_the_read_part_then_the_rest() {
        let rest = Box::pin(http_body_util::Full::new(Bytes::from_static(b" world")));
        let body = RequestBody::partial(Bytes::from_static(b"hello"), rest);
        assert_eq!(body.size_hint().exact(), Some(11));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello world");
    }

    #[tokio::test]
    async fn flattened_request_bodies_keep_their_bytes_in_order() {
        type Inner = RequestBody<http_body_util::Full<Bytes>>;
        let full = |s: &'static str| http_body_util::Full::new(Bytes::from_static(s.as_bytes()));
        let cases: Vec<(RequestBody<Inner>, &str)> = vec![
            (RequestBody::new(RequestBody::new(full("stream"))), "stream"),
            (
                RequestBody::buffered(Bytes::from_static(b"read"), None),
                "read",
            ),
            (
                RequestBody::partial(
                    Bytes::from_static(b"head "),
                    Box::pin(RequestBody::new(full("rest"))),
                ),
                "head rest",
            ),
            (
                RequestBody::partial(
                    Bytes::from_static(b"a"),
                    Box::pin(RequestBody::partial(
                        Bytes::from_static(b"b"),
                        Box::pin(full("c")),
                    )),
                ),
                "abc",
            ),
            (
                RequestBody::partial(
                    Bytes::from_static(b"x"),
                    Box::pin(RequestBody::buffered(Bytes::from_static(b"y"), None)),
                ),
                "xy",
            ),
        ];
        for (body, expected) in cases {
            let bytes = body.flatten().collect().await.unwrap().to_bytes();
            assert_eq!(&bytes[..], expected.as_bytes());
        }
        let gateway_made = ResponseBody::<ResponseBody<Empty<Bytes>>>::full("429");
        let bytes = gateway_made.flatten().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"429");
    }

    #[tokio::test]
    async fn a_buffered_request_body_keeps_its_trailers() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        let body =
            RequestBody::<Empty<Bytes>>::buffered(Bytes::from_static(b"a=1"), Some(trailers));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-sum"], "1");
        assert_eq!(&collected.to_bytes()[..], b"a=1");
    }

    #[test]
    fn empty_full_body_is_at_end_of_stream() {
        let body = ResponseBody::<Empty<Bytes>>::full(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}

// === BoxBody ===

/// Any response body, boxed: the one type a whole stack's responses can be named by (each of
/// this crate's layers wraps its inner body in one more [`ResponseBody`], and some count
/// bytes on the way, so a full stack's own body type is long). One allocation per response;
/// under axum there is no need, axum boxes into its own `Body` already.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, crate::BoxError>;

/// A layer that boxes its service's response body into a [`BoxBody`]: put it outermost, and
/// the stack's type is `Service<Request<..>, Response = Response<BoxBody>>`, which
/// `tower::util::BoxCloneService` can then name.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use hyper::body::Incoming;
/// use tower::ServiceBuilder;
/// use tower::util::BoxCloneService;
/// use tower_gateway::body::{BoxBody, boxed};
/// use tower_gateway::log::AccessLogLayer;
/// use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
/// use tower_gateway::request_id::RequestIdLayer;
///
/// /// What the application stores and hands to its server.
/// type Gateway = BoxCloneService<Request<Incoming>, Response<BoxBody>, Infallible>;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new("http://127.0.0.1:3000")?);
/// let gateway: Gateway = BoxCloneService::new(
///     ServiceBuilder::new()
///         .layer(boxed())
///         .layer(RequestIdLayer::new())
///         .layer(AccessLogLayer::combined())
///         .service(proxy),
/// );
/// # let _ = gateway;
/// # Ok(()) }
/// ```
#[allow(clippy::type_complexity)]
pub fn boxed<B>() -> tower::util::MapResponseLayer<fn(http::Response<B>) -> http::Response<BoxBody>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    tower::util::MapResponseLayer::new(|res: http::Response<B>| {
        res.map(|body| {
            http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
                body,
                Into::into,
            ))
        })
    })
}

// === BalancedBody ===

/// The request body an endpoint service receives from a [`Balancer`](crate::balance::Balancer).
///
/// While no endpoint has read it, the balancer can still send the request to another endpoint
/// (after a connection failure); the first read hands it over for good. A
/// [`ReverseProxy<B>`](crate::proxy::ReverseProxy) takes requests with either body, `B` or
/// `BalancedBody<B>`, on one connection pool: the same proxy serves a plain route and a
/// balancer's endpoint.
#[derive(Debug)]
pub struct BalancedBody<B> {
    kind: Balanced<B>,
}

#[derive(Debug)]
enum Balanced<B> {
    /// No retry possible: the body itself.
    Direct(B),
    /// The client's body had ended before it was sent.
    Empty,
    /// Parked where the balancer can take it back until the first read.
    Parked(Arc<Mutex<Option<B>>>),
    /// Read by this attempt.
    Taken(B),
}

/// Where a retriable body waits.
pub(crate) type Slot<B> = Arc<Mutex<Option<B>>>;

impl<B> BalancedBody<B> {
    pub(crate) fn direct(body: B) -> Self {
        Self {
            kind: Balanced::Direct(body),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Balanced::Empty,
        }
    }

    pub(crate) fn parked(slot: Slot<B>) -> Self {
        Self {
            kind: Balanced::Parked(slot),
        }
    }
}

/// Whether a parked body is still there (no endpoint read it).
pub(crate) fn unread<B>(slot: &Slot<B>) -> bool {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

impl<B> Body for BalancedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut self.kind;
        if let Balanced::Parked(slot) = this {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            *this = match taken {
                Some(body) => Balanced::Taken(body),
                // Another attempt took it (cannot happen: attempts are sequential).
                None => Balanced::Empty,
            };
        }
        match this {
            Balanced::Direct(body) | Balanced::Taken(body) => Pin::new(body).poll_frame(cx),
            Balanced::Empty | Balanced::Parked(_) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Balanced::Direct(body) | Balanced::Taken(body) => body.is_end_stream(),
            Balanced::Empty => true,
            Balanced::Parked(slot) => slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Balanced::Direct(body) | Balanced::Taken(body) => body.size_hint(),
            Balanced::Empty => SizeHint::with_exact(0),
            Balanced::Parked(slot) => slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}
