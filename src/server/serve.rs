//! The accept loop and the per-connection glue between hyper and a tower service.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version, header};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::Service;

use super::ConnectionInfo;
use super::client_io::{ClientIo, ClientTimeouts, ConnState, InFlight, InFlightBody};
use crate::BoxError;
use crate::body::{BodyTimeouts, ResponseBody};
use crate::future::{self, CallOrReject};
use crate::reject;

/// How long a client may take to send its request head, from the accept for the first
/// request and from its first byte for later ones (nginx `client_header_timeout`: 60 s;
/// hyper: 30 s).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a keep-alive connection may sit idle between requests (nginx
/// `keepalive_timeout`: 75 s; the upstream side keeps its idle connections 60 s here and in Kong).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one write of a response may wait for the client to read (nginx `send_timeout`:
/// 60 s).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The most client connections open at once (nginx: `worker_connections` 512 per worker;
/// Envoy: unlimited unless an overload manager is set up).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The largest request head accepted (nginx: 4 buffers of 8 KiB).
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;
/// How long in-flight requests may run after shutdown begins.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// An HTTP/1.1 server for a tower service. See the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::server::Server;
///
/// // nginx's timeouts and limits, tightened; `serve_with_shutdown` runs it (module docs).
/// let server = Server::bind("127.0.0.1:0".parse().unwrap())
///     .header_read_timeout(Duration::from_secs(10))
///     .keep_alive_timeout(Duration::from_secs(30))
///     .max_connections(5_000);
/// # let _ = server;
/// ```
#[derive(Debug)]
pub struct Server {
    listen: Listen,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    send_timeout: Duration,
    body_timeouts: BodyTimeouts,
    max_connections: usize,
    max_connections_per_ip: Option<usize>,
    max_header_size: usize,
    max_headers: Option<usize>,
    grace_period: Duration,
    stats: Option<super::ConnectionStats>,
    worker_threads: usize,
    #[cfg(feature = "tls")]
    tls: Option<super::TlsConfig>,
}

#[derive(Debug)]
enum Listen {
    Addr(SocketAddr),
    Listener(TcpListener),
}

// === impl Server ===

impl Server {
    /// A server that will listen on `addr`.
    pub fn bind(addr: SocketAddr) -> Self {
        Self::with_listen(Listen::Addr(addr))
    }

    /// A server on an already bound listener (e.g. one bound to port 0 in a test).
    pub fn from_listener(listener: TcpListener) -> Self {
        Self::with_listen(Listen::Listener(listener))
    }

    fn with_listen(listen: Listen) -> Self {
        Self {
            listen,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            body_timeouts: BodyTimeouts::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: None,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            stats: None,
            worker_threads: 0,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// How long a client may take to send a request head before the connection is closed:
    /// counted from the accept for the first request (TLS handshake included), from the
    /// head's first byte for later ones; never extended by a byte received (nginx
    /// `client_header_timeout`).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection may sit idle between two requests before it is closed (nginx
    /// `keepalive_timeout`).
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// How long one write of a response may wait for a client that does not read before the
    /// connection is closed (nginx `send_timeout`).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// How long the request body may stall between two reads, and optionally how long it may
    /// take in all (nginx `client_body_timeout`; Envoy's `request_timeout`). Carried to the
    /// [`ReverseProxy`](crate::proxy::ReverseProxy) by the request's [`ConnectionInfo`];
    /// past it the client gets `408` and the upstream request is aborted.
    pub fn body_timeouts(mut self, timeouts: BodyTimeouts) -> Self {
        self.body_timeouts = timeouts;
        self
    }

    /// The most client connections open at once; a connection accepted over it is closed at
    /// once, without a response (nginx `worker_connections`). Default
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The most connections open at once from one client address; one over it is closed at
    /// once (nginx `limit_conn` keyed by `$binary_remote_addr`). Off by default.
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.max_connections_per_ip = Some(max.max(1));
        self
    }

    /// The largest request head (request line and headers) in bytes; larger gets `431`.
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes;
        self
    }

    /// The most header fields in a request (default 100); more gets `431`. hyper keeps the
    /// default on the stack; any other value costs an allocation per request.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = Some(count);
        self
    }

    /// How long in-flight requests may run once shutdown begins.
    pub fn grace_period(mut self, period: Duration) -> Self {
        self.grace_period = period;
        self
    }

    /// Terminates TLS on this listener (feature `tls`): the certificate matching the client's
    /// SNI, HTTP/2 or HTTP/1.1 as ALPN decides; requests see
    /// [`ConnectionInfo::is_secure`](super::ConnectionInfo::is_secure) (`X-Forwarded-Proto:
    /// https`). The handshake must finish within the header-read timeout.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: super::TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Serves on `threads` threads of its own, thread per core: each runs a current-thread
    /// tokio runtime with its own listener socket on the server's address (`SO_REUSEPORT`,
    /// the kernel spreads new connections over them), and a connection, its requests and the
    /// upstream connections they use stay on the thread that accepted it: no work stealing,
    /// no cross-thread wake-up per request. The service is cloned once per thread; what a
    /// request spawns runs on its thread. The caps, statistics and graceful shutdown cover
    /// all threads as one server; the call returns once every thread has ended.
    ///
    /// `0` (the default) serves on the caller's runtime, spawning each connection as a task
    /// there (under a multi-thread runtime, work stealing spreads them). A listener given
    /// with [`from_listener`](Self::from_listener) that was not bound with `SO_REUSEPORT` is
    /// shared by the threads instead (each polls the same socket).
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = threads;
        self
    }

    /// Counts this server's connections into `stats`.
    pub fn connection_stats(mut self, stats: super::ConnectionStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Serves `service` until the process ends.
    pub async fn serve<S, B>(self, service: S) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(service, std::future::pending())
            .await
    }

    /// Serves `service` until `signal` completes, then shuts down gracefully: stops accepting,
    /// lets in-flight requests finish within the grace period, and returns.
    pub async fn serve_with_shutdown<S, B, F>(self, service: S, signal: F) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()> + Send,
    {
        let listener = match self.listen {
            Listen::Addr(addr) if self.worker_threads > 0 => bind_reuse_port(addr)?,
            Listen::Addr(addr) => TcpListener::bind(addr).await?,
            Listen::Listener(listener) => listener,
        };
        let local = listener.local_addr()?;
        #[cfg(feature = "tls")]
        let tls = match &self.tls {
            Some(config) => Some(tokio_rustls::TlsAcceptor::from(
                config.server_config().map_err(io::Error::other)?,
            )),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<std::convert::Infallible> = None;
        let mut http = http1::Builder::new();
        http.max_header_size(self.max_header_size.max(1024));
        if let Some(max) = self.max_headers {
            http.max_headers(max);
        }
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.max_header_list_size(u32::try_from(self.max_header_size.max(1024)).unwrap_or(u32::MAX));
        let connections = Connections::default();
        // Every connection task holds a clone; `recv` returns `None` once all have ended.
        let (drain_tx, mut drained) = mpsc::channel::<()>(1);
        // Set when the grace period is over: what outlives its connection (a tunnel) ends.
        let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
        let acceptor = Acceptor {
            local,
            tls,
            builders: Arc::new((http, h2)),
            connections: connections.clone(),
            drain: drain_tx,
            closing: closing_rx,
            timeouts: ClientTimeouts {
                header: self.header_read_timeout,
                keep_alive: self.keep_alive_timeout,
                send: self.send_timeout,
            },
            body_timeouts: self.body_timeouts,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            stats: self.stats.clone(),
        };

        let workers = if self.worker_threads == 0 {
            acceptor.run(listener, service, signal).await;
            Vec::new()
        } else {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let (done_tx, done_rx) = tokio::sync::watch::channel(false);
            let workers = spawn_workers(
                self.worker_threads,
                listener,
                &acceptor,
                &service,
                &stop_rx,
                &done_rx,
            );
            drop(acceptor);
            let workers = match workers {
                Ok(workers) => workers,
                Err(err) => {
                    let _ = (stop_tx.send(true), done_tx.send(true));
                    return Err(err);
                }
            };
            signal.await;
            // The workers stop accepting and close their listeners; no connection is admitted
            // after the shutdown below has been asked of the open ones.
            let _ = stop_tx.send(true);
            for (_, _, accepting) in &workers {
                let mut accepting = accepting.clone();
                let _ = accepting.wait_for(|a| !*a).await;
            }
            vec![(workers, done_tx)]
        };

        let open = connections.shutdown_all();
        tracing::info!(connections = open, "draining connections");
        if tokio::time::timeout(self.grace_period, drained.recv())
            .await
            .is_err()
        {
            let _ = closing_tx.send(true);
            let closed = connections.abort_all();
            tracing::warn!(
                grace_period = ?self.grace_period,
                connections = closed,
                "grace period over; closing the remaining connections"
            );
        }
        for (threads, done) in workers {
            // Each worker's runtime ends, and with it what is left on it.
            let _ = done.send(true);
            for (thread, mut exited, _) in threads {
                let _ = exited.wait_for(|e| *e).await;
                let _ = thread.join();
            }
        }
        Ok(())
    }
}

/// What every accept loop of a server shares: its settings, its open connections and its
/// shutdown.
#[derive(Clone)]
struct Acceptor {
    local: SocketAddr,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(not(feature = "tls"))]
    tls: Option<std::convert::Infallible>,
    /// hyper's connection settings, shared: each connection's task holds a pointer, not a
    /// copy (memory per idle connection).
    builders: Arc<(http1::Builder, http2::Builder<TokioExecutor>)>,
    connections: Connections,
    /// Held by every connection task (and loop), so that the server knows when all ended.
    drain: mpsc::Sender<()>,
    closing: tokio::sync::watch::Receiver<bool>,
    timeouts: ClientTimeouts,
    body_timeouts: BodyTimeouts,
    max_connections: usize,
    max_connections_per_ip: Option<usize>,
    stats: Option<super::ConnectionStats>,
}

/// A worker thread, what says it has ended, and what says it still accepts connections.
type Worker = (
    std::thread::JoinHandle<()>,
    tokio::sync::watch::Receiver<bool>,
    tokio::sync::watch::Receiver<bool>,
);

/// Starts `count` threads, each with a current-thread runtime running an accept loop on a
/// listener of its own for `listener`'s address (`SO_REUSEPORT`; a shared copy of `listener`
/// where the address cannot be bound again). A worker stops accepting when `stop` is set and
/// ends, dropping what still runs on it, when `done` is.
fn spawn_workers<S, B>(
    count: usize,
    listener: TcpListener,
    acceptor: &Acceptor,
    service: &S,
    stop: &tokio::sync::watch::Receiver<bool>,
    done: &tokio::sync::watch::Receiver<bool>,
) -> io::Result<Vec<Worker>>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let first = listener.into_std()?;
    let mut listeners = Vec::with_capacity(count);
    for _ in 1..count {
        let own = match bind_reuse_port(acceptor.local) {
            Ok(own) => own.into_std()?,
            Err(err) => {
                tracing::debug!(%err, "no listener of its own for a worker; sharing one");
                first.try_clone()?
            }
        };
        listeners.push(own);
    }
    listeners.insert(0, first);
    let mut workers = Vec::with_capacity(count);
    for (index, listener) in listeners.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (acceptor, service) = (acceptor.clone(), service.clone());
        let (mut stop, mut done) = (stop.clone(), done.clone());
        let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
        let (accepting_tx, accepting_rx) = tokio::sync::watch::channel(true);
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let stopped = async move {
                                let _ = stop.wait_for(|s| *s).await;
                            };
                            acceptor.run(listener, service, stopped).await;
                        }
                        Err(err) => tracing::error!(%err, "a worker cannot listen"),
                    }
                    let _ = accepting_tx.send(false);
                    let _ = done.wait_for(|d| *d).await;
                });
                drop(runtime);
                let _ = exited_tx.send(true);
            })?;
        workers.push((thread, exited_rx, accepting_rx));
    }
    Ok(workers)
}

/// A listener on `addr` that other sockets may bind too (`SO_REUSEPORT`): the kernel spreads
/// new connections over them. Give it to [`Server::from_listener`] with
/// [`worker_threads`](Server::worker_threads) when the address must be known before serving
/// (port 0): each worker then binds a listener of its own to the same address.
pub fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Acceptor {
    /// Accepts connections on `listener` and serves each on a task of its own until `stop`
    /// completes.
    async fn run<S, B, F>(self, listener: TcpListener, service: S, stop: F)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let Acceptor {
            local,
            tls,
            builders,
            connections,
            drain: drain_tx,
            closing: closing_rx,
            timeouts,
            body_timeouts,
            max_connections,
            max_connections_per_ip,
            stats,
        } = self;
        let mut refused = RefusedLog::default();
        tokio::pin!(stop);
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            let Some((id, shutdown)) = connections.admit(
                remote.ip().to_canonical(),
                max_connections,
                max_connections_per_ip,
            ) else {
                if let Some(stats) = &stats {
                    stats.count_refused();
                }
                refused.note(remote);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::new(ConnState::new());
            let conn_service = ConnService {
                inner: RefCell::new(service.clone()),
                info: ConnectionInfo::serving(
                    remote,
                    local,
                    tls.is_some(),
                    Some(crate::identity::Drain {
                        _hold: drain_tx.clone(),
                        closing: closing_rx.clone(),
                    }),
                    body_timeouts,
                ),
                stats: stats.clone(),
                state: state.clone(),
            };
            #[allow(clippy::clone_on_copy)] // An acceptor with `tls`, nothing without.
            let tls = tls.clone();
            // The first request head, TLS handshake and protocol sniffing included, is due
            // one header timeout after the accept.
            let head_due = state.opened() + timeouts.header;
            let registry = connections.clone();
            let drain = drain_tx.clone();
            let open = stats.as_ref().map(super::ConnectionStats::open);
            let builders = builders.clone();
            let fut = async move {
                let _open = open;
                let shutdown = Some(shutdown);
                let result = match tls {
                    #[cfg(feature = "tls")]
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout_at(head_due, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => {
                                // ALPN decides between HTTP/2 and HTTP/1.1.
                                let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                let io =
                                    TokioIo::new(ClientIo::new(stream, state, timeouts, is_h2));
                                serve_io(io, is_h2, conn_service, &builders, shutdown).await
                            }
                            Ok(Err(err)) => {
                                tracing::debug!(%err, %remote, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                    _ => {
                        // HTTP/2 with prior knowledge (h2c) or HTTP/1.1, told apart by the
                        // preface.
                        let is_h2 = starts_with_h2_preface(&stream, head_due).await;
                        let io = TokioIo::new(ClientIo::new(stream, state, timeouts, is_h2));
                        serve_io(io, is_h2, conn_service, &builders, shutdown).await
                    }
                };
                if let Err(err) = result {
                    tracing::debug!(%err, %remote, "connection ended with an error");
                }
                registry.remove(id);
                drop(drain);
            };
            let task = tokio::spawn(fut);
            connections.set_abort(id, task.abort_handle());
        }
    }
}

/// Connections closed at accept because a cap was reached: logged at most once per
/// interval, with how many, so that a flood does not flood the log too.
#[derive(Debug)]
struct RefusedLog {
    since_last: u64,
    next: Instant,
}

impl Default for RefusedLog {
    fn default() -> Self {
        Self {
            since_last: 0,
            next: Instant::now(),
        }
    }
}

impl RefusedLog {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn note(&mut self, remote: SocketAddr) {
        self.since_last += 1;
        let now = Instant::now();
        if now >= self.next {
            tracing::warn!(
                refused = self.since_last,
                last = %remote,
                "connection cap reached; new connections closed at accept"
            );
            self.since_last = 0;
            self.next = now + Self::INTERVAL;
        }
    }
}

/// Whether a request is gRPC (`content-type: application/grpc…`).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// The open connections: for each, the sender that asks it to shut down gracefully and the
/// handle that ends it when the grace period is over. Touched when a connection opens and
/// closes, never per request.
#[derive(Debug, Clone, Default)]
struct Connections {
    inner: Arc<Mutex<ConnectionsInner>>,
}

#[derive(Debug, Default)]
struct ConnectionsInner {
    next_id: u64,
    open: HashMap<u64, OpenConnection>,
    /// Open connections per client address, for the per-address cap (bounded by the
    /// connection cap: an address is here only while it has an open connection).
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct OpenConnection {
    ip: IpAddr,
    shutdown: Option<oneshot::Sender<()>>,
    abort: Option<AbortHandle>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `ip` in, unless that would pass `max` open connections
    /// or `max_per_ip` from that address.
    fn admit(
        &self,
        ip: IpAddr,
        max: usize,
        max_per_ip: Option<usize>,
    ) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut inner = self.lock();
        if inner.open.len() >= max {
            return None;
        }
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip.is_some_and(|cap| from_ip >= cap) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let id = inner.next_id;
        inner.next_id += 1;
        let open = OpenConnection {
            ip,
            shutdown: Some(tx),
            abort: None,
        };
        inner.open.insert(id, open);
        inner.per_ip.insert(ip, from_ip + 1);
        Some((id, rx))
    }

    /// Records how to end the connection's task, unless it has already ended.
    fn set_abort(&self, id: u64, abort: AbortHandle) {
        if let Some(open) = self.lock().open.get_mut(&id) {
            open.abort = Some(abort);
        }
    }

    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(open) = inner.open.remove(&id)
            && let Some(count) = inner.per_ip.get_mut(&open.ip)
        {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&open.ip);
            }
        }
    }

    /// Asks every open connection to finish its current request and close; returns how many.
    fn shutdown_all(&self) -> usize {
        let mut inner = self.lock();
        for open in inner.open.values_mut() {
            if let Some(tx) = open.shutdown.take() {
                let _ = tx.send(());
            }
        }
        inner.open.len()
    }

    /// Ends every connection still open; returns how many.
    fn abort_all(&self) -> usize {
        let mut inner = self.lock();
        inner.per_ip.clear();
        let open = std::mem::take(&mut inner.open);
        drop(inner);
        let count = open.len();
        for abort in open.into_values().filter_map(|o| o.abort) {
            abort.abort();
        }
        count
    }
}

pin_project! {
    /// A hyper connection that starts a graceful shutdown when asked to.
    struct GracefulConnection<C> {
        #[pin]
        conn: C,
        shutdown: Option<oneshot::Receiver<()>>,
    }
}

/// A hyper connection that can be asked to finish its requests and close.
trait GracefulShutdown {
    fn begin_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulShutdown for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> GracefulShutdown for http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<C> Future for GracefulConnection<C>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulShutdown,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(shutdown) = this.shutdown.as_mut()
            && let Poll::Ready(asked) = Pin::new(shutdown).poll(cx)
        {
            *this.shutdown = None;
            // A dropped sender is no request to stop.
            if asked.is_ok() {
                this.conn.as_mut().begin_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}

/// A refusal of the gateway's own (401, 429, 503…) in gRPC's terms: a trailers-only response,
/// HTTP 200 with `grpc-status` and `grpc-message` (the HTTP status's reason), as gRPC clients
/// read errors.
fn grpc_refusal<B>(res: Response<ResponseBody<B>>) -> Response<ResponseBody<B>> {
    let code: u16 = match res.status().as_u16() {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 | 405 => 12, // UNIMPLEMENTED
        408 => 4,        // DEADLINE_EXCEEDED
        429 => 8,        // RESOURCE_EXHAUSTED
        500 => 13,       // INTERNAL
        502 | 503 => 14, // UNAVAILABLE
        504 => 4,        // DEADLINE_EXCEEDED
        _ => 2,          // UNKNOWN
    };
    let reason = res.status().canonical_reason().unwrap_or("Error");
    let (parts, _) = res.into_parts();
    let mut out = Response::new(ResponseBody::empty());
    *out.extensions_mut() = parts.extensions;
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", http::HeaderValue::from(code));
    if let Ok(message) = http::HeaderValue::from_str(&reason.replace(' ', "%20")) {
        headers.insert("grpc-message", message);
    }
    out
}

/// Serves one connection's requests, over HTTP/2 or HTTP/1.1 (with upgrades: a `101
/// Switching Protocols` hands the socket to whoever asked for it, the proxy's WebSocket
/// tunnel), until it closes or is asked to shut down.
async fn serve_io<I, S, B>(
    io: I,
    is_h2: bool,
    service: ConnService<S>,
    (http, h2): &(http1::Builder, http2::Builder<TokioExecutor>),
    shutdown: Option<oneshot::Receiver<()>>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if is_h2 {
        // Boxed: an HTTP/2 connection's state is large, and every HTTP/1.1 connection's task
        // would otherwise be sized for it (memory per idle connection).
        let conn = h2.serve_connection(io, service);
        Box::pin(GracefulConnection { conn, shutdown }).await
    } else {
        let conn = http.serve_connection(io, service).with_upgrades();
        GracefulConnection { conn, shutdown }.await
    }
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opens with HTTP/2's preface (without consuming it). Gives up (HTTP/1.1)
/// on the first byte that differs, on a closed connection, or at `deadline`.
async fn starts_with_h2_preface(stream: &tokio::net::TcpStream, deadline: Instant) -> bool {
    let look = async {
        let mut buf = [0u8; 24];
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if buf[..n] != H2_PREFACE[..n] {
                return false;
            }
            if n == H2_PREFACE.len() {
                return true;
            }
            // Part of the preface so far: wait for the rest.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout_at(deadline, look)
        .await
        .unwrap_or(false)
}

/// Serves one TCP connection: the tower service plus what the server adds per request.
#[derive(Debug)]
struct ConnService<S> {
    /// The connection's own handle on the service; hyper calls one request at a time.
    inner: RefCell<S>,
    info: ConnectionInfo,
    /// The server's counts, when it keeps them.
    stats: Option<super::ConnectionStats>,
    state: Arc<ConnState>,
}

pin_project! {
    /// The future of one request on a connection; counts it in flight until its response body
    /// is done.
    struct ConnFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        inner: CallOrReject<S, R>,
        guard: Option<InFlight>,
        // A gRPC request: the gateway's own refusals are answered in gRPC's terms.
        grpc: bool,
    }
}

impl<S, R, B> Future for ConnFuture<S, R>
where
    S: Service<R, Response = Response<B>>,
{
    type Output = Result<Response<InFlightBody<ResponseBody<B>>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx))?;
        let Some(guard) = this.guard.take() else {
            // Polled after completion.
            return Poll::Pending;
        };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            guard.switched_protocols();
        }
        let mut res = if *this.grpc && res.extensions().get::<reject::AnsweredBy>().is_some() {
            grpc_refusal(res)
        } else {
            res
        };
        // Every layer has seen the response; hyper only writes it now.
        crate::spare::keep(res.extensions_mut());
        Poll::Ready(Ok(res.map(|body| InFlightBody::new(body, guard))))
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<InFlightBody<ResponseBody<B>>>;
    type Error = S::Error;
    type Future = ConnFuture<S, Request<Incoming>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let guard = Some(self.state.begin());
        if !host_is_valid(&req) {
            let inner = CallOrReject::reject(
                reject::AnsweredBy::SERVER,
                StatusCode::BAD_REQUEST,
                reject::BAD_REQUEST,
            );
            return ConnFuture {
                inner,
                guard,
                grpc: false,
            };
        }
        self.info.begin_request();
        if let Some(stats) = &self.stats {
            stats.count_request();
        }
        let grpc = is_grpc(req.headers());
        if req.extensions().is_empty()
            && let Some(map) = crate::spare::take()
        {
            *req.extensions_mut() = map;
        }
        req.extensions_mut().insert(self.info.clone());
        // hyper never calls re-entrantly; should the handle be busy anyway, use a clone.
        let inner = match self.inner.try_borrow_mut() {
            Ok(mut service) => future::call_ready(&mut *service, req),
            Err(_) => match self.inner.try_borrow() {
                Ok(service) => CallOrReject::call(service.clone(), req),
                Err(_) => CallOrReject::reject(
                    reject::AnsweredBy::SERVER,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    reject::INTERNAL_ERROR,
                ),
            },
        };
        ConnFuture { inner, guard, grpc }
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one `Host`; no request may carry two.
fn host_is_valid<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => false,
        (None, _) => req.version() != Version::HTTP_11,
        (Some(_), None) => true,
    }
}
