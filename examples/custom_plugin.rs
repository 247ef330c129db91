//! A gateway with a plugin of its own: Kong's classic custom rate-limiting plugin, ported.
//!
//! The Kong original (the seed's `custom-rate-limiting`, `PRIORITY = 900`) is a Lua handler and
//! a schema: count each client's requests in Redis (`INCR rate_limit:<forwarded ip>`, expiring
//! `window_size` seconds after the first), answer past `limit` with 429
//! `{"message":"API rate limit exceeded","limit":…,"window":…}`, and otherwise tell the client
//! `X-RateLimit-Limit` and `X-RateLimit-Remaining` (the 429 exits before those are set, so it
//! carries neither). Here the schema is a serde struct with the same defaults, the handler a
//! tower `Layer`, and the gateway the bundled program with one more plugin:
//!
//! ```text
//! redis-server &
//! cargo run --release --features redis --example custom_plugin
//! curl -i http://127.0.0.1:8000/api/users        # X-RateLimit-Remaining: 4, … then 429
//! curl -i -X POST http://127.0.0.1:8001/services/users/plugins \
//!      -d name=custom-rate-limiting -d config.limit=100
//! ```
//!
//! Every option of the gateway program works (`--config kong.yml`, `--cluster`, …); in a
//! file the plugin is configured as any other:
//!
//! ```yaml
//! plugins:
//!   - name: custom-rate-limiting
//!     config: { limit: 100, window_size: 60, redis_host: localhost, redis_port: 6379 }
//! ```
//!
//! When Redis cannot be reached the request goes through and the error is logged (the Lua
//! handler's `return` after a failed connect). One difference, on purpose: the first request
//! of a window sets the expiry in the same transaction as the count (`SET NX EX` + `INCR`),
//! where the Lua handler's separate `EXPIRE` leaves a key without expiry if the gateway dies
//! between the two.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};
use tower_gateway::config::FieldError;
use tower_gateway::plugin::{Definition, PluginContext, PluginRequest, Schema, UpstreamResponse};
use tower_gateway::program::Program;
use tower_gateway::proxy::TrustedProxies;
use tower_gateway::reject::{self, AnsweredBy};

/// The plugin's schema: the seed's `schema.lua`, with its defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Requests a client may make per window.
    #[serde(default = "default_limit")]
    limit: u64,
    /// The window, in seconds.
    #[serde(default = "default_window")]
    window_size: u64,
    /// The Redis server counting for every gateway.
    #[serde(default = "default_host")]
    redis_host: String,
    #[serde(default = "default_port")]
    redis_port: u16,
}

fn default_limit() -> u64 {
    100
}
fn default_window() -> u64 {
    60
}
fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> u16 {
    6379
}

impl Schema for Config {
    fn validate(&self) -> Result<(), FieldError> {
        if self.limit == 0 {
            return Err(FieldError::at("limit", "limit must be at least 1"));
        }
        if self.window_size == 0 {
            return Err(FieldError::at(
                "window_size",
                "window_size must be at least 1 second",
            ));
        }
        if self.redis_host.is_empty() {
            return Err(FieldError::at("redis_host", "redis_host must not be empty"));
        }
        Ok(())
    }
}

/// The handler: one per route the plugin applies to, sharing a Redis connection.
#[derive(Clone)]
struct IpRateLimit {
    limit: u64,
    window_size: u64,
    client: redis::Client,
    connection: Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>>,
    trusted: TrustedProxies,
}

impl IpRateLimit {
    fn new(config: &Config, ctx: &PluginContext<'_>) -> Result<Self, String> {
        let url = format!("redis://{}:{}/", config.redis_host, config.redis_port);
        let client = redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
        Ok(Self {
            limit: config.limit,
            window_size: config.window_size,
            client,
            // Connected on first use: building a configuration does not wait for Redis.
            connection: Arc::default(),
            trusted: ctx.trusted_proxies().clone(),
        })
    }

    /// The client's count in this window: `SET NX EX` then `INCR`, in one transaction.
    async fn count(&self, ip: &str) -> redis::RedisResult<u64> {
        let connection = self
            .connection
            .get_or_try_init(|| redis::aio::ConnectionManager::new(self.client.clone()))
            .await?;
        let key = format!("rate_limit:{ip}");
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("EX")
            .arg(self.window_size)
            .ignore()
            .incr(&key, 1)
            .query_async(&mut connection.clone())
            .await?;
        Ok(count)
    }
}

impl<S> Layer<S> for IpRateLimit {
    type Service = IpRateLimited<S>;

    fn layer(&self, inner: S) -> IpRateLimited<S> {
        IpRateLimited {
            inner,
            limit: self.clone(),
        }
    }
}

#[derive(Clone)]
struct IpRateLimited<S> {
    inner: S,
    limit: IpRateLimit,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<UpstreamResponse, Infallible>> + Send>>;

impl<S> Service<PluginRequest> for IpRateLimited<S>
where
    S: Service<PluginRequest, Response = UpstreamResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = UpstreamResponse;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: PluginRequest) -> BoxFuture {
        // The ready inner service answers this request; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit.clone();
        Box::pin(async move {
            let ip = limit
                .trusted
                .client_ip(&req)
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            let count = match limit.count(&ip).await {
                Ok(count) => count,
                Err(err) => {
                    tracing::warn!(%err, "custom-rate-limiting: Redis is unreachable; request let through");
                    return inner.call(req).await;
                }
            };
            if count > limit.limit {
                // The seed's body; marked as the gateway's own answer, so that metrics count
                // it (`tower_gateway_rejections_total{by="custom-rate-limiting"}`) and a gRPC
                // client gets `grpc-status` 8. No rate-limit headers: the Lua handler exits
                // before setting them.
                let body = serde_json::json!({
                    "message": "API rate limit exceeded",
                    "limit": limit.limit,
                    "window": limit.window_size,
                });
                let mut res =
                    reject::json_body(StatusCode::TOO_MANY_REQUESTS, body.to_string().into());
                res.extensions_mut()
                    .insert(AnsweredBy("custom-rate-limiting"));
                return Ok(res);
            }
            let remaining = limit.limit - count;
            let mut res = inner.call(req).await?;
            let headers = res.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from(limit.limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            Ok(res)
        })
    }
}

/// The bundled configuration, with the plugin on every route.
const CONFIG: &str = r#"_format_version: "3.0"
services:
  - name: users
    url: http://127.0.0.1:9001
    routes:
      - name: users-api
        paths: [/api/users]
        strip_path: false
plugins:
  - name: custom-rate-limiting
    config: { limit: 5, window_size: 60 }
"#;

fn main() -> ExitCode {
    Program::new()
        // The seed's `PRIORITY = 900`: after authentication (key-auth 1250, jwt 1450) and the
        // built-in rate-limiting (910); next to the circuit breaker (900, which comes first by
        // name).
        .plugin(Definition::new(
            "custom-rate-limiting",
            900,
            IpRateLimit::new,
        ))
        .bundled_config(CONFIG, "examples/custom_plugin.rs (bundled)")
        .run()
}
