//! tower-gateway inside an axum application: `/api/*` is routed and proxied by the gateway's
//! Router and ReverseProxy, everything else is served by axum, and a tower-http layer applies
//! to both.
//!
//! ```text
//! cargo run --example axum
//! curl -i localhost:3000/health
//! curl -i localhost:3000/api/users/7
//! ```

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{HeaderValue, Request};
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::router::{Route, Router as GatewayRouter};
use tower_gateway::server::ConnectionInfo;
use tower_http::set_header::SetResponseHeaderLayer;

/// Builds the application: axum routes, the gateway under `/api`, a tower-http layer on top.
pub fn app(
    upstream: SocketAddr,
    local: SocketAddr,
) -> Result<axum::Router, Box<dyn std::error::Error>> {
    let users = ReverseProxy::<Body>::new(ProxyConfig::new(&format!("http://{upstream}"))?);
    let gateway = GatewayRouter::builder()
        .route(
            Route::new().name("users").path("/users").strip_path(false),
            users,
        )
        .build()?;
    // axum records the peer as `ConnectInfo`; the proxy reads `ConnectionInfo` for
    // X-Forwarded-For.
    let gateway = ServiceBuilder::new()
        .layer(MapRequestLayer::new(move |mut req: Request<Body>| {
            if let Some(ConnectInfo(peer)) =
                req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
            {
                req.extensions_mut()
                    .insert(ConnectionInfo::new(peer, local));
            }
            req
        }))
        .service(gateway);
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
        app(upstream_addr, local)?.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(tower_gateway::server::shutdown_signal())
    .await?;
    Ok(())
}
