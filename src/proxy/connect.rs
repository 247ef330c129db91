//! The upstream connector: TCP with a connect timeout, TLS for `https` origins, wrapped in
//! read/write timeouts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::Service;

use super::timeout_io::TimeoutIo;
use crate::BoxError;

/// Connects to upstreams for the proxy's pooled client.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

/// The connection type the proxy's client pools.
pub(crate) type Conn = TimeoutIo<TokioIo<Stream>>;

/// A TCP connection to an upstream, or TLS over one.
pub(crate) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connector {
    pub(crate) fn new(connect: Duration, read: Duration, write: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect));
        http.set_nodelay(true);
        // `https://` is ours to handle (below), not refused.
        http.enforce_http(false);
        Self {
            http,
            connect_timeout: connect,
            read_timeout: read,
            write_timeout: write,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Speaks TLS to `https` origins with `config`.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls = Some(tokio_rustls::TlsConnector::from(config));
        self
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
        let secure = dst.scheme_str() == Some("https");
        let host = dst
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let connecting = self.http.call(dst);
        let (read, write) = (self.read_timeout, self.write_timeout);
        #[cfg(feature = "tls")]
        let (tls, connect_timeout) = (self.tls.clone(), self.connect_timeout);
        Box::pin(async move {
            let failed = |source: BoxError| -> BoxError {
                ConnectFailed {
                    address: address.clone(),
                    source,
                }
                .into()
            };
            let tcp = connecting.await.map_err(|e| failed(e.into()))?.into_inner();
            let stream = if secure {
                #[cfg(feature = "tls")]
                {
                    let Some(tls) = tls else {
                        return Err(failed("an https origin needs TLS settings".into()));
                    };
                    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
                        .map_err(|e| failed(e.into()))?;
                    let handshake = tls.connect(name, tcp);
                    let tls = tokio::time::timeout(connect_timeout, handshake)
                        .await
                        .map_err(|_| failed("TLS handshake timed out".into()))?
                        .map_err(|e| failed(e.into()))?;
                    Stream::Tls(Box::new(tls))
                }
                #[cfg(not(feature = "tls"))]
                {
                    let _ = (tcp, host);
                    return Err(failed("https origins need the `tls` feature".into()));
                }
            } else {
                Stream::Plain(tcp)
            };
            Ok(TimeoutIo::new(TokioIo::new(stream), read, write))
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

// === impl Stream ===

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }
}
