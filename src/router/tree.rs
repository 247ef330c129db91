//! The path tree: one node per path segment, so a lookup costs the length of the path, not the
//! number of routes.

use std::ops::Range;
use std::sync::Arc;

use super::path::{MAX_PARAMS, PathPattern, Segment};

/// One path pattern of one route, stored at the node where the pattern ends.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) route: usize,
    pub(crate) literal_len: usize,
    pub(crate) exact: bool,
    pub(crate) needs_slash: bool,
    pub(crate) catch_all: bool,
    pub(crate) params: Arc<[Arc<str>]>,
}

/// Where a pattern matched: how much of the path its prefix covers and what it captured.
#[derive(Debug)]
pub(crate) struct Hit<'a> {
    /// Bytes of the path covered by the pattern (the whole path for exact patterns).
    pub(crate) consumed: usize,
    /// `{param}` captures, in order.
    pub(crate) captures: &'a [Range<usize>],
    /// The `{*rest}` capture, for catch-all patterns.
    pub(crate) rest: Option<Range<usize>>,
}

/// A node of the tree: children by literal segment (sorted, binary-searched), one child for
/// `{param}` segments, and the patterns that end here.
#[derive(Debug, Default)]
pub(crate) struct Node {
    statics: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    prefixes: Vec<Entry>,
    exacts: Vec<Entry>,
}

// === impl Node ===

impl Node {
    pub(crate) fn insert(&mut self, pattern: &PathPattern, route: usize) {
        let mut node = self;
        for segment in &pattern.segments {
            node = match segment {
                Segment::Literal(text) => {
                    let at = match node.statics.binary_search_by(|(k, _)| (**k).cmp(&**text)) {
                        Ok(at) => at,
                        Err(at) => {
                            node.statics.insert(at, (text.clone(), Node::default()));
                            at
                        }
                    };
                    &mut node.statics[at].1
                }
                Segment::Param => node.param.get_or_insert_with(Default::default),
            };
        }
        let entry = Entry {
            route,
            literal_len: pattern.literal_len,
            exact: pattern.exact,
            needs_slash: pattern.needs_slash,
            catch_all: pattern.catch_all,
            params: pattern.params.clone(),
        };
        if pattern.exact {
            node.exacts.push(entry);
        } else {
            node.prefixes.push(entry);
        }
    }

    /// Calls `visit` for every pattern in the tree that matches `path`.
    pub(crate) fn walk<'t>(&'t self, path: &str, visit: &mut impl FnMut(&'t Entry, Hit<'_>)) {
        let mut captures: [Range<usize>; MAX_PARAMS] = Default::default();
        self.walk_from(path, 0, &mut captures, 0, visit);
    }

    fn walk_from<'t>(
        &'t self,
        path: &str,
        offset: usize,
        captures: &mut [Range<usize>; MAX_PARAMS],
        taken: usize,
        visit: &mut impl FnMut(&'t Entry, Hit<'_>),
    ) {
        // `rest` is empty or starts with '/': every step consumes whole segments.
        let rest = &path[offset..];
        for entry in &self.prefixes {
            if entry.needs_slash && !rest.starts_with('/') {
                continue;
            }
            let rest_capture = entry.catch_all.then(|| {
                let start = (offset + 1).min(path.len());
                start..path.len()
            });
            visit(
                entry,
                Hit {
                    consumed: offset,
                    captures: &captures[..taken],
                    rest: rest_capture,
                },
            );
        }
        if rest.is_empty() {
            for entry in &self.exacts {
                visit(
                    entry,
                    Hit {
                        consumed: offset,
                        captures: &captures[..taken],
                        rest: None,
                    },
                );
            }
            return;
        }
        let after_slash = &rest[1..];
        let segment = after_slash.split('/').next().unwrap_or(after_slash);
        let next = offset + 1 + segment.len();
        if let Ok(at) = self.statics.binary_search_by(|(k, _)| (**k).cmp(segment)) {
            self.statics[at]
                .1
                .walk_from(path, next, captures, taken, visit);
        }
        if let Some(param) = &self.param
            && !segment.is_empty()
            && taken < MAX_PARAMS
        {
            captures[taken] = offset + 1..next;
            param.walk_from(path, next, captures, taken + 1, visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(patterns: &[&str]) -> Node {
        let mut root = Node::default();
        for (i, p) in patterns.iter().enumerate() {
            root.insert(&PathPattern::parse(p).unwrap(), i);
        }
        root
    }

    fn hits(root: &Node, path: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        root.walk(path, &mut |e, hit| out.push((e.route, hit.consumed)));
        out.sort();
        out
    }

    #[test]
    fn prefixes_match_on_segment_boundaries_only() {
        let root = tree(&["/api"]);
        assert_eq!(hits(&root, "/api"), [(0, 4)]);
        assert_eq!(hits(&root, "/api/x/y"), [(0, 4)]);
        assert_eq!(hits(&root, "/api/"), [(0, 4)]);
        assert!(hits(&root, "/apix").is_empty());
        assert!(hits(&root, "/").is_empty());
    }

    #[test]
    fn a_trailing_slash_prefix_needs_the_slash() {
        let root = tree(&["/api/"]);
        assert!(hits(&root, "/api").is_empty());
        assert_eq!(hits(&root, "/api/x"), [(0, 4)]);
    }

    #[test]
    fn every_matching_pattern_is_visited() {
        let root = tree(&[
            "/",
            "/api",
            "/api/users/{id}",
            "/api/users/*",
            "/api/{x}/{y}",
        ]);
        assert_eq!(
            hits(&root, "/api/users/7"),
            [(0, 0), (1, 4), (2, 12), (3, 10), (4, 12)]
        );
        assert_eq!(hits(&root, "/api/users/7/x"), [(0, 0), (1, 4), (3, 10)]);
    }

    #[test]
    fn captures_point_into_the_path() {
        let root = tree(&["/users/{id}/posts/{post}", "/files/{*rest}"]);
        let path = "/users/42/posts/abc";
        root.walk(path, &mut |_, hit| {
            let got: Vec<_> = hit.captures.iter().map(|r| &path[r.clone()]).collect();
            assert_eq!(got, ["42", "abc"]);
        });
        let path = "/files/a/b.txt";
        root.walk(path, &mut |_, hit| {
            assert_eq!(&path[hit.rest.clone().unwrap()], "a/b.txt");
        });
    }

    #[test]
    fn params_never_match_empty_segments() {
        let root = tree(&["/users/{id}"]);
        assert!(hits(&root, "/users/").is_empty());
        assert!(hits(&root, "/users//").is_empty());
    }
}
