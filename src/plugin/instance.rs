//! A configured plugin instance, and what its constructor is told.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::Definition;
use super::definition::AnyConfig;
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
    pub(crate) plugin: &'a crate::config::Plugin,
    pub(crate) consumer: Option<&'a str>,
    pub(crate) settings: &'a crate::config::Settings,
    pub(crate) reuse: &'a mut crate::config::Reuse,
    pub(crate) breakers: &'a mut crate::config::Breakers,
    pub(crate) service_index: usize,
    pub(crate) service_config: &'a crate::config::Service,
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
        self.plugin.id.as_deref()
    }

    /// For a consumer's own instance: the consumer's id.
    pub fn consumer(&self) -> Option<&str> {
        self.consumer
    }

    /// The proxies whose `X-Forwarded-For` is believed (Kong's `trusted_ips`): for the client
    /// address, use [`TrustedProxies::client_ip`].
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.settings.trusted_proxies
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
            self.service, self.route, self.consumer, self.plugin.id
        )
    }
}
