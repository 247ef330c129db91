//! Serving a tower service over HTTP/1.1 with the limits a gateway at the edge needs.
//!
//! [`Server`] accepts connections, hands every request to the service with a
//! [`ConnectionInfo`] in its extensions, and applies these protections:
//!
//! - timeouts as nginx has them, each enforced on the socket with a per-connection timer that
//!   moves lazily (not hyper's per-request timer), never extended by a byte received:
//!   the first request head (TLS handshake included) must be complete within the header
//!   timeout of the accept (30 s by default, nginx `client_header_timeout`), a later one
//!   within the header timeout of its first byte; an idle keep-alive connection is closed
//!   after the keep-alive timeout (60 s, nginx `keepalive_timeout`); a response write the
//!   client does not read may wait at most the send timeout (60 s, nginx `send_timeout`).
//!   While a request is in flight the header and keep-alive clocks are off, so slow upstreams
//!   and long responses are never cut by them. The request body's own timeouts
//!   ([`BodyTimeouts`](crate::body::BodyTimeouts), nginx `client_body_timeout`) travel with
//!   the request to the proxy;
//! - a cap on open connections (10 000 by default, nginx `worker_connections`) and an
//!   optional one per client address (nginx `limit_conn`): a connection over either is
//!   closed at accept, the others are untouched, and [`ConnectionStats::refused`] counts it;
//! - a cap on the request head's bytes (32 KiB by default) and on the number of header fields
//!   (100): past either the client gets `431 Request Header Fields Too Large`;
//! - an HTTP/1.1 request without a `Host` header, or any request with two, gets `400`;
//! - graceful shutdown: when the shutdown signal fires, the listener closes, idle connections
//!   close, in-flight requests and upgraded tunnels (WebSocket) get a grace period (30 s by
//!   default) to finish, and what is still open after it is closed.
//!
//! HTTP/2 with prior knowledge shares the listener; with the `tls` feature,
//! `Server::tls` terminates TLS with certificates chosen by SNI, the configuration's
//! (`SniCertificates`, replaceable while serving) before the listener's own.
//!
//! [`ConnectionStats`] counts accepted and open connections for the metrics.
//!
//! hyper itself refuses malformed framing (for example `Content-Length` with
//! `Transfer-Encoding`, or conflicting lengths) with `400` and closes the connection.
//!
//! ```no_run
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use tower::service_fn;
//! use tower_gateway::server::{Server, shutdown_signal};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let hello = service_fn(|_req: Request<Incoming>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
//!         bytes::Bytes::from("hello"),
//!     )))
//! });
//! Server::bind("127.0.0.1:8000".parse().unwrap())
//!     .serve_with_shutdown(hello, shutdown_signal())
//!     .await
//! # }
//! ```

mod client_io;
mod h2_frames;
mod serve;
mod signal;
mod stats;
#[cfg(feature = "tls")]
mod tls;

pub use crate::identity::{ConnectionInfo, peer_addr};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use crate::pem::TlsError;
#[cfg(feature = "config")]
pub(crate) use serve::is_grpc;
pub use serve::{
    DEFAULT_GRACE_PERIOD, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_SIZE, DEFAULT_SEND_TIMEOUT, Server,
    bind_reuse_port,
};
pub use signal::shutdown_signal;
pub use stats::ConnectionStats;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{Certificate, SniCertificates, TlsConfig};
