//! Access logging: one record per finished request, as a structured `tracing` event or, with
//! [`AccessLogLayer::write_to`], as a line written by a [`LineWriter`] (no `tracing` on the
//! request's path: the line is formatted into a buffer of the worker thread's own and written
//! out by a background thread; this is what the gateway program does).
//!
//! [`AccessLogLayer`] records each request when its head arrives and writes the record when
//! the response body ends (or fails, or is dropped because the client went away), so the
//! status, the bytes sent and the latency are the real ones. A request whose client leaves
//! before the response head is logged with nginx's status 499. Events have the target
//! `tower_gateway::access` and level INFO, so a subscriber can route them to their own file.
//!
//! | field | value |
//! | --- | --- |
//! | `client_ip` | the peer, from [`ConnectionInfo`](crate::identity::ConnectionInfo) |
//! | `method`, `path`, `protocol` | as received (path with query, before `strip_path`) |
//! | `status`, `bytes_out` | as sent to the client |
//! | `bytes_in` | the request's `Content-Length`, or for a body of unknown length (chunked, HTTP/2, gRPC streams) the bytes the proxy sent upstream |
//! | `latency_ms` | from the request head to the end of the response body |
//! | `upstream_latency_ms` | from sending to the upstream to its response head (-1 when the gateway answered itself) |
//! | `route`, `upstream` | the matched route's name and the upstream address used (the chosen endpoint's name when connecting to it failed) |
//! | `consumer` | the authenticated consumer's username (or id); `-` without one |
//! | `tries` | how many endpoints the [balancer](crate::balance::Balancer) tried (Kong's `tries`; 0 without a balancer) |
//! | `request_id` | the `X-Request-Id` header |
//! | `completed` | whether the whole response body was sent |
//! | `failure` | why the gateway answered 502/504 itself |
//!
//! No request header other than `X-Request-Id` (and, in the combined format, `User-Agent` and
//! `Referer`) is logged: credentials never reach the log.
//!
//! Place it outside the router (`AccessLog<Router<…>>`): the router then reports the route it
//! chose in the response extensions.
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_gateway::log::AccessLogLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(AccessLogLayer::json())
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hi"))))
//!     }));
//! let res = service.oneshot(Request::new(())).await.unwrap();
//! // The event is written when the body has been sent:
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "hi");
//! # }
//! ```
//!
//! # In an axum app
//!
//! On an axum `Router`, the access log records the URI as the client sent it (axum's
//! `OriginalUri`, with the `axum` feature), also under `nest_service`.
//!
//! ```
//! use axum::body::Body;
//! use axum::{Router, routing::get};
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_gateway::log::AccessLogLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // nginx's combined format on stdout; `AccessLogLayer::json()` for JSON lines.
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(AccessLogLayer::combined());
//! let res = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! // The line is written once the body has been sent.
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
//! # }
//! ```

mod body;
mod clf_time;
mod record;
mod service;
mod writer;

pub use body::LogBody;
pub use service::{AccessLog, AccessLogLayer, ResponseFuture};
pub use writer::{DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_PENDING, LineWriter};

/// How access-log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One field per value; a JSON subscriber turns each event into a JSON line.
    Json,
    /// The message is an nginx `combined` line followed by the latency in seconds, the route
    /// and the request id.
    Combined,
}
