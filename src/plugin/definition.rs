//! A plugin's definition: its name, configuration type, priority, scopes and constructor.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use super::{Next, PluginConfig, PluginContext, PluginRequest, RouteLayer, UpstreamResponse};
use crate::lenient::FieldError;

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
pub(super) trait AnyConfig: Any + fmt::Debug + Send + Sync {
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
    /// Acts on the whole gateway (read by the configuration's `Gateway`); no layer.
    Global,
    /// The circuit breaker: built by the gateway, which keeps one breaker per service or
    /// route and names it for the Admin API and the metrics.
    Breaker,
}

/// A plugin: its name, configuration type, priority, scopes and how an instance becomes a
/// layer. See the [module docs](super).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tower::util::MapRequestLayer;
/// use tower_gateway::plugin::{Definition, PluginRequest, Registry, Schema};
///
/// /// `tag-upstream`: adds a header to every request of the routes it applies to.
/// #[derive(Debug, Deserialize, Serialize)]
/// #[serde(deny_unknown_fields)]
/// struct TagUpstream {
///     value: String,
/// }
/// impl Schema for TagUpstream {}
///
/// let definition = Definition::new("tag-upstream", 800, |c: &TagUpstream, _ctx| {
///     let value = http::HeaderValue::try_from(c.value.as_str()).map_err(|e| e.to_string())?;
///     Ok(MapRequestLayer::new(move |mut req: PluginRequest| {
///         req.headers_mut().insert("x-tag", value.clone());
///         req
///     }))
/// })
/// .no_consumer();
/// let mut registry = Registry::builtin();
/// registry.register(definition).unwrap();
/// assert!(registry.get("tag-upstream").is_some());
/// ```
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
            ctx.reuse_layer(config, |ctx| Ok(RouteLayer::new(layer(typed, ctx)?)))
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
                let config: C = crate::lenient::from_value(value)?;
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
        Ok(PluginConfig::new(self.clone(), value))
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
