//! Reverse proxying: forward a request to an origin and stream the answer back.
//!
//! [`ReverseProxy`] is a `Service<Request<B>>` for any request body `B`. It keeps a pool of
//! keep-alive HTTP/1.1 connections per origin, in one shard per thread (a request's upstream
//! exchange runs on the thread that took the request; with
//! [`Server::worker_threads`](crate::server::Server::worker_threads) nothing crosses cores),
//! and streams bodies in both directions with backpressure: no body is ever collected in
//! memory. A request that finds its pooled connection just closed by the upstream, before a
//! byte of it was written, is sent again on another connection; a written one never is.
//!
//! # What it does to a request
//!
//! - Removes the hop-by-hop fields (RFC 9110 §7.6.1): every field named in any `Connection`
//!   line, then `Connection`, `Keep-Alive`, `Proxy-Connection`, `TE` (`TE: trailers`
//!   survives), `Transfer-Encoding`, `Upgrade` (re-added for an upgrade the proxy
//!   tunnels), `Proxy-Authenticate`,
//!   `Proxy-Authorization`, and `HTTP2-Settings`. End-to-end fields, repeated ones included, pass intact. The same
//!   rule applies to responses.
//! - Appends the peer address to `X-Forwarded-For` (several incoming lines are folded into
//!   one), sets `X-Real-IP`, and sets `X-Forwarded-Proto`, `-Host` and `-Port` unless the peer
//!   is a [trusted proxy](TrustedProxies) that already sent them. The peer comes from the
//!   [`ConnectionInfo`](crate::identity::ConnectionInfo) in the request's extensions.
//! - When the router stripped a prefix, sends `X-Forwarded-Prefix` and `X-Forwarded-Path`
//!   (the original path), as Kong does.
//! - Sends `Host: <origin>` unless `preserve_host` is set (per request: a [`PreserveHost`] in
//!   the request's extensions).
//! - The upstream path is the origin's base path joined with the (stripped) request path,
//!   Kong's `path_handling: v0`; the query string is kept as sent.
//!
//! # Failures
//!
//! | what happened | client sees |
//! | --- | --- |
//! | connection refused or reset before a response | `502` |
//! | connect timeout, or a read/write stalled past its timeout before the response head | `504` |
//! | malformed response head, `Content-Length` with `Transfer-Encoding`, two different `Content-Length`s, a `Transfer-Encoding` not ending in `chunked` | `502`, never relayed |
//! | the upstream body ends early or stalls mid-stream | the client connection is aborted, so the truncation is visible |
//! | the client goes away | the upstream request is cancelled (its connection is closed) |
//! | the client's body breaks its framing or ends early (bad chunk size, fewer bytes than `Content-Length`) | `400`, the upstream request aborted: it never sees a complete message |
//! | the client's body stalls past its [`BodyTimeouts`](crate::body::BodyTimeouts) (60 s between reads by default) | `408`, the upstream request aborted |
//! | the upstream answers `101` to a request that asked for no upgrade, or switches to another protocol than asked | `502`, the upstream connection dropped |
//!
//! The `400`/`408` answers carry [`AnsweredBy::CLIENT`](crate::reject::AnsweredBy::CLIENT)
//! and a [`ClientFault`]: breakers, passive health checks and the upstream's metrics never
//! count them against the upstream.
//!
//! # Upgrades
//!
//! Only the protocols of [`ProxyConfig::upgrade_protocols`] (WebSocket by default), or of an
//! [`UpgradeProtocols`] in the request's extensions, are forwarded from an HTTP/1.1 request's `Upgrade`; every other token, `h2c` always, is
//! removed with `Connection` and `HTTP2-Settings`, and the request goes on as a plain one (no
//! "h2c smuggling" past the routes and their plugins). An HTTP/2 request never carries one.
//!
//! Every `502`/`504` carries the crate's JSON body (Kong's texts) and an [`UpstreamFailure`] in
//! its extensions.
//!
//! Timeouts follow nginx and Kong: the read and write timeouts bound each wait for the
//! upstream, not the whole exchange, so a slow but steady stream is never cut.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProxyConfig::new("http://127.0.0.1:3000")?.read_timeout(Duration::from_secs(10));
//! let proxy: ReverseProxy<hyper::body::Incoming> = ReverseProxy::new(config);
//! tower_gateway::server::Server::bind("127.0.0.1:8000".parse()?)
//!     .serve(proxy)
//!     .await?;
//! # Ok(()) }
//! ```

mod client_body;
mod config;
mod connect;
mod error;
mod future;
mod headers;
mod pool;
mod service;
mod timeout_io;
#[cfg(feature = "tls")]
mod tls;
mod trusted;

pub use client_body::ClientFault;
pub use config::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_IDLE_PER_HOST, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT,
    DEFAULT_TIMEOUT, InvalidOrigin, Origin, ProxyConfig,
};
pub use error::UpstreamFailure;
pub use future::{ResponseFuture, UpstreamInfo};
pub use service::{PreserveHost, ReverseProxy, UpgradeProtocols};
pub use trusted::{InvalidTrustedProxy, TrustedProxies};

pub(crate) use headers::client_ip;
