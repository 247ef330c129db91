//! Request bodies an authenticator can read a credential from: the three kinds Kong's
//! `kong.request.get_body()` understands (form-urlencoded, JSON, multipart form data).

use bytes::Bytes;
use http::{HeaderMap, header};

use super::headers::pair_name;

/// A body kind Kong reads arguments from; anything else holds no credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormKind {
    UrlEncoded,
    Json,
    Multipart { boundary: String },
}

impl FormKind {
    /// The kind named by the request's `Content-Type`.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mut params = content_type.split(';');
        let essence = params.next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-www-form-urlencoded" => Some(Self::UrlEncoded),
            "multipart/form-data" => params.find_map(|p| {
                let (name, value) = p.split_once('=')?;
                let boundary = value.trim().trim_matches('"');
                (name.trim().eq_ignore_ascii_case("boundary") && !boundary.is_empty()).then(|| {
                    Self::Multipart {
                        boundary: boundary.to_owned(),
                    }
                })
            }),
            json if json == "application/json" || json.ends_with("+json") => Some(Self::Json),
            _ => None,
        }
    }
}

/// One top-level field of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Text(String),
    /// A JSON array or object, which Kong counts as several keys.
    Nested,
}

/// The top-level fields of `body`; none when it does not parse as `kind`.
pub(crate) fn fields(kind: &FormKind, body: &[u8]) -> Vec<(String, Field)> {
    match kind {
        FormKind::UrlEncoded => std::str::from_utf8(body)
            .map(|text| {
                form_urlencoded::parse(text.as_bytes())
                    .map(|(key, value)| (key.into_owned(), Field::Text(value.into_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        FormKind::Json => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(members)) => members
                .into_iter()
                .filter_map(|(name, value)| match value {
                    serde_json::Value::String(text) => Some((name, Field::Text(text))),
                    serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                        Some((name, Field::Nested))
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        FormKind::Multipart { boundary } => multipart(body, boundary)
            .map(|parts| {
                parts
                    .into_iter()
                    .filter(|part| !part.file)
                    .filter_map(|part| {
                        let value = std::str::from_utf8(&body[part.value]).ok()?;
                        Some((part.name?, Field::Text(value.to_owned())))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `body` without its top-level fields named in `names`, or `None` when it has none of them
/// (or does not parse).
pub(crate) fn without(kind: &FormKind, body: &[u8], names: &[String]) -> Option<Bytes> {
    let named = |key: &str| names.iter().any(|n| n == key);
    match kind {
        FormKind::UrlEncoded => {
            let text = std::str::from_utf8(body).ok()?;
            let pairs: Vec<&str> = text.split('&').collect();
            let kept: Vec<&str> = pairs
                .iter()
                .copied()
                .filter(|pair| !pair_name(pair).is_some_and(|k| named(&k)))
                .collect();
            (kept.len() != pairs.len()).then(|| Bytes::from(kept.join("&")))
        }
        FormKind::Json => {
            let serde_json::Value::Object(mut members) = serde_json::from_slice(body).ok()? else {
                return None;
            };
            let before = members.len();
            members.retain(|key, _| !named(key));
            (members.len() != before)
                .then(|| Bytes::from(serde_json::Value::Object(members).to_string()))
        }
        FormKind::Multipart { boundary } => {
            let parts = multipart(body, boundary)?;
            if !parts.iter().any(|p| p.name.as_deref().is_some_and(named)) {
                return None;
            }
            let mut out = Vec::with_capacity(body.len());
            out.extend_from_slice(&body[..parts.first()?.whole.start]);
            for part in parts
                .iter()
                .filter(|p| !p.name.as_deref().is_some_and(named))
            {
                out.extend_from_slice(&body[part.whole.clone()]);
            }
            out.extend_from_slice(&body[parts.last()?.whole.end..]);
            Some(Bytes::from(out))
        }
    }
}

/// One part of a multipart body.
#[derive(Debug)]
struct Part {
    /// From its delimiter up to the next delimiter (the line break before it included).
    whole: std::ops::Range<usize>,
    name: Option<String>,
    file: bool,
    value: std::ops::Range<usize>,
}

/// The parts of a multipart body (RFC 7578), or `None` when it is malformed.
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let next = |from: usize| -> Option<usize> {
        // A delimiter starts the body or follows a line break.
        (from..=body.len().checked_sub(delimiter.len())?)
            .find(|&i| body[i..].starts_with(delimiter) && (i == 0 || body[..i].ends_with(b"\r\n")))
    };
    let mut at = next(0)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            // The close delimiter: what follows is the epilogue.
            return Some(parts);
        }
        let line_end = after + find(&body[after..], b"\r\n")?;
        let content = line_end + 2;
        let end = next(content)?;
        // The line break before the next delimiter belongs to it.
        let part_end = end.checked_sub(2)?.max(content);
        let head_end = content + find(&body[content..part_end.max(content)], b"\r\n\r\n")?;
        let (name, file) = disposition(&body[content..head_end]);
        parts.push(Part {
            whole: at..end,
            name,
            file,
            value: (head_end + 4).min(part_end)..part_end,
        });
        at = end;
    }
}

/// The field name in a part's `Content-Disposition`, and whether the part is a file.
fn disposition(head: &[u8]) -> (Option<String>, bool) {
    let Ok(head) = std::str::from_utf8(head) else {
        return (None, false);
    };
    let Some(value) = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    }) else {
        return (None, false);
    };
    let mut name = None;
    let mut file = false;
    for param in value.split(';').skip(1) {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value.trim().trim_matches('"').to_owned()),
            "filename" | "filename*" => file = true,
            _ => {}
        }
    }
    (name, file)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(content_type: &str) -> Option<FormKind> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        FormKind::of(&headers)
    }

    fn text(fields: &[(String, Field)], name: &str) -> Vec<String> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, f)| match f {
                Field::Text(t) => Some(t.clone()),
                Field::Nested => None,
            })
            .collect()
    }

    const MULTIPART: &str = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\ncontent-disposition: form-data; name=\"apikey\"\r\n\r\nk-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\nContent-Type: text/plain\r\n\r\nfile\r\nbody\r\n--XyZ--\r\nepilogue";

    #[test]
    fn the_three_kinds_are_recognised_by_content_type() {
        assert_eq!(
            kind("application/x-www-form-urlencoded; charset=utf-8"),
            Some(FormKind::UrlEncoded)
        );
        assert_eq!(kind("Application/JSON"), Some(FormKind::Json));
        assert_eq!(kind("application/vnd.api+json"), Some(FormKind::Json));
        assert_eq!(
            kind("multipart/form-data; boundary=\"XyZ\""),
            Some(FormKind::Multipart {
                boundary: "XyZ".into()
            })
        );
        assert_eq!(kind("multipart/form-data"), None);
        assert_eq!(kind("text/plain"), None);
    }

    #[test]
    fn fields_are_read_from_each_kind() {
        let form = fields(&FormKind::UrlEncoded, b"a=1&apikey=k%2B1&b");
        assert_eq!(text(&form, "apikey"), ["k+1"]);
        let json = fields(&FormKind::Json, br#"{"apikey":"k-1","n":5,"list":["x"]}"#);
        assert_eq!(text(&json, "apikey"), ["k-1"]);
        assert!(json.iter().all(|(n, _)| n != "n"));
        assert!(json.contains(&("list".into(), Field::Nested)));
        let multi = FormKind::Multipart {
            boundary: "XyZ".into(),
        };
        let parts = fields(&multi, MULTIPART.as_bytes());
        assert_eq!(text(&parts, "apikey"), ["k-1"]);
        assert_eq!(text(&parts, "a"), ["1"]);
        assert!(text(&parts, "f").is_empty(), "files are not fields");
        assert!(fields(&FormKind::Json, b"[1]").is_empty());
        assert!(fields(&multi, b"no delimiter here").is_empty());
    }

    #[test]
    fn named_fields_are_removed_and_the_rest_kept_byte_for_byte() {
        let names = ["apikey".to_owned()];
        let form = without(&FormKind::UrlEncoded, b"a=1&apikey=k&b=%20", &names).unwrap();
        assert_eq!(&form[..], b"a=1&b=%20");
        assert!(without(&FormKind::UrlEncoded, b"a=1", &names).is_none());
        let json = without(&FormKind::Json, br#"{"apikey":"k","a":1}"#, &names).unwrap();
        assert_eq!(&json[..], br#"{"a":1}"#);
        let multi = FormKind::Multipart {
            boundary: "XyZ".into(),
        };
        let body = without(&multi, MULTIPART.as_bytes(), &names).unwrap();
        let expected = MULTIPART.replace(
            "--XyZ\r\ncontent-disposition: form-data; name=\"apikey\"\r\n\r\nk-1\r\n",
            "",
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
        let left = fields(&multi, &body);
        assert!(text(&left, "apikey").is_empty());
        assert_eq!(text(&left, "a"), ["1"]);
    }
}
