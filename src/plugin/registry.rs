//! Plugin definitions, the registry that names them, and configured instances.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use super::{Next, PluginRequest, RouteLayer, UpstreamResponse};
use crate::config::FieldError;
use crate::proxy::TrustedProxies;

/// A plugin's configuration type: what `config:` holds, with its defaults (serde's
/// `#[serde(default)]`) and the checks types cannot express ([`validate`](Self::validate)).
/// Add `#[serde(deny_unknown_fields)]` so that a misspelt field is refused, not ignored.
///
/// It is also serialized: the Admin API shows the configuration with every default filled
/// in, as Kong does.
pub trait Schema: DeserializeOwned + Serialize + fmt::Debug + Send + Sync + 'static {
    /// Checks the values; an error names the field below `config` (see [`FieldError::at`]).
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// A configuration of some plugin, type-erased.
trait AnyConfig: Any + fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn to_json(&self) -> Value;
}

impl<T: Schema> AnyConfig for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

type Parse = Box<dyn Fn(&mut Value) -> Result<Arc<dyn AnyConfig>, FieldError> + Send + Sync>;

type BuildFn =
    Arc<dyn Fn(&PluginConfig, &mut PluginContext<'_>) -> Result<RouteLayer, String> + Send + Sync>;

/// How a configured instance takes part in a route.
#[derive(Clone)]
pub(crate) enum Build {
    /// A layer of the route, at the definition's priority.
    Layer(BuildFn),
    /// One of the authentication plugins, run together as one step.
    Auth,
    /// Acts on the whole gateway (read by [`Gateway`](crate::config::Gateway)); no layer.
    Global,
}

/// A plugin: its name, configuration type, priority, scopes and how an instance becomes a
/// layer. See the [module docs](super).
pub struct Definition {
    name: Arc<str>,
    priority: i32,
    parse: Parse,
    pub(crate) build: Build,
    no_consumer: bool,
    no_service: bool,
    no_route: bool,
    global_only: bool,
    /// The `config` the Admin API shows for fields left unset, when they differ from what
    /// the configuration type serializes (Kong's documented defaults of built-in plugins
    /// whose fields are optional here).
    shown_defaults: Option<Map<String, Value>>,
}

impl fmt::Debug for Definition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl Definition {
    /// A plugin named `name` (as in `name:` of the file), configured by `C`, running at
    /// `priority` (higher runs first; see the [module docs](super) for the built-ins'), whose
    /// instances become layers through `layer`.
    ///
    /// `layer` runs once per route an instance applies to, when a configuration is loaded or
    /// changed; its error refuses the configuration (the Admin API answers 400 with it). A
    /// layer built for the same configuration, route and scope is reused across changes, so
    /// state it keeps (counters, connections) survives unrelated edits.
    pub fn new<C, L, F>(name: impl Into<String>, priority: i32, layer: F) -> Self
    where
        C: Schema,
        F: Fn(&C, &PluginContext<'_>) -> Result<L, String> + Send + Sync + 'static,
        L: Layer<Next> + Send + Sync + 'static,
        L::Service: Service<PluginRequest, Response = UpstreamResponse, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<PluginRequest>>::Future: Send + 'static,
    {
        let build: BuildFn = Arc::new(move |config, ctx| {
            let Some(typed) = config.get::<C>() else {
                return Err(format!(
                    "plugin {} got a foreign configuration",
                    config.name()
                ));
            };
            let key = ctx.reuse_key(config);
            if let Some(kept) = ctx.reuse.kept_layer(&key) {
                return Ok(kept);
            }
            let built = RouteLayer::new(layer(typed, ctx)?);
            ctx.reuse.layer(key, || Ok(built))
        });
        Self::with_build::<C>(name, priority, Build::Layer(build))
    }

    pub(crate) fn with_build<C: Schema>(
        name: impl Into<String>,
        priority: i32,
        build: Build,
    ) -> Self {
        Self {
            name: name.into().into(),
            priority,
            parse: Box::new(|value| {
                let config: C = crate::config::from_json_value(value)?;
                config.validate()?;
                Ok(Arc::new(config))
            }),
            build,
            no_consumer: false,
            no_service: false,
            no_route: false,
            global_only: false,
            shown_defaults: None,
        }
    }

    /// A built-in plugin whose layer needs the gateway's internals.
    pub(crate) fn builtin<C: Schema>(
        name: &str,
        priority: i32,
        build: impl Fn(&C, &PluginConfig, &mut PluginContext<'_>) -> Result<RouteLayer, String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        let build: BuildFn = Arc::new(move |config, ctx| match config.get::<C>() {
            Some(typed) => build(typed, config, ctx),
            None => Err(format!(
                "plugin {} got a foreign configuration",
                config.name()
            )),
        });
        Self::with_build::<C>(name, priority, Build::Layer(build))
    }

    /// Refuses instances scoped to a consumer (Kong's `no_consumer`), as authentication
    /// plugins do.
    pub fn no_consumer(mut self) -> Self {
        self.no_consumer = true;
        self
    }

    /// Refuses instances scoped to a service (Kong's `no_service`).
    pub fn no_service(mut self) -> Self {
        self.no_service = true;
        self
    }

    /// Refuses instances scoped to a route (Kong's `no_route`).
    pub fn no_route(mut self) -> Self {
        self.no_route = true;
        self
    }

    /// Accepts only one unscoped instance at the top level of the file.
    pub fn global_only(mut self) -> Self {
        self.global_only = true;
        self
    }

    pub(crate) fn shown_defaults(mut self, defaults: Value) -> Self {
        if let Value::Object(map) = defaults {
            self.shown_defaults = Some(map);
        }
        self
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its priority: higher runs first.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Parses and checks a `config` object (JSON; strings are read as the numbers and
    /// booleans the fields expect, as the Admin API's form fields need).
    pub fn parse(self: &Arc<Self>, config: &mut Value) -> Result<PluginConfig, FieldError> {
        let value = (self.parse)(config)?;
        Ok(PluginConfig {
            definition: self.clone(),
            value,
        })
    }

    /// What the scope of an instance at `at` (its field path) with these references allows;
    /// the error is the field to blame and why.
    pub(crate) fn check_scope(
        &self,
        at: &str,
        service: bool,
        route: bool,
        consumer: bool,
    ) -> Result<(), (String, String)> {
        let top_level = at.starts_with("plugins[");
        if self.global_only && !(top_level && !service && !route && !consumer) {
            return Err((
                at.to_owned(),
                format!(
                    "{} applies to the whole gateway here: configure it once, at the top level",
                    self.name
                ),
            ));
        }
        let in_consumer = at.starts_with("consumers[");
        let in_route = at.starts_with("routes[") || at.contains(".routes[");
        let in_service = at.starts_with("services[") && !in_route;
        // The field to blame: the reference, or the name of a nested instance.
        let refused = [
            (self.no_consumer, consumer, in_consumer, "consumer"),
            (self.no_route, route, in_route, "route"),
            (self.no_service, service, in_service, "service"),
        ];
        for (refuses, by_reference, nested, scope) in refused {
            if refuses && (by_reference || nested) {
                let field = if by_reference { scope } else { "name" };
                return Err((
                    format!("{at}.{field}"),
                    format!("{} cannot be scoped to a {scope}", self.name),
                ));
            }
        }
        Ok(())
    }

    /// The `config` the Admin API starts from: every field's default.
    #[cfg(feature = "admin")]
    pub(crate) fn defaults(self: &Arc<Self>) -> Map<String, Value> {
        if let Some(shown) = &self.shown_defaults {
            return shown.clone();
        }
        match self.parse(&mut Value::Object(Map::new())) {
            Ok(config) => match config.to_json() {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            // A configuration with required fields has no complete default.
            Err(_) => Map::new(),
        }
    }
}

/// The plugins a gateway knows, by name. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    definitions: Arc<BTreeMap<Arc<str>, Arc<Definition>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.definitions.keys()).finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

/// Why a definition was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is taken (by a built-in plugin or an earlier registration).
    #[error("a plugin named {0:?} is already registered")]
    Taken(String),
    /// The name is not lowercase letters, digits, `-` and `_`.
    #[error("plugin name {0:?} is not lowercase letters, digits, '-' and '_'")]
    Name(String),
}

static BUILTIN: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry {
        definitions: Arc::new(BTreeMap::new()),
    };
    for definition in super::builtin::definitions() {
        // The built-in names are distinct and well formed.
        let _ = registry.register(definition);
    }
    registry
});

impl Registry {
    /// The built-in plugins.
    pub fn builtin() -> Self {
        BUILTIN.clone()
    }

    /// Adds a plugin.
    pub fn register(&mut self, definition: Definition) -> Result<&mut Self, RegistryError> {
        let name = definition.name.clone();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(RegistryError::Name(name.to_string()));
        }
        if self.definitions.contains_key(&name) {
            return Err(RegistryError::Taken(name.to_string()));
        }
        Arc::make_mut(&mut self.definitions).insert(name, Arc::new(definition));
        Ok(self)
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(name)
    }

    /// The names of every plugin, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions.keys().map(|n| &**n)
    }

    /// Runs `f` (which parses configuration) with this registry naming the plugins.
    pub(crate) fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        scope(self, f)
    }
}

thread_local! {
    /// The registry plugins are parsed with on this thread (serde's `Deserialize` has no
    /// other way in); the built-in one when unset.
    static CURRENT: RefCell<Option<Registry>> = const { RefCell::new(None) };
}

/// Runs `f` with `registry` naming the plugins parsed on this thread.
pub(crate) fn scope<R>(registry: &Registry, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Registry>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(registry.clone()));
    let _restore = Restore(previous);
    f()
}

/// The definition named `name` in the registry in scope; and every name, for errors.
pub(crate) fn lookup(name: &str) -> Result<Arc<Definition>, String> {
    CURRENT.with(|c| {
        let current = c.borrow();
        let registry = current.as_ref().unwrap_or(&BUILTIN);
        registry.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = registry.names().collect();
            format!(
                "plugin {name:?} is not supported here (this gateway runs {}; an application adds its own with tower_gateway::plugin::Registry::register)",
                known.join(", ")
            )
        })
    })
}

/// A configured plugin: its definition and its checked configuration.
#[derive(Clone)]
pub struct PluginConfig {
    definition: Arc<Definition>,
    value: Arc<dyn AnyConfig>,
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.definition.name, self.value)
    }
}

impl PluginConfig {
    /// The plugin's name, as in the file.
    pub fn name(&self) -> &str {
        &self.definition.name
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
