//! Turning a checked configuration into a running router of reverse proxies.

use std::time::Duration;

use hyper::body::Incoming;

use super::{Config, ConfigError, Route as RouteConfig, Service};
use crate::proxy::{ProxyConfig, ReverseProxy, TrustedProxies};
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::none(),
            max_idle_per_host: crate::proxy::DEFAULT_MAX_IDLE_PER_HOST,
            idle_timeout: crate::proxy::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// A configuration compiled into a [`Router`] whose routes forward through [`ReverseProxy`]s.
#[derive(Debug, Clone)]
pub struct Gateway {
    router: Router<ReverseProxy<Incoming>>,
    routes: Vec<RouteSummary>,
}

/// One compiled route, for startup logs and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    /// The route's name, or its position (`services[0].routes[1]`) when unnamed.
    pub route: String,
    /// The service's name (or id).
    pub service: String,
    /// The origin requests are forwarded to.
    pub origin: String,
    /// What the route matches, e.g. `GET /api/users`.
    pub matches: String,
}

impl Gateway {
    /// Builds the router: one connection pool per service, one proxy per route (routes of a
    /// service share its pool). Needs a tokio runtime.
    pub fn from_config(config: &Config, settings: &Settings) -> Result<Self, ConfigError> {
        let mut builder = Router::builder();
        let mut routes = Vec::new();
        let mut proxies: Vec<Option<ReverseProxy<Incoming>>> = Vec::new();

        for (i, service) in config.services.iter().enumerate() {
            let enabled = service.enabled.unwrap_or(true);
            let proxy = enabled
                .then(|| service_proxy(service, settings, &config.source, i))
                .transpose()?;
            if !enabled {
                tracing::info!(service = %service.label(), "service disabled; its routes do not match");
            }
            let nested = service
                .routes
                .iter()
                .enumerate()
                .map(|(j, r)| (format!("services[{i}].routes[{j}]"), r));
            for (at, route) in nested {
                if let Some(proxy) = &proxy {
                    routes.push(summary(&at, route, service, proxy));
                    builder = builder.route(router_route(route), for_route(proxy, route));
                }
            }
            proxies.push(proxy);
        }
        for (j, route) in config.routes.iter().enumerate() {
            let reference = route.service.as_ref().map(|s| s.0.as_str());
            let position = config.services.iter().position(|s| {
                reference.is_some()
                    && (s.name.as_deref() == reference || s.id.as_deref() == reference)
            });
            // `check` guarantees the reference resolves.
            let Some(position) = position else { continue };
            if let Some(proxy) = &proxies[position] {
                let service = &config.services[position];
                routes.push(summary(&format!("routes[{j}]"), route, service, proxy));
                builder = builder.route(router_route(route), for_route(proxy, route));
            }
        }
        let router = builder.build().map_err(|err| ConfigError::Invalid {
            file: config.source.clone(),
            path: "routes".into(),
            message: err.to_string(),
        })?;
        Ok(Self { router, routes })
    }

    /// The router to serve.
    pub fn router(&self) -> Router<ReverseProxy<Incoming>> {
        self.router.clone()
    }

    /// The compiled routes, in configuration order.
    pub fn routes(&self) -> &[RouteSummary] {
        &self.routes
    }
}

fn service_proxy(
    service: &Service,
    settings: &Settings,
    file: &str,
    index: usize,
) -> Result<ReverseProxy<Incoming>, ConfigError> {
    let origin = service
        .origin()
        .map_err(|(field, message)| ConfigError::Invalid {
            file: file.to_owned(),
            path: format!("services[{index}].{field}"),
            message,
        })?;
    let ms = |t: Option<super::TimeoutMs>| {
        t.map_or(crate::proxy::DEFAULT_TIMEOUT, |t| {
            Duration::from_millis(t.0)
        })
    };
    let config = ProxyConfig::with_origin(origin)
        .connect_timeout(ms(service.connect_timeout))
        .read_timeout(ms(service.read_timeout))
        .write_timeout(ms(service.write_timeout))
        .trusted_proxies(settings.trusted_proxies.clone())
        .max_idle_per_host(settings.max_idle_per_host)
        .idle_timeout(settings.idle_timeout);
    Ok(ReverseProxy::new(config))
}

fn for_route(proxy: &ReverseProxy<Incoming>, route: &RouteConfig) -> ReverseProxy<Incoming> {
    let preserve = route.preserve_host.unwrap_or(false);
    if preserve == proxy.config().preserve_host {
        proxy.clone()
    } else {
        proxy.with_preserve_host(preserve)
    }
}

fn router_route(route: &RouteConfig) -> Route {
    let mut out = Route::new().strip_path(route.strip_path.unwrap_or(true));
    if let Some(name) = &route.name {
        out = out.name(name.clone());
    }
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

fn summary(
    at: &str,
    route: &RouteConfig,
    service: &Service,
    proxy: &ReverseProxy<Incoming>,
) -> RouteSummary {
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
        origin: proxy.config().origin().to_string(),
        matches: matches.join(" "),
    }
}
