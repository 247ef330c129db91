//! The floor of the load benchmark: the least a hyper-based proxy does. An HTTP/1.1 server
//! whose handler points the request at the upstream and sends it through hyper-util's pooled
//! client, with no header rules, no routing, no timeouts.
//!
//! `cargo run --release --example load-bare-proxy -- 127.0.0.1:18082 127.0.0.1:18080`

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18082".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(512)
                .build(connector);
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            eprintln!("bare hyper proxy on http://{listen} → http://{upstream}");
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |mut req: Request<Incoming>| {
                        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                        let uri = format!("http://{upstream}{path}");
                        *req.uri_mut() = uri.parse().expect("valid upstream URI");
                        client.request(req)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}
