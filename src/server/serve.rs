//! The accept loop and the per-connection glue between hyper and a tower service.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version, header};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::Service;

use super::ConnectionInfo;
use crate::BoxError;
use crate::body::ResponseBody;
use crate::future::CallOrReject;
use crate::reject;

/// How long a client may take to send its request head (nginx `client_header_timeout`: 60 s;
/// hyper: 30 s).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head accepted (nginx: 4 buffers of 8 KiB).
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;
/// How long in-flight requests may run after shutdown begins.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// An HTTP/1.1 server for a tower service. See the [module docs](super).
#[derive(Debug)]
pub struct Server {
    listen: Listen,
    header_read_timeout: Duration,
    max_header_size: usize,
    max_headers: Option<usize>,
    grace_period: Duration,
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
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: None,
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }

    /// How long a client may take to send a request head before the connection is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
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
            Listen::Addr(addr) => TcpListener::bind(addr).await?,
            Listen::Listener(listener) => listener,
        };
        let local = listener.local_addr()?;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_size.max(1024));
        if let Some(max) = self.max_headers {
            http.max_headers(max);
        }
        let graceful = GracefulShutdown::new();
        tokio::pin!(signal);

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
                () = &mut signal => break,
            };
            let _ = stream.set_nodelay(true);
            let conn_service = ConnService {
                inner: service.clone(),
                info: ConnectionInfo::new(remote, local),
            };
            let conn = http.serve_connection(TokioIo::new(stream), conn_service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(%err, %remote, "connection ended with an error");
                }
            });
        }

        drop(listener);
        tracing::info!(connections = graceful.count(), "draining connections");
        if tokio::time::timeout(self.grace_period, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_period = ?self.grace_period,
                "grace period over; closing the remaining connections"
            );
        }
        Ok(())
    }
}

/// Serves one TCP connection: the tower service plus what the server adds per request.
#[derive(Debug, Clone)]
struct ConnService<S> {
    inner: S,
    info: ConnectionInfo,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = CallOrReject<S, Request<Incoming>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if !host_is_valid(&req) {
            return CallOrReject::reject(StatusCode::BAD_REQUEST, reject::BAD_REQUEST);
        }
        req.extensions_mut().insert(self.info.clone());
        CallOrReject::call(self.inner.clone(), req)
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
