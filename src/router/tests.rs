//! Matcher tests: precedence, conditions, stripping.

use http::{HeaderName, Method, Request};

use super::Route;
use super::table::{Lookup, Table};

fn table(routes: Vec<Route>) -> Table {
    Table::new(&routes).unwrap()
}

fn req(method: Method, host: &str, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(())
        .unwrap()
}

/// Name of the winning route, or "404"/"405".
fn pick(t: &Table, r: &Request<()>) -> String {
    match t.lookup(r) {
        Lookup::Found(_, m) => m.name().unwrap_or("?").to_owned(),
        Lookup::MethodNotAllowed(_) => "405".into(),
        Lookup::NotFound => "404".into(),
    }
}

fn get(t: &Table, path: &str) -> String {
    pick(t, &req(Method::GET, "example.com", path))
}

#[test]
fn longer_literal_paths_win_regardless_of_registration_order() {
    let t = table(vec![
        Route::new().name("root").path("/"),
        Route::new().name("api").path("/api"),
        Route::new().name("users").path("/api/users"),
        Route::new().name("user").path("/api/users/{id}"),
    ]);
    assert_eq!(get(&t, "/"), "root");
    assert_eq!(get(&t, "/other"), "root");
    assert_eq!(get(&t, "/api"), "api");
    assert_eq!(get(&t, "/apix"), "root");
    assert_eq!(get(&t, "/api/users"), "users");
    assert_eq!(get(&t, "/api/users/7"), "user");
    assert_eq!(get(&t, "/api/users/7/orders"), "users");
}

#[test]
fn a_static_segment_beats_a_parameter() {
    let t = table(vec![
        Route::new().name("param").path("/api/{name}"),
        Route::new().name("static").path("/api/users"),
    ]);
    assert_eq!(get(&t, "/api/users"), "static");
    assert_eq!(get(&t, "/api/orders"), "param");
}

#[test]
fn exact_beats_prefix_of_the_same_length() {
    let t = table(vec![
        Route::new().name("prefix").path("/health"),
        Route::new().name("exact").path("~/health$"),
    ]);
    assert_eq!(get(&t, "/health"), "exact");
    assert_eq!(get(&t, "/health/deep"), "prefix");
}

#[test]
fn hosts_rank_exact_then_wildcard_then_none() {
    let t = table(vec![
        Route::new().name("any").path("/api/users"),
        Route::new().name("wild").host("*.example.com").path("/"),
        Route::new()
            .name("longer-wild")
            .host("*.eu.example.com")
            .path("/"),
        Route::new().name("exact").host("api.example.com").path("/"),
    ]);
    let at = |host| pick(&t, &req(Method::GET, host, "/api/users"));
    assert_eq!(at("api.example.com"), "exact");
    assert_eq!(at("API.Example.com:8000"), "exact");
    assert_eq!(at("shop.example.com"), "wild");
    assert_eq!(at("shop.eu.example.com"), "longer-wild");
    assert_eq!(at("other.org"), "any");
}

#[test]
fn a_host_route_that_misses_on_path_falls_back_to_hostless_routes() {
    let t = table(vec![
        Route::new()
            .name("host")
            .host("api.example.com")
            .path("/admin"),
        Route::new().name("any").path("/"),
    ]);
    assert_eq!(
        pick(&t, &req(Method::GET, "api.example.com", "/users")),
        "any"
    );
}

#[test]
fn methods_and_headers_narrow_and_rank() {
    let version = HeaderName::from_static("x-version");
    let t = table(vec![
        Route::new().name("plain").path("/api"),
        Route::new().name("get").path("/api").method(Method::GET),
        Route::new()
            .name("v2")
            .path("/api")
            .method(Method::GET)
            .header(version.clone(), ["v2", "V3"]),
    ]);
    assert_eq!(get(&t, "/api"), "get");
    assert_eq!(pick(&t, &req(Method::POST, "h", "/api")), "plain");
    let mut r = req(Method::GET, "h", "/api");
    r.headers_mut().insert(&version, "v3".parse().unwrap());
    assert_eq!(pick(&t, &r), "v2");
    r.headers_mut().insert(&version, "v4".parse().unwrap());
    assert_eq!(pick(&t, &r), "get");
}

#[test]
fn wrong_method_on_a_matching_path_is_405_with_the_allowed_methods() {
    let t = table(vec![
        Route::new()
            .name("a")
            .path("/api")
            .methods([Method::GET, Method::HEAD]),
        Route::new().name("b").path("/api").method(Method::POST),
        Route::new().name("c").path("/other"),
    ]);
    match t.lookup(&req(Method::DELETE, "h", "/api/x")) {
        Lookup::MethodNotAllowed(m) => assert_eq!(m, [Method::GET, Method::HEAD, Method::POST]),
        other => panic!("expected 405, got {other:?}"),
    }
    assert_eq!(get(&t, "/nothing"), "404");
}

#[test]
fn ties_go_to_the_route_registered_first() {
    let t = table(vec![
        Route::new().name("first").path("/api"),
        Route::new().name("second").path("/api"),
    ]);
    assert_eq!(get(&t, "/api"), "first");
}

#[test]
fn strip_path_removes_the_literal_part_of_the_pattern() {
    let t = table(vec![
        Route::new().name("prefix").path("/api"),
        Route::new().name("param").path("/users/{id}"),
        Route::new().name("star").path("/files/*"),
        Route::new().name("kept").path("/keep").strip_path(false),
    ]);
    let stripped = |path: &str| match t.lookup(&req(Method::GET, "h", path)) {
        Lookup::Found(_, m) => (m.stripped_prefix().map(str::to_owned), m.remainder_empty),
        other => panic!("{other:?}"),
    };
    assert_eq!(stripped("/api/x?q=1"), (Some("/api".into()), false));
    assert_eq!(stripped("/api"), (Some("/api".into()), true));
    assert_eq!(stripped("/users/7"), (Some("/users".into()), false));
    assert_eq!(stripped("/files/a/b"), (Some("/files".into()), false));
    assert_eq!(stripped("/keep/x"), (None, false));
}

#[test]
fn params_are_exposed_by_name() {
    let t = table(vec![Route::new().name("r").path("/u/{user}/f/{*path}")]);
    let Lookup::Found(_, m) = t.lookup(&req(Method::GET, "h", "/u/ann/f/a/b.txt")) else {
        panic!("no match");
    };
    assert_eq!(m.param("user"), Some("ann"));
    assert_eq!(m.param("path"), Some("a/b.txt"));
    assert_eq!(m.params().count(), 2);
}

#[test]
fn routes_without_any_condition_are_refused() {
    assert!(Table::new(&[Route::new().name("empty")]).is_err());
}

#[test]
fn a_thousand_hosts_on_one_path_are_found_without_scanning() {
    let routes: Vec<_> = (0..1000)
        .map(|i| {
            Route::new()
                .name(format!("r{i}"))
                .host(format!("h{i}.example.com"))
                .path("/")
        })
        .collect();
    let t = table(routes);
    assert_eq!(
        pick(&t, &req(Method::GET, "h731.example.com", "/x")),
        "r731"
    );
    assert_eq!(pick(&t, &req(Method::GET, "nope.example.com", "/x")), "404");
}

mod handles {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use http::{Request, Response};
    use tower::{Service, ServiceExt};

    use crate::router::{Route, Router};

    /// Counts how often it is cloned.
    struct Counted(Arc<AtomicUsize>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::Relaxed);
            Counted(self.0.clone())
        }
    }

    impl Service<Request<()>> for Counted {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(())))
        }
    }

    fn get() -> Request<()> {
        Request::get("/x").header("host", "h").body(()).unwrap()
    }

    #[tokio::test]
    async fn a_reused_router_handle_stops_cloning_its_route_services() {
        let clones = Arc::new(AtomicUsize::new(0));
        let mut router = Router::builder()
            .route(Route::new().path("/"), Counted(clones.clone()))
            .build()
            .unwrap();
        for _ in 0..5 {
            router.ready().await.unwrap().call(get()).await.unwrap();
        }
        // One clone for the first request, one kept for the handle, none after.
        assert_eq!(clones.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_handle_cloned_per_request_clones_the_route_service_once_each_time() {
        let clones = Arc::new(AtomicUsize::new(0));
        let router = Router::builder()
            .route(Route::new().path("/"), Counted(clones.clone()))
            .build()
            .unwrap();
        for _ in 0..3 {
            router.clone().oneshot(get()).await.unwrap();
        }
        assert_eq!(clones.load(Ordering::Relaxed), 3);
    }
}

#[test]
fn a_regex_path_outranks_prefixes_and_regex_priority_orders_regexes() {
    let t = table(vec![
        Route::new().name("prefix").path("/users/7"),
        Route::new().name("digits").path(r"~/users/\d+$"),
        Route::new()
            .name("preferred")
            .path(r"~/users/(?<id>[0-9]+)")
            .regex_priority(10),
        Route::new().name("words").path(r"~/users/[a-z]+$"),
    ]);
    // Both regexes match `/users/7`; the higher regex_priority wins over the longer prefix.
    assert_eq!(get(&t, "/users/7"), "preferred");
    assert_eq!(get(&t, "/users/ann"), "words");
    assert_eq!(get(&t, "/users/ann/x"), "404", "`$` anchors the end");
    assert_eq!(
        get(&t, "/v1/users/7"),
        "404",
        "a regex is matched from the start"
    );
}

#[test]
fn regex_captures_are_params_and_strip_path_removes_the_whole_match() {
    let t = table(vec![
        Route::new()
            .name("orders")
            .path(r"~/users/(?<id>\d+)/(\w+)"),
    ]);
    let Lookup::Found(_, m) = t.lookup(&req(Method::GET, "example.com", "/users/42/orders/9"))
    else {
        panic!("no match");
    };
    assert_eq!(m.param("id"), Some("42"));
    assert_eq!(m.param("2"), Some("orders"));
    assert_eq!(m.stripped_prefix(), Some("/users/42/orders"));
    assert!(Table::new(&[Route::new().path(r"~/users/(\d+")]).is_err());
}

#[test]
fn kong_matching_takes_raw_string_prefixes_and_never_answers_405() {
    let routes = vec![
        Route::new().name("pre").path("/pre"),
        Route::new().name("prefix").path("/prefix"),
        Route::new()
            .name("get-only")
            .path("/items")
            .method(Method::GET),
        Route::new().name("user").path("/users/{id}"),
    ];
    let kong = Table::build(&routes, true).unwrap();
    assert_eq!(get(&kong, "/pre"), "pre");
    assert_eq!(get(&kong, "/prelude"), "pre");
    assert_eq!(get(&kong, "/prefixes"), "prefix", "the longer prefix wins");
    assert_eq!(get(&kong, "/users/7"), "user");
    assert_eq!(
        pick(&kong, &req(Method::POST, "example.com", "/items")),
        "404"
    );
    let Lookup::Found(_, m) = kong.lookup(&req(Method::GET, "example.com", "/prelude?x=1")) else {
        panic!("no match");
    };
    assert_eq!(m.stripped_prefix(), Some("/pre"));
    // A prefix ending in `/` (or `/` itself) leaves the slash to the rest.
    let root = Table::build(&[Route::new().name("root").path("/")], true).unwrap();
    let Lookup::Found(_, m) = root.lookup(&req(Method::GET, "example.com", "/x")) else {
        panic!("no match");
    };
    assert_eq!(m.stripped_prefix(), None);

    let ours = Table::new(&routes).unwrap();
    assert_eq!(get(&ours, "/prelude"), "404");
    assert_eq!(
        pick(&ours, &req(Method::POST, "example.com", "/items")),
        "405"
    );
}
