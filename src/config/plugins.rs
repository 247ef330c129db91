//! Plugin instances, the built-in plugins' configurations, and consumers with their
//! credentials.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};

use super::ServiceRef;
pub use crate::plugin::{PluginConfig, PluginProtocols};

/// A plugin instance: global (top level, no scope), or scoped to a service or a route (nested
/// under it, or naming it with `service:` / `route:`).
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Kong's entity id.
    pub id: Option<String>,
    /// The plugin and its checked configuration.
    pub config: PluginConfig,
    /// A disabled plugin does nothing (default enabled).
    pub enabled: bool,
    /// For top-level plugins: the service it applies to.
    pub service: Option<ServiceRef>,
    /// For top-level plugins: the route it applies to.
    pub route: Option<ServiceRef>,
    /// For top-level plugins: the consumer it applies to.
    pub consumer: Option<ServiceRef>,
    /// The request protocols it runs for (Kong's `protocols`); `None`: all of them (`http`,
    /// `https`, `grpc`, `grpcs`).
    pub protocols: Option<PluginProtocols>,
}

/// One name of a plugin's `protocols`, checked where it stands (so errors point at it).
#[derive(Clone, Copy)]
enum ProtocolName {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl<'de> Deserialize<'de> for ProtocolName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::model::checked_str(d, "a protocol", |name| match name {
            "http" => Ok(ProtocolName::Http),
            "https" => Ok(ProtocolName::Https),
            "grpc" => Ok(ProtocolName::Grpc),
            "grpcs" => Ok(ProtocolName::Grpcs),
            "ws" | "wss" => Err(format!(
                "protocol {name:?} is not supported (WebSocket upgrades are `http` / `https` here, as in Kong's open-source edition)"
            )),
            other => Err(format!(
                "protocol {other:?} is not supported: expected http, https, grpc or grpcs"
            )),
        })
    }
}

impl<'de> Deserialize<'de> for PluginProtocols {
    /// An empty list runs the instance for no request at all.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut protocols = PluginProtocols::default();
        for name in Vec::<ProtocolName>::deserialize(d)? {
            match name {
                ProtocolName::Http => protocols.http = true,
                ProtocolName::Https => protocols.https = true,
                ProtocolName::Grpc => protocols.grpc = true,
                ProtocolName::Grpcs => protocols.grpcs = true,
            }
        }
        Ok(protocols)
    }
}

fn yes() -> bool {
    true
}

/// Kong's `key-auth` configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthConfig {
    /// Header and query-argument names of the key (default `apikey`).
    #[serde(default = "default_key_names")]
    pub key_names: Vec<String>,
    /// Read keys from headers (default true).
    #[serde(default = "yes")]
    pub key_in_header: bool,
    /// Read keys from the query string (default true).
    #[serde(default = "yes")]
    pub key_in_query: bool,
    /// Read keys from a form-urlencoded, JSON or multipart body of at most
    /// [`Settings::max_body`](super::Settings::max_body) bytes (default false).
    #[serde(default)]
    pub key_in_body: bool,
    /// Remove the key before proxying (default false).
    #[serde(default)]
    pub hide_credentials: bool,
    /// The consumer (id or username) to continue as when authentication fails.
    #[serde(default)]
    pub anonymous: Option<String>,
    /// Authenticate CORS preflight requests too (default true).
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default)]
    pub realm: Option<String>,
}

fn default_key_names() -> Vec<String> {
    vec!["apikey".into()]
}

/// Kong's `jwt` configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Query arguments that carry the token (default `jwt`).
    #[serde(default = "default_uri_params")]
    pub uri_param_names: Vec<String>,
    /// Cookies that carry the token (default none).
    #[serde(default)]
    pub cookie_names: Vec<String>,
    /// Headers that carry `Bearer <token>` (default `authorization`).
    #[serde(default = "default_header_names")]
    pub header_names: Vec<String>,
    /// The claim naming the credential (default `iss`).
    #[serde(default = "default_key_claim")]
    pub key_claim_name: String,
    /// HMAC secrets are base64 (default false).
    #[serde(default)]
    pub secret_is_base64: bool,
    /// `exp` and/or `nbf`.
    #[serde(default)]
    pub claims_to_verify: Vec<TimeClaimName>,
    /// Seconds a token may live at most (0–31 536 000; 0 = no limit; needs `exp` verified).
    #[serde(default)]
    pub maximum_expiration: u32,
    /// The consumer (id or username) to continue as when authentication fails.
    #[serde(default)]
    pub anonymous: Option<String>,
    /// Authenticate CORS preflight requests too (default true).
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default)]
    pub realm: Option<String>,
}

fn default_uri_params() -> Vec<String> {
    vec!["jwt".into()]
}
fn default_header_names() -> Vec<String> {
    vec!["authorization".into()]
}
fn default_key_claim() -> String {
    "iss".into()
}

/// Kong's `rate-limiting` configuration, plus `algorithm`, `burst` and `delay`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Requests per second.
    #[serde(default)]
    pub second: Option<u64>,
    /// Requests per minute.
    #[serde(default)]
    pub minute: Option<u64>,
    /// Requests per hour.
    #[serde(default)]
    pub hour: Option<u64>,
    /// Requests per day.
    #[serde(default)]
    pub day: Option<u64>,
    /// Requests per calendar month.
    #[serde(default)]
    pub month: Option<u64>,
    /// Requests per calendar year.
    #[serde(default)]
    pub year: Option<u64>,
    /// What requests are counted by (default `consumer`); a missing key falls back to the
    /// client IP, as in Kong.
    #[serde(default)]
    pub limit_by: Option<LimitBy>,
    /// The header for `limit_by: header`.
    #[serde(default)]
    pub header_name: Option<String>,
    /// The path for `limit_by: path`.
    #[serde(default)]
    pub path: Option<String>,
    /// `local` (default) or `redis` (counts shared through the Redis server in `redis`, with
    /// the `redis` feature); `cluster` (Kong's database) does not exist here.
    #[serde(default)]
    pub policy: Option<String>,
    /// When the store fails, let requests through (default true) or answer 500. The local
    /// store does not fail; this matters with shared stores.
    #[serde(default = "yes")]
    pub fault_tolerant: bool,
    /// Omit the `X-RateLimit-*` and `RateLimit-*` headers.
    #[serde(default)]
    pub hide_client_headers: bool,
    /// The rejection status (default 429).
    #[serde(default)]
    pub error_code: Option<u16>,
    /// The rejection message (default "API rate limit exceeded").
    #[serde(default)]
    pub error_message: Option<String>,
    /// The Redis server of `policy: redis` (Kong 3's `redis` object).
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// Kong 2's flat form of `redis.host`.
    #[serde(default)]
    pub redis_host: Option<String>,
    /// Kong 2's flat form of `redis.port`.
    #[serde(default)]
    pub redis_port: Option<u16>,
    /// Kong 2's flat form of `redis.username`.
    #[serde(default)]
    pub redis_username: Option<String>,
    /// Kong 2's flat form of `redis.password`.
    #[serde(default)]
    pub redis_password: Option<String>,
    /// Kong 2's flat form of `redis.database`.
    #[serde(default)]
    pub redis_database: Option<u32>,
    /// Kong 2's flat form of `redis.timeout`.
    #[serde(default)]
    pub redis_timeout: Option<u64>,
    /// Kong 2's flat form of `redis.ssl`.
    #[serde(default)]
    pub redis_ssl: Option<bool>,
    /// Kong 2's flat form of `redis.ssl_verify`.
    #[serde(default)]
    pub redis_ssl_verify: Option<bool>,
    /// Kong 2's flat form of `redis.server_name`.
    #[serde(default)]
    pub redis_server_name: Option<String>,
    /// `-1` (every request decided by Redis; Kong's default), or seconds between
    /// synchronisations of locally kept fixed-window counts (at least 0.02; see
    /// `ratelimit::RedisStore::sync_every` (feature `redis`) for the
    /// overshoot this allows).
    #[serde(default)]
    pub sync_rate: Option<f64>,
    /// Extension: `fixed-window` (Kong's, the default), `sliding-window` (weighted two-window
    /// counter per period), `sliding-log` (exact, per period), `token-bucket` or
    /// `leaky-bucket` (nginx `limit_req`; one period gives the rate).
    #[serde(default)]
    pub algorithm: Option<RateAlgorithm>,
    /// Extension: the bucket size of `token-bucket` (default: the limit) or the queue depth of
    /// `leaky-bucket` (default 0).
    #[serde(default)]
    pub burst: Option<u64>,
    /// Extension, `leaky-bucket`: `nodelay` (`true`: requests within the burst pass at once) …
    #[serde(default)]
    pub nodelay: bool,
    /// … or `delay: N`: the first N excess requests pass at once, the rest of the burst waits
    /// (nginx's two-stage mode). Without either, excess requests wait until they conform.
    #[serde(default)]
    pub delay: Option<u64>,
}

/// Kong's `redis` settings of the `rate-limiting` plugin.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// The server's host (required with `policy: redis`).
    #[serde(default)]
    pub host: Option<String>,
    /// Its port (default 6379).
    #[serde(default)]
    pub port: Option<u16>,
    /// ACL user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// Database number (default 0).
    #[serde(default)]
    pub database: Option<u32>,
    /// Milliseconds a round trip may take (default 2000); past it, Redis counts as down.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Kong 3.4's split timeouts: the connect timeout is used as `timeout` when that is unset.
    #[serde(default)]
    pub connect_timeout: Option<u64>,
    /// Accepted (one timeout covers the round trip).
    #[serde(default)]
    pub send_timeout: Option<u64>,
    /// Accepted (one timeout covers the round trip).
    #[serde(default)]
    pub read_timeout: Option<u64>,
    /// TLS to Redis: only `false` until TLS support.
    #[serde(default)]
    pub ssl: Option<bool>,
    /// Accepted with `ssl: false`.
    #[serde(default)]
    pub ssl_verify: Option<bool>,
    /// Accepted with `ssl: false`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accepted (the connection is multiplexed).
    #[serde(default)]
    pub keepalive_pool_size: Option<u64>,
    /// Accepted (the connection is multiplexed).
    #[serde(default)]
    pub keepalive_backlog: Option<u64>,
    /// Sentinel and cluster settings: refused unless empty.
    #[serde(default)]
    pub sentinel_master: Option<String>,
    /// Refused unless empty.
    #[serde(default)]
    pub sentinel_role: Option<String>,
    /// Refused unless empty.
    #[serde(default)]
    pub sentinel_nodes: Option<serde_norway::Value>,
    /// Refused unless empty.
    #[serde(default)]
    pub sentinel_username: Option<String>,
    /// Refused unless empty.
    #[serde(default)]
    pub sentinel_password: Option<String>,
    /// Refused unless empty.
    #[serde(default)]
    pub cluster_nodes: Option<serde_norway::Value>,
    /// Accepted.
    #[serde(default)]
    pub cluster_max_redirections: Option<u64>,
    /// Accepted when false.
    #[serde(default)]
    pub connection_is_proxied: Option<bool>,
}

/// The `circuit-breaker` plugin (this gateway's own; fields after APISIX's `api-breaker` and
/// the seed's Go breaker). One breaker per service when scoped to a service, per route
/// otherwise.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Failures in a row that open the breaker (default 5, the seed's rule).
    #[serde(default)]
    pub failures: Option<u32>,
    /// Instead: the share of failures (0–1) among the last `window` calls that opens it.
    #[serde(default)]
    pub failure_rate: Option<f64>,
    /// Calls considered by `failure_rate` (default 20).
    #[serde(default)]
    pub window: Option<u32>,
    /// Calls needed before `failure_rate` is trusted (default 10).
    #[serde(default)]
    pub min_calls: Option<u32>,
    /// Seconds open the first time (default 10); doubled on each failed probe …
    #[serde(default)]
    pub open_time: Option<f64>,
    /// … up to this many seconds (default 300).
    #[serde(default)]
    pub max_open_time: Option<f64>,
    /// Probes at once while half-open (default 1).
    #[serde(default)]
    pub probes: Option<u32>,
    /// Probe successes that close it (default 1).
    #[serde(default)]
    pub successes: Option<u32>,
    /// Open times lengthened by a random share up to this (0–1, default 0).
    #[serde(default)]
    pub jitter: Option<f64>,
    /// Statuses that count as failures (default every 5xx, which includes the proxy's 502
    /// and 504).
    #[serde(default)]
    pub failure_statuses: Option<Vec<super::StatusCodeNumber>>,
}

/// Kong's `correlation-id`: a request id in a header, kept when the client sent one, generated
/// otherwise (Kong's `uuid#counter`), sent upstream and, with `echo_downstream`, back.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationIdConfig {
    /// The header (default `Kong-Request-ID`).
    #[serde(default = "default_correlation_header")]
    pub header_name: String,
    /// `uuid#counter` (Kong's default), `uuid` or `tracker`.
    #[serde(default)]
    pub generator: Option<String>,
    /// Echo the id in the response (default false).
    #[serde(default)]
    pub echo_downstream: bool,
}

fn default_correlation_header() -> String {
    "Kong-Request-ID".into()
}

/// Kong's `prometheus`: turns the metrics on (`/metrics` on the admin listener). Every family
/// is always exported, so the `*_metrics` switches are accepted only as `true`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Label requests and bandwidth with the consumer (default false).
    #[serde(default)]
    pub per_consumer: bool,
    /// `kong_http_requests_total` by status (always exported).
    #[serde(default)]
    pub status_code_metrics: Option<bool>,
    /// Latency histograms (always exported).
    #[serde(default)]
    pub latency_metrics: Option<bool>,
    /// Bandwidth counters (always exported).
    #[serde(default)]
    pub bandwidth_metrics: Option<bool>,
    /// Target health (always exported).
    #[serde(default)]
    pub upstream_health_metrics: Option<bool>,
}

/// Kong's `file-log`: the access log as JSON lines appended to a file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileLogConfig {
    /// The file (created if missing, appended to).
    pub path: String,
    /// Kong reopens the file for every line; here it stays open, so only `false` is accepted.
    #[serde(default)]
    pub reopen: bool,
    /// Lua is not run here: refused.
    #[serde(default)]
    pub custom_fields_by_lua: Option<serde_norway::Value>,
}

/// Kong's `limit_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The authenticated consumer (then its credential, then the client IP).
    Consumer,
    /// The credential (then the client IP).
    Credential,
    /// The client IP.
    Ip,
    /// The service (counters are per route, as Kong's keys include the route).
    Service,
    /// A header (`header_name`; then the client IP).
    Header,
    /// The exact `path` (then the client IP).
    Path,
}

/// The `algorithm` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateAlgorithm {
    /// Kong's calendar-aligned fixed windows.
    FixedWindow,
    /// The weighted two-window counter, per period.
    SlidingWindow,
    /// The exact sliding log, per period (a key keeps up to `limit` timestamps).
    SlidingLog,
    /// A token bucket.
    TokenBucket,
    /// nginx's leaky bucket.
    LeakyBucket,
}

/// A claim `claims_to_verify` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeClaimName {
    /// `exp`.
    Exp,
    /// `nbf`.
    Nbf,
}

/// A Kong consumer with its credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Kong's entity id (derived from the username or custom id when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// The username (this or `custom_id` is required).
    #[serde(default)]
    pub username: Option<String>,
    /// An id from another system.
    #[serde(default)]
    pub custom_id: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
    /// API keys (Kong's `keyauth_credentials`).
    #[serde(default)]
    pub keyauth_credentials: Vec<KeyAuthCredential>,
    /// JWT credentials (Kong's `jwt_secrets`).
    #[serde(default)]
    pub jwt_secrets: Vec<JwtSecret>,
    /// Plugins scoped to this consumer.
    #[serde(default)]
    pub plugins: Vec<Plugin>,
}

/// An API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthCredential {
    /// Kong's entity id (derived from the key when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// The key.
    pub key: String,
    /// For top-level credentials: the consumer, by id or username.
    #[serde(default)]
    pub consumer: Option<ServiceRef>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
}

/// A JWT credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSecret {
    /// Kong's entity id (derived from the key when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// The value tokens carry in their key claim (Kong generates one when absent; here it is
    /// required, since clients must know it).
    pub key: String,
    /// `HS256` (default) … `EdDSA`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The HMAC secret (HS*).
    #[serde(default)]
    pub secret: Option<String>,
    /// The public key in PEM (RS*, PS*, ES*, EdDSA).
    #[serde(default)]
    pub rsa_public_key: Option<String>,
    /// For top-level credentials: the consumer, by id or username.
    #[serde(default)]
    pub consumer: Option<ServiceRef>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
}

impl<'de> Deserialize<'de> for Plugin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Plugin;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a plugin: {name: ..., config: ...}")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Plugin, A::Error> {
                let mut definition = None;
                // Read whole, then typed by the plugin's definition once the name is known
                // (decK writes `config` before `name`).
                let mut config: Option<serde_json::Value> = None;
                let (mut id, mut enabled, mut service, mut route, mut consumer) =
                    (None, true, None, None, None);
                let mut protocols: Option<PluginProtocols> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => {
                            let name = map.next_value::<String>()?;
                            definition = Some(
                                crate::plugin::lookup(&name, &crate::plugin::Registry::builtin())
                                    .map_err(de::Error::custom)?,
                            );
                        }
                        "config" => config = Some(map.next_value()?),
                        "id" => id = Some(map.next_value()?),
                        "enabled" => enabled = map.next_value()?,
                        "service" => service = map.next_value()?,
                        "route" => route = map.next_value()?,
                        "consumer" => consumer = map.next_value()?,
                        "protocols" => protocols = map.next_value()?,
                        "tags" | "instance_name" | "created_at" | "updated_at" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &[
                                    "name",
                                    "config",
                                    "id",
                                    "enabled",
                                    "service",
                                    "route",
                                    "consumer",
                                    "protocols",
                                    "tags",
                                    "instance_name",
                                ],
                            ));
                        }
                    }
                }
                let definition = definition.ok_or_else(|| de::Error::missing_field("name"))?;
                let mut config = match config {
                    None | Some(serde_json::Value::Null) => {
                        serde_json::Value::Object(Default::default())
                    }
                    Some(config) => config,
                };
                let config = definition
                    .parse(&mut config)
                    .map_err(|err| de::Error::custom(err.nested("config")))?;
                Ok(Plugin {
                    id,
                    config,
                    enabled,
                    service,
                    route,
                    consumer,
                    // Every protocol listed is the same as none.
                    protocols: protocols.filter(|p| !p.all()),
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}
