//! A route (what to match) and a route match (what matched, in request extensions).

use std::ops::Range;
use std::sync::Arc;

use http::{HeaderName, Method, Uri};

/// The conditions under which a request goes to one service: paths, methods, hosts, headers.
///
/// Every kind of condition that is set must match; within a kind, any entry may. Kong's
/// defaults apply: `strip_path` is on.
///
/// Path syntax:
///
/// | written | kind | matches |
/// | --- | --- | --- |
/// | `/api` | prefix (Kong's plain path) | `/api`, `/api/`, `/api/x/y`; not `/apix` |
/// | `/api/` | prefix ending in a slash | `/api/`, `/api/x`; not `/api` |
/// | `/api/users/*`, `/api/users/{*rest}` | prefix, rest captured | `/api/users`, `/api/users/5/x` |
/// | `/api/users/{id}` | exact shape, `id` captured | `/api/users/5`; not `/api/users/5/x` |
/// | `~/api/health$` | exact (Kong's regex idiom, literal text only) | `/api/health` only |
/// | `~/users/(?<id>\d+)$` | regex (Kong's `~`), matched from the start; groups captured by name or number | `/users/7` |
///
/// A route with a regex path that matches outranks one whose match is a tree pattern (Kong's
/// rule); among regex routes, the higher [`regex_priority`](Self::regex_priority) wins. The
/// regex syntax is the `regex` crate's: no look-around or back-references (as Kong 3's
/// router).
///
/// Hosts: `api.example.com`, `*.example.com` (any subdomain), `example.*`, each optionally with
/// `:port`; case is ignored. Headers: the request must carry the header with one of the listed
/// values (case ignored), as Kong's `headers` field.
///
/// ```
/// use http::Method;
/// use tower_gateway::router::Route;
///
/// let route = Route::new()
///     .name("users")
///     .path("/api/users/{id}")
///     .method(Method::GET)
///     .host("*.example.com")
///     .header(http::HeaderName::from_static("x-version"), ["v2"])
///     .strip_path(false);
/// # let _ = route;
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) name: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) paths: Vec<String>,
    pub(crate) methods: Vec<Method>,
    pub(crate) hosts: Vec<String>,
    pub(crate) headers: Vec<(HeaderName, Vec<String>)>,
    pub(crate) strip_path: bool,
    pub(crate) regex_priority: i32,
}

/// What the router matched, put into the request's extensions for the route's service and the
/// layers after it.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub(crate) names: Arc<RouteNames>,
    pub(crate) original_uri: Uri,
    /// Bytes of the original path removed by `strip_path` (0 when nothing was stripped).
    pub(crate) stripped_len: usize,
    /// `strip_path` removed the whole path: the upstream path is the service's path alone.
    pub(crate) remainder_empty: bool,
    pub(crate) params: Vec<(Arc<str>, Range<usize>)>,
}

/// A route's name and its service's, for logs and metrics.
#[derive(Debug, Default)]
pub(crate) struct RouteNames {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) service: Option<Arc<str>>,
}

/// Put into a request's extensions by an outer layer (such as the access log) that wants the
/// router to copy the [`RouteMatch`] into the response's extensions too.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportMatch;

// === impl Route ===

impl Default for Route {
    fn default() -> Self {
        Self::new()
    }
}

impl Route {
    /// A route with no conditions yet and `strip_path` on.
    pub fn new() -> Self {
        Self {
            name: None,
            service: None,
            paths: Vec::new(),
            methods: Vec::new(),
            hosts: Vec::new(),
            headers: Vec::new(),
            strip_path: true,
            regex_priority: 0,
        }
    }

    /// Kong's `regex_priority` (default 0): among routes matched by a regex path, the higher
    /// wins. Routes matched by other paths ignore it.
    pub fn regex_priority(mut self, priority: i32) -> Self {
        self.regex_priority = priority;
        self
    }

    /// Names the route (shown in logs and in [`RouteMatch::name`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Names the service behind the route, for logs and metrics ([`RouteMatch::service`]);
    /// routing does not use it.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Adds a path pattern (see the table above).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// Adds several path patterns.
    pub fn paths<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.paths.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds an accepted method.
    pub fn method(mut self, method: Method) -> Self {
        self.methods.push(method);
        self
    }

    /// Adds several accepted methods.
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods.extend(methods);
        self
    }

    /// Adds a host pattern.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Adds several host patterns.
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Requires header `name` to carry one of `values`.
    pub fn header<I, S>(mut self, name: HeaderName, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.headers
            .push((name, values.into_iter().map(Into::into).collect()));
        self
    }

    /// Whether the matched path prefix is removed before the request goes on (Kong's
    /// `strip_path`, default on).
    pub fn strip_path(mut self, strip: bool) -> Self {
        self.strip_path = strip;
        self
    }

    pub(crate) fn display_name(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("{name:?}"),
            None => format!("#{index}"),
        }
    }
}

// === impl RouteMatch ===

impl RouteMatch {
    /// The matched route's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.names.name.as_deref()
    }

    /// The name of the service behind the matched route, if it was given one
    /// ([`Route::service`]).
    pub fn service(&self) -> Option<&str> {
        self.names.service.as_deref()
    }

    /// The request URI as it arrived, before `strip_path`.
    pub fn original_uri(&self) -> &Uri {
        &self.original_uri
    }

    /// The value captured by `{name}` (or `{*name}`; `*` for a bare `/*`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, range)| &self.original_uri.path()[range.clone()])
    }

    /// All captured parameters, in pattern order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        let path = self.original_uri.path();
        self.params
            .iter()
            .map(move |(n, range)| (&**n, &path[range.clone()]))
    }

    /// The path prefix `strip_path` removed, if any.
    pub fn stripped_prefix(&self) -> Option<&str> {
        (self.stripped_len > 0).then(|| &self.original_uri.path()[..self.stripped_len])
    }
}
