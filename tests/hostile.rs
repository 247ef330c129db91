//! The gateway attacked as a hostile client would, over real sockets: upgrade smuggling,
//! broken framing, stalls at every phase, connection floods and key floods. Whatever the
//! client does is answered as the client's fault and never counts against an upstream.

mod support;

use std::net::SocketAddr;
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
use tower_gateway::body::BodyTimeouts;
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::server::Server;

// --- helpers ------------------------------------------------------------------------------

/// An upstream that counts the requests whose body arrived complete, and answers 200.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let complete = Arc::new(AtomicUsize::new(0));
    let seen = complete.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            if req.into_body().collect().await.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    tokio::spawn(Server::from_listener(listener).serve(service));
    (addr, complete)
}

/// A gateway from a declarative file whose one route goes through a circuit breaker that
/// opens after two failures and an upstream whose target is ejected after one: anything a
/// client could make count against the upstream shows at once.
async fn guarded_gateway(up: SocketAddr, server: impl FnOnce(Server) -> Server) -> SocketAddr {
    let yaml = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: backend
    targets:
      - target: {up}
    healthchecks:
      passive:
        unhealthy:
          tcp_failures: 1
          timeouts: 1
          http_failures: 1
          http_statuses: [400, 408, 500, 502, 503, 504]
services:
  - name: s
    host: backend
    routes:
      - paths: [/]
    plugins:
      - name: circuit-breaker
        config:
          failures: 2
          open_time: 60
"#
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server(Server::from_listener(listener)).serve(gateway.router()));
    addr
}

/// A guarded gateway whose request bodies may stall 5 s between reads, and take `total`
/// seconds in all; with the upstream's count of complete bodies.
async fn body_timeout_gateway(total: Option<u64>) -> (SocketAddr, Arc<AtomicUsize>) {
    let (up, complete) = counting_upstream().await;
    let timeouts = BodyTimeouts {
        between_reads: Duration::from_secs(5),
        total: total.map(Duration::from_secs),
    };
    (
        guarded_gateway(up, |s| s.body_timeouts(timeouts)).await,
        complete,
    )
}

/// Writes `request` on a new connection, half-closes it, and reads what comes back.
async fn exchange_then_close(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line's code of a raw reply, or 0 when the connection closed without one.
fn status_of(reply: &str) -> u16 {
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The gateway still serves a well-behaved client: the breaker is closed and the target in.
async fn assert_upstream_still_trusted(gw: SocketAddr) {
    for _ in 0..3 {
        let res = send(gw, get("/")).await;
        assert_eq!(res.status(), StatusCode::OK, "the upstream was blamed");
    }
}

/// A raw TCP upstream that records each request head it reads and answers with `reply`, then
/// writes `after` (bytes a tunnel would carry).
async fn recording_upstream(
    reply: &'static [u8],
    after: &'static [u8],
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                let _ = stream.write_all(reply).await;
                let _ = stream.write_all(after).await;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, rx)
}

fn proxy_to(up: SocketAddr) -> tower_gateway::proxy::ReverseProxy<Incoming> {
    tower_gateway::proxy::ReverseProxy::new(
        tower_gateway::proxy::ProxyConfig::new(format!("http://{up}")).unwrap(),
    )
}

async fn plain_proxy(up: SocketAddr) -> SocketAddr {
    let (addr, stop) = serve(proxy_to(up)).await;
    std::mem::forget(stop);
    addr
}

/// A GET counted under the rate-limit key `key`.
fn keyed(key: &str) -> Request<Full<Bytes>> {
    Request::get("/")
        .header("host", "a")
        .header("x-key", key)
        .body(Full::default())
        .unwrap()
}

// --- upgrade smuggling --------------------------------------------------------------------

const SWITCH_TO_H2C: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n";

#[tokio::test]
async fn an_h2c_upgrade_is_never_forwarded_and_the_request_goes_on_plain() {
    let (up, mut heads) = recording_upstream(SWITCH_TO_H2C, b"SMUGGLED").await;
    let gw = plain_proxy(up).await;
    let reply = raw_exchange(
        gw,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let head = heads.recv().await.unwrap();
    assert!(!head.contains("upgrade"), "{head}");
    assert!(!head.contains("http2-settings"), "{head}");
    // The upstream switched anyway: refused, and nothing it sent after reaches the client.
    assert_eq!(status_of(&reply), 502, "{reply}");
    assert!(!reply.contains("SMUGGLED"), "{reply}");
}

#[tokio::test]
async fn unknown_upgrade_tokens_are_dropped_and_websocket_alone_is_kept() {
    let (up, mut seen) = ok_upstream().await;
    let gw = plain_proxy(up).await;
    let reply = raw_exchange(
        gw,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: foo/1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    let seen = seen.recv().await.unwrap();
    assert!(seen.headers.get("upgrade").is_none(), "{:?}", seen.headers);
    assert!(
        seen.headers.get("connection").is_none(),
        "{:?}",
        seen.headers
    );

    // Several protocols asked at once: only the allowed one goes on.
    let (up, mut heads) = recording_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        b"",
    )
    .await;
    let gw = plain_proxy(up).await;
    let mut client = TcpStream::connect(gw).await.unwrap();
    client
        .write_all(
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: h2c, websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let head = heads.recv().await.unwrap();
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(!head.contains("h2c"), "{head}");
    let reply = String::from_utf8_lossy(&read_head(&mut client).await).into_owned();
    assert_eq!(status_of(&reply), 101, "{reply}");
}

#[tokio::test]
async fn a_101_to_another_protocol_than_asked_is_502() {
    let (up, _heads) = recording_upstream(SWITCH_TO_H2C, b"SMUGGLED").await;
    let gw = plain_proxy(up).await;
    let reply = raw_exchange(
        gw,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&reply), 502, "{reply}");
    assert!(!reply.contains("SMUGGLED"), "{reply}");
}

#[tokio::test]
async fn a_101_to_a_request_that_asked_for_no_upgrade_is_502() {
    let (up, _heads) = recording_upstream(SWITCH_TO_H2C, b"SMUGGLED").await;
    let gw = plain_proxy(up).await;
    let reply = raw_exchange(gw, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&reply), 502, "{reply}");
    assert!(!reply.contains("SMUGGLED"), "{reply}");
}

// --- broken framing -----------------------------------------------------------------------

#[tokio::test]
async fn malformed_chunk_sizes_are_the_clients_400_and_never_blamed_on_the_upstream() {
    let (up, complete) = counting_upstream().await;
    let gw = guarded_gateway(up, |s| s).await;
    let spellings: &[&str] = &[
        "0x5",
        "+5",
        "-5",
        " 5",
        "0_5",
        "",
        "5junk",
        "11111111111111111",
        "z",
    ];
    for size in spellings {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n{size}\r\nhello\r\n0\r\n\r\n"
        );
        let reply = exchange_then_close(gw, request.as_bytes()).await;
        let status = status_of(&reply);
        assert!(
            status == 400 || status == 0,
            "chunk size {size:?} answered {status}: {reply}"
        );
    }
    // Messages the parser refuses before any routing: conflicting framing, bare CR, obs-fold.
    let refused: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nx-a: b\rc\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nx-a: b\r\n  folded\r\n\r\n",
    ];
    for request in refused {
        let reply = exchange_then_close(gw, request).await;
        assert_eq!(status_of(&reply), 400, "{reply}");
    }
    assert_eq!(
        complete.load(Ordering::SeqCst),
        0,
        "the upstream saw a whole message"
    );
    assert_upstream_still_trusted(gw).await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_the_clients_fault() {
    let (up, complete) = counting_upstream().await;
    let gw = guarded_gateway(up, |s| s).await;
    for _ in 0..4 {
        let reply = exchange_then_close(
            gw,
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc",
        )
        .await;
        let status = status_of(&reply);
        assert!(status == 400 || status == 0, "{reply}");
    }
    assert_eq!(complete.load(Ordering::SeqCst), 0);
    assert_upstream_still_trusted(gw).await;
}

// --- stalls -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_stalled_request_body_is_408_and_never_blamed_on_the_upstream() {
    let (gw, complete) = body_timeout_gateway(None).await;
    for _ in 0..3 {
        let mut client = TcpStream::connect(gw).await.unwrap();
        client
            .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nab")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let head = String::from_utf8_lossy(&read_head(&mut client).await).into_owned();
        assert_eq!(status_of(&head), 408, "{head}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
    assert_eq!(complete.load(Ordering::SeqCst), 0);
    assert_upstream_still_trusted(gw).await;
}

#[tokio::test(start_paused = true)]
async fn a_trickled_body_is_cut_by_the_total_body_timeout() {
    let (gw, complete) = body_timeout_gateway(Some(20)).await;
    let mut client = TcpStream::connect(gw).await.unwrap();
    client
        .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let (mut read, mut write) = client.into_split();
    let trickle = tokio::spawn(async move {
        // One byte a second: never a 5 s gap.
        while write.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut reply = vec![0u8; 1024];
    let n = read.read(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
    assert_eq!(status_of(&reply), 408, "{reply}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(22),
        "{waited:?}"
    );
    trickle.abort();
    assert_eq!(complete.load(Ordering::SeqCst), 0);
    assert_upstream_still_trusted(gw).await;
}

#[tokio::test(start_paused = true)]
async fn an_http2_stream_whose_body_stalls_is_408() {
    let (gw, complete) = body_timeout_gateway(None).await;
    let mut h2 = h2_client(TcpStream::connect(gw).await.unwrap()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Bytes::from_static(b"part")).await.unwrap();
    let req = Request::post(format!("http://{gw}/"))
        .body(ChannelBody(rx))
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    drop(tx);
    assert_eq!(complete.load(Ordering::SeqCst), 0);
    assert_upstream_still_trusted(gw).await;
}

async fn hello_server(configure: impl FnOnce(Server) -> Server) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(configure(Server::from_listener(listener)).serve(hello()));
    addr
}

/// How long the server keeps `client` open: reads until it closes.
async fn open_for(client: &mut TcpStream) -> Duration {
    let started = tokio::time::Instant::now();
    let mut sink = [0u8; 1024];
    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
    let addr = hello_server(|s| s.header_read_timeout(Duration::from_secs(5))).await;
    let mut sockets = Vec::new();
    for _ in 0..50 {
        sockets.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = tokio::time::Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = vec![None; sockets.len()];
    'bytes: for byte in head.iter() {
        for (i, socket) in sockets.iter_mut().enumerate() {
            if closed[i].is_none() && socket.write_all(&[*byte]).await.is_err() {
                closed[i] = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if started.elapsed() > Duration::from_secs(8) {
            break 'bytes;
        }
    }
    for socket in &mut sockets {
        let open = open_for(socket).await;
        assert!(
            started.elapsed() <= Duration::from_secs(9),
            "still open after {open:?}"
        );
    }
    let mut reply = Vec::new();
    let _ = sockets[0].read_to_end(&mut reply).await;
    assert!(!String::from_utf8_lossy(&reply).contains("200"));
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_at_the_header_timeout_not_twice_it() {
    let addr = hello_server(|s| s.header_read_timeout(Duration::from_secs(5))).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let open = open_for(&mut client).await;
    assert!(
        open >= Duration::from_secs(5) && open < Duration::from_secs(6),
        "{open:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_keep_alive_timeout_and_its_next_head_has_the_header_timeout()
 {
    let addr = hello_server(|s| {
        s.header_read_timeout(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(3))
    })
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = client.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
    let open = open_for(&mut client).await;
    assert!(
        open >= Duration::from_secs(3) && open < Duration::from_secs(4),
        "{open:?}"
    );

    // A later head, begun within the keep-alive timeout, has the header timeout from its first
    // byte, not a fresh one per byte.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let n = client.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let began = tokio::time::Instant::now();
    let (mut read, mut write) = client.into_split();
    let trickle = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: aaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    let open = began.elapsed();
    assert!(
        open >= Duration::from_secs(10) && open < Duration::from_secs(11),
        "{open:?}"
    );
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_the_response_is_closed_at_the_send_timeout() {
    // 1 GiB, made as it is sent.
    let endless = tower::service_fn(|_req: Request<Incoming>| async {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let frames = (0..16 * 1024)
            .map(move |_| Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk.clone())));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        Ok::<_, std::convert::Infallible>(Response::new(body))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .send_timeout(Duration::from_secs(10))
            .serve(endless),
    );
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // Read nothing for longer than the send timeout.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
        assert!(
            total < 256 * 1024 * 1024,
            "the server kept sending to a stalled client"
        );
    }
}

// --- connection floods --------------------------------------------------------------------

/// Whether the server closes `client` at once instead of serving it.
async fn closed_at_once(client: &mut TcpStream) -> bool {
    let _ = client.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("neither served nor closed"),
    }
}

async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_the_others_still_served() {
    let stats = tower_gateway::server::ConnectionStats::new();
    let counted = stats.clone();
    let addr = hello_server(move |s| s.max_connections(5).connection_stats(counted)).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Accepted in the order they connected: the sixth is over the cap.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_at_once(&mut extra).await,
        "a sixth connection was served"
    );
    assert!(stats.refused() >= 1);
    // The five are untouched and served.
    for client in &mut held[..2] {
        assert!(!closed_at_once(client).await);
    }
    // Once one closes, a new connection is served again (as soon as the server has seen the
    // close: tried for up to 10 s).
    drop(held.pop());
    let mut served = false;
    for _ in 0..200 {
        let mut next = TcpStream::connect(addr).await.unwrap();
        if !closed_at_once(&mut next).await {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "no room again after a connection closed");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let addr = hello_server(|s| s.max_connections_per_ip(3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 1], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect_from([127, 0, 0, 1], addr).await;
    assert!(closed_at_once(&mut fourth).await);
    // Another client is not affected.
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert!(!closed_at_once(&mut other).await);
    assert!(!closed_at_once(&mut held[0]).await);
}

// --- key floods ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_keys_does_not_lock_out_new_clients() {
    use tower_gateway::ratelimit::{FixedWindow, KeyBy, Limit, Period, RateLimitLayer};
    let (up, _seen) = ok_upstream().await;
    let layer = RateLimitLayer::builder(KeyBy::Header(http::HeaderName::from_static("x-key")))
        .limit(Limit::FixedWindow(FixedWindow::new([(Period::Hour, 100)])))
        .max_keys(200)
        .build();
    let proxy = proxy_to(up);
    let (gw, stop) = serve(tower::ServiceBuilder::new().layer(layer).service(proxy)).await;
    std::mem::forget(stop);
    // 2 000 distinct keys, ten times the store, over a few keep-alive connections.
    let flood = |from: usize| async move {
        let mut sender = http1_client(gw).await;
        for i in from..from + 500 {
            let req = keyed(&format!("flood-{i}"));
            sender.ready().await.unwrap();
            let res = sender.send_request(req).await.unwrap();
            let _ = res.into_body().collect().await;
        }
    };
    futures_util::future::join_all((0..4).map(|n| flood(n * 500))).await;
    // New, well-behaved clients: 10 requests each, half their limit.
    let (mut sent, mut admitted) = (0, 0);
    for client in 0..20 {
        for _ in 0..10 {
            let req = keyed(&format!("client-{client}"));
            sent += 1;
            admitted += usize::from(send(gw, req).await.status() == StatusCode::OK);
        }
    }
    assert!(admitted * 100 >= sent * 99, "{admitted} of {sent} admitted");
    // A flooding key is still held to its limit.
    let mut greedy = 0;
    for _ in 0..120 {
        let req = keyed("flood-7");
        greedy += usize::from(send(gw, req).await.status() == StatusCode::OK);
    }
    assert!(greedy <= 99, "a flooding key got {greedy} more of its 100");
}

#[tokio::test]
async fn a_breaker_that_counts_4xx_still_ignores_the_clients_own_broken_requests() {
    use tower_gateway::circuit::{CircuitBreakerLayer, Policy};
    let (up, _complete) = counting_upstream().await;
    // Opens after 5 failures, and 400/408 are failures by its rule.
    let breaker = CircuitBreakerLayer::new(Policy::default())
        .failure_statuses(|status| status.is_client_error() || status.is_server_error());
    let service = tower::ServiceBuilder::new()
        .layer(breaker)
        .service(proxy_to(up));
    let (gw, stop) = serve(service).await;
    std::mem::forget(stop);
    for _ in 0..8 {
        let reply = exchange_then_close(
            gw,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0x5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&reply), 400, "{reply}");
    }
    assert_upstream_still_trusted(gw).await;
}

#[tokio::test]
async fn the_upgrade_protocols_plugin_forwards_another_protocol_on_its_route_only() {
    let (up, mut seen) = ok_upstream().await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{up}
    routes:
      - name: tunnels
        paths: [/tunnels]
        plugins:
          - name: upgrade-protocols
            config:
              protocols: [connect-udp]
      - name: plain
        paths: [/plain]
"#
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, stop) = serve(gateway.router()).await;
    std::mem::forget(stop);
    for (path, forwarded) in [("/tunnels", true), ("/plain", false)] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: connect-udp, websocket\r\nconnection: close\r\n\r\n"
        );
        let reply = raw_exchange(gw, request.as_bytes()).await;
        assert_eq!(status_of(&reply), 200, "{reply}");
        let headers = seen.recv().await.unwrap().headers;
        let upgrade = headers
            .get("upgrade")
            .map(|v| v.to_str().unwrap().to_owned());
        if forwarded {
            // The route's list replaces the default: websocket is not on it.
            assert_eq!(upgrade.as_deref(), Some("connect-udp"), "{path}");
        } else {
            assert_eq!(upgrade.as_deref(), Some("websocket"), "{path}");
        }
    }
    let refused = Config::from_yaml(
        "_format_version: \"3.0\"\nplugins:\n  - name: upgrade-protocols\n    config:\n      protocols: [websocket, h2c]\n",
    )
    .expect_err("h2c was accepted");
    assert!(
        refused.to_string().contains("h2c is never forwarded"),
        "{refused}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_http2_connection_that_pings_is_closed_at_the_keep_alive_timeout() {
    let addr = hello_server(|s| {
        s.header_read_timeout(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(10))
    })
    .await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(1))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(text(res).await, "hello");
    let idle = tokio::time::Instant::now();
    // Pings every second: no request head, so not the header timeout; no request either, so
    // the keep-alive timeout still runs out.
    let _ = conn.await;
    let open = idle.elapsed();
    assert!(
        open >= Duration::from_secs(10) && open < Duration::from_secs(12),
        "{open:?}"
    );
}

/// An HTTP/2 frame on stream `stream`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(start_paused = true)]
async fn an_http2_header_block_trickled_beside_a_stream_in_flight_is_cut_at_the_header_timeout() {
    // Every request waits: the first stream stays in flight for the whole test.
    let stuck = tower::service_fn(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .header_read_timeout(Duration::from_secs(5))
            .serve(stuck),
    );
    let mut client = TcpStream::connect(addr).await.unwrap();
    // :method GET, :scheme http, :path /, :authority a (HPACK).
    let head = [0x82, 0x86, 0x84, 0x41, 0x01, b'a'];
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    opening.extend(h2_frame(0x1, 0x4 | 0x1, 1, &head)); // HEADERS, END_HEADERS | END_STREAM
    client.write_all(&opening).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A second request's HEADERS frame, one byte a second.
    let second = h2_frame(0x1, 0x4 | 0x1, 3, &head);
    let (mut read, mut write) = client.into_split();
    let began = tokio::time::Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in second.iter().cycle().take(60) {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut sink = [0u8; 1024];
    while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    let open = began.elapsed();
    assert!(
        open >= Duration::from_secs(5) && open < Duration::from_secs(6),
        "{open:?}"
    );
    trickle.abort();
}

#[tokio::test]
async fn content_length_beside_chunked_cannot_smuggle_a_request_past_the_gateway() {
    let (up, mut seen) = ok_upstream().await;
    let gw = plain_proxy(up).await;
    let reply = exchange_then_close(
        gw,
        b"POST /first HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    // The first request's body is its (empty) chunked body; the upstream gets it with framing
    // of the gateway's own, never the client's conflicting pair.
    let first = seen.recv().await.unwrap();
    assert_eq!(first.uri.path(), "/first");
    assert!(first.body.is_empty(), "{:?}", first.body);
    assert_ne!(
        first.headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"6"[..]),
        "{:?}",
        first.headers
    );
    // Whatever followed is a request of its own, parsed (and routed) by the gateway, or
    // refused: never bytes the upstream reads as part of the first.
    if let Ok(Some(second)) = tokio::time::timeout(Duration::from_secs(1), seen.recv()).await {
        assert_eq!(second.uri.path(), "/second");
    }
    assert!(status_of(&reply) == 200, "{reply}");
}
