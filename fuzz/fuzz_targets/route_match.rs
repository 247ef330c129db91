//! Route patterns and matching: the first lines are route paths (and an optional host after a
//! space), the last line is a request target; building either refuses the pattern or routes,
//! and a request is matched or answered 404/405, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tower_gateway::router::{Route, RouteMatch, Router};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let Some(target) = lines.pop() else {
        return;
    };
    let echo = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let matched = req
            .extensions()
            .get::<RouteMatch>()
            .map(|m| m.params().count());
        Ok::<_, std::convert::Infallible>(Response::new(format!("{matched:?} {}", req.uri())))
    });
    let mut builder = Router::builder();
    for (i, line) in lines.iter().take(16).enumerate() {
        let mut parts = line.splitn(2, ' ');
        let mut route = Route::new()
            .path(parts.next().unwrap_or_default())
            .strip_path(i % 2 == 0);
        if let Some(host) = parts.next() {
            route = route.host(host);
        }
        builder = builder.route(route, echo.clone());
    }
    let Ok(router) = builder.build() else {
        return;
    };
    let (target, host) = target.split_once(' ').unwrap_or((target, "fuzz.test"));
    let Ok(req) = Request::get(target)
        .header("host", host)
        .body(Full::new(Bytes::new()))
    else {
        return;
    };
    let _ = common::runtime().block_on(router.oneshot(req));
});
