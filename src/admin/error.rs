//! The Admin API's refusals, in Kong's shapes.

use http::StatusCode;
use serde_json::{Map, Value, json};

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdminError {
    /// 404 `Not found`.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 401: the Admin API token is missing or wrong.
    Unauthorized,
    /// 400 `schema violation (field: message)`, with `fields` as Kong nests them.
    Schema { path: Vec<String>, message: String },
    /// 409 `UNIQUE violation detected on '{field="value"}'`.
    Unique { field: String, value: String },
    /// 400: a reference to an entity that does not exist, or a delete that would leave one
    /// dangling.
    ForeignKey { field: String, message: String },
    /// 400: a body that cannot be read.
    BadBody(String),
    /// 413: a body over the Admin API's limit.
    TooLarge,
    /// 503: the cluster's store cannot be reached; nothing changed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable(String),
}

impl AdminError {
    /// A schema violation on the entity as a whole.
    pub(crate) fn schema(message: impl Into<String>) -> Self {
        Self::Schema {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// A schema violation found below `prefix` (a certificate's `snis.0`); other errors as
    /// they are.
    pub(crate) fn nested(self, prefix: &[String]) -> Self {
        match self {
            Self::Schema { path, message } => Self::Schema {
                path: prefix.iter().cloned().chain(path).collect(),
                message,
            },
            other => other,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Unique { .. } => StatusCode::CONFLICT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Schema { .. } | Self::ForeignKey { .. } | Self::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// Kong's JSON body.
    pub(crate) fn body(&self) -> Value {
        match self {
            Self::NotFound => json!({ "message": "Not found" }),
            Self::MethodNotAllowed => json!({ "message": "Method not allowed" }),
            Self::Unauthorized => json!({ "message": "Invalid authentication credentials" }),
            Self::TooLarge => json!({ "message": "request body too large" }),
            Self::BadBody(message) | Self::Unavailable(message) => json!({ "message": message }),
            Self::Schema { path, message } => {
                let text = if path.is_empty() {
                    message.clone()
                } else {
                    format!("{}: {message}", path.join("."))
                };
                let mut fields = Value::String(message.clone());
                for key in path.iter().rev() {
                    let mut map = Map::new();
                    map.insert(key.clone(), fields);
                    fields = Value::Object(map);
                }
                if path.is_empty() {
                    fields = json!({ "@entity": [message] });
                }
                json!({
                    "code": 2,
                    "name": "schema violation",
                    "message": format!("schema violation ({text})"),
                    "fields": fields,
                })
            }
            Self::Unique { field, value } => json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": format!("UNIQUE violation detected on '{{{field}=\"{value}\"}}'"),
                "fields": { field.as_str(): value },
            }),
            Self::ForeignKey { field, message } => json!({
                "code": 4,
                "name": "foreign key violation",
                "message": message,
                "fields": { field.as_str(): message },
            }),
        }
    }
}

impl From<crate::config::FieldError> for AdminError {
    fn from(err: crate::config::FieldError) -> Self {
        Self::Schema {
            path: err.path,
            message: err.message,
        }
    }
}
