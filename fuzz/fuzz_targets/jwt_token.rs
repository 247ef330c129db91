//! JWT parsing and verification: any token is accepted only if it is valid for the
//! configured credential, or refused with Kong's answers; never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};
use tower_gateway::auth::{AuthLayer, Consumer, Consumers, Jwt};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let consumers = Consumers::new();
    consumers.insert(Consumer::new("c").username("c"));
    consumers
        .add_jwt(
            "c",
            tower_gateway::auth::JwtCredential::hmac(
                "iss-key",
                "secret",
                tower_gateway::auth::jwt::Algorithm::HS256,
            )
            .expect("hmac"),
        )
        .expect("a credential");
    let upstream = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let service = AuthLayer::new(Jwt::new(consumers)).layer(upstream);
    for req in [
        Request::get("/").header("authorization", format!("Bearer {token}")),
        Request::get("/").header("authorization", token),
        Request::get(format!("/?jwt={token}")),
    ] {
        let Ok(req) = req.body(Full::new(Bytes::new())) else {
            continue;
        };
        let res = common::runtime()
            .block_on(service.clone().oneshot(req))
            .expect("infallible");
        assert!(
            res.status() == StatusCode::OK || res.status().is_client_error(),
            "{}",
            res.status()
        );
    }
});
