//! Header rules at the proxy boundary: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! `X-Forwarded-*` family.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::TrustedProxies;
use crate::identity::ConnectionInfo;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(crate) const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
pub(crate) const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Fields that describe one connection, never forwarded whether or not `Connection` names them.
/// (`Trailer` is not one: it announces end-to-end trailer fields, and HTTP/1.1 servers send
/// only the trailers it names.) `HTTP2-Settings` is h2c's upgrade field (RFC 7540 §3.2.1): never forwarded, since `h2c`
/// never is.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HTTP2_SETTINGS,
];

const TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Removes the hop-by-hop fields from a message about to cross the proxy: every field named in
/// any `Connection` line (all lines, all comma-separated entries), then the fixed list.
///
/// Returns whether the message carried `TE: trailers`, the one `TE` value a proxy passes on.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> bool {
    // Most messages carry none of these; one pass over the names is cheaper than nine removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return false;
    }
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v, "trailers"));
    if headers.contains_key(header::CONNECTION) {
        let nominated: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
            .collect();
        for name in nominated {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    te_trailers
}

/// The protocols of a request's `Upgrade` that may be forwarded: the ones in `allowed`, for an
/// HTTP/1.1 request that nominates `Upgrade` in `Connection`, as one value in the client's
/// order. `None` when nothing may be forwarded: the request then goes on as a plain one
/// (hop-by-hop removal takes `Upgrade` and `Connection` off; [`strip_upgrade_leftovers`]
/// the rest).
pub(crate) fn allowed_upgrade(
    version: http::Version,
    headers: &HeaderMap,
    allowed: &[Box<str>],
) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 || !headers.contains_key(header::UPGRADE) {
        return None;
    }
    let asked = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, "upgrade"));
    if !asked {
        return None;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    for value in headers.get_all(header::UPGRADE) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if allowed
                .iter()
                .any(|p| p.as_bytes().eq_ignore_ascii_case(token))
                && !kept.iter().any(|k| k.eq_ignore_ascii_case(token))
            {
                kept.push(token);
            }
        }
    }
    match kept.as_slice() {
        [] => None,
        [one] => HeaderValue::from_bytes(one).ok(),
        many => HeaderValue::from_bytes(&many.join(&b", "[..])).ok(),
    }
}

/// Whether an upstream's `101` switches to a protocol the client asked for: its `Upgrade`
/// names exactly one of `asked`'s tokens.
pub(crate) fn upgrade_matches(response: &HeaderMap, asked: &HeaderValue) -> bool {
    let mut values = response.get_all(header::UPGRADE).iter();
    let (Some(chosen), None) = (values.next(), values.next()) else {
        return false;
    };
    let chosen = chosen.as_bytes().trim_ascii();
    !chosen.contains(&b',')
        && asked
            .as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(chosen))
}

/// Asks the next hop for the upgrade again, after [`strip_hop_by_hop`] removed the request's.
pub(crate) fn ask_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Puts `TE: trailers` back after [`strip_hop_by_hop`] when the client sent it.
pub(crate) fn restore_te_trailers(headers: &mut HeaderMap) {
    headers.insert(header::TE, TRAILERS);
}

/// Whether a comma-separated header value contains `token` (ASCII case-insensitive).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Sets `X-Forwarded-For` (appended), `X-Real-IP`, `X-Forwarded-Proto`, `-Host` and `-Port`
/// for a request that arrived on `conn`.
///
/// `host` is the `Host` the client sent, read before the proxy rewrote it.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    conn: &ConnectionInfo,
    trusted: &TrustedProxies,
    host: Option<HeaderValue>,
) {
    let peer = conn.remote_ip_header();
    let peer_trusted = !trusted.is_empty() && trusted.contains(conn.remote_addr().ip());

    let real_ip = if peer_trusted {
        client_from_forwarded_for(headers, trusted).unwrap_or_else(|| peer.clone())
    } else {
        peer.clone()
    };
    append_forwarded_for(headers, peer);
    headers.insert(X_REAL_IP, real_ip);

    let proto = if conn.is_secure() { HTTPS } else { HTTP };
    set_unless_trusted(headers, peer_trusted, X_FORWARDED_PROTO, Some(proto));
    set_unless_trusted(headers, peer_trusted, X_FORWARDED_HOST, host);
    set_unless_trusted(
        headers,
        peer_trusted,
        X_FORWARDED_PORT,
        Some(conn.local_port_header().clone()),
    );
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// untrusted address in `X-Forwarded-For`.
pub(crate) fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    client_from_forwarded_for(headers, trusted)
        .and_then(|v| v.to_str().ok().and_then(|s| s.parse().ok()))
        .unwrap_or(peer)
}

/// Appends `peer` to the incoming `X-Forwarded-For`, folding several incoming lines into one so
/// that the upstream cannot read a client-written line on its own.
fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue) {
    let mut lines = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    if lines.peek().is_none() {
        headers.insert(X_FORWARDED_FOR, peer.clone());
        return;
    }
    let mut joined = Vec::with_capacity(64);
    for line in lines {
        let line = line.as_bytes().trim_ascii();
        if !line.is_empty() {
            joined.extend_from_slice(line);
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(peer.as_bytes());
    // Built from valid header bytes and ASCII: cannot fail, but never panic on the request path.
    let value = HeaderValue::from_bytes(&joined).unwrap_or_else(|_| peer.clone());
    headers.insert(X_FORWARDED_FOR, value);
}

/// The client address in `X-Forwarded-For` sent by a trusted peer: the right-most entry that is
/// not itself a trusted proxy (nginx `real_ip_recursive on`).
fn client_from_forwarded_for(headers: &HeaderMap, trusted: &TrustedProxies) -> Option<HeaderValue> {
    let mut leftmost = None;
    let entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','));
    for entry in entries {
        let entry = entry.trim_ascii();
        if entry.is_empty() {
            continue;
        }
        let ip = std::str::from_utf8(entry).ok()?.parse::<IpAddr>().ok()?;
        if !trusted.contains(ip) {
            return HeaderValue::from_bytes(entry).ok();
        }
        leftmost = Some(entry);
    }
    leftmost.and_then(|e| HeaderValue::from_bytes(e).ok())
}

fn set_unless_trusted(
    headers: &mut HeaderMap,
    peer_trusted: bool,
    name: HeaderName,
    value: Option<HeaderValue>,
) {
    if peer_trusted && headers.contains_key(&name) {
        return;
    }
    match value {
        Some(value) => {
            headers.insert(name, value);
        }
        None => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn conn(peer: &str) -> ConnectionInfo {
        let peer: SocketAddr = peer.parse().unwrap();
        ConnectionInfo::new(peer, "127.0.0.1:8000".parse().unwrap())
    }

    #[test]
    fn fields_named_in_every_connection_line_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", " x-other ,,"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            ("keep-alive", "timeout=5"),
        ]);
        assert!(!strip_hop_by_hop(&mut h));
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "3");
    }

    #[test]
    fn fixed_hop_by_hop_fields_go_even_when_not_nominated() {
        let mut h = map(&[
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9v"),
            ("proxy-authenticate", "Basic"),
            ("te", "gzip"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        assert!(!strip_hop_by_hop(&mut h));
        assert_eq!(h.len(), 2);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn te_trailers_is_reported_so_it_can_survive() {
        let mut h = map(&[("te", "gzip, Trailers")]);
        assert!(strip_hop_by_hop(&mut h));
        assert!(h.is_empty());
    }

    #[test]
    fn forwarded_for_is_appended_to_and_folded_into_one_line() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        set_forwarded(
            &mut h,
            &conn("192.0.2.7:5000"),
            &TrustedProxies::none(),
            None,
        );
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["203.0.113.1, 198.51.100.2, 192.0.2.7"]);
        assert_eq!(h["x-real-ip"], "192.0.2.7");
    }

    #[test]
    fn untrusted_peers_cannot_set_forwarded_proto_host_or_port() {
        let mut h = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "443"),
        ]);
        let host = Some(HeaderValue::from_static("api.example.com"));
        set_forwarded(
            &mut h,
            &conn("192.0.2.7:5000"),
            &TrustedProxies::none(),
            host,
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-forwarded-port"], "8000");
    }

    #[test]
    fn trusted_peers_keep_their_values_and_name_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let mut h = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.1, 10.0.0.5"),
        ]);
        set_forwarded(&mut h, &conn("10.0.0.9:5000"), &trusted, None);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "203.0.113.1");
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 10.0.0.5, 10.0.0.9");
    }

    #[test]
    fn ipv6_peers_are_written_without_brackets_or_ports() {
        let mut h = HeaderMap::new();
        set_forwarded(
            &mut h,
            &conn("[2001:db8::1]:5000"),
            &TrustedProxies::none(),
            None,
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }
}
