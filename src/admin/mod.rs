//! Kong's Admin API: the runbook commands of a Kong installation, answered by this gateway.
//!
//! [`AdminApi`] is a tower `Service` (the example gateway serves it on `--admin-listen`; an
//! application can mount it anywhere) over a [`LiveGateway`]:
//!
//! - `services`, `routes`, `consumers`, `plugins`, `upstreams`, `targets`, and the nested
//!   `/services/{s}/routes`, `/services/{s}/plugins`, `/routes/{r}/plugins`,
//!   `/consumers/{c}/plugins`, `/consumers/{c}/key-auth`, `/consumers/{c}/jwt`,
//!   `/upstreams/{u}/targets`, each entity by id or name;
//! - `GET` (a list as `{"data": [...], "next": ...}`, `size` and `offset` as Kong pages), `POST`
//!   (201), `PUT` (create or replace), `PATCH`, `DELETE` (204);
//! - bodies as Kong reads them: form fields (`paths[]=/api/users`, `config.minute=100`) or
//!   JSON; strings are read as the numbers and booleans fields expect;
//! - entities as Kong shows them: an `id` (UUID), `created_at`, `updated_at` and every field
//!   with its default; 409 on a name in use, 400 `schema violation (...)` with `fields`, 400
//!   for a reference to nothing, 404 for an unknown entity;
//! - `GET /` (node information), `GET /status`, `GET /config` (the live configuration as
//!   declarative YAML, `{"config": "..."}` as Kong, or the YAML itself with
//!   `?format=yaml`), `POST /config` (replace it whole), `GET /upstreams/{u}/health`,
//!   `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`, and `GET /metrics` when given
//!   Prometheus `Metrics` (feature `metrics`).
//!
//! Every change is checked against the whole configuration, then a new gateway is built
//! (taking over the balancers, breakers and rate-limit counters of everything the change did
//! not touch) and swapped in whole; requests in flight finish on the one they started with.
//! A change that would leave the configuration invalid changes nothing. Changes are
//! serialized; reads see the last accepted one.
//!
//! With [`token`](AdminApi::token) set, every call must carry it as `Kong-Admin-Token` or as
//! `Authorization: Bearer`.
//!
//! ```
//! use http::Request;
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! use tower_gateway::admin::AdminApi;
//! use tower_gateway::config::Settings;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let admin = AdminApi::from_yaml("_format_version: \"3.0\"\n", Settings::default()).unwrap();
//! let proxy = admin.live().service(); // serve this on the proxy listener
//! # drop(proxy);
//! let req = Request::post("/services")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(Full::from("name=user-service&url=http://127.0.0.1:3000"))
//!     .unwrap();
//! let res = admin.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 201);
//! let created: serde_json::Value =
//!     serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
//! assert_eq!(created["port"], 3000);
//! assert_eq!(created["connect_timeout"], 60000);
//! # }
//! ```

mod body;
#[cfg(feature = "redis")]
mod cluster;
mod entity;
mod error;
mod store;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value, json};
use tower::Service;

use crate::config::{ConfigError, Gateway, LiveGateway, Settings};
use crate::plugin::Registry;
use entity::Kind;
use error::AdminError;
use store::{Parent, Store};

/// The largest request body the Admin API reads.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Kong's default and largest page sizes.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The Kong release `GET /` reports as `version` (see the README's Admin API section).
pub const KONG_VERSION: &str = "3.4.0";

/// Kong's Admin API over a [`LiveGateway`]; see the [module docs](self).
///
/// ```
/// use tower_gateway::admin::AdminApi;
/// use tower_gateway::config::Settings;
///
/// // The Admin API over a gateway loaded from a Kong file: serve `admin` on the admin listener
/// // and `admin.live().service()` on the proxy listener.
/// let admin = AdminApi::from_yaml("_format_version: \"3.0\"\n", Settings::default())
///     .unwrap()
///     .token("admin-secret");
/// let proxy = admin.live().service();
/// # let _ = proxy;
/// ```
#[derive(Clone)]
pub struct AdminApi {
    shared: Arc<Shared>,
}

struct Shared {
    store: Mutex<Store>,
    /// The plugins the configuration may name.
    registry: Registry,
    /// Serializes changes; holds the configuration's version in the cluster (0 alone).
    writes: tokio::sync::Mutex<u64>,
    /// Keys `route:<path>` of the cluster's Redis (the OpenResty pattern), as last read.
    route_keys: Mutex<Vec<(String, String)>>,
    #[cfg(feature = "redis")]
    cluster: std::sync::OnceLock<cluster::Link>,
    live: LiveGateway,
    settings: Settings,
    token: Option<String>,
    node: Mutex<Map<String, Value>>,
    started: Instant,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    connections: Option<crate::server::ConnectionStats>,
    /// Called with each gateway swapped in.
    on_swap: Vec<SwapHook>,
    /// Asked about each gateway before it is swapped in.
    guards: Vec<Guard>,
}

/// A hook called with each gateway swapped in.
type SwapHook = Arc<dyn Fn(&Gateway) + Send + Sync>;
/// A check a new gateway must pass to be swapped in.
type Guard = Arc<dyn Fn(&Gateway) -> Result<(), String> + Send + Sync>;

impl Clone for Shared {
    /// A copy for a clone configured further (see [`AdminApi::token`]): same gateway, same
    /// entities at the time of the copy.
    fn clone(&self) -> Self {
        Self {
            store: Mutex::new(
                self.store
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
            writes: tokio::sync::Mutex::new(0),
            route_keys: Mutex::new(
                self.route_keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
            #[cfg(feature = "redis")]
            cluster: std::sync::OnceLock::new(),
            live: self.live.clone(),
            settings: self.settings.clone(),
            registry: self.registry.clone(),
            token: self.token.clone(),
            node: Mutex::new(
                self.node
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
            started: self.started,
            #[cfg(feature = "metrics")]
            metrics: self.metrics.clone(),
            connections: self.connections.clone(),
            on_swap: self.on_swap.clone(),
            guards: self.guards.clone(),
        }
    }
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("live", &self.shared.live)
            .field("token", &self.shared.token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// Builds the gateway of a declarative configuration (YAML or JSON text, Kong's format)
    /// and the Admin API over it. Entities without an `id` get one derived from their names,
    /// so the same file gives the same ids. Needs a tokio runtime.
    pub fn from_yaml(text: &str, settings: Settings) -> Result<Self, ConfigError> {
        Self::from_text(text, "<config>", settings)
    }

    /// [`from_yaml`](Self::from_yaml) with `source` (a file name) in the errors.
    pub fn from_text(text: &str, source: &str, settings: Settings) -> Result<Self, ConfigError> {
        Self::from_text_with(text, source, settings, &Registry::builtin())
    }

    /// [`from_text`](Self::from_text) with the plugins of `registry`: the configuration, and
    /// every later change through the API, may name them.
    pub fn from_text_with(
        text: &str,
        source: &str,
        settings: Settings,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        // Parsed once as the model first: errors then carry the line.
        crate::config::Config::from_yaml_with(text, registry).map_err(|err| rename(err, source))?;
        let store = store_of(text, source, registry)?;
        let config = store.config()?;
        let gateway = Gateway::from_config(&config, &settings)?;
        Ok(Self::with(store, LiveGateway::new(gateway), settings))
    }

    fn with(store: Store, live: LiveGateway, settings: Settings) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: store.registry().clone(),
                store: Mutex::new(store),
                writes: tokio::sync::Mutex::new(0),
                route_keys: Mutex::new(Vec::new()),
                #[cfg(feature = "redis")]
                cluster: std::sync::OnceLock::new(),
                live,
                settings,
                token: None,
                node: Mutex::new(Map::new()),
                started: Instant::now(),
                #[cfg(feature = "metrics")]
                metrics: None,
                connections: None,
                on_swap: Vec::new(),
                guards: Vec::new(),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        // Configured while building, before any clone exists; a clone configured later gets
        // its own copy.
        Arc::make_mut(&mut self.shared)
    }

    /// Requires `token` on every call (`Kong-Admin-Token: token` or
    /// `Authorization: Bearer token`); without it, the calls are refused with 401.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.shared_mut().token = Some(token.into());
        self
    }

    /// Serves `metrics` at `GET /metrics`, and keeps it watching the breakers and balancers
    /// of each gateway swapped in.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        watch(&metrics, &self.shared.live.current());
        self.shared_mut().metrics = Some(metrics);
        self
    }

    /// Reports `stats` in `GET /status` (Kong's `server.connections_*`).
    pub fn connections(mut self, stats: crate::server::ConnectionStats) -> Self {
        self.shared_mut().connections = Some(stats);
        self
    }

    /// Adds fields to `GET /`'s node information (listen addresses, the file, ...).
    pub fn node_info(self, fields: Map<String, Value>) -> Self {
        self.shared
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(fields);
        self
    }

    /// Calls `hook` with every gateway swapped in (to log it, or watch its parts).
    pub fn on_swap(mut self, hook: impl Fn(&Gateway) + Send + Sync + 'static) -> Self {
        self.shared_mut().on_swap.push(Arc::new(hook));
        self
    }

    /// Refuses every change whose gateway `check` refuses (400, with its message): for
    /// settings the embedding program applies only at startup.
    pub fn guard(
        mut self,
        check: impl Fn(&Gateway) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut().guards.push(Arc::new(check));
        self
    }

    /// The live gateway: serve [`LiveGateway::service`] on the proxy listener.
    pub fn live(&self) -> &LiveGateway {
        &self.shared.live
    }

    /// Replaces the whole configuration with a declarative one (a reloaded file): checked
    /// first; when it is refused, the running configuration stays. In a cluster, every
    /// instance takes it.
    pub async fn reload(&self, text: &str, source: &str) -> Result<(), ConfigError> {
        let registry = self.registry();
        crate::config::Config::from_yaml_with(text, registry).map_err(|err| rename(err, source))?;
        let store = store_of(text, source, registry)?;
        self.replace_all(store)
            .await
            .map_err(|err| ConfigError::Invalid {
                file: source.to_owned(),
                path: String::new(),
                message: err.body()["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
    }

    /// Checks `store` and builds its gateway over the current one, without swapping it in.
    fn prepare(&self, store: &Store) -> Result<Gateway, AdminError> {
        let keys = self
            .shared
            .route_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut doc = store.to_doc();
        add_route_keys(&mut doc, &keys, store);
        let config = crate::config::Config::from_json_with(&mut doc, "<admin>", self.registry())
            .map_err(config_error)?;
        let current = self.shared.live.current();
        let gateway =
            Gateway::rebuild(&config, &self.shared.settings, &current).map_err(config_error)?;
        for guard in &self.shared.guards {
            guard(&gateway).map_err(AdminError::schema)?;
        }
        Ok(gateway)
    }

    /// Puts `store` and its gateway in place.
    fn install(&self, store: Store, gateway: Gateway) {
        for hook in &self.shared.on_swap {
            hook(&gateway);
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.shared.metrics {
            watch(metrics, &gateway);
        }
        *self
            .shared
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = store;
        self.shared.live.swap(gateway);
    }

    /// The plugins the configuration may name.
    pub(crate) fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    fn snapshot(&self) -> Store {
        self.read(Store::clone)
    }

    /// Applies `change` to a copy of the entities and puts the result in place when the
    /// whole configuration is valid. In a cluster, the change is made to the cluster's
    /// latest configuration and published with a compare-and-set on its version (made again
    /// on the newer one when another instance published first).
    async fn mutate<T>(
        &self,
        change: impl Fn(&mut Store) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        // One change at a time; the guard holds the cluster version.
        let turn = self.shared.writes.lock().await;
        #[cfg(feature = "redis")]
        if let Some(link) = self.shared.cluster.get() {
            let mut turn = turn;
            return link.mutate(self, &mut turn, change).await;
        }
        let mut next = self.snapshot();
        let out = change(&mut next)?;
        let gateway = self.prepare(&next)?;
        self.install(next, gateway);
        drop(turn);
        Ok(out)
    }

    fn read<T>(&self, read: impl FnOnce(&Store) -> T) -> T {
        read(
            &self
                .shared
                .store
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    async fn handle<B>(self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::BoxError>,
    {
        match self.answer(req).await {
            Ok(res) => res,
            Err(err) => json(err.status(), &err.body()),
        }
    }

    async fn answer<B>(&self, req: Request<B>) -> Result<Response<Full<Bytes>>, AdminError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::BoxError>,
    {
        if let Some(token) = &self.shared.token {
            let presented = req
                .headers()
                .get("kong-admin-token")
                .and_then(|v| v.to_str().ok())
                .or_else(|| {
                    req.headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                });
            if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
                return Err(AdminError::Unauthorized);
            }
        }
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(AdminError::TooLarge);
            }
            Err(err) => return Err(AdminError::BadBody(format!("cannot read the body: {err}"))),
        };
        let path = parts.uri.path().trim_end_matches('/');
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                // A path is not a form: `+` stays `+`.
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map_or_else(|_| s.to_owned(), std::borrow::Cow::into_owned)
            })
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = parts.uri.query().unwrap_or("");
        let method = &parts.method;
        let fields = || body::fields(&parts.headers, &bytes);
        match (method, segments.as_slice()) {
            (&Method::GET, []) => Ok(json(StatusCode::OK, &self.node())),
            (&Method::GET, ["status"]) => Ok(json(StatusCode::OK, &self.status())),
            #[cfg(feature = "metrics")]
            (&Method::GET, ["metrics"]) => self.metrics_text(),
            (&Method::GET, ["config"]) => self.export(query),
            (&Method::POST, ["config"]) => {
                self.import(&parts.headers, &bytes).await?;
                Ok(json(StatusCode::CREATED, &self.read(|s| s.to_doc())))
            }
            (&Method::GET, ["upstreams", name, "health"]) => self.health(name),
            // The plugins this node can run (Kong's list of what `plugins =` loads).
            (&Method::GET, ["plugins", "enabled"]) => Ok(json(
                StatusCode::OK,
                &json!({ "enabled_plugins": self.registry().names().collect::<Vec<_>>() }),
            )),
            (&Method::GET, ["schemas", "plugins", name]) => {
                let definition = self.registry().get(name).ok_or(AdminError::NotFound)?;
                let mut fields = Kind::Plugin.defaults();
                fields.insert("config".into(), Value::Object(definition.defaults()));
                Ok(json(StatusCode::OK, &entity::schema(&fields)))
            }
            (&Method::GET, ["schemas", collection]) => {
                let kind = Kind::from_path(collection).ok_or(AdminError::NotFound)?;
                Ok(json(StatusCode::OK, &entity::schema(&kind.defaults())))
            }
            (&Method::POST, ["schemas", collection, "validate"]) => {
                let kind = Kind::from_path(collection).ok_or(AdminError::NotFound)?;
                let fields = fields()?;
                // Checked as a creation would be, on a copy: nothing changes.
                self.read(|s| s.clone().create(kind, fields, None).map(drop))?;
                Ok(json(
                    StatusCode::OK,
                    &json!({ "message": "schema validation successful" }),
                ))
            }
            (&Method::PUT | &Method::POST, ["upstreams", upstream, "targets", target, mark])
                if *mark == "healthy" || *mark == "unhealthy" =>
            {
                self.mark(upstream, target, *mark == "healthy")
            }
            (_, [] | ["status"] | ["metrics"] | ["config"] | ["upstreams", _, "health"]) => {
                Err(AdminError::MethodNotAllowed)
            }
            (_, [collection]) => {
                let kind = Kind::from_path(collection).ok_or(AdminError::NotFound)?;
                self.collection(method, kind, None, path, query, fields)
                    .await
            }
            (_, [collection, key]) => {
                let kind = Kind::from_path(collection).ok_or(AdminError::NotFound)?;
                self.item(method, kind, key, None, fields).await
            }
            (&Method::GET, ["routes", key, "service"]) => {
                let service = self.read(|s| {
                    let route = s.get(Kind::Route, s.find(Kind::Route, key, None)?)?;
                    let id = route.get("service")?.get("id")?.as_str()?;
                    s.get(Kind::Service, s.find(Kind::Service, id, None)?)
                        .cloned()
                });
                service
                    .map(|e| json(StatusCode::OK, &Value::Object(e)))
                    .ok_or(AdminError::NotFound)
            }
            (_, [parent, key, child, rest @ ..]) if rest.len() <= 1 => {
                let (parent_kind, kind, field) =
                    nested(parent, child).ok_or(AdminError::NotFound)?;
                let parent_id = self
                    .read(|s| s.id_of(parent_kind, key))
                    .ok_or(AdminError::NotFound)?;
                let under = Some((field, parent_id.as_str()));
                match rest {
                    [] | ["all"] => {
                        self.collection(method, kind, under, path, query, fields)
                            .await
                    }
                    [item] => self.item(method, kind, item, under, fields).await,
                    _ => Err(AdminError::NotFound),
                }
            }
            _ => Err(AdminError::NotFound),
        }
    }

    async fn collection(
        &self,
        method: &Method,
        kind: Kind,
        parent: Parent<'_>,
        path: &str,
        query: &str,
        fields: impl FnOnce() -> Result<Map<String, Value>, AdminError>,
    ) -> Result<Response<Full<Bytes>>, AdminError> {
        match *method {
            Method::GET => {
                let arg = |name: &str| {
                    form_urlencoded::parse(query.as_bytes())
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.into_owned())
                };
                let size = match arg("size") {
                    Some(size) => size
                        .parse::<usize>()
                        .ok()
                        .filter(|s| (1..=MAX_PAGE).contains(s))
                        .ok_or_else(|| AdminError::Schema {
                            path: vec!["size".into()],
                            message: format!("size must be an integer between 1 and {MAX_PAGE}"),
                        })?,
                    None => PAGE,
                };
                let offset = match arg("offset") {
                    Some(offset) => offset.parse::<usize>().map_err(|_| AdminError::Schema {
                        path: vec!["offset".into()],
                        message: "invalid offset".into(),
                    })?,
                    None => 0,
                };
                // Kong's tag filter: `tags=a,b` needs both, `tags=a/b` either.
                let tags = arg("tags");
                let tagged = |entity: &Map<String, Value>| {
                    let Some(wanted) = &tags else {
                        return true;
                    };
                    let has = |tag: &str| {
                        entity
                            .get("tags")
                            .and_then(Value::as_array)
                            .is_some_and(|list| list.iter().any(|t| t.as_str() == Some(tag)))
                    };
                    if wanted.contains('/') {
                        wanted.split('/').any(has)
                    } else {
                        wanted.split(',').all(has)
                    }
                };
                let (data, more) = self.read(|s| {
                    let all: Vec<Value> = s
                        .children(kind, parent)
                        .filter(|e| tagged(e))
                        .map(|e| Value::Object(s.shown(kind, e)))
                        .collect();
                    let page = all
                        .iter()
                        .skip(offset)
                        .take(size)
                        .cloned()
                        .collect::<Vec<_>>();
                    (page, all.len() > offset + size)
                });
                let mut body = json!({ "data": data, "next": null });
                if more {
                    let next = offset + size;
                    // The next page of a filtered list is of the same filter (decK pages
                    // `--select-tag` lists through it).
                    let mut link = format!("{path}?offset={next}&size={size}");
                    if let Some(tags) = &tags {
                        link.push_str("&tags=");
                        link.extend(form_urlencoded::byte_serialize(tags.as_bytes()));
                    }
                    body["next"] = json!(link);
                    body["offset"] = json!(next.to_string());
                }
                Ok(json(StatusCode::OK, &body))
            }
            Method::POST => {
                let fields = fields()?;
                let entity = self
                    .mutate(|s| {
                        let at = s.create(kind, fields.clone(), parent)?;
                        Ok(s.get(kind, at)
                            .map(|e| s.shown(kind, e))
                            .unwrap_or_default())
                    })
                    .await?;
                Ok(json(StatusCode::CREATED, &Value::Object(entity)))
            }
            _ => Err(AdminError::MethodNotAllowed),
        }
    }

    async fn item(
        &self,
        method: &Method,
        kind: Kind,
        key: &str,
        parent: Parent<'_>,
        fields: impl FnOnce() -> Result<Map<String, Value>, AdminError>,
    ) -> Result<Response<Full<Bytes>>, AdminError> {
        let found = |s: &Store| s.find(kind, key, parent);
        let entity_at = |s: &Store, at: usize| {
            s.get(kind, at)
                .map(|e| s.shown(kind, e))
                .unwrap_or_default()
        };
        let entity = match *method {
            Method::GET => self
                .read(|s| found(s).map(|at| entity_at(s, at)))
                .ok_or(AdminError::NotFound)?,
            Method::PATCH => {
                let fields = fields()?;
                self.mutate(|s| {
                    let at = found(s).ok_or(AdminError::NotFound)?;
                    s.update(kind, at, fields.clone())?;
                    Ok(entity_at(s, at))
                })
                .await?
            }
            Method::PUT => {
                let given = fields()?;
                self.mutate(|s| match found(s) {
                    Some(at) => {
                        s.replace(kind, at, given.clone(), parent)?;
                        Ok(entity_at(s, at))
                    }
                    None => {
                        // Created under the id or name in the path.
                        let field = if entity::is_uuid(key) {
                            "id"
                        } else {
                            kind.names().first().copied().ok_or(AdminError::NotFound)?
                        };
                        let mut fields = given.clone();
                        fields.insert(field.into(), Value::String(key.to_owned()));
                        let at = s.create(kind, fields, parent)?;
                        Ok(entity_at(s, at))
                    }
                })
                .await?
            }
            Method::DELETE => {
                self.mutate(|s| match found(s) {
                    Some(at) => s.delete(kind, at),
                    // Kong answers 204 for what is already gone.
                    None => Ok(()),
                })
                .await?;
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            _ => return Err(AdminError::MethodNotAllowed),
        };
        Ok(json(StatusCode::OK, &Value::Object(entity)))
    }

    fn node(&self) -> Value {
        let plugins: Vec<String> = self.read(|s| {
            let mut names: Vec<String> = s
                .all(Kind::Plugin)
                .iter()
                .filter(|p| p.get("enabled") != Some(&Value::Bool(false)))
                .filter_map(|p| p.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        });
        let available: Map<String, Value> = self
            .registry()
            .names()
            .map(|n| (n.to_owned(), Value::Bool(true)))
            .collect();
        let mut node = json!({
            "tagline": "Welcome to tower-gateway",
            // The Kong version whose Admin API and declarative format this one speaks: decK
            // and other Kong tools read `version` to choose a file format and the features
            // they may use (this crate's own version would read as Kong 0.1).
            "version": KONG_VERSION,
            "tower_gateway_version": env!("CARGO_PKG_VERSION"),
            "hostname": std::env::var("HOSTNAME").unwrap_or_default(),
            "node_id": format!("{:x}", std::process::id()),
            "configuration": { "database": "off", "routes": self.shared.live.current().routes().len() },
            "plugins": { "available_on_server": available, "enabled_in_cluster": plugins },
        });
        for (key, value) in self
            .shared
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            node["configuration"][key] = value.clone();
        }
        node
    }

    fn status(&self) -> Value {
        let mut server = json!({ "uptime_seconds": self.shared.started.elapsed().as_secs() });
        if let Some(stats) = &self.shared.connections {
            server["connections_accepted"] = json!(stats.accepted());
            server["connections_handled"] = json!(stats.accepted());
            server["connections_active"] = json!(stats.active());
            server["total_requests"] = json!(stats.requests());
        }
        json!({ "database": { "reachable": true }, "server": server })
    }

    #[cfg(feature = "metrics")]
    fn metrics_text(&self) -> Result<Response<Full<Bytes>>, AdminError> {
        let Some(metrics) = &self.shared.metrics else {
            return Err(AdminError::NotFound);
        };
        let mut res = Response::new(Full::new(Bytes::from(metrics.encode())));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        Ok(res)
    }

    fn export(&self, query: &str) -> Result<Response<Full<Bytes>>, AdminError> {
        let doc = self.read(Store::to_doc);
        let yaml = serde_norway::to_string(&doc)
            .map_err(|err| AdminError::BadBody(format!("cannot export: {err}")))?;
        if query.split('&').any(|p| p == "format=yaml") {
            let mut res = Response::new(Full::new(Bytes::from(yaml)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
            return Ok(res);
        }
        Ok(json(StatusCode::OK, &json!({ "config": yaml })))
    }

    /// `POST /config`: `config=<yaml>` (form or JSON), or a declarative object itself.
    async fn import(&self, headers: &http::HeaderMap, bytes: &Bytes) -> Result<(), AdminError> {
        let is_yaml = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("yaml"));
        let text = if is_yaml {
            String::from_utf8_lossy(bytes).into_owned()
        } else {
            let fields = body::fields(headers, bytes)?;
            match fields.get("config") {
                Some(Value::String(text)) => text.clone(),
                _ if fields.contains_key("_format_version") => Value::Object(fields).to_string(),
                _ => {
                    return Err(AdminError::schema(
                        "expected a declarative configuration in `config`",
                    ));
                }
            }
        };
        crate::config::Config::from_yaml_with(&text, self.registry()).map_err(config_error)?;
        let store = store_of(&text, "<config>", self.registry()).map_err(config_error)?;
        self.replace_all(store).await
    }

    /// Puts `store` in place of every entity, when its configuration is valid.
    async fn replace_all(&self, store: Store) -> Result<(), AdminError> {
        self.mutate(|current| {
            *current = store.clone();
            Ok(())
        })
        .await
    }

    /// Kong's `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`: marks the target by hand in
    /// every balancer over that upstream (on this instance; active checks may change it again).
    fn mark(
        &self,
        upstream: &str,
        target: &str,
        healthy: bool,
    ) -> Result<Response<Full<Bytes>>, AdminError> {
        let (name, address) = self
            .read(|s| {
                let u = s.get(Kind::Upstream, s.find(Kind::Upstream, upstream, None)?)?;
                let name = u.get("name")?.as_str()?.to_owned();
                let id = u.get("id")?.as_str()?.to_owned();
                let t = s.get(
                    Kind::Target,
                    s.find(Kind::Target, target, Some(("upstream", id.as_str())))?,
                )?;
                Some((name, t.get("target")?.as_str()?.to_owned()))
            })
            .ok_or(AdminError::NotFound)?;
        let gateway = self.shared.live.current();
        let mut marked = false;
        for (_, balancer) in gateway.upstreams().iter().filter(|(n, _)| *n == name) {
            marked |= balancer.set_healthy(&address, healthy);
        }
        if !marked {
            // Defined, but no service balances over it.
            return Err(AdminError::NotFound);
        }
        Ok(empty(StatusCode::NO_CONTENT))
    }

    fn health(&self, name: &str) -> Result<Response<Full<Bytes>>, AdminError> {
        let gateway = self.shared.live.current();
        let (_, balancer) = gateway
            .upstreams()
            .iter()
            .find(|(n, _)| n == name)
            .ok_or(AdminError::NotFound)?;
        let data: Vec<Value> = balancer
            .endpoints()
            .into_iter()
            .map(|e| {
                json!({
                    "target": e.endpoint.name(),
                    "weight": e.endpoint.get_weight(),
                    "health": if e.healthy { "HEALTHY" } else { "UNHEALTHY" },
                    "data": { "in_flight": e.in_flight },
                })
            })
            .collect();
        Ok(json(StatusCode::OK, &json!({ "data": data, "next": null })))
    }
}

impl<B> Service<Request<B>> for AdminApi
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// Adds the routes of the cluster's `route:<path>` keys (OpenResty's pattern) to `doc`: each
/// names a service (by name) or an upstream, which then gets a service of its own.
fn add_route_keys(doc: &mut Value, keys: &[(String, String)], store: &Store) {
    for (path, target) in keys {
        let name = format!("route:{path}");
        if let Err(err) = crate::router::check_path(path) {
            tracing::warn!(key = %name, %err, "not a route path; ignored");
            continue;
        }
        let service = if store.id_of(Kind::Service, target).is_some() {
            json!({ "name": target })
        } else if store.id_of(Kind::Upstream, target).is_some() {
            let service = json!({ "name": name, "host": target, "protocol": "http", "port": 80 });
            push(doc, "services", service);
            json!({ "name": name })
        } else {
            tracing::warn!(key = %name, %target, "names no service or upstream; ignored");
            continue;
        };
        let route = json!({ "name": name, "paths": [path], "service": service });
        push(doc, "routes", route);
    }
}

fn push(doc: &mut Value, section: &str, entity: Value) {
    if let Some(doc) = doc.as_object_mut() {
        let list = doc
            .entry(section)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = list.as_array_mut() {
            list.push(entity);
        }
    }
}

/// The nested collections: `(parent kind, child kind, the child's field naming the parent)`.
fn nested(parent: &str, child: &str) -> Option<(Kind, Kind, &'static str)> {
    Some(match (parent, child) {
        ("services", "routes") => (Kind::Service, Kind::Route, "service"),
        ("services", "plugins") => (Kind::Service, Kind::Plugin, "service"),
        ("routes", "plugins") => (Kind::Route, Kind::Plugin, "route"),
        ("consumers", "plugins") => (Kind::Consumer, Kind::Plugin, "consumer"),
        ("consumers", "key-auth") => (Kind::Consumer, Kind::KeyAuth, "consumer"),
        ("consumers", "jwt") => (Kind::Consumer, Kind::Jwt, "consumer"),
        ("certificates", "snis") => (Kind::Certificate, Kind::Sni, "certificate"),
        ("upstreams", "targets") => (Kind::Upstream, Kind::Target, "upstream"),
        _ => return None,
    })
}

#[cfg(feature = "metrics")]
fn watch(metrics: &crate::metrics::Metrics, gateway: &Gateway) {
    metrics.unwatch_all();
    for (name, breaker) in gateway.breakers() {
        metrics.watch_breaker(name.clone(), breaker.clone());
    }
    for (upstream, balancer) in gateway.upstreams() {
        metrics.watch_balancer(upstream.clone(), balancer.clone());
    }
}

/// The entities of a declarative text.
fn store_of(text: &str, source: &str, registry: &Registry) -> Result<Store, ConfigError> {
    let doc: Value = serde_norway::from_str(text).map_err(|err| ConfigError::Parse {
        file: source.to_owned(),
        message: err.to_string(),
        line: err.location().map(|l| l.line()),
        column: err.location().map(|l| l.column()),
    })?;
    Store::from_doc(&doc, registry).map_err(|err| ConfigError::Invalid {
        file: source.to_owned(),
        path: String::new(),
        message: err.body()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

fn rename(err: ConfigError, source: &str) -> ConfigError {
    match err {
        ConfigError::Parse {
            message,
            line,
            column,
            ..
        } => ConfigError::Parse {
            file: source.to_owned(),
            message,
            line,
            column,
        },
        ConfigError::Invalid { path, message, .. } => ConfigError::Invalid {
            file: source.to_owned(),
            path,
            message,
        },
        other => other,
    }
}

/// A configuration the store's change would produce, refused: Kong's schema violation.
fn config_error(err: ConfigError) -> AdminError {
    match err {
        ConfigError::Invalid { path, message, .. } => AdminError::Schema {
            path: if path.is_empty() {
                Vec::new()
            } else {
                vec![path]
            },
            message,
        },
        ConfigError::Parse { message, .. } => AdminError::schema(message),
        ConfigError::Read { .. } => AdminError::schema(err.to_string()),
    }
}

fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
