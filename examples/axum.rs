//! tower-gateway inside an axum application: `/api/*` goes through the gateway's full stack
//! (request ids, access log, API-key or JWT authentication, a rate limit per client IP, and a
//! round-robin balancer over two endpoints, each behind its own circuit breaker); everything
//! else is served by axum, and a tower-http layer applies to both.
//!
//! With the `axum` feature the gateway's layers read axum's `ConnectInfo` for the client
//! address (`X-Forwarded-For`, rate limits by IP, the access log) and `OriginalUri` for the
//! logged path.
//!
//! ```text
//! cargo run --example axum --features axum
//! curl -i localhost:3000/health
//! curl -i -H 'apikey: demo-key' localhost:3000/api/users/7
//! ```

use std::net::SocketAddr;

use axum::body::Body;
use axum::routing::get;
use http::{HeaderValue, Request};
use tower::{Layer, ServiceBuilder};
use tower_gateway::auth::jwt::Algorithm;
use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers, Jwt, JwtCredential};
use tower_gateway::balance::{Balancer, Endpoint, PassiveHealth, RoundRobin};
use tower_gateway::circuit::{CircuitBreakerLayer, Policy};
use tower_gateway::log::AccessLogLayer;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy, TrustedProxies};
use tower_gateway::ratelimit::{KeyBy, Rate, RateLimitLayer, TokenBucket};
use tower_gateway::request_id::RequestIdLayer;
use tower_gateway::router::{Route, Router as GatewayRouter};
use tower_http::set_header::SetResponseHeaderLayer;

/// The demo consumer's API key.
pub const API_KEY: &str = "demo-key";

/// The demo consumer's JWT issuer (`iss`) and HS256 secret.
pub const JWT_ISSUER: &str = "demo-issuer";
/// See [`JWT_ISSUER`].
pub const JWT_SECRET: &str = "demo-secret";

/// Builds the application: axum routes, the gateway under `/api` balancing over `upstreams`,
/// a tower-http layer on top.
pub fn app(upstreams: [SocketAddr; 2]) -> Result<axum::Router, Box<dyn std::error::Error>> {
    // Who may call: one consumer with an API key and a JWT credential.
    let consumers = Consumers::new();
    consumers.insert(Consumer::new("c-1").username("demo"));
    consumers.add_api_key("demo", API_KEY)?;
    consumers.add_jwt(
        "demo",
        JwtCredential::hmac(JWT_ISSUER, JWT_SECRET, Algorithm::HS256)?,
    )?;

    // Two endpoints, one connection pool, a breaker each: an open breaker's refusals are
    // retried on the other endpoint, and passive health ejects a failing one.
    let [first, second] = upstreams;
    let pool = ReverseProxy::<Body>::new(ProxyConfig::new(format!("http://{first}"))?);
    let breaker = || CircuitBreakerLayer::new(Policy::default());
    let users = Balancer::builder(RoundRobin::new())
        .endpoint(Endpoint::from(first), breaker().layer(pool.clone()))
        .endpoint(
            Endpoint::from(second),
            breaker().layer(pool.to_origin(format!("http://{second}"))?),
        )
        .passive_health(PassiveHealth::default())
        .build();
    let gateway = GatewayRouter::builder()
        .route(
            Route::new().name("users").path("/users").strip_path(false),
            users,
        )
        .build()?;

    // Outermost first: ids, the access log, authentication, the rate limit.
    let gateway = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AccessLogLayer::combined())
        .layer(AuthLayer::new(ApiKey::new(consumers.clone())).or(Jwt::new(consumers)))
        .layer(RateLimitLayer::new(
            KeyBy::ClientIp(TrustedProxies::none()),
            TokenBucket::new(Rate::per_second(100), 200),
        ))
        .service(gateway);

    Ok(axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest_service("/api", gateway)
        .layer(SetResponseHeaderLayer::overriding(
            http::header::SERVER,
            HeaderValue::from_static("tower-gateway"),
        )))
}

/// A stand-in upstream answering `name` and what it saw, so the example runs on its own.
pub async fn demo_upstream(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = axum::Router::new().fallback(move |req: Request<Body>| async move {
        format!("{name} saw {} {}\n", req.method(), req.uri())
    });
    tokio::spawn(async move { axum::serve(listener, echo).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstreams = [demo_upstream("a").await?, demo_upstream("b").await?];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local} (API key: {API_KEY})");
    axum::serve(
        listener,
        app(upstreams)?.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(tower_gateway::server::shutdown_signal())
    .await?;
    Ok(())
}
