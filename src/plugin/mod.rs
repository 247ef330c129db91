//! Plugins: named, configurable layers of a gateway route, as Kong's plugins are.
//!
//! A plugin is a [`Definition`]: a name, a typed configuration (its [`Schema`]: a serde
//! struct with its defaults and checks), a priority and a constructor that turns one
//! configured instance into a tower [`Layer`](tower::Layer) over the rest of the route ([`Next`]). A
//! [`Registry`] holds the definitions a gateway knows; the built-in plugins (`key-auth`,
//! `jwt`, `rate-limiting`, `circuit-breaker`, `correlation-id`, `prometheus`, `file-log`,
//! `upgrade-protocols`)
//! are definitions in [`Registry::builtin`] like any other, and an application adds its own
//! with [`Registry::register`]. Every definition is then configured the same way: in the
//! declarative file (`config::Config::from_yaml_with`) and
//! through the Admin API, globally or on a service, a route or a consumer, with the same
//! errors (the field path, unknown fields refused) and the same defaults.
//!
//! # Order
//!
//! On each route the plugins that apply run in priority order, highest first (outermost), as
//! Kong runs them:
//!
//! | priority | plugin |
//! |---:|---|
//! | 2000 | `upgrade-protocols` (marks the request for the proxy) |
//! | 1450 | `jwt` (authentication) |
//! | 1250 | `key-auth` (authentication) |
//! | 910 | `rate-limiting` |
//! | 900 | `circuit-breaker` |
//!
//! The authentication plugins run as one step, at the priority of the highest one configured
//! (Kong's "all of them" / "any of them with `anonymous`" needs them together); without one,
//! that step (which also removes client-sent `X-Consumer-*` headers) sits at 1250. A plugin
//! above the authentication step sees requests before any credential is checked; one below
//! sees the authenticated [`Consumer`](crate::identity::Consumer) in the request extensions.
//! `correlation-id` (100001), `prometheus` (13) and `file-log` (9) act on the whole gateway
//! and take no place in a route. Equal priorities run in name order.
//!
//! # Scopes and precedence
//!
//! A plugin can be configured globally, on a service, on a route and on a consumer (unless
//! its definition says otherwise: [`Definition::no_consumer`], [`Definition::global_only`]).
//! For each route the most specific enabled instance applies (consumer and route, consumer
//! and service, consumer, route, service, global: Kong's precedence); a consumer's own
//! instance is chosen per request, from the consumer authentication found, so it needs a
//! priority below authentication (a configuration that gives one to a plugin running before
//! authentication on some route is refused).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::HeaderValue;
//! use serde::{Deserialize, Serialize};
//! use tower::ServiceExt;
//! use tower::util::MapResponseLayer;
//! use tower_gateway::config::{Config, FieldError};
//! use tower_gateway::plugin::{Definition, Registry, Schema, UpstreamResponse};
//!
//! /// `add-header`: sets one response header.
//! #[derive(Debug, Clone, Deserialize, Serialize)]
//! #[serde(deny_unknown_fields)]
//! struct AddHeader {
//!     #[serde(default = "default_name")]
//!     name: String,
//!     value: String,
//! }
//! fn default_name() -> String { "x-added".into() }
//!
//! impl Schema for AddHeader {
//!     fn validate(&self) -> Result<(), FieldError> {
//!         http::HeaderName::try_from(self.name.as_str())
//!             .map(drop)
//!             .map_err(|_| FieldError::at("name", "not a header name"))
//!     }
//! }
//!
//! let mut registry = Registry::builtin();
//! registry.register(Definition::new("add-header", 800, |c: &AddHeader, _| {
//!     let name = http::HeaderName::try_from(c.name.as_str()).map_err(|e| e.to_string())?;
//!     let value = HeaderValue::try_from(c.value.as_str()).map_err(|e| e.to_string())?;
//!     Ok(MapResponseLayer::new(move |mut res: UpstreamResponse| {
//!         res.headers_mut().insert(name.clone(), value.clone());
//!         res
//!     }))
//! })).unwrap();
//!
//! let config = Config::from_yaml_with(r#"
//! _format_version: "3.0"
//! plugins:
//!   - name: add-header
//!     config: { value: hello }
//! "#, &registry).unwrap();
//! assert_eq!(config.plugins[0].config.name(), "add-header");
//! assert_eq!(config.plugins[0].config.get::<AddHeader>().unwrap().name, "x-added");
//!
//! let err = Config::from_yaml_with(r#"
//! _format_version: "3.0"
//! plugins:
//!   - name: add-header
//!     config:
//!       value: hello
//!       colour: blue
//! "#, &registry).unwrap_err();
//! assert_eq!(err.path(), Some("plugins[0].config.colour"));
//! assert_eq!(err.line(), Some(7));
//! assert!(err.to_string().contains("unknown field `colour`"), "{err}");
//! ```

mod definition;
mod instance;
mod registry;
mod stack;

use std::convert::Infallible;

use hyper::body::Incoming;
use tower::util::{BoxCloneSyncService, MapRequest};

pub use crate::lenient::FieldError;
pub(crate) use definition::Build;
pub use definition::{Definition, Schema};
pub(crate) use instance::LayerReuse;
pub use instance::{PluginConfig, PluginContext, PluginProtocols};
pub(crate) use registry::lookup;
pub use registry::{Registry, RegistryError};
pub use stack::{RouteFuture, RouteService};
pub(crate) use stack::{RouteLayer, Stack};

use crate::balance::{Balancer, TrackedBody};
use crate::body::{RequestBody, ResponseBody};
use crate::proxy::ReverseProxy;

/// The request body behind authentication: the client's stream, or the body authentication
/// read (`key_in_body`).
pub type GatewayBody = RequestBody<Incoming>;

/// A service's upstream: a [`Balancer`] over one [`ReverseProxy`] per target (one target for a
/// service with a plain host), all sharing the service's connection pool.
pub type ServiceBalancer = Balancer<ReverseProxy<GatewayBody>>;

/// A service's balancer with a route's `preserve_host` set on each request.
pub type HostRewrite = MapRequest<ServiceBalancer, fn(PluginRequest) -> PluginRequest>;

/// The response body every plugin passes on: the upstream's (counted by the balancer until
/// it ends), or one the gateway wrote ([`ResponseBody::full`]).
pub type UpstreamBody = ResponseBody<TrackedBody<ResponseBody<Incoming>>>;

/// A request as plugins see it (its body possibly read by `key_in_body`).
pub type PluginRequest = http::Request<GatewayBody>;

/// A response as plugins return it.
pub type UpstreamResponse = http::Response<UpstreamBody>;

/// The rest of a route below a plugin: the plugins of lower priority, then the service's
/// balancer and proxy. A plugin's layer wraps it.
pub type Next = BoxCloneSyncService<PluginRequest, UpstreamResponse, Infallible>;
