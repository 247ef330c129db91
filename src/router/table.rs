//! The compiled routing table: host dispatch, then the path tree, then the remaining conditions
//! and the precedence rules.

use std::cmp::Reverse;
use std::ops::Range;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Request};

use super::host::{HostPattern, split_port};
use super::path::{MAX_PARAMS, ParsedPath, PathPattern, RegexPath};
use super::route::RouteNames;
use super::tree::{Entry, Hit, Node};
use super::{Route, RouteError, RouteMatch};

/// A route after validation.
#[derive(Debug)]
struct Compiled {
    /// The names, shared by every match of the route (one reference count per request).
    names: Arc<RouteNames>,
    methods: Vec<Method>,
    hosts: Vec<HostPattern>,
    headers: Vec<(HeaderName, Vec<String>)>,
    strip_path: bool,
    regex_priority: i32,
}

/// Routes compiled for lookup. Routes with hosts live in per-host trees, the others in one
/// default tree, so that neither hosts nor paths are scanned linearly.
#[derive(Debug, Default)]
pub(crate) struct Table {
    routes: Vec<Compiled>,
    /// Exact hosts (lower case), sorted for binary search.
    exact_hosts: Vec<(Box<str>, Node)>,
    /// Wildcard hosts, most specific first.
    wildcard_hosts: Vec<(HostPattern, Node)>,
    /// Routes without a host condition.
    any_host: Node,
    /// Regex paths, every route's, tried in turn (only when a configuration has them).
    regexes: Vec<(usize, RegexPath)>,
    /// Kong's matching: plain paths as raw string prefixes, by length (one hash lookup per
    /// distinct length), and no `405`.
    kong: bool,
    raw_prefixes: Vec<(usize, RawPrefixes)>,
}

/// Raw string prefixes of one length, each with the routes that have it.
type RawPrefixes = std::collections::HashMap<Box<str>, Vec<usize>>;

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The route at this index matched.
    Found(usize, RouteMatch),
    /// Routes matched everything but the method; these methods would have.
    MethodNotAllowed(Vec<Method>),
    /// Nothing matched.
    NotFound,
}

/// Precedence, compared field by field; the larger key wins. See the module docs.
type Key = (
    (u8, usize),
    bool,
    i32,
    usize,
    bool,
    bool,
    usize,
    Reverse<usize>,
);

/// One path that matched, from the tree or a regex: what ranks it.
struct Candidate<'a> {
    route: usize,
    regex: bool,
    literal_len: usize,
    exact: bool,
    names: &'a [Arc<str>],
}

/// A candidate's captures (up to [`MAX_PARAMS`], then a catch-all) and where `strip_path`
/// cuts the path: worked out only for a candidate that ranks best so far.
type Captured = ([Range<usize>; MAX_PARAMS + 1], usize);

#[derive(Debug)]
struct Best<'t> {
    key: Key,
    route: usize,
    strip_at: usize,
    remainder_empty: bool,
    captures: [Range<usize>; MAX_PARAMS + 1],
    names: &'t [Arc<str>],
}

// === impl Table ===

impl Table {
    #[cfg(test)]
    pub(crate) fn new(routes: &[Route]) -> Result<Self, RouteError> {
        Self::build(routes, false)
    }

    pub(crate) fn build(routes: &[Route], kong: bool) -> Result<Self, RouteError> {
        let mut table = Table {
            kong,
            ..Table::default()
        };
        for (index, route) in routes.iter().enumerate() {
            if route.paths.is_empty()
                && route.hosts.is_empty()
                && route.methods.is_empty()
                && route.headers.is_empty()
            {
                return Err(RouteError::NoCondition(route.display_name(index)));
            }
            let mut paths = Vec::new();
            for raw in &route.paths {
                match ParsedPath::parse(raw)? {
                    ParsedPath::Tree(pattern) if kong && pattern.is_plain_prefix() => {
                        table.raw_prefix(raw, index);
                    }
                    ParsedPath::Tree(pattern) => paths.push(pattern),
                    ParsedPath::Regex(regex) => table.regexes.push((index, regex)),
                }
            }
            if route.paths.is_empty() {
                paths.push(PathPattern::parse("/")?);
            }
            let hosts = route
                .hosts
                .iter()
                .map(|h| HostPattern::parse(h))
                .collect::<Result<Vec<_>, _>>()?;
            for (name, values) in &route.headers {
                if name == http::header::HOST {
                    return Err(RouteError::InvalidHeader {
                        name: name.to_string(),
                        reason: "match hosts with `hosts`, not a header condition",
                    });
                }
                if values.is_empty() {
                    return Err(RouteError::InvalidHeader {
                        name: name.to_string(),
                        reason: "at least one value is needed",
                    });
                }
            }

            if hosts.is_empty() {
                for path in &paths {
                    table.any_host.insert(path, index);
                }
            }
            for host in &hosts {
                let node = table.host_node(host);
                for path in &paths {
                    node.insert(path, index);
                }
            }
            table.routes.push(Compiled {
                names: Arc::new(RouteNames {
                    name: route.name.as_deref().map(Arc::from),
                    service: route.service.as_deref().map(Arc::from),
                }),
                methods: route.methods.clone(),
                hosts,
                headers: route.headers.clone(),
                strip_path: route.strip_path,
                regex_priority: route.regex_priority,
            });
        }
        table
            .wildcard_hosts
            .sort_by_key(|(pattern, _)| Reverse(pattern.rank()));
        Ok(table)
    }

    fn raw_prefix(&mut self, prefix: &str, route: usize) {
        let at = match self
            .raw_prefixes
            .binary_search_by_key(&prefix.len(), |(len, _)| *len)
        {
            Ok(at) => at,
            Err(at) => {
                self.raw_prefixes
                    .insert(at, (prefix.len(), Default::default()));
                at
            }
        };
        let routes = self.raw_prefixes[at].1.entry(prefix.into()).or_default();
        routes.push(route);
    }

    fn host_node(&mut self, host: &HostPattern) -> &mut Node {
        match host {
            HostPattern::Exact { host: name, .. } => {
                let at = match self
                    .exact_hosts
                    .binary_search_by(|(k, _)| (**k).cmp(&**name))
                {
                    Ok(at) => at,
                    Err(at) => {
                        self.exact_hosts.insert(at, (name.clone(), Node::default()));
                        at
                    }
                };
                &mut self.exact_hosts[at].1
            }
            wildcard => {
                let at = match self.wildcard_hosts.iter().position(|(p, _)| p == wildcard) {
                    Some(at) => at,
                    None => {
                        self.wildcard_hosts
                            .push((wildcard.clone(), Node::default()));
                        self.wildcard_hosts.len() - 1
                    }
                };
                &mut self.wildcard_hosts[at].1
            }
        }
    }

    /// Finds the route for `req`.
    pub(crate) fn lookup<B>(&self, req: &Request<B>) -> Lookup {
        let (host, port) = request_host(req);
        let path = req.uri().path();
        let mut search = Search {
            table: self,
            method: req.method(),
            headers: req.headers(),
            host,
            port,
            best: None,
            allowed: Vec::new(),
        };

        // Host specificity comes first: a match in a more specific host group always wins.
        if let Some(host) = host {
            if let Some((_, node)) = self.exact_host_node(host) {
                node.walk(path, &mut |e, hit| search.consider(e, hit, path));
            }
            if search.best.is_none() {
                for (pattern, node) in &self.wildcard_hosts {
                    if pattern.matches(host, port) {
                        node.walk(path, &mut |e, hit| search.consider(e, hit, path));
                    }
                }
            }
        }
        if search.best.is_none() {
            self.any_host
                .walk(path, &mut |e, hit| search.consider(e, hit, path));
        }
        for (route, regex) in &self.regexes {
            search.consider_regex(*route, regex, path);
        }
        for (len, prefixes) in &self.raw_prefixes {
            let Some(routes) = path.get(..*len).and_then(|p| prefixes.get(p)) else {
                continue;
            };
            for &route in routes {
                search.consider_raw_prefix(route, *len, path);
            }
        }

        match search.best {
            Some(best) => {
                let route = &self.routes[best.route];
                // Empty for routes without captures: no allocation.
                let params = best
                    .names
                    .iter()
                    .cloned()
                    .zip(best.captures.iter().cloned())
                    .collect();
                let stripped_len = if route.strip_path { best.strip_at } else { 0 };
                Lookup::Found(
                    best.route,
                    RouteMatch {
                        names: route.names.clone(),
                        original_uri: req.uri().clone(),
                        stripped_len,
                        remainder_empty: route.strip_path && best.remainder_empty,
                        params,
                    },
                )
            }
            None if !search.allowed.is_empty() && !self.kong => {
                let mut allowed = search.allowed;
                allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                allowed.dedup();
                Lookup::MethodNotAllowed(allowed)
            }
            None => Lookup::NotFound,
        }
    }

    fn exact_host_node(&self, host: &str) -> Option<&(Box<str>, Node)> {
        self.exact_hosts
            .binary_search_by(|(k, _)| cmp_ignore_ascii_case(k, host))
            .ok()
            .map(|at| &self.exact_hosts[at])
    }
}

/// The state of one lookup: the best match so far, and the methods of near misses.
struct Search<'a> {
    table: &'a Table,
    method: &'a Method,
    headers: &'a HeaderMap,
    host: Option<&'a str>,
    port: Option<u16>,
    best: Option<Best<'a>>,
    allowed: Vec<Method>,
}

impl<'a> Search<'a> {
    fn consider(&mut self, entry: &'a Entry, hit: Hit<'_>, path: &str) {
        let candidate = Candidate {
            route: entry.route,
            regex: false,
            literal_len: entry.literal_len,
            exact: entry.exact,
            names: &entry.params,
        };
        self.offer(candidate, path, || {
            let mut captures: [Range<usize>; MAX_PARAMS + 1] = Default::default();
            captures[..hit.captures.len()].clone_from_slice(hit.captures);
            if let Some(rest) = hit.rest.clone() {
                captures[hit.captures.len()] = rest;
            }
            // `strip_path` removes the literal part of the pattern: everything before the
            // first capture, or the whole matched prefix.
            let strip_at = hit.captures.first().map_or(hit.consumed, |c| c.start - 1);
            (captures, strip_at)
        });
    }

    /// A regex path: its match, if any, competes with the tree's; `strip_path` removes the
    /// whole matched part, as Kong does.
    fn consider_regex(&mut self, route: usize, regex: &'a RegexPath, path: &str) {
        let Some(found) = regex.regex.captures(path) else {
            return;
        };
        let candidate = Candidate {
            route,
            regex: true,
            literal_len: 0,
            exact: false,
            names: &regex.params,
        };
        self.offer(candidate, path, || {
            let mut captures: [Range<usize>; MAX_PARAMS + 1] = Default::default();
            for (slot, group) in captures.iter_mut().zip(found.iter().skip(1)) {
                // A group that took no part in the match captures nothing.
                *slot = group.map_or(0..0, |g| g.range());
            }
            (captures, found.get(0).map_or(0, |m| m.end()))
        });
    }

    /// A plain path under Kong's matching: a raw string prefix of the path.
    fn consider_raw_prefix(&mut self, route: usize, len: usize, path: &str) {
        let candidate = Candidate {
            route,
            regex: false,
            literal_len: len,
            exact: false,
            names: &[],
        };
        // A prefix ending in `/` leaves that slash to the rest (`/` strips nothing).
        let strip_at = if path[..len].ends_with('/') {
            len - 1
        } else {
            len
        };
        self.offer(candidate, path, || (Default::default(), strip_at));
    }

    fn offer(&mut self, candidate: Candidate<'a>, path: &str, captured: impl FnOnce() -> Captured) {
        let route = &self.table.routes[candidate.route];
        let host_rank = if route.hosts.is_empty() {
            (0, 0)
        } else {
            let (host, port) = (self.host.unwrap_or_default(), self.port);
            match route
                .hosts
                .iter()
                .filter(|h| h.matches(host, port))
                .map(HostPattern::rank)
                .max()
            {
                Some(rank) => rank,
                None => return,
            }
        };
        if !route.headers.iter().all(|(name, values)| {
            self.headers.get_all(name).iter().any(|v| {
                values
                    .iter()
                    .any(|want| v.as_bytes().eq_ignore_ascii_case(want.as_bytes()))
            })
        }) {
            return;
        }
        if !route.methods.is_empty() && !route.methods.contains(self.method) {
            self.allowed.extend(route.methods.iter().cloned());
            return;
        }
        let key: Key = (
            host_rank,
            candidate.regex,
            if candidate.regex {
                route.regex_priority
            } else {
                0
            },
            candidate.literal_len,
            candidate.exact,
            !route.methods.is_empty(),
            route.headers.len(),
            Reverse(candidate.route),
        );
        if self.best.as_ref().is_some_and(|b| b.key >= key) {
            return;
        }
        let (captures, strip_at) = captured();
        self.best = Some(Best {
            key,
            route: candidate.route,
            strip_at,
            remainder_empty: strip_at == path.len(),
            captures,
            names: candidate.names,
        });
    }
}

/// The request's host and port: the URI authority (HTTP/2, absolute-form) or the `Host` header.
fn request_host<B>(req: &Request<B>) -> (Option<&str>, Option<u16>) {
    let authority = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    };
    match authority {
        Some(a) => {
            let (host, port) = split_port(a);
            (Some(host), port.and_then(|p| p.parse().ok()))
        }
        None => (None, None),
    }
}

fn cmp_ignore_ascii_case(lower: &str, other: &str) -> std::cmp::Ordering {
    lower
        .bytes()
        .cmp(other.bytes().map(|b| b.to_ascii_lowercase()))
}
