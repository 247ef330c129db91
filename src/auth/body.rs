//! `BodyAuth`: authentication that may read the request body first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::form::FormKind;
use super::layer::Policy;
use super::service::{decide, strip};
use super::{AuthLayer, Consumer};
use crate::body::{RequestBody, ResponseBody};
use crate::future::{CallOrReject, Rejection};

/// How much of a body [`BodyAuth`] reads by default: 8 KiB, nginx's (and so Kong's)
/// `client_body_buffer_size`. Kong does not look into a larger body, which nginx keeps in a
/// file; neither does this layer.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024;

/// [`AuthLayer`] for authenticators that read the request body; built by
/// [`AuthLayer::reading_body`].
///
/// When one of its authenticators [reads bodies](super::Authenticator::reads_body) and the
/// request has a form-urlencoded, JSON or multipart form-data body of at most
/// [`max_body`](Self::max_body) bytes, the layer reads that body before authenticating, then
/// hands the inner service the bytes (rewritten when a credential was hidden, with
/// `Content-Length` set to match). Every other body streams through untouched, and a
/// request whose authenticators do not read bodies costs what it costs under [`Auth`](super::Auth).
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers};
/// use tower_gateway::body::RequestBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let consumers = Consumers::new();
/// consumers.insert(Consumer::new("c-1").username("test-user"));
/// consumers.add_api_key("test-user", "test-api-key").unwrap();
/// let key_auth = ApiKey::new(consumers).in_body(true).hide_credentials(true);
///
/// let service = ServiceBuilder::new()
///     .layer(AuthLayer::new(key_auth).reading_body())
///     .service(service_fn(|req: Request<RequestBody<Full<Bytes>>>| async move {
///         let body = req.into_body().collect().await?.to_bytes();
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
///     }));
///
/// let req = Request::post("/orders")
///     .header("content-type", "application/x-www-form-urlencoded")
///     .body(Full::new(Bytes::from("apikey=test-api-key&item=7")))
///     .unwrap();
/// let res = service.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// // The upstream saw the form without the key.
/// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "item=7");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BodyAuthLayer {
    auth: AuthLayer,
    max_body: usize,
}

impl BodyAuthLayer {
    pub(crate) fn new(auth: AuthLayer) -> Self {
        Self {
            auth,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Whether the layer authenticates nobody and only removes client-sent identity headers
    /// (a route without authentication plugins).
    #[cfg(feature = "config")]
    pub(crate) fn strips_only(&self) -> bool {
        self.auth.policy.is_empty() && self.auth.policy.claim_headers.is_empty()
    }

    /// Reads bodies of at most `bytes` bytes (default [`DEFAULT_MAX_BODY`]); a larger body is
    /// passed on unread, and holds no credential.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for BodyAuthLayer {
    type Service = BodyAuth<S>;

    fn layer(&self, inner: S) -> BodyAuth<S> {
        BodyAuth {
            inner,
            policy: self.auth.policy.clone(),
            max_body: self.max_body,
        }
    }
}

/// A service behind authentication that may read the body; see [`BodyAuthLayer`].
#[derive(Clone)]
pub struct BodyAuth<S> {
    inner: S,
    policy: Arc<Policy>,
    max_body: usize,
}

impl<S: std::fmt::Debug> std::fmt::Debug for BodyAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyAuth")
            .field("inner", &self.inner)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl<S> BodyAuth<S> {
    inner_service_accessors!();

    /// Whether this request's body is read before authentication.
    fn reads(&self, parts: &Parts, body: &impl Body) -> bool {
        self.policy.reads_body()
            && !body.is_end_stream()
            && FormKind::of(&parts.headers).is_some()
            && body
                .size_hint()
                .upper()
                .or_else(|| content_length(&parts.headers))
                .is_none_or(|length| length <= self.max_body as u64)
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pin_project! {
    /// Response future of [`BodyAuth`].
    pub struct BodyResponseFuture<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
        consumer: Option<Consumer>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        Reading { reading: Option<Reading<S, B>> },
        Inner { #[pin] inner: CallOrReject<S, Request<RequestBody<B>>> },
    }
}

/// A body being read before authentication, with what is needed to go on afterwards.
struct Reading<S, B> {
    parts: Parts,
    body: Pin<Box<B>>,
    read: BytesMut,
    trailers: Option<HeaderMap>,
    service: S,
    policy: Arc<Policy>,
    max_body: usize,
}

/// A request authentication let through, and its consumer.
type Admitted<B> = (Request<RequestBody<B>>, Option<Consumer>);

/// How reading a body ended.
enum Read {
    Whole,
    /// Longer than the limit: passed on unread.
    TooLong,
    Failed,
}

impl<S, B> std::fmt::Debug for BodyResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<Request<B>> for BodyAuth<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResB>> + Clone,
    B: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = BodyResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        strip(&self.policy, &mut parts);
        if self.policy.is_empty() || self.policy.skips(&parts) {
            let req = Request::from_parts(parts, RequestBody::new(body));
            return BodyResponseFuture::called(self.inner.call(req), None);
        }
        if !self.reads(&parts, &body) {
            return match decide(&self.policy, &mut parts, None) {
                Ok(consumer) => {
                    let req = Request::from_parts(parts, RequestBody::new(body));
                    BodyResponseFuture::called(self.inner.call(req), consumer)
                }
                Err(refused) => BodyResponseFuture::rejected(refused.into_crate()),
            };
        }
        // The body comes first; the inner service is called through a clone once it is in
        // (its readiness is checked again then).
        BodyResponseFuture {
            state: State::Reading {
                reading: Some(Reading {
                    parts,
                    body: Box::pin(body),
                    read: BytesMut::new(),
                    trailers: None,
                    service: self.inner.clone(),
                    policy: self.policy.clone(),
                    max_body: self.max_body,
                }),
            },
            consumer: None,
        }
    }
}

impl<S, B> BodyResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn called(future: S::Future, consumer: Option<Consumer>) -> Self {
        Self {
            state: State::Inner {
                inner: CallOrReject::Called { future },
            },
            consumer,
        }
    }

    fn rejected(rejection: Rejection) -> Self {
        Self {
            state: State::Inner {
                inner: CallOrReject::reject_with(rejection),
            },
            consumer: None,
        }
    }
}

impl<S, B> Reading<S, B>
where
    B: Body<Data = Bytes>,
{
    /// Reads until the end of the body, the limit or an error.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        loop {
            match ready!(self.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Read::Whole),
                Some(Err(_)) => return Poll::Ready(Read::Failed),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.read.extend_from_slice(&data);
                        if self.read.len() > self.max_body {
                            return Poll::Ready(Read::TooLong);
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers
                                .get_or_insert_with(HeaderMap::new)
                                .extend(trailers);
                        }
                    }
                },
            }
        }
    }

    /// Authenticates with what was read; the request to send on, or the refusal.
    fn finish(self, read: Read) -> (S, Result<Admitted<B>, Rejection>) {
        let Self {
            mut parts,
            body,
            read: bytes,
            trailers,
            service,
            policy,
            ..
        } = self;
        let (outcome, body) = match read {
            Read::Whole => {
                let original = bytes.freeze();
                let mut bytes = original.clone();
                let outcome = decide(&policy, &mut parts, Some(&mut bytes));
                if bytes != original {
                    rewritten(&mut parts.headers, bytes.len(), trailers.is_some());
                }
                (outcome, RequestBody::buffered(bytes, trailers))
            }
            Read::TooLong => (
                decide(&policy, &mut parts, None),
                RequestBody::partial(bytes.freeze(), body),
            ),
            Read::Failed => {
                let refused = Rejection {
                    by: crate::reject::AnsweredBy::AUTH,
                    status: StatusCode::BAD_REQUEST,
                    message: "Cannot process request body",
                    header: None,
                    json: None,
                };
                return (service, Err(refused));
            }
        };
        let outcome = match outcome {
            Ok(consumer) => Ok((Request::from_parts(parts, body), consumer)),
            Err(refused) => Err(refused.into_crate()),
        };
        (service, outcome)
    }
}

/// Framing headers for a body the authenticators rewrote.
fn rewritten(headers: &mut HeaderMap, length: usize, trailers: bool) {
    if trailers {
        // Trailers need chunked framing; the length is no longer the client's.
        headers.remove(header::CONTENT_LENGTH);
    } else {
        headers.remove(header::TRANSFER_ENCODING);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

impl<S, B, ResB> Future for BodyResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Reading { reading } => {
                    let Some(pending) = reading.as_mut() else {
                        // Polled after completion.
                        return Poll::Pending;
                    };
                    let read = ready!(pending.poll_read(cx));
                    let Some(done) = reading.take() else {
                        return Poll::Pending;
                    };
                    let (service, outcome) = done.finish(read);
                    let next = match outcome {
                        Ok((req, consumer)) => {
                            *this.consumer = consumer;
                            CallOrReject::call(service, req)
                        }
                        Err(rejection) => CallOrReject::reject_with(rejection),
                    };
                    self.as_mut()
                        .project()
                        .state
                        .set(State::Inner { inner: next });
                }
                StateProj::Inner { inner } => {
                    let mut res = ready!(inner.poll(cx))?;
                    if let Some(consumer) = this.consumer.take() {
                        res.extensions_mut().insert(consumer);
                    }
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}
