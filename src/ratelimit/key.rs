//! What a rate limit counts by.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request};

use super::store::Key;
use crate::proxy::TrustedProxies;
use crate::server::ConnectionInfo;

/// Chooses the key a request is counted under (Kong's `limit_by`). A request without a key
/// (a missing header, an unknown peer) is not limited, as nginx does for empty keys.
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
    /// Any rule: a function of the request's headers and extensions.
    Custom(KeyRule),
}

/// A custom key rule for [`KeyBy::Custom`].
pub type KeyRule = Arc<dyn Fn(&HeaderMap, &http::Extensions) -> Option<Key> + Send + Sync>;

impl KeyBy {
    /// The key of `req`, if it has one.
    pub fn key<B>(&self, req: &Request<B>) -> Option<Key> {
        match self {
            Self::ClientIp(trusted) => {
                let conn = req.extensions().get::<ConnectionInfo>()?;
                Some(Key::Ip(crate::proxy::client_ip(
                    req.headers(),
                    conn,
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
            Self::Custom(rule) => rule(req.headers(), req.extensions()),
        }
    }
}

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientIp(t) => f.debug_tuple("ClientIp").field(t).finish(),
            Self::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Self::Global => f.write_str("Global"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}
