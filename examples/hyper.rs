//! tower-gateway in a hand-written hyper server: one connection task per client, the gateway's
//! Router and ReverseProxy as the service.
//!
//! ```text
//! cargo run --example hyper -- http://127.0.0.1:9001
//! curl -i localhost:3001/anything
//! ```

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::router::{Route, Router};
use tower_gateway::server::ConnectionInfo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let origin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:9001".into());
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(&origin)?);
    let router = Router::builder()
        .route(
            Route::new().name("everything").path("/").strip_path(false),
            proxy,
        )
        .build()?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    let local: SocketAddr = listener.local_addr()?;
    println!("proxying http://{local} → {origin}");
    loop {
        let (stream, peer) = listener.accept().await?;
        let router = router.clone();
        let info = ConnectionInfo::new(peer, local);
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(info.clone());
            router.clone().oneshot(req)
        });
        tokio::spawn(async move {
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {err}");
            }
        });
    }
}
