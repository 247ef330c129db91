//! The seed's Kong Admin API walkthrough, shared by the library and example-gateway tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::{get, send, text};

/// An upstream that answers with its own name.
pub async fn named(name: &'static str) -> SocketAddr {
    super::named_upstream(name).await.0
}

/// `curl -X method http://admin/path --data form`.
pub async fn call(api: SocketAddr, method: &str, path: &str, form: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    let res = send(api, req).await;
    let status = res.status();
    let body = text(res).await;
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

pub fn token(iss: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(b"mysecret");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "iss": iss }),
        &key,
    )
    .unwrap()
}

pub fn authed(path: &str, apikey: Option<&str>, jwt: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = get(path);
    if let Some(key) = apikey {
        req.headers_mut().insert("apikey", key.parse().unwrap());
    }
    if let Some(jwt) = jwt {
        let value = format!("Bearer {jwt}").parse().unwrap();
        req.headers_mut().insert("authorization", value);
    }
    req
}

/// The seed's Kong walkthrough, sent as written (only the addresses differ) to the Admin API
/// at `api`, with the proxy at `proxy` checked after each step: a service from a URL, its
/// route, rate limiting (`config.minute=100`), a consumer with a JWT credential and the jwt
/// plugin, a key-auth credential and key-auth on the route, an upstream with three weighted
/// targets, and the service patched onto it.
pub async fn walkthrough(api: SocketAddr, proxy: SocketAddr) {
    let (one, two, three) = (named("one").await, named("two").await, named("three").await);

    // 1. The service, from a URL.
    let (status, service) = call(
        api,
        "POST",
        "/services",
        &format!("name=user-service&url=http://{one}"),
    )
    .await;
    assert_eq!(status, 201, "{service}");
    assert_eq!(service["host"], "127.0.0.1");
    assert_eq!(service["port"], one.port());
    assert_eq!(service["protocol"], "http");
    assert_eq!(service["retries"], 5);
    assert_eq!(service["read_timeout"], 60000);
    assert!(service["id"].as_str().unwrap().len() == 36);
    assert!(service["created_at"].as_u64().is_some());
    assert_eq!(send(proxy, get("/api/users")).await.status(), 404);

    // 2. Its route.
    let (status, route) = call(
        api,
        "POST",
        "/services/user-service/routes",
        "paths[]=/api/users&name=user-route",
    )
    .await;
    assert_eq!(status, 201, "{route}");
    assert_eq!(route["paths"], json!(["/api/users"]));
    assert_eq!(route["service"]["id"], service["id"]);
    assert_eq!(route["strip_path"], true);
    let res = send(proxy, get("/api/users")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "one");

    // 3. Rate limiting on the service.
    let (status, plugin) = call(
        api,
        "POST",
        "/services/user-service/plugins",
        "name=rate-limiting&config.minute=100&config.policy=local",
    )
    .await;
    assert_eq!(status, 201, "{plugin}");
    assert_eq!(plugin["config"]["minute"], 100, "form strings are typed");
    // Kong shows every configuration field, with its default.
    assert_eq!(plugin["config"]["limit_by"], "consumer");
    assert_eq!(plugin["config"]["error_code"], 429);
    assert_eq!(plugin["config"]["hour"], Value::Null);
    assert_eq!(plugin["enabled"], true);
    assert_eq!(plugin["service"]["id"], service["id"]);
    let res = send(proxy, get("/api/users")).await;
    assert_eq!(res.headers()["x-ratelimit-limit-minute"], "100");

    // 4. A consumer with a JWT credential, then the jwt plugin.
    let (status, _) = call(api, "POST", "/consumers", "username=testuser").await;
    assert_eq!(status, 201);
    let (status, jwt) = call(
        api,
        "POST",
        "/consumers/testuser/jwt",
        "key=myapikey&secret=mysecret",
    )
    .await;
    assert_eq!(status, 201, "{jwt}");
    assert_eq!(jwt["algorithm"], "HS256");
    let (status, plugin) = call(api, "POST", "/services/user-service/plugins", "name=jwt").await;
    assert_eq!(status, 201);
    assert_eq!(plugin["config"]["key_claim_name"], "iss");
    // The limit counts from here: stay inside one calendar minute.
    wait_for_a_fresh_minute().await;
    let mut admitted = 0;
    assert_eq!(send(proxy, get("/api/users")).await.status(), 401);
    let jwt = token("myapikey");
    let res = send(proxy, authed("/api/users", None, Some(&jwt))).await;
    assert_eq!(res.status(), 200);
    admitted += 1;

    // 5. A key-auth credential, then key-auth on the route: both plugins must pass.
    let (status, key) = call(
        api,
        "POST",
        "/consumers/testuser/key-auth",
        "key=test-api-key",
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, _) = call(api, "POST", "/routes/user-route/plugins", "name=key-auth").await;
    assert_eq!(status, 201);
    let only_jwt = send(proxy, authed("/api/users", None, Some(&jwt))).await;
    assert_eq!(only_jwt.status(), 401);
    assert_eq!(
        text(only_jwt).await,
        r#"{"message":"No API key found in request"}"#
    );
    let both = send(
        proxy,
        authed("/api/users", Some("test-api-key"), Some(&jwt)),
    )
    .await;
    assert_eq!(both.status(), 200);
    admitted += 1;

    // 6. An upstream with three weighted targets, then the service moved onto it.
    let (status, _) = call(api, "POST", "/upstreams", "name=user-service-upstream").await;
    assert_eq!(status, 201);
    for (addr, weight) in [(one, 100), (two, 50), (three, 50)] {
        let (status, target) = call(
            api,
            "POST",
            "/upstreams/user-service-upstream/targets",
            &format!("target={addr}&weight={weight}"),
        )
        .await;
        assert_eq!(status, 201, "{target}");
        assert_eq!(target["weight"], weight);
    }
    let (status, patched) = call(
        api,
        "PATCH",
        "/services/user-service",
        "host=user-service-upstream",
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["host"], "user-service-upstream");
    let mut spread: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let res = send(
            proxy,
            authed("/api/users", Some("test-api-key"), Some(&jwt)),
        )
        .await;
        assert_eq!(res.status(), 200);
        admitted += 1;
        *spread.entry(text(res).await).or_default() += 1;
    }
    assert_eq!(spread["one"], 20, "{spread:?}");
    assert_eq!(spread["two"], 10, "{spread:?}");
    assert_eq!(spread["three"], 10, "{spread:?}");

    // 7. The limit held through every change: the 101st request of the minute is refused.
    loop {
        let res = send(
            proxy,
            authed("/api/users", Some("test-api-key"), Some(&jwt)),
        )
        .await;
        if res.status() == 429 {
            break;
        }
        assert_eq!(res.status(), 200);
        admitted += 1;
    }
    assert_eq!(admitted, 100);
}

/// Waits for the next calendar minute when less than 20 s of this one are left.
pub async fn wait_for_a_fresh_minute() {
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 40 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
}
