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
///
/// Any other `~` path is a [`RegexPath`].
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
            Some(regex) => (
                literal_regex(regex).ok_or_else(|| err("a regex path is not a literal path"))?,
                true,
            ),
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

impl PathPattern {
    /// Literal segments only, matched as a prefix (no captures, not exact, no trailing-slash
    /// rule): what Kong's router matches as a raw string prefix.
    pub(crate) fn is_plain_prefix(&self) -> bool {
        !self.exact && !self.catch_all && self.params.is_empty()
    }
}

/// A `paths` entry: a pattern of the path tree, or a regular expression.
#[derive(Debug, Clone)]
pub(crate) enum ParsedPath {
    Tree(PathPattern),
    Regex(RegexPath),
}

impl ParsedPath {
    /// `~` followed by a regex is a [`RegexPath`], unless the regex is a literal exact path
    /// (`~/api/health$`), which the tree matches faster; everything else is a tree pattern.
    pub(crate) fn parse(raw: &str) -> Result<Self, RouteError> {
        match raw.strip_prefix('~') {
            Some(regex) if literal_regex(regex).is_none() => {
                RegexPath::parse(raw, regex).map(Self::Regex)
            }
            _ => PathPattern::parse(raw).map(Self::Tree),
        }
    }
}

/// A regex path (Kong's `~` paths): matched from the start of the request path (Kong anchors
/// it there), not necessarily to its end. Named groups are captures by their names, the others
/// by their numbers (`1`, `2`, …), as Kong's `uri_captures`.
#[derive(Debug, Clone)]
pub(crate) struct RegexPath {
    pub(crate) regex: regex::Regex,
    /// The name of every group after the whole match, in order.
    pub(crate) params: Arc<[Arc<str>]>,
}

impl RegexPath {
    fn parse(raw: &str, regex: &str) -> Result<Self, RouteError> {
        let invalid = |reason: &'static str| RouteError::InvalidPath {
            path: raw.to_owned(),
            reason,
        };
        if !regex.starts_with('/') && !regex.starts_with("^/") {
            return Err(invalid("a regex path must start with `/` (after `~`)"));
        }
        let anchored = format!("^(?:{})", regex.strip_prefix('^').unwrap_or(regex));
        let regex = regex::RegexBuilder::new(&anchored)
            // Bounded compile size: a configuration cannot make the router huge.
            .size_limit(1 << 20)
            .build()
            .map_err(|e| RouteError::InvalidRegex {
                path: raw.to_owned(),
                reason: e.to_string(),
            })?;
        let params: Vec<Arc<str>> = regex
            .capture_names()
            .enumerate()
            .skip(1)
            .map(|(i, name)| Arc::from(name.map_or_else(|| i.to_string(), str::to_owned)))
            .collect();
        if params.len() > MAX_PARAMS {
            return Err(invalid("a path may have at most 16 parameters"));
        }
        Ok(Self {
            regex,
            params: params.into(),
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
            "/a b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn regex_paths_compile_anchored_with_their_captures_named() {
        let ParsedPath::Regex(p) = ParsedPath::parse(r"~/users/(?<id>\d+)/(\w+)$").unwrap() else {
            panic!("not a regex");
        };
        assert!(p.regex.is_match("/users/7/orders"));
        assert!(
            !p.regex.is_match("/v1/users/7/orders"),
            "anchored at the start"
        );
        assert_eq!(
            p.params.iter().map(|n| &**n).collect::<Vec<_>>(),
            ["id", "2"]
        );
        assert!(ParsedPath::parse(r"~/users/(\d+").is_err());
        assert!(ParsedPath::parse(r"~users/\d+").is_err());
        assert!(matches!(
            ParsedPath::parse("~/api/health$").unwrap(),
            ParsedPath::Tree(_)
        ));
    }

    #[test]
    fn root_is_a_prefix_of_everything() {
        let p = PathPattern::parse("/").unwrap();
        assert!(p.segments.is_empty() && !p.exact && !p.needs_slash);
    }
}
