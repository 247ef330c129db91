//! The circuit breaker in front of a real upstream, over real sockets.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;
use tower::ServiceBuilder;
use tower_gateway::circuit::{CircuitBreakerLayer, Policy, State, Trip};
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};

/// An upstream answering `status` until told to recover, counting the requests it sees.
async fn flaky(status: StatusCode) -> (std::net::SocketAddr, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let healthy = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let (h, s) = (healthy.clone(), seen.clone());
    let (addr, _rx) = upstream(move |_| {
        let (h, s) = (h.clone(), s.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            let mut res = Response::new(Full::new(Bytes::from_static(b"upstream")));
            if !h.load(Ordering::SeqCst) {
                *res.status_mut() = status;
            }
            res
        }
    })
    .await;
    (addr, healthy, seen)
}

async fn gateway(up: std::net::SocketAddr) -> std::net::SocketAddr {
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(
            Policy::default().open_for(Duration::from_secs(10), Duration::from_secs(300)),
        ))
        .service(proxy);
    let (addr, stop) = serve(service).await;
    std::mem::forget(stop);
    addr
}

#[tokio::test(start_paused = true)]
async fn a_failing_upstream_trips_the_breaker_and_a_probe_restores_it() {
    let (up, healthy, seen) = flaky(StatusCode::INTERNAL_SERVER_ERROR).await;
    let gw = gateway(up).await;

    for _ in 0..5 {
        assert_eq!(send(gw, get("/")).await.status(), 500);
    }
    // Open: fast 503s, no upstream traffic.
    for _ in 0..3 {
        let res = send(gw, get("/")).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "10");
        assert_eq!(text(res).await, r#"{"message":"Service unavailable"}"#);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 5);

    healthy.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    let res = send(gw, get("/")).await;
    assert_eq!(
        res.status(),
        200,
        "the probe should reach the recovered upstream"
    );
    for _ in 0..3 {
        assert_eq!(send(gw, get("/")).await.status(), 200);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 9);
}

#[tokio::test(start_paused = true)]
async fn client_errors_never_trip_the_breaker() {
    let (up, _healthy, seen) = flaky(StatusCode::NOT_FOUND).await;
    let gw = gateway(up).await;
    for _ in 0..12 {
        assert_eq!(send(gw, get("/")).await.status(), 404);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 12);
}

#[tokio::test(start_paused = true)]
async fn refused_connections_count_as_failures() {
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(port).await;
    for _ in 0..5 {
        assert_eq!(send(gw, get("/")).await.status(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(
        send(gw, get("/")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn only_one_probe_reaches_the_upstream_among_concurrent_requests() {
    // The upstream fails until released, then answers slowly enough for others to queue up.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let (up, _rx) = upstream(move |_| {
        let mut release = release_rx.clone();
        let s = s.clone();
        async move {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let mut res = Response::new(Full::new(Bytes::new()));
            if n < 5 {
                *res.status_mut() = StatusCode::BAD_GATEWAY;
            } else {
                let _ = release.wait_for(|r| *r).await;
            }
            res
        }
    })
    .await;
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let layer = CircuitBreakerLayer::new(Policy::default());
    let service = ServiceBuilder::new().layer(layer).service(proxy);
    let breaker = service.breaker().cloned().unwrap();
    let (gw, _stop) = serve(service).await;

    for _ in 0..5 {
        send(gw, get("/")).await;
    }
    assert!(matches!(breaker.state(), State::Open { .. }));
    tokio::time::advance(Duration::from_secs(10)).await;

    let probe = tokio::spawn(async move { send(gw, get("/")).await.status() });
    while seen.load(Ordering::SeqCst) < 6 {
        tokio::task::yield_now().await;
    }
    let others: Vec<_> = (0..9)
        .map(|_| tokio::spawn(async move { send(gw, get("/")).await.status() }))
        .collect();
    for other in others {
        assert_eq!(other.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    }
    release_tx.send(true).unwrap();
    assert_eq!(probe.await.unwrap(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::SeqCst), 6);
    assert_eq!(breaker.state(), State::Closed);
}

async fn classified_gateway(
    up: std::net::SocketAddr,
    layer: CircuitBreakerLayer,
) -> std::net::SocketAddr {
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let (addr, stop) = serve(ServiceBuilder::new().layer(layer).service(proxy)).await;
    std::mem::forget(stop);
    addr
}

#[tokio::test]
async fn a_tower_http_classifier_decides_what_counts_as_a_failure() {
    use tower_http::classify::StatusInRangeAsFailures;
    // 429s count when the classifier says so (they do not by default).
    let (up, _healthy, seen) = flaky(StatusCode::TOO_MANY_REQUESTS).await;
    let layer = CircuitBreakerLayer::new(Policy::default().trip(Trip::ConsecutiveFailures(3)))
        .classify(StatusInRangeAsFailures::new(429..=599));
    let gw = classified_gateway(up, layer).await;
    for _ in 0..3 {
        assert_eq!(send(gw, get("/")).await.status(), 429);
    }
    assert_eq!(send(gw, get("/")).await.status(), 503);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_trailers_only_grpc_error_trips_a_grpc_classified_breaker() {
    use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures};
    let (up, _rx) = upstream(|_| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        res.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        // 14: UNAVAILABLE, in the head (a trailers-only response).
        res.headers_mut()
            .insert("grpc-status", "14".parse().unwrap());
        res
    })
    .await;
    let classifier = GrpcErrorsAsFailures::new().with_success(GrpcCode::NotFound);
    let layer = CircuitBreakerLayer::new(Policy::default().trip(Trip::ConsecutiveFailures(2)))
        .classify(classifier);
    let gw = classified_gateway(up, layer).await;
    // HTTP 200 both times, yet gRPC failures: the third call meets an open breaker.
    for _ in 0..2 {
        assert_eq!(send(gw, get("/")).await.status(), 200);
    }
    assert_eq!(send(gw, get("/")).await.status(), 503);
}
