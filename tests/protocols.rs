#![cfg(feature = "config")]
//! Protocols beyond request and response: WebSocket upgrades relayed through the gateway (with
//! its authentication first), server-sent events delivered as they are sent.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use support::protocols::*;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::server::Server;

/// A gateway over `yaml`, with a short header-read timeout (an idle tunnel must outlive it).
async fn gateway(yaml: &str) -> SocketAddr {
    let config = Config::from_yaml(yaml).unwrap();
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .header_read_timeout(Duration::from_millis(300))
            .serve(gateway.router()),
    );
    addr
}

fn ws_config(up: SocketAddr) -> String {
    format!(
        "_format_version: \"3.0\"
services:
  - name: chat
    url: http://{up}
    routes:
      - name: chat
        paths: [/chat]
        plugins:
          - name: key-auth
consumers:
  - username: ann
    keyauth_credentials:
      - key: k-ann
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_relayed_both_ways_after_authentication() {
    let up = echo_upstream().await;
    let gw = gateway(&ws_config(up)).await;

    let mut request = format!("ws://{gw}/chat").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("apikey", "k-ann".parse().unwrap());
    let stream = TcpStream::connect(gw).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for word in ["hello", "world"] {
        ws.send(Message::text(word)).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(word.to_uppercase()));
    }
    // Idle for longer than the header-read timeout: a tunnel is not an idle connection.
    tokio::time::sleep(Duration::from_millis(600)).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("STILL HERE")
    );
    ws.close(None).await.unwrap();

    // Without the key, the upgrade is refused before the upstream sees it.
    let request = format!("ws://{gw}/chat").into_client_request().unwrap();
    let stream = TcpStream::connect(gw).await.unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn an_upgrade_the_upstream_refuses_is_relayed_as_it_is() {
    let (up, _seen) = upstream(|_| async {
        let mut res = Response::new(http_body_util::Full::new(Bytes::from_static(b"no")));
        *res.status_mut() = StatusCode::FORBIDDEN;
        res
    })
    .await;
    let gw = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n"
    ))
    .await;
    let request = format!("ws://{gw}/socket").into_client_request().unwrap();
    let stream = TcpStream::connect(gw).await.unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
        }
        other => panic!("expected the upstream's 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_client_as_they_are_sent() {
    // An upstream sending one event every 200 ms.
    let up = sse_upstream(5).await;
    let gw = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/events]\n"
    ))
    .await;
    let res = send(gw, get("/events")).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let started = tokio::time::Instant::now();
    let mut received = 0u32;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        for event in String::from_utf8_lossy(&data)
            .split("\n\n")
            .filter(|e| !e.is_empty())
        {
            assert_eq!(event, format!("data: {received}"));
            // Event n leaves the upstream at n × 200 ms; it must arrive within 100 ms of that.
            let sent_at = Duration::from_millis(200 * u64::from(received));
            let late = started.elapsed().saturating_sub(sent_at);
            assert!(
                late < Duration::from_millis(100),
                "event {received} came {late:?} late"
            );
            received += 1;
        }
    }
    assert_eq!(received, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_shares_the_listener_with_http1() {
    let (up, mut seen) = ok_upstream().await;
    let gw = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/h2]\n"
    ))
    .await;
    let stream = TcpStream::connect(gw).await.unwrap();
    let mut h2 = support::h2_client(stream).await;
    for i in 0..3 {
        let req = http::Request::get(format!("http://gateway.test/h2/{i}"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let res = h2.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
        let upstream = seen.recv().await.unwrap();
        // Forwarded over HTTP/1.1 (the route strips its prefix), with the client's authority
        // as the forwarded host.
        assert_eq!(upstream.uri.path(), format!("/{i}"));
        assert_eq!(upstream.headers["x-forwarded-host"], "gateway.test");
    }
    // HTTP/1.1 on the same listener.
    assert_eq!(send(gw, get("/h2/x")).await.status(), 200);
}

async fn grpc_client(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<StreamBody<Frames>> {
    support::h2_client(TcpStream::connect(addr).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_both_ways_with_its_trailers_and_gateway_errors_in_grpc_terms() {
    let up = grpc_upstream().await;
    let gw = gateway(&format!(
        "_format_version: \"3.0\"
services:
  - name: echo
    url: grpc://{up}
    routes:
      - name: open
        paths: [/echo.Echo]
        strip_path: false
      - name: locked
        paths: [/secure.Echo]
        strip_path: false
        plugins:
          - name: key-auth
"
    ))
    .await;
    let mut client = grpc_client(gw).await;

    // Bidirectional streaming: each message comes back before the next is sent.
    let (tx, body) = channel_body();
    let res = client
        .send_request(grpc_request("/echo.Echo/Stream", body))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut replies = res.into_body();
    for message in ["first", "second", "third"] {
        tx.send(http_body::Frame::data(Bytes::from(message)))
            .unwrap();
        let frame = replies.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), message);
    }
    drop(tx);
    let trailers = loop {
        let frame = replies.frame().await.unwrap().unwrap();
        if let Ok(trailers) = frame.into_trailers() {
            break trailers;
        }
    };
    assert_eq!(trailers["grpc-status"], "0");

    // A trailers-only error from the upstream is relayed as it is.
    let (_tx, body) = channel_body();
    let res = client
        .send_request(grpc_request("/echo.Echo/Missing", body))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "5");

    // The gateway's own refusal, in gRPC's terms: UNAUTHENTICATED, trailers-only.
    let (_tx, body) = channel_body();
    let res = client
        .send_request(grpc_request("/secure.Echo/Stream", body))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["grpc-message"], "Unauthorized");
    // And an unknown method: UNIMPLEMENTED.
    let (_tx, body) = channel_body();
    let res = client
        .send_request(grpc_request("/nothing.Here/Call", body))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "12");
}

#[tokio::test]
async fn expect_continue_head_and_http1_trailers_behave_as_http_says() {
    // An upstream that echoes the body's length, and sends trailers when asked for them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let service = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let wants_trailers = req.uri().path() == "/trailers";
        let length = req.into_body().collect().await.unwrap().to_bytes().len();
        let (tx, body) = channel_body();
        tx.send(http_body::Frame::data(Bytes::from(format!("got {length}"))))
            .unwrap();
        if wants_trailers {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-checksum", "abc".parse().unwrap());
            tx.send(http_body::Frame::trailers(trailers)).unwrap();
        }
        drop(tx);
        let mut res = Response::new(body);
        res.headers_mut()
            .insert("x-upstream", "yes".parse().unwrap());
        if wants_trailers {
            // HTTP/1.1 sends the trailers the `Trailer` field announces.
            res.headers_mut()
                .insert("trailer", "x-checksum".parse().unwrap());
        }
        Ok::<_, std::convert::Infallible>(res)
    });
    tokio::spawn(Server::from_listener(listener).serve(service));
    let gw = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n"
    ))
    .await;

    // Expect: 100-continue: the gateway says continue before the body is sent.
    let mut stream = TcpStream::connect(gw).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: g\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 25];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let mut rest = vec![0u8; 1024];
    let n = stream.read(&mut rest).await.unwrap();
    let answer = String::from_utf8_lossy(&rest[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("got 5"), "{answer}");

    // HEAD: the upstream's head, no body.
    let answer = raw_exchange(
        gw,
        b"HEAD /x HTTP/1.1\r\nhost: g\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-upstream: yes"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n"),
        "a body came with HEAD: {answer}"
    );

    // Trailers over HTTP/1.1 chunked, to a client that accepts them.
    let answer = raw_exchange(
        gw,
        b"GET /trailers HTTP/1.1\r\nhost: g\r\nte: trailers\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains("transfer-encoding: chunked"), "{answer}");
    assert!(answer.contains("x-checksum: abc"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_http2_upstream_connection_is_retired_and_replaced() {
    // An h2c upstream that closes every connection 200 ms after accepting it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let conn =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper::service::service_fn(grpc_answer),
                    );
            tokio::spawn(tokio::time::timeout(Duration::from_millis(200), conn));
        }
    });
    let gw = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: grpc://{up}\n    routes:\n      - paths: [/echo.Echo]\n        strip_path: false\n"
    ))
    .await;
    let mut client = support::h2_client(TcpStream::connect(gw).await.unwrap()).await;
    for round in 0..3 {
        let (tx, body) = channel_body();
        drop(tx);
        let res = client
            .send_request(grpc_request("/echo.Echo/Stream", body))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "round {round}");
        let trailers = res.into_body().collect().await.unwrap();
        assert_eq!(trailers.trailers().unwrap()["grpc-status"], "0");
        // Long enough for the upstream to have closed its connection (200 ms), short enough
        // for the client's own to stay open (the header-read timeout here is 300 ms).
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one connection per round"
    );
}

/// A socket that stops answering once `frozen` is set: reads and writes wait forever, the
/// connection stays open.
struct Freezable {
    inner: TcpStream,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for Freezable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Freezable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upstream_that_goes_silent_is_noticed_by_its_pings_and_replaced() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tower::ServiceExt;
    use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
    // An h2c upstream whose connections answer one request, then go silent without closing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let frozen = Arc::new(AtomicBool::new(false));
            let freeze = frozen.clone();
            let service = hyper::service::service_fn(move |req| {
                let freeze = freeze.clone();
                async move {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        freeze.store(true, Ordering::SeqCst);
                    });
                    grpc_answer(req).await
                }
            });
            let io = Freezable {
                inner: stream,
                frozen,
            };
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(io), service),
            );
        }
    });
    let proxy = ReverseProxy::<http_body_util::Full<Bytes>>::new(
        ProxyConfig::new(format!("http://{up}"))
            .unwrap()
            .http2_prior_knowledge(true)
            .http2_keep_alive(Duration::from_millis(200), Duration::from_millis(200))
            .read_timeout(Duration::from_secs(3)),
    );
    let call = |proxy: ReverseProxy<http_body_util::Full<Bytes>>| async move {
        let req = http::Request::post("/echo.Echo/Unary")
            .header("content-type", "application/grpc")
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let res = proxy.oneshot(req).await.unwrap();
        let status = res.status();
        let trailers = res.into_body().collect().await.unwrap();
        (status, trailers.trailers().cloned())
    };
    let (status, trailers) = call(proxy.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    // The connection goes silent 300 ms later; a ping goes unanswered 400 ms after that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = std::time::Instant::now();
    let (status, _) = call(proxy).await;
    assert_eq!(
        status, 200,
        "served on a new connection, not stuck on the silent one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_open_tunnels_until_the_grace_period_ends_then_closes_them() {
    let up = echo_upstream().await;
    let config = Config::from_yaml(&ws_config(up)).unwrap();
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::from_listener(listener)
            .grace_period(Duration::from_millis(500))
            .serve_with_shutdown(gateway.router(), async {
                let _ = stopped.await;
            }),
    );
    let mut request = format!("ws://{gw}/chat").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("apikey", "k-ann".parse().unwrap());
    let stream = TcpStream::connect(gw).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("BEFORE"));

    let asked = std::time::Instant::now();
    stop.send(()).unwrap();
    // Within the grace period the tunnel still relays, and the server still waits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ws.send(Message::text("during")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("DURING"));
    assert!(
        !server.is_finished(),
        "the server stopped with a tunnel open"
    );
    // Then it is closed, and the server returns.
    let ended = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(
        matches!(ended, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{ended:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn an_http2_upstream_s_address_and_latency_are_one_upstream_info() {
    use tower::ServiceExt;
    use tower_gateway::proxy::{ProxyConfig, ReverseProxy, UpstreamInfo};

    let up = grpc_upstream().await;
    let proxy = ReverseProxy::<http_body_util::Full<Bytes>>::new(
        ProxyConfig::new(format!("http://{up}"))
            .unwrap()
            .http2_prior_knowledge(true),
    );
    let req = http::Request::post("/echo.Echo/Missing")
        .header("host", "grpc.test")
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let res = proxy.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // hyper-util's `HttpInfo` is folded into the proxy's one entry.
    let info = res
        .extensions()
        .get::<UpstreamInfo>()
        .expect("upstream info");
    assert_eq!(info.remote_addr, Some(up));
    assert!(
        res.extensions()
            .get::<hyper_util::client::legacy::connect::HttpInfo>()
            .is_none()
    );
}
