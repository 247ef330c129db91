//! Turning a checked configuration into a running router of reverse proxies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tower::util::MapRequest;

use super::{
    Algorithm, CircuitBreakerConfig, Config, ConfigError, CorrelationIdConfig, FileLogConfig,
    PrometheusConfig, Route as RouteConfig, RouteService, Service, Upstream,
};
use crate::auth::Consumers;
use crate::balance::{
    Balancer, ConsistentHash, Endpoint, LeastConnections, PeakEwma, Strategy, WeightedRoundRobin,
};
use crate::circuit::Breaker;
use crate::plugin::{
    Build, GatewayBody, HostRewrite, LayerReuse, PluginContext, RouteLayer, ServiceBalancer, Stack,
};
use crate::proxy::{Origin, PreserveHost, ProxyConfig, ReverseProxy, TrustedProxies};
use crate::router::{Route, Router};

/// Node-level settings, the equivalents of `kong.conf` entries that are not part of the
/// declarative file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kong's `trusted_ips`: peers whose `X-Forwarded-*` headers are believed. Default: none.
    pub trusted_proxies: TrustedProxies,
    /// Kong's `upstream_keepalive_pool_size` (default 512).
    pub max_idle_per_host: usize,
    /// Kong's `upstream_keepalive_idle_timeout` (default 60 s).
    pub idle_timeout: Duration,
    /// Kong's `nginx_http_client_body_buffer_size`: the largest body `key_in_body` looks
    /// into (default 8 KiB).
    pub max_body: usize,
    /// The `Upgrade` protocols forwarded to upstreams (default `websocket`; see
    /// [`ProxyConfig::upgrade_protocols`]).
    pub upgrade_protocols: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::none(),
            max_idle_per_host: crate::proxy::DEFAULT_MAX_IDLE_PER_HOST,
            idle_timeout: crate::proxy::DEFAULT_IDLE_TIMEOUT,
            max_body: crate::auth::DEFAULT_MAX_BODY,
            upgrade_protocols: vec!["websocket".to_owned()],
        }
    }
}

/// A configuration compiled into a [`Router`] whose routes forward through [`ReverseProxy`]s.
#[derive(Debug, Clone)]
pub struct Gateway {
    router: Router<RouteService>,
    routes: Vec<RouteSummary>,
    upstreams: Vec<(String, ServiceBalancer)>,
    consumers: Consumers,
    breakers: Vec<(String, Breaker)>,
    request_id: Option<crate::request_id::RequestIdLayer>,
    prometheus: bool,
    per_consumer_metrics: bool,
    /// The parts a rebuilt gateway may take over.
    kept: Arc<Kept>,
    file_log: Option<std::path::PathBuf>,
    #[cfg(feature = "tls")]
    certificates: Vec<crate::server::Certificate>,
}

/// One compiled route, for startup logs and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    /// The route's name, or its position (`services[0].routes[1]`) when unnamed.
    pub route: String,
    /// The service's name (or id).
    pub service: String,
    /// The origin requests are forwarded to, or `upstream <name>` for a balanced service.
    pub origin: String,
    /// What the route matches, e.g. `GET /api/users`.
    pub matches: String,
}

impl Gateway {
    /// Builds the router: one connection pool and one balancer per service (over the targets
    /// of the upstream its `host` names, or over its one origin), shared by the service's
    /// routes. Needs a tokio runtime (active health checks start here).
    pub fn from_config(config: &Config, settings: &Settings) -> Result<Self, ConfigError> {
        Self::build(config, settings, None)
    }

    /// Builds a gateway for `config` that takes over from `previous` every part whose
    /// configuration did not change: a service's balancer (its connection pool, endpoint
    /// health and in-flight counts) when the service's origin, timeouts, retries, upstream and
    /// targets are the same; a breaker (its state) when its plugin and scope are; a rate
    /// limiter (its counters) when its plugin and route are. `previous` keeps serving until
    /// the caller swaps the new one in (see [`LiveGateway`](super::LiveGateway)).
    pub fn rebuild(
        config: &Config,
        settings: &Settings,
        previous: &Gateway,
    ) -> Result<Self, ConfigError> {
        Self::build(config, settings, Some(&previous.kept))
    }

    fn build(
        config: &Config,
        settings: &Settings,
        previous: Option<&Arc<Kept>>,
    ) -> Result<Self, ConfigError> {
        let mut reuse = Reuse {
            previous: previous.cloned(),
            kept: Kept::default(),
        };
        let reuse = &mut reuse;
        let mut builder = Router::builder().kong_matching(true);
        let mut routes = Vec::new();
        let mut upstreams = Vec::new();
        let mut breakers = Breakers::default();
        let consumers = config
            .consumers()
            .map_err(|(path, message)| ConfigError::Invalid {
                file: config.source.clone(),
                path,
                message,
            })?;
        let mut balancers: Vec<Option<(ServiceBalancer, String)>> = Vec::new();
        // Every route with its place in the file and its service's position.
        let mut placed: Vec<(String, &RouteConfig, usize)> = Vec::new();

        for (i, service) in config.services.iter().enumerate() {
            let enabled = service.enabled.unwrap_or(true);
            let balancer = enabled
                .then(|| {
                    let key = balancer_key(config, service, i, settings);
                    reuse.balancer(key, || service_balancer(config, service, settings, i))
                })
                .transpose()?;
            if !enabled {
                tracing::info!(service = %service.label(), "service disabled; its routes do not match");
            }
            if let Some((balancer, target)) = &balancer
                && let Some(name) = target.strip_prefix("upstream ")
            {
                upstreams.push((name.to_owned(), balancer.clone()));
            }
            let nested = service
                .routes
                .iter()
                .enumerate()
                .map(|(j, r)| (format!("services[{i}].routes[{j}]"), r));
            if balancer.is_some() {
                placed.extend(nested.map(|(at, route)| (at, route, i)));
            }
            balancers.push(balancer);
        }
        for (j, route) in config.routes.iter().enumerate() {
            let reference = route.service.as_ref().map(|s| s.0.as_str());
            let position = config.services.iter().position(|s| {
                reference.is_some()
                    && (s.name.as_deref() == reference || s.id.as_deref() == reference)
            });
            // `check` guarantees the reference resolves.
            if let Some(position) = position {
                placed.push((format!("routes[{j}]"), route, position));
            }
        }
        let definitions = config.plugin_definitions();
        // Nested routes first, service by service, then the top-level ones: the file's order.
        for (at, route, position) in placed {
            let Some((balancer, target)) = &balancers[position] else {
                continue;
            };
            let service = &config.services[position];
            routes.push(summary(&at, route, service, target));
            let label = route.name.clone().unwrap_or_else(|| at.clone());
            let stack = route_stack(
                (config, &definitions),
                settings,
                (position, service),
                (&label, route),
                &consumers,
                &mut breakers,
                reuse,
            )
            .map_err(|(path, message)| ConfigError::Invalid {
                file: config.source.clone(),
                path,
                message,
            })?;
            builder = builder.route(
                router_route(route, &label, service),
                stack.around(for_route(balancer, route)),
            );
        }
        #[cfg(feature = "tls")]
        let certificates =
            config
                .server_certificates()
                .map_err(|(path, message)| ConfigError::Invalid {
                    file: config.source.clone(),
                    path,
                    message,
                })?;
        let router = builder.build().map_err(|err| ConfigError::Invalid {
            file: config.source.clone(),
            path: "routes".into(),
            message: err.to_string(),
        })?;
        Ok(Self {
            router,
            routes,
            upstreams,
            consumers,
            breakers: breakers.named,
            request_id: global::<CorrelationIdConfig>(config, "correlation-id").map(|c| {
                crate::request_id::RequestIdLayer::new()
                    .header(
                        http::HeaderName::try_from(c.header_name.as_str())
                            .unwrap_or(http::HeaderName::from_static("kong-request-id")),
                    )
                    .echo(c.echo_downstream)
                    .generator(
                        c.generator
                            .as_deref()
                            .and_then(|g| g.parse().ok())
                            .unwrap_or_default(),
                    )
            }),
            prometheus: global::<PrometheusConfig>(config, "prometheus").is_some(),
            per_consumer_metrics: global::<PrometheusConfig>(config, "prometheus")
                .is_some_and(|c| c.per_consumer),
            file_log: global::<FileLogConfig>(config, "file-log").map(|c| c.path.clone().into()),
            kept: Arc::new(std::mem::take(&mut reuse.kept)),
            #[cfg(feature = "tls")]
            certificates,
        })
    }

    /// The router to serve.
    pub fn router(&self) -> Router<RouteService> {
        self.router.clone()
    }

    /// The compiled routes, in configuration order.
    pub fn routes(&self) -> &[RouteSummary] {
        &self.routes
    }

    /// The request-id layer of a global `correlation-id` plugin, if the file has one.
    pub fn request_id(&self) -> Option<crate::request_id::RequestIdLayer> {
        self.request_id.clone()
    }

    /// The certificates of the configuration (`certificates` with their `snis`), for a TLS
    /// listener's [`SniCertificates`](crate::server::SniCertificates).
    #[cfg(feature = "tls")]
    pub fn certificates(&self) -> &[crate::server::Certificate] {
        &self.certificates
    }

    /// The file of a global `file-log` plugin: the access log goes there as JSON lines.
    pub fn file_log(&self) -> Option<&std::path::Path> {
        self.file_log.as_deref()
    }

    /// Whether the file enables the global `prometheus` plugin.
    pub fn prometheus(&self) -> bool {
        self.prometheus
    }

    /// Whether that plugin asks for per-consumer series (`per_consumer: true`).
    pub fn per_consumer_metrics(&self) -> bool {
        self.per_consumer_metrics
    }

    /// The circuit breakers of `circuit-breaker` plugins, by service (service scope) or route
    /// name, for metrics and status pages.
    pub fn breakers(&self) -> &[(String, Breaker)] {
        &self.breakers
    }

    /// The consumers and credentials of the configuration (shared by the routes' plugins).
    pub fn consumers(&self) -> &Consumers {
        &self.consumers
    }

    /// The balancers of services that use an upstream, by upstream name, for status pages and
    /// health endpoints. Each service has its own balancer (its own pool, timeouts, health
    /// and counts), so an upstream used by two services appears twice.
    pub fn upstreams(&self) -> &[(String, ServiceBalancer)] {
        &self.upstreams
    }
}

/// Parts of a built gateway that a rebuilt one may take over, by a key describing their
/// configuration.
#[derive(Default)]
struct Kept {
    balancers: HashMap<String, (ServiceBalancer, String)>,
    breakers: HashMap<String, Breaker>,
    layers: HashMap<String, RouteLayer>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("balancers", &self.balancers.len())
            .field("breakers", &self.breakers.len())
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// What a build takes over from the previous gateway, and what it keeps for the next.
pub(crate) struct Reuse {
    previous: Option<Arc<Kept>>,
    kept: Kept,
}

impl Reuse {
    fn balancer(
        &mut self,
        key: String,
        build: impl FnOnce() -> Result<(ServiceBalancer, String), ConfigError>,
    ) -> Result<(ServiceBalancer, String), ConfigError> {
        let found = self
            .previous
            .as_ref()
            .and_then(|p| p.balancers.get(&key))
            .cloned();
        let balancer = match found {
            Some(balancer) => balancer,
            None => build()?,
        };
        self.kept.balancers.insert(key, balancer.clone());
        Ok(balancer)
    }

    fn breaker(&mut self, key: String, build: impl FnOnce() -> Breaker) -> Breaker {
        let breaker = self
            .previous
            .as_ref()
            .and_then(|p| p.breakers.get(&key))
            .cloned()
            .unwrap_or_else(build);
        self.kept.breakers.insert(key, breaker.clone());
        breaker
    }
}

impl LayerReuse for Reuse {
    fn take_over_layer(&mut self, key: &str) -> Option<RouteLayer> {
        let found = self.previous.as_ref()?.layers.get(key)?.clone();
        self.kept.layers.insert(key.to_owned(), found.clone());
        Some(found)
    }

    fn keep_layer(&mut self, key: String, layer: RouteLayer) {
        self.kept.layers.insert(key, layer);
    }
}

/// What a service's balancer depends on: the service (by id or name), its origin, timeouts
/// and retries, and the upstream and targets its host names (without tags and timestamps).
fn balancer_key(config: &Config, service: &Service, index: usize, settings: &Settings) -> String {
    let origin = service.origin().map(|o| o.to_string()).unwrap_or_default();
    let upstream = service.origin().ok().and_then(|o| {
        let host = o.authority().host().to_owned();
        config.upstreams.iter().find(|u| u.name == host)
    });
    let described = upstream.map(|original| {
        let mut u = original.clone();
        u.targets.clear();
        (u.created_at, u.updated_at, u.tags) = (None, None, None);
        let targets: Vec<_> = config
            .targets_of(original)
            .map(|t| (t.target.0.clone(), t.weight.map(|w| w.0)))
            .collect();
        format!("{u:?}|{targets:?}")
    });
    // Each service keeps a balancer of its own.
    let own = service
        .id
        .clone()
        .or(service.name.clone())
        .unwrap_or_else(|| format!("#{index}"));
    format!(
        "{own:?}|{origin}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{described:?}|{settings:?}|{:?}",
        service.protocol(),
        service.tls_verify,
        service.connect_timeout,
        service.read_timeout,
        service.write_timeout,
        service.retries,
        (
            config.ca_bundle(service),
            config
                .client_certificate(service)
                .map(|c| (&c.cert, &c.key))
        ),
    )
}

/// The service's balancer and a description of where it sends requests.
fn service_balancer(
    config: &Config,
    service: &Service,
    settings: &Settings,
    index: usize,
) -> Result<(ServiceBalancer, String), ConfigError> {
    let file = &config.source;
    let invalid = |path: String, message: String| ConfigError::Invalid {
        file: file.clone(),
        path,
        message,
    };
    let origin = service
        .origin()
        .map_err(|(field, message)| invalid(format!("services[{index}].{field}"), message))?;
    let ms = |t: Option<super::TimeoutMs>| {
        t.map_or(crate::proxy::DEFAULT_TIMEOUT, |t| {
            Duration::from_millis(t.0)
        })
    };
    let proxy_config = ProxyConfig::with_origin(origin.clone())
        .connect_timeout(ms(service.connect_timeout))
        .read_timeout(ms(service.read_timeout))
        .write_timeout(ms(service.write_timeout))
        .trusted_proxies(settings.trusted_proxies.clone())
        .max_idle_per_host(settings.max_idle_per_host)
        .idle_timeout(settings.idle_timeout)
        .upgrade_protocols(&settings.upgrade_protocols)
        .http2_prior_knowledge(service.protocol().http2());
    #[cfg(feature = "tls")]
    let proxy_config = proxy_config.tls_verify(service.tls_verify.unwrap_or(true));
    #[cfg(feature = "tls")]
    let proxy_config = match config.client_certificate(service) {
        Some(certificate) => proxy_config
            .tls_client_certificate(certificate.cert.as_bytes(), certificate.key.as_bytes())
            .map_err(|err| invalid(format!("services[{index}].client_certificate"), err.message))?,
        None => proxy_config,
    };
    #[cfg(feature = "tls")]
    let proxy_config = match config.ca_bundle(service) {
        Some(bundle) => proxy_config
            .tls_ca_pem(bundle.as_bytes())
            .map_err(|err| invalid(format!("services[{index}].ca_certificates"), err.message))?,
        None => proxy_config,
    };
    let pool = ReverseProxy::new(proxy_config);
    let retries = u32::from(service.retries.unwrap_or(5));

    let host = origin.authority().host();
    let Some((u, upstream)) = config
        .upstreams
        .iter()
        .enumerate()
        .find(|(_, u)| u.name == host)
    else {
        let balancer = Balancer::builder(WeightedRoundRobin::new())
            .endpoint(origin.authority().as_str(), pool)
            .retries(retries)
            .build();
        return Ok((balancer, origin.to_string()));
    };

    let at = |field: String| format!("upstreams[{u}].{field}");
    let (hash_on, hash_fallback) = upstream
        .hashing(&settings.trusted_proxies)
        .map_err(|(field, message)| invalid(at(field), message))?;
    let mut builder = Balancer::builder(strategy(upstream))
        .retries(retries)
        .hash_on(hash_on)
        .hash_fallback(hash_fallback);
    if let Some(passive) = upstream.passive() {
        builder = builder.passive_health(passive);
    }
    if let Some(active) = upstream
        .active()
        .map_err(|(field, message)| invalid(at(field), message))?
    {
        builder = builder.active_health(active);
    }
    for target in config.targets_of(upstream) {
        let address = &target.target.0;
        let target_origin = Origin::parse(&format!(
            "{}://{address}{}",
            origin.scheme(),
            origin.base_path()
        ))
        .map_err(|err| invalid(at("targets".into()), err.to_string()))?;
        let weight = target
            .weight
            .map_or(crate::balance::DEFAULT_WEIGHT, |w| w.0);
        builder = builder.endpoint(
            Endpoint::new(address.as_str()).weight(weight),
            pool.with_origin(target_origin),
        );
    }
    Ok((builder.build(), format!("upstream {}", upstream.label())))
}

/// The configuration of the enabled global instance of plugin `name`.
fn global<'a, T: 'static>(config: &'a Config, name: &str) -> Option<&'a T> {
    config
        .plugins
        .iter()
        .find(|p| p.enabled && p.config.name() == name)
        .and_then(|p| p.config.get::<T>())
}

/// The breakers made so far: one per service-scoped plugin instance and service, one per route
/// otherwise; with the name they are known by (the service's or the route's).
#[derive(Default)]
pub(crate) struct Breakers {
    pub(crate) shared: Vec<(*const super::Plugin, usize, Breaker)>,
    pub(crate) named: Vec<(String, Breaker)>,
}

/// The plugins of one route, in priority order: every plugin named by an enabled instance
/// that applies (the most specific, and consumers' own), the authentication plugins as one
/// step. Errors are a field path and why.
fn route_stack(
    (config, definitions): (&Config, &[Arc<crate::plugin::Definition>]),
    settings: &Settings,
    (service_index, service): (usize, &Service),
    (label, route): (&str, &RouteConfig),
    consumers: &Consumers,
    breakers: &mut Breakers,
    reuse: &mut Reuse,
) -> Result<Stack, (String, String)> {
    let service_label = service.label();
    let mut stack = Stack::default();
    let mut auth_priority = None;
    // Plugins with consumers' own instances, to check against the authentication step.
    let mut per_consumer: Vec<(&str, i32)> = Vec::new();
    for definition in definitions {
        let name = definition.name();
        let default = config.plugin_for(service, route, name);
        let build = match &definition.build {
            Build::Global => continue,
            Build::Breaker => {
                if let Some(plugin) = default {
                    let names = (service_label.as_str(), label);
                    let layer =
                        breaker_layer(plugin, (service_index, service), names, breakers, reuse)
                            .ok_or_else(|| {
                                let message = format!("plugin {name} got a foreign configuration");
                                (config.plugin_path(plugin), message)
                            })?;
                    stack.plugin(name, definition.priority(), Some(layer), Vec::new());
                }
                continue;
            }
            Build::Auth => {
                if default.is_some() {
                    auth_priority = auth_priority.max(Some(definition.priority()));
                }
                continue;
            }
            Build::Layer(build) => build,
        };
        let mut layer = |plugin: &super::Plugin, consumer: Option<&str>| {
            let mut ctx = PluginContext {
                service: &service_label,
                route: label,
                plugin_id: plugin.id.as_deref(),
                consumer,
                trusted_proxies: &settings.trusted_proxies,
                reuse: &mut *reuse,
            };
            let built = build(&plugin.config, &mut ctx).map_err(|message| {
                (
                    config.plugin_path(plugin),
                    format!("{message} (route {label})"),
                )
            })?;
            Ok::<_, (String, String)>(match plugin.protocols {
                Some(protocols) => built.for_protocols(protocols),
                None => built,
            })
        };
        let default = default.map(|p| layer(p, None)).transpose()?;
        let own = config
            .consumer_plugins_for(service, route, name, consumers)
            .into_iter()
            .map(|(id, p)| Ok((id.clone(), layer(p, Some(&id))?)))
            .collect::<Result<Vec<_>, (String, String)>>()?;
        if !own.is_empty() {
            per_consumer.push((name, definition.priority()));
        }
        stack.plugin(name, definition.priority(), default, own);
    }
    let auth_priority = auth_priority.unwrap_or(super::builtin::KEY_AUTH);
    if let Some((name, priority)) = per_consumer.iter().find(|(_, p)| *p >= auth_priority) {
        return Err((
            "consumers".into(),
            format!(
                "{name} has consumers' own instances on route {label}, but runs before authentication there (priority {priority}, authentication {auth_priority}): it could never tell the consumer"
            ),
        ));
    }
    let auth = config
        .auth_layer(service, route, consumers)
        .reading_body()
        .max_body(settings.max_body);
    stack.auth(auth_priority, auth);
    Ok(stack)
}

/// The layer of a `circuit-breaker` instance on a route: one breaker per service for an
/// instance on a service (shared by the service's routes), one per route otherwise; taken over
/// from the previous gateway when its configuration and place are unchanged.
fn breaker_layer(
    plugin: &super::Plugin,
    (index, service): (usize, &Service),
    (service_name, route_name): (&str, &str),
    breakers: &mut Breakers,
    reuse: &mut Reuse,
) -> Option<RouteLayer> {
    let config = plugin.config.get::<CircuitBreakerConfig>()?;
    let service_scoped = plugin.route.is_none()
        && (plugin.service.is_some() || service.plugins.iter().any(|p| std::ptr::eq(p, plugin)));
    let existing = breakers
        .shared
        .iter()
        .find(|(p, s, _)| service_scoped && std::ptr::eq(*p, plugin) && *s == index)
        .map(|(_, _, b)| b.clone());
    let breaker = existing.unwrap_or_else(|| {
        let name = if service_scoped {
            service_name
        } else {
            route_name
        };
        let key = format!("{name}|{:?}|{config:?}", plugin.id);
        // `validate` checked the policy.
        let breaker = reuse.breaker(key, || Breaker::new(config.policy().unwrap_or_default()));
        breakers.named.push((name.to_owned(), breaker.clone()));
        if service_scoped {
            breakers.shared.push((plugin, index, breaker.clone()));
        }
        breaker
    });
    let layer = RouteLayer::wrapping(config.layer(breaker));
    Some(match plugin.protocols {
        Some(protocols) => layer.for_protocols(protocols),
        None => layer,
    })
}

fn strategy(upstream: &Upstream) -> Box<dyn Strategy> {
    match upstream.algorithm.unwrap_or(Algorithm::RoundRobin) {
        Algorithm::RoundRobin => Box::new(WeightedRoundRobin::new()),
        Algorithm::LeastConnections => Box::new(LeastConnections::new()),
        Algorithm::ConsistentHashing => Box::new(ConsistentHash::new()),
        Algorithm::Latency => Box::new(PeakEwma::new()),
    }
}

fn keep_host(mut req: Request<GatewayBody>) -> Request<GatewayBody> {
    req.extensions_mut().insert(PreserveHost(true));
    req
}

fn origin_host(req: Request<GatewayBody>) -> Request<GatewayBody> {
    req
}

fn for_route(balancer: &ServiceBalancer, route: &RouteConfig) -> HostRewrite {
    let rewrite: fn(Request<GatewayBody>) -> Request<GatewayBody> =
        if route.preserve_host.unwrap_or(false) {
            keep_host
        } else {
            origin_host
        };
    MapRequest::new(balancer.clone(), rewrite)
}

/// The router's route for `route`, named `label` (its name, else its place in the file) so
/// that logs and metrics name every route.
fn router_route(route: &RouteConfig, label: &str, service: &Service) -> Route {
    let mut out = Route::new()
        .name(label)
        .strip_path(route.strip_path.unwrap_or(true))
        .regex_priority(route.regex_priority.map_or(0, |p| p.0))
        .service(service.label());
    for path in route.paths.iter().flatten() {
        out = out.path(path.0.clone());
    }
    for method in route.methods.iter().flatten() {
        out = out.method(method.0.clone());
    }
    for host in route.hosts.iter().flatten() {
        out = out.host(host.0.clone());
    }
    for (name, values) in route.headers.iter().flatten() {
        // Names were checked while parsing.
        if let Ok(name) = http::HeaderName::from_bytes(name.0.as_bytes()) {
            out = out.header(name, values.iter().cloned());
        }
    }
    out
}

fn summary(at: &str, route: &RouteConfig, service: &Service, target: &str) -> RouteSummary {
    let mut matches = Vec::new();
    if let Some(methods) = &route.methods {
        matches.push(
            methods
                .iter()
                .map(|m| m.0.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        );
    }
    if let Some(hosts) = &route.hosts {
        matches.push(
            hosts
                .iter()
                .map(|h| h.0.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        );
    }
    if let Some(paths) = &route.paths {
        matches.push(
            paths
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    for (name, values) in route.headers.iter().flatten() {
        matches.push(format!("{}: {}", name.0, values.join("|")));
    }
    RouteSummary {
        route: route.name.clone().unwrap_or_else(|| at.to_owned()),
        service: service.label(),
        origin: target.to_owned(),
        matches: matches.join(" "),
    }
}
