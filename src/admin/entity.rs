//! The entity kinds of Kong's Admin API: their names, unique fields, references and the
//! defaults Kong fills in.

use serde_json::{Map, Value, json};

/// One kind of entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Service,
    Route,
    Consumer,
    Plugin,
    Upstream,
    Target,
    KeyAuth,
    Jwt,
    Certificate,
    Sni,
    CaCertificate,
}

/// A reference from one entity to another (`route.service`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reference {
    pub(crate) field: &'static str,
    pub(crate) to: Kind,
    /// Deleting the referenced entity deletes this one (Kong's cascades).
    pub(crate) cascade: bool,
}

impl Kind {
    pub(crate) const ALL: [Kind; 11] = [
        Kind::Service,
        Kind::Route,
        Kind::Consumer,
        Kind::Plugin,
        Kind::Upstream,
        Kind::Target,
        Kind::KeyAuth,
        Kind::Jwt,
        Kind::Certificate,
        Kind::Sni,
        Kind::CaCertificate,
    ];

    /// The name in top-level Admin API paths (`/services`) and Kong's error messages.
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Route => "routes",
            Kind::Consumer => "consumers",
            Kind::Plugin => "plugins",
            Kind::Upstream => "upstreams",
            Kind::Target => "targets",
            Kind::KeyAuth => "keyauth_credentials",
            Kind::Jwt => "jwt_secrets",
            Kind::Certificate => "certificates",
            Kind::Sni => "snis",
            Kind::CaCertificate => "ca_certificates",
        }
    }

    /// The kind of a top-level path segment.
    pub(crate) fn from_path(segment: &str) -> Option<Kind> {
        Some(match segment {
            "services" => Kind::Service,
            "routes" => Kind::Route,
            "consumers" => Kind::Consumer,
            "plugins" => Kind::Plugin,
            "upstreams" => Kind::Upstream,
            "targets" => Kind::Target,
            "key-auths" | "keyauth_credentials" => Kind::KeyAuth,
            "jwts" | "jwt_secrets" => Kind::Jwt,
            "certificates" => Kind::Certificate,
            "snis" => Kind::Sni,
            "ca_certificates" => Kind::CaCertificate,
            _ => return None,
        })
    }

    /// Fields whose value names the entity in paths (`/services/{name}`), unique among
    /// entities of the kind.
    pub(crate) fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Service | Kind::Route | Kind::Upstream => &["name"],
            Kind::Consumer => &["username", "custom_id"],
            Kind::KeyAuth | Kind::Jwt => &["key"],
            Kind::Sni => &["name"],
            Kind::Certificate | Kind::CaCertificate => &[],
            Kind::Target => &["target"],
            Kind::Plugin => &["instance_name"],
        }
    }

    /// Whether a name is unique only within the entity's parent (a target within its
    /// upstream).
    pub(crate) fn unique_per_parent(self) -> bool {
        self == Kind::Target
    }

    pub(crate) fn references(self) -> &'static [Reference] {
        macro_rules! r {
            ($field:literal, $to:expr, $cascade:literal) => {
                Reference {
                    field: $field,
                    to: $to,
                    cascade: $cascade,
                }
            };
        }
        const ROUTE: &[Reference] = &[r!("service", Kind::Service, false)];
        const PLUGIN: &[Reference] = &[
            r!("service", Kind::Service, true),
            r!("route", Kind::Route, true),
            r!("consumer", Kind::Consumer, true),
        ];
        const TARGET: &[Reference] = &[r!("upstream", Kind::Upstream, true)];
        const CREDENTIAL: &[Reference] = &[r!("consumer", Kind::Consumer, true)];
        const SNI: &[Reference] = &[r!("certificate", Kind::Certificate, true)];
        match self {
            Kind::Route => ROUTE,
            Kind::Plugin => PLUGIN,
            Kind::Target => TARGET,
            Kind::KeyAuth | Kind::Jwt => CREDENTIAL,
            Kind::Sni => SNI,
            Kind::Service
            | Kind::Consumer
            | Kind::Upstream
            | Kind::Certificate
            | Kind::CaCertificate => &[],
        }
    }

    /// Kong's defaults for the fields the client did not give.
    pub(crate) fn defaults(self) -> Map<String, Value> {
        let value = match self {
            Kind::Service => json!({
                "name": null, "protocol": "http", "port": 80, "path": null, "retries": 5,
                "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
                "tags": null, "client_certificate": null, "tls_verify": null,
                "tls_verify_depth": null, "ca_certificates": null, "enabled": true,
            }),
            Kind::Route => json!({
                "name": null, "protocols": ["http", "https"], "methods": null, "hosts": null,
                "paths": null, "headers": null, "https_redirect_status_code": 426,
                "regex_priority": 0, "strip_path": true, "path_handling": "v0",
                "preserve_host": false, "request_buffering": true, "response_buffering": true,
                "tags": null, "service": null, "snis": null, "sources": null,
                "destinations": null,
            }),
            Kind::Consumer => json!({ "username": null, "custom_id": null, "tags": null }),
            Kind::Plugin => json!({
                "route": null, "service": null, "consumer": null, "config": {},
                "protocols": ["grpc", "grpcs", "http", "https"], "enabled": true,
                "tags": null, "instance_name": null,
            }),
            Kind::Upstream => json!({
                "algorithm": "round-robin", "hash_on": "none", "hash_fallback": "none",
                "hash_on_cookie_path": "/", "slots": 10000, "tags": null,
                "host_header": null, "client_certificate": null, "use_srv_name": false,
                "healthchecks": null,
            }),
            Kind::Target => json!({ "weight": 100, "tags": null }),
            Kind::KeyAuth => json!({ "tags": null }),
            Kind::Jwt => json!({ "algorithm": "HS256", "rsa_public_key": null, "tags": null }),
            Kind::Certificate => json!({
                "cert_alt": null, "key_alt": null, "snis": [], "tags": null,
            }),
            Kind::Sni => json!({ "tags": null }),
            Kind::CaCertificate => json!({ "cert_digest": null, "tags": null }),
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// Whether entities of this kind carry `updated_at` (Kong's credentials do not).
    pub(crate) fn has_updated_at(self) -> bool {
        !matches!(self, Kind::KeyAuth | Kind::Jwt)
    }
}

/// Kong's schema shape for fields with these defaults: `{"fields": [{"name": {"type": …,
/// "default": …}}, …]}`, records nested. Only what the defaults tell: a field whose default
/// is `null` has neither type nor default (decK fills defaults from this).
pub(crate) fn schema(defaults: &Map<String, Value>) -> Value {
    let fields: Vec<Value> = defaults
        .iter()
        .map(|(name, default)| {
            let mut field = Map::new();
            let kind = match default {
                Value::Null => None,
                Value::Bool(_) => Some("boolean"),
                Value::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
                Value::Number(_) => Some("number"),
                Value::String(_) => Some("string"),
                Value::Array(_) => Some("array"),
                Value::Object(_) => Some("record"),
            };
            if let Some(kind) = kind {
                field.insert("type".into(), Value::from(kind));
            }
            match default {
                Value::Null => {}
                Value::Object(inner) => {
                    if let Value::Object(nested) = schema(inner) {
                        field.extend(nested);
                    }
                }
                other => {
                    field.insert("default".into(), other.clone());
                }
            }
            let mut named = Map::new();
            named.insert(name.clone(), Value::Object(field));
            Value::Object(named)
        })
        .collect();
    json!({ "fields": fields })
}

/// The version-4 UUID of 128 bits (random or derived) with its version and variant bits set.
fn uuid_v4(hi: u64, lo: u64) -> uuid::Uuid {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A random version-4 UUID.
pub(crate) fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A UUID derived from `seed` (for entities of a file that have no `id`): the same file gives
/// the same ids on every load, so ids survive a reload.
pub(crate) fn derived_id(seed: &str) -> String {
    let hi = crate::balance::hash64(seed.as_bytes());
    let lo = crate::balance::hash64(format!("{seed}\u{1}").as_bytes());
    uuid_v4(hi, lo).to_string()
}

/// Whether `text` has the shape of a UUID (then it is looked up as an id).
pub(crate) fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
