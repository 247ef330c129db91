//! The identity headers sent upstream, and the request details authenticators read.

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Consumer;

/// `X-Consumer-ID`.
pub const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
/// `X-Consumer-Username`.
pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
/// `X-Consumer-Custom-ID`.
pub const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
/// `X-Credential-Identifier`.
pub const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
/// `X-Anonymous-Consumer`.
pub const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// Every identity header, removed from every request before authentication.
pub(crate) const IDENTITY: [HeaderName; 5] = [
    X_CONSUMER_ID,
    X_CONSUMER_USERNAME,
    X_CONSUMER_CUSTOM_ID,
    X_CREDENTIAL_IDENTIFIER,
    X_ANONYMOUS_CONSUMER,
];

/// Removes client-sent identity headers: what a route without authentication still does.
pub(crate) fn strip_identity(headers: &mut HeaderMap) {
    for name in &IDENTITY {
        headers.remove(name);
    }
}

/// Sets the identity headers of `consumer` (those it has; the others stay removed).
pub(crate) fn set_identity(headers: &mut HeaderMap, consumer: &Consumer) {
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(X_CONSUMER_ID, &consumer.id);
    if let Some(username) = &consumer.username {
        set(X_CONSUMER_USERNAME, username);
    }
    if let Some(custom_id) = &consumer.custom_id {
        set(X_CONSUMER_CUSTOM_ID, custom_id);
    }
    if let Some(identifier) = consumer
        .credential_identifier
        .as_ref()
        .or(consumer.credential.as_ref())
    {
        set(X_CREDENTIAL_IDENTIFIER, identifier);
    }
    if consumer.anonymous {
        headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
    }
}

/// The values of query argument `name`, percent-decoded (`+` is a space, as nginx reads it).
pub(crate) fn query_values<'a>(
    parts: &'a Parts,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    let query = parts.uri.query().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The name of one `key=value` pair of a query string or form, decoded as
/// [`query_values`] decodes it.
pub(crate) fn pair_name(pair: &str) -> Option<std::borrow::Cow<'_, str>> {
    form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(key, _)| key)
}

/// Removes every query argument named in `names` from the request URI.
pub(crate) fn remove_query_args(parts: &mut Parts, names: &[String]) {
    let Some(query) = parts.uri.query() else {
        return;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair_name(pair).is_some_and(|k| names.iter().any(|n| *n == k)))
        .collect();
    if kept.len() == query.split('&').count() {
        return;
    }
    let mut path_and_query = parts.uri.path().to_owned();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut uri = http::uri::Parts::from(parts.uri.clone());
    if let Ok(pq) = path_and_query.parse() {
        uri.path_and_query = Some(pq);
        if let Ok(rebuilt) = http::Uri::from_parts(uri) {
            parts.uri = rebuilt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        http::Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn query_arguments_are_decoded_and_removable() {
        let mut p = parts("/a?x=1&apikey=k%2B1&y=2&api%6Bey=z");
        let found: Vec<String> = query_values(&p, "apikey").collect();
        assert_eq!(found, ["k+1", "z"]);
        remove_query_args(&mut p, &["apikey".into()]);
        assert_eq!(p.uri, "/a?x=1&y=2");
        let mut only = parts("/a?apikey=k");
        remove_query_args(&mut only, &["apikey".into()]);
        assert_eq!(only.uri, "/a");
    }

    #[test]
    fn broken_escapes_stay_as_they_are_as_nginx_leaves_them() {
        let p = parts("/a?k=a%2&k=a%zz&k=a+b%21&k=%FF");
        let found: Vec<String> = query_values(&p, "k").collect();
        assert_eq!(found, ["a%2", "a%zz", "a b!", "\u{fffd}"]);
        assert_eq!(pair_name("api%6Bey=1").as_deref(), Some("apikey"));
    }
}
