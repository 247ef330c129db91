//! Request ids: every request carries an `X-Request-Id` upstream, into the access log and
//! back to the client.
//!
//! [`RequestIdLayer`] is tower-http's [`SetRequestId`] and [`PropagateRequestId`] in the order
//! they need, with Kong's `correlation-id` options: the header name, whether a client-supplied
//! id is kept (the default, as tower-http and Kong do) or replaced (so clients cannot inject
//! ids into your logs), and whether the id is echoed to the client (on by default here; Kong's
//! `echo_downstream` defaults to off), and Kong's three [`Generator`]s: `uuid#counter` (the
//! default: a random UUID per thread followed by that thread's counter, as Kong's is per
//! worker, so generating one costs no system call, no shared state and one allocation), `uuid` (a random UUID per request) and `tracker`
//! (where the request came from: server address and port, process, connection serial and
//! request number on it, time).
//!
//! Put it outside the access log so that generated ids are logged.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_gateway::request_id::RequestIdLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         let id = req.headers()["x-request-id"].clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(id.to_str().unwrap().to_owned()))
//!     }));
//! let res = service.clone().oneshot(Request::new(())).await.unwrap();
//! let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
//! assert!(echoed.contains('#'));
//! assert_eq!(res.into_body(), echoed);
//!
//! let kept = Request::builder().header("x-request-id", "abc").body(()).unwrap();
//! let res = service.oneshot(kept).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "abc");
//! # }
//! ```
//!
//! # In an axum app
//!
//! One layer on the axum `Router`: every request gets an id (or keeps a valid one the client
//! sent), the handler can read it, and the response carries it.
//!
//! ```
//! use axum::body::Body;
//! use axum::{Router, routing::get};
//! use http::{HeaderMap, Request};
//! use tower::ServiceExt;
//! use tower_gateway::request_id::RequestIdLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/", get(|headers: HeaderMap| async move { format!("{:?}", headers["x-request-id"]) }))
//!     .layer(RequestIdLayer::new());
//! let res = app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! let first = res.headers()["x-request-id"].clone();
//! let res = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! assert_ne!(res.headers()["x-request-id"], first, "ids are unique per process");
//! # }
//! ```
//!
//! [`SetRequestId`]: tower_http::request_id::SetRequestId
//! [`PropagateRequestId`]: tower_http::request_id::PropagateRequestId

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower::util::Either;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, PropagateRequestId, RequestId, SetRequestId};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Sets, forwards and echoes a request id (see the [module docs](self)).
///
/// ```
/// use http::HeaderName;
/// use tower_gateway::request_id::{Generator, RequestIdLayer};
///
/// // Kong's correlation-id: its header, random UUIDs, echoed to the client.
/// let layer = RequestIdLayer::new()
///     .header(HeaderName::from_static("kong-request-id"))
///     .generator(Generator::Uuid)
///     .echo(true);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct RequestIdLayer {
    header: HeaderName,
    overwrite: bool,
    echo: bool,
    generator: Generator,
}

/// How ids are made: Kong's `correlation-id` generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generator {
    /// `uuid#counter`: `9d0aa0ce-…-8d6c2f2b1a3e#17` (the default).
    #[default]
    UuidCounter,
    /// `uuid`: a random version-4 UUID per request.
    Uuid,
    /// `tracker`: `<server ip>-<server port>-<pid>-<connection>-<request on it>-<unix time>`,
    /// from the request's [`ConnectionInfo`](crate::identity::ConnectionInfo) (zeros without
    /// one).
    Tracker,
}

impl std::str::FromStr for Generator {
    type Err = String;

    /// Kong's names: `uuid#counter`, `uuid`, `tracker`.
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "uuid#counter" => Ok(Self::UuidCounter),
            "uuid" => Ok(Self::Uuid),
            "tracker" => Ok(Self::Tracker),
            other => Err(format!(
                "unknown generator {other:?}: expected uuid#counter, uuid or tracker"
            )),
        }
    }
}

/// The service built by [`RequestIdLayer`].
pub type RequestIdService<S> = Overwrite<SetRequestId<Either<PropagateRequestId<S>, S>, MakeId>>;

/// Makes ids with a [`Generator`]; the id maker of [`RequestIdService`].
///
/// ```
/// use http::Request;
/// use tower_http::request_id::MakeRequestId;
/// use tower_gateway::request_id::{Generator, MakeId};
///
/// // The generators as tower-http's `MakeRequestId`, for its `SetRequestIdLayer`.
/// let mut make = MakeId::new(Generator::Uuid);
/// let id = make.make_request_id(&Request::new(())).unwrap();
/// assert_eq!(id.header_value().len(), 36);
/// ```
#[derive(Debug, Clone)]
pub struct MakeId {
    generator: Generator,
    counter: UuidCounter,
}

/// Removes a client-supplied request id first, when asked to.
#[derive(Debug, Clone)]
pub struct Overwrite<S> {
    inner: S,
    header: Option<HeaderName>,
}

/// Generates ids in Kong's `uuid#counter` form.
///
/// Each thread draws its own random UUID once and counts (Kong's is per worker process): ids
/// are unique without any state shared between threads, every generator and clone on a thread
/// continues the thread's sequence (a service cloned per request, as axum does, still counts
/// up), and making a value or a clone costs nothing.
///
/// ```
/// use http::Request;
/// use tower_http::request_id::MakeRequestId;
/// use tower_gateway::request_id::UuidCounter;
///
/// let mut make = UuidCounter::new();
/// let first = make.make_request_id(&Request::new(())).unwrap();
/// let second = make.make_request_id(&Request::new(())).unwrap();
/// assert_ne!(first.header_value(), second.header_value());
/// ```
#[derive(Debug, Clone, Default)]
pub struct UuidCounter {
    _private: (),
}

// === impl RequestIdLayer ===

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIdLayer {
    /// `X-Request-Id`, client ids kept, echoed to the client.
    pub fn new() -> Self {
        Self {
            header: X_REQUEST_ID,
            overwrite: false,
            echo: true,
            generator: Generator::UuidCounter,
        }
    }

    /// How ids are made (Kong's `generator`; default `uuid#counter`).
    pub fn generator(mut self, generator: Generator) -> Self {
        self.generator = generator;
        self
    }

    /// Uses another header (Kong's `header_name`, e.g. `Kong-Request-ID`).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Replaces any id the client sent with a generated one.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Whether the response carries the id back (Kong's `echo_downstream`).
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = if self.echo {
            Either::Left(PropagateRequestId::new(inner, self.header.clone()))
        } else {
            Either::Right(inner)
        };
        Overwrite {
            inner: SetRequestId::new(inner, self.header.clone(), MakeId::new(self.generator)),
            header: self.overwrite.then(|| self.header.clone()),
        }
    }
}

// === impl Overwrite ===

impl<S, B> Service<Request<B>> for Overwrite<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(header) = &self.header {
            req.headers_mut().remove(header);
            req.extensions_mut().remove::<RequestId>();
        }
        self.inner.call(req)
    }
}

// === impl UuidCounter ===

impl UuidCounter {
    /// A generator continuing the calling thread's sequence.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A random UUID for a thread's sequence (122 random bits: distinct for every thread of every
/// process, unpredictable).
fn thread_uuid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

impl MakeRequestId for UuidCounter {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        use std::cell::RefCell;
        use std::fmt::Write as _;
        thread_local! {
            static SEQUENCE: RefCell<(String, u64)> = RefCell::new((thread_uuid(), 0));
        }
        SEQUENCE.with(|sequence| {
            let (prefix, counter) = &mut *sequence.borrow_mut();
            *counter += 1;
            let mut id = bytes::BytesMut::with_capacity(prefix.len() + 21);
            id.extend_from_slice(prefix.as_bytes());
            let _ = write!(id, "#{counter}");
            HeaderValue::from_maybe_shared(id.freeze())
                .ok()
                .map(RequestId::new)
        })
    }
}

// === impl MakeId ===

impl MakeId {
    /// Ids from `generator`.
    pub fn new(generator: Generator) -> Self {
        Self {
            generator,
            counter: UuidCounter::new(),
        }
    }
}

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, request: &Request<B>) -> Option<RequestId> {
        match self.generator {
            Generator::UuidCounter => self.counter.make_request_id(request),
            Generator::Uuid => {
                let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                let text = id.hyphenated().encode_lower(&mut text);
                HeaderValue::from_str(text).ok().map(RequestId::new)
            }
            Generator::Tracker => {
                let conn = request
                    .extensions()
                    .get::<crate::identity::ConnectionInfo>();
                let (ip, port) = conn.map_or(("0.0.0.0".to_owned(), 0), |c| {
                    (
                        c.local_addr().ip().to_canonical().to_string(),
                        c.local_addr().port(),
                    )
                });
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                let id = format!(
                    "{ip}-{port}-{}-{}-{}-{now:.3}",
                    std::process::id(),
                    conn.map_or(0, |c| c.serial()),
                    conn.map_or(0, |c| c.requests()),
                );
                HeaderValue::from_str(&id).ok().map(RequestId::new)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_clones_calls_and_threads_and_clones_continue_the_count() {
        let id_of = |g: &mut UuidCounter| {
            let id = g.make_request_id(&Request::new(())).unwrap();
            id.header_value().to_str().unwrap().to_owned()
        };
        let mut a = UuidCounter::new();
        let mut b = a.clone();
        let mut seen = HashSet::new();
        for _ in 0..100 {
            for g in [&mut a, &mut b] {
                assert!(seen.insert(id_of(g)));
            }
        }
        let last = id_of(&mut a);
        let (uuid, counter) = last.split_once('#').unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        // A fresh clone (as a framework makes per request) continues the sequence.
        let next = id_of(&mut UuidCounter::new());
        let (next_uuid, next_counter) = next.split_once('#').unwrap();
        assert_eq!(next_uuid, uuid);
        assert_eq!(
            next_counter.parse::<u64>().unwrap(),
            counter.parse::<u64>().unwrap() + 1
        );
        // Another thread has a UUID of its own.
        let other = std::thread::spawn(move || id_of(&mut UuidCounter::new()))
            .join()
            .unwrap();
        assert_ne!(other.split_once('#').unwrap().0, uuid);
        assert!(seen.insert(last) && seen.insert(next) && seen.insert(other));
    }

    #[test]
    fn random_uuids_differ_and_are_version_4() {
        let mut make = MakeId::new(Generator::Uuid);
        let req = Request::new(());
        let a = make.make_request_id(&req).unwrap();
        let b = make.make_request_id(&req).unwrap();
        assert_ne!(a.header_value(), b.header_value());
        let text = a.header_value().to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn tracker_ids_say_where_the_request_came_from() {
        let mut make = MakeId::new(Generator::Tracker);
        let info = crate::identity::ConnectionInfo::new(
            "10.0.0.9:5000".parse().unwrap(),
            "127.0.0.1:8000".parse().unwrap(),
        );
        info.begin_request();
        info.begin_request();
        let mut req = Request::new(());
        req.extensions_mut().insert(info.clone());
        let id = make.make_request_id(&req).unwrap();
        let text = id.header_value().to_str().unwrap().to_owned();
        let fields: Vec<&str> = text.split('-').collect();
        assert_eq!(fields[..2], ["127.0.0.1", "8000"]);
        assert_eq!(fields[2], std::process::id().to_string());
        assert_eq!(fields[3], info.serial().to_string());
        assert_eq!(fields[4], "2");
        assert!(fields[5].contains('.'), "{text}");
        assert_eq!("tracker".parse::<Generator>(), Ok(Generator::Tracker));
        assert!("v7".parse::<Generator>().is_err());
    }
}
