//! What a rate limit counts by.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request};

use super::store::Key;
use crate::proxy::TrustedProxies;

/// Chooses the key a request is counted under (Kong's `limit_by`). A request without a key
/// (a missing header, no consumer) is not limited, as nginx does for empty keys. A request
/// without a peer address, though, means the layer is deployed where it cannot see clients
/// (no [`peer_addr`](crate::identity::peer_addr): neither this crate's server, nor axum's
/// `ConnectInfo` with feature `axum`, nor a `SocketAddr` in the extensions): [`KeyBy::ClientIp`]
/// then fails closed, the layer answers `500` and logs the error once, rather than let every
/// request through unlimited.
#[derive(Clone)]
pub enum KeyBy {
    /// The client address: the peer, or, when the peer is a trusted proxy, the right-most
    /// untrusted address of `X-Forwarded-For` (Kong's `ip`).
    ClientIp(TrustedProxies),
    /// The value of a header (Kong's `header`).
    Header(HeaderName),
    /// One counter for all requests (Kong's `service`/`route` when the layer is applied per
    /// service or route).
    Global,
    /// The authenticated [`Consumer`](crate::identity::Consumer)'s id (Kong's `consumer`; the
    /// anonymous consumer counts as one consumer).
    Consumer,
    /// The id of the credential that authenticated the request (Kong's `credential`).
    Credential,
    /// The request path, but only when it is exactly this one (Kong's `path`).
    Path(String),
    /// The matched route's name (one layer in front of a router, a counter per route).
    Route,
    /// The first rule that yields a key (Kong falls back to the client IP:
    /// `KeyBy::Consumer.or(KeyBy::ClientIp(trusted))`).
    Either(Box<KeyBy>, Box<KeyBy>),
    /// Any rule: a function of the request's headers and extensions.
    Custom(KeyRule),
}

/// A custom key rule for [`KeyBy::Custom`].
pub type KeyRule = Arc<dyn Fn(&HeaderMap, &http::Extensions) -> Option<Key> + Send + Sync>;

impl KeyBy {
    /// The key of `req`, if it has one (`None` too when the peer address is missing; see
    /// [`KeyBy`]).
    pub fn key<B>(&self, req: &Request<B>) -> Option<Key> {
        self.lookup(req).ok().flatten()
    }

    /// The key of `req`, or the error of a client address that cannot be known.
    pub(crate) fn lookup<B>(&self, req: &Request<B>) -> Result<Option<Key>, NoPeerAddress> {
        Ok(match self {
            Self::ClientIp(trusted) => {
                let peer = crate::identity::peer_addr(req.extensions()).ok_or(NoPeerAddress)?;
                Some(Key::Ip(crate::proxy::client_ip(
                    req.headers(),
                    peer.ip(),
                    trusted,
                )))
            }
            Self::Header(name) => req
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(|v| Key::Text(v.into())),
            Self::Global => Some(Key::Global),
            Self::Consumer => req
                .extensions()
                .get::<crate::identity::Consumer>()
                .map(|c| Key::Text(format!("consumer:{}", c.id).into())),
            Self::Credential => req
                .extensions()
                .get::<crate::identity::Consumer>()
                .and_then(|c| c.credential.as_ref())
                .map(|id| Key::Text(format!("credential:{id}").into())),
            Self::Path(path) => {
                (req.uri().path() == path).then(|| Key::Text(format!("path:{path}").into()))
            }
            Self::Route => req
                .extensions()
                .get::<crate::router::RouteMatch>()
                .and_then(|m| m.name())
                .map(|name| Key::Text(format!("route:{name}").into())),
            Self::Either(first, second) => match first.lookup(req)? {
                Some(key) => Some(key),
                None => second.lookup(req)?,
            },
            Self::Custom(rule) => rule(req.headers(), req.extensions()),
        })
    }
}

/// A request without a peer address, under a rule that needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoPeerAddress;

impl KeyBy {
    /// This rule, or `other` when this one yields no key.
    pub fn or(self, other: KeyBy) -> KeyBy {
        KeyBy::Either(Box::new(self), Box::new(other))
    }
}

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientIp(t) => f.debug_tuple("ClientIp").field(t).finish(),
            Self::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Self::Global => f.write_str("Global"),
            Self::Consumer => f.write_str("Consumer"),
            Self::Credential => f.write_str("Credential"),
            Self::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Self::Route => f.write_str("Route"),
            Self::Either(a, b) => f.debug_tuple("Either").field(a).field(b).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[cfg(test)]
mod keys {
    use super::*;
    use crate::identity::ConnectionInfo;
    use std::net::SocketAddr;

    fn request(path: &str) -> Request<()> {
        let mut req = Request::get(path).body(()).unwrap();
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        req.extensions_mut()
            .insert(ConnectionInfo::new(peer, "127.0.0.1:8000".parse().unwrap()));
        req
    }

    #[test]
    fn kong_s_keys_fall_back_to_the_client_ip() {
        let kong_consumer = KeyBy::Consumer
            .or(KeyBy::Credential)
            .or(KeyBy::ClientIp(TrustedProxies::none()));
        let mut req = request("/a");
        assert_eq!(
            kong_consumer.key(&req),
            Some(Key::Ip("10.0.0.9".parse().unwrap()))
        );
        let mut consumer = crate::identity::Consumer::new("c-1");
        consumer.credential = Some("k-1".into());
        req.extensions_mut().insert(consumer);
        assert_eq!(
            kong_consumer.key(&req),
            Some(Key::Text("consumer:c-1".into()))
        );
        assert_eq!(
            KeyBy::Credential.key(&req),
            Some(Key::Text("credential:k-1".into()))
        );
    }

    #[test]
    fn a_path_key_is_the_exact_path_only() {
        let by_path = KeyBy::Path("/login".into());
        assert_eq!(
            by_path.key(&request("/login")),
            Some(Key::Text("path:/login".into()))
        );
        assert_eq!(by_path.key(&request("/login/x")), None);
        assert_eq!(KeyBy::Route.key(&request("/x")), None);
    }
}
