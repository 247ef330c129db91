//! The whole gateway fed arbitrary bytes: one connection per input to the bundled server
//! (header and body timeouts, HTTP/1.1 and HTTP/2 by preface, routing, key-auth, jwt, rate
//! limiting, the breaker, the balancer, the proxy) in front of a real upstream, all on
//! loopback. The connection is half-closed after the input, so the gateway answers or closes
//! at once; a panic anywhere aborts the process (libFuzzer's hook), a hang is caught by
//! `-timeout`, memory by `-rss_limit_mb`.
#![no_main]

#[path = "common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::server::Server;

/// The gateway's address, started once on the shared runtime.
fn gateway() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        common::runtime().block_on(async {
            let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let up = upstream.local_addr().expect("address");
            let echo = tower::service_fn(|req: Request<Incoming>| async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                    body.unwrap_or_else(|_| Bytes::from_static(b"broken")),
                )))
            });
            tokio::spawn(Server::from_listener(upstream).serve(echo));
            let yaml = format!(
                r#"_format_version: "3.0"
upstreams:
  - name: backend
    targets:
      - target: {up}
        weight: 50
services:
  - name: open
    host: backend
    routes:
      - paths: [/open, "~/exact$"]
        hosts: [a, "*.b"]
      - paths: ["/users/{{id}}/items"]
        methods: [GET, POST]
    plugins:
      - name: rate-limiting
        config:
          minute: 1000000
          limit_by: header
          header_name: x-key
      - name: circuit-breaker
  - name: keyed
    url: http://{up}
    routes:
      - paths: [/keyed]
    plugins:
      - name: key-auth
        config:
          key_in_body: true
  - name: signed
    url: http://{up}
    routes:
      - paths: [/signed]
    plugins:
      - name: jwt
consumers:
  - username: c
    keyauth_credentials:
      - key: k
    jwt_secrets:
      - key: iss
        secret: s
"#
            );
            let config = Config::from_yaml(&yaml).expect("a valid configuration");
            let gateway = Gateway::from_config(&config, &Settings::default()).expect("a gateway");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            tokio::spawn(
                Server::from_listener(listener)
                    .header_read_timeout(Duration::from_millis(500))
                    .serve(gateway.router()),
            );
            addr
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let addr = gateway();
    common::runtime().block_on(async {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return;
        };
        let _ = stream.write_all(data).await;
        let _ = stream.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out));
        assert!(
            read.await.is_ok(),
            "the gateway neither answered nor closed within 5 s"
        );
    });
});
