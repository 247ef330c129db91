//! The upstream of the load benchmark: a minimal hyper HTTP/1.1 server answering every request
//! with a fixed 13-byte body. One runtime thread, so it takes the same share of the machine
//! behind every proxy, whether it is reached on one of its addresses or balanced over several.
//!
//! `cargo run --release --example load-upstream -- 127.0.0.1:18080 [127.0.0.1:18087 …]`

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
    let mut addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        addrs.push("127.0.0.1:18080".into());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut listeners = Vec::new();
            for addr in &addrs {
                listeners.push(tokio::net::TcpListener::bind(addr).await?);
                eprintln!("load upstream on http://{addr}");
            }
            let accepting: Vec<_> = listeners
                .into_iter()
                .map(|l| tokio::spawn(accept(l)))
                .collect();
            for task in accepting {
                task.await??;
            }
            Ok(())
        })
}

async fn accept(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"Hello, world!",
                ))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
