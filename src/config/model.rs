//! The serde model of Kong's declarative format, restricted to what this gateway implements.
//!
//! Every field Kong defines for services and routes is known here. A field this gateway acts
//! on is read; a field it does not act on yet is accepted only at Kong's default value and
//! refused otherwise ("not supported yet"), so that no setting is silently ignored. Unknown
//! fields are refused. Values are checked while parsing, so errors carry the field path and
//! the line.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};

use crate::proxy::Origin;
use crate::router::{check_host, check_path};

/// A whole declarative configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `_format_version`: `"1.1"`, `"2.1"` or `"3.0"`.
    #[serde(rename = "_format_version")]
    pub format_version: FormatVersion,
    /// `_transform` (Kong: hash credentials on import); accepted for compatibility.
    #[serde(rename = "_transform", default)]
    pub transform: Option<bool>,
    /// `_comment`: free text.
    #[serde(rename = "_comment", default)]
    pub comment: Option<String>,
    /// `_info` (written by decK): accepted and not interpreted.
    #[serde(rename = "_info", default)]
    pub info: Option<IgnoredAny>,
    /// `_workspace`: only the default workspace exists.
    #[serde(rename = "_workspace", default)]
    pub workspace: Option<String>,
    /// Services, each with its nested routes.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Top-level routes, each naming its service.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Plugins: global, or scoped with `service:` / `route:`.
    #[serde(default)]
    pub plugins: Vec<super::Plugin>,
    /// Consumers with their credentials.
    #[serde(default)]
    pub consumers: Vec<super::Consumer>,
    /// Upstreams: named sets of targets a service's `host` can refer to.
    #[serde(default)]
    pub upstreams: Vec<super::Upstream>,
    /// Top-level targets, each naming its `upstream`.
    #[serde(default)]
    pub targets: Vec<super::Target>,
    /// Certificates the TLS listener presents, by server name (feature `tls`).
    #[serde(default)]
    pub certificates: Vec<super::Certificate>,
    /// CA certificates that services verify their upstreams with (feature `tls`).
    #[serde(default)]
    pub ca_certificates: Vec<super::CaCertificate>,
    /// Server names, each naming its certificate (feature `tls`).
    #[serde(default)]
    pub snis: Vec<super::Sni>,
    /// Vaults: not supported.
    #[serde(default)]
    pub vaults: NotYet<Vaults>,
    /// Top-level API keys, each naming its `consumer`.
    #[serde(default)]
    pub keyauth_credentials: Vec<super::KeyAuthCredential>,
    /// Top-level JWT credentials, each naming its `consumer`.
    #[serde(default)]
    pub jwt_secrets: Vec<super::JwtSecret>,
    /// The file this configuration was read from (`<config>` for a string).
    #[serde(skip)]
    pub source: String,
}

/// A Kong service: where requests go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Kong's entity id.
    #[serde(default)]
    pub id: Option<String>,
    /// The name routes refer to.
    #[serde(default)]
    pub name: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// A disabled service's routes do not match (Kong semantics). Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Shorthand for protocol, host, port and path: `http://host:port/path`.
    #[serde(default)]
    pub url: Option<ServiceUrl>,
    /// `http` (default).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The origin's host.
    #[serde(default)]
    pub host: Option<String>,
    /// The origin's port (default 80).
    #[serde(default)]
    pub port: Option<u16>,
    /// The base path requests are appended to.
    #[serde(default)]
    pub path: Option<String>,
    /// Milliseconds to connect (default 60 000).
    #[serde(default)]
    pub connect_timeout: Option<TimeoutMs>,
    /// Milliseconds one read may wait (default 60 000).
    #[serde(default)]
    pub read_timeout: Option<TimeoutMs>,
    /// Milliseconds one write may wait (default 60 000).
    #[serde(default)]
    pub write_timeout: Option<TimeoutMs>,
    /// Kong's retries (default 5): how many times a connection failure is retried on another
    /// target of the service's upstream.
    #[serde(default)]
    pub retries: Option<u16>,
    /// Whether an `https`/`grpcs` upstream's certificate is verified against the system's
    /// roots (default true; `false` logs a warning).
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// Upstream TLS verification depth: refused until upstream TLS is implemented.
    #[serde(default)]
    pub tls_verify_depth: NotYet<Tls>,
    /// The ids of the CA certificates (top-level `ca_certificates`) its `https`/`grpcs`
    /// upstream is verified with, instead of the system's roots.
    #[serde(default)]
    pub ca_certificates: Option<Vec<String>>,
    /// The certificate (a top-level `certificates` entry, by id) presented to an
    /// `https`/`grpcs` upstream that asks for a client certificate.
    #[serde(default)]
    pub client_certificate: Option<ServiceRef>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
    /// Routes of this service.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Plugins scoped to this service.
    #[serde(default)]
    pub plugins: Vec<super::Plugin>,
}

/// A Kong route: which requests go to a service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Kong's entity id.
    #[serde(default)]
    pub id: Option<String>,
    /// The route's name (logged).
    #[serde(default)]
    pub name: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// For top-level routes: the service, by name or id.
    #[serde(default)]
    pub service: Option<ServiceRef>,
    /// Path patterns (see [`crate::router::Route`] for the syntax).
    #[serde(default)]
    pub paths: Option<Vec<RoutePath>>,
    /// Accepted methods (upper case).
    #[serde(default)]
    pub methods: Option<Vec<RouteMethod>>,
    /// Host patterns.
    #[serde(default)]
    pub hosts: Option<Vec<RouteHost>>,
    /// Header conditions: name → accepted values.
    #[serde(default)]
    pub headers: Option<BTreeMap<HeaderNameStr, Vec<String>>>,
    /// Remove the matched path prefix before proxying (default true).
    #[serde(default)]
    pub strip_path: Option<bool>,
    /// Send the client's `Host` upstream (default false).
    #[serde(default)]
    pub preserve_host: Option<bool>,
    /// `http` and/or `https` (default both). `https` alone needs TLS, which comes later.
    #[serde(default)]
    pub protocols: Option<Vec<RouteProtocol>>,
    /// Only `v0` (the default) is implemented.
    #[serde(default)]
    pub path_handling: Option<PathHandling>,
    /// Among routes matched by a regex path, the higher wins (default 0).
    #[serde(default)]
    pub regex_priority: Option<RegexPriority>,
    /// Only Kong's default 426 is accepted until TLS is implemented.
    #[serde(default)]
    pub https_redirect_status_code: Option<RedirectCode>,
    /// Accepted; this gateway always streams request bodies.
    #[serde(default)]
    pub request_buffering: Option<bool>,
    /// Accepted; this gateway always streams response bodies.
    #[serde(default)]
    pub response_buffering: Option<bool>,
    /// SNIs: refused until TLS is implemented.
    #[serde(default)]
    pub snis: NotYet<Tls>,
    /// Stream-route sources: not supported.
    #[serde(default)]
    pub sources: NotYet<Streams>,
    /// Stream-route destinations: not supported.
    #[serde(default)]
    pub destinations: NotYet<Streams>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
    /// Plugins scoped to this route.
    #[serde(default)]
    pub plugins: Vec<super::Plugin>,
}

/// `_format_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatVersion {
    /// `"1.1"` (Kong 1.x).
    V1_1,
    /// `"2.1"` (Kong 2.x).
    V2_1,
    /// `"3.0"` (Kong 3.x).
    V3_0,
}

/// A reference from a top-level route to its service: `service: name` or
/// `service: {name: ...}` / `service: {id: ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef(pub String);

/// A service `url`, checked to be a URL the proxy can forward to: `http://…`, or `grpc://…`
/// for HTTP/2 cleartext.
#[derive(Debug, Clone)]
pub struct ServiceUrl(pub Origin, pub Protocol);

/// A service `protocol`: `http`, `grpc` (HTTP/2 with prior knowledge to the upstream, as
/// Kong's), and with the `tls` feature `https` and `grpcs` (HTTP/2 by ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    Http,
    /// HTTP/2 cleartext (h2c).
    Grpc,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 over TLS.
    Grpcs,
}

impl Protocol {
    /// Whether the upstream is spoken to over HTTP/2.
    pub fn http2(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }

    /// Whether the upstream is spoken to over TLS.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }
}

/// Refuses the TLS protocols when the `tls` feature is off.
fn with_tls(protocol: Protocol, name: &str) -> Result<Protocol, String> {
    if protocol.tls() && !cfg!(feature = "tls") {
        return Err(format!(
            "protocol {name:?} needs the `tls` feature (TLS to upstreams)"
        ));
    }
    Ok(protocol)
}

/// A timeout in milliseconds, 1 to 2 147 483 646 (Kong's range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutMs(pub u64);

/// A route path, checked against the router's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath(pub String);

/// A route host, checked against the router's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHost(pub String);

/// A route method: an upper-case HTTP method token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMethod(pub http::Method);

/// A header name in a route's `headers` condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeaderNameStr(pub String);

/// A route protocol: `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteProtocol {
    /// Plain-text HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// `path_handling`: only `v0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathHandling;

/// A route's `regex_priority`: a 32-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegexPriority(pub i32);

/// `https_redirect_status_code`: only 426.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectCode;

/// A section or field that a later part of the gateway implements: accepted when absent,
/// null or empty, refused with "not supported yet" otherwise.
#[derive(Debug, Clone, Copy)]
pub struct NotYet<W>(std::marker::PhantomData<W>);

/// Marker: comes with TLS.
#[derive(Debug, Clone, Copy)]
pub enum Tls {}
/// Marker: not planned.
#[derive(Debug, Clone, Copy)]
pub enum Vaults {}
/// Marker: stream (TCP/UDP) routes, not planned.
#[derive(Debug, Clone, Copy)]
pub enum Streams {}

/// What a [`NotYet`] field waits for, for its error message.
pub trait Pending {
    /// The feature that will implement it.
    const WHAT: &'static str;
}
impl Pending for Tls {
    const WHAT: &'static str = "TLS settings come with TLS support";
}
impl Pending for Vaults {
    const WHAT: &'static str = "vaults are not supported";
}
impl Pending for Streams {
    const WHAT: &'static str = "stream (TCP/UDP) routing is not supported";
}

// === impl Deserialize for the checked values ===

/// Deserializes a string and checks it inside the visitor, so that an error carries the
/// location of the value itself (serde_norway fills in the position only there).
pub(super) fn checked_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Visitor<F>(&'static str, F);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'de> for Visitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.1)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Visitor(expecting, check))
}

/// Deserializes an integer and checks it inside the visitor (see [`checked_str`]).
pub(super) fn checked_int<'de, D, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(i128) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Visitor<F>(&'static str, F);
    impl<'de, T, F: FnOnce(i128) -> Result<T, String>> de::Visitor<'de> for Visitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            (self.1)(i128::from(v)).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            (self.1)(i128::from(v)).map_err(E::custom)
        }
    }
    d.deserialize_i64(Visitor(expecting, check))
}

impl<'de> Deserialize<'de> for FormatVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a format version string", |v| match v {
            "1.1" => Ok(Self::V1_1),
            "2.1" => Ok(Self::V2_1),
            "3.0" => Ok(Self::V3_0),
            other => Err(format!(
                "unsupported _format_version {other:?}: expected \"1.1\", \"2.1\" or \"3.0\""
            )),
        })
    }
}

impl<'de> Deserialize<'de> for ServiceRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = ServiceRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service name or id, or {name: ...} / {id: ...}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServiceRef, E> {
                Ok(ServiceRef(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ServiceRef, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" | "id" => found = Some(map.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["name", "id"]));
                        }
                    }
                }
                found
                    .map(ServiceRef)
                    .ok_or_else(|| de::Error::missing_field("name"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for ServiceUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a URL", |v| {
            let (url, protocol) = if let Some(rest) = v.strip_prefix("grpc://") {
                (format!("http://{rest}"), Protocol::Grpc)
            } else if let Some(rest) = v.strip_prefix("grpcs://") {
                (
                    format!("https://{rest}"),
                    with_tls(Protocol::Grpcs, "grpcs")?,
                )
            } else if v.starts_with("https://") {
                (v.to_owned(), with_tls(Protocol::Https, "https")?)
            } else {
                (v.to_owned(), Protocol::Http)
            };
            Origin::parse(&url)
                .map(|origin| ServiceUrl(origin, protocol))
                .map_err(|e| e.to_string())
        })
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a protocol", |v| match v {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            "https" => with_tls(Protocol::Https, "https"),
            "grpcs" => with_tls(Protocol::Grpcs, "grpcs"),
            p @ ("tcp" | "tls" | "tls_passthrough" | "udp" | "ws" | "wss") => Err(format!(
                "protocol {p:?} is not supported: services speak \"http\" or \"grpc\""
            )),
            other => Err(format!(
                "unknown protocol {other:?}: expected \"http\" or \"grpc\""
            )),
        })
    }
}

impl<'de> Deserialize<'de> for TimeoutMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_int(d, "a timeout in milliseconds", |ms| {
            match u64::try_from(ms) {
                Ok(ms @ 1..=2_147_483_646) => Ok(TimeoutMs(ms)),
                _ => Err(format!(
                    "timeout {ms} out of range: expected milliseconds from 1 to 2147483646"
                )),
            }
        })
    }
}

impl<'de> Deserialize<'de> for RoutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a path", |v| {
            let path = if LEGACY_PATHS.get() {
                legacy_path(v)
            } else {
                v.to_owned()
            };
            check_path(&path).map_err(|e| e.to_string())?;
            Ok(RoutePath(path))
        })
    }
}

thread_local! {
    /// Whether the file being read is a Kong 1.x/2.x one (`_format_version` "1.1" or "2.1"),
    /// whose route paths are read as Kong 3 reads them (serde's `Deserialize` has no other way
    /// in; set around one parse by [`with_format_of`]).
    static LEGACY_PATHS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `parse` with the route-path reading of the format `version` names (`None`: 3.0).
pub(crate) fn with_format_of<R>(version: Option<&str>, parse: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEGACY_PATHS.set(self.0);
        }
    }
    let legacy = matches!(version, Some("1.1" | "2.1"));
    let _restore = Restore(LEGACY_PATHS.replace(legacy));
    parse()
}

/// A Kong 2.x path as Kong 3 reads it from an old file: a path of only letters, digits and
/// `.-_~/%` is a plain prefix; anything else was a regex there, so it becomes a `~` path, its
/// `%XX` escapes decoded (reserved characters stay escaped, in upper case; regex
/// metacharacters are decoded backslash-escaped), as Kong's 2.8 → 3.0 migration does.
pub(crate) fn legacy_path(path: &str) -> String {
    // Already Kong 3's form (a file converted by hand, or exported by a gateway).
    if path.starts_with('~') {
        return path.to_owned();
    }
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_~/%".contains(&b));
    if plain {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('~');
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let hex = rest
            .get(at + 1..at + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if b"!#$%&'()*+,/:;=?@[]".contains(&byte) => {
                out.push('%');
                out.push_str(&rest[at + 1..at + 3].to_ascii_uppercase());
            }
            Some(byte) if byte.is_ascii() => {
                if b".^-{}\\|".contains(&byte) {
                    out.push('\\');
                }
                out.push(char::from(byte));
            }
            _ => {
                out.push_str(&rest[at..at + 1 + hex.map_or(0, str::len)]);
            }
        }
        rest = &rest[at + 1 + hex.map_or(0, str::len)..];
    }
    out.push_str(rest);
    out
}

impl<'de> Deserialize<'de> for RouteHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a host", |v| {
            check_host(v).map_err(|e| e.to_string())?;
            Ok(RouteHost(v.to_owned()))
        })
    }
}

impl<'de> Deserialize<'de> for RouteMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an HTTP method", |v| {
            let upper = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            match http::Method::from_bytes(v.as_bytes()) {
                Ok(m) if upper => Ok(RouteMethod(m)),
                _ => Err(format!(
                    "invalid method {v:?}: expected an upper-case method such as \"GET\""
                )),
            }
        })
    }
}

impl<'de> Deserialize<'de> for HeaderNameStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a header name", |v| {
            if http::HeaderName::from_bytes(v.as_bytes()).is_err() {
                return Err(format!("invalid header name {v:?}"));
            }
            if v.eq_ignore_ascii_case("host") {
                return Err("match hosts with `hosts`, not `headers`".into());
            }
            Ok(HeaderNameStr(v.to_owned()))
        })
    }
}

impl<'de> Deserialize<'de> for RouteProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a protocol", |v| match v {
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            other => Err(format!(
                "route protocol {other:?} is not supported yet: expected \"http\" or \"https\""
            )),
        })
    }
}

impl<'de> Deserialize<'de> for PathHandling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "v0", |v| match v {
            "v0" => Ok(PathHandling),
            "v1" => Err(
                "path_handling \"v1\" is not supported yet: only \"v0\" (Kong's default) is".into(),
            ),
            other => Err(format!("unknown path_handling {other:?}: expected \"v0\"")),
        })
    }
}

impl<'de> Deserialize<'de> for RegexPriority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_int(d, "an integer", |n| {
            i32::try_from(n)
                .map(RegexPriority)
                .map_err(|_| format!("regex_priority {n} is out of range"))
        })
    }
}

impl<'de> Deserialize<'de> for RedirectCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_int(d, "426", |n| match n {
            426 => Ok(RedirectCode),
            n => Err(format!(
                "https_redirect_status_code {n} is not supported yet: HTTPS redirects come with TLS support"
            )),
        })
    }
}

impl<W> Default for NotYet<W> {
    fn default() -> Self {
        NotYet(std::marker::PhantomData)
    }
}

impl<'de, W: Pending> Deserialize<'de> for NotYet<W> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<W>(std::marker::PhantomData<W>);
        impl<'de, W: Pending> de::Visitor<'de> for Visitor<W> {
            type Value = NotYet<W>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nothing (not supported yet)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<NotYet<W>, E> {
                Ok(NotYet::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<NotYet<W>, E> {
                Ok(NotYet::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NotYet<W>, A::Error> {
                match seq.next_element::<IgnoredAny>()? {
                    None => Ok(NotYet::default()),
                    Some(_) => Err(not_yet::<W, _>()),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<NotYet<W>, A::Error> {
                match map.next_key::<IgnoredAny>()? {
                    None => Ok(NotYet::default()),
                    Some(_) => Err(not_yet::<W, _>()),
                }
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NotYet<W>, E> {
                Err(not_yet::<W, _>())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NotYet<W>, E> {
                Err(not_yet::<W, _>())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<NotYet<W>, E> {
                Err(not_yet::<W, _>())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<NotYet<W>, E> {
                Err(not_yet::<W, _>())
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

fn not_yet<W: Pending, E: de::Error>() -> E {
    E::custom(format_args!("not supported yet: {}", W::WHAT))
}

#[cfg(test)]
mod tests {
    use super::legacy_path;

    #[test]
    fn kong_2x_paths_become_regexes_only_when_they_are_not_plain() {
        assert_eq!(
            legacy_path("/api/v1.2/users_x-y~z"),
            "/api/v1.2/users_x-y~z"
        );
        assert_eq!(legacy_path("/users/%20"), "/users/%20");
        assert_eq!(legacy_path(r"/users/\d+"), r"~/users/\d+");
        assert_eq!(legacy_path("/a/(b|c)"), "~/a/(b|c)");
        // Escapes: reserved characters stay escaped (upper case), regex metacharacters are
        // escaped for the regex, others decoded.
        assert_eq!(legacy_path("/a(%2f|%2E|%41|%7c)"), r"~/a(%2F|\.|A|\|)");
        assert_eq!(legacy_path("/a(%zz|%4"), "~/a(%zz|%4");
        assert_eq!(legacy_path(r"~/already/\d+"), r"~/already/\d+");
    }
}
