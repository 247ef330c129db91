//! What a request is hashed on for consistent hashing (Kong's `hash_on` / `hash_fallback`).

use http::request::Parts;
use http::{HeaderName, HeaderValue};

use super::consistent_hash::hash64;
use crate::proxy::{TrustedProxies, client_ip};
use crate::router::RouteMatch;

/// The input of a request's hash key (Kong's `hash_on` values).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum HashOn {
    /// No key: requests are spread round-robin.
    #[default]
    None,
    /// The client address, read from `X-Forwarded-For` only behind the given trusted proxies.
    ClientIp(TrustedProxies),
    /// The values of a request header (several lines are hashed together).
    Header(HeaderName),
    /// A cookie. A request without it gets a new random value, sent back to the client in
    /// `Set-Cookie` with this `path`, so the client sticks to one endpoint from then on (Kong).
    Cookie {
        /// The cookie's name.
        name: String,
        /// The `Path` of the cookie set when it is missing (Kong default `/`).
        path: String,
    },
    /// The request path, as the client sent it (before any prefix stripping).
    Path,
    /// A query-string argument, as sent (not percent-decoded).
    QueryArg(String),
    /// A capture of the route's path: a regex group's name or number, or a `{param}` (the
    /// router's [`RouteMatch::param`]).
    UriCapture(String),
    /// The authenticated [`Consumer`](crate::identity::Consumer)'s id (an auth layer must run
    /// before the balancer).
    Consumer,
}

/// A request's key, and the cookie to set when the key was generated.
#[derive(Debug, Default)]
pub(crate) struct Key {
    pub(crate) hash: Option<u64>,
    pub(crate) set_cookie: Option<HeaderValue>,
}

impl HashOn {
    /// The key from this input, if the request has it.
    pub(crate) fn key(&self, parts: &Parts) -> Key {
        let hash = |bytes: &[u8]| Key {
            hash: Some(hash64(bytes)),
            set_cookie: None,
        };
        match self {
            HashOn::None => Key::default(),
            HashOn::ClientIp(trusted) => match crate::identity::peer_addr(&parts.extensions) {
                Some(peer) => hash(
                    client_ip(&parts.headers, peer.ip(), trusted)
                        .to_string()
                        .as_bytes(),
                ),
                None => Key::default(),
            },
            HashOn::Header(name) => {
                let mut values = parts.headers.get_all(name).iter().peekable();
                if values.peek().is_none() {
                    return Key::default();
                }
                let joined: Vec<u8> = values.fold(Vec::new(), |mut acc, v| {
                    if !acc.is_empty() {
                        acc.push(b',');
                    }
                    acc.extend_from_slice(v.as_bytes());
                    acc
                });
                hash(&joined)
            }
            HashOn::Cookie { name, path } => match cookie(parts, name) {
                Some(value) => hash(value),
                None => {
                    let value = format!("{:032x}", rand::random::<u128>());
                    let set = HeaderValue::try_from(format!("{name}={value}; Path={path}")).ok();
                    Key {
                        hash: Some(hash64(value.as_bytes())),
                        set_cookie: set,
                    }
                }
            },
            HashOn::Path => {
                let path = parts
                    .extensions
                    .get::<RouteMatch>()
                    .map_or(parts.uri.path(), |m| m.original_uri().path());
                hash(path.as_bytes())
            }
            HashOn::Consumer => match parts.extensions.get::<crate::identity::Consumer>() {
                Some(consumer) => hash(consumer.id.as_bytes()),
                None => Key::default(),
            },
            HashOn::QueryArg(name) => match query_arg(parts.uri.query(), name) {
                Some(value) => hash(value.as_bytes()),
                None => Key::default(),
            },
            HashOn::UriCapture(name) => {
                let captured = parts
                    .extensions
                    .get::<RouteMatch>()
                    .and_then(|m| m.param(name));
                match captured {
                    Some(value) if !value.is_empty() => hash(value.as_bytes()),
                    _ => Key::default(),
                }
            }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` lines.
fn cookie<'a>(parts: &'a Parts, name: &'a str) -> Option<&'a [u8]> {
    crate::cookie::values(&parts.headers, name).next()
}

/// The first value of argument `name` in a query string.
fn query_arg<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookies_and_query_args_are_found_by_name() {
        let p = parts("/x?a=1&user=42&b", &[("cookie", "x=1; session = abc ;y=2")]);
        assert_eq!(cookie(&p, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie(&p, "sess"), None);
        assert_eq!(query_arg(p.uri.query(), "user"), Some("42"));
        assert_eq!(query_arg(p.uri.query(), "b"), Some(""));
        assert_eq!(query_arg(p.uri.query(), "c"), None);
    }

    #[test]
    fn a_missing_cookie_is_generated_and_set() {
        let on = HashOn::Cookie {
            name: "lb".into(),
            path: "/".into(),
        };
        let key = on.key(&parts("/", &[]));
        let set = key.set_cookie.expect("a cookie to set");
        let value = set.to_str().unwrap();
        assert!(
            value.starts_with("lb=") && value.ends_with("; Path=/"),
            "{value}"
        );
        // The client sending it back gets the same key.
        let cookie_value = value.trim_end_matches("; Path=/").to_owned();
        let again = on.key(&parts("/", &[("cookie", &cookie_value)]));
        assert_eq!(again.hash, key.hash);
        assert!(again.set_cookie.is_none());
    }

    #[test]
    fn the_consumer_s_id_is_hashed() {
        let mut p = parts("/", &[]);
        assert!(HashOn::Consumer.key(&p).hash.is_none());
        p.extensions.insert(crate::identity::Consumer::new("c-1"));
        let one = HashOn::Consumer.key(&p).hash;
        p.extensions.insert(crate::identity::Consumer::new("c-2"));
        assert!(one.is_some() && one != HashOn::Consumer.key(&p).hash);
    }

    #[test]
    fn missing_inputs_give_no_key() {
        let p = parts("/a", &[]);
        assert!(
            HashOn::Header(HeaderName::from_static("x-user"))
                .key(&p)
                .hash
                .is_none()
        );
        assert!(HashOn::QueryArg("u".into()).key(&p).hash.is_none());
        assert!(HashOn::None.key(&p).hash.is_none());
        assert!(HashOn::Path.key(&p).hash.is_some());
        assert!(HashOn::UriCapture("id".into()).key(&p).hash.is_none());
    }
}
