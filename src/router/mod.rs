//! Routing: pick the route that matches a request best and hand the request to its service.
//!
//! A [`Route`] lists conditions (paths, methods, hosts, headers, in Kong's terms); a
//! [`Router`] compiles routes into per-host path trees and dispatches each request to the
//! service of the most specific matching route. The matched route is recorded in the request's
//! extensions as a [`RouteMatch`]; with `strip_path` (Kong's default) the literal part of the
//! matched path is removed from the request URI first.
//!
//! # Precedence
//!
//! Registration order only breaks exact ties. Among the routes that match, the winner is, in
//! this order:
//!
//! 1. the one whose host condition is most specific: an exact host beats a wildcard host (a
//!    longer wildcard beats a shorter), which beats no host condition (nginx's and Envoy's
//!    virtual-host rule);
//! 2. one matched by a regex path (`~/users/\d+`) over one matched by any other path (Kong's
//!    rule), and among those the higher [`regex_priority`](Route::regex_priority);
//! 3. the one whose matching path has the most literal text (`/api/users/{id}` beats
//!    `/api/users`, which beats `/api`; `/api/users` beats `/api/{name}`);
//! 4. an exact path (`/api/users/{id}`, `~/api$`) over a prefix of the same length;
//! 5. a route with a method condition over one without;
//! 6. the route with more header conditions;
//! 7. the route registered first.
//!
//! This differs from Kong's `traditional_compatible` router in one case: Kong ranks routes by
//! the number of kinds of conditions first, so `methods: [GET], paths: [/]` beats
//! `paths: [/api]` there, while here the longer path wins.
//!
//! # Misses
//!
//! No route: `404 {"message":"no Route matched with those values"}` (Kong's answer). Routes
//! matched everything but the method: `405` with an `Allow` header listing their methods.
//!
//! [`RouterBuilder::kong_matching`] switches to Kong's own matching, as the gateway does for
//! Kong files: plain paths are raw string prefixes (`/pre` matches `/prefix`) and a method
//! mismatch is a `404` like any miss.
//!
//! # Example
//!
//! ```
//! use http::{Method, Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use tower::{ServiceExt, service_fn};
//! use tower_gateway::router::{Route, RouteMatch, Router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let echo = service_fn(|req: Request<Full<Bytes>>| async move {
//!     let id = req.extensions().get::<RouteMatch>().and_then(|m| m.param("id")).unwrap_or("-");
//!     let body = format!("{} {id}", req.uri().path());
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
//! });
//! let router = Router::builder()
//!     .route(Route::new().path("/api/users/{id}").method(Method::GET), echo.clone())
//!     .route(Route::new().path("/api").strip_path(false), echo)
//!     .build()?;
//!
//! let res = router.clone().oneshot(Request::get("/api/users/7").body(Full::default())?).await?;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "/7 7");
//!
//! let res = router.clone().oneshot(Request::get("/api/orders").body(Full::default())?).await?;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "/api/orders -");
//!
//! let res = router.clone().oneshot(Request::get("/apix").body(Full::default())?).await?;
//! assert_eq!(res.status(), 404);
//!
//! let res = router.oneshot(Request::delete("/api/users/7").body(Full::default())?).await?;
//! assert_eq!(res.status(), 200); // `/api` takes every method
//! # Ok(())
//! # }
//! ```

mod error;
mod host;
mod path;
mod route;
mod service;
mod table;
mod tree;

pub use error::RouteError;
pub use route::{ReportMatch, Route, RouteMatch};
pub use service::{ResponseFuture, Router, RouterBuilder};

/// Checks a path pattern without building a router (for configuration errors with locations).
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) fn check_path(path: &str) -> Result<(), RouteError> {
    path::ParsedPath::parse(path).map(drop)
}

/// Checks a host pattern without building a router.
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) fn check_host(host: &str) -> Result<(), RouteError> {
    host::HostPattern::parse(host).map(drop)
}

#[cfg(test)]
mod tests;
