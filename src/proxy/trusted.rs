//! Which peers may tell the gateway who the client is.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The addresses whose `X-Forwarded-*` headers the proxy believes (Kong's `trusted_ips`,
/// nginx's `set_real_ip_from`).
///
/// By default nobody is trusted: the proxy computes `X-Forwarded-Proto`, `-Host` and `-Port`
/// itself and `X-Real-IP` is the peer address. A request from a trusted peer keeps the values it
/// brings, and its client address is found by walking `X-Forwarded-For` from the right past the
/// trusted hops.
///
/// ```
/// use tower_gateway::proxy::TrustedProxies;
///
/// let trusted: TrustedProxies = "10.0.0.0/8, 127.0.0.1".parse().unwrap();
/// assert!(trusted.contains("10.1.2.3".parse().unwrap()));
/// assert!(trusted.contains("127.0.0.1".parse().unwrap()));
/// assert!(!trusted.contains("192.0.2.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// A trusted-proxy entry that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy address {0:?}: expected an IP address or a CIDR block")]
pub struct InvalidTrustedProxy(pub String);

// === impl TrustedProxies ===

impl TrustedProxies {
    /// Trusts nobody (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts every peer: only for a gateway that is reachable solely through other proxies.
    pub fn all() -> Self {
        Self {
            nets: vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())],
        }
    }

    /// Trusts these addresses and blocks, e.g. `["10.0.0.0/8", "::1"]`.
    pub fn from_list<I, S>(entries: I) -> Result<Self, InvalidTrustedProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| InvalidTrustedProxy(entry.to_owned()))?;
            nets.push(net);
        }
        Ok(Self { nets })
    }

    /// Whether `ip` is trusted.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether no address is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The client address of a request: the peer, or, when the peer is trusted, the
    /// right-most untrusted address of `X-Forwarded-For` (what Kong's
    /// `kong.client.get_forwarded_ip` gives). `None` when the request carries no peer
    /// address ([`peer_addr`](crate::identity::peer_addr)).
    pub fn client_ip<B>(&self, req: &http::Request<B>) -> Option<IpAddr> {
        let peer = crate::identity::peer_addr(req.extensions())?;
        Some(super::headers::client_ip(req.headers(), peer.ip(), self))
    }
}

impl FromStr for TrustedProxies {
    type Err = InvalidTrustedProxy;

    /// Parses a comma-separated list of addresses and CIDR blocks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_list(s.split(',').filter(|e| !e.trim().is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_is_trusted_by_default() {
        assert!(!TrustedProxies::default().contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_match_ipv4_blocks() {
        let trusted: TrustedProxies = "127.0.0.0/8".parse().unwrap();
        assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn all_trusts_v4_and_v6() {
        let all = TrustedProxies::all();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(all.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn garbage_is_refused_with_the_entry_named() {
        let err = TrustedProxies::from_list(["10.0.0.0/8", "ten"]).unwrap_err();
        assert_eq!(err, InvalidTrustedProxy("ten".into()));
    }
}
