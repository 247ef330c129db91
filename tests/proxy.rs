//! ReverseProxy over real sockets: header rules, forwarding, failures, streaming, cancellation.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower_gateway::proxy::{ProxyConfig, ReverseProxy, TrustedProxies};
use tower_gateway::router::{Route, Router};

fn proxy(origin: &str) -> ReverseProxy<Incoming> {
    ReverseProxy::new(ProxyConfig::new(origin).unwrap())
}

async fn gateway_to(config: ProxyConfig) -> std::net::SocketAddr {
    let (addr, stop) = serve(ReverseProxy::<Incoming>::new(config)).await;
    std::mem::forget(stop);
    addr
}

#[tokio::test]
async fn request_hop_by_hop_headers_are_removed_including_connection_nominated_ones() {
    let (up, mut seen) = ok_upstream().await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;

    let req = Request::get("/x")
        .header("host", "gw")
        .header("connection", "keep-alive, X-Secret")
        .header("connection", "x-other")
        .header("x-secret", "1")
        .header("x-other", "2")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("upgrade", "h2c")
        .header("te", "trailers, deflate")
        .header("trailer", "x-sum")
        .header("x-end-to-end", "a")
        .header("x-end-to-end", "b")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(gw, req).await.status(), 200);

    let seen = seen.recv().await.unwrap();
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(!seen.headers.contains_key(gone), "{gone} was forwarded");
    }
    // `Trailer` announces end-to-end fields (RFC 9110 §6.6.2): it goes on.
    assert_eq!(seen.headers["trailer"], "x-sum");
    // The upstream connection's own `connection` header is hyper's business; the client's
    // tokens must not reach it.
    for value in seen.headers.get_all("connection") {
        assert!(
            !value
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("x-secret")
        );
    }
    assert_eq!(seen.headers["te"], "trailers");
    let e2e: Vec<_> = seen.headers.get_all("x-end-to-end").iter().collect();
    assert_eq!(e2e, ["a", "b"]);
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_removed_and_repeated_set_cookie_survives() {
    let (up, _seen) = upstream(|_| async {
        Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("upgrade", "h2c")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap()
    })
    .await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), 200);
    for gone in ["x-internal", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(!res.headers().contains_key(gone), "{gone} was relayed");
    }
    let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(text(res).await, "hi");
}

#[tokio::test]
async fn x_forwarded_for_is_appended_and_forwarded_headers_are_computed() {
    let (up, mut seen) = ok_upstream().await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let req = Request::get("/")
        .header("host", "api.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .body(Full::default())
        .unwrap();
    send(gw, req).await;
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
    // The peer is not trusted: its X-Forwarded-* claims are replaced.
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    assert_eq!(seen.headers["x-forwarded-port"], gw.port().to_string());
    // preserve_host is off: the upstream sees its own authority.
    assert_eq!(seen.headers["host"], up.to_string());
}

#[tokio::test]
async fn a_trusted_peer_keeps_its_forwarded_headers_and_names_the_client() {
    let (up, mut seen) = ok_upstream().await;
    let config = ProxyConfig::new(format!("http://{up}"))
        .unwrap()
        .trusted_proxies("127.0.0.0/8".parse::<TrustedProxies>().unwrap());
    let gw = gateway_to(config).await;
    let req = Request::get("/")
        .header("host", "api.example.com")
        .header("x-forwarded-for", "198.51.100.7, 127.0.0.5")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-port", "443")
        .body(Full::default())
        .unwrap();
    send(gw, req).await;
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-port"], "443");
    assert_eq!(seen.headers["x-real-ip"], "198.51.100.7");
    assert_eq!(
        seen.headers["x-forwarded-for"],
        "198.51.100.7, 127.0.0.5, 127.0.0.1"
    );
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host() {
    let (up, mut seen) = ok_upstream().await;
    let config = ProxyConfig::new(format!("http://{up}"))
        .unwrap()
        .preserve_host(true);
    let gw = gateway_to(config).await;
    send(gw, get("/")).await;
    assert_eq!(seen.recv().await.unwrap().headers["host"], "gateway.test");
}

#[tokio::test]
async fn upstream_path_is_base_path_plus_request_path_with_the_query_kept() {
    let (up, mut seen) = ok_upstream().await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}/base")).unwrap()).await;
    send(gw, get("/users/7?expand=orders&x=%20")).await;
    assert_eq!(
        seen.recv().await.unwrap().uri,
        "/base/users/7?expand=orders&x=%20"
    );
}

#[tokio::test]
async fn strip_path_joins_like_kong_and_reports_the_prefix() {
    let (up, mut seen) = ok_upstream().await;
    let router = Router::builder()
        .route(Route::new().path("/fv0"), proxy(&format!("http://{up}/s")))
        .build()
        .unwrap();
    let (gw, _stop) = serve(router).await;

    send(gw, get("/fv0/req?q=1")).await;
    let s = seen.recv().await.unwrap();
    assert_eq!(s.uri, "/s/req?q=1");
    assert_eq!(s.headers["x-forwarded-prefix"], "/fv0");
    assert_eq!(s.headers["x-forwarded-path"], "/fv0/req");

    send(gw, get("/fv0")).await;
    assert_eq!(seen.recv().await.unwrap().uri, "/s");
}

#[tokio::test]
async fn a_refused_connection_is_a_502_with_a_json_body() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway_to(ProxyConfig::new(format!("http://{port}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        text(res).await,
        r#"{"message":"An invalid response was received from the upstream server"}"#
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_never_answers_is_a_504_after_the_read_timeout() {
    let up = silent_upstream().await;
    let config = ProxyConfig::new(format!("http://{up}"))
        .unwrap()
        .read_timeout(Duration::from_secs(3));
    let gw = gateway_to(config).await;
    let started = tokio::time::Instant::now();
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    // The read timeout fired, not the 60 s connect timeout.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
    assert_eq!(
        text(res).await,
        r#"{"message":"The upstream server is timing out"}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_never_completes_is_a_504_after_the_connect_timeout() {
    // A listener with a backlog of one that never accepts: once its queue is full, the kernel
    // drops further SYNs and connecting hangs.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let up = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(up)).await {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let config = ProxyConfig::new(format!("http://{up}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(600));
    let gw = gateway_to(config).await;
    let started = tokio::time::Instant::now();
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    // The connect timeout fired, not the read timeout.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(600),
        "{waited:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_a_502_not_relayed() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(!text(res).await.contains("hello"));
}

#[tokio::test]
async fn two_different_content_lengths_are_a_502() {
    let up =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!")
            .await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn an_unknown_transfer_encoding_is_a_502() {
    let up = raw_upstream(b"HTTP/1.1 200 OK\r\ntransfer-encoding: foo\r\n\r\nhello").await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(!text(res).await.contains("hello"));
}

#[tokio::test]
async fn garbage_instead_of_a_response_is_a_502() {
    let up = raw_upstream(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    assert_eq!(send(gw, get("/")).await.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_truncated_sized_body_is_not_presented_as_complete() {
    let up = raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b").await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.into_body().collect().await.is_err(),
        "truncated body read as complete"
    );
}

#[tokio::test]
async fn a_truncated_chunked_body_is_not_presented_as_complete() {
    let up =
        raw_upstream(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.into_body().collect().await.is_err(),
        "truncated body read as complete"
    );
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_request() {
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel::<()>();
    let (cancelled_tx, cancelled_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        let _ = arrived_tx.send(());
        // Never answer; report when the gateway closes the connection.
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        let _ = cancelled_tx.send(());
    });
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;

    let mut client = TcpStream::connect(gw).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    arrived_rx.await.unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), cancelled_rx)
        .await
        .expect("the upstream connection was not closed after the client left")
        .unwrap();
}

#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    // The upstream echoes each request chunk as it arrives.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let echo = tower::service_fn(|req: Request<Incoming>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(req.into_body()))
    });
    tokio::spawn(tower_gateway::server::Server::from_listener(listener).serve(echo));
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = ChannelBody(rx);
    let mut sender = http1_client(gw).await;
    let req = Request::post("/echo")
        .header("host", "gw")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(req).await.unwrap() });

    tx.send(Bytes::from_static(b"first")).await.unwrap();
    let res = pending.await.unwrap();
    let mut body = res.into_body();
    // The first chunk comes back while the request body is still open.
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk not streamed back")
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");
    tx.send(Bytes::from_static(b"second")).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "second");
    drop(tx);
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (up, mut seen) = ok_upstream().await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    send(gw, get("/1"))
        .await
        .into_body()
        .collect()
        .await
        .unwrap();
    send(gw, get("/2"))
        .await
        .into_body()
        .collect()
        .await
        .unwrap();
    let first = seen.recv().await.unwrap().peer;
    let second = seen.recv().await.unwrap().peer;
    assert_eq!(
        first, second,
        "the second request opened a new upstream connection"
    );
}

/// A TCP upstream that answers every request with `ok` and closes the connection right after,
/// without saying so (no `Connection: close`): a keep-alive connection the pool believes
/// reusable until it sees the close.
async fn closing_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_and_no_request_fails() {
    let (up, accepted) = closing_upstream().await;
    let gw = gateway_to(ProxyConfig::new(format!("http://{up}")).unwrap()).await;
    let mut client = support::http1_client::<Full<Bytes>>(gw).await;
    for i in 0..20 {
        let res = client.send_request(get(&format!("/{i}"))).await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(text(res).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn an_upstream_connection_idle_past_the_idle_timeout_is_closed() {
    let (up, mut seen) = ok_upstream().await;
    let config = ProxyConfig::new(format!("http://{up}"))
        .unwrap()
        .idle_timeout(Duration::from_secs(10));
    let gw = gateway_to(config).await;
    let mut client = support::http1_client::<Full<Bytes>>(gw).await;
    text(client.send_request(get("/1")).await.unwrap()).await;
    let first = seen.recv().await.unwrap().peer;

    // Still pooled within the timeout…
    tokio::time::sleep(Duration::from_secs(4)).await;
    text(client.send_request(get("/2")).await.unwrap()).await;
    assert_eq!(seen.recv().await.unwrap().peer, first);

    // …closed after it: the next request opens another connection.
    tokio::time::sleep(Duration::from_secs(30)).await;
    text(client.send_request(get("/3")).await.unwrap()).await;
    assert_ne!(seen.recv().await.unwrap().peer, first);
}

#[tokio::test]
async fn responses_carry_upstream_info_and_reused_extension_maps_carry_nothing_over() {
    use tower::ServiceExt;
    use tower_gateway::proxy::UpstreamInfo;

    #[derive(Clone)]
    struct Leftover;

    let (up, _seen) = ok_upstream().await;
    let proxy = proxy(&format!("http://{up}"));
    // Fails a request whose extensions hold anything of an earlier exchange on the
    // connection; marks every response so that a map reused unemptied would show it.
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        async move {
            let ext = req.extensions();
            let clean = ext.get::<Leftover>().is_none() && ext.get::<UpstreamInfo>().is_none();
            let mut res = proxy.oneshot(req).await?;
            if !clean {
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            let info = *res
                .extensions()
                .get::<UpstreamInfo>()
                .expect("upstream info");
            assert_eq!(info.remote_addr, Some(up));
            assert!(info.local_addr.is_some_and(|a| a.ip().is_loopback()));
            res.extensions_mut().insert(Leftover);
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let (gw, _stop) = serve(service).await;
    let mut client = http1_client::<Full<Bytes>>(gw).await;
    for n in 0..5 {
        client.ready().await.unwrap();
        let res = client.send_request(get("/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "request {n}");
        res.into_body().collect().await.unwrap();
    }
}

/// Issue 18's body trap: a full stack's response body nested a wrapper per layer, so an
/// application could not name the service it stores. Boxed once at the top, it is one type.
#[tokio::test]
async fn a_full_stack_boxed_at_the_top_is_one_named_type_serving_real_requests() {
    use std::convert::Infallible;
    use tower::ServiceBuilder;
    use tower::util::BoxCloneService;
    use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers};
    use tower_gateway::balance::{Balancer, Endpoint, RoundRobin};
    use tower_gateway::body::{BoxBody, boxed};
    use tower_gateway::circuit::{CircuitBreakerLayer, Policy};
    use tower_gateway::log::AccessLogLayer;
    use tower_gateway::ratelimit::{KeyBy, Rate, RateLimitLayer, TokenBucket};
    use tower_gateway::request_id::RequestIdLayer;

    type Gateway = BoxCloneService<Request<Incoming>, Response<BoxBody>, Infallible>;

    let (up, _seen) = named_upstream("users").await;
    let consumers = Consumers::new();
    consumers.insert(Consumer::new("c-1").username("ann"));
    consumers.add_api_key("ann", "ann-key").unwrap();
    let pool = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let users = Balancer::builder(RoundRobin::new())
        .endpoint(
            Endpoint::from(up),
            tower::Layer::layer(&CircuitBreakerLayer::new(Policy::default()), pool),
        )
        .build();
    let router = Router::builder()
        .route(
            Route::new().name("users").path("/users").strip_path(false),
            users,
        )
        .build()
        .unwrap();
    let gateway: Gateway = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(boxed())
            .layer(RequestIdLayer::new())
            .layer(AccessLogLayer::json())
            .layer(AuthLayer::new(ApiKey::new(consumers)))
            .layer(RateLimitLayer::new(
                KeyBy::Consumer,
                TokenBucket::new(Rate::per_minute(60), 2),
            ))
            .service(router),
    );
    let (addr, _stop) = serve(gateway).await;

    let res = send(addr, get("/users/7")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let with_key = || {
        let mut req = get("/users/7");
        req.headers_mut()
            .insert("apikey", "ann-key".parse().unwrap());
        req
    };
    let res = send(addr, with_key()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(text(res).await, "users");
    send(addr, with_key()).await;
    assert_eq!(
        send(addr, with_key()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
