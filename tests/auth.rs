#![cfg(feature = "jwt")]
//! Authentication over real sockets: key-auth and jwt with Kong's answers, the attack matrix,
//! anonymous access, skip rules and identity headers that cannot be spoofed.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderName, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use support::{Seen, ok_upstream, send, serve, text};
use tokio::sync::mpsc::UnboundedReceiver;
use tower::ServiceBuilder;
use tower_gateway::auth::jwt::Algorithm;
use tower_gateway::auth::{
    ApiKey, AuthLayer, Authenticator, BodyAuthLayer, Consumer, Consumers, Jwt, JwtCredential,
    TimeClaim,
};
use tower_gateway::body::RequestBody;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::ratelimit::{Clock, ManualClock};

const RSA_PRIVATE: &str = include_str!("keys/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("keys/rsa-public.pem");
const EC256_PRIVATE: &str = include_str!("keys/ec256-private.pem");
const EC256_PUBLIC: &str = include_str!("keys/ec256-public.pem");
const EC384_PRIVATE: &str = include_str!("keys/ec384-private.pem");
const EC384_PUBLIC: &str = include_str!("keys/ec384-public.pem");
const ED_PRIVATE: &str = include_str!("keys/ed-private.pem");
const ED_PUBLIC: &str = include_str!("keys/ed-public.pem");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Consumers as in the seed: `test-user` with key `test-api-key` and JWT key `myapikey`, plus
/// one consumer per asymmetric algorithm.
fn consumers() -> Consumers {
    let consumers = Consumers::new();
    consumers.insert(
        Consumer::new("c-test")
            .username("test-user")
            .custom_id("t-1"),
    );
    consumers.insert(Consumer::new("c-anon").username("anonymous"));
    consumers.add_api_key("test-user", "test-api-key").unwrap();
    let hmac = JwtCredential::hmac("myapikey", "mysecret", Algorithm::HS256).unwrap();
    consumers.add_jwt("test-user", hmac).unwrap();
    for (key, pem, alg) in [
        ("rsa-issuer", RSA_PUBLIC, Algorithm::RS256),
        ("ps-issuer", RSA_PUBLIC, Algorithm::PS256),
        ("ec256-issuer", EC256_PUBLIC, Algorithm::ES256),
        ("ec384-issuer", EC384_PUBLIC, Algorithm::ES384),
        ("ed-issuer", ED_PUBLIC, Algorithm::EdDSA),
    ] {
        let credential = JwtCredential::public_key(key, pem, alg).unwrap();
        consumers.add_jwt("test-user", credential).unwrap();
    }
    consumers
}

/// An upstream behind `layer`; returns the gateway address and what the upstream sees.
async fn gateway(layer: AuthLayer) -> (SocketAddr, UnboundedReceiver<Seen>) {
    let (up, seen) = ok_upstream().await;
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let (addr, stop) = serve(ServiceBuilder::new().layer(layer).service(proxy)).await;
    std::mem::forget(stop);
    (addr, seen)
}

/// An upstream behind a layer that reads bodies.
async fn body_gateway(layer: BodyAuthLayer) -> (SocketAddr, UnboundedReceiver<Seen>) {
    let (up, seen) = ok_upstream().await;
    let config = ProxyConfig::new(format!("http://{up}")).unwrap();
    let proxy = ReverseProxy::<RequestBody<Incoming>>::new(config);
    let (addr, stop) = serve(ServiceBuilder::new().layer(layer).service(proxy)).await;
    std::mem::forget(stop);
    (addr, seen)
}

fn post(content_type: &str, body: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::post("/orders")
        .header("host", "gateway.test")
        .header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// A request body sent chunked, in pieces, with no length announced.
struct Chunked(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

async fn send_chunked(
    addr: SocketAddr,
    content_type: &str,
    chunks: &[&str],
    headers: &[(&str, &str)],
) -> http::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let body = Chunked(chunks.iter().map(|c| Bytes::from(c.to_string())).collect());
    let mut req = Request::post("/orders")
        .header("host", "gateway.test")
        .header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender.send_request(req.body(body).unwrap()).await.unwrap()
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(uri).header("host", "gateway.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::default()).unwrap()
}

/// Sends and expects a refusal that never reached the upstream; returns the body.
async fn refused(
    gw: SocketAddr,
    seen: &mut UnboundedReceiver<Seen>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, Option<String>, String) {
    let res = send(gw, req).await;
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = text(res).await;
    assert!(seen.try_recv().is_err(), "the upstream was reached: {body}");
    (status, challenge, body)
}

fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["message"].as_str().unwrap_or_default().to_owned()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn hs(claims: serde_json::Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"mysecret"),
        claims,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token with any header and claims, signed with HMAC-SHA256 over `secret` by hand.
fn forged(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

#[tokio::test]
async fn key_auth_answers_as_kong_and_sends_the_identity_upstream() {
    let (gw, mut seen) = gateway(AuthLayer::new(ApiKey::new(consumers()))).await;

    let (status, challenge, body) = refused(gw, &mut seen, request("/", &[])).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Key"));
    assert_eq!(message(&body), "No API key found in request");

    let (status, _, body) = refused(gw, &mut seen, request("/", &[("apikey", "wrong")])).await;
    assert_eq!(
        (status.as_u16(), message(&body).as_str()),
        (401, "Unauthorized")
    );

    let (_, _, body) = refused(
        gw,
        &mut seen,
        request("/?apikey=other", &[("apikey", "test-api-key")]),
    )
    .await;
    assert_eq!(message(&body), "Duplicate API key found");

    // The spoofed identity is replaced by the real one.
    let res = send(
        gw,
        request(
            "/orders?apikey=test-api-key",
            &[
                ("x-consumer-username", "admin"),
                ("x-anonymous-consumer", "true"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), 200);
    let upstream = seen.recv().await.unwrap();
    assert_eq!(upstream.headers["x-consumer-id"], "c-test");
    assert_eq!(upstream.headers["x-consumer-username"], "test-user");
    assert_eq!(upstream.headers["x-consumer-custom-id"], "t-1");
    assert!(upstream.headers.contains_key("x-credential-identifier"));
    assert!(!upstream.headers.contains_key("x-anonymous-consumer"));
    // Not hidden by default.
    assert_eq!(upstream.uri, "/orders?apikey=test-api-key");
}

#[tokio::test]
async fn hidden_api_keys_do_not_reach_the_upstream() {
    let layer = AuthLayer::new(ApiKey::new(consumers()).hide_credentials(true));
    let (gw, mut seen) = gateway(layer).await;
    let res = send(gw, request("/a?x=1&apikey=test-api-key", &[])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(seen.recv().await.unwrap().uri, "/a?x=1");
    send(gw, request("/a", &[("apikey", "test-api-key")])).await;
    assert!(!seen.recv().await.unwrap().headers.contains_key("apikey"));
}

#[tokio::test]
async fn keys_in_form_json_and_multipart_bodies_are_found_and_hidden() {
    let key_auth = ApiKey::new(consumers())
        .in_body(true)
        .hide_credentials(true);
    let (gw, mut seen) = body_gateway(AuthLayer::new(key_auth).reading_body()).await;
    let multipart = "--B\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\ntest-api-key\r\n--B\r\nContent-Disposition: form-data; name=\"item\"\r\n\r\n7\r\n--B--\r\n";
    let cases = [
        (
            "application/x-www-form-urlencoded",
            "item=7&apikey=test-api-key",
            "item=7".to_owned(),
        ),
        (
            "application/json",
            r#"{"apikey":"test-api-key","item":7}"#,
            r#"{"item":7}"#.to_owned(),
        ),
        (
            "multipart/form-data; boundary=B",
            multipart,
            "--B\r\nContent-Disposition: form-data; name=\"item\"\r\n\r\n7\r\n--B--\r\n".to_owned(),
        ),
    ];
    for (content_type, body, forwarded) in cases {
        let res = send(gw, post(content_type, body, &[])).await;
        assert_eq!(res.status(), 200, "{content_type}");
        let upstream = seen.recv().await.unwrap();
        assert_eq!(upstream.body, forwarded, "{content_type}");
        assert_eq!(
            upstream.headers["content-length"],
            forwarded.len().to_string()
        );
        assert_eq!(upstream.headers["x-consumer-username"], "test-user");
    }
    // A chunked body is read the same way.
    let res = send_chunked(
        gw,
        "application/x-www-form-urlencoded",
        &["item=7&api", "key=test-api-key"],
        &[],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(seen.recv().await.unwrap().body, "item=7");
    // No key anywhere, a wrong one, or a key in a body of another kind: Kong's answers.
    let (status, _, body) = refused(
        gw,
        &mut seen,
        post("application/json", r#"{"item":7}"#, &[]),
    )
    .await;
    assert_eq!(
        (status, message(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "No API key found in request")
    );
    let (_, _, body) = refused(
        gw,
        &mut seen,
        post("application/json", r#"{"apikey":"nope"}"#, &[]),
    )
    .await;
    assert_eq!(message(&body), "Unauthorized");
    let (_, _, body) = refused(
        gw,
        &mut seen,
        post("text/plain", "apikey=test-api-key", &[]),
    )
    .await;
    assert_eq!(message(&body), "No API key found in request");
}

#[tokio::test]
async fn bodies_over_the_limit_stream_through_unread() {
    let key_auth = ApiKey::new(consumers())
        .in_body(true)
        .hide_credentials(true);
    let layer = AuthLayer::new(key_auth).reading_body().max_body(32);
    let (gw, mut seen) = body_gateway(layer).await;
    let big = format!("apikey=test-api-key&pad={}", "x".repeat(64));
    // Announced as too long: not read, so the key in it is not seen (Kong reads no body
    // nginx kept on disk).
    let (_, _, body) = refused(
        gw,
        &mut seen,
        post("application/x-www-form-urlencoded", &big, &[]),
    )
    .await;
    assert_eq!(message(&body), "No API key found in request");
    // With the key in a header, the long body reaches the upstream whole.
    let req = post(
        "application/x-www-form-urlencoded",
        &big,
        &[("apikey", "test-api-key")],
    );
    assert_eq!(send(gw, req).await.status(), 200);
    assert_eq!(seen.recv().await.unwrap().body, big);
    // Chunked past the limit: what was read, then the rest, in order.
    let pieces = [
        "pad=aaaaaaaaaaaaaaaaaaaa&",
        "pad=bbbbbbbbbbbbbbbbbbbb&",
        "apikey=test-api-key",
    ];
    let res = send_chunked(gw, "application/x-www-form-urlencoded", &pieces, &[]).await;
    assert_eq!(res.status(), 401);
    assert!(seen.try_recv().is_err());
    let res = send_chunked(
        gw,
        "application/x-www-form-urlencoded",
        &pieces,
        &[("apikey", "test-api-key")],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(seen.recv().await.unwrap().body, pieces.concat());
}

#[tokio::test]
async fn every_jwt_algorithm_verifies_real_signatures() {
    let (gw, mut seen) = gateway(AuthLayer::new(Jwt::new(consumers()))).await;
    let cases = [
        (
            Algorithm::HS256,
            EncodingKey::from_secret(b"mysecret"),
            "myapikey",
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            "rsa-issuer",
        ),
        (
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            "ps-issuer",
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap(),
            "ec256-issuer",
        ),
        (
            Algorithm::ES384,
            EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap(),
            "ec384-issuer",
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
            "ed-issuer",
        ),
    ];
    for (alg, key, iss) in cases {
        let token = sign(
            alg,
            &key,
            json!({ "iss": iss, "user_id": "42", "exp": now() + 3600 }),
        );
        for req in [
            request("/", &[("authorization", &bearer(&token))]),
            request(&format!("/?jwt={token}"), &[]),
        ] {
            let res = send(gw, req).await;
            assert_eq!(res.status(), 200, "{alg:?}");
            let upstream = seen.recv().await.unwrap();
            assert_eq!(upstream.headers["x-consumer-username"], "test-user");
        }
    }
}

#[tokio::test]
async fn the_jwt_attack_matrix_is_refused_before_the_upstream() {
    let layer =
        AuthLayer::new(Jwt::new(consumers()).claims_to_verify([TimeClaim::Exp, TimeClaim::Nbf]));
    let (gw, mut seen) = gateway(layer).await;
    let valid_claims = || json!({ "iss": "myapikey", "exp": now() + 60, "nbf": now() - 60 });
    let good = hs(valid_claims());
    // The good token passes, so every refusal below is about what it changes.
    assert_eq!(
        send(gw, request("/", &[("authorization", &bearer(&good))]))
            .await
            .status(),
        200
    );
    seen.recv().await.unwrap();

    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(valid_claims().to_string())
    );
    // HS256 signed with the RSA public key as the secret, naming the RS256 credential.
    let confused = forged(
        json!({"alg": "HS256", "typ": "JWT"}),
        json!({ "iss": "rsa-issuer", "exp": now() + 60, "nbf": now() - 60 }),
        RSA_PUBLIC.as_bytes(),
    );
    let wrong_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not-the-secret"),
        valid_claims(),
    );
    let expired = hs(json!({ "iss": "myapikey", "exp": now() - 1, "nbf": now() - 60 }));
    let not_yet = hs(json!({ "iss": "myapikey", "exp": now() + 60, "nbf": now() + 60 }));
    let string_exp =
        hs(json!({ "iss": "myapikey", "exp": (now() + 60).to_string(), "nbf": now() - 60 }));
    let unknown_iss = hs(json!({ "iss": "stranger", "exp": now() + 60, "nbf": now() - 60 }));
    let no_iss = hs(json!({ "exp": now() + 60, "nbf": now() - 60 }));
    let crit = forged(
        json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
        valid_claims(),
        b"mysecret",
    );
    let truncated = good[..good.len() - 10].to_owned();
    let cut_in_two = good.rsplit_once('.').unwrap().0.to_owned();

    let cases: Vec<(&str, String, serde_json::Value)> = vec![
        (
            "alg none",
            none,
            json!({"message": "Bad token; invalid alg"}),
        ),
        (
            "HS/RS confusion",
            confused,
            json!({"message": "Invalid algorithm"}),
        ),
        (
            "wrong key",
            wrong_key,
            json!({"message": "Invalid signature"}),
        ),
        ("expired", expired, json!({"exp": "token expired"})),
        (
            "not yet valid",
            not_yet,
            json!({"nbf": "token not valid yet"}),
        ),
        ("string exp", string_exp, json!({"exp": "must be a number"})),
        (
            "unknown iss",
            unknown_iss,
            json!({"message": "No credentials found for given 'iss'"}),
        ),
        (
            "no iss",
            no_iss,
            json!({"message": "No mandatory 'iss' in claims"}),
        ),
        (
            "crit header",
            crit,
            json!({"message": "Bad token; invalid crit"}),
        ),
        (
            "truncated",
            truncated,
            json!({"message": "Invalid signature"}),
        ),
        (
            "two parts",
            cut_in_two,
            json!({"message": "Bad token; invalid JSON"}),
        ),
        (
            "garbage",
            "garbage".to_owned(),
            json!({"message": "Bad token; invalid JSON"}),
        ),
    ];
    for (case, token, expected) in cases {
        let (status, challenge, body) = refused(
            gw,
            &mut seen,
            request("/", &[("authorization", &bearer(&token))]),
        )
        .await;
        assert_eq!(status, 401, "{case}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body, expected, "{case}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\""),
            "{case}"
        );
    }

    // No token at all; two different tokens in two Authorization headers.
    let (status, challenge, body) = refused(gw, &mut seen, request("/", &[])).await;
    assert_eq!(
        (status.as_u16(), message(&body).as_str()),
        (401, "Unauthorized")
    );
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    let other = hs(json!({ "iss": "myapikey", "exp": now() + 61, "nbf": now() - 60 }));
    let req = Request::get("/")
        .header("host", "gateway.test")
        .header("authorization", bearer(&good))
        .header("authorization", bearer(&other))
        .body(Full::default())
        .unwrap();
    let (_, _, body) = refused(gw, &mut seen, req).await;
    assert_eq!(message(&body), "Multiple tokens provided");
}

#[tokio::test]
async fn a_cached_token_is_still_refused_once_expired() {
    // Verified once, remembered; the exp check runs on every request.
    let clock = ManualClock::at(1_900_000_000 * 1_000_000_000);
    let layer = AuthLayer::new(
        Jwt::new(consumers())
            .claims_to_verify([TimeClaim::Exp])
            .clock(Clock::Manual(clock.clone())),
    );
    let (gw, mut seen) = gateway(layer).await;
    let token = hs(json!({ "iss": "myapikey", "exp": 1_900_000_002 }));
    for _ in 0..3 {
        let res = send(gw, request("/", &[("authorization", &bearer(&token))])).await;
        assert_eq!(res.status(), 200);
        seen.recv().await.unwrap();
    }
    clock.advance(Duration::from_secs(2));
    let (status, _, body) = refused(
        gw,
        &mut seen,
        request("/", &[("authorization", &bearer(&token))]),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body, r#"{"exp":"token expired"}"#);
}

#[tokio::test]
async fn anonymous_access_goes_on_as_the_anonymous_consumer() {
    let consumers = consumers();
    let layer = AuthLayer::any_of([
        Box::new(ApiKey::new(consumers.clone())) as Box<dyn Authenticator>,
        Box::new(Jwt::new(consumers.clone())),
    ])
    .anonymous(consumers.get("anonymous").unwrap());
    let (gw, mut seen) = gateway(layer).await;

    let res = send(gw, request("/", &[("x-consumer-id", "c-test")])).await;
    assert_eq!(res.status(), 200);
    let upstream = seen.recv().await.unwrap();
    assert_eq!(upstream.headers["x-consumer-id"], "c-anon");
    assert_eq!(upstream.headers["x-anonymous-consumer"], "true");
    assert!(!upstream.headers.contains_key("x-credential-identifier"));

    // Either credential works.
    let token = hs(json!({ "iss": "myapikey", "exp": now() + 3600 }));
    for req in [
        request("/", &[("apikey", "test-api-key")]),
        request("/", &[("authorization", &bearer(&token))]),
    ] {
        assert_eq!(send(gw, req).await.status(), 200);
        let upstream = seen.recv().await.unwrap();
        assert_eq!(upstream.headers["x-consumer-id"], "c-test");
        assert!(!upstream.headers.contains_key("x-anonymous-consumer"));
    }
}

#[tokio::test]
async fn all_of_needs_every_credential() {
    let consumers = consumers();
    let layer = AuthLayer::all_of([
        Box::new(ApiKey::new(consumers.clone())) as Box<dyn Authenticator>,
        Box::new(Jwt::new(consumers)),
    ]);
    let (gw, mut seen) = gateway(layer).await;
    let (_, _, body) = refused(gw, &mut seen, request("/", &[("apikey", "test-api-key")])).await;
    assert_eq!(message(&body), "Unauthorized");
    let token = hs(json!({ "iss": "myapikey", "exp": now() + 3600 }));
    let both = request(
        "/",
        &[
            ("apikey", "test-api-key"),
            ("authorization", &bearer(&token)),
        ],
    );
    assert_eq!(send(gw, both).await.status(), 200);
}

#[tokio::test]
async fn skipped_paths_and_preflights_pass_without_credentials_but_never_spoofed() {
    let layer = AuthLayer::new(ApiKey::new(consumers()))
        .skip_path("/health")
        .skip_path("/public/*")
        .skip_preflight(true);
    let (gw, mut seen) = gateway(layer).await;
    for req in [
        request("/health", &[("x-consumer-username", "admin")]),
        request("/public/docs", &[]),
        Request::options("/orders")
            .header("host", "gateway.test")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .body(Full::default())
            .unwrap(),
    ] {
        assert_eq!(send(gw, req).await.status(), 200);
        let upstream = seen.recv().await.unwrap();
        assert!(!upstream.headers.contains_key("x-consumer-username"));
    }
    let (status, _, _) = refused(gw, &mut seen, request("/healthz", &[])).await;
    assert_eq!(status, 401);
    let (status, _, _) = refused(
        gw,
        &mut seen,
        Request::options("/orders")
            .header("host", "gateway.test")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "a plain OPTIONS is not a preflight");
}

#[tokio::test]
async fn single_secret_mode_maps_a_claim_to_a_header_that_cannot_be_spoofed() {
    let x_user_id = HeaderName::from_static("x-user-id");
    let layer = AuthLayer::new(Jwt::with_secret("seed-secret", Algorithm::HS256))
        .claim_to_header("user_id", x_user_id.clone())
        .skip_path("/health");
    let (gw, mut seen) = gateway(layer).await;
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"seed-secret"),
        json!({ "user_id": 42, "exp": now() + 3600 }),
    );
    let req = request(
        "/",
        &[("authorization", &bearer(&token)), ("x-user-id", "1")],
    );
    assert_eq!(send(gw, req).await.status(), 200);
    assert_eq!(seen.recv().await.unwrap().headers["x-user-id"], "42");
    // Skipped: the client's copy is still removed.
    send(gw, request("/health", &[("x-user-id", "1")])).await;
    assert!(!seen.recv().await.unwrap().headers.contains_key("x-user-id"));
    // Another secret: refused.
    let forged_token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"guess"),
        json!({ "user_id": 1, "exp": now() + 3600 }),
    );
    let (_, _, body) = refused(
        gw,
        &mut seen,
        request("/", &[("authorization", &bearer(&forged_token))]),
    )
    .await;
    assert_eq!(message(&body), "Invalid signature");
}

#[tokio::test]
async fn leeway_and_maximum_expiration() {
    let layer = AuthLayer::new(
        Jwt::new(consumers())
            .claims_to_verify([TimeClaim::Exp])
            .leeway(Duration::from_secs(30))
            .maximum_expiration(Duration::from_secs(3600)),
    );
    let (gw, mut seen) = gateway(layer).await;
    let just_expired = hs(json!({ "iss": "myapikey", "exp": now() - 10 }));
    assert_eq!(
        send(
            gw,
            request("/", &[("authorization", &bearer(&just_expired))])
        )
        .await
        .status(),
        200
    );
    seen.recv().await.unwrap();
    let far = hs(json!({ "iss": "myapikey", "exp": now() + 7200 }));
    let (_, _, body) = refused(
        gw,
        &mut seen,
        request("/", &[("authorization", &bearer(&far))]),
    )
    .await;
    assert_eq!(body, r#"{"exp":"exceeds maximum allowed expiration"}"#);
}

#[tokio::test]
async fn base64_secrets_cookies_a_header_key_claim_and_the_realm() {
    use base64::engine::general_purpose::STANDARD;
    let consumers = consumers();
    // A base64-stored secret: the token is signed with the decoded bytes.
    let raw = b"raw-secret-bytes";
    let stored = STANDARD.encode(raw);
    let credential =
        JwtCredential::hmac("b64-issuer", stored.as_bytes(), Algorithm::HS256).unwrap();
    consumers.add_jwt("test-user", credential).unwrap();
    let layer = AuthLayer::new(
        Jwt::new(consumers)
            .secret_is_base64(true)
            .key_claim_name("kid")
            .cookie_names(["session"])
            .realm("orders"),
    );
    let (gw, mut seen) = gateway(layer).await;

    // The key claim read from the JOSE header (`kid`), the token from a cookie.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("b64-issuer".into());
    let token = encode(
        &header,
        &json!({ "sub": "x", "exp": now() + 3600 }),
        &EncodingKey::from_secret(raw),
    )
    .unwrap();
    let req = request("/", &[("cookie", &format!("theme=dark; session={token}"))]);
    assert_eq!(send(gw, req).await.status(), 200);
    assert_eq!(
        seen.recv().await.unwrap().headers["x-consumer-username"],
        "test-user"
    );

    // Signed with the stored (still encoded) text instead: refused.
    let wrong = encode(
        &header,
        &json!({ "sub": "x", "exp": now() + 3600 }),
        &EncodingKey::from_secret(stored.as_bytes()),
    )
    .unwrap();
    let (_, challenge, body) = refused(
        gw,
        &mut seen,
        request("/", &[("authorization", &bearer(&wrong))]),
    )
    .await;
    assert_eq!(message(&body), "Invalid signature");
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"orders\", error=\"invalid_token\"")
    );
    let (_, challenge, _) = refused(gw, &mut seen, request("/", &[])).await;
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"orders\""));
}

#[tokio::test]
async fn the_library_jwt_checks_exp_by_default_and_kong_semantics_are_explicit() {
    let (gw, mut seen) = gateway(AuthLayer::new(Jwt::new(consumers()))).await;
    let bearer_req = |token: &str| request("/", &[("authorization", &bearer(token))]);
    let cases = [
        (
            "expired a day ago",
            hs(json!({ "iss": "myapikey", "exp": now() - 86_400 })),
            r#"{"exp":"token expired"}"#,
        ),
        (
            "without exp",
            hs(json!({ "iss": "myapikey" })),
            r#"{"exp":"must be a number"}"#,
        ),
        (
            "nbf in an hour",
            hs(json!({ "iss": "myapikey", "exp": now() + 7200, "nbf": now() + 3600 })),
            r#"{"nbf":"token not valid yet"}"#,
        ),
    ];
    for (what, token, expected) in cases {
        let (status, _, body) = refused(gw, &mut seen, bearer_req(&token)).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body, expected, "{what}");
    }
    // Within the default leeway (60 s) of clock skew.
    let skewed = hs(json!({ "iss": "myapikey", "exp": now() - 30, "nbf": now() + 30 }));
    assert_eq!(send(gw, bearer_req(&skewed)).await.status(), 200);
    seen.recv().await.unwrap();

    // Kong's semantics, asked for: no claim listed, no time check.
    let kong = AuthLayer::new(Jwt::new(consumers()).claims_to_verify([]));
    let (gw, mut seen) = gateway(kong).await;
    let day_old = hs(json!({ "iss": "myapikey", "exp": now() - 86_400 }));
    assert_eq!(send(gw, bearer_req(&day_old)).await.status(), 200);
    seen.recv().await.unwrap();
}

#[tokio::test]
async fn or_and_and_chain_authenticators_without_boxing() {
    let token = hs(json!({ "iss": "myapikey", "exp": now() + 3600 }));
    let key = ("apikey", "test-api-key");
    let jwt = ("authorization", bearer(&token));

    let either = AuthLayer::new(ApiKey::new(consumers())).or(Jwt::new(consumers()));
    let (gw, mut seen) = gateway(either).await;
    for req in [request("/", &[key]), request("/", &[(jwt.0, &jwt.1)])] {
        assert_eq!(send(gw, req).await.status(), 200);
        assert_eq!(
            seen.recv().await.unwrap().headers["x-consumer-id"],
            "c-test"
        );
    }
    let (status, _, _) = refused(gw, &mut seen, request("/", &[])).await;
    assert_eq!(status, 401);

    let both = AuthLayer::new(ApiKey::new(consumers())).and(Jwt::new(consumers()));
    let (gw, mut seen) = gateway(both).await;
    let (status, _, _) = refused(gw, &mut seen, request("/", &[key])).await;
    assert_eq!(status, 401);
    let req = request("/", &[key, (jwt.0, &jwt.1)]);
    assert_eq!(send(gw, req).await.status(), 200);
}
