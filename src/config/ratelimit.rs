//! Kong's `rate-limiting` plugin turned into a [`RateLimitLayer`].

use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::{LimitBy, RateAlgorithm, RateLimitingConfig};
use crate::proxy::TrustedProxies;
use crate::ratelimit::{
    FixedWindow, KeyBy, LeakyBucket, Limit, Period, Rate, RateLimitLayer, SlidingLog,
    SlidingWindow, TokenBucket,
};

/// A field below `config` (as `.minute`) and what is wrong there.
type Invalid = (String, String);

/// How many keys one route's limiter tracks at most.
pub(crate) const MAX_KEYS: usize = 100_000;

impl RateLimitingConfig {
    fn periods(&self) -> Vec<(Period, u64)> {
        [
            (Period::Second, self.second),
            (Period::Minute, self.minute),
            (Period::Hour, self.hour),
            (Period::Day, self.day),
            (Period::Month, self.month),
            (Period::Year, self.year),
        ]
        .into_iter()
        .filter_map(|(p, n)| n.map(|n| (p, n)))
        .collect()
    }

    /// The limits, checked by Kong's rules and this gateway's extension.
    pub(crate) fn limits(&self) -> Result<Vec<Limit>, Invalid> {
        let periods = self.periods();
        if periods.is_empty() {
            return Err((
                String::new(),
                "at least one of second, minute, hour, day, month, year is required".into(),
            ));
        }
        for (period, n) in &periods {
            if *n == 0 {
                return Err((
                    format!(".{}", field(*period)),
                    "must be greater than 0".into(),
                ));
            }
        }
        // Kong: a longer period may not allow fewer requests than a shorter one.
        for pair in periods.windows(2) {
            let ((short, a), (long, b)) = (pair[0], pair[1]);
            if b < a {
                return Err((
                    format!(".{}", field(long)),
                    format!(
                        "the limit for {} ({b}) cannot be lower than the limit for {} ({a})",
                        field(long),
                        field(short)
                    ),
                ));
            }
        }
        match self.policy.as_deref().unwrap_or("local") {
            "local" => {}
            "redis" => {
                if !cfg!(feature = "redis") {
                    return Err((
                        ".policy".into(),
                        "policy redis needs the `redis` feature (e.g. cargo run --release --features redis --example gateway)".into(),
                    ));
                }
                self.redis_server()?;
            }
            "cluster" => {
                return Err((
                    ".policy".into(),
                    "policy cluster needs Kong's database; use redis to share counts".into(),
                ));
            }
            other => return Err((".policy".into(), format!("unknown policy {other:?}"))),
        }
        if let Some(rate) = self.sync_rate.filter(|r| *r != -1.0) {
            if rate.is_nan() || rate < 0.02 {
                return Err((
                    ".sync_rate".into(),
                    "must be -1 (every request decided by Redis) or at least 0.02 seconds".into(),
                ));
            }
            if self.policy.as_deref() != Some("redis") {
                return Err((".sync_rate".into(), "sync_rate needs policy redis".into()));
            }
            if !matches!(self.algorithm, None | Some(RateAlgorithm::FixedWindow)) {
                return Err((
                    ".sync_rate".into(),
                    "sync_rate batches fixed-window counts only".into(),
                ));
            }
        }
        if let Some(code) = self.error_code
            && StatusCode::from_u16(code).is_err()
        {
            return Err((
                ".error_code".into(),
                format!("{code} is not an HTTP status"),
            ));
        }
        match self.limit_by {
            Some(LimitBy::Header) if self.header_name.as_deref().is_none_or(str::is_empty) => {
                return Err((
                    ".header_name".into(),
                    "limit_by header needs header_name".into(),
                ));
            }
            Some(LimitBy::Path) if self.path.as_deref().is_none_or(|p| !p.starts_with('/')) => {
                return Err((
                    ".path".into(),
                    "limit_by path needs a path starting with `/`".into(),
                ));
            }
            _ => {}
        }
        if let Some(name) = &self.header_name
            && HeaderName::try_from(name.as_str()).is_err()
        {
            return Err((
                ".header_name".into(),
                format!("invalid header name {name:?}"),
            ));
        }
        let algorithm = self.algorithm.unwrap_or(RateAlgorithm::FixedWindow);
        let bucket_only = |field: &str| {
            (
                format!(".{field}"),
                format!("{field} is for the token-bucket and leaky-bucket algorithms"),
            )
        };
        if !matches!(
            algorithm,
            RateAlgorithm::TokenBucket | RateAlgorithm::LeakyBucket
        ) && self.burst.is_some()
        {
            return Err(bucket_only("burst"));
        }
        if algorithm != RateAlgorithm::LeakyBucket && (self.nodelay || self.delay.is_some()) {
            return Err(bucket_only(if self.nodelay { "nodelay" } else { "delay" }));
        }
        Ok(match algorithm {
            RateAlgorithm::FixedWindow => vec![Limit::FixedWindow(FixedWindow::new(periods))],
            RateAlgorithm::SlidingWindow | RateAlgorithm::SlidingLog => {
                let mut limits = Vec::new();
                for (period, n) in periods {
                    let window = match period {
                        Period::Second => 1,
                        Period::Minute => 60,
                        Period::Hour => 3_600,
                        Period::Day => 86_400,
                        Period::Month | Period::Year => {
                            return Err((
                                format!(".{}", field(period)),
                                "sliding windows go up to a day".into(),
                            ));
                        }
                    };
                    let window = Duration::from_secs(window);
                    limits.push(if algorithm == RateAlgorithm::SlidingLog {
                        Limit::SlidingLog(SlidingLog::new(n, window))
                    } else {
                        Limit::SlidingWindow(SlidingWindow::new(n, window))
                    });
                }
                limits
            }
            RateAlgorithm::TokenBucket | RateAlgorithm::LeakyBucket => {
                let [(period, n)] = periods[..] else {
                    return Err((
                        String::new(),
                        "token-bucket and leaky-bucket take exactly one period (the rate)".into(),
                    ));
                };
                let per = match period {
                    Period::Second => 1,
                    Period::Minute => 60,
                    Period::Hour => 3_600,
                    Period::Day => 86_400,
                    _ => {
                        return Err((
                            format!(".{}", field(period)),
                            "bucket rates go up to a day".into(),
                        ));
                    }
                };
                let rate = Rate::new(n, Duration::from_secs(per));
                if algorithm == RateAlgorithm::TokenBucket {
                    vec![Limit::TokenBucket(TokenBucket::new(
                        rate,
                        self.burst.unwrap_or(n),
                    ))]
                } else {
                    let mut bucket = LeakyBucket::new(rate, self.burst.unwrap_or(0));
                    if self.nodelay {
                        bucket = bucket.nodelay();
                    } else if let Some(delay) = self.delay {
                        bucket = bucket.delay(delay);
                    }
                    vec![Limit::LeakyBucket(bucket)]
                }
            }
        })
    }

    /// The key rule, with Kong's fallback to the client IP.
    fn key(&self, trusted: &TrustedProxies) -> KeyBy {
        let ip = || KeyBy::ClientIp(trusted.clone());
        match self.limit_by.unwrap_or(LimitBy::Consumer) {
            LimitBy::Consumer => KeyBy::Consumer.or(KeyBy::Credential).or(ip()),
            LimitBy::Credential => KeyBy::Credential.or(ip()),
            LimitBy::Ip => ip(),
            LimitBy::Service => KeyBy::Global,
            LimitBy::Header => match self
                .header_name
                .as_deref()
                .and_then(|h| HeaderName::try_from(h).ok())
            {
                Some(name) => KeyBy::Header(name).or(ip()),
                None => ip(),
            },
            LimitBy::Path => KeyBy::Path(self.path.clone().unwrap_or_default()).or(ip()),
        }
    }

    /// The layer for one route (checked configurations only: `Config::check` ran `limits`).
    /// The Redis server of `policy: redis`: its URL and timeout, from `redis.*` (or Kong 2's
    /// `redis_*` fields).
    pub(crate) fn redis_server(&self) -> Result<(String, Duration), Invalid> {
        let r = self.redis.clone().unwrap_or_default();
        let host = r.host.or(self.redis_host.clone()).filter(|h| !h.is_empty());
        let Some(host) = host else {
            return Err((".redis.host".into(), "policy redis needs redis.host".into()));
        };
        if r.ssl.or(self.redis_ssl) == Some(true) {
            return Err((
                ".redis.ssl".into(),
                "TLS to Redis is not supported yet: it comes with TLS support".into(),
            ));
        }
        let empty = |v: &Option<serde_norway::Value>| {
            v.as_ref()
                .is_none_or(|v| v.is_null() || v.as_sequence().is_some_and(Vec::is_empty))
        };
        if r.sentinel_master.is_some()
            || r.sentinel_role.is_some()
            || !empty(&r.sentinel_nodes)
            || !empty(&r.cluster_nodes)
            || r.connection_is_proxied == Some(true)
        {
            return Err((
                ".redis".into(),
                "Redis Sentinel and Redis Cluster are not supported: give one server".into(),
            ));
        }
        let port = r.port.or(self.redis_port).unwrap_or(6379);
        let database = r.database.or(self.redis_database).unwrap_or(0);
        let username = r.username.or(self.redis_username.clone());
        let password = r.password.or(self.redis_password.clone());
        let credentials = match (username, password) {
            (Some(user), Some(pass)) => format!("{}:{}@", encode(&user), encode(&pass)),
            (None, Some(pass)) => format!(":{}@", encode(&pass)),
            (Some(user), None) => format!("{}@", encode(&user)),
            (None, None) => String::new(),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let timeout = r
            .timeout
            .or(self.redis_timeout)
            .or(r.connect_timeout)
            .unwrap_or(2000);
        Ok((
            format!("redis://{credentials}{host}:{port}/{database}"),
            Duration::from_millis(timeout.max(1)),
        ))
    }

    /// The plugin as a layer; with `policy: redis` its counts live under `namespace` in Redis.
    pub(crate) fn layer(&self, trusted: &TrustedProxies, namespace: &str) -> RateLimitLayer {
        let mut builder = RateLimitLayer::builder(self.key(trusted))
            .max_keys(MAX_KEYS)
            .fault_tolerant(self.fault_tolerant)
            .hide_client_headers(self.hide_client_headers);
        #[cfg(feature = "redis")]
        if self.policy.as_deref() == Some("redis")
            && let Ok((url, timeout)) = self.redis_server()
        {
            match crate::ratelimit::RedisStore::new(&url, namespace) {
                Ok(store) => {
                    let mut store = store.timeout(timeout);
                    if let Some(rate) = self.sync_rate.filter(|r| *r >= 0.02) {
                        store = store.sync_every(Duration::from_secs_f64(rate));
                    }
                    // Kong's fault_tolerant: keep limiting, locally, while Redis is away.
                    let store = if self.fault_tolerant {
                        store.local_fallback(MAX_KEYS)
                    } else {
                        store
                    };
                    builder = builder.store(store);
                }
                Err(err) => tracing::error!(%err, "rate-limiting: invalid redis settings"),
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = namespace;
        for limit in self.limits().unwrap_or_default() {
            builder = builder.limit(limit);
        }
        if let Some(status) = self.error_code.and_then(|c| StatusCode::from_u16(c).ok()) {
            builder = builder.status(status);
        }
        if let Some(message) = &self.error_message {
            builder = builder.message(message.as_str());
        }
        builder.build()
    }
}

/// Percent-encodes a URL user-info part.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn field(period: Period) -> &'static str {
    match period {
        Period::Second => "second",
        Period::Minute => "minute",
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
        Period::Year => "year",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plugin(config: &str) -> RateLimitingConfig {
        let yaml = format!(
            "_format_version: \"3.0\"\nplugins:\n  - name: rate-limiting\n    config:\n{config}"
        );
        Config::from_yaml(&yaml).unwrap().plugins[0]
            .config
            .get::<RateLimitingConfig>()
            .cloned()
            .unwrap()
    }

    #[test]
    fn the_seed_s_openresty_limit_req_is_a_delaying_leaky_bucket_per_ip() {
        // limit_req zone=$binary_remote_addr rate=100r/s; limit_req burst=200;
        let c = plugin(
            "      second: 100\n      algorithm: leaky-bucket\n      burst: 200\n      limit_by: ip\n",
        );
        assert_eq!(
            c.limits().unwrap(),
            [Limit::LeakyBucket(LeakyBucket::new(
                Rate::per_second(100),
                200
            ))]
        );
        assert!(matches!(c.key(&TrustedProxies::none()), KeyBy::ClientIp(_)));
    }

    #[test]
    fn the_seed_s_go_limiter_is_a_token_bucket_per_user() {
        // rate.NewLimiter(100, 200) per user id.
        let c = plugin(
            "      second: 100\n      algorithm: token-bucket\n      burst: 200\n      limit_by: consumer\n",
        );
        assert_eq!(
            c.limits().unwrap(),
            [Limit::TokenBucket(TokenBucket::new(
                Rate::per_second(100),
                200
            ))]
        );
        assert!(matches!(c.key(&TrustedProxies::none()), KeyBy::Either(..)));
    }

    #[test]
    fn kong_s_default_is_fixed_calendar_windows() {
        let c = plugin("      minute: 100\n      hour: 1000\n");
        assert_eq!(
            c.limits().unwrap(),
            [Limit::FixedWindow(FixedWindow::new([
                (Period::Minute, 100),
                (Period::Hour, 1000)
            ]))]
        );
    }
}
