//! Shared helpers for the black-box tests: real upstreams and gateways on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tower::Service;
use tower_gateway::server::Server;

pub mod kong;
pub mod protocols;
pub mod redis;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub peer: SocketAddr,
    pub body: Bytes,
}

/// An HTTP upstream built from hyper, on 127.0.0.1:0, that reports every request it receives
/// and answers with `respond`.
pub async fn upstream<F, Fut>(respond: F) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>)
where
    F: Fn(Seen) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let respond = respond.clone();
        let tx = tx.clone();
        async move {
            let peer = req
                .extensions()
                .get::<tower_gateway::server::ConnectionInfo>()
                .map(|c| c.remote_addr())
                .unwrap();
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                peer,
                body,
            };
            let _ = tx.send(seen.clone());
            Ok::<_, Infallible>(respond(seen).await)
        }
    });
    tokio::spawn(Server::from_listener(listener).serve(service));
    (addr, rx)
}

/// An upstream that answers with its own name, reporting every request it receives.
pub async fn named_upstream(name: &'static str) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    upstream(move |_| async move { Response::new(Full::new(Bytes::from_static(name.as_bytes()))) })
        .await
}

/// A service answering every request `200 hello`.
pub fn hello() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    })
}

/// An upstream that answers 200 with the body `ok`.
pub async fn ok_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    upstream(|_| async { Response::new(Full::new(Bytes::from_static(b"ok"))) }).await
}

/// A TCP upstream that reads one request head and writes `reply` verbatim, then closes.
pub async fn raw_upstream(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                read_head(&mut stream).await;
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP upstream that accepts connections, reads the request head and never answers.
pub async fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            read_head(&mut stream).await;
            held.push(stream);
        }
    });
    addr
}

/// Reads until the end of a request head.
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Serves `service` on 127.0.0.1:0; the server stops when the returned sender is dropped or
/// fired.
pub async fn serve<S, B>(service: S) -> (SocketAddr, oneshot::Sender<()>)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(
        Server::from_listener(listener)
            .grace_period(Duration::from_secs(5))
            .serve_with_shutdown(service, async {
                let _ = rx.await;
            }),
    );
    (addr, tx)
}

/// An HTTP/1.1 client on a new keep-alive connection to `addr`; the connection runs in a task
/// of its own.
pub async fn http1_client<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request on a new connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Incoming> {
    http1_client(addr).await.send_request(req).await.unwrap()
}

/// An HTTP/2 client over `io` (prior knowledge, or after ALPN chose `h2`); its connection
/// runs in a task of its own.
pub async fn h2_client<I, B>(io: I) -> hyper::client::conn::http2::SendRequest<B>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

/// A GET with a Host header.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "gateway.test")
        .body(Full::default())
        .unwrap()
}

/// The whole body as text.
pub async fn text(res: Response<Incoming>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Writes raw bytes on a new connection and reads until the server closes it or `limit` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A request body fed chunk by chunk from a channel; it ends when the sender is dropped.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// The seed's DB-less file: key-auth on user-service, jwt on order-service, consumer
/// `test-user` with the key `test-api-key` and the JWT key `myapikey`.
pub fn seed_config(users: SocketAddr, orders: SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: user-service
    url: http://{users}
    routes:
      - name: user-routes
        paths: [/api/users]
        strip_path: false
    plugins:
      - name: key-auth
  - name: order-service
    url: http://{orders}
    routes:
      - name: order-routes
        paths: [/api/orders]
        strip_path: false
    plugins:
      - config:
          claims_to_verify: [exp]
        name: jwt
consumers:
  - username: test-user
    keyauth_credentials:
      - key: test-api-key
    jwt_secrets:
      - key: myapikey
        secret: mysecret
"#
    )
}

/// A fresh folder for a test's files, named after the process and `tag`, with `yaml` written
/// in it as `kong.yaml`: (the folder, the file).
pub fn config_file(tag: &str, yaml: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tower-gateway-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kong.yaml");
    std::fs::write(&file, yaml).unwrap();
    (dir, file)
}

/// A `LineWriter` destination the test reads.
#[derive(Clone, Default)]
pub struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// The lines written so far, once there are `count`.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(tokio::time::Instant::now() < deadline, "lines: {lines:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
