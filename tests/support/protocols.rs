//! Upstreams and bodies for the protocol tests: a WebSocket echo server, a gRPC-shaped HTTP/2
//! server, bodies sent frame by frame.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket upstream that echoes every text message back in upper case.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    match message {
                        Message::Text(text) => {
                            let reply = Message::text(text.to_uppercase());
                            if ws.send(reply).await.is_err() {
                                return;
                            }
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

pub type Frames = futures_util::stream::BoxStream<
    'static,
    Result<http_body::Frame<Bytes>, std::convert::Infallible>,
>;

/// A body sent frame by frame through the returned sender.
pub fn channel_body() -> (
    tokio::sync::mpsc::UnboundedSender<http_body::Frame<Bytes>>,
    StreamBody<Frames>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok(frame), rx))
    });
    (tx, StreamBody::new(Box::pin(frames) as Frames))
}

pub fn grpc_trailers(status: &str) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", status.parse().unwrap());
    trailers
}

/// The gRPC-shaped answers: `/echo.Echo/Stream` echoes each message as it comes, then ends
/// with `grpc-status: 0` in trailers; `/echo.Echo/Missing` answers trailers-only
/// `grpc-status: 5`.
pub async fn grpc_answer(
    req: http::Request<hyper::body::Incoming>,
) -> Result<Response<StreamBody<Frames>>, std::convert::Infallible> {
    let (tx, body) = channel_body();
    let mut res = Response::new(body);
    res.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    if req.uri().path() == "/echo.Echo/Missing" {
        res.headers_mut()
            .insert("grpc-status", "5".parse().unwrap());
        return Ok(res);
    }
    let mut incoming = req.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = incoming.frame().await {
            if let Ok(data) = frame.into_data() {
                let _ = tx.send(http_body::Frame::data(data));
            }
        }
        let _ = tx.send(http_body::Frame::trailers(grpc_trailers("0")));
    });
    Ok(res)
}

/// A gRPC-shaped HTTP/2 (h2c) upstream answering with [`grpc_answer`].
pub async fn grpc_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper::service::service_fn(grpc_answer),
                    ),
            );
        }
    });
    addr
}

/// The same over TLS (ALPN `h2`), with a self-signed certificate for 127.0.0.1 (grpcs).
#[cfg(feature = "tls")]
pub async fn grpcs_upstream() -> SocketAddr {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(tls),
                            hyper::service::service_fn(grpc_answer),
                        )
                        .await;
            });
        }
    });
    addr
}

pub fn grpc_request(path: &str, body: StreamBody<Frames>) -> http::Request<StreamBody<Frames>> {
    http::Request::post(format!("http://gateway.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

/// An upstream of server-sent events: `count` events (`data: 0` …), one every 200 ms, as
/// `text/event-stream`.
pub async fn sse_upstream(count: u32) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events = tower::service_fn(
        move |_req: http::Request<hyper::body::Incoming>| async move {
            let events = futures_util::stream::unfold(0u32, move |n| async move {
                if n == count {
                    return None;
                }
                if n > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                let event = Bytes::from(format!("data: {n}\n\n"));
                Some((
                    Ok::<_, std::convert::Infallible>(http_body::Frame::data(event)),
                    n + 1,
                ))
            });
            let mut res = Response::new(StreamBody::new(events));
            res.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok::<_, std::convert::Infallible>(res)
        },
    );
    tokio::spawn(tower_gateway::server::Server::from_listener(listener).serve(events));
    addr
}
