//! The entities behind the Admin API, kept as Kong shows them (flat, with `{"id": …}`
//! references), and their translation to and from the declarative format.

use serde_json::{Map, Value, json};

use super::entity::{self, Kind};
use super::error::AdminError;
use crate::config::{self, Config, ConfigError};
use crate::plugin::Registry;

/// Every entity, by kind, in creation order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    kinds: [Vec<Map<String, Value>>; 11],
    /// The plugins entities may name.
    registry: Registry,
}

/// The parent an operation is nested under (`/services/{s}/routes`): the field on the child
/// and the parent's id.
pub(crate) type Parent<'a> = Option<(&'static str, &'a str)>;

fn slot(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The id in a reference value (`{"id": "…"}`), if it is one.
fn reference_id(value: &Value) -> Option<&str> {
    value.get("id").and_then(Value::as_str)
}

impl Store {
    pub(crate) fn all(&self, kind: Kind) -> &[Map<String, Value>] {
        &self.kinds[slot(kind)]
    }

    fn all_mut(&mut self, kind: Kind) -> &mut Vec<Map<String, Value>> {
        &mut self.kinds[slot(kind)]
    }

    /// The entities of `kind` under `parent`.
    pub(crate) fn children<'a>(
        &'a self,
        kind: Kind,
        parent: Parent<'a>,
    ) -> impl Iterator<Item = &'a Map<String, Value>> + 'a {
        self.all(kind).iter().filter(move |e| belongs(e, parent))
    }

    /// The position of the entity of `kind` whose id or name is `key`, under `parent`.
    pub(crate) fn find(&self, kind: Kind, key: &str, parent: Parent<'_>) -> Option<usize> {
        let all = self.all(kind);
        let by_id = all
            .iter()
            .position(|e| e.get("id").and_then(Value::as_str) == Some(key) && belongs(e, parent));
        by_id.or_else(|| {
            all.iter().position(|e| {
                belongs(e, parent)
                    && kind
                        .names()
                        .iter()
                        .any(|n| e.get(*n).and_then(Value::as_str) == Some(key))
            })
        })
    }

    pub(crate) fn get(&self, kind: Kind, index: usize) -> Option<&Map<String, Value>> {
        self.all(kind).get(index)
    }

    /// The id of the entity of `kind` named `key` (by id or name).
    pub(crate) fn id_of(&self, kind: Kind, key: &str) -> Option<String> {
        let index = self.find(kind, key, None)?;
        self.all(kind)[index]
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Adds an entity: Kong's defaults for the missing fields, an id and timestamps,
    /// references resolved to ids, names checked for uniqueness and every field checked
    /// against the schema. Returns its position.
    pub(crate) fn create(
        &mut self,
        kind: Kind,
        mut fields: Map<String, Value>,
        parent: Parent<'_>,
    ) -> Result<usize, AdminError> {
        if let Some((field, id)) = parent {
            fields.insert(field.to_owned(), json!({ "id": id }));
        }
        let mut entity = kind.defaults();
        prepare(kind, &mut fields)?;
        if kind == Kind::Plugin {
            let name = fields
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut config = self
                .registry
                .get(name)
                .map(|definition| definition.defaults())
                .unwrap_or_default();
            match fields.remove("config") {
                Some(Value::Object(given)) => config.extend(given),
                None | Some(Value::Null) => {}
                Some(other) => {
                    return Err(AdminError::Schema {
                        path: vec!["config".into()],
                        message: format!("expected an object, not {other}"),
                    });
                }
            }
            fields.insert("config".into(), Value::Object(config));
        }
        entity.extend(fields);
        // A certificate's names are SNI entities of their own (Kong's shorthand).
        let names = match kind {
            Kind::Certificate => entity.remove("snis"),
            _ => None,
        };
        let id = match entity.get("id") {
            Some(Value::String(id)) if entity::is_uuid(id) => id.clone(),
            Some(Value::String(_)) => {
                return Err(AdminError::Schema {
                    path: vec!["id".into()],
                    message: "expected a valid UUID".into(),
                });
            }
            _ => entity::new_id(),
        };
        entity.insert("id".into(), Value::String(id));
        let now = entity::now();
        entity
            .entry("created_at")
            .or_insert_with(|| Value::from(now));
        if kind.has_updated_at() {
            // Kept when given: an entity copied from another instance keeps its times.
            entity
                .entry("updated_at")
                .or_insert_with(|| Value::from(now));
        }
        let id = entity.get("id").and_then(Value::as_str).map(str::to_owned);
        self.admit(kind, &mut entity, None)?;
        self.all_mut(kind).push(entity);
        let at = self.all(kind).len() - 1;
        if let (Some(names), Some(id)) = (names, id) {
            self.name_certificate(&id, names)?;
        }
        Ok(at)
    }

    /// Makes `names` (a certificate's `snis`) the SNI entities of certificate `id`.
    fn name_certificate(&mut self, id: &str, names: Value) -> Result<(), AdminError> {
        let Value::Array(names) = names else {
            return Err(AdminError::Schema {
                path: vec!["snis".into()],
                message: "expected an array of server names".into(),
            });
        };
        let own = |e: &Map<String, Value>| e.get("certificate").and_then(reference_id) == Some(id);
        self.all_mut(Kind::Sni).retain(|e| !own(e));
        for (i, name) in names.into_iter().enumerate() {
            let mut fields = Map::new();
            fields.insert("name".into(), name);
            self.create(Kind::Sni, fields, Some(("certificate", id)))
                .map_err(|err| err.nested(&["snis".to_owned(), i.to_string()]))?;
        }
        Ok(())
    }

    /// An entity as the Admin API shows it: a certificate with its names (`snis`).
    pub(crate) fn shown(&self, kind: Kind, entity: &Map<String, Value>) -> Map<String, Value> {
        let mut shown = entity.clone();
        if kind == Kind::Certificate
            && let Some(id) = entity.get("id").and_then(Value::as_str)
        {
            let names: Vec<Value> = self
                .all(Kind::Sni)
                .iter()
                .filter(|e| e.get("certificate").and_then(reference_id) == Some(id))
                .filter_map(|e| e.get("name").cloned())
                .collect();
            shown.insert("snis".into(), Value::Array(names));
        }
        shown
    }

    /// Changes the fields given in `patch` (a plugin's `config` is merged field by field, as
    /// Kong does).
    pub(crate) fn update(
        &mut self,
        kind: Kind,
        index: usize,
        mut patch: Map<String, Value>,
    ) -> Result<(), AdminError> {
        let Some(current) = self.all(kind).get(index) else {
            return Err(AdminError::NotFound);
        };
        let mut entity = current.clone();
        prepare(kind, &mut patch)?;
        patch.remove("id");
        patch.remove("created_at");
        let names = match kind {
            Kind::Certificate => patch.remove("snis"),
            _ => None,
        };
        for (key, value) in patch {
            match (entity.get_mut(&key), value) {
                (Some(Value::Object(old)), Value::Object(new)) if key == "config" => {
                    old.extend(new);
                }
                (_, value) => {
                    entity.insert(key, value);
                }
            }
        }
        if kind.has_updated_at() {
            entity.insert("updated_at".into(), Value::from(entity::now()));
        }
        let id = entity.get("id").and_then(Value::as_str).map(str::to_owned);
        self.admit(kind, &mut entity, Some(index))?;
        self.all_mut(kind)[index] = entity;
        if let (Some(names), Some(id)) = (names, id) {
            self.name_certificate(&id, names)?;
        }
        Ok(())
    }

    /// Replaces the entity at `index` whole (Kong's `PUT`), keeping its id and creation time.
    pub(crate) fn replace(
        &mut self,
        kind: Kind,
        index: usize,
        fields: Map<String, Value>,
        parent: Parent<'_>,
    ) -> Result<(), AdminError> {
        let Some(current) = self.all(kind).get(index) else {
            return Err(AdminError::NotFound);
        };
        let keep = |key: &str| current.get(key).cloned().unwrap_or(Value::Null);
        let (id, created_at) = (keep("id"), keep("created_at"));
        let mut fields = fields;
        fields.insert("id".into(), id);
        fields.insert("created_at".into(), created_at);
        let mut scratch = self.clone();
        scratch.all_mut(kind).remove(index);
        let at = scratch.create(kind, fields, parent)?;
        // Back in its place; what the creation changed elsewhere (a certificate's names)
        // comes along.
        let entity = scratch.all_mut(kind).remove(at);
        scratch.all_mut(kind).insert(index, entity);
        *self = scratch;
        Ok(())
    }

    /// Deletes the entity at `index` with what depends on it (a consumer's credentials and
    /// plugins, an upstream's targets, a service's or route's plugins). A service that routes
    /// still use is not deleted (Kong's foreign-key refusal).
    pub(crate) fn delete(&mut self, kind: Kind, index: usize) -> Result<(), AdminError> {
        let Some(id) = self
            .get(kind, index)
            .and_then(|e| e.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Err(AdminError::NotFound);
        };
        for other in Kind::ALL {
            for reference in other.references().iter().filter(|r| r.to == kind) {
                let uses = |e: &Map<String, Value>| {
                    e.get(reference.field).and_then(reference_id) == Some(id.as_str())
                };
                if reference.cascade {
                    let dependents: Vec<usize> = (0..self.all(other).len())
                        .filter(|&i| uses(&self.all(other)[i]))
                        .collect();
                    for i in dependents.into_iter().rev() {
                        self.delete(other, i)?;
                    }
                } else if self.all(other).iter().any(uses) {
                    return Err(AdminError::ForeignKey {
                        field: reference.field.into(),
                        message: format!(
                            "an existing '{}' entity references this '{}' entity",
                            other.plural(),
                            kind.plural()
                        ),
                    });
                }
            }
        }
        // Positions may have moved with the cascades.
        if let Some(at) = self.find(kind, &id, None) {
            self.all_mut(kind).remove(at);
        }
        Ok(())
    }

    /// Resolves references, checks uniqueness and checks the fields against the model.
    fn admit(
        &self,
        kind: Kind,
        entity: &mut Map<String, Value>,
        replacing: Option<usize>,
    ) -> Result<(), AdminError> {
        for reference in kind.references() {
            let Some(value) = entity.get(reference.field).filter(|v| !v.is_null()) else {
                continue;
            };
            let key = match value {
                Value::String(key) => Some(key.clone()),
                Value::Object(map) => map
                    .get("id")
                    .or_else(|| map.get("name"))
                    .or_else(|| map.get("username"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            };
            let id = key.as_deref().and_then(|k| self.id_of(reference.to, k));
            let Some(id) = id else {
                return Err(AdminError::ForeignKey {
                    field: reference.field.into(),
                    message: format!(
                        "the foreign key '{value}' does not reference an existing '{}' entity.",
                        reference.to.plural()
                    ),
                });
            };
            entity.insert(reference.field.into(), json!({ "id": id }));
        }
        let own_id = entity.get("id").cloned();
        let parent_of = |e: &Map<String, Value>| {
            kind.references()
                .first()
                .and_then(|r| e.get(r.field))
                .and_then(reference_id)
                .map(str::to_owned)
        };
        for field in kind.names() {
            let Some(Value::String(value)) = entity.get(*field) else {
                continue;
            };
            let clash = self.all(kind).iter().enumerate().any(|(i, other)| {
                Some(i) != replacing
                    && other.get("id") != own_id.as_ref()
                    && other.get(*field).and_then(Value::as_str) == Some(value.as_str())
                    && (!kind.unique_per_parent() || parent_of(other) == parent_of(entity))
            });
            if clash {
                return Err(AdminError::Unique {
                    field: (*field).into(),
                    value: value.clone(),
                });
            }
        }
        if kind == Kind::Plugin {
            // One instance of a plugin per scope (Kong's unique key).
            fn scope(e: &Map<String, Value>) -> (Option<&str>, Vec<Option<&str>>) {
                let refs = ["service", "route", "consumer"]
                    .iter()
                    .map(|f| e.get(*f).and_then(reference_id))
                    .collect();
                (e.get("name").and_then(Value::as_str), refs)
            }
            let mine = scope(entity);
            let clash = self.all(kind).iter().enumerate().any(|(i, other)| {
                Some(i) != replacing && other.get("id") != own_id.as_ref() && scope(other) == mine
            });
            if clash {
                return Err(AdminError::Unique {
                    field: "name".into(),
                    value: mine.0.unwrap_or_default().to_owned(),
                });
            }
        }
        self.registry.scope(|| check_fields(kind, entity))
    }

    /// The plugins entities may name.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The configuration in Kong's declarative format, every entity top-level.
    pub(crate) fn to_doc(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("_format_version".into(), json!("3.0"));
        for kind in Kind::ALL {
            let entities: Vec<Value> = self
                .all(kind)
                .iter()
                .map(|e| Value::Object(without_nulls(e)))
                .collect();
            if !entities.is_empty() {
                doc.insert(kind.plural().into(), Value::Array(entities));
            }
        }
        Value::Object(doc)
    }

    /// The configuration checked and typed (the store itself is rewritten with the types).
    pub(crate) fn config(&self) -> Result<Config, ConfigError> {
        Config::from_json_with(&mut self.to_doc(), "<admin>", &self.registry)
    }

    /// The entities of a declarative configuration (a file's, or `POST /config`'s), nested
    /// ones made top-level, references by name turned into ids, and ids derived from names
    /// where the file has none, so that a reload keeps them.
    pub(crate) fn from_doc(doc: &Value, registry: &Registry) -> Result<Self, AdminError> {
        let Some(doc) = doc.as_object() else {
            return Err(AdminError::schema(
                "a declarative configuration is an object",
            ));
        };
        let mut flat = Flat::default();
        let section = |name: &str| doc.get(name).and_then(Value::as_array).cloned();
        for (i, service) in section("services").into_iter().flatten().enumerate() {
            flat.take(Kind::Service, service, &format!("services[{i}]"), None)?;
        }
        for (i, route) in section("routes").into_iter().flatten().enumerate() {
            flat.take(Kind::Route, route, &format!("routes[{i}]"), None)?;
        }
        for (i, consumer) in section("consumers").into_iter().flatten().enumerate() {
            flat.take(Kind::Consumer, consumer, &format!("consumers[{i}]"), None)?;
        }
        for (i, upstream) in section("upstreams").into_iter().flatten().enumerate() {
            flat.take(Kind::Upstream, upstream, &format!("upstreams[{i}]"), None)?;
        }
        for (i, certificate) in section("certificates").into_iter().flatten().enumerate() {
            flat.take(
                Kind::Certificate,
                certificate,
                &format!("certificates[{i}]"),
                None,
            )?;
        }
        for kind in [
            Kind::Plugin,
            Kind::Target,
            Kind::KeyAuth,
            Kind::Jwt,
            Kind::Sni,
            Kind::CaCertificate,
        ] {
            for (i, entity) in section(kind.plural()).into_iter().flatten().enumerate() {
                flat.take(kind, entity, &format!("{}[{i}]", kind.plural()), None)?;
            }
        }
        let mut store = Store {
            kinds: Default::default(),
            registry: registry.clone(),
        };
        for (kind, entity) in flat.entities {
            let Value::Object(fields) = entity else {
                return Err(AdminError::schema(format!(
                    "{}: an entity is an object",
                    kind.plural()
                )));
            };
            store.create(kind, fields, None)?;
        }
        Ok(store)
    }
}

/// Entities collected from a declarative file, parents before children.
#[derive(Default)]
struct Flat {
    entities: Vec<(Kind, Value)>,
}

impl Flat {
    /// Takes `entity` (and its nested children) in, with an id; returns the id.
    fn take(
        &mut self,
        kind: Kind,
        entity: Value,
        at: &str,
        parent: Option<(&'static str, &str)>,
    ) -> Result<String, AdminError> {
        let Value::Object(mut fields) = entity else {
            return Err(AdminError::schema(format!("{at}: an entity is an object")));
        };
        let nested: Vec<(&str, Kind, &'static str)> = match kind {
            Kind::Service => vec![
                ("routes", Kind::Route, "service"),
                ("plugins", Kind::Plugin, "service"),
            ],
            Kind::Route => vec![("plugins", Kind::Plugin, "route")],
            Kind::Consumer => vec![
                ("keyauth_credentials", Kind::KeyAuth, "consumer"),
                ("jwt_secrets", Kind::Jwt, "consumer"),
                ("plugins", Kind::Plugin, "consumer"),
            ],
            Kind::Upstream => vec![("targets", Kind::Target, "upstream")],
            _ => Vec::new(),
        };
        let children: Vec<(Kind, &'static str, &str, Vec<Value>)> = nested
            .into_iter()
            .filter_map(|(section, child, field)| {
                let list = fields.remove(section)?;
                Some((
                    child,
                    field,
                    section,
                    list.as_array().cloned().unwrap_or_default(),
                ))
            })
            .collect();
        if let Some((field, id)) = parent {
            fields.insert(field.into(), json!({ "id": id }));
        }
        let id = match fields.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let name = kind
                    .names()
                    .iter()
                    .find_map(|n| fields.get(*n).and_then(Value::as_str))
                    .map_or_else(|| at.to_owned(), str::to_owned);
                let scope = parent.map_or(String::new(), |(_, id)| id.to_owned());
                entity::derived_id(&format!("{}:{scope}:{name}:{at}", kind.plural()))
            }
        };
        fields.insert("id".into(), Value::String(id.clone()));
        self.entities.push((kind, Value::Object(fields)));
        for (child, field, section, list) in children {
            for (i, entity) in list.into_iter().enumerate() {
                self.take(
                    child,
                    entity,
                    &format!("{at}.{section}[{i}]"),
                    Some((field, &id)),
                )?;
            }
        }
        Ok(id)
    }
}

/// The entity's fields as the model reads them, retyped in place (form strings become
/// numbers and booleans). Nested configuration errors keep their path.
fn check_fields(kind: Kind, entity: &mut Map<String, Value>) -> Result<(), AdminError> {
    let mut value = Value::Object(without_nulls(entity));
    let mut plugin_config = None;
    match kind {
        Kind::Service => crate::lenient::from_value::<config::Service>(&mut value).map(drop),
        Kind::Route => crate::lenient::from_value::<config::Route>(&mut value).map(drop),
        Kind::Consumer => crate::lenient::from_value::<config::Consumer>(&mut value).map(drop),
        Kind::Plugin => crate::lenient::from_value::<config::Plugin>(&mut value)
            .map(|plugin| plugin_config = Some(plugin.config.to_json())),
        Kind::Upstream => crate::lenient::from_value::<config::Upstream>(&mut value).map(drop),
        Kind::Target => crate::lenient::from_value::<config::Target>(&mut value).map(drop),
        Kind::KeyAuth => {
            crate::lenient::from_value::<config::KeyAuthCredential>(&mut value).map(drop)
        }
        Kind::Jwt => crate::lenient::from_value::<config::JwtSecret>(&mut value).map(drop),
        Kind::Certificate => {
            crate::lenient::from_value::<config::Certificate>(&mut value).map(drop)
        }
        Kind::Sni => crate::lenient::from_value::<config::Sni>(&mut value).map(drop),
        Kind::CaCertificate => {
            crate::lenient::from_value::<config::CaCertificate>(&mut value).map(drop)
        }
    }?;
    // Write the retyped values back; the nulls stay as they were.
    if let Value::Object(typed) = value {
        merge(entity, typed);
    }
    // A plugin's `config` as its type reads it (form strings typed), over the fields it
    // shows: its defaults and what the client gave (the defaults Kong shows for unset
    // optional fields stay; extension fields left unset stay out of sight).
    if let Some(Value::Object(typed)) = plugin_config
        && let Some(Value::Object(config)) = entity.get_mut("config")
    {
        for (key, value) in typed {
            if !value.is_null()
                && let Some(shown) = config.get_mut(&key)
            {
                *shown = value;
            }
        }
    }
    Ok(())
}

/// Writes `typed` over `entity`, object by object, so that nested `null`s stay.
fn merge(entity: &mut Map<String, Value>, typed: Map<String, Value>) {
    for (key, value) in typed {
        match (entity.get_mut(&key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (_, value) => {
                entity.insert(key, value);
            }
        }
    }
}

/// Fields whose value is not `null`, in nested objects too (the model reads a missing field
/// as its default; Kong shows unset fields as `null`).
fn without_nulls(entity: &Map<String, Value>) -> Map<String, Value> {
    entity
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::Object(inner) => (k.clone(), Value::Object(without_nulls(inner))),
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

/// Kong's shorthands and generated values, before defaults: a service's `url`, a
/// credential's missing `key` and `secret`.
fn prepare(kind: Kind, fields: &mut Map<String, Value>) -> Result<(), AdminError> {
    match kind {
        Kind::Service => {
            if let Some(url) = fields.remove("url") {
                let Some(url) = url.as_str() else {
                    return Err(AdminError::Schema {
                        path: vec!["url".into()],
                        message: "expected a string".into(),
                    });
                };
                for (key, value) in split_url(url)? {
                    fields.insert(key.into(), value);
                }
            }
        }
        Kind::Certificate => {
            // decK's `{name: ...}` objects, shown as Kong shows them: names.
            if let Some(Value::Array(snis)) = fields.get_mut("snis") {
                for sni in snis {
                    if let Some(name) = sni.get("name").and_then(Value::as_str) {
                        *sni = Value::String(name.to_owned());
                    }
                }
            }
        }
        Kind::KeyAuth => {
            fields
                .entry("key")
                .or_insert_with(|| Value::String(entity::new_id().replace('-', "")));
        }
        Kind::Jwt => {
            fields
                .entry("key")
                .or_insert_with(|| Value::String(entity::new_id().replace('-', "")));
            let asymmetric = fields
                .get("algorithm")
                .and_then(Value::as_str)
                .is_some_and(|a| !a.starts_with("HS"));
            if !asymmetric {
                fields
                    .entry("secret")
                    .or_insert_with(|| Value::String(entity::new_id().replace('-', "")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A service `url` as Kong splits it: protocol, host, port (80/443 by default) and path.
fn split_url(url: &str) -> Result<Vec<(&'static str, Value)>, AdminError> {
    let invalid = |message: &str| AdminError::Schema {
        path: vec!["url".into()],
        message: message.into(),
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("missing host in url"))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| invalid("missing scheme in url"))?;
    let host = uri.host().ok_or_else(|| invalid("missing host in url"))?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri.path();
    // `http://h:1` has no path; `http://h:1/` has `/`.
    let path = if !path.is_empty() && (path != "/" || url.ends_with('/')) {
        Value::String(path.to_owned())
    } else {
        Value::Null
    };
    Ok(vec![
        ("protocol", Value::String(scheme.to_owned())),
        (
            "host",
            Value::String(host.trim_matches(['[', ']']).to_owned()),
        ),
        ("port", Value::from(port)),
        ("path", path),
    ])
}

/// Whether `entity` is under `parent`.
fn belongs(entity: &Map<String, Value>, parent: Parent<'_>) -> bool {
    parent.is_none_or(|(field, id)| entity.get(field).and_then(reference_id) == Some(id))
}
