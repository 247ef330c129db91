//! What the in-process benchmarks share: a hyper upstream, the gateway built from a
//! declarative file and wrapped as the program wraps it, and a keep-alive client that times
//! (and counts allocations of) a run of requests. Everything runs on the caller's
//! current-thread runtime over loopback.

#![allow(dead_code)] // Each benchmark uses its part.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceBuilder};
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::log::{AccessLogLayer, Format, LineWriter};
use tower_gateway::metrics::{Metrics, MetricsLayer};
use tower_gateway::request_id::RequestIdLayer;
use tower_gateway::server::Server;

/// A hyper upstream answering every request with a 13-byte body.
pub async fn upstream() -> SocketAddr {
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

/// What wraps the gateway's router, as the program's global settings do.
#[derive(Clone, Copy, PartialEq)]
pub enum Wrap {
    Nothing,
    /// Prometheus metrics (the global prometheus plugin, `--metrics on`).
    Metrics,
    /// Request ids (the global correlation-id plugin, `--request-id keep`).
    RequestId,
    /// The access log, combined, through a `LineWriter` into nothing.
    AccessLog,
    /// All three, as the program's defaults.
    Defaults,
}

/// The gateway of the declarative file `yaml`, wrapped in `wrap`, on 127.0.0.1:0.
pub async fn serve_gateway(yaml: &str, wrap: Wrap) -> SocketAddr {
    let gateway =
        Gateway::from_config(&Config::from_yaml(yaml).unwrap(), &Settings::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener);
    let router = gateway.router();
    let log =
        || AccessLogLayer::combined().write_to(Format::Combined, LineWriter::new(std::io::sink()));
    match wrap {
        Wrap::Nothing => tokio::spawn(server.serve(router)),
        Wrap::Metrics => {
            tokio::spawn(server.serve(MetricsLayer::new(Metrics::new()).layer(router)))
        }
        Wrap::RequestId => tokio::spawn(server.serve(RequestIdLayer::new().layer(router))),
        Wrap::AccessLog => tokio::spawn(server.serve(log().layer(router))),
        Wrap::Defaults => tokio::spawn(
            server.serve(
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new())
                    .layer(log())
                    .layer(MetricsLayer::new(Metrics::new()))
                    .service(router),
            ),
        ),
    };
    addr
}

/// A run of requests: how many (after a warm-up), where, with which headers.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub requests: u64,
    pub warm_up: u64,
    pub path: &'a str,
    pub headers: &'a [(&'a str, String)],
    /// A header whose value changes with every request, taken in turn.
    pub varying: Option<&'a (&'a str, Vec<String>)>,
    /// Read before and after the run (an allocation counter); its growth per request is
    /// returned.
    pub counter: fn() -> u64,
}

impl Default for Run<'_> {
    fn default() -> Self {
        Self {
            requests: 2_000,
            warm_up: 200,
            path: "/bench",
            headers: &[],
            varying: None,
            counter: || 0,
        }
    }
}

/// The counter's growth and the microseconds per request of a keep-alive client sending the
/// run's GETs through `addr`.
pub async fn per_request(addr: SocketAddr, run: Run<'_>) -> (f64, f64) {
    let Run {
        requests,
        warm_up,
        path,
        headers,
        varying,
        counter,
    } = run;
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut sent = 0usize;
    let mut send = async |n: u64| {
        for _ in 0..n {
            let mut req = Request::get(path).header("host", "bench.test");
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            if let Some((name, values)) = varying {
                req = req.header(*name, &values[sent % values.len()]);
            }
            sent += 1;
            sender.ready().await.unwrap();
            let res = sender
                .send_request(req.body(Full::<Bytes>::default()).unwrap())
                .await
                .unwrap();
            assert!(res.status().is_success(), "{}", res.status());
            res.into_body().collect().await.unwrap();
        }
    };
    send(warm_up).await;
    let before = counter();
    let started = std::time::Instant::now();
    send(requests).await;
    let micros = started.elapsed().as_secs_f64() * 1e6 / requests as f64;
    let after = counter();
    ((after - before) as f64 / requests as f64, micros)
}

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// How many interleaved rounds to run: `ROUNDS` from the environment, 5 without it.
pub fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

/// Runs `future` on a current-thread runtime of its own (everything a benchmark measures
/// shares that one thread).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
