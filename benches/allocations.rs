//! Heap allocations per proxied request: the bare hyper proxy (hyper-util's pooled client, as
//! `benches/load/bare_proxy.rs`), the gateway on the proxy path alone, and the gateway with
//! each built-in route plugin.
//!
//! `cargo bench --bench allocations`
//!
//! A counting global allocator counts every allocation of the process; everything runs on
//! one current-thread runtime over loopback (a keep-alive client, the proxy, a hyper
//! upstream), and the proxy's share is the count per request minus the count of the client
//! talking to the upstream directly. Allocation counts are exact and repeatable, unlike
//! timings; the figures go to the README.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::server::Server;

/// Counts allocations (and reallocations) on top of the system allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: u64 = 2_000;
const WARM_UP: u64 = 200;

/// A hyper upstream answering every request with a 13-byte body.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"Hello, world!",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The bare hyper proxy of `benches/load/bare_proxy.rs`.
async fn bare_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{path}");
                    *req.uri_mut() = uri.parse().unwrap();
                    client.request(req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The gateway from a declarative file with `plugins` (YAML under the service) in front of
/// `upstream`.
async fn gateway(upstream: SocketAddr, plugins: &str) -> SocketAddr {
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: backend
    url: http://{upstream}
    routes:
      - name: everything
        paths: ["/"]
{plugins}
consumers:
  - username: bench
    keyauth_credentials:
      - key: bench-key
    jwt_secrets:
      - key: bench-issuer
        secret: bench-secret
"#
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Server::from_listener(listener).serve(gateway.router()));
    addr
}

/// Allocations per request of a keep-alive client sending `REQUESTS` GETs through `addr`,
/// each with `headers`.
async fn per_request(addr: SocketAddr, headers: &[(&str, String)]) -> f64 {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut send = async |n: u64| {
        for _ in 0..n {
            let mut req = Request::get("/bench").header("host", "bench.test");
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            sender.ready().await.unwrap();
            let res = sender
                .send_request(req.body(Full::<Bytes>::default()).unwrap())
                .await
                .unwrap();
            assert!(res.status().is_success(), "{}", res.status());
            res.into_body().collect().await.unwrap();
        }
    };
    send(WARM_UP).await;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    send(REQUESTS).await;
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / REQUESTS as f64
}

/// A configuration to measure: its name, the plugins under the service, the request's
/// headers.
type Case = (&'static str, &'static str, Vec<(&'static str, String)>);

fn jwt(issuer: &str, secret: &str) -> String {
    let claims = serde_json::json!({ "iss": issuer });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let up = upstream().await;
        let direct = per_request(up, &[]).await;
        let bare = per_request(bare_proxy(up).await, &[]).await;
        println!("allocations per request (the proxy's: minus the client and upstream's own)");
        println!("| configuration | allocations | over the bare hyper proxy |");
        println!("| --- | --- | --- |");
        println!("| client and upstream alone | {direct:.1} (baseline) | |");
        println!("| bare hyper proxy | {:.1} | |", bare - direct);
        let token = jwt("bench-issuer", "bench-secret");
        let cases: [Case; 6] = [
            ("gateway, proxy only", "", vec![]),
            (
                "gateway + key-auth",
                "    plugins:\n      - name: key-auth\n",
                vec![("apikey", "bench-key".to_owned())],
            ),
            (
                "gateway + jwt (cached token)",
                "    plugins:\n      - name: jwt\n",
                vec![("authorization", format!("Bearer {token}"))],
            ),
            (
                "gateway + rate-limiting (local)",
                "    plugins:\n      - name: rate-limiting\n        config:\n          second: 1000000000\n          limit_by: ip\n",
                vec![],
            ),
            (
                "gateway + circuit-breaker",
                "    plugins:\n      - name: circuit-breaker\n",
                vec![],
            ),
            (
                "gateway + key-auth, rate-limiting, circuit-breaker",
                "    plugins:\n      - name: key-auth\n      - name: rate-limiting\n        config:\n          second: 1000000000\n      - name: circuit-breaker\n",
                vec![("apikey", "bench-key".to_owned())],
            ),
        ];
        for (name, plugins, headers) in cases {
            let addr = gateway(up, plugins).await;
            // The client's own extra headers cost the same with or without a proxy.
            let own = per_request(up, &headers).await - direct;
            let count = per_request(addr, &headers).await - direct - own;
            println!("| {name} | {count:.1} | {:+.1} |", count - (bare - direct));
        }
    });
}
