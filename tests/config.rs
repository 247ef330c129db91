#![cfg(feature = "config")]
//! The declarative configuration: precise errors, nothing silently ignored, and a gateway built
//! from a file proxying over real sockets.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;
use tower_gateway::config::{Config, ConfigError, Gateway, Settings};

fn error(yaml: &str) -> ConfigError {
    Config::from_yaml(yaml).expect_err("the configuration was accepted")
}

const HEAD: &str = "_format_version: \"3.0\"\n";

/// A gateway built from `yaml` with default settings, serving on a loopback port.
async fn serve_yaml(yaml: &str) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = Config::from_yaml(yaml).unwrap();
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    serve(gateway.router()).await
}

#[test]
fn every_supported_format_version_loads() {
    for v in ["1.1", "2.1", "3.0"] {
        Config::from_yaml(&format!("_format_version: \"{v}\"\nservices: []\n")).unwrap();
    }
    let err = error("_format_version: \"4.0\"\n");
    assert!(
        err.to_string()
            .contains("unsupported _format_version \"4.0\""),
        "{err}"
    );
}

#[test]
fn a_bad_path_names_the_field_path_and_line() {
    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n    routes:\n      - paths: [/ok]\n      - paths:\n          - /fine\n          - no-slash\n"
    ));
    assert_eq!(err.path(), Some("services[0].routes[1].paths[1]"));
    assert_eq!(err.line(), Some(9));
    assert!(err.to_string().contains("must start with `/`"), "{err}");
}

#[test]
fn broken_yaml_is_refused_with_its_line() {
    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: [unclosed\n"
    ));
    assert!(err.line().is_some(), "{err}");
    assert!(err.to_string().starts_with("<config>: "), "{err}");
}

#[test]
fn unknown_fields_are_refused_not_ignored() {
    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n    routes:\n      - pathz: [/x]\n"
    ));
    let text = err.to_string();
    assert!(text.contains("unknown field `pathz`"), "{text}");
    assert!(text.contains("services[0].routes[0]"), "{text}");
    assert_eq!(err.line(), Some(6));
}

#[test]
fn plugins_the_registry_does_not_know_are_refused_by_name() {
    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n    plugins:\n      - name: http-log\n        config: {{http_endpoint: x}}\n"
    ));
    let text = err.to_string();
    assert!(
        text.contains("plugin \"http-log\" is not supported here"),
        "{text}"
    );
    assert!(text.contains("services[0].plugins"), "{text}");
}

#[test]
fn later_sections_are_refused_when_not_empty_and_accepted_when_empty() {
    Config::from_yaml(&format!(
        "{HEAD}consumers: []\nupstreams: []\nplugins: []\n"
    ))
    .unwrap();
    for (section, what) in [
        ("plugins:\n  - name: http-log\n", "http-log"),
        ("vaults:\n  - name: env\n", "vaults"),
    ] {
        let err = error(&format!("{HEAD}{section}"));
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(err.to_string().contains(what), "{err}");
    }
}

#[test]
fn kong_defaults_are_accepted_and_other_values_refused() {
    let ok = format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n    retries: 5\n    routes:\n      - paths: [/x]\n        protocols: [http, https]\n        path_handling: v0\n        regex_priority: 0\n        https_redirect_status_code: 426\n        request_buffering: true\n        snis: []\n"
    );
    Config::from_yaml(&ok).unwrap();
    let err = error(&ok.replace("path_handling: v0", "path_handling: v1"));
    assert!(
        err.to_string().contains("\"v1\" is not supported yet"),
        "{err}"
    );
    let err = error(&ok.replace("protocols: [http, https]", "protocols: [https]"));
    assert!(
        err.to_string()
            .contains("https-only routes are not supported yet"),
        "{err}"
    );
    let err = error(&ok.replace("snis: []", "snis: [a.example]"));
    assert!(err.to_string().contains("not supported yet"), "{err}");
}

#[test]
fn values_are_checked_where_they_are_written() {
    let base = format!("{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n");
    let cases = [
        (
            format!("{base}    read_timeout: 0\n"),
            "services[0].read_timeout",
            "out of range",
        ),
        (
            format!("{base}    routes:\n      - methods: [get]\n"),
            "services[0].routes[0].methods[0]",
            "upper-case",
        ),
        (
            format!("{base}    routes:\n      - hosts: [\"a.*.com\"]\n"),
            "services[0].routes[0].hosts[0]",
            "invalid host",
        ),
        (
            format!("{base}    routes:\n      - headers: {{host: [a]}}\n"),
            "services[0].routes[0].headers",
            "hosts",
        ),
        (
            "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: ftp://x\n".to_owned(),
            "services[0].url",
            "scheme must be http or https",
        ),
        (
            "_format_version: \"3.0\"\nservices:\n  - name: a\n    protocol: udp\n    host: x\n"
                .to_owned(),
            "services[0].protocol",
            "not supported",
        ),
    ];
    for (yaml, path, message) in cases {
        let err = error(&yaml);
        let text = err.to_string();
        assert!(text.contains(path), "{path} missing in: {text}");
        assert!(text.contains(message), "{message} missing in: {text}");
        assert!(err.line().is_some(), "no line in: {text}");
    }
}

#[test]
fn references_and_names_are_checked_across_the_file() {
    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\nroutes:\n  - name: r\n    service: b\n    paths: [/x]\n"
    ));
    assert_eq!(err.path(), Some("routes[0].service"));
    assert!(
        err.to_string().contains("no service is named \"b\""),
        "{err}"
    );

    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n  - name: a\n    url: http://127.0.0.1:2\n"
    ));
    assert_eq!(err.path(), Some("services[1]"));

    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n    host: x\n"
    ));
    assert_eq!(err.path(), Some("services[0].url"));

    let err = error(&format!(
        "{HEAD}services:\n  - name: a\n    url: http://127.0.0.1:1\n    routes:\n      - strip_path: true\n"
    ));
    assert!(err.to_string().contains("at least one of paths"), "{err}");
}

#[tokio::test]
async fn a_configured_gateway_routes_strips_and_forwards() {
    let (up, mut seen) = ok_upstream().await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: users
    host: 127.0.0.1
    port: {port}
    path: /v1
    routes:
      - name: users
        paths: [/api/users]
        methods: [GET]
      - name: kept
        paths: ["/api/users/{{id}}"]
        strip_path: false
        preserve_host: true
  - name: off
    url: http://127.0.0.1:{port}
    enabled: false
    routes:
      - paths: [/off]
routes:
  - name: top
    service: users
    paths: [/top]
"#,
        port = up.port()
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    assert_eq!(gateway.routes().len(), 3);
    assert_eq!(
        gateway.routes()[0].origin,
        format!("http://127.0.0.1:{}/v1", up.port())
    );
    let (gw, _stop) = serve(gateway.router()).await;

    send(gw, get("/api/users?page=2")).await;
    let s = seen.recv().await.unwrap();
    assert_eq!(s.uri, "/v1?page=2");
    assert_eq!(s.headers["host"], format!("127.0.0.1:{}", up.port()));

    send(gw, get("/api/users/42")).await;
    let s = seen.recv().await.unwrap();
    assert_eq!(s.uri, "/v1/api/users/42");
    assert_eq!(s.headers["host"], "gateway.test");

    send(gw, get("/top/x")).await;
    assert_eq!(seen.recv().await.unwrap().uri, "/v1/x");

    let res = send(gw, get("/off")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        text(res).await,
        r#"{"message":"no Route matched with those values"}"#
    );

    let res = send(
        gw,
        http::Request::post("/api/users")
            .header("host", "h")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    // Kong's router: a method mismatch is no match at all (the library Router answers 405).
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        text(res).await,
        r#"{"message":"no Route matched with those values"}"#
    );
    // … and a plain path is a raw string prefix: `/top` takes `/topics`, as in Kong.
    send(gw, get("/topics")).await;
    assert_eq!(seen.recv().await.unwrap().uri, "/v1/ics");
}

/// Issue 19's first item: a Kong 2.x file's regex paths loaded and never matched.
#[tokio::test]
async fn a_kong_2x_file_s_regex_paths_route_as_kong_3_reads_them() {
    let (users, mut seen_users) = named_upstream("users").await;
    let (rest, _) = named_upstream("rest").await;
    let yaml = format!(
        r#"_format_version: "2.1"
services:
  - name: users
    url: http://{users}
    routes:
      - name: user-by-id
        paths: ['/users/\d+$', '/people/(?<name>[a-z]+)']
        strip_path: false
  - name: rest
    url: http://{rest}
    routes:
      - name: everything
        paths: [/users, /people]
"#
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let paths: Vec<&str> = config.services[0].routes[0]
        .paths
        .iter()
        .flatten()
        .map(|p| p.0.as_str())
        .collect();
    assert_eq!(paths, [r"~/users/\d+$", "~/people/(?<name>[a-z]+)"]);
    assert_eq!(
        config.services[1].routes[0].paths.as_ref().unwrap()[0].0,
        "/users"
    );
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;

    // A regex route outranks the prefix route that also matches.
    assert_eq!(text(send(gw, get("/users/42")).await).await, "users");
    assert_eq!(seen_users.recv().await.unwrap().uri, "/users/42");
    assert_eq!(text(send(gw, get("/users/ann")).await).await, "rest");
    assert_eq!(text(send(gw, get("/users/42/orders")).await).await, "rest");
    assert_eq!(text(send(gw, get("/people/ann/x")).await).await, "users");

    // In a 3.0 file a path without `~` is a plain prefix, as Kong 3 reads it: `/users/\d+$`
    // is text, and a `?` is refused where it stands.
    let err = error(&yaml.replace(r#""2.1""#, r#""3.0""#));
    assert_eq!(err.path(), Some("services[0].routes[0].paths[1]"), "{err}");
    let v3 = yaml
        .replace(r#""2.1""#, r#""3.0""#)
        .replace(", '/people/(?<name>[a-z]+)'", "");
    let (gw, _stop) = serve_yaml(&v3).await;
    assert_eq!(text(send(gw, get("/users/42")).await).await, "rest");
}

#[tokio::test]
async fn regex_paths_and_regex_priority_in_a_3_0_file() {
    let (low, _) = named_upstream("low").await;
    let (high, _) = named_upstream("high").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: low
    url: http://{low}
    routes:
      - name: low
        paths: ['~/items/\d+']
  - name: high
    url: http://{high}
    routes:
      - name: high
        paths: ['~/items/(?<id>[0-9]+)$']
        regex_priority: 5
"#
    );
    let (gw, _stop) = serve_yaml(&yaml).await;
    // Both match `/items/7`: the higher regex_priority wins; only the first matches `/items/7/x`.
    assert_eq!(text(send(gw, get("/items/7")).await).await, "high");
    assert_eq!(text(send(gw, get("/items/7/x")).await).await, "low");
    assert_eq!(
        send(gw, get("/items/x")).await.status(),
        StatusCode::NOT_FOUND
    );
    let low_first = yaml.replace("regex_priority: 5", "regex_priority: -1");
    let (gw, _stop) = serve_yaml(&low_first).await;
    assert_eq!(text(send(gw, get("/items/7")).await).await, "low");

    let err = error(&yaml.replace(r"~/items/\d+", r"~/items/(\d+"));
    assert_eq!(err.path(), Some("services[0].routes[0].paths[0]"), "{err}");
    assert!(err.to_string().contains("invalid regex path"), "{err}");
    assert_eq!(err.line(), Some(7));
}

#[tokio::test(start_paused = true)]
async fn service_timeouts_from_the_file_apply() {
    let up = silent_upstream().await;
    let yaml = format!(
        "{HEAD}services:\n  - name: slow\n    url: http://{up}\n    read_timeout: 1500\n    routes:\n      - paths: [/]\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    let started = tokio::time::Instant::now();
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
}

#[test]
fn the_bundled_example_configuration_is_valid() {
    let config = Config::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gateway.yaml"
    ))
    .unwrap();
    assert!(!config.services.is_empty());
}

#[test]
fn upstream_errors_name_the_field_and_line() {
    let err = error(&format!(
        "{HEAD}upstreams:\n  - name: u\n    algorithm: fastest\n"
    ));
    assert!(err.to_string().contains("fastest"), "{err}");
    assert_eq!(err.line(), Some(4));

    let err = error(&format!(
        "{HEAD}upstreams:\n  - name: u\n    targets:\n      - target: 10.0.0.1:80\n        weight: 70000\n"
    ));
    assert_eq!(err.path(), Some("upstreams[0].targets[0].weight"));
    assert_eq!(err.line(), Some(6));

    let err = error(&format!(
        "{HEAD}upstreams:\n  - name: u\n    targets:\n      - target: http://10.0.0.1\n"
    ));
    assert!(err.to_string().contains("expected host:port"), "{err}");
    assert_eq!(err.line(), Some(5));
}

#[test]
fn upstream_rules_are_checked_across_fields() {
    let cases = [
        (
            "upstreams:\n  - name: u\n    hash_on: header\n",
            "upstreams[0].hash_on_header",
            "hash_on needs hash_on_header",
        ),
        (
            "upstreams:\n  - name: u\n    hash_on: cookie\n    hash_on_cookie: c\n    hash_fallback: ip\n",
            "upstreams[0].hash_fallback",
            "takes no fallback",
        ),
        (
            "upstreams:\n  - name: u\n    targets:\n      - target: a:1\n      - target: a:1\n",
            "upstreams[0].targets[1].target",
            "listed twice",
        ),
        (
            "upstreams:\n  - name: u\ntargets:\n  - target: a:1\n    upstream: v\n",
            "targets[0].upstream",
            "no upstream is named \"v\"",
        ),
        (
            "upstreams:\n  - name: u\n  - name: u\n",
            "upstreams[1]",
            "a second upstream",
        ),
        (
            "upstreams:\n  - name: u\n    healthchecks:\n      active:\n        http_path: health\n        healthy:\n          interval: 5\n",
            "upstreams[0].healthchecks.active.http_path",
            "must start with `/`",
        ),
    ];
    for (yaml, path, message) in cases {
        let err = error(&format!("{HEAD}{yaml}"));
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    for refused in [
        "upstreams:\n  - name: u\n    healthchecks:\n      threshold: 50\n",
        "upstreams:\n  - name: u\n    host_header: api.internal\n",
        "upstreams:\n  - name: u\n    healthchecks:\n      active:\n        type: tcp\n",
    ] {
        let err = error(&format!("{HEAD}{refused}"));
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}

#[tokio::test]
async fn a_service_naming_an_upstream_is_balanced_over_its_targets() {
    let (a, mut seen_a) = upstream(|_| async {
        http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"a")))
    })
    .await;
    let (b, _seen_b) = upstream(|_| async {
        http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"b")))
    })
    .await;
    let yaml = format!(
        "{HEAD}upstreams:\n  - name: users.internal\n    targets:\n      - target: {a}\n        weight: 300\n\
         targets:\n  - target: {b}\n    upstream: users.internal\n\
         services:\n  - name: users\n    url: http://users.internal/v1\n    routes:\n      - paths: [/users]\n"
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    assert_eq!(gateway.routes()[0].origin, "upstream users.internal");
    assert_eq!(gateway.upstreams().len(), 1);
    let (gw, _stop) = serve(gateway.router()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(text(send(gw, get("/users/7")).await).await);
    }
    assert_eq!(got, ["a", "a", "b", "a"]);
    let seen = seen_a.recv().await.unwrap();
    // The target's address is the Host, the service's path the base path.
    assert_eq!(seen.headers["host"], a.to_string());
    assert_eq!(seen.uri, "/v1/7");
}

#[tokio::test]
async fn hash_on_uri_capture_keeps_one_captured_id_on_one_target() {
    let (a, _) = named_upstream("a").await;
    let (b, _) = named_upstream("b").await;
    let yaml = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: users.internal
    algorithm: consistent-hashing
    hash_on: uri_capture
    hash_on_uri_capture: id
    targets: [{{target: "{a}"}}, {{target: "{b}"}}]
services:
  - name: users
    url: http://users.internal
    routes:
      - paths: ['~/users/(?<id>\d+)']
"#
    );
    let (gw, _stop) = serve_yaml(&yaml).await;
    let mut by_id = std::collections::HashMap::new();
    for id in 0..40 {
        // Whatever follows the capture, one id always reaches one target.
        let first = text(send(gw, get(&format!("/users/{id}/a"))).await).await;
        let again = text(send(gw, get(&format!("/users/{id}/b?x=1"))).await).await;
        assert_eq!(first, again, "id {id}");
        by_id.insert(id, first);
    }
    assert!(by_id.values().any(|t| t == "a") && by_id.values().any(|t| t == "b"));

    let err = error(&yaml.replace("    hash_on_uri_capture: id\n", ""));
    assert_eq!(
        err.path(),
        Some("upstreams[0].hash_on_uri_capture"),
        "{err}"
    );
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn the_seed_s_key_auth_and_jwt_behave_as_kong() {
    let (users, mut seen_users) = ok_upstream().await;
    let (orders, mut seen_orders) = ok_upstream().await;
    let config = Config::from_yaml(&seed_config(users, orders)).unwrap();
    let gateway = Gateway::from_config(&config, &Settings::default()).unwrap();
    assert!(gateway.consumers().get("test-user").is_some());
    let (gw, _stop) = serve(gateway.router()).await;

    let res = send(gw, get("/api/users")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        text(res).await,
        r#"{"message":"No API key found in request"}"#
    );
    let req = http::Request::get("/api/users")
        .header("host", "gateway.test")
        .header("apikey", "test-api-key")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(gw, req).await.status(), 200);
    let seen = seen_users.recv().await.unwrap();
    assert_eq!(seen.headers["x-consumer-username"], "test-user");
    // key-auth names the credential by its id (derived, UUID-shaped: the file gives none).
    let id = seen.headers["x-credential-identifier"].to_str().unwrap();
    assert_eq!((id.len(), id.contains("test-api-key")), (36, false), "{id}");

    let res = send(gw, get("/api/orders")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(text(res).await, r#"{"message":"Unauthorized"}"#);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "iss": "myapikey", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(b"mysecret"),
    )
    .unwrap();
    let req = http::Request::get("/api/orders")
        .header("host", "gateway.test")
        .header("authorization", format!("Bearer {token}"))
        .body(Default::default())
        .unwrap();
    assert_eq!(send(gw, req).await.status(), 200);
    let seen = seen_orders.recv().await.unwrap();
    assert_eq!(seen.headers["x-consumer-username"], "test-user");
    // Kong's jwt plugin names the credential by its key (key-auth by its id).
    assert_eq!(seen.headers["x-credential-identifier"], "myapikey");
    // The key of one service does not open the other.
    let req = http::Request::get("/api/orders")
        .header("host", "gateway.test")
        .header("apikey", "test-api-key")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(gw, req).await.status(), 401);
}

#[tokio::test]
async fn the_most_specific_plugin_wins_and_unauthenticated_routes_drop_identity_headers() {
    let (up, mut seen) = ok_upstream().await;
    let yaml = format!(
        "{HEAD}plugins:\n  - name: key-auth\n\
         services:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: locked\n        paths: [/locked]\n      - name: open\n        paths: [/open]\n        plugins:\n          - name: key-auth\n            config:\n              anonymous: guest\n\
         consumers:\n  - username: guest\n  - username: ann\n    keyauth_credentials:\n      - key: k-ann\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    assert_eq!(send(gw, get("/locked")).await.status(), 401);
    let req = http::Request::get("/open")
        .header("host", "gateway.test")
        .header("x-consumer-username", "ann")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(gw, req).await.status(), 200);
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.headers["x-consumer-username"], "guest");
    assert_eq!(seen.headers["x-anonymous-consumer"], "true");
}

#[tokio::test]
async fn routes_without_authentication_never_forward_client_sent_identity_headers() {
    let (up, mut seen) = ok_upstream().await;
    // One route without any plugin (the direct path), one with a plugin but no
    // authentication (the plugin stack).
    let yaml = format!(
        "{HEAD}services:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: bare\n        paths: [/bare]\n      - name: limited\n        paths: [/limited]\n        plugins:\n          - name: rate-limiting\n            config:\n              minute: 1000\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    for path in ["/bare", "/limited"] {
        let req = http::Request::get(path)
            .header("host", "gateway.test")
            .header("x-consumer-id", "00000000-0000-0000-0000-000000000001")
            .header("x-consumer-username", "admin")
            .header("x-credential-identifier", "stolen")
            .header("x-anonymous-consumer", "false")
            .header("x-kept", "yes")
            .body(Default::default())
            .unwrap();
        assert_eq!(send(gw, req).await.status(), 200, "{path}");
        let headers = seen.recv().await.unwrap().headers;
        assert_eq!(headers["x-kept"], "yes", "{path}");
        for name in [
            "x-consumer-id",
            "x-consumer-username",
            "x-credential-identifier",
            "x-anonymous-consumer",
        ] {
            assert!(!headers.contains_key(name), "{path}: {name} forwarded");
        }
    }
}

#[tokio::test]
async fn a_key_in_the_body_authenticates_a_configured_route_and_is_hidden() {
    let (up, mut seen) = ok_upstream().await;
    let yaml = format!(
        "{HEAD}services:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/orders]\n        plugins:\n          - name: key-auth\n            config:\n              key_in_body: true\n              hide_credentials: true\n\
         consumers:\n  - username: ann\n    keyauth_credentials:\n      - key: k-ann\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    let post = |body: &'static str| {
        http::Request::post("/orders")
            .header("host", "gateway.test")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                body.as_bytes(),
            )))
            .unwrap()
    };
    let res = send(gw, post(r#"{"apikey":"k-ann","qty":2}"#)).await;
    assert_eq!(res.status(), 200);
    let upstream = seen.recv().await.unwrap();
    assert_eq!(upstream.body, r#"{"qty":2}"#);
    assert_eq!(upstream.headers["x-consumer-username"], "ann");
    assert_eq!(send(gw, post(r#"{"qty":2}"#)).await.status(), 401);
}

#[test]
fn consumer_and_plugin_errors_name_the_field() {
    let cases = [
        (
            "consumers:\n  - username: a\n    jwt_secrets:\n      - key: k\n        algorithm: RS256\n",
            "consumers[0].jwt_secrets[0].rsa_public_key",
            "needs rsa_public_key",
        ),
        (
            "consumers:\n  - username: a\n    jwt_secrets:\n      - key: k\n        algorithm: RS256\n        rsa_public_key: not-a-pem\n",
            "consumers[0].jwt_secrets[0].rsa_public_key",
            "invalid public key",
        ),
        (
            "consumers:\n  - username: a\n    jwt_secrets:\n      - key: k\n        algorithm: ES512\n",
            "consumers[0].jwt_secrets[0].algorithm",
            "ES512",
        ),
        (
            "consumers:\n  - custom_id: \"\"\n",
            "consumers[0]",
            "username or a custom_id",
        ),
        (
            "consumers:\n  - username: a\n    keyauth_credentials:\n      - key: k\n  - username: b\n    keyauth_credentials:\n      - key: k\n",
            "consumers[1].keyauth_credentials[0].key",
            "already in use",
        ),
        (
            "keyauth_credentials:\n  - key: k\n    consumer: nobody\n",
            "keyauth_credentials[0].consumer",
            "no consumer is named \"nobody\"",
        ),
        (
            "plugins:\n  - name: key-auth\n    config:\n      anonymous: ghost\n",
            "plugins[0].config.anonymous",
            "doesn't exist",
        ),
        (
            "plugins:\n  - name: jwt\n    config:\n      maximum_expiration: 60\n",
            "plugins[0].config.claims_to_verify",
            "needs exp",
        ),
        (
            "plugins:\n  - name: key-auth\n    service: nowhere\n",
            "plugins[0].service",
            "no service is named",
        ),
    ];
    for (yaml, path, message) in cases {
        let err = error(&format!("{HEAD}{yaml}"));
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    // An unknown option, with the line when `name` comes first.
    let err = error(&format!(
        "{HEAD}plugins:\n  - name: key-auth\n    config:\n      key_nmes: [k]\n"
    ));
    assert!(err.to_string().contains("key_nmes"), "{err}");
    assert_eq!(err.line(), Some(5));
    // And with `config` first (decK's order), still named.
    let err = error(&format!(
        "{HEAD}plugins:\n  - config:\n      key_nmes: [k]\n    name: key-auth\n"
    ));
    assert!(err.to_string().contains("key_nmes"), "{err}");
    assert_eq!(err.path(), Some("plugins[0].config.key_nmes"), "{err}");
    assert_eq!(err.line(), Some(4), "{err}");
}

#[test]
fn rate_limiting_errors_name_the_field() {
    let plugin =
        |config: &str| format!("{HEAD}plugins:\n  - name: rate-limiting\n    config:\n{config}");
    let mut cases = vec![
        (
            "      minute: 10\n      hour: 5\n",
            "plugins[0].config.hour",
            "cannot be lower",
        ),
        (
            "      policy: local\n",
            "plugins[0].config",
            "at least one of second",
        ),
        (
            "      minute: 10\n      policy: local\n      sync_rate: 10\n",
            "plugins[0].config.sync_rate",
            "needs policy redis",
        ),
        (
            "      minute: 10\n      policy: cluster\n",
            "plugins[0].config.policy",
            "use redis",
        ),
        (
            "      minute: 10\n      limit_by: header\n",
            "plugins[0].config.header_name",
            "needs header_name",
        ),
        (
            "      minute: 10\n      burst: 5\n",
            "plugins[0].config.burst",
            "token-bucket",
        ),
        (
            "      second: 1\n      minute: 10\n      algorithm: token-bucket\n",
            "plugins[0].config",
            "exactly one period",
        ),
    ];
    if cfg!(feature = "redis") {
        cases.extend([
            (
                "      minute: 10\n      policy: redis\n",
                "plugins[0].config.redis.host",
                "needs redis.host",
            ),
            (
                "      minute: 10\n      policy: redis\n      redis:\n        host: r\n        ssl: true\n",
                "plugins[0].config.redis.ssl",
                "TLS to Redis",
            ),
            (
                "      minute: 10\n      policy: redis\n      redis_host: r\n      sync_rate: 0.001\n",
                "plugins[0].config.sync_rate",
                "at least 0.02",
            ),
        ]);
    } else {
        cases.push((
            "      minute: 10\n      policy: redis\n      redis_host: r\n",
            "plugins[0].config.policy",
            "needs the `redis` feature",
        ));
    }
    for (config, path, message) in cases {
        let err = error(&plugin(config));
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    let err = error(&plugin("      minute: 10\n      algorithm: fastest\n"));
    assert!(err.to_string().contains("fastest"), "{err}");
    assert_eq!(err.line(), Some(6));
}

#[test]
fn the_seed_s_openresty_and_go_limits_are_expressible() {
    use tower_gateway::config::RateLimitingConfig;
    use tower_gateway::ratelimit::{LeakyBucket, Limit, Rate, TokenBucket};
    // OpenResty: limit_req rate=100r/s burst=200 (delayed, not nodelay).
    let openresty = Config::from_yaml(&format!(
        "{HEAD}plugins:\n  - name: rate-limiting\n    config:\n      second: 100\n      algorithm: leaky-bucket\n      burst: 200\n      limit_by: ip\n"
    ))
    .unwrap();
    // Go: a token bucket per user, 100 QPS, burst 200.
    let go = Config::from_yaml(&format!(
        "{HEAD}plugins:\n  - name: rate-limiting\n    config:\n      second: 100\n      algorithm: token-bucket\n      burst: 200\n      limit_by: consumer\n"
    ))
    .unwrap();
    let limits = |config: &Config| {
        config.plugins[0]
            .config
            .get::<RateLimitingConfig>()
            .cloned()
            .expect("a rate-limiting configuration")
    };
    assert_eq!(limits(&openresty).burst, Some(200));
    assert_eq!(limits(&go).burst, Some(200));
    // The same limits built by hand, for comparison with the library's own API.
    let _ = (
        Limit::LeakyBucket(LeakyBucket::new(Rate::per_second(100), 200)),
        Limit::TokenBucket(TokenBucket::new(Rate::per_second(100), 200)),
    );
}

#[tokio::test]
async fn a_token_bucket_per_header_limits_each_client_alone() {
    let (up, _seen) = ok_upstream().await;
    let yaml = format!(
        "{HEAD}services:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n        plugins:\n          - name: rate-limiting\n            config:\n              second: 1\n              algorithm: token-bucket\n              burst: 3\n              limit_by: header\n              header_name: x-user\n              error_code: 503\n              error_message: slow down\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    let as_user = |user: &str| {
        http::Request::get("/")
            .header("host", "gateway.test")
            .header("x-user", user)
            .body(Default::default())
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(send(gw, as_user("ann")).await.status(), 200);
    }
    let res = send(gw, as_user("ann")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(text(res).await, r#"{"message":"slow down"}"#);
    assert_eq!(send(gw, as_user("bob")).await.status(), 200);
}

#[tokio::test]
async fn a_consumer_s_own_rate_limit_replaces_the_route_s_for_that_consumer() {
    let (up, _seen) = ok_upstream().await;
    let yaml = format!(
        "{HEAD}plugins:\n  - name: key-auth\n  - name: rate-limiting\n    config:\n      minute: 5\n  - name: rate-limiting\n    consumer: bob\n    config:\n      minute: 1\n\
         services:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n\
         consumers:\n  - username: ann\n    keyauth_credentials:\n      - key: k-ann\n    plugins:\n      - name: rate-limiting\n        config:\n          minute: 2\n  - username: bob\n    keyauth_credentials:\n      - key: k-bob\n  - username: cy\n    keyauth_credentials:\n      - key: k-cy\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    let statuses = |key: &'static str, n: usize| async move {
        let mut out = Vec::new();
        for _ in 0..n {
            let req = http::Request::get("/")
                .header("host", "gateway.test")
                .header("apikey", key)
                .body(Default::default())
                .unwrap();
            let res = send(gw, req).await;
            out.push((
                res.status().as_u16(),
                res.headers()
                    .get("x-ratelimit-limit-minute")
                    .map(|v| v.to_str().unwrap().to_owned()),
            ));
        }
        out
    };
    let ann = statuses("k-ann", 3).await;
    assert_eq!(ann.iter().map(|s| s.0).collect::<Vec<_>>(), [200, 200, 429]);
    assert_eq!(ann[0].1.as_deref(), Some("2"));
    let bob = statuses("k-bob", 2).await;
    assert_eq!(bob.iter().map(|s| s.0).collect::<Vec<_>>(), [200, 429]);
    let cy = statuses("k-cy", 3).await;
    assert!(
        cy.iter().all(|s| s.0 == 200 && s.1.as_deref() == Some("5")),
        "{cy:?}"
    );
}

#[test]
fn authentication_and_breakers_cannot_be_scoped_to_a_consumer() {
    let err = error(&format!(
        "{HEAD}consumers:\n  - username: ann\n    plugins:\n      - name: key-auth\n"
    ));
    assert_eq!(err.path(), Some("consumers[0].plugins[0].name"), "{err}");
    let err = error(&format!(
        "{HEAD}consumers:\n  - username: ann\nplugins:\n  - name: circuit-breaker\n    consumer: ann\n"
    ));
    assert_eq!(err.path(), Some("plugins[0].consumer"), "{err}");
    assert!(
        err.to_string().contains("cannot be scoped to a consumer"),
        "{err}"
    );
    let err = error(&format!(
        "{HEAD}plugins:\n  - name: rate-limiting\n    consumer: ghost\n    config:\n      minute: 1\n"
    ));
    assert_eq!(err.path(), Some("plugins[0].consumer"), "{err}");
}

#[test]
fn circuit_breaker_errors_name_the_field() {
    let plugin =
        |config: &str| format!("{HEAD}plugins:\n  - name: circuit-breaker\n    config:\n{config}");
    let cases = [
        (
            "      failures: 0\n",
            "plugins[0].config.failures",
            "at least 1",
        ),
        (
            "      failures: 3\n      failure_rate: 0.5\n",
            "plugins[0].config.failure_rate",
            "not both",
        ),
        (
            "      failure_rate: 1.5\n",
            "plugins[0].config.failure_rate",
            "out of range",
        ),
        (
            "      open_time: -1\n",
            "plugins[0].config.open_time",
            "out of range",
        ),
        (
            "      open_time: 20\n      max_open_time: 10\n",
            "plugins[0].config.max_open_time",
            "shorter",
        ),
        (
            "      window: 10\n",
            "plugins[0].config.window",
            "failure_rate",
        ),
    ];
    for (config, path, message) in cases {
        let err = error(&plugin(config));
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    Config::from_yaml(&plugin("      failure_rate: 0.5\n      window: 20\n      min_calls: 5\n      failure_statuses: [502, 503]\n")).unwrap();
}

#[test]
fn gateway_wide_plugins_are_global_only_and_refuse_what_they_cannot_do() {
    let cases = [
        (
            "services:\n  - name: s\n    url: http://127.0.0.1:1\n    plugins:\n      - name: correlation-id\n",
            "services[0].plugins[0]",
            "top level",
        ),
        (
            "plugins:\n  - name: correlation-id\n    config:\n      generator: v7\n",
            "plugins[0].config.generator",
            "expected uuid#counter, uuid or tracker",
        ),
        (
            "plugins:\n  - name: prometheus\n    config:\n      latency_metrics: false\n",
            "plugins[0].config.latency_metrics",
            "only true",
        ),
    ];
    for (yaml, path, message) in cases {
        let err = error(&format!("{HEAD}{yaml}"));
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[test]
fn file_log_is_global_and_refuses_what_it_cannot_do() {
    for (yaml, path) in [
        (
            "plugins:\n  - name: file-log\n    config:\n      path: /tmp/x\n      reopen: true\n",
            "plugins[0].config.reopen",
        ),
        (
            "plugins:\n  - name: file-log\n    config:\n      path: /tmp/x\n      custom_fields_by_lua: {a: b}\n",
            "plugins[0].config.custom_fields_by_lua",
        ),
        (
            "services:\n  - name: s\n    url: http://127.0.0.1:1\n    plugins:\n      - name: file-log\n        config:\n          path: /tmp/x\n",
            "services[0].plugins[0]",
        ),
    ] {
        let err = error(&format!("{HEAD}{yaml}"));
        assert_eq!(err.path(), Some(path), "{err}");
    }
    let err = error(&format!(
        "{HEAD}plugins:\n  - name: file-log\n    config: {{}}\n"
    ));
    assert!(err.to_string().contains("path"), "{err}");
}

#[tokio::test]
async fn a_rebuilt_gateway_keeps_the_breaker_state_of_what_did_not_change() {
    use tower_gateway::config::LiveGateway;
    let (failing, _seen) = support::upstream(|_| async {
        let mut res = http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            b"down",
        )));
        *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        res
    })
    .await;
    let (other, _) = ok_upstream().await;
    let yaml = |extra: &str, failures: u32| {
        format!(
            "{HEAD}services:\n  - name: s\n    url: http://{failing}\n    routes:\n      - name: r\n        paths: [/s]\n    plugins:\n      - name: circuit-breaker\n        config:\n          failures: {failures}\n          open_time: 60\n{extra}"
        )
    };
    let unrelated = format!(
        "  - name: o\n    url: http://{other}\n    routes:\n      - name: o\n        paths: [/o]\n"
    );
    let settings = Settings::default();
    let first = Gateway::from_config(&Config::from_yaml(&yaml("", 2)).unwrap(), &settings).unwrap();
    let live = LiveGateway::new(first);
    let (gw, _stop) = serve(live.service()).await;
    for _ in 0..2 {
        assert_eq!(send(gw, get("/s")).await.status(), 500);
    }
    assert_eq!(
        send(gw, get("/s")).await.status(),
        503,
        "the breaker opened"
    );

    // Another service added: the breaker (and its open state) carries over.
    let next = Config::from_yaml(&yaml(&unrelated, 2)).unwrap();
    live.swap(Gateway::rebuild(&next, &settings, &live.current()).unwrap());
    assert_eq!(
        send(gw, get("/o")).await.status(),
        200,
        "the new route serves"
    );
    assert_eq!(
        send(gw, get("/s")).await.status(),
        503,
        "still open after the change"
    );

    // The breaker's own settings changed: a new breaker, closed.
    let changed = Config::from_yaml(&yaml(&unrelated, 3)).unwrap();
    live.swap(Gateway::rebuild(&changed, &settings, &live.current()).unwrap());
    assert_eq!(
        send(gw, get("/s")).await.status(),
        500,
        "a fresh breaker lets it through"
    );
}

#[cfg(not(feature = "tls"))]
#[test]
fn certificates_need_the_tls_feature() {
    let err = error(&format!(
        "{HEAD}certificates:\n  - cert: x\n    key: y\n    snis: [a.test]\n"
    ));
    assert_eq!(err.path(), Some("certificates"), "{err}");
    assert!(err.to_string().contains("`tls` feature"), "{err}");
}

#[tokio::test]
async fn the_jwt_plugin_keeps_kongs_claims_to_verify_semantics() {
    let (up, mut seen) = ok_upstream().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = |exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({ "iss": "issuer", "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap()
    };
    // Kong: without `claims_to_verify`, `exp` is not checked; with it, no leeway.
    let yaml = format!(
        "{HEAD}services:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: open\n        paths: [/open]\n        plugins:\n          - name: jwt\n      - name: strict\n        paths: [/strict]\n        plugins:\n          - name: jwt\n            config:\n              claims_to_verify: [exp]\n\
         consumers:\n  - username: ann\n    jwt_secrets:\n      - key: issuer\n        secret: secret\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, _stop) = serve(gateway.router()).await;
    let with = |path: &str, exp: i64| {
        http::Request::get(path)
            .header("host", "gateway.test")
            .header("authorization", format!("Bearer {}", token(exp)))
            .body(Default::default())
            .unwrap()
    };
    assert_eq!(send(gw, with("/open", now - 86_400)).await.status(), 200);
    seen.recv().await.unwrap();
    let res = send(gw, with("/strict", now - 10)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(text(res).await, r#"{"exp":"token expired"}"#);
    assert_eq!(send(gw, with("/strict", now + 60)).await.status(), 200);
}
