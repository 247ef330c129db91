//! Checks that need the whole file: references between entities, uniqueness, required fields.

use std::collections::HashSet;

use super::{Config, ConfigError, Route, RouteProtocol, Service};
use crate::proxy::{Origin, TrustedProxies};

impl Config {
    /// Checks what the parser cannot see field by field.
    pub(super) fn check(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            path,
            message,
        };
        let mut service_names = HashSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            for key in [&service.name, &service.id].into_iter().flatten() {
                if !service_names.insert(key.as_str()) {
                    return Err(invalid(at, format!("a second service is named {key:?}")));
                }
            }
            service
                .origin()
                .map_err(|(field, message)| invalid(format!("{at}.{field}"), message))?;
            for (j, route) in service.routes.iter().enumerate() {
                let at = format!("{at}.routes[{j}]");
                if let Some(reference) = &route.service {
                    let own = [&service.name, &service.id].into_iter().flatten();
                    if !own.into_iter().any(|k| *k == reference.0) {
                        return Err(invalid(
                            format!("{at}.service"),
                            format!(
                                "a nested route cannot name another service ({:?})",
                                reference.0
                            ),
                        ));
                    }
                }
                route.check().map_err(|message| invalid(at, message))?;
            }
        }
        for (j, route) in self.routes.iter().enumerate() {
            let at = format!("routes[{j}]");
            let Some(reference) = &route.service else {
                return Err(invalid(
                    format!("{at}.service"),
                    "a top-level route must name its service".into(),
                ));
            };
            if !service_names.contains(reference.0.as_str()) {
                return Err(invalid(
                    format!("{at}.service"),
                    format!("no service is named {:?}", reference.0),
                ));
            }
            route.check().map_err(|message| invalid(at, message))?;
        }
        self.check_upstreams(&invalid)?;
        self.check_certificates()
            .map_err(|(path, message)| invalid(path, message))?;
        let consumers = self
            .consumers()
            .map_err(|(path, message)| invalid(path, message))?;
        self.check_plugins(&consumers)
            .map_err(|(path, message)| invalid(path, message))?;
        let mut route_names = HashSet::new();
        let all_routes = self
            .services
            .iter()
            .flat_map(|s| &s.routes)
            .chain(&self.routes);
        for route in all_routes {
            if let Some(name) = &route.name
                && !route_names.insert(name.as_str())
            {
                return Err(invalid(
                    "routes".into(),
                    format!("two routes are named {name:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Upstream names unique, hashing and health settings valid, each target once, top-level
    /// targets naming an upstream.
    fn check_upstreams(
        &self,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut targets = HashSet::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let at = format!("upstreams[{i}]");
            for key in [Some(&upstream.name), upstream.id.as_ref()]
                .into_iter()
                .flatten()
            {
                if !names.insert(key.as_str()) {
                    return Err(invalid(at, format!("a second upstream is named {key:?}")));
                }
            }
            let located =
                |(field, message): (String, String)| invalid(format!("{at}.{field}"), message);
            upstream.hashing(&TrustedProxies::none()).map_err(located)?;
            upstream.active().map_err(located)?;
            for (j, target) in upstream.targets.iter().enumerate() {
                let at = format!("{at}.targets[{j}]");
                if let Some(reference) = &target.upstream
                    && reference.0 != upstream.name
                    && Some(&reference.0) != upstream.id.as_ref()
                {
                    return Err(invalid(
                        format!("{at}.upstream"),
                        format!(
                            "a nested target cannot name another upstream ({:?})",
                            reference.0
                        ),
                    ));
                }
                if !targets.insert((upstream.name.as_str(), target.target.0.as_str())) {
                    return Err(invalid(
                        format!("{at}.target"),
                        format!("target {} is listed twice", target.target.0),
                    ));
                }
            }
        }
        for (j, target) in self.targets.iter().enumerate() {
            let at = format!("targets[{j}]");
            let Some(reference) = &target.upstream else {
                return Err(invalid(
                    format!("{at}.upstream"),
                    "a top-level target must name its upstream".into(),
                ));
            };
            let Some(upstream) = self.upstream(&reference.0) else {
                return Err(invalid(
                    format!("{at}.upstream"),
                    format!("no upstream is named {:?}", reference.0),
                ));
            };
            if !targets.insert((upstream.name.as_str(), target.target.0.as_str())) {
                return Err(invalid(
                    format!("{at}.target"),
                    format!("target {} is listed twice", target.target.0),
                ));
            }
        }
        Ok(())
    }

    /// The upstream with this name or id.
    pub(crate) fn upstream(&self, key: &str) -> Option<&super::Upstream> {
        self.upstreams
            .iter()
            .find(|u| u.name == key || u.id.as_deref() == Some(key))
    }

    /// An upstream's targets, nested and top-level.
    pub(crate) fn targets_of<'a>(
        &'a self,
        upstream: &'a super::Upstream,
    ) -> impl Iterator<Item = &'a super::Target> {
        let names = move |t: &&super::Target| {
            t.upstream
                .as_ref()
                .is_some_and(|r| r.0 == upstream.name || Some(&r.0) == upstream.id.as_ref())
        };
        upstream
            .targets
            .iter()
            .chain(self.targets.iter().filter(names))
    }
}

impl Service {
    /// The origin, from `url` or from `protocol`/`host`/`port`/`path`; on error the offending
    /// field and the message.
    pub(crate) fn origin(&self) -> Result<Origin, (&'static str, String)> {
        match (&self.url, &self.host) {
            (Some(_), Some(_)) => Err((
                "url",
                "give either `url` or `host` (with `protocol`, `port`, `path`), not both".into(),
            )),
            (Some(url), None) => {
                if self.port.is_some() || self.path.is_some() || self.protocol.is_some() {
                    return Err((
                        "url",
                        "`url` already sets protocol, port and path; remove them".into(),
                    ));
                }
                Ok(url.0.clone())
            }
            (None, Some(host)) => {
                let scheme = if self.protocol.unwrap_or_default().tls() {
                    "https"
                } else {
                    "http"
                };
                let port = self.port.unwrap_or(80);
                let path = self.path.as_deref().unwrap_or("");
                if !path.is_empty() && !path.starts_with('/') {
                    return Err(("path", format!("path {path:?} must start with `/`")));
                }
                if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
                    return Err(("host", format!("invalid host {host:?}")));
                }
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                Origin::parse(&format!("{scheme}://{host}:{port}{path}"))
                    .map_err(|e| ("host", e.to_string()))
            }
            (None, None) => Err(("host", "a service needs `url` or `host`".into())),
        }
    }

    /// How the upstream is spoken to: `grpc` (from `protocol` or a `grpc://` url) is HTTP/2.
    pub(crate) fn protocol(&self) -> super::Protocol {
        match (&self.url, self.protocol) {
            (Some(url), _) => url.1,
            (None, protocol) => protocol.unwrap_or_default(),
        }
    }

    /// The name shown in logs: the name, else the id, else the origin.
    pub(crate) fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.id.clone())
            .unwrap_or_else(|| "(unnamed)".into())
    }
}

impl Route {
    fn check(&self) -> Result<(), String> {
        let empty = |v: Option<usize>| v.unwrap_or(0) == 0;
        if empty(self.paths.as_ref().map(Vec::len))
            && empty(self.hosts.as_ref().map(Vec::len))
            && empty(self.methods.as_ref().map(Vec::len))
            && empty(self.headers.as_ref().map(|h| h.len()))
        {
            return Err("a route needs at least one of paths, hosts, methods or headers".into());
        }
        if let Some(protocols) = &self.protocols {
            if protocols.is_empty() {
                return Err("protocols must not be empty".into());
            }
            if !protocols.contains(&RouteProtocol::Http) {
                return Err(
                    "protocols: https-only routes are not supported yet: TLS comes later".into(),
                );
            }
        }
        if let Some((name, _)) = self
            .headers
            .iter()
            .flatten()
            .find(|(_, values)| values.is_empty())
        {
            return Err(format!("headers.{}: at least one value is needed", name.0));
        }
        Ok(())
    }
}
