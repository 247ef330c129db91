#![cfg(feature = "config")]
//! Large bodies stream through the gateway: 50 MB up and 50 MB down without the process's
//! memory growing by more than a few megabytes. Alone in its test binary, so that no other
//! test's allocations blur the measure.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use tokio::net::TcpListener;
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::server::Server;

const TOTAL: usize = 50 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// The resident memory of this process, in bytes.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `TOTAL` bytes, produced chunk by chunk as they are asked for.
fn generated() -> StreamBody<
    futures_util::stream::BoxStream<
        'static,
        Result<http_body::Frame<Bytes>, std::convert::Infallible>,
    >,
> {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(0usize, move |sent| {
        let chunk = chunk.clone();
        async move { (sent < TOTAL).then(|| (Ok(http_body::Frame::data(chunk)), sent + CHUNK)) }
    });
    StreamBody::new(Box::pin(stream) as _)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_stream_up_and_down_in_constant_memory() {
    if !std::path::Path::new("/proc/self/statm").exists() {
        eprintln!("SKIPPED: no /proc/self/statm to measure memory with");
        return;
    }
    // An upstream that counts what it receives and answers with TOTAL bytes of its own.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let service = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let mut body = req.into_body();
        let mut received = 0usize;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                received += data.len();
            }
        }
        assert_eq!(received, TOTAL);
        Ok::<_, std::convert::Infallible>(http::Response::new(generated()))
    });
    tokio::spawn(Server::from_listener(listener).serve(service));
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = support::serve(gateway.router()).await;

    // Warm up (pools, buffers), then measure one 50 MB round trip.
    let before = resident();
    let mut client = support::http1_client(gw).await;
    let req = http::Request::post("/upload")
        .header("host", "gateway.test")
        .body(generated())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(60), client.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut downloaded = 0usize;
    let mut peak = resident();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            downloaded += data.len();
            if downloaded % (8 * 1024 * 1024) < CHUNK {
                peak = peak.max(resident());
            }
        }
    }
    assert_eq!(downloaded, TOTAL);
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 16 * 1024 * 1024,
        "memory grew by {} MB while streaming 2 × 50 MB",
        grown / (1024 * 1024)
    );
}
