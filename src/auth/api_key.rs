//! Kong's key-auth: an API key in a header, a query argument or the body.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use http::request::Parts;
use http::{HeaderName, HeaderValue};

use super::form::{Field, FormKind, fields, without};
use super::headers::{query_values, remove_query_args};
use super::{Authenticated, Authenticator, Consumers, Rejection};

/// Kong's `key-auth`: the key is looked up under each of `key_names`, in the headers, then in
/// the query string, then (with [`in_body`](Self::in_body), under [`BodyAuth`](super::BodyAuth))
/// in a form-urlencoded, JSON or multipart body; keys are compared in constant time.
///
/// | request | answer |
/// | --- | --- |
/// | no key, or an empty one | 401 `No API key found in request` |
/// | two different keys | 401 `Duplicate API key found` |
/// | a key nobody has | 401 `Unauthorized` |
///
/// Every 401 carries `WWW-Authenticate: Key` (with the realm, when set).
///
/// ```
/// use tower_gateway::auth::{ApiKey, Consumer, Consumers};
///
/// let consumers = Consumers::new();
/// consumers.insert(Consumer::new("c-1").username("test-user"));
/// consumers.add_api_key("test-user", "test-api-key").unwrap();
/// let key_auth = ApiKey::new(consumers).key_names(["apikey", "x-api-key"]).hide_credentials(true);
/// # let _ = key_auth;
/// ```
#[derive(Debug, Clone)]
pub struct ApiKey {
    consumers: Consumers,
    names: Arc<[(String, Option<HeaderName>)]>,
    in_header: bool,
    in_query: bool,
    in_body: bool,
    hide_credentials: bool,
    challenge: HeaderValue,
}

/// Kong's message for a request without a key.
pub const NO_API_KEY: &str = "No API key found in request";
/// Kong's message for two different keys in one request.
pub const DUPLICATE_API_KEY: &str = "Duplicate API key found";
/// Kong's message for an unknown key.
pub const UNAUTHORIZED: &str = "Unauthorized";

impl ApiKey {
    /// Keys of `consumers`, under the name `apikey`, in headers and the query string.
    pub fn new(consumers: Consumers) -> Self {
        Self {
            consumers,
            names: names(["apikey"]),
            in_header: true,
            in_query: true,
            in_body: false,
            hide_credentials: false,
            challenge: HeaderValue::from_static("Key"),
        }
    }

    /// The header and query-argument names that carry the key (Kong's `key_names`).
    pub fn key_names<I, N>(mut self, key_names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.names = names(key_names);
        self
    }

    /// Whether keys are read from headers (default true).
    pub fn in_header(mut self, yes: bool) -> Self {
        self.in_header = yes;
        self
    }

    /// Whether keys are read from the query string (default true).
    pub fn in_query(mut self, yes: bool) -> Self {
        self.in_query = yes;
        self
    }

    /// Whether keys are read from the body (Kong's `key_in_body`, default false): a top-level
    /// field of a form-urlencoded, JSON or multipart form-data body. Bodies are read only by
    /// [`BodyAuth`](super::BodyAuth) ([`AuthLayer::reading_body`](super::AuthLayer::reading_body)),
    /// up to its size limit; a body it does not read holds no key, as in Kong.
    pub fn in_body(mut self, yes: bool) -> Self {
        self.in_body = yes;
        self
    }

    /// Removes the key from the request (headers, query string and body) before it goes
    /// upstream (default false).
    pub fn hide_credentials(mut self, yes: bool) -> Self {
        self.hide_credentials = yes;
        self
    }

    /// The realm in the `WWW-Authenticate: Key realm="…"` challenge.
    pub fn realm(mut self, realm: &str) -> Self {
        if let Ok(value) = HeaderValue::try_from(format!("Key realm=\"{realm}\"")) {
            self.challenge = value;
        }
        self
    }

    fn refuse(&self, message: &str) -> Rejection {
        Rejection::unauthorized(message).challenge(self.challenge.clone())
    }
}

fn names<I, N>(key_names: I) -> Arc<[(String, Option<HeaderName>)]>
where
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    key_names
        .into_iter()
        .map(|n| {
            let name = n.as_ref().to_owned();
            let header = HeaderName::try_from(name.to_ascii_lowercase()).ok();
            (name, header)
        })
        .collect()
}

impl Authenticator for ApiKey {
    fn authenticate(&self, request: &mut Parts) -> Result<Authenticated, Rejection> {
        self.lookup(request, None)
    }

    fn reads_body(&self) -> bool {
        self.in_body
    }

    fn authenticate_with_body(
        &self,
        request: &mut Parts,
        body: &mut Bytes,
    ) -> Result<Authenticated, Rejection> {
        self.lookup(request, Some(body))
    }
}

/// Keeps `key` as the one found unless one was already: whether `key` is empty (none,
/// as Kong counts it), the first, or the same as the first.
fn keep_first<'k>(found: &mut Option<Cow<'k, [u8]>>, key: Cow<'k, [u8]>) -> bool {
    if key.is_empty() {
        return true;
    }
    match found {
        Some(first) => **first == *key,
        None => {
            *found = Some(key);
            true
        }
    }
}

impl ApiKey {
    fn lookup(
        &self,
        request: &mut Parts,
        body: Option<&mut Bytes>,
    ) -> Result<Authenticated, Rejection> {
        let form = body
            .filter(|_| self.in_body)
            .and_then(|body| Some((FormKind::of(&request.headers)?, body)));
        let body_fields = form
            .as_ref()
            .map(|(kind, body)| fields(kind, &body[..]))
            .unwrap_or_default();
        // Borrowed from a header or the body; a query value is decoded into a copy.
        let mut found: Option<Cow<'_, [u8]>> = None;
        let mut consider = |key| {
            if keep_first(&mut found, key) {
                Ok(())
            } else {
                Err(self.refuse(DUPLICATE_API_KEY))
            }
        };
        for (name, header) in self.names.iter() {
            if self.in_header
                && let Some(header) = header
            {
                for value in request.headers.get_all(header) {
                    consider(Cow::Borrowed(value.as_bytes().trim_ascii()))?;
                }
            }
            if self.in_query {
                for value in query_values(request, name) {
                    consider(Cow::Owned(value.into_bytes()))?;
                }
            }
            for (_, field) in body_fields.iter().filter(|(n, _)| n == name) {
                match field {
                    Field::Text(value) => consider(Cow::Borrowed(value.as_bytes()))?,
                    // An array or object of keys (Kong).
                    Field::Nested => return Err(self.refuse(DUPLICATE_API_KEY)),
                }
            }
        }
        let Some(key) = found else {
            return Err(self.refuse(NO_API_KEY).missing());
        };
        let registry = self.consumers.snapshot();
        let Some(credential) = registry.api_key(&key) else {
            return Err(self.refuse(UNAUTHORIZED));
        };
        let Some(consumer) = registry.consumer(&credential.consumer) else {
            return Err(self.refuse(UNAUTHORIZED));
        };
        let consumer = consumer.with_credential(&credential.id);
        if self.hide_credentials {
            for (_, header) in self.names.iter() {
                if let Some(header) = header {
                    request.headers.remove(header);
                }
            }
            let names: Vec<String> = self.names.iter().map(|(n, _)| n.clone()).collect();
            remove_query_args(request, &names);
            if let Some((kind, body)) = form
                && let Some(rest) = without(&kind, &body[..], &names)
            {
                *body = rest;
            }
        }
        Ok(Authenticated::consumer(consumer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Consumer;

    fn key_auth() -> ApiKey {
        let consumers = Consumers::new();
        consumers.insert(Consumer::new("c-1").username("ann"));
        consumers.add_api_key("ann", "k-1").unwrap();
        consumers.add_api_key("ann", "k-2").unwrap();
        ApiKey::new(consumers)
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn message(r: Rejection) -> String {
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        body["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_key_in_the_header_or_query_finds_its_consumer() {
        let auth = key_auth();
        for mut p in [parts("/", &[("apikey", "k-1")]), parts("/?apikey=k-1", &[])] {
            let ok = auth.authenticate(&mut p).unwrap();
            let consumer = ok.consumer.unwrap();
            assert_eq!(consumer.username.as_deref(), Some("ann"));
            assert!(consumer.credential.is_some());
        }
    }

    #[test]
    fn kong_s_refusals() {
        let auth = key_auth();
        let refuse = |p: &mut Parts| message(auth.authenticate(p).unwrap_err());
        assert_eq!(refuse(&mut parts("/", &[])), NO_API_KEY);
        assert_eq!(refuse(&mut parts("/", &[("apikey", "")])), NO_API_KEY);
        assert_eq!(refuse(&mut parts("/", &[("apikey", "nope")])), UNAUTHORIZED);
        assert_eq!(
            refuse(&mut parts("/?apikey=k-2", &[("apikey", "k-1")])),
            DUPLICATE_API_KEY
        );
        let err = auth.authenticate(&mut parts("/", &[])).unwrap_err();
        assert_eq!(err.challenge.unwrap(), "Key");
        assert!(err.missing);
        // The same key twice is one key.
        assert!(
            auth.authenticate(&mut parts("/?apikey=k-1", &[("apikey", "k-1")]))
                .is_ok()
        );
    }

    #[test]
    fn hidden_credentials_leave_the_request() {
        let auth = key_auth().hide_credentials(true);
        let mut p = parts("/x?a=1&apikey=k-1", &[("apikey", "k-1"), ("other", "v")]);
        auth.authenticate(&mut p).unwrap();
        assert!(p.headers.get("apikey").is_none());
        assert_eq!(p.uri, "/x?a=1");
        assert_eq!(p.headers["other"], "v");
    }

    fn form(content_type: &str, uri: &str) -> Parts {
        parts(uri, &[("content-type", content_type)])
    }

    #[test]
    fn a_key_in_the_body_counts_only_when_enabled() {
        let mut body = Bytes::from_static(b"a=1&apikey=k-1");
        let p = || form("application/x-www-form-urlencoded", "/");
        let refused = key_auth().authenticate_with_body(&mut p(), &mut body);
        assert_eq!(message(refused.unwrap_err()), NO_API_KEY);
        let auth = key_auth().in_body(true);
        assert!(auth.reads_body());
        assert!(auth.authenticate_with_body(&mut p(), &mut body).is_ok());
        // Without a body at hand (or one of another kind) there is nothing to find.
        assert_eq!(
            message(auth.authenticate(&mut p()).unwrap_err()),
            NO_API_KEY
        );
        let mut text = form("text/plain", "/");
        let err = auth
            .authenticate_with_body(&mut text, &mut body)
            .unwrap_err();
        assert_eq!(message(err), NO_API_KEY);
    }

    #[test]
    fn body_keys_meet_header_keys_in_the_duplicate_check() {
        let auth = key_auth().in_body(true);
        let mut p = parts(
            "/",
            &[("content-type", "application/json"), ("apikey", "k-1")],
        );
        let mut other = Bytes::from_static(br#"{"apikey":"k-2"}"#);
        let err = auth.authenticate_with_body(&mut p, &mut other).unwrap_err();
        assert_eq!(message(err), DUPLICATE_API_KEY);
        let mut listed = Bytes::from_static(br#"{"apikey":["k-1"]}"#);
        let mut p = form("application/json", "/");
        let err = auth
            .authenticate_with_body(&mut p, &mut listed)
            .unwrap_err();
        assert_eq!(message(err), DUPLICATE_API_KEY);
    }

    #[test]
    fn hidden_credentials_leave_the_body() {
        let auth = key_auth().in_body(true).hide_credentials(true);
        let mut body = Bytes::from_static(br#"{"apikey":"k-1","order":7}"#);
        let mut p = form("application/json", "/");
        auth.authenticate_with_body(&mut p, &mut body).unwrap();
        assert_eq!(&body[..], br#"{"order":7}"#);
    }
}
