//! Facts about the client connection a request arrived on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

use crate::body::BodyTimeouts;

/// The addresses of the connection a request arrived on, put into request extensions by
/// [`Server`](crate::server::Server).
///
/// The reverse proxy reads it for `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Port` and
/// `X-Forwarded-Proto`. An application that runs its own server (axum, hyper) inserts it per
/// request itself; without it the proxy forwards no client address.
///
/// Cheap to clone: the addresses and their header renderings are computed once per connection
/// and shared.
///
/// ```
/// use tower_gateway::identity::{ConnectionInfo, peer_addr};
///
/// // What a server of your own puts into each request's extensions.
/// let info = ConnectionInfo::new("203.0.113.7:50000".parse().unwrap(), "10.0.0.1:8080".parse().unwrap());
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(info);
/// assert_eq!(peer_addr(req.extensions()), Some("203.0.113.7:50000".parse().unwrap()));
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionInfo(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    remote: SocketAddr,
    local: SocketAddr,
    secure: bool,
    remote_ip: HeaderValue,
    local_port: HeaderValue,
    /// The connection's number in this process (nginx's `$connection`).
    serial: u64,
    /// Requests begun on it (nginx's `$connection_requests`).
    requests: AtomicU64,
    /// The server's shutdown, for what outlives the connection's requests (tunnels).
    drain: Option<Drain>,
    body_timeouts: BodyTimeouts,
}

/// A server's shutdown as something that outlives a connection's requests sees it: holding a
/// clone keeps the server's graceful shutdown waiting (within its grace period), and
/// [`closing`](Self::closing) completes when the grace period is over.
#[derive(Debug, Clone)]
pub(crate) struct Drain {
    /// Never read: while a clone exists, the server's shutdown waits.
    pub(crate) _hold: tokio::sync::mpsc::Sender<()>,
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
}

impl Drain {
    /// Completes once the server's grace period is over (or the server is gone).
    pub(crate) async fn closing(&mut self) {
        let _ = self.closing.wait_for(|over| *over).await;
    }
}

/// The client's (peer's) address, as the server that accepted the connection recorded it in
/// a request's extensions: this crate's [`ConnectionInfo`] ([`Server`](crate::server::Server)),
/// axum's `ConnectInfo<SocketAddr>` (`axum::serve` with
/// `into_make_service_with_connect_info`; feature `axum`), or a bare `SocketAddr`.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_gateway::identity::{ConnectionInfo, peer_addr};
///
/// let peer: SocketAddr = "203.0.113.7:50000".parse().unwrap();
/// let mut req = http::Request::new(());
/// assert_eq!(peer_addr(req.extensions()), None);
/// req.extensions_mut().insert(peer);
/// assert_eq!(peer_addr(req.extensions()), Some(peer));
/// req.extensions_mut().insert(ConnectionInfo::new(peer, "127.0.0.1:8000".parse().unwrap()));
/// assert_eq!(peer_addr(req.extensions()), Some(peer));
/// ```
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    if let Some(conn) = extensions.get::<ConnectionInfo>() {
        return Some(conn.remote_addr());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<SocketAddr>().copied()
}

impl ConnectionInfo {
    /// Describes a plain-text connection from `remote` accepted on `local`.
    pub fn new(remote: SocketAddr, local: SocketAddr) -> Self {
        Self::with_tls(remote, local, false)
    }

    /// Describes a connection that is (`secure = true`) or is not TLS-protected.
    pub fn with_tls(remote: SocketAddr, local: SocketAddr, secure: bool) -> Self {
        Self::serving(remote, local, secure, None, BodyTimeouts::default())
    }

    /// A connection of [`Server`](crate::server::Server), with its shutdown.
    pub(crate) fn serving(
        remote: SocketAddr,
        local: SocketAddr,
        secure: bool,
        drain: Option<Drain>,
        body_timeouts: BodyTimeouts,
    ) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let ip = remote.ip().to_canonical();
        Self(Arc::new(Inner {
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            requests: AtomicU64::new(0),
            remote,
            local,
            secure,
            remote_ip: HeaderValue::from_str(&ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            local_port: HeaderValue::from(local.port()),
            drain,
            body_timeouts,
        }))
    }

    /// How long this connection's request bodies may stall, and take in all (the server's
    /// [`body_timeouts`](crate::server::Server::body_timeouts)).
    pub fn body_timeouts(&self) -> BodyTimeouts {
        self.0.body_timeouts
    }

    pub(crate) fn drain(&self) -> Option<&Drain> {
        self.0.drain.as_ref()
    }

    /// The client's (peer's) address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.0.remote
    }

    /// The local address the connection was accepted on.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local
    }

    /// Whether the connection is TLS-protected.
    pub fn is_secure(&self) -> bool {
        self.0.secure
    }

    /// The connection's serial number in this process (nginx's `$connection`).
    pub fn serial(&self) -> u64 {
        self.0.serial
    }

    /// How many requests have begun on the connection, this one included (nginx's
    /// `$connection_requests`); counted by [`Server`](crate::server::Server).
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Relaxed)
    }

    /// Counts a request begun on the connection.
    pub(crate) fn begin_request(&self) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The peer IP as a header value, rendered once per connection.
    pub(crate) fn remote_ip_header(&self) -> &HeaderValue {
        &self.0.remote_ip
    }

    /// The local port as a header value, rendered once per connection.
    pub(crate) fn local_port_header(&self) -> &HeaderValue {
        &self.0.local_port
    }
}
