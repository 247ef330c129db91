//! Request bodies as Kong's Admin API reads them: JSON, or form fields where `paths[]=/a`
//! builds a list and `config.minute=100` a nested object.

use bytes::Bytes;
use http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::error::AdminError;

/// The body's fields.
pub(crate) fn fields(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(AdminError::BadBody(
                "the JSON body must be an object".into(),
            )),
            Err(err) => Err(AdminError::BadBody(format!(
                "Cannot parse JSON body: {err}"
            ))),
        },
        "application/x-www-form-urlencoded" => form(body),
        other => Err(AdminError::BadBody(format!(
            "Content-Type {other:?} is not supported: send application/json or application/x-www-form-urlencoded"
        ))),
    }
}

/// Form fields into an object: `a.b=1` nests, `a[]=1` (or `a[0]=1`) appends to a list.
fn form(body: &Bytes) -> Result<Map<String, Value>, AdminError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AdminError::BadBody("the form body is not UTF-8".into()))?;
    let mut out = Map::new();
    for (key, value) in form_urlencoded::parse(text.as_bytes()) {
        insert(&mut out, &key, Value::String(value.into_owned())).map_err(|message| {
            AdminError::Schema {
                path: vec![key.into_owned()],
                message,
            }
        })?;
    }
    Ok(out)
}

fn insert(map: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), String> {
    let (head, rest) = match key.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (key, None),
    };
    // `name[]` or `name[3]`: a list.
    let (name, listed) = match head.split_once('[') {
        Some((name, index)) if index.ends_with(']') => (name, true),
        _ => (head, false),
    };
    if name.is_empty() {
        return Err("a field name is empty".into());
    }
    match (rest, listed) {
        (None, false) => {
            map.insert(name.to_owned(), value);
        }
        (None, true) => match map
            .entry(name.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(value),
            _ => return Err(format!("{name} is both a value and a list")),
        },
        (Some(rest), false) => match map
            .entry(name.to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(inner) => insert(inner, rest, value)?,
            _ => return Err(format!("{name} is both a value and an object")),
        },
        (Some(_), true) => return Err("lists of objects are not supported in forms".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(content_type: Option<&str>, body: &str) -> Result<Value, AdminError> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        fields(&headers, &Bytes::from(body.to_owned())).map(Value::Object)
    }

    #[test]
    fn kong_form_fields_nest_and_list() {
        let body = "name=rate-limiting&config.minute=100&config.policy=local&paths[]=%2Fa&paths[]=/b&headers.x-v[]=1";
        assert_eq!(
            parse(Some("application/x-www-form-urlencoded"), body).unwrap(),
            json!({
                "name": "rate-limiting",
                "config": {"minute": "100", "policy": "local"},
                "paths": ["/a", "/b"],
                "headers": {"x-v": ["1"]},
            })
        );
        // curl --data sends forms without saying so.
        assert_eq!(parse(None, "a=1").unwrap(), json!({"a": "1"}));
        assert_eq!(parse(None, "").unwrap(), json!({}));
    }

    #[test]
    fn json_bodies_and_refusals() {
        assert_eq!(
            parse(Some("application/json"), r#"{"paths":["/a"]}"#).unwrap(),
            json!({"paths": ["/a"]})
        );
        assert!(matches!(
            parse(Some("application/json"), "[1]"),
            Err(AdminError::BadBody(_))
        ));
        assert!(matches!(
            parse(Some("text/plain"), "x"),
            Err(AdminError::BadBody(_))
        ));
        assert!(parse(None, "a=1&a.b=2").is_err());
    }
}
