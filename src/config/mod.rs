//! Kong-compatible declarative configuration: parse, check, and build a gateway from it.
//!
//! The format is Kong's (`_format_version` `"1.1"`, `"2.1"` or `"3.0"`), so a file exported
//! with decK or written for Kong's DB-less mode loads as it is, as long as it uses what this
//! gateway implements: `services` (with `url` or `protocol`/`host`/`port`/`path`, the three
//! timeouts, nested `routes`) and top-level `routes` naming their `service`, with `paths`,
//! `methods`, `hosts`, `headers`, `strip_path`, `preserve_host`; and `upstreams` with their
//! `targets` (nested or top-level), `algorithm`, `hash_on` / `hash_fallback` and
//! `healthchecks`: a service whose `host` names an upstream is balanced over its targets;
//! `consumers` with `keyauth_credentials` and `jwt_secrets`; `certificates`, `snis` and
//! `ca_certificates` (feature `tls`); and `plugins` (global, service,
//! route and consumer scope): the built-in `key-auth`, `jwt`, `rate-limiting`,
//! `circuit-breaker`, `correlation-id`, `prometheus` and `file-log`, and an application's own
//! (see [`crate::plugin`]; parse with [`Config::from_yaml_with`]). For each plugin the most
//! specific enabled instance applies.
//!
//! Nothing is silently ignored. A field this gateway does not act on yet is accepted only at
//! Kong's default value; what later releases implement (a service's `tls_verify_depth`, …) is
//! refused with "not supported yet" when it is not empty, plugins no registry defines with
//! "not supported here"; unknown fields are refused. Every error names the file, the field path
//! (`services[0].routes[1].paths[0]`) and, for errors found while parsing, the line.
//!
//! ```
//! use tower_gateway::config::Config;
//!
//! let config = Config::from_yaml(r#"
//! _format_version: "3.0"
//! services:
//!   - name: users
//!     url: http://127.0.0.1:3000
//!     routes:
//!       - name: users-api
//!         paths: ["/api/users"]
//! "#).unwrap();
//! assert_eq!(config.services[0].routes.len(), 1);
//!
//! let err = Config::from_yaml(r#"
//! _format_version: "3.0"
//! services:
//!   - name: users
//!     url: http://127.0.0.1:3000
//!     routes:
//!       - paths: ["api/users"]
//! "#).unwrap_err();
//! assert_eq!(err.path(), Some("services[0].routes[0].paths[0]"));
//! assert_eq!(err.line(), Some(7));
//! ```

mod auth;
mod builtin;
mod check;
mod circuit;
mod error;
mod gateway;
mod live;
mod locate;
mod model;
mod plugins;
mod ratelimit;
mod tls;
mod upstream;

use std::path::Path;

use crate::plugin::Registry;

pub use crate::lenient::FieldError;
pub use crate::plugin::RouteService;
pub use crate::plugin::{GatewayBody, HostRewrite, ServiceBalancer};
pub use builtin::UpgradeProtocolsConfig;
pub use error::ConfigError;
pub use gateway::{Gateway, RouteSummary, Settings};
pub use live::{LiveGateway, LiveRouter};
pub use model::*;
pub use plugins::*;
pub use tls::{CaCertificate, Certificate, Sni, SniName};
pub use upstream::*;

impl Config {
    /// Parses and checks a YAML document with the built-in plugins; errors name the file as
    /// `<config>`.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "<config>")
    }

    /// [`from_yaml`](Self::from_yaml) with the plugins of `registry` (the built-in ones and
    /// an application's own).
    pub fn from_yaml_with(text: &str, registry: &Registry) -> Result<Self, ConfigError> {
        registry.scope(|| Self::parse(text, "<config>"))
    }

    /// [`from_file`](Self::from_file) with the plugins of `registry`.
    pub fn from_file_with(
        path: impl AsRef<Path>,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        registry.scope(|| Self::from_file(path))
    }

    /// [`from_json`](Self::from_json) with the plugins of `registry`.
    pub fn from_json_with(
        doc: &mut serde_json::Value,
        source: &str,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        registry.scope(|| Self::from_json(doc, source))
    }

    /// Reads and checks a configuration given as JSON (the Admin API's entities): strings are
    /// read as the numbers or booleans fields expect, and `doc` is rewritten with those types.
    /// Errors name `source` as the file.
    pub fn from_json(doc: &mut serde_json::Value, source: &str) -> Result<Self, ConfigError> {
        let version = doc
            .get("_format_version")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let parsed = model::with_format_of(version.as_deref(), || {
            crate::lenient::from_value::<Config>(doc)
        });
        let mut config = parsed.map_err(|err| ConfigError::Parse {
            file: source.to_owned(),
            message: err.to_string(),
            line: None,
            column: None,
        })?;
        config.source = source.to_owned();
        config.check(source)?;
        Ok(config)
    }

    /// Reads, parses and checks a YAML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        // The format decides how route paths are read (Kong 2.x regexes), so it is read first.
        #[derive(serde::Deserialize)]
        struct Format {
            #[serde(rename = "_format_version")]
            version: Option<String>,
        }
        let version = serde_norway::from_str::<Format>(text)
            .ok()
            .and_then(|f| f.version);
        let parsed = model::with_format_of(version.as_deref(), || {
            serde_norway::from_str::<Config>(text)
        });
        let mut config: Config = parsed.map_err(|err| {
            let location = err.location().map(|l| (l.line(), l.column()));
            let (message, location) = locate::unnest(text, &err.to_string(), location);
            ConfigError::Parse {
                file: file.to_owned(),
                message,
                line: location.map(|l| l.0),
                column: location.map(|l| l.1),
            }
        })?;
        config.source = file.to_owned();
        config.check(file)?;
        Ok(config)
    }
}
