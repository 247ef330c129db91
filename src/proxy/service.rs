//! The `ReverseProxy` service.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version, header};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use super::ProxyConfig;
use super::client_body::ClientBody;
use super::config::join_path;
use super::connect::Connector;
use super::future::{ResponseFuture, Upgrading};
use super::headers::{self, X_FORWARDED_PATH, X_FORWARDED_PREFIX};
use super::pool::{Key, Pool};
use crate::BoxError;
use crate::body::{BalancedBody, BodyTimeouts, RequestBytes, ResponseBody};
use crate::identity::ConnectionInfo;
use crate::router::RouteMatch;

/// In a request's extensions, overrides the proxy's `preserve_host` for that request (Kong's
/// per-route setting over a service shared by several routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreserveHost(pub bool);

/// In a request's extensions, the `Upgrade` protocols the proxy may forward for that request,
/// in place of its [`ProxyConfig::upgrade_protocols`] (the `upgrade-protocols` plugin puts
/// one there for its routes and services). Lower-case names; `h2c` is never forwarded, listed
/// or not.
///
/// ```
/// use http::Request;
/// use tower_gateway::proxy::UpgradeProtocols;
///
/// // This request may upgrade to WebSocket or CONNECT-UDP, whatever the proxy's configuration says.
/// let mut req = Request::new(());
/// req.extensions_mut().insert(UpgradeProtocols::new(["websocket", "connect-udp"]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeProtocols(pub Arc<[Box<str>]>);

impl UpgradeProtocols {
    /// The protocols of `names`, lower-cased, without `h2c` and empty names.
    pub fn new<I, T>(names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self(
            names
                .into_iter()
                .map(|p| p.as_ref().trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty() && p != "h2c")
                .map(String::into_boxed_str)
                .collect(),
        )
    }
}

/// Forwards requests to one origin over a pool of keep-alive connections, streaming bodies both
/// ways. See the [module docs](super) for the rules it applies.
///
/// `B` is the client's request body type (hyper's `Incoming`, axum's `Body`, …). The proxy
/// takes `Request<B>` on a route of its own and `Request<BalancedBody<B>>` as a
/// [`Balancer`](crate::balance::Balancer)'s endpoint, on the same connections; since both
/// fit a balancer's requests, name `B` where the proxy goes behind one
/// (`ReverseProxy::<Incoming>::new(..)`).
///
/// Clones share the connection pool and the configuration; a clone is one reference-count
/// increment, so routers may clone it per request. Always ready: the pool opens a connection
/// when none is idle, with no cap of its own (bound concurrency with tower's
/// `ConcurrencyLimit` around it, which a balancer in front respects).
pub struct ReverseProxy<B> {
    shared: Arc<Shared<B>>,
}

struct Shared<B> {
    transport: Transport<B>,
    config: Arc<ProxyConfig>,
}

/// How requests reach the origin.
enum Transport<B> {
    /// HTTP/1.1: the crate's per-thread pool, the origin's key in it.
    Http1(Pool<ClientBody<BalancedBody<B>>>, Key),
    /// HTTP/2 (prior knowledge or ALPN): hyper-util's client, one multiplexed connection.
    Http2(Box<Client<Connector, ClientBody<BalancedBody<B>>>>),
}

impl<B> Transport<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// The same connections, to `origin`.
    fn to(&self, origin: &super::Origin) -> Self {
        match self {
            Self::Http1(pool, _) => Self::Http1(
                pool.clone(),
                pool.key(origin.scheme().as_str(), origin.authority().as_str()),
            ),
            Self::Http2(client) => Self::Http2(client.clone()),
        }
    }
}

// === impl ReverseProxy ===

impl<B> ReverseProxy<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// A proxy with its own connection pool. Must be called inside a tokio runtime.
    pub fn new(config: ProxyConfig) -> Self {
        let connector = Connector::new(
            config.connect_timeout,
            config.read_timeout,
            config.write_timeout,
        );
        #[cfg(feature = "tls")]
        let connector = {
            if !config.tls.verify {
                tracing::warn!(
                    origin = %config.origin,
                    "TLS verification of the origin is OFF: anybody on the path can read and change its traffic"
                );
            }
            connector.tls(super::tls::client_config(&config.tls, config.http2))
        };
        let transport = if config.http2 {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_max_idle_per_host(config.max_idle_per_host)
                .pool_idle_timeout(config.idle_timeout)
                // Host is set from the origin or kept from the client, never guessed.
                .set_host(false)
                .http2_only(true)
                .http2_keep_alive_interval(Some(config.http2_keep_alive.0))
                .http2_keep_alive_timeout(config.http2_keep_alive.1)
                .http2_keep_alive_while_idle(true);
            Transport::Http2(Box::new(builder.build(connector)))
        } else {
            let pool = Pool::new(connector, config.max_idle_per_host, config.idle_timeout);
            let origin = &config.origin;
            let key = pool.key(origin.scheme().as_str(), origin.authority().as_str());
            Transport::Http1(pool, key)
        };
        Self {
            shared: Arc::new(Shared {
                transport,
                config: Arc::new(config),
            }),
        }
    }
}

impl<B> ReverseProxy<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// A proxy that shares this one's connection pool but sends `Host` differently (Kong's
    /// per-route `preserve_host` over a shared service).
    pub fn with_preserve_host(&self, preserve: bool) -> Self {
        let mut config = (*self.shared.config).clone();
        config.preserve_host = preserve;
        Self {
            shared: Arc::new(Shared {
                transport: self.shared.transport.to(&config.origin),
                config: Arc::new(config),
            }),
        }
    }

    /// A proxy to another origin that shares this one's connection pool and settings (one
    /// proxy per endpoint of a [`Balancer`](crate::balance::Balancer)).
    pub fn to_origin(&self, origin: impl AsRef<str>) -> Result<Self, super::InvalidOrigin> {
        Ok(self.with_origin(super::Origin::parse(origin.as_ref())?))
    }

    /// Like [`to_origin`](Self::to_origin), with an origin already parsed.
    pub fn with_origin(&self, origin: super::Origin) -> Self {
        let mut config = (*self.shared.config).clone();
        config.origin = origin;
        Self {
            shared: Arc::new(Shared {
                transport: self.shared.transport.to(&config.origin),
                config: Arc::new(config),
            }),
        }
    }
}

impl<B> ReverseProxy<B> {
    /// The configuration this proxy runs with.
    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }

    /// The `Upgrade` protocols this request may have forwarded: its own list, if a layer put
    /// one in its extensions, else the configuration's.
    fn allowed_upgrades<'a, T>(&'a self, req: &'a Request<T>) -> &'a [Box<str>] {
        match req.extensions().get::<UpgradeProtocols>() {
            Some(UpgradeProtocols(listed)) => listed,
            None => &self.shared.config.upgrades,
        }
    }

    /// Rewrites a client request into the request sent to the origin.
    fn upstream_request(
        &self,
        req: Request<BalancedBody<B>>,
    ) -> Request<ClientBody<BalancedBody<B>>>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let config = &*self.shared.config;
        let (mut parts, body) = req.into_parts();
        // HTTP/2 clients name the host in `:authority`, not in `Host`.
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });

        if headers::strip_hop_by_hop(&mut parts.headers) {
            headers::restore_te_trailers(&mut parts.headers);
        }
        // Under another server (axum's `ConnectInfo`, a `SocketAddr`): the peer's address,
        // and the port the client asked for as the local port.
        let borrowed = parts.extensions.get::<ConnectionInfo>();
        let other = match borrowed {
            Some(_) => None,
            None => crate::identity::peer_addr(&parts.extensions).map(|peer| {
                let secure = parts.uri.scheme() == Some(&http::uri::Scheme::HTTPS);
                let port = client_host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse::<http::uri::Authority>().ok())
                    .and_then(|a| a.port_u16())
                    .unwrap_or(if secure { 443 } else { 80 });
                let local = std::net::SocketAddr::new([0, 0, 0, 0].into(), port);
                ConnectionInfo::with_tls(peer, local, secure)
            }),
        };
        let conn = borrowed.or(other.as_ref());
        let body_timeouts = conn.map_or(BodyTimeouts::DEFAULT, ConnectionInfo::body_timeouts);
        if let Some(conn) = conn {
            // Room for the forwarding headers at once, instead of growing field by field.
            parts.headers.reserve(6);
            headers::set_forwarded(
                &mut parts.headers,
                conn,
                &config.trusted_proxies,
                client_host.clone(),
            );
        }
        let matched = parts.extensions.get::<RouteMatch>();
        if let Some(prefix) = matched.and_then(RouteMatch::stripped_prefix) {
            if let Ok(value) = HeaderValue::from_str(prefix) {
                parts.headers.insert(X_FORWARDED_PREFIX, value);
            }
            if let Ok(value) =
                HeaderValue::from_str(matched.map_or("", |m| m.original_uri().path()))
            {
                parts.headers.insert(X_FORWARDED_PATH, value);
            }
        }
        let preserve = parts
            .extensions
            .get::<PreserveHost>()
            .map_or(config.preserve_host, |p| p.0);
        if !preserve || client_host.is_none() {
            parts
                .headers
                .insert(header::HOST, config.origin.host_header().clone());
        }

        let remainder_empty = matched.is_some_and(|m| m.remainder_empty);
        let absolute = matches!(self.shared.transport, Transport::Http2(_));
        parts.uri = upstream_uri(config, &parts.uri, remainder_empty, absolute);
        parts.version = if config.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let count = parts.extensions.get::<RequestBytes>().cloned();
        Request::from_parts(parts, ClientBody::new(body, count, body_timeouts))
    }
}

/// `base path + request path + query`, after the origin when `absolute` (hyper-util's client
/// dials the URI's authority; the HTTP/1.1 pool sends origin-form). Reuses the request's path
/// and query when the origin has no base path, the common case, without allocating.
fn upstream_uri(config: &ProxyConfig, uri: &Uri, remainder_empty: bool, absolute: bool) -> Uri {
    let origin = &config.origin;
    let path_and_query = if origin.base_path().is_empty() && !remainder_empty {
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let rest = if remainder_empty { "" } else { uri.path() };
        let mut joined = String::with_capacity(origin.base_path().len() + uri.path().len() + 16);
        join_path(origin.base_path(), rest, &mut joined);
        if let Some(query) = uri.query() {
            joined.push('?');
            joined.push_str(query);
        }
        PathAndQuery::from_maybe_shared(Bytes::from(joined))
            .unwrap_or_else(|_| PathAndQuery::from_static("/"))
    };
    if !absolute {
        return Uri::from(path_and_query);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(origin.scheme().clone());
    parts.authority = Some(origin.authority().clone());
    parts.path_and_query = Some(path_and_query);
    // Scheme, authority and path are each valid, so the whole is too.
    Uri::from_parts(parts).unwrap_or_default()
}

impl<B> Clone for ReverseProxy<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<B> std::fmt::Debug for ReverseProxy<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReverseProxy")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<B> ReverseProxy<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Sends a request (its body re-sendable or not) through the one pool.
    fn forward(&self, mut req: Request<BalancedBody<B>>) -> ResponseFuture {
        // An `Upgrade` to a protocol this proxy forwards (WebSocket by default): its
        // connection is handed over once the upstream agrees, and both sides are then pumped
        // into each other. Any other `Upgrade` is dropped with the hop-by-hop fields.
        let upgrade =
            headers::allowed_upgrade(req.version(), req.headers(), self.allowed_upgrades(&req))
                .map(|protocol| {
                    let drain = req
                        .extensions()
                        .get::<ConnectionInfo>()
                        .and_then(|c| c.drain().cloned());
                    (protocol, hyper::upgrade::on(&mut req), drain)
                });
        let mut req = self.upstream_request(req);
        let witness = req.body().witness();
        let client_side = upgrade.map(|(protocol, on_upgrade, drain)| {
            headers::ask_upgrade(req.headers_mut(), protocol.clone());
            Upgrading {
                protocol,
                client: on_upgrade,
                drain,
            }
        });
        let mut spare = http::Extensions::new();
        let upstream: super::future::Upstream = match &self.shared.transport {
            Transport::Http1(pool, key) => {
                // hyper's HTTP/1.1 client would only read an original header case from it,
                // which this pool does not preserve: the map goes to the response.
                spare = std::mem::take(req.extensions_mut());
                Box::pin(pool.send(*key, req))
            }
            Transport::Http2(client) => {
                let request = client.request(req);
                Box::pin(async move {
                    match request.await {
                        Ok(res) => Ok((res, None)),
                        Err(err) => Err(super::future::failed(&err)),
                    }
                })
            }
        };
        ResponseFuture::new(upstream, client_side, witness, spare)
    }
}

/// A request with the body as the client sent it (a route served by this proxy alone).
impl<B> Service<Request<B>> for ReverseProxy<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<Incoming>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pooled client has no capacity limit to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.forward(req.map(BalancedBody::direct))
    }
}

/// A request from a [`Balancer`](crate::balance::Balancer), its body still re-sendable to
/// another endpoint: the same proxy, the same connections.
impl<B> Service<Request<BalancedBody<B>>> for ReverseProxy<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<Incoming>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BalancedBody<B>>) -> Self::Future {
        self.forward(req)
    }
}
