//! Admin API requests: a method, a path and a JSON or form body, as a client might send
//! them. Each input is `M` (method selector byte), `C` (content type selector byte), the path
//! up to a newline, then the body.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tower_gateway::admin::AdminApi;
use tower_gateway::config::Settings;

const START: &str = r#"_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: [/r]
consumers:
  - username: c
    keyauth_credentials:
      - key: k
upstreams:
  - name: u
    targets:
      - target: 127.0.0.1:9
"#;

fuzz_target!(|data: &[u8]| {
    let [m, c, rest @ ..] = data else {
        return;
    };
    let method = match m % 5 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::PUT,
        3 => Method::PATCH,
        _ => Method::DELETE,
    };
    let content_type = match c % 3 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        _ => "multipart/form-data; boundary=x",
    };
    let (path, body) = common::line(rest);
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(req) = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Full::new(Bytes::copy_from_slice(body)))
    else {
        return;
    };
    common::runtime().block_on(async {
        let admin = AdminApi::from_yaml(START, Settings::default()).expect("the start is valid");
        let res = admin.clone().oneshot(req).await.expect("infallible");
        assert!(
            res.status().as_u16() < 500 || res.status() == 501,
            "{}",
            res.status()
        );
        let _ = res.into_body().collect().await;
        // Whatever was accepted, the configuration still serves.
        let _ = admin
            .clone()
            .oneshot(
                Request::get("/config")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
    });
});
