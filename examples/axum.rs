//! tower-gateway inside an axum application: `/api/*` is routed and proxied by the gateway's
//! Router and ReverseProxy, everything else is served by axum, and a tower-http layer applies
//! to both.
//!
//! With the `axum` feature the gateway's layers read axum's `ConnectInfo` for the client
//! address (`X-Forwarded-For`, rate limits by IP, the access log).
//!
//! ```text
//! cargo run --example axum --features axum
//! curl -i localhost:3000/health
//! curl -i localhost:3000/api/users/7
//! ```

use std::net::SocketAddr;

use axum::body::Body;
use axum::routing::get;
use http::{HeaderValue, Request};
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::router::{Route, Router as GatewayRouter};
use tower_http::set_header::SetResponseHeaderLayer;

/// Builds the application: axum routes, the gateway under `/api`, a tower-http layer on top.
pub fn app(upstream: SocketAddr) -> Result<axum::Router, Box<dyn std::error::Error>> {
    let users = ReverseProxy::<Body>::new(ProxyConfig::new(format!("http://{upstream}"))?);
    let gateway = GatewayRouter::builder()
        .route(
            Route::new().name("users").path("/users").strip_path(false),
            users,
        )
        .build()?;
    Ok(axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest_service("/api", gateway)
        .layer(SetResponseHeaderLayer::overriding(
            http::header::SERVER,
            HeaderValue::from_static("tower-gateway"),
        )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A stand-in upstream, so the example runs on its own.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    let echo = axum::Router::new().fallback(|req: Request<Body>| async move {
        format!("upstream saw {} {}\n", req.method(), req.uri())
    });
    tokio::spawn(async move { axum::serve(upstream, echo).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    axum::serve(
        listener,
        app(upstream_addr)?.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(tower_gateway::server::shutdown_signal())
    .await?;
    Ok(())
}
