//! The README's library blocks, verbatim, each in a function that gives it the context the
//! README's prose gives it: `tests/readme.rs` checks that every `rust` block of README.md
//! stands here line for line, so the README's code compiles as written. Not meant to be run.
//! (`rustfmt::skip` keeps the blocks as the README shows them.)

use std::error::Error;

use hyper::body::Incoming;
use tower_gateway::balance::Balancer;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::router::{Route, Router};

/// "In an axum application".
#[rustfmt::skip]
pub fn in_axum() -> Result<axum::Router, Box<dyn Error>> {
    use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
    use tower_gateway::router::{Route, Router as GatewayRouter};

    let users = ReverseProxy::<axum::body::Body>::new(ProxyConfig::new("http://127.0.0.1:3000")?);
    let gateway = GatewayRouter::builder()
        .route(Route::new().name("users").path("/users").strip_path(false), users)
        .build()?;
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .nest_service("/api", gateway)
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            http::header::SERVER,
            http::HeaderValue::from_static("tower-gateway"),
        ));
    Ok(app)
}

/// "With the crate's own server".
#[rustfmt::skip]
pub async fn own_server() -> Result<(), Box<dyn Error>> {
    use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
    use tower_gateway::router::{Route, Router};
    use tower_gateway::server::{Server, shutdown_signal};

    let users = ReverseProxy::new(ProxyConfig::new("http://127.0.0.1:3000")?);
    let router = Router::builder()
        .route(Route::new().name("users").path("/api/users"), users)
        .build()?;
    Server::bind("0.0.0.0:8000".parse()?)
        .serve_with_shutdown(router, shutdown_signal())
        .await?;
    Ok(())
}

/// "Authentication with Kong's consumers", in front of a route's service.
#[rustfmt::skip]
pub fn authenticated(users: ReverseProxy<Incoming>) -> Result<(), Box<dyn Error>> {
    use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers, Jwt, JwtCredential};
    use tower_gateway::auth::jwt::Algorithm;

    let consumers = Consumers::new();
    consumers.insert(Consumer::new("c-1").username("test-user"));
    consumers.add_api_key("test-user", "test-api-key")?;
    consumers.add_jwt("test-user", JwtCredential::hmac("myapikey", "mysecret", Algorithm::HS256)?)?;
    // Either credential; `.and(..)` would require both. Tokens must carry an unexpired `exp`.
    let auth = AuthLayer::new(ApiKey::new(consumers.clone()).hide_credentials(true))
        .or(Jwt::new(consumers.clone()))
        .skip_path("/health");
    let users = tower::ServiceBuilder::new().layer(auth).service(users);
    let _ = users;
    Ok(())
}

/// The balanced route's service.
type Users = Balancer<ReverseProxy<Incoming>>;

/// "Several instances of a service behind one route".
#[rustfmt::skip]
pub fn balanced() -> Result<Router<Users>, Box<dyn Error>> {
    use tower_gateway::balance::{Balancer, Endpoint, LeastConnections, PassiveHealth};

    let pool = ReverseProxy::new(ProxyConfig::new("http://10.0.0.1:8080")?);
    let users = Balancer::builder(LeastConnections::new())
        .endpoint(Endpoint::new("10.0.0.1:8080").weight(200), pool.clone())
        .endpoint("10.0.0.2:8080", pool.to_origin("http://10.0.0.2:8080")?)
        .passive_health(PassiveHealth::default())
        .build();
    users.insert("10.0.0.3:8080", pool.to_origin("http://10.0.0.3:8080")?); // at run time
    let router = Router::builder()
        .route(Route::new().name("users").path("/api/users"), users)
        .build()?;
    Ok(router)
}

fn main() {}
