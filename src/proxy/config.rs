//! What a [`ReverseProxy`](super::ReverseProxy) forwards to, and how.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

use super::TrustedProxies;

/// How often an HTTP/2 upstream connection is pinged by default.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How long an HTTP/2 upstream ping may go unanswered by default.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Kong's default for `connect_timeout`, `read_timeout` and `write_timeout`: 60 000 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Kong's `upstream_keepalive_pool_size`: idle connections kept per upstream host.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 512;
/// Kong's `upstream_keepalive_idle_timeout`: how long an idle upstream connection is kept.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings for a [`ReverseProxy`](super::ReverseProxy): the origin, the header policy, the
/// timeouts and the connection pool.
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::proxy::ProxyConfig;
///
/// let config = ProxyConfig::new("http://127.0.0.1:3000/v1")
///     .unwrap()
///     .preserve_host(true)
///     .read_timeout(Duration::from_secs(5));
/// assert_eq!(config.origin().base_path(), "/v1");
/// ```
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub(crate) origin: Origin,
    pub(crate) preserve_host: bool,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_idle_per_host: usize,
    pub(crate) idle_timeout: Duration,
    /// Speak HTTP/2 to the origin without negotiation (h2c; Kong's `protocol: grpc`).
    pub(crate) http2: bool,
    /// HTTP/2 pings: the interval, and how long one may go unanswered.
    pub(crate) http2_keep_alive: (Duration, Duration),
    /// The `Upgrade` protocols forwarded (lower case); any other is removed from requests.
    pub(crate) upgrades: Arc<[Box<str>]>,
    #[cfg(feature = "tls")]
    pub(crate) tls: super::tls::UpstreamTls,
}

/// Where requests go: scheme, authority and a base path that request paths are appended to.
#[derive(Debug, Clone)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    host_header: HeaderValue,
}

/// An origin URL the proxy cannot forward to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin {origin:?}: {reason}")]
pub struct InvalidOrigin {
    /// The URL as given.
    pub origin: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// A proxy to `origin` (`http://host[:port][/base/path]`) with Kong's defaults: 60 s
    /// timeouts, `preserve_host` off, nobody trusted, 512 idle connections kept for 60 s.
    pub fn new(origin: impl AsRef<str>) -> Result<Self, InvalidOrigin> {
        Ok(Self::with_origin(Origin::parse(origin.as_ref())?))
    }

    /// A proxy to an already parsed origin, with the defaults of [`ProxyConfig::new`].
    pub fn with_origin(origin: Origin) -> Self {
        Self {
            origin,
            preserve_host: false,
            trusted_proxies: TrustedProxies::none(),
            connect_timeout: DEFAULT_TIMEOUT,
            read_timeout: DEFAULT_TIMEOUT,
            write_timeout: DEFAULT_TIMEOUT,
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            http2: false,
            http2_keep_alive: (DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT),
            upgrades: Arc::from([Box::from("websocket")]),
            #[cfg(feature = "tls")]
            tls: Default::default(),
        }
    }

    /// Sends the client's `Host` upstream instead of the origin's (Kong's `preserve_host`).
    pub fn preserve_host(mut self, preserve: bool) -> Self {
        self.preserve_host = preserve;
        self
    }

    /// Peers whose `X-Forwarded-*` headers are believed.
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }

    /// How long connecting to the origin may take; past it the client gets 504.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read from the origin may wait, including the wait for the response head;
    /// past it the client gets 504 (or, mid-body, an aborted response).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long one write to the origin may wait.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How many keep-alive connections are kept per origin host and thread (nginx
    /// `keepalive`, which is per worker process): HTTP/1.1 connections are pooled per thread
    /// so that a request and its upstream connection stay on one core.
    pub fn max_idle_per_host(mut self, max: usize) -> Self {
        self.max_idle_per_host = max;
        self
    }

    /// How long an idle keep-alive connection is kept (nginx `keepalive_timeout`).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The protocols a client may switch to through this proxy with `Upgrade` (default:
    /// `websocket` alone). A request asking for any other has that token removed, with its
    /// `Connection` nomination and `HTTP2-Settings`, and goes on as a plain request; `h2c` is
    /// never forwarded (it would let the client speak HTTP/2 to the upstream past the routes
    /// and their plugins). Names compare without regard to case; a version (`websocket/13`)
    /// must be listed as sent.
    ///
    /// ```
    /// use tower_gateway::proxy::ProxyConfig;
    ///
    /// let config = ProxyConfig::new("http://127.0.0.1:3000")
    ///     .unwrap()
    ///     .upgrade_protocols(["websocket", "connect-udp"]);
    /// # let _ = config;
    /// ```
    pub fn upgrade_protocols<I, T>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.upgrades = super::UpgradeProtocols::new(protocols).0;
        self
    }

    /// The origin requests are forwarded to.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Speaks HTTP/2 to the origin with prior knowledge (h2c), as gRPC services need (Kong's
    /// `protocol: grpc`): multiplexed connections kept alive with pings every 30 s and retired
    /// when one goes unanswered for 10 s ([`http2_keep_alive`](Self::http2_keep_alive)).
    /// Default: HTTP/1.1.
    pub fn http2_prior_knowledge(mut self, yes: bool) -> Self {
        self.http2 = yes;
        self
    }

    /// HTTP/2 connections to the origin (with `http2_prior_knowledge`) send a ping every
    /// `interval`, idle or not, and are retired when one goes unanswered for
    /// `timeout` (Envoy's `connection_keepalive`): a peer that went silent without closing is
    /// noticed. Default: 30 s and 10 s.
    pub fn http2_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.http2_keep_alive = (interval, timeout);
        self
    }

    /// For an `https` origin (feature `tls`): trust the certificates of this PEM bundle
    /// instead of the system's roots.
    #[cfg(feature = "tls")]
    pub fn tls_ca_pem(mut self, pem: &[u8]) -> Result<Self, crate::pem::TlsError> {
        self.tls.ca = Some(crate::pem::certificates(pem)?.into());
        Ok(self)
    }

    /// For an `https` origin (feature `tls`): present this certificate chain and key (PEM)
    /// when the origin asks for a client certificate (mutual TLS; Kong's
    /// `client_certificate`).
    #[cfg(feature = "tls")]
    pub fn tls_client_certificate(
        mut self,
        chain: &[u8],
        key: &[u8],
    ) -> Result<Self, crate::pem::TlsError> {
        self.tls.client = Some(crate::pem::certified_key(chain, key, "<cert>", "<key>")?);
        Ok(self)
    }

    /// For an `https` origin (feature `tls`): whether its certificate is verified (default
    /// true). `false` accepts any certificate, which lets a man in the middle read and change
    /// the traffic; a warning is logged when a proxy is built so.
    #[cfg(feature = "tls")]
    pub fn tls_verify(mut self, verify: bool) -> Self {
        self.tls.verify = verify;
        self
    }
}

// === impl Origin ===

impl Origin {
    /// Parses `http://host[:port][/base/path]`, or `https://…` with the `tls` feature. A query
    /// or fragment is refused, as is any other scheme.
    pub fn parse(origin: &str) -> Result<Self, InvalidOrigin> {
        let invalid = |reason| InvalidOrigin {
            origin: origin.to_owned(),
            reason,
        };
        let uri: Uri = origin
            .parse()
            .map_err(|_| invalid("not a valid absolute URL"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            #[cfg(feature = "tls")]
            Some("https") => Scheme::HTTPS,
            #[cfg(not(feature = "tls"))]
            Some("https") => return Err(invalid("https origins need the `tls` feature")),
            Some(_) => return Err(invalid("the scheme must be http or https")),
            None => return Err(invalid("the URL needs a scheme, e.g. http://")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("the URL needs a host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the URL are not allowed"));
        }
        if authority.host().is_empty() {
            return Err(invalid("the URL needs a host"));
        }
        if uri.query().is_some() {
            return Err(invalid("the URL must not have a query"));
        }
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port == default_port => authority.host(),
            _ => authority.as_str(),
        };
        let host_header = HeaderValue::from_str(host).map_err(|_| invalid("invalid host"))?;
        let base_path = match uri.path() {
            "" | "/" => String::new(),
            path => path.to_owned(),
        };
        Ok(Self {
            scheme,
            authority,
            base_path,
            host_header,
        })
    }

    /// The origin's scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The origin's `host[:port]`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The path prefixed to every forwarded request path (empty for `/`).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The `Host` header sent upstream when `preserve_host` is off.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// Joins the origin's base path and the (possibly stripped) request path the way Kong's
/// default `path_handling: v0` does: `/s` + `/req` = `/s/req`, `/s/` + `/req` = `/s/req`,
/// `/s` + `` = `/s`, `/s/` + `` = `/s/`.
pub(crate) fn join_path(base: &str, rest: &str, out: &mut String) {
    if base.is_empty() {
        out.push_str(if rest.is_empty() { "/" } else { rest });
    } else if rest.is_empty() {
        out.push_str(base);
    } else if base.ends_with('/') && rest.starts_with('/') {
        out.push_str(base);
        out.push_str(&rest[1..]);
    } else {
        out.push_str(base);
        if !rest.starts_with('/') {
            out.push('/');
        }
        out.push_str(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, rest: &str) -> String {
        let mut out = String::new();
        join_path(base, rest, &mut out);
        out
    }

    #[test]
    fn paths_join_like_kong_path_handling_v0() {
        assert_eq!(join("/s", "/req"), "/s/req");
        assert_eq!(join("/s/", "/req"), "/s/req");
        assert_eq!(join("/s", ""), "/s");
        assert_eq!(join("/s/", ""), "/s/");
        assert_eq!(join("", "/req"), "/req");
        assert_eq!(join("", ""), "/");
    }

    #[test]
    fn origin_keeps_its_base_path_and_host() {
        let o = Origin::parse("http://example.com:8080/api/").unwrap();
        assert_eq!(o.base_path(), "/api/");
        assert_eq!(o.host_header(), "example.com:8080");
        let o = Origin::parse("http://example.com:80").unwrap();
        assert_eq!(o.host_header(), "example.com");
        assert_eq!(o.base_path(), "");
    }

    #[test]
    fn origins_with_credentials_queries_or_other_schemes_are_refused() {
        for bad in [
            "http://user:pw@example.com",
            "http://example.com/?a=1",
            "ftp://example.com",
            "example.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad} accepted");
        }
        // https needs the TLS support.
        assert_eq!(
            Origin::parse("https://example.com").is_ok(),
            cfg!(feature = "tls")
        );
    }
}
