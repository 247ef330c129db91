//! A configured plugin instance, and what its constructor is told.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::definition::AnyConfig;
use super::{Definition, RouteLayer};
use crate::proxy::TrustedProxies;

/// A configured plugin: its definition and its checked configuration.
#[derive(Clone)]
pub struct PluginConfig {
    definition: Arc<Definition>,
    value: Arc<dyn AnyConfig>,
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.definition.name(), self.value)
    }
}

impl PluginConfig {
    pub(super) fn new(definition: Arc<Definition>, value: Arc<dyn AnyConfig>) -> Self {
        Self { definition, value }
    }

    /// The plugin's name, as in the file.
    pub fn name(&self) -> &str {
        self.definition.name()
    }

    /// The plugin's definition.
    pub fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    /// The configuration, if it is a `T` (`config.get::<RateLimitingConfig>()`).
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.value.as_any().downcast_ref()
    }

    /// The configuration as JSON, every default filled in (the Admin API's `config`).
    pub fn to_json(&self) -> Value {
        self.value.to_json()
    }
}

/// What a plugin's constructor knows about the instance it builds a layer for.
pub struct PluginContext<'a> {
    pub(crate) service: &'a str,
    pub(crate) route: &'a str,
    pub(crate) plugin_id: Option<&'a str>,
    pub(crate) consumer: Option<&'a str>,
    pub(crate) trusted_proxies: &'a TrustedProxies,
    pub(crate) reuse: &'a mut dyn LayerReuse,
}

/// Where a build finds the layers the previous gateway built, and keeps its own for the next
/// (the gateway's configuration builder implements it).
pub(crate) trait LayerReuse {
    /// The layer the previous gateway built under `key`, taken over (and kept for the next
    /// gateway), if there is one.
    fn take_over_layer(&mut self, key: &str) -> Option<RouteLayer>;

    /// Keeps a newly built layer under `key` for the next gateway.
    fn keep_layer(&mut self, key: String, layer: RouteLayer);
}

impl fmt::Debug for PluginContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("service", &self.service)
            .field("route", &self.route)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl PluginContext<'_> {
    /// The service's name (or id, or place in the file).
    pub fn service(&self) -> &str {
        self.service
    }

    /// The route's name (or place in the file).
    pub fn route(&self) -> &str {
        self.route
    }

    /// The plugin instance's `id`, if it has one.
    pub fn plugin_id(&self) -> Option<&str> {
        self.plugin_id
    }

    /// For a consumer's own instance: the consumer's id.
    pub fn consumer(&self) -> Option<&str> {
        self.consumer
    }

    /// The proxies whose `X-Forwarded-For` is believed (Kong's `trusted_ips`): for the client
    /// address, use [`TrustedProxies::client_ip`].
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        self.trusted_proxies
    }

    /// A prefix for keys in shared stores, distinct per service, route and consumer
    /// (`service:route` or `service:route:consumer`).
    pub fn namespace(&self) -> String {
        match self.consumer {
            Some(consumer) => format!("{}:{}:{consumer}", self.service, self.route),
            None => format!("{}:{}", self.service, self.route),
        }
    }

    /// What identifies the layer built for `config` here, across configuration changes.
    pub(crate) fn reuse_key(&self, config: &PluginConfig) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{config:?}",
            self.service, self.route, self.consumer, self.plugin_id
        )
    }

    /// The layer built for `config` here by the previous gateway, or a new one from `build`;
    /// kept for the next gateway either way, so the state it holds (counters, connections)
    /// survives unrelated configuration changes.
    pub(crate) fn reuse_layer(
        &mut self,
        config: &PluginConfig,
        build: impl FnOnce(&Self) -> Result<RouteLayer, String>,
    ) -> Result<RouteLayer, String> {
        let key = self.reuse_key(config);
        if let Some(kept) = self.reuse.take_over_layer(&key) {
            return Ok(kept);
        }
        let built = build(self)?;
        self.reuse.keep_layer(key, built.clone());
        Ok(built)
    }
}

/// The request protocols a plugin instance runs for: `http`, `https`, `grpc`, `grpcs`
/// (a WebSocket upgrade is `http` or `https`, as in Kong's open-source edition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PluginProtocols {
    /// Plain HTTP.
    pub http: bool,
    /// HTTP over TLS.
    pub https: bool,
    /// gRPC (`content-type: application/grpc…`) in cleartext.
    pub grpc: bool,
    /// gRPC over TLS.
    pub grpcs: bool,
}

impl PluginProtocols {
    /// Whether every protocol is listed (the instance runs for every request).
    pub fn all(&self) -> bool {
        self.http && self.https && self.grpc && self.grpcs
    }

    /// Whether a request of this kind is one the instance runs for.
    pub fn allows(&self, secure: bool, grpc: bool) -> bool {
        match (secure, grpc) {
            (false, false) => self.http,
            (true, false) => self.https,
            (false, true) => self.grpc,
            (true, true) => self.grpcs,
        }
    }
}
