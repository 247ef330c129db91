//! Path patterns: the `paths` of a route.

use std::sync::Arc;

use super::RouteError;

/// The most `{param}` and `{*rest}` captures one path may have.
pub(crate) const MAX_PARAMS: usize = 16;

/// One segment of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches exactly this text.
    Literal(Box<str>),
    /// `{name}`: matches any non-empty segment.
    Param,
}

/// A parsed path pattern.
///
/// | written | kind | matches |
/// | --- | --- | --- |
/// | `/api` | prefix (Kong's plain path) | `/api`, `/api/`, `/api/x/y`; not `/apix` |
/// | `/api/` | prefix ending in a slash | `/api/`, `/api/x`; not `/api` |
/// | `/api/users/*`, `/api/users/{*rest}` | prefix with the rest captured | `/api/users`, `/api/users/5/x` |
/// | `/api/users/{id}` | exact shape | `/api/users/5`; not `/api/users/5/x` |
/// | `~/api/health$` | exact (Kong's regex idiom, literal text only) | `/api/health` only |
#[derive(Debug, Clone)]
pub(crate) struct PathPattern {
    pub(crate) segments: Vec<Segment>,
    /// Names of the captures, in order (`{*rest}` last, if any).
    pub(crate) params: Arc<[Arc<str>]>,
    /// Whether the pattern matches only paths of exactly its shape.
    pub(crate) exact: bool,
    /// A prefix written with a trailing slash: the remainder must start with `/`.
    pub(crate) needs_slash: bool,
    /// Whether the last capture is a `{*rest}` catch-all.
    pub(crate) catch_all: bool,
    /// Bytes of literal text, the measure of specificity between patterns.
    pub(crate) literal_len: usize,
}

// === impl PathPattern ===

impl PathPattern {
    pub(crate) fn parse(raw: &str) -> Result<Self, RouteError> {
        let err = |reason: &'static str| RouteError::InvalidPath {
            path: raw.to_owned(),
            reason,
        };
        let (text, mut exact) = match raw.strip_prefix('~') {
            Some(regex) => (literal_regex(regex).ok_or_else(|| {
                err("regex paths are not supported yet; only the exact-match form `~/literal/path$` is")
            })?, true),
            None => (raw, false),
        };
        if !text.starts_with('/') {
            return Err(err("a path must start with `/`"));
        }
        if text.contains(['?', '#']) || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(err(
                "a path must not contain `?`, `#`, spaces or control characters",
            ));
        }

        let mut segments = Vec::new();
        let mut params: Vec<Arc<str>> = Vec::new();
        let mut catch_all = false;
        let mut needs_slash = false;
        let body = &text[1..];
        if !body.is_empty() {
            let parts: Vec<&str> = body.split('/').collect();
            let last = parts.len() - 1;
            for (i, part) in parts.iter().enumerate() {
                if catch_all {
                    return Err(err(
                        "a catch-all (`*` or `{*name}`) must be the last segment",
                    ));
                }
                match *part {
                    "*" if !exact => {
                        catch_all = true;
                        params.push(Arc::from("*"));
                    }
                    "" if i == last && !exact && i > 0 => needs_slash = true,
                    p if p.starts_with('{') && p.ends_with('}') && !exact => {
                        let name = &p[1..p.len() - 1];
                        let (name, is_rest) = match name.strip_prefix('*') {
                            Some(rest) => (rest, true),
                            None => (name, false),
                        };
                        if name.is_empty()
                            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        {
                            return Err(err(
                                "a parameter name must be letters, digits or `_`, as in `{id}`",
                            ));
                        }
                        if params.iter().any(|n| &**n == name) {
                            return Err(err("a parameter name is used twice"));
                        }
                        params.push(Arc::from(name));
                        if is_rest {
                            catch_all = true;
                        } else {
                            segments.push(Segment::Param);
                        }
                    }
                    p if !exact && (p.contains('{') || p.contains('}') || p.contains('*')) => {
                        return Err(err(
                            "`{`, `}` and `*` may only form a whole segment: `{name}`, `{*name}` or `*`",
                        ));
                    }
                    p => segments.push(Segment::Literal(p.into())),
                }
            }
        }
        if params.len() > MAX_PARAMS {
            return Err(err("a path may have at most 16 parameters"));
        }
        // A shape with parameters and no catch-all is matched exactly, as in axum and matchit.
        if !catch_all && segments.contains(&Segment::Param) {
            exact = true;
        }
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.len() + 1,
                Segment::Param => 1,
            })
            .sum::<usize>()
            + usize::from(needs_slash);
        Ok(Self {
            segments,
            params: params.into(),
            exact,
            needs_slash,
            catch_all,
            literal_len,
        })
    }
}

/// `/literal/path$` (Kong's regex idiom for an exact path) → `/literal/path`, if the regex has
/// no metacharacters besides the final anchor.
fn literal_regex(regex: &str) -> Option<&str> {
    let regex = regex.strip_prefix('^').unwrap_or(regex);
    let text = regex.strip_suffix('$')?;
    let meta = |c: char| "\\.+*?()|[]{}^$".contains(c);
    (!text.contains(meta)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_prefixes() {
        let p = PathPattern::parse("/api/users").unwrap();
        assert!(!p.exact && !p.catch_all && !p.needs_slash);
        assert_eq!(p.literal_len, "/api/users".len());
    }

    #[test]
    fn the_seed_forms_parse() {
        let star = PathPattern::parse("/api/users/*").unwrap();
        assert!(star.catch_all && !star.exact);
        assert_eq!(star.segments.len(), 2);
        let param = PathPattern::parse("/api/users/{id}").unwrap();
        assert!(param.exact);
        assert_eq!(&*param.params[0], "id");
    }

    #[test]
    fn literal_kong_regex_is_an_exact_path() {
        let p = PathPattern::parse("~/api/health$").unwrap();
        assert!(p.exact);
        assert_eq!(
            p.segments,
            [
                Segment::Literal("api".into()),
                Segment::Literal("health".into())
            ]
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in [
            "api",
            "/a/{*rest}/b",
            "/a/{}",
            "/a/{x}/{x}",
            "/a/x{id}",
            "~/users/\\d+$",
            "/a b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn root_is_a_prefix_of_everything() {
        let p = PathPattern::parse("/").unwrap();
        assert!(p.segments.is_empty() && !p.exact && !p.needs_slash);
    }
}
