//! Reading entities that arrive as JSON or as form fields (the Admin API) into the typed
//! model: a string is read as the number or boolean the field expects (forms carry only
//! strings, as `config.minute=100`), a lone string as a one-element list (`paths=/a`), and the
//! value is rewritten in place with the type it was read as, so that the stored entity is
//! typed as Kong would store it. Errors carry the field path (`config.minute`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use serde_json::Value;

/// Why a value does not fit the model, and where.
///
/// ```
/// use tower_gateway::config::FieldError;
///
/// // What a plugin's `validate` answers: the path below its `config`, and why.
/// let err = FieldError::at("redis.port", "must be between 1 and 65535");
/// assert_eq!(err.path, ["redis", "port"]);
/// assert_eq!(err.to_string(), "redis.port: must be between 1 and 65535");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, outermost first (`["config", "minute"]`).
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path.join("."), self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Brackets the path of an error raised below a field whose value was read whole (a plugin's
/// `config`), so that the deserializer reporting it can put the path back together.
pub(crate) const NESTED: char = '\u{1f}';

impl FieldError {
    /// An error at `path`, dot-separated below the value checked (`"redis.host"`; `""` for
    /// the value itself).
    pub fn at(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            message: message.into(),
        }
    }

    /// This error as a serde message for the field `field` that holds the checked value:
    /// this crate's deserializers and `Config`'s YAML errors read the full
    /// path back out of it.
    pub(crate) fn nested(&self, field: &str) -> String {
        let mut path = field.to_owned();
        for segment in &self.path {
            path.push('.');
            path.push_str(segment);
        }
        format!("{NESTED}{path}{NESTED}{}", self.message)
    }
}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let message = msg.to_string();
        if let Some(rest) = message.strip_prefix(NESTED)
            && let Some((path, message)) = rest.split_once(NESTED)
        {
            return Self::at(path, message);
        }
        Self {
            path: Vec::new(),
            message,
        }
    }
}

impl From<serde_json::Error> for FieldError {
    fn from(err: serde_json::Error) -> Self {
        de::Error::custom(err)
    }
}

fn at(key: impl Into<String>) -> impl FnOnce(FieldError) -> FieldError {
    move |mut err| {
        err.path.insert(0, key.into());
        err
    }
}

/// Deserializes `T` from `value`, coercing strings to what `T` expects and rewriting `value`
/// with the coerced types.
pub(crate) fn from_value<T: de::DeserializeOwned>(value: &mut Value) -> Result<T, FieldError> {
    T::deserialize(Lenient(value))
}

/// A deserializer over a JSON value that coerces as described in the module docs.
struct Lenient<'a>(&'a mut Value);

impl Lenient<'_> {
    /// Replaces a string holding a `T` with the parsed value.
    fn coerce<T: std::str::FromStr>(&mut self, make: impl FnOnce(T) -> Option<Value>) {
        if let Value::String(text) = &*self.0
            && let Ok(parsed) = text.trim().parse::<T>()
            && let Some(value) = make(parsed)
        {
            *self.0 = value;
        }
    }

    fn integer(&mut self) {
        if let Value::String(text) = &*self.0 {
            let text = text.trim();
            if let Ok(n) = text.parse::<u64>() {
                *self.0 = Value::from(n);
            } else if let Ok(n) = text.parse::<i64>() {
                *self.0 = Value::from(n);
            }
        }
    }
}

macro_rules! integer {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, FieldError> {
            self.integer();
            self.deserialize_any(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Lenient<'_> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter_mut(),
                index: 0,
            }),
            Value::Object(members) => {
                // `name` first: a plugin's `config` is read by its name.
                let mut entries: Vec<(&String, &mut Value)> = members.iter_mut().collect();
                entries.sort_by_key(|(key, _)| key.as_str() != "name");
                visitor.visit_map(Map {
                    entries: entries.into_iter(),
                    value: None,
                })
            }
            other => Ok(other.clone().deserialize_any(visitor)?),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, FieldError> {
        self.coerce::<bool>(|b| Some(Value::Bool(b)));
        self.deserialize_any(visitor)
    }

    integer!(
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, FieldError> {
        self.coerce::<f64>(|f| serde_json::Number::from_f64(f).map(Value::Number));
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        if let Value::String(text) = &*self.0 {
            // A form field given once without `[]`.
            *self.0 = Value::Array(vec![Value::String(text.clone())]);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::String(variant) => {
                let variant: de::value::StringDeserializer<FieldError> =
                    variant.clone().into_deserializer();
                visitor.visit_enum(variant)
            }
            other => Ok(other.clone().deserialize_enum(name, variants, visitor)?),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct identifier
        i128 u128
    }
}

struct Seq<'a> {
    items: std::slice::IterMut<'a, Value>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_> {
    type Error = FieldError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FieldError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(Lenient(item))
            .map(Some)
            .map_err(at(index.to_string()))
    }
}

struct Map<'a> {
    entries: std::vec::IntoIter<(&'a String, &'a mut Value)>,
    value: Option<(&'a String, &'a mut Value)>,
}

impl<'de> de::MapAccess<'de> for Map<'_> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key_de: de::value::StrDeserializer<'_, FieldError> = key.as_str().into_deserializer();
        // An unknown field is refused here: the error names it in the path.
        let parsed = seed.deserialize(key_de).map_err(at(key.as_str()))?;
        self.value = Some((key, value));
        Ok(Some(parsed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let Some((key, value)) = self.value.take() else {
            return Err(de::Error::custom("a value without its key"));
        };
        seed.deserialize(Lenient(value)).map_err(at(key.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        minute: Option<u64>,
        policy: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        port: u16,
        strip_path: bool,
        paths: Vec<String>,
        config: Inner,
        ratio: Option<f64>,
    }

    #[test]
    fn strings_become_what_the_model_expects_and_the_value_is_retyped() {
        let mut value = json!({
            "name": "100", "port": "8080", "strip_path": "false", "paths": "/a",
            "config": {"minute": "100", "policy": "local"}, "ratio": "0.5"
        });
        let outer: Outer = from_value(&mut value).unwrap();
        assert_eq!(outer.name, "100", "a string field stays a string");
        assert_eq!(outer.port, 8080);
        assert_eq!(outer.paths, ["/a"]);
        assert_eq!(outer.config.minute, Some(100));
        assert_eq!(
            value,
            json!({
                "name": "100", "port": 8080, "strip_path": false, "paths": ["/a"],
                "config": {"minute": 100, "policy": "local"}, "ratio": 0.5
            })
        );
    }

    #[test]
    fn errors_name_the_field_path() {
        let mut value = json!({
            "name": "n", "port": 1, "strip_path": true, "paths": [],
            "config": {"minute": "many", "policy": "local"}
        });
        let err = from_value::<Outer>(&mut value).unwrap_err();
        assert_eq!(err.path, ["config", "minute"]);
        let mut unknown = json!({"name": "n", "nope": 1});
        let err = from_value::<Outer>(&mut unknown).unwrap_err();
        assert!(err.message.contains("nope"), "{err}");
    }
}
