//! Consumers, credentials and the authentication plugins of a configuration.

use super::{Config, JwtConfig, JwtSecret, KeyAuthConfig, Plugin, Route, Service};
use crate::auth::{AuthLayer, Authenticator, Consumer, Consumers, Editor};

/// A field path and what is wrong there.
type Invalid = (String, String);

impl Config {
    /// The consumers of the file with their credentials, checked (one edit of a fresh
    /// registry, so thousands of credentials load in linear time).
    pub(crate) fn consumers(&self) -> Result<Consumers, Invalid> {
        let registry = Consumers::new();
        registry.edit(|edit| self.fill(edit))?;
        Ok(registry)
    }

    fn fill(&self, edit: &mut Editor<'_>) -> Result<(), Invalid> {
        let mut ids = std::collections::HashSet::new();
        for (i, c) in self.consumers.iter().enumerate() {
            let at = format!("consumers[{i}]");
            let name = c
                .username
                .as_deref()
                .or(c.custom_id.as_deref())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    (
                        at.clone(),
                        "a consumer needs a username or a custom_id".to_owned(),
                    )
                })?;
            let id =
                c.id.clone()
                    .unwrap_or_else(|| crate::auth::derived_id("consumer", name));
            for key in [Some(&id), c.username.as_ref(), c.custom_id.as_ref()]
                .into_iter()
                .flatten()
            {
                if !ids.insert(key.clone()) {
                    return Err((at, format!("a second consumer is named {key:?}")));
                }
            }
            let mut consumer = Consumer::new(id.as_str());
            if let Some(username) = &c.username {
                consumer = consumer.username(username.as_str());
            }
            if let Some(custom_id) = &c.custom_id {
                consumer = consumer.custom_id(custom_id.as_str());
            }
            edit.insert(consumer);
            for (j, key) in c.keyauth_credentials.iter().enumerate() {
                add_key(edit, &id, key, &format!("{at}.keyauth_credentials[{j}]"))?;
            }
            for (j, secret) in c.jwt_secrets.iter().enumerate() {
                add_jwt(edit, &id, secret, &format!("{at}.jwt_secrets[{j}]"))?;
            }
        }
        for (j, key) in self.keyauth_credentials.iter().enumerate() {
            let at = format!("keyauth_credentials[{j}]");
            let owner = owner(edit, key.consumer.as_ref(), &at)?;
            add_key(edit, &owner, key, &at)?;
        }
        for (j, secret) in self.jwt_secrets.iter().enumerate() {
            let at = format!("jwt_secrets[{j}]");
            let owner = owner(edit, secret.consumer.as_ref(), &at)?;
            add_jwt(edit, &owner, secret, &at)?;
        }
        Ok(())
    }

    /// The field path of `plugin`'s configuration (`services[0].plugins[1].config`).
    pub(crate) fn plugin_path(&self, plugin: &Plugin) -> String {
        let at = self
            .plugin_instances()
            .into_iter()
            .find(|(_, p)| std::ptr::eq(*p, plugin))
            .map_or_else(|| "plugins".to_owned(), |(at, _)| at);
        format!("{at}.config")
    }

    /// Every plugin instance with its field path.
    pub(crate) fn plugin_instances(&self) -> Vec<(String, &Plugin)> {
        let mut all: Vec<(String, &Plugin)> = Vec::new();
        for (i, p) in self.plugins.iter().enumerate() {
            all.push((format!("plugins[{i}]"), p));
        }
        for (i, s) in self.services.iter().enumerate() {
            for (k, p) in s.plugins.iter().enumerate() {
                all.push((format!("services[{i}].plugins[{k}]"), p));
            }
            for (j, r) in s.routes.iter().enumerate() {
                for (k, p) in r.plugins.iter().enumerate() {
                    all.push((format!("services[{i}].routes[{j}].plugins[{k}]"), p));
                }
            }
        }
        for (j, r) in self.routes.iter().enumerate() {
            for (k, p) in r.plugins.iter().enumerate() {
                all.push((format!("routes[{j}].plugins[{k}]"), p));
            }
        }
        for (i, c) in self.consumers.iter().enumerate() {
            for (k, p) in c.plugins.iter().enumerate() {
                all.push((format!("consumers[{i}].plugins[{k}]"), p));
            }
        }
        all
    }

    /// The definitions of the plugins the configuration names, each once, by name.
    pub(crate) fn plugin_definitions(&self) -> Vec<std::sync::Arc<crate::plugin::Definition>> {
        let mut out: Vec<std::sync::Arc<crate::plugin::Definition>> = Vec::new();
        for (_, plugin) in self.plugin_instances() {
            let definition = plugin.config.definition();
            if !out.iter().any(|d| d.name() == definition.name()) {
                out.push(definition.clone());
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// The plugin instances' scopes and references checked (their configurations were
    /// checked while parsing).
    pub(crate) fn check_plugins(&self, consumers: &Consumers) -> Result<(), Invalid> {
        for (at, plugin) in self.plugin_instances() {
            plugin.config.definition().check_scope(
                &at,
                plugin.service.is_some(),
                plugin.route.is_some(),
                plugin.consumer.is_some(),
            )?;
            if plugin.protocols.is_some()
                && !matches!(
                    plugin.config.definition().build,
                    crate::plugin::Build::Layer(_)
                )
            {
                return Err((
                    format!("{at}.protocols"),
                    format!(
                        "{} runs for every protocol here: `protocols` other than http, https, grpc and grpcs together is not supported yet",
                        plugin.config.name()
                    ),
                ));
            }
            if let Some(consumer) = &plugin.consumer
                && consumers.get(&consumer.0).is_none()
            {
                return Err((
                    format!("{at}.consumer"),
                    format!("no consumer is named {:?}", consumer.0),
                ));
            }
            if let Some(service) = &plugin.service
                && !self
                    .services
                    .iter()
                    .any(|s| names(s.name.as_deref(), s.id.as_deref(), &service.0))
            {
                return Err((
                    format!("{at}.service"),
                    format!("no service is named {:?}", service.0),
                ));
            }
            if let Some(route) = &plugin.route
                && !self
                    .all_routes()
                    .any(|r| names(r.name.as_deref(), r.id.as_deref(), &route.0))
            {
                return Err((
                    format!("{at}.route"),
                    format!("no route is named {:?}", route.0),
                ));
            }
            let anonymous = if let Some(c) = plugin.config.get::<KeyAuthConfig>() {
                &c.anonymous
            } else if let Some(c) = plugin.config.get::<JwtConfig>() {
                if !cfg!(feature = "jwt") {
                    return Err((
                        format!("{at}.name"),
                        "the jwt plugin needs the `jwt` feature".into(),
                    ));
                }
                &c.anonymous
            } else {
                &None
            };
            if let Some(anonymous) = anonymous
                && consumers.get(anonymous).is_none()
            {
                return Err((
                    format!("{at}.config.anonymous"),
                    format!("anonymous consumer {anonymous:?} is configured but doesn't exist"),
                ));
            }
        }
        Ok(())
    }

    fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.services
            .iter()
            .flat_map(|s| &s.routes)
            .chain(&self.routes)
    }

    /// The plugin `name` that applies to a route of `service`: the most specific enabled
    /// instance (route, then service, then global), as Kong picks it.
    pub(crate) fn plugin_for<'a>(
        &'a self,
        service: &'a Service,
        route: &'a Route,
        name: &str,
    ) -> Option<&'a Plugin> {
        let of_route = |p: &&Plugin| {
            p.consumer.is_none()
                && p.route
                    .as_ref()
                    .is_some_and(|r| names(route.name.as_deref(), route.id.as_deref(), &r.0))
        };
        let of_service = |p: &&Plugin| {
            p.route.is_none()
                && p.consumer.is_none()
                && p.service
                    .as_ref()
                    .is_some_and(|s| names(service.name.as_deref(), service.id.as_deref(), &s.0))
        };
        let global = |p: &&Plugin| p.route.is_none() && p.service.is_none() && p.consumer.is_none();
        let enabled = |p: &&Plugin| p.enabled && p.config.name() == name;
        route
            .plugins
            .iter()
            .chain(self.plugins.iter().filter(of_route))
            .find(enabled)
            .or_else(|| {
                service
                    .plugins
                    .iter()
                    .chain(self.plugins.iter().filter(of_service))
                    .find(enabled)
            })
            .or_else(|| self.plugins.iter().filter(global).find(enabled))
    }

    /// For each consumer with an instance of plugin `name` of its own that applies to this
    /// route: the consumer's id and the most specific such instance (consumer and route, then
    /// consumer and service, then consumer alone), as Kong picks it.
    pub(crate) fn consumer_plugins_for<'a>(
        &'a self,
        service: &'a Service,
        route: &'a Route,
        name: &str,
        consumers: &Consumers,
    ) -> Vec<(std::sync::Arc<str>, &'a Plugin)> {
        let mut out = Vec::new();
        // Most plugins have no consumer's instance: skip the walk over every consumer.
        let named = |p: &Plugin| p.enabled && p.config.name() == name;
        let any = self
            .plugins
            .iter()
            .any(|p| p.consumer.is_some() && named(p))
            || self.consumers.iter().any(|c| c.plugins.iter().any(named));
        if !any {
            return out;
        }
        for c in &self.consumers {
            let key = c
                .username
                .as_deref()
                .or(c.custom_id.as_deref())
                .unwrap_or_default();
            let Some(consumer) = c.id.as_deref().or(Some(key)).and_then(|k| consumers.get(k))
            else {
                continue;
            };
            let mine = |p: &&Plugin| {
                p.enabled
                    && p.config.name() == name
                    && p.consumer.as_ref().is_some_and(|r| {
                        r.0 == *consumer.id || consumer.username.as_deref() == Some(r.0.as_str())
                    })
            };
            let for_route = |p: &&Plugin| {
                p.route
                    .as_ref()
                    .is_some_and(|r| names(route.name.as_deref(), route.id.as_deref(), &r.0))
            };
            let for_service = |p: &&Plugin| {
                p.route.is_none()
                    && p.service.as_ref().is_some_and(|s| {
                        names(service.name.as_deref(), service.id.as_deref(), &s.0)
                    })
            };
            let alone = |p: &&Plugin| p.route.is_none() && p.service.is_none();
            let top = || self.plugins.iter().filter(mine);
            let chosen = top()
                .find(for_route)
                .or_else(|| top().find(for_service))
                .or_else(|| top().find(alone))
                .or_else(|| {
                    c.plugins
                        .iter()
                        .find(|p| p.enabled && p.config.name() == name)
                });
            if let Some(plugin) = chosen {
                out.push((consumer.id.clone(), plugin));
            }
        }
        out
    }

    /// The authentication of a route of `service`: for each plugin, the most specific enabled
    /// instance (route, then service, then global), as Kong picks it.
    pub(crate) fn auth_layer(
        &self,
        service: &Service,
        route: &Route,
        consumers: &Consumers,
    ) -> AuthLayer {
        let pick = |name: &str| self.plugin_for(service, route, name);
        // Kong's priorities: jwt (1450) runs before key-auth (1250).
        let chosen: Vec<&Plugin> = ["jwt", "key-auth"].into_iter().filter_map(pick).collect();
        if chosen.is_empty() {
            return AuthLayer::strip_only();
        }
        let mut authenticators: Vec<Box<dyn Authenticator>> = Vec::new();
        let mut anonymous = Vec::new();
        let mut preflight = Vec::new();
        for plugin in &chosen {
            if let Some(c) = plugin.config.get::<KeyAuthConfig>() {
                {
                    let mut key_auth = crate::auth::ApiKey::new(consumers.clone())
                        .key_names(&c.key_names)
                        .in_header(c.key_in_header)
                        .in_query(c.key_in_query)
                        .in_body(c.key_in_body)
                        .hide_credentials(c.hide_credentials);
                    if let Some(realm) = &c.realm {
                        key_auth = key_auth.realm(realm);
                    }
                    authenticators.push(Box::new(key_auth));
                    anonymous.push(c.anonymous.clone());
                    preflight.push(c.run_on_preflight);
                }
            } else if let Some(c) = plugin.config.get::<JwtConfig>() {
                {
                    #[cfg(feature = "jwt")]
                    authenticators.push(Box::new(jwt(c, consumers)));
                    anonymous.push(c.anonymous.clone());
                    preflight.push(c.run_on_preflight);
                }
            }
        }
        // With `anonymous` on every plugin, Kong's plugins run as "either"; otherwise every
        // one must pass.
        let every_anonymous = anonymous.iter().all(Option::is_some);
        let mut layer = if every_anonymous {
            let mut layer = AuthLayer::any_of(authenticators);
            if let Some(consumer) = anonymous
                .first()
                .cloned()
                .flatten()
                .and_then(|a| consumers.get(&a))
            {
                layer = layer.anonymous(consumer);
            }
            layer
        } else {
            AuthLayer::all_of(authenticators)
        };
        if preflight.iter().all(|run| !run) {
            layer = layer.skip_preflight(true);
        }
        layer
    }
}

#[cfg(feature = "jwt")]
fn jwt(c: &JwtConfig, consumers: &Consumers) -> crate::auth::Jwt {
    use crate::auth::TimeClaim;
    let mut jwt = crate::auth::Jwt::new(consumers.clone())
        .key_claim_name(&c.key_claim_name)
        .secret_is_base64(c.secret_is_base64)
        .uri_param_names(c.uri_param_names.iter().cloned())
        .cookie_names(c.cookie_names.iter().cloned())
        .header_names(
            c.header_names
                .iter()
                .filter_map(|h| http::HeaderName::try_from(h.to_ascii_lowercase()).ok()),
        )
        // Kong's semantics, explicitly: only the listed claims, each required, no leeway
        // (the library's default verifies `exp` with a leeway).
        .claims_to_verify(c.claims_to_verify.iter().map(|claim| match claim {
            super::TimeClaimName::Exp => TimeClaim::Exp,
            super::TimeClaimName::Nbf => TimeClaim::Nbf,
        }))
        .leeway(std::time::Duration::ZERO)
        .maximum_expiration(std::time::Duration::from_secs(c.maximum_expiration.into()));
    if let Some(realm) = &c.realm {
        jwt = jwt.realm(realm);
    }
    jwt
}

/// Whether a reference names the entity with this name or id.
fn names(name: Option<&str>, id: Option<&str>, reference: &str) -> bool {
    name == Some(reference) || id == Some(reference)
}

fn owner(
    edit: &Editor<'_>,
    reference: Option<&super::ServiceRef>,
    at: &str,
) -> Result<String, Invalid> {
    let reference = reference.ok_or_else(|| {
        (
            format!("{at}.consumer"),
            "a top-level credential must name its consumer".to_owned(),
        )
    })?;
    edit.get(&reference.0)
        .map(|c| c.id.to_string())
        .ok_or_else(|| {
            (
                format!("{at}.consumer"),
                format!("no consumer is named {:?}", reference.0),
            )
        })
}

fn add_key(
    edit: &mut Editor<'_>,
    owner: &str,
    key: &super::KeyAuthCredential,
    at: &str,
) -> Result<(), Invalid> {
    edit.add_api_key(owner, &key.key, key.id.as_deref().map(Into::into))
        .map(|_| ())
        .map_err(|e| (format!("{at}.key"), e.to_string()))
}

#[cfg(feature = "jwt")]
fn add_jwt(
    edit: &mut Editor<'_>,
    owner: &str,
    secret: &JwtSecret,
    at: &str,
) -> Result<(), Invalid> {
    use crate::auth::JwtCredential;
    use crate::auth::jwt::Algorithm;
    let name = secret.algorithm.as_deref().unwrap_or("HS256");
    let algorithm: Algorithm = match name {
        "ES512" => {
            return Err((format!("{at}.algorithm"), "ES512 is not supported (jsonwebtoken has no P-521)".into()));
        }
        other => other.parse().map_err(|_| {
            (
                format!("{at}.algorithm"),
                format!("unknown algorithm {other:?}: expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"),
            )
        })?,
    };
    let credential = if name.starts_with("HS") {
        let secret_value = secret
            .secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| (format!("{at}.secret"), format!("{name} needs a secret")))?;
        JwtCredential::hmac(secret.key.as_str(), secret_value, algorithm)
    } else {
        let pem = secret.rsa_public_key.as_deref().ok_or_else(|| {
            (
                format!("{at}.rsa_public_key"),
                format!("{name} needs rsa_public_key (a PEM public key)"),
            )
        })?;
        JwtCredential::public_key(secret.key.as_str(), pem, algorithm)
    }
    .map_err(|e| (format!("{at}.rsa_public_key"), e.to_string()))?;
    let credential = match &secret.id {
        Some(id) => credential.id(id.as_str()),
        None => credential,
    };
    edit.add_jwt(owner, credential)
        .map(|_| ())
        .map_err(|e| (format!("{at}.key"), e.to_string()))
}

#[cfg(not(feature = "jwt"))]
fn add_jwt(_: &mut Editor<'_>, _: &str, _: &JwtSecret, at: &str) -> Result<(), Invalid> {
    Err((
        at.to_owned(),
        "JWT credentials need the `jwt` feature".into(),
    ))
}
