#![cfg(all(feature = "admin", feature = "jwt"))]
//! The Admin API over real sockets: Kong's walkthrough replayed call by call with the proxy
//! checked after each step, Kong's answers for bad input, reconfiguration under load, and an
//! export that loads back.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::kong::{self, authed, call, named};
use support::{get, send, serve, text};
use tower_gateway::admin::AdminApi;
use tower_gateway::config::Settings;

/// The Admin API and the proxy it configures, both on loopback sockets.
async fn gateway(yaml: &str) -> (SocketAddr, SocketAddr, AdminApi) {
    let admin = AdminApi::from_yaml(yaml, Settings::default()).unwrap();
    let (proxy, stop) = serve(admin.live().service()).await;
    std::mem::forget(stop);
    let (api, stop) = serve(admin.clone()).await;
    std::mem::forget(stop);
    (api, proxy, admin)
}

const EMPTY: &str = "_format_version: \"3.0\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_s_kong_walkthrough_configures_the_gateway_step_by_step() {
    let (api, proxy, _admin) = gateway(EMPTY).await;
    kong::walkthrough(api, proxy).await;
}

#[tokio::test]
async fn kong_s_answers_for_conflicts_bad_input_and_unknown_entities() {
    let (api, _proxy, _admin) = gateway(EMPTY).await;
    let (status, _) = call(api, "POST", "/services", "name=s&url=http://127.0.0.1:9").await;
    assert_eq!(status, 201);
    let (status, body) = call(api, "POST", "/services", "name=s&url=http://127.0.0.1:9").await;
    assert_eq!(status, 409);
    assert_eq!(body["name"], "unique constraint violation");
    assert_eq!(
        body["message"],
        r#"UNIQUE violation detected on '{name="s"}'"#
    );

    let (status, body) = call(api, "POST", "/services/s/routes", "paths[]=api").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["name"], "schema violation");
    assert!(body["fields"]["paths"]["0"].is_string(), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("schema violation (paths.0:")
    );

    let (status, body) = call(api, "POST", "/services", "name=t&host=127.0.0.1&port=http").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["port"].is_string());

    let (status, body) = call(api, "POST", "/routes", "paths[]=/x&service.name=nowhere").await;
    assert_eq!(status, 400);
    assert_eq!(body["name"], "foreign key violation");

    // One instance of a plugin per scope.
    let (status, _) = call(api, "POST", "/services/s/plugins", "name=key-auth").await;
    assert_eq!(status, 201);
    let (status, body) = call(api, "POST", "/services/s/plugins", "name=key-auth").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(api, "GET", "/services/nope", "").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({ "message": "Not found" }))
    );
    let (status, _) = call(api, "GET", "/nothing-here", "").await;
    assert_eq!(status, 404);
    // Deleting what does not exist is fine, as in Kong.
    let (status, _) = call(api, "DELETE", "/services/nope", "").await;
    assert_eq!(status, 204);

    // A service its routes still use is not deleted; the route first, then it is.
    let (status, route) = call(api, "POST", "/services/s/routes", "paths[]=/s&name=r").await;
    assert_eq!(status, 201);
    let (status, body) = call(api, "DELETE", "/services/s", "").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        api,
        "DELETE",
        &format!("/routes/{}", route["id"].as_str().unwrap()),
        "",
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(api, "DELETE", "/services/s", "").await;
    assert_eq!(status, 204);
    let (_, list) = call(api, "GET", "/services", "").await;
    assert_eq!(list, json!({ "data": [], "next": null }));
}

#[tokio::test]
async fn lists_page_put_upserts_and_json_bodies_are_read() {
    let (api, _proxy, _admin) = gateway(EMPTY).await;
    // decK reads Kong's version from `/` to pick its file format: a Kong 3 version, not the
    // crate's 0.1.0 (which it would take for Kong 0.1).
    let (_, root) = call(api, "GET", "/", "").await;
    assert_eq!(root["version"], tower_gateway::admin::KONG_VERSION);
    assert!(root["version"].as_str().unwrap().starts_with("3."));
    assert_eq!(root["tower_gateway_version"], env!("CARGO_PKG_VERSION"));
    for i in 0..5 {
        let (status, _) = call(api, "PUT", &format!("/consumers/user-{i}"), "").await;
        assert_eq!(status, 200);
    }
    let (_, page) = call(api, "GET", "/consumers?size=2", "").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["username"], "user-0");
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = call(api, "GET", &next, "").await;
    assert_eq!(rest["data"][0]["username"], "user-2");
    // Kong's tag filter: both tags with `,`, either with `/`.
    call(api, "PATCH", "/consumers/user-0", "tags[]=blue&tags[]=big").await;
    call(api, "PATCH", "/consumers/user-1", "tags[]=blue").await;
    call(api, "PATCH", "/consumers/user-2", "tags[]=red").await;
    let names = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, both) = call(api, "GET", "/consumers?tags=blue,big", "").await;
    assert_eq!(names(&both), ["user-0"]);
    let (_, either) = call(api, "GET", "/consumers?tags=big/red", "").await;
    assert_eq!(names(&either), ["user-0", "user-2"]);
    let (_, escaped) = call(api, "GET", "/consumers?tags=big%2Fred", "").await;
    assert_eq!(names(&escaped), ["user-0", "user-2"]);
    // Paging a filtered list keeps the filter: page two holds tagged entities only.
    let (_, page) = call(api, "GET", "/consumers?tags=blue&size=1", "").await;
    assert_eq!(names(&page), ["user-0"]);
    let next = page["next"].as_str().unwrap().to_owned();
    assert!(next.contains("tags=blue"), "{next}");
    let (_, rest) = call(api, "GET", &next, "").await;
    assert_eq!(names(&rest), ["user-1"]);
    assert_eq!(rest["next"], Value::Null);
    let (_, page) = call(api, "GET", "/consumers?tags=big%2Fred&size=1", "").await;
    let (_, rest) = call(api, "GET", page["next"].as_str().unwrap(), "").await;
    assert_eq!(names(&rest), ["user-2"]);

    // In a path `+` is a plus (a form's `+` is a space): `/consumers/a+b` is consumer `a+b`.
    let (status, created) = call(api, "POST", "/consumers", "username=a%2Bb&custom_id=x+y").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (&created["username"], &created["custom_id"]),
        (&json!("a+b"), &json!("x y"))
    );
    let (status, found) = call(api, "GET", "/consumers/a+b", "").await;
    assert_eq!((status.as_u16(), &found["username"]), (200, &json!("a+b")));
    let (status, _) = call(api, "GET", "/consumers/a%2Bb", "").await;
    assert_eq!(status, 200);
    call(api, "DELETE", "/consumers/a+b", "").await;

    let req = Request::post("/upstreams")
        .header("host", "admin.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"name":"u","algorithm":"least-connections"}"#,
        )))
        .unwrap();
    let res = send(api, req).await;
    assert_eq!(res.status(), 201);
    let created: Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(created["algorithm"], "least-connections");
    assert_eq!(created["slots"], 10000);
    // PUT replaces the whole entity, defaults and all.
    let (status, replaced) = call(api, "PUT", "/upstreams/u", "name=u").await;
    assert_eq!(status, 200);
    assert_eq!(replaced["algorithm"], "round-robin");
    assert_eq!(replaced["id"], created["id"]);
}

#[tokio::test]
async fn an_admin_token_is_required_when_set() {
    let admin = AdminApi::from_yaml(EMPTY, Settings::default())
        .unwrap()
        .token("s3cret");
    let (api, stop) = serve(admin).await;
    std::mem::forget(stop);
    assert_eq!(send(api, get("/services")).await.status(), 401);
    let mut req = get("/services");
    req.headers_mut()
        .insert("kong-admin-token", "s3cret".parse().unwrap());
    assert_eq!(send(api, req).await.status(), 200);
    let mut req = get("/services");
    req.headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    assert_eq!(send(api, req).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reconfigurations_under_load_lose_no_request() {
    let up = named("up").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: r\n        paths: [/]\n"
    );
    let (api, proxy, _admin) = gateway(&yaml).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let res = send(proxy, get("/x")).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if res.status() != 200 || text(res).await != "up" {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for i in 0..100 {
        // Alternate between changing a route, adding a plugin and removing it.
        let (status, body) = match i % 3 {
            0 => {
                call(
                    api,
                    "PATCH",
                    "/routes/r",
                    &format!("paths[]=/&name=r&tags[]=t{i}"),
                )
                .await
            }
            1 => {
                call(
                    api,
                    "PUT",
                    "/plugins/6f0b8e0e-0000-4000-8000-000000000001",
                    "name=correlation-id",
                )
                .await
            }
            _ => {
                call(
                    api,
                    "DELETE",
                    "/plugins/6f0b8e0e-0000-4000-8000-000000000001",
                    "",
                )
                .await
            }
        };
        assert!(status.is_success(), "{status} {body}");
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        sent.load(Ordering::Relaxed) > 100,
        "too little traffic to mean anything"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_export_loads_back_to_the_same_gateway() {
    let (users, orders) = (named("users").await, named("orders").await);
    let yaml = support::seed_config(users, orders);
    let (api, proxy, _admin) = gateway(&yaml).await;
    let (status, before) = call(api, "GET", "/services", "").await;
    assert_eq!(status, 200);
    let (status, exported) = call(api, "GET", "/config", "").await;
    assert_eq!(status, 200);
    let exported = exported["config"].as_str().unwrap().to_owned();

    // The export, loaded into a new gateway, behaves as the original and has the same ids.
    let (api2, proxy2, _admin2) = gateway(&exported).await;
    let (_, after) = call(api2, "GET", "/services", "").await;
    assert_eq!(before, after);
    let requests = || {
        [
            authed("/api/users", Some("test-api-key"), None),
            get("/api/users"),
            get("/api/orders"),
        ]
    };
    for (a, b) in requests().into_iter().zip(requests()) {
        let path = a.uri().to_string();
        let (a, b) = (send(proxy, a).await, send(proxy2, b).await);
        assert_eq!(a.status(), b.status(), "{path}");
        assert_eq!(text(a).await, text(b).await, "{path}");
    }
    let res = send(proxy2, authed("/api/users", Some("test-api-key"), None)).await;
    assert_eq!(text(res).await, "users");
    // And loaded back through POST /config, it changes nothing.
    let req = Request::post("/config")
        .header("host", "admin.test")
        .header("content-type", "application/yaml")
        .body(Full::new(Bytes::from(exported)))
        .unwrap();
    assert_eq!(send(api, req).await.status(), 201);
    let (_, again) = call(api, "GET", "/services", "").await;
    assert_eq!(before, again);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_survives_its_redis_restarting_and_a_late_joiner_gets_its_configuration() {
    let Some(mut redis) = support::redis::RedisServer::start() else {
        return;
    };
    let up = named("up").await;
    let (api_a, proxy_a, admin_a) = gateway(EMPTY).await;
    let (_api_b, proxy_b, admin_b) = gateway(EMPTY).await;
    admin_a.join_cluster(&redis.url(), "t").await.unwrap();
    admin_b.join_cluster(&redis.url(), "t").await.unwrap();
    let (status, _) = call(
        api_a,
        "POST",
        "/services",
        &format!("name=s&url=http://{up}"),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(api_a, "POST", "/services/s/routes", "paths[]=/x").await;
    assert_eq!(status, 201);
    eventually(|| async { send(proxy_b, get("/x")).await.status() == 200 }).await;

    // Redis restarts empty; the instances keep serving and put the configuration back.
    redis.restart();
    assert_eq!(send(proxy_a, get("/x")).await.status(), 200);
    // A gateway joining now, with a file of its own, takes the cluster's configuration.
    let (_api_c, proxy_c, admin_c) = gateway(EMPTY).await;
    admin_c.join_cluster(&redis.url(), "t").await.unwrap();
    assert_eq!(send(proxy_c, get("/x")).await.status(), 200);
    drop(admin_b);
}

/// Retries `check` for up to 5 s.
#[cfg(feature = "redis")]
async fn eventually<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never happened");
}

#[tokio::test]
async fn targets_are_marked_unhealthy_and_healthy_by_hand() {
    let (one, two) = (named("one").await, named("two").await);
    let (api, proxy, _admin) = gateway(EMPTY).await;
    call(api, "POST", "/upstreams", "name=u").await;
    for addr in [one, two] {
        let (status, _) = call(
            api,
            "POST",
            "/upstreams/u/targets",
            &format!("target={addr}"),
        )
        .await;
        assert_eq!(status, 201);
    }
    call(api, "POST", "/services", "name=s&host=u").await;
    call(api, "POST", "/services/s/routes", "paths[]=/").await;

    let (status, _) = call(
        api,
        "PUT",
        &format!("/upstreams/u/targets/{one}/unhealthy"),
        "",
    )
    .await;
    assert_eq!(status, 204);
    for _ in 0..4 {
        assert_eq!(text(send(proxy, get("/")).await).await, "two");
    }
    let (_, health) = call(api, "GET", "/upstreams/u/health", "").await;
    let one_health = health["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == one.to_string())
        .unwrap()["health"]
        .clone();
    assert_eq!(one_health, "UNHEALTHY");
    let (status, _) = call(
        api,
        "PUT",
        &format!("/upstreams/u/targets/{one}/healthy"),
        "",
    )
    .await;
    assert_eq!(status, 204);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(text(send(proxy, get("/")).await).await);
    }
    assert_eq!(seen.len(), 2, "both targets serve again: {seen:?}");
    let (status, _) = call(api, "PUT", "/upstreams/u/targets/10.9.9.9:1/healthy", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn hooks_see_every_swapped_gateway_and_guards_refuse_changes_whole() {
    let swapped = Arc::new(AtomicUsize::new(0));
    let seen = swapped.clone();
    let admin = AdminApi::from_yaml(EMPTY, Settings::default())
        .unwrap()
        .on_swap(move |gateway| {
            seen.store(gateway.routes().len() + 100, Ordering::SeqCst);
        })
        // At most one route.
        .guard(|gateway| match gateway.routes().len() {
            0 | 1 => Ok(()),
            n => Err(format!("{n} routes: this gateway takes one")),
        });
    let (api, stop) = serve(admin.clone()).await;
    std::mem::forget(stop);
    let (status, _) = call(api, "POST", "/services", "name=s&url=http://127.0.0.1:9").await;
    assert_eq!(status, 201);
    assert_eq!(
        swapped.load(Ordering::SeqCst),
        100,
        "the hook saw the new gateway"
    );
    let (status, _) = call(api, "POST", "/services/s/routes", "name=a&paths[]=/a").await;
    assert_eq!(status, 201);
    assert_eq!(swapped.load(Ordering::SeqCst), 101);
    let (status, body) = call(api, "POST", "/services/s/routes", "name=b&paths[]=/b").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("this gateway takes one"),
        "{body}"
    );
    // Refused whole: not stored, not served, no hook.
    assert_eq!(swapped.load(Ordering::SeqCst), 101);
    let (_, routes) = call(api, "GET", "/routes", "").await;
    assert_eq!(routes["data"].as_array().map(Vec::len), Some(1), "{routes}");
    assert_eq!(admin.live().current().routes().len(), 1);
}
