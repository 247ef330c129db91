//! The built-in plugins, defined as any plugin is, and the registry that holds them.

use std::sync::LazyLock;

use serde_json::json;
use tower::util::MapRequestLayer;

use super::{
    CircuitBreakerConfig, CorrelationIdConfig, FieldError, FileLogConfig, JwtConfig, KeyAuthConfig,
    PrometheusConfig, RateLimitingConfig, TimeClaimName,
};
use crate::plugin::{Build, Definition, PluginRequest, Registry, RouteLayer, Schema};
use crate::proxy::UpgradeProtocols;

/// Kong's priorities (`PRIORITY` in each plugin's handler).
pub(crate) const JWT: i32 = 1450;
pub(crate) const KEY_AUTH: i32 = 1250;
const RATE_LIMITING: i32 = 910;
/// This gateway's own: right after rate limiting, closest to the upstream of the built-ins.
const CIRCUIT_BREAKER: i32 = 900;
const CORRELATION_ID: i32 = 100_001;
const PROMETHEUS: i32 = 13;
const FILE_LOG: i32 = 9;
/// This gateway's own; it only marks the request for the proxy, so its place does not matter.
const UPGRADE_PROTOCOLS: i32 = 2000;

fn definitions() -> Vec<Definition> {
    vec![
        Definition::with_build::<KeyAuthConfig>("key-auth", KEY_AUTH, Build::Auth)
            .no_consumer()
            .shown_defaults(json!({
                "key_names": ["apikey"], "key_in_header": true, "key_in_query": true,
                "key_in_body": false, "hide_credentials": false, "anonymous": null,
                "run_on_preflight": true, "realm": null,
            })),
        Definition::with_build::<JwtConfig>("jwt", JWT, Build::Auth)
            .no_consumer()
            .shown_defaults(json!({
                "uri_param_names": ["jwt"], "cookie_names": [], "header_names": ["authorization"],
                "key_claim_name": "iss", "secret_is_base64": false, "claims_to_verify": null,
                "maximum_expiration": 0, "anonymous": null, "run_on_preflight": true,
                "realm": null,
            })),
        Definition::builtin::<RateLimitingConfig>(
            "rate-limiting",
            RATE_LIMITING,
            |c, config, ctx| {
                ctx.reuse_layer(config, |ctx| {
                    let layer = c.layer(ctx.trusted_proxies(), &ctx.namespace());
                    Ok(RouteLayer::wrapping(layer))
                })
            },
        )
        .shown_defaults(json!({
            "second": null, "minute": null, "hour": null, "day": null, "month": null,
            "year": null, "limit_by": "consumer", "header_name": null, "path": null,
            "policy": "local", "fault_tolerant": true, "hide_client_headers": false,
            "error_code": 429, "error_message": "API rate limit exceeded", "redis": null,
            "sync_rate": -1,
        })),
        Definition::with_build::<CircuitBreakerConfig>(
            "circuit-breaker",
            CIRCUIT_BREAKER,
            Build::Breaker,
        )
        .no_consumer(),
        Definition::with_build::<CorrelationIdConfig>(
            "correlation-id",
            CORRELATION_ID,
            Build::Global,
        )
        .global_only()
        .shown_defaults(json!({
            "header_name": "Kong-Request-ID", "generator": "uuid#counter",
            "echo_downstream": false,
        })),
        Definition::with_build::<PrometheusConfig>("prometheus", PROMETHEUS, Build::Global)
            .global_only()
            .shown_defaults(json!({
                "per_consumer": false, "status_code_metrics": true, "latency_metrics": true,
                "bandwidth_metrics": true, "upstream_health_metrics": true,
            })),
        Definition::with_build::<FileLogConfig>("file-log", FILE_LOG, Build::Global).global_only(),
        Definition::new(
            "upgrade-protocols",
            UPGRADE_PROTOCOLS,
            |c: &UpgradeProtocolsConfig, _| {
                let allowed = UpgradeProtocols::new(&c.protocols);
                Ok(MapRequestLayer::new(move |mut req: PluginRequest| {
                    req.extensions_mut().insert(allowed.clone());
                    req
                }))
            },
        )
        .no_consumer()
        .shown_defaults(json!({ "protocols": ["websocket"] })),
    ]
}

static BUILTIN: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::empty();
    for definition in definitions() {
        // The built-in names are distinct and well formed.
        let _ = registry.register(definition);
    }
    registry
});

// The registry's constructors that know the built-in plugins live here, with them, so that
// `plugin` does not depend on the configuration.
impl Registry {
    /// The built-in plugins.
    pub fn builtin() -> Self {
        BUILTIN.clone()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

/// This gateway's own `upgrade-protocols` plugin: the `Upgrade` protocols its routes forward
/// (default `websocket`; `h2c` is refused), in place of the program's `--upgrade-protocols`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeProtocolsConfig {
    /// The protocol tokens forwarded, as clients send them (`websocket`, `connect-udp`…).
    #[serde(default = "websocket_only")]
    pub protocols: Vec<String>,
}

fn websocket_only() -> Vec<String> {
    vec!["websocket".to_owned()]
}

impl Schema for UpgradeProtocolsConfig {
    fn validate(&self) -> Result<(), FieldError> {
        for (i, protocol) in self.protocols.iter().enumerate() {
            let field = format!("protocols.{i}");
            let token = protocol.trim();
            if token.eq_ignore_ascii_case("h2c") {
                return Err(FieldError::at(
                    &field,
                    "h2c is never forwarded: it would reach the upstream past the route",
                ));
            }
            if token.is_empty()
                || token.contains(',')
                || http::HeaderValue::from_str(token).is_err()
            {
                return Err(FieldError::at(
                    &field,
                    format!("{protocol:?} is not a protocol token"),
                ));
            }
        }
        Ok(())
    }
}

/// `(".field", message)` from the configuration modules, as a [`FieldError`].
fn field((field, message): (String, String)) -> FieldError {
    FieldError::at(field.trim_start_matches('.'), message)
}

impl Schema for KeyAuthConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.key_names.is_empty() {
            return Err(FieldError::at("key_names", "key_names must not be empty"));
        }
        Ok(())
    }
}

impl Schema for JwtConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let max = self.maximum_expiration;
        if max > 31_536_000 {
            return Err(FieldError::at(
                "maximum_expiration",
                format!("{max} is out of range 0..31536000"),
            ));
        }
        if max > 0 && !self.claims_to_verify.contains(&TimeClaimName::Exp) {
            return Err(FieldError::at(
                "claims_to_verify",
                "maximum_expiration needs exp in claims_to_verify",
            ));
        }
        Ok(())
    }
}

impl Schema for RateLimitingConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.limits().map(drop).map_err(field)
    }
}

impl Schema for CircuitBreakerConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.policy().map(drop).map_err(field)
    }
}

impl Schema for CorrelationIdConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if http::HeaderName::try_from(self.header_name.as_str()).is_err() {
            return Err(FieldError::at(
                "header_name",
                format!("invalid header name {:?}", self.header_name),
            ));
        }
        if let Some(generator) = &self.generator {
            generator
                .parse::<crate::request_id::Generator>()
                .map_err(|message| FieldError::at("generator", message))?;
        }
        Ok(())
    }
}

impl Schema for FileLogConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.reopen {
            return Err(FieldError::at(
                "reopen",
                "the file stays open here: only false is accepted",
            ));
        }
        if self.custom_fields_by_lua.is_some() {
            return Err(FieldError::at(
                "custom_fields_by_lua",
                "Lua fields are not supported",
            ));
        }
        if self.path.is_empty() {
            return Err(FieldError::at("path", "path must not be empty"));
        }
        Ok(())
    }
}

impl Schema for PrometheusConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let switches = [
            ("status_code_metrics", self.status_code_metrics),
            ("latency_metrics", self.latency_metrics),
            ("bandwidth_metrics", self.bandwidth_metrics),
            ("upstream_health_metrics", self.upstream_health_metrics),
        ];
        match switches.iter().find(|(_, v)| *v == Some(false)) {
            Some((field, _)) => Err(FieldError::at(
                field,
                "this gateway always exports these metrics: only true is accepted",
            )),
            None => Ok(()),
        }
    }
}
