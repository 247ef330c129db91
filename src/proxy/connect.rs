//! The upstream connector: TCP with a connect timeout, wrapped in read/write timeouts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use super::timeout_io::TimeoutIo;
use crate::BoxError;

/// Connects to upstreams for the proxy's pooled client.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    read_timeout: Duration,
    write_timeout: Duration,
}

/// The connection type the proxy's client pools.
pub(crate) type Conn = TimeoutIo<TokioIo<TcpStream>>;

impl Connector {
    pub(crate) fn new(connect: Duration, read: Duration, write: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect));
        http.set_nodelay(true);
        // `https://` origins come with the TLS issue; until then the config refuses them.
        http.enforce_http(true);
        Self {
            http,
            read_timeout: read,
            write_timeout: write,
        }
    }
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Boxed once per new upstream connection, not per request.
        let address = dst.authority().map(ToString::to_string).unwrap_or_default();
        let connecting = self.http.call(dst);
        let (read, write) = (self.read_timeout, self.write_timeout);
        Box::pin(async move {
            match connecting.await {
                Ok(io) => Ok(TimeoutIo::new(io, read, write)),
                Err(source) => Err(ConnectFailed {
                    address,
                    source: source.into(),
                }
                .into()),
            }
        })
    }
}

impl ConnectFailed {
    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

/// A failed connection attempt, naming the address for the logs.
#[derive(Debug, thiserror::Error)]
#[error("{address}: {source}")]
pub(crate) struct ConnectFailed {
    address: String,
    #[source]
    source: BoxError,
}
