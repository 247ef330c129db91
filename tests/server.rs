//! Server hardening over real sockets: Host rules, header limits, header-read timeout,
//! graceful shutdown.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::service_fn;
use tower_gateway::server::Server;

/// Serves `service` on 127.0.0.1:0 with the given header-read timeout.
async fn serve_with_header_timeout<S>(service: S, timeout: Duration) -> std::net::SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .header_read_timeout(timeout)
            .serve(service),
    );
    addr
}

#[tokio::test]
async fn an_http11_request_without_host_is_400() {
    let (addr, _stop) = serve(hello()).await;
    let reply = raw_exchange(addr, b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains(r#"{"message":"Bad request"}"#), "{reply}");
}

#[tokio::test]
async fn a_request_with_two_hosts_is_400() {
    let (addr, _stop) = serve(hello()).await;
    let reply = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
}

#[tokio::test]
async fn an_http10_request_without_host_is_served() {
    let (addr, _stop) = serve(hello()).await;
    let reply = raw_exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
}

#[tokio::test]
async fn too_many_header_fields_is_431() {
    let (addr, _stop) = serve(hello()).await;
    let mut req = b"GET / HTTP/1.1\r\nhost: a\r\n".to_vec();
    for i in 0..120 {
        req.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let reply = raw_exchange(addr, &req).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
}

#[tokio::test]
async fn a_request_head_over_the_size_cap_is_431() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .max_header_size(4096)
            .serve(hello()),
    );
    let big = "a".repeat(5000);
    let req = format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    let reply = raw_exchange(addr, req.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_trickles_its_head_is_cut_off_after_the_header_timeout() {
    let addr = serve_with_header_timeout(hello(), Duration::from_secs(5)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(5));
    // Closed without a response to a request that never finished.
    assert!(!String::from_utf8_lossy(&out).contains("200"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_response_is_not_cut_by_the_header_timeout() {
    let slow = service_fn(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late"))))
    });
    let addr = serve_with_header_timeout(slow, Duration::from_secs(5)).await;
    let res = send(addr, get("/")).await;
    assert_eq!(text(res).await, "late");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let (arrived_tx, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let slow = service_fn(move |_req: Request<Incoming>| {
        let release_rx = release_rx.clone();
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(());
            if let Some(rx) = release_rx.lock().await.take() {
                let _ = rx.await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::from_listener(listener).serve_with_shutdown(slow, async {
            let _ = stop_rx.await;
        }),
    );

    let in_flight = tokio::spawn(async move { text(send(addr, get("/")).await).await });
    arrived_rx.recv().await.unwrap();
    stop_tx.send(()).unwrap();

    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the listener still accepts after shutdown began");
    assert!(!server.is_finished());

    release_tx.send(()).unwrap();
    assert_eq!(in_flight.await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server did not stop after draining")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_still_running_after_the_grace_period_are_cut_off() {
    let (arrived_tx, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stuck = service_fn(move |_req: Request<Incoming>| {
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(());
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::from_listener(listener)
            .grace_period(Duration::from_secs(3))
            .serve_with_shutdown(stuck, async {
                let _ = stop_rx.await;
            }),
    );
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    arrived_rx.recv().await.unwrap();

    let stopping = tokio::time::Instant::now();
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(stopping.elapsed() >= Duration::from_secs(3));
    // The stuck request's connection was closed, without a response.
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut out))
        .await
        .expect("the stuck connection was left open")
        .unwrap();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

/// A service answering with the name of the thread that served the request.
fn thread_name() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    service_fn(|_req: Request<Incoming>| async {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
    })
}

/// `service` served on two worker threads (`configure` adds settings) at 127.0.0.1:0; the
/// sender stops it, the handle ends with the server.
fn serve_on_two_workers<S>(
    service: S,
    configure: impl FnOnce(Server) -> Server,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tower_gateway::server::bind_reuse_port("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = configure(Server::from_listener(listener).worker_threads(2));
    let server = tokio::spawn(server.serve_with_shutdown(service, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

#[tokio::test]
async fn worker_threads_serve_connections_on_threads_of_their_own_each_with_its_listener() {
    let (addr, stop, server) = serve_on_two_workers(thread_name(), |s| s);
    let mut names = std::collections::BTreeSet::new();
    // The kernel hashes each new connection to one of the two listeners: 32 connections all
    // landing on one would happen once in 2^31 runs.
    for _ in 0..32 {
        names.insert(text(send(addr, get("/")).await).await);
    }
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["gateway-worker-0", "gateway-worker-1"]
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a worker still listens after the shutdown"
    );
}

#[tokio::test]
async fn worker_threads_share_the_connection_cap_and_finish_in_flight_requests_on_shutdown() {
    let (release, released) = tokio::sync::watch::channel(false);
    let slow = service_fn(move |_req: Request<Incoming>| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
        }
    });
    let (addr, stop, server) = serve_on_two_workers(slow, |s| s.max_connections(2));
    let first = tokio::spawn(send(addr, get("/")));
    let second = tokio::spawn(send(addr, get("/")));
    // Both are open (and waiting) before the third comes, wherever the kernel put them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = raw_exchange(addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(
        reply, "",
        "a third connection was served over the cap of two"
    );

    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = release.send(true);
    for pending in [first, second] {
        let res = pending.await.unwrap();
        assert_eq!(text(res).await, "done");
    }
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
}
