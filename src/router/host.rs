//! Host patterns: the `hosts` of a route.

use super::RouteError;

/// A parsed host pattern: `api.example.com`, `*.example.com`, `example.*`, optionally with a
/// `:port`. Matching ignores ASCII case; a pattern without a port matches any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `api.example.com` (lower-cased), with an optional port.
    Exact { host: Box<str>, port: Option<u16> },
    /// `*.example.com`: any host ending in `.example.com` (stored with the leading dot).
    Suffix { suffix: Box<str>, port: Option<u16> },
    /// `example.*`: any host starting with `example.` (stored with the trailing dot).
    Prefix { prefix: Box<str>, port: Option<u16> },
}

// === impl HostPattern ===

impl HostPattern {
    pub(crate) fn parse(raw: &str) -> Result<Self, RouteError> {
        let err = |reason: &'static str| RouteError::InvalidHost {
            host: raw.to_owned(),
            reason,
        };
        let lower = raw.to_ascii_lowercase();
        let (host, port) = split_port(&lower);
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| err("the port is not a number"))?,
            ),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
                })
        };
        if let Some(rest) = host.strip_prefix("*.") {
            if !valid(rest) || rest.contains('*') {
                return Err(err("expected `*.domain`"));
            }
            return Ok(Self::Suffix {
                suffix: format!(".{rest}").into(),
                port,
            });
        }
        if let Some(rest) = host.strip_suffix(".*") {
            if !valid(rest) || rest.contains('*') {
                return Err(err("expected `domain.*`"));
            }
            return Ok(Self::Prefix {
                prefix: format!("{rest}.").into(),
                port,
            });
        }
        if !valid(host) {
            return Err(err(
                "a host is letters, digits, `-`, `.`, with one `*` as the first or last label",
            ));
        }
        Ok(Self::Exact {
            host: host.into(),
            port,
        })
    }

    /// Whether the request's host (any case, port split off) matches.
    pub(crate) fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let (want_port, ok) = match self {
            Self::Exact { host: h, port } => (port, h.eq_ignore_ascii_case(host)),
            Self::Suffix { suffix, port } => (
                port,
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes()),
            ),
            Self::Prefix { prefix, port } => (
                port,
                host.len() > prefix.len()
                    && host.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()),
            ),
        };
        ok && want_port.is_none_or(|p| Some(p) == port)
    }

    /// Specificity among host matches: exact beats wildcard, a longer wildcard beats a shorter.
    pub(crate) fn rank(&self) -> (u8, usize) {
        match self {
            Self::Exact { port, .. } => (2, usize::from(port.is_some())),
            Self::Suffix { suffix: s, .. } | Self::Prefix { prefix: s, .. } => (1, s.len()),
        }
    }
}

/// Splits `host[:port]`, keeping IPv6 literals (`[::1]:80`) whole.
pub(crate) fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_hosts_ignore_case_and_any_port_unless_given() {
        let h = HostPattern::parse("API.example.com").unwrap();
        assert!(h.matches("api.EXAMPLE.com", Some(8000)));
        assert!(!h.matches("x.api.example.com", None));
        let h = HostPattern::parse("api.example.com:8443").unwrap();
        assert!(h.matches("api.example.com", Some(8443)));
        assert!(!h.matches("api.example.com", Some(8000)));
    }

    #[test]
    fn leading_wildcards_match_subdomains_only() {
        let h = HostPattern::parse("*.example.com").unwrap();
        assert!(h.matches("a.example.com", None));
        assert!(h.matches("a.b.example.com", None));
        assert!(!h.matches("example.com", None));
        assert!(!h.matches("aexample.com", None));
    }

    #[test]
    fn trailing_wildcards_match_any_tld() {
        let h = HostPattern::parse("example.*").unwrap();
        assert!(h.matches("example.org", None));
        assert!(!h.matches("example", None));
    }

    #[test]
    fn ipv6_literals_keep_their_brackets() {
        assert_eq!(split_port("[::1]:8000"), ("[::1]", Some("8000")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
        assert_eq!(split_port("a.b:1"), ("a.b", Some("1")));
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for bad in ["", "a.*.com", "*.", "a b", "host:port"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
