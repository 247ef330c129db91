//! Kong's `upstreams` and `targets`: a service whose `host` names an upstream is balanced over
//! the upstream's targets.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::model::{NotYet, Tls};
use crate::balance::{ActiveHealth, HashOn, PassiveHealth};
use crate::proxy::TrustedProxies;

/// A Kong upstream: a named set of targets and how to balance over them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Kong's entity id.
    #[serde(default)]
    pub id: Option<String>,
    /// The name a service's `host` refers to.
    pub name: String,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// `round-robin` (default), `least-connections`, `consistent-hashing` or `latency`.
    #[serde(default)]
    pub algorithm: Option<Algorithm>,
    /// What `consistent-hashing` hashes on (default `none`).
    #[serde(default)]
    pub hash_on: Option<HashInput>,
    /// What it hashes on when the `hash_on` input is missing (default `none`).
    #[serde(default)]
    pub hash_fallback: Option<HashInput>,
    /// The header for `hash_on: header`.
    #[serde(default)]
    pub hash_on_header: Option<String>,
    /// The header for `hash_fallback: header`.
    #[serde(default)]
    pub hash_fallback_header: Option<String>,
    /// The cookie for `hash_on: cookie`.
    #[serde(default)]
    pub hash_on_cookie: Option<String>,
    /// The `Path` of the cookie set when missing (default `/`).
    #[serde(default)]
    pub hash_on_cookie_path: Option<String>,
    /// The query argument for `hash_on: query_arg`.
    #[serde(default)]
    pub hash_on_query_arg: Option<String>,
    /// The query argument for `hash_fallback: query_arg`.
    #[serde(default)]
    pub hash_fallback_query_arg: Option<String>,
    /// The capture for `hash_on: uri_capture`: a regex group's name or number of the route's
    /// path.
    #[serde(default)]
    pub hash_on_uri_capture: Option<String>,
    /// The capture for `hash_fallback: uri_capture`.
    #[serde(default)]
    pub hash_fallback_uri_capture: Option<String>,
    /// Kong's ring size (10–65 536, default 10 000). Accepted; this gateway sizes its ring by
    /// weight (see [`crate::balance::ConsistentHash`]).
    #[serde(default)]
    pub slots: Option<Slots>,
    /// Active and passive health checks.
    #[serde(default)]
    pub healthchecks: Option<Healthchecks>,
    /// A fixed `Host` for requests to the targets: not supported yet.
    #[serde(default)]
    pub host_header: Option<Unsupported>,
    /// Upstream client certificate: refused until upstream TLS is implemented.
    #[serde(default)]
    pub client_certificate: NotYet<Tls>,
    /// Only `false` (the default) is accepted: no SRV resolution.
    #[serde(default)]
    pub use_srv_name: Option<FalseOnly>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
    /// The targets, nested.
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// A Kong target: one `host:port` of an upstream, with a weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Kong's entity id.
    #[serde(default)]
    pub id: Option<String>,
    /// `host:port` (port default 8000, as in Kong).
    pub target: TargetAddress,
    /// 0–65 535, default 100; 0 = no traffic.
    #[serde(default)]
    pub weight: Option<Weight>,
    /// For top-level targets: the upstream, by name or id.
    #[serde(default)]
    pub upstream: Option<super::ServiceRef>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<f64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// Kong's `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// nginx's smooth weighted round-robin (Kong's default).
    RoundRobin,
    /// Fewest in-flight requests for the weight.
    LeastConnections,
    /// A ketama ring over `hash_on`.
    ConsistentHashing,
    /// Peak-EWMA latency, power of two choices.
    Latency,
}

/// Kong's `hash_on` / `hash_fallback` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashInput {
    /// No hashing.
    None,
    /// The authenticated consumer.
    Consumer,
    /// The client IP.
    Ip,
    /// A header (`hash_on_header`).
    Header,
    /// A cookie (`hash_on_cookie`).
    Cookie,
    /// The request path.
    Path,
    /// A query argument (`hash_on_query_arg`).
    QueryArg,
    /// A regex capture of the route path (`hash_on_uri_capture`).
    UriCapture,
}

/// `host:port` of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddress(pub String);

/// A target weight, 0–65 535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub u32);

/// `slots`, 10–65 536.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots(pub u32);

/// A boolean that must be `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FalseOnly;

/// A field this gateway refuses whatever its value, naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// `healthchecks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthchecks {
    /// Probes.
    #[serde(default)]
    pub active: Option<ActiveChecks>,
    /// Live-traffic ejection.
    #[serde(default)]
    pub passive: Option<PassiveChecks>,
    /// Healthy share of weight below which the whole upstream is unhealthy: only 0 (the
    /// default) is supported.
    #[serde(default)]
    pub threshold: Option<ZeroPercent>,
}

/// `healthchecks.threshold`: only 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZeroPercent;

/// `healthchecks.active`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveChecks {
    /// Only `http` (the default) until TLS and TCP checks.
    #[serde(default, rename = "type")]
    pub kind: Option<HttpOnly>,
    /// Seconds one probe may take (default 1).
    #[serde(default)]
    pub timeout: Option<Seconds>,
    /// Targets probed at once (default 10).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// The probed path (default `/`).
    #[serde(default)]
    pub http_path: Option<String>,
    /// Headers sent with each probe.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// For https probes: refused until TLS.
    #[serde(default)]
    pub https_sni: NotYet<Tls>,
    /// For https probes: accepted at any value (no https probes yet).
    #[serde(default)]
    pub https_verify_certificate: Option<bool>,
    /// When a target counts as healthy.
    #[serde(default)]
    pub healthy: Option<ActiveHealthy>,
    /// When a target counts as unhealthy.
    #[serde(default)]
    pub unhealthy: Option<ActiveUnhealthy>,
}

/// `healthchecks.active.healthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy target (0 = none; default 0).
    #[serde(default)]
    pub interval: Option<Seconds>,
    /// Healthy statuses (default 200, 302).
    #[serde(default)]
    pub http_statuses: Option<Vec<StatusCodeNumber>>,
    /// Successes in a row that make a target healthy (default 0 = never).
    #[serde(default)]
    pub successes: Option<u32>,
}

/// `healthchecks.active.unhealthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy target (0 = none; default 0).
    #[serde(default)]
    pub interval: Option<Seconds>,
    /// Unhealthy statuses (default 429, 404, 500, 501, 502, 503, 504, 505).
    #[serde(default)]
    pub http_statuses: Option<Vec<StatusCodeNumber>>,
    /// TCP failures in a row that make a target unhealthy (0 = never).
    #[serde(default)]
    pub tcp_failures: Option<u32>,
    /// Timeouts in a row (0 = never).
    #[serde(default)]
    pub timeouts: Option<u32>,
    /// Unhealthy statuses in a row (0 = never).
    #[serde(default)]
    pub http_failures: Option<u32>,
}

/// `healthchecks.passive`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveChecks {
    /// Only `http` (the default).
    #[serde(default, rename = "type")]
    pub kind: Option<HttpOnly>,
    /// What resets the failure counts.
    #[serde(default)]
    pub healthy: Option<PassiveHealthy>,
    /// What ejects.
    #[serde(default)]
    pub unhealthy: Option<PassiveUnhealthy>,
}

/// `healthchecks.passive.healthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthy {
    /// Statuses that reset the failure counts (default 2xx and 3xx).
    #[serde(default)]
    pub http_statuses: Option<Vec<StatusCodeNumber>>,
    /// Kong counts successes to bring a target back; here an ejected target comes back by
    /// itself after its ejection time, so this is accepted and not used.
    #[serde(default)]
    pub successes: Option<u32>,
}

/// `healthchecks.passive.unhealthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveUnhealthy {
    /// Statuses that count as failures (default 429, 500, 503).
    #[serde(default)]
    pub http_statuses: Option<Vec<StatusCodeNumber>>,
    /// Connection failures in a row that eject (0 = never; default 0).
    #[serde(default)]
    pub tcp_failures: Option<u32>,
    /// Timeouts in a row that eject (0 = never; default 0).
    #[serde(default)]
    pub timeouts: Option<u32>,
    /// Failure statuses in a row that eject (0 = never; default 0).
    #[serde(default)]
    pub http_failures: Option<u32>,
}

/// A health-check `type`: only `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOnly;

/// A duration in (possibly fractional) seconds, 0–65 535.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

/// An HTTP status code, 100–999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCodeNumber(pub u16);

impl serde::Serialize for StatusCodeNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

// === Deserialize for the checked values ===

impl<'de> Deserialize<'de> for TargetAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::model::checked_str(d, "a target host:port", |v| {
            target_address(v).map(TargetAddress)
        })
    }
}

/// `host[:port]` → `host:port` with Kong's default port 8000.
fn target_address(v: &str) -> Result<String, String> {
    let invalid = || format!("invalid target {v:?}: expected host:port");
    if v.is_empty() || v.contains(['/', '@', '?', '#', ' ']) {
        return Err(invalid());
    }
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match v.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host.to_owned(), Some(port)),
            Some(_) => (format!("[{v}]"), None),
            None => (v.to_owned(), None),
        }
    };
    let port: u16 = match port {
        None => 8000,
        Some(p) => p.parse().map_err(|_| invalid())?,
    };
    if host.is_empty() || host == "[]" || port == 0 {
        return Err(invalid());
    }
    Ok(format!("{host}:{port}"))
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::model::checked_int(d, "a weight", |v| match u32::try_from(v) {
            Ok(w) if w <= 65_535 => Ok(Weight(w)),
            _ => Err(format!("weight {v} is out of range 0..65535")),
        })
    }
}

impl<'de> Deserialize<'de> for Slots {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::model::checked_int(d, "a slot count", |v| match u32::try_from(v) {
            Ok(s) if (10..=65_536).contains(&s) => Ok(Slots(s)),
            _ => Err(format!("slots {v} is out of range 10..65536")),
        })
    }
}

impl<'de> Deserialize<'de> for StatusCodeNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::model::checked_int(d, "an HTTP status", |v| match u16::try_from(v) {
            Ok(s) if (100..=999).contains(&s) => Ok(StatusCodeNumber(s)),
            _ => Err(format!("status {v} is out of range 100..999")),
        })
    }
}

impl<'de> Deserialize<'de> for FalseOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match bool::deserialize(d)? {
            false => Ok(FalseOnly),
            true => Err(de::Error::custom(
                "use_srv_name: SRV resolution is not supported",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(d)?;
        Err(de::Error::custom("not supported yet"))
    }
}

impl<'de> Deserialize<'de> for HttpOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::model::checked_str(d, "a health check type", |v| match v {
            "http" => Ok(HttpOnly),
            other => Err(format!(
                "health check type {other:?} is not supported yet: only \"http\""
            )),
        })
    }
}

impl<'de> Deserialize<'de> for ZeroPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v == 0.0 {
            Ok(ZeroPercent)
        } else {
            Err(de::Error::custom(
                "healthchecks.threshold other than 0 is not supported yet",
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && (0.0..=65_535.0).contains(&v) {
            Ok(Seconds(Duration::from_secs_f64(v)))
        } else {
            Err(de::Error::custom(format!(
                "{v} seconds is out of range 0..65535"
            )))
        }
    }
}

// === Building the balancer settings ===

/// Where a check failed: the field (relative to the upstream) and why.
pub(crate) type Invalid = (String, String);

impl Upstream {
    /// The hash input for `hash_on` or `hash_fallback`.
    fn hash_input(
        &self,
        field: &str,
        input: Option<HashInput>,
        (header, query_arg, capture): (&Option<String>, &Option<String>, &Option<String>),
        trusted: &TrustedProxies,
    ) -> Result<HashOn, Invalid> {
        let needs = |name: &str, value: &Option<String>| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| (name.to_owned(), format!("{field} needs {name}")))
        };
        Ok(match input.unwrap_or(HashInput::None) {
            HashInput::None => HashOn::None,
            HashInput::Ip => HashOn::ClientIp(trusted.clone()),
            HashInput::Path => HashOn::Path,
            HashInput::Header => {
                let name = needs(&format!("{field}_header"), header)?;
                let name = http::HeaderName::try_from(name.as_str()).map_err(|_| {
                    (
                        format!("{field}_header"),
                        format!("invalid header name {name:?}"),
                    )
                })?;
                HashOn::Header(name)
            }
            HashInput::QueryArg => {
                HashOn::QueryArg(needs(&format!("{field}_query_arg"), query_arg)?)
            }
            HashInput::Cookie => HashOn::Cookie {
                name: needs("hash_on_cookie", &self.hash_on_cookie)?,
                path: self
                    .hash_on_cookie_path
                    .clone()
                    .unwrap_or_else(|| "/".into()),
            },
            HashInput::Consumer => HashOn::Consumer,
            HashInput::UriCapture => {
                HashOn::UriCapture(needs(&format!("{field}_uri_capture"), capture)?)
            }
        })
    }

    /// `hash_on` and `hash_fallback`, checked by Kong's rules.
    pub(crate) fn hashing(&self, trusted: &TrustedProxies) -> Result<(HashOn, HashOn), Invalid> {
        let on = self.hash_input(
            "hash_on",
            self.hash_on,
            (
                &self.hash_on_header,
                &self.hash_on_query_arg,
                &self.hash_on_uri_capture,
            ),
            trusted,
        )?;
        let fallback = self.hash_input(
            "hash_fallback",
            self.hash_fallback,
            (
                &self.hash_fallback_header,
                &self.hash_fallback_query_arg,
                &self.hash_fallback_uri_capture,
            ),
            trusted,
        )?;
        let fallback_set = !matches!(fallback, HashOn::None);
        if matches!(on, HashOn::None) && fallback_set {
            return Err((
                "hash_fallback".into(),
                "hash_fallback needs hash_on other than none".into(),
            ));
        }
        if matches!(on, HashOn::Cookie { .. }) && fallback_set {
            return Err((
                "hash_fallback".into(),
                "hash_on: cookie takes no fallback (the cookie is set when missing)".into(),
            ));
        }
        if self.hash_on == self.hash_fallback
            && fallback_set
            && self.hash_on_header == self.hash_fallback_header
            && self.hash_on_query_arg == self.hash_fallback_query_arg
            && self.hash_on_uri_capture == self.hash_fallback_uri_capture
        {
            return Err((
                "hash_fallback".into(),
                "hash_fallback must differ from hash_on".into(),
            ));
        }
        Ok((on, fallback))
    }

    /// Passive health, when any threshold is set (Kong: all 0 by default, i.e. off).
    pub(crate) fn passive(&self) -> Option<PassiveHealth> {
        let passive = self.healthchecks.as_ref()?.passive.as_ref()?;
        let unhealthy = passive.unhealthy.clone().unwrap_or_default();
        let (tcp, timeouts, http) = (
            unhealthy.tcp_failures.unwrap_or(0),
            unhealthy.timeouts.unwrap_or(0),
            unhealthy.http_failures.unwrap_or(0),
        );
        if tcp == 0 && timeouts == 0 && http == 0 {
            return None;
        }
        let statuses = |list: &Option<Vec<StatusCodeNumber>>, default: &[u16]| -> Vec<u16> {
            list.as_ref()
                .map_or_else(|| default.to_vec(), |l| l.iter().map(|s| s.0).collect())
        };
        let healthy = passive.healthy.clone().unwrap_or_default();
        let kong_healthy: Vec<u16> = (200..400).collect();
        Some(
            PassiveHealth::default()
                .tcp_failures(tcp)
                .timeouts(timeouts)
                .http_failures(http, statuses(&unhealthy.http_statuses, &[429, 500, 503]))
                .healthy_statuses(statuses(&healthy.http_statuses, &kong_healthy)),
        )
    }

    /// Active health, when an interval is set (Kong: 0 by default, i.e. off).
    pub(crate) fn active(&self) -> Result<Option<ActiveHealth>, Invalid> {
        let Some(active) = self.healthchecks.as_ref().and_then(|h| h.active.as_ref()) else {
            return Ok(None);
        };
        let healthy = active.healthy.clone().unwrap_or_default();
        let unhealthy = active.unhealthy.clone().unwrap_or_default();
        let interval = |s: Option<Seconds>| s.map_or(Duration::ZERO, |s| s.0);
        let (up_every, down_every) = (interval(healthy.interval), interval(unhealthy.interval));
        if up_every.is_zero() && down_every.is_zero() {
            return Ok(None);
        }
        let path = active.http_path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            return Err((
                "healthchecks.active.http_path".into(),
                format!("http_path {path:?} must start with `/`"),
            ));
        }
        let mut check = ActiveHealth::new(path)
            .interval(up_every, down_every)
            .timeout(active.timeout.map_or(Duration::from_secs(1), |s| s.0))
            .concurrency(active.concurrency.unwrap_or(10) as usize)
            .successes(healthy.successes.unwrap_or(0))
            .failures(
                unhealthy.http_failures.unwrap_or(0),
                unhealthy.tcp_failures.unwrap_or(0),
                unhealthy.timeouts.unwrap_or(0),
            );
        if let Some(list) = &healthy.http_statuses {
            check = check.healthy_statuses(list.iter().map(|s| s.0));
        }
        if let Some(list) = &unhealthy.http_statuses {
            check = check.unhealthy_statuses(list.iter().map(|s| s.0));
        }
        for (name, values) in active.headers.iter().flatten() {
            let field = || "healthchecks.active.headers".to_owned();
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|_| (field(), format!("invalid header name {name:?}")))?;
            for value in values {
                let value = http::HeaderValue::try_from(value.as_str())
                    .map_err(|_| (field(), format!("invalid value for {name}")))?;
                check = check.header(name.clone(), value);
            }
        }
        Ok(Some(check))
    }

    pub(crate) fn label(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_addresses_take_kong_s_default_port() {
        assert_eq!(target_address("10.0.0.1").unwrap(), "10.0.0.1:8000");
        assert_eq!(
            target_address("api.internal:81").unwrap(),
            "api.internal:81"
        );
        assert_eq!(target_address("[::1]:9000").unwrap(), "[::1]:9000");
        assert_eq!(target_address("::1").unwrap(), "[::1]:8000");
        assert!(target_address("host:0").is_err());
        assert!(target_address("host:http").is_err());
        assert!(target_address("http://host:80").is_err());
        assert!(target_address("").is_err());
    }
}
