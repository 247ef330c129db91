//! Finding the line of a field path in a YAML document, for errors found below a value that
//! was read whole (a plugin's `config`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `services[0].plugins[1].config.minute` as steps.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key.to_owned()));
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            match index.parse() {
                Ok(i) => out.push(Step::Index(i)),
                Err(_) => out.push(Step::Key(index.to_owned())),
            }
        }
    }
    out
}

/// The 1-based line and column of the value at `path` in `text`, if it is there.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let steps = steps(path);
    let found = Find(&steps).deserialize(serde_norway::Deserializer::from_str(text));
    match found {
        // The node was reached: its position is the error's.
        Err(err) if err.to_string().contains(HERE) => {
            err.location().map(|l| (l.line(), l.column()))
        }
        _ => None,
    }
}

const HERE: &str = "\u{1f}here";

/// Walks down `steps`; at the end, fails with [`HERE`] so that the parser marks the node.
struct Find<'a>(&'a [Step]);

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.first() {
            None => d.deserialize_any(Here),
            Some(Step::Key(_)) => d.deserialize_map(self),
            Some(Step::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(wanted), rest)) = self.0.split_first() else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<String>()? {
            if &key == wanted {
                return map.next_value_seed(Find(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(wanted), rest)) = self.0.split_first() else {
            return Ok(());
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Find(rest)).map(drop)
    }

    // A scalar where the path goes deeper: not found.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Fails on whatever it is given.
struct Here;

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

/// A YAML parse error's message with a nested path (see [`FieldError::nested`]) joined into
/// one path, and the line and column of that path when it can be found.
///
/// [`FieldError::nested`]: super::FieldError::nested
pub(crate) fn unnest(
    text: &str,
    message: &str,
    location: Option<(usize, usize)>,
) -> (String, Option<(usize, usize)>) {
    use crate::lenient::NESTED;
    let Some((before, rest)) = message.split_once(NESTED) else {
        return (message.to_owned(), location);
    };
    let Some((inner, detail)) = rest.split_once(NESTED) else {
        return (message.to_owned(), location);
    };
    let outer = before.trim_end().trim_end_matches(':');
    let path = match (outer.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_owned(),
        (false, true) => outer.to_owned(),
        (false, false) => format!("{outer}.{inner}"),
    };
    // The parser placed the error at the enclosing value; the path's own node is better.
    let mut detail = detail.to_owned();
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = detail.strip_suffix(&suffix) {
            detail = stripped.to_owned();
        }
    }
    let location = locate(text, &path).or(location);
    let message = match location {
        Some((line, column)) => format!("{path}: {detail} at line {line} column {column}"),
        None => format!("{path}: {detail}"),
    };
    (message, location)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
services:
  - name: a
    plugins:
      - name: p
        config:
          limit: 10
          nested: { deep: true }
";

    #[test]
    fn a_field_path_is_found_at_its_line_and_column() {
        assert_eq!(
            locate(DOC, "services[0].plugins[0].config.limit"),
            Some((6, 18))
        );
        assert_eq!(
            locate(DOC, "services[0].plugins[0].config.nested.deep"),
            Some((7, 27))
        );
        assert_eq!(locate(DOC, "services[0].name"), Some((2, 11)));
        assert_eq!(locate(DOC, "services[0].plugins[1]"), None);
        assert_eq!(locate(DOC, "services[0].nope"), None);
    }

    #[test]
    fn a_nested_message_becomes_one_path_at_its_line() {
        let message = format!(
            "services[0].plugins[0]: {NESTED}config.limit{NESTED}must be positive at line 4 column 9",
            NESTED = crate::lenient::NESTED
        );
        let (message, location) = unnest(DOC, &message, Some((4, 9)));
        assert_eq!(
            message,
            "services[0].plugins[0].config.limit: must be positive at line 6 column 18"
        );
        assert_eq!(location, Some((6, 18)));
    }
}
