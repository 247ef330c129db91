//! An axum application that nests the gateway's Router and ReverseProxy under a tower-http
//! layer, over real sockets.

mod support;

use std::net::SocketAddr;

use support::*;

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod example;

fn with(path: &str, header: (&str, &str)) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::get(path)
        .header("host", "app.test")
        .header(header.0, header.1)
        .body(Default::default())
        .unwrap()
}

#[tokio::test]
async fn the_example_app_runs_the_full_stack_under_axum() {
    let (a, mut seen_a) = named_upstream("a").await;
    let (b, _seen_b) = named_upstream("b").await;
    let local = serve_axum(example::app([a, b]).unwrap()).await;

    // axum's own route, under the tower-http layer.
    let res = send(local, get("/health")).await;
    assert_eq!(res.headers()["server"], "tower-gateway");
    assert_eq!(text(res).await, "ok");

    // Authentication first: no credential, Kong's answer; the upstream never sees it.
    let res = send(local, get("/api/users/7")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        text(res).await,
        r#"{"message":"No API key found in request"}"#
    );

    // An API key: balanced over both endpoints, with an id echoed and the rate limit's
    // headers; the upstream sees the path, the client address and the consumer.
    let mut served = Vec::new();
    for _ in 0..4 {
        let res = send(
            local,
            with("/api/users/7?x=1", ("apikey", example::API_KEY)),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["server"], "tower-gateway");
        assert!(res.headers().contains_key("x-request-id"));
        assert!(res.headers().contains_key("ratelimit-remaining"));
        served.push(text(res).await);
    }
    assert_eq!(served, ["a", "b", "a", "b"]);
    let seen = seen_a.recv().await.unwrap();
    assert_eq!(seen.uri, "/users/7?x=1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    // No connection facts of the crate's own under axum: the port the client asked for.
    assert_eq!(seen.headers["x-forwarded-port"], "80");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-consumer-username"], "demo");

    // Or a JWT.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "iss": example::JWT_ISSUER, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(example::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let res = send(local, with("/api/users/7", ("authorization", &bearer))).await;
    assert_eq!(res.status(), 200);

    // The gateway's router answers what it does not route.
    let res = send(local, with("/api/orders", ("apikey", example::API_KEY))).await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        text(res).await,
        r#"{"message":"no Route matched with those values"}"#
    );
}

/// Serves an axum router (with `ConnectInfo<SocketAddr>`) on 127.0.0.1:0.
async fn serve_axum(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    local
}

#[tokio::test]
async fn a_breaker_layered_by_axum_opens_for_the_whole_app() {
    use tower_gateway::circuit::{CircuitBreakerLayer, Policy, Trip};

    let failing = || async { (http::StatusCode::BAD_GATEWAY, "down") };
    // axum calls `Layer::layer` once per route: both routes report to the layer's breaker.
    let app = axum::Router::new()
        .route("/a", axum::routing::get(failing))
        .route("/b", axum::routing::get(failing))
        .layer(CircuitBreakerLayer::new(
            Policy::default().trip(Trip::ConsecutiveFailures(3)),
        ));
    let local = serve_axum(app).await;
    for path in ["/a", "/b", "/a"] {
        assert_eq!(send(local, get(path)).await.status(), 502, "{path}");
    }
    for path in ["/a", "/b"] {
        let res = send(local, get(path)).await;
        assert_eq!(res.status(), 503, "{path}");
        assert!(res.headers().contains_key("retry-after"));
    }
}

fn limited_by_client_ip(app: axum::Router) -> axum::Router {
    use tower_gateway::proxy::TrustedProxies;
    use tower_gateway::ratelimit::{FixedWindow, KeyBy, Limit, Period, RateLimitLayer};
    app.layer(
        RateLimitLayer::builder(KeyBy::ClientIp(TrustedProxies::none()))
            .limit(Limit::FixedWindow(FixedWindow::new([(Period::Minute, 2)])))
            .build(),
    )
}

#[tokio::test]
async fn a_client_ip_limit_counts_clients_by_axums_connect_info() {
    let app =
        limited_by_client_ip(axum::Router::new().route("/", axum::routing::get(|| async { "ok" })));
    let local = serve_axum(app).await;
    for _ in 0..2 {
        assert_eq!(send(local, get("/")).await.status(), 200);
    }
    let res = send(local, get("/")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(text(res).await, r#"{"message":"API rate limit exceeded"}"#);
}

#[tokio::test]
async fn a_client_ip_limit_without_any_peer_address_fails_closed() {
    let app =
        limited_by_client_ip(axum::Router::new().route("/", axum::routing::get(|| async { "ok" })));
    // Served without `ConnectInfo`: nothing says who the client is.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
    for _ in 0..3 {
        let res = send(local, get("/")).await;
        assert_eq!(res.status(), 500);
        assert_eq!(
            text(res).await,
            r#"{"message":"An unexpected error occurred"}"#
        );
    }
}

#[tokio::test]
async fn the_access_log_records_the_uri_as_sent_under_nest_service() {
    use tower::Layer;
    use tower_gateway::log::{AccessLogLayer, Format, LineWriter};

    let lines = Lines::default();
    let log = AccessLogLayer::json().write_to(Format::Json, LineWriter::new(lines.clone()));
    let nested = log.layer(tower::service_fn(
        |_req: http::Request<axum::body::Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from("ok")))
        },
    ));
    let local = serve_axum(axum::Router::new().nest_service("/api", nested)).await;
    assert_eq!(send(local, get("/api/users/7?x=1")).await.status(), 200);
    let line = &lines.wait_for(1).await[0];
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["fields"]["path"], "/api/users/7?x=1", "{line}");
    assert_eq!(event["fields"]["client_ip"], "127.0.0.1", "{line}");
}
