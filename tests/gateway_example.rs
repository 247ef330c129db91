#![cfg(feature = "config")]
//! The bundled gateway program (`examples/gateway.rs`) as a user runs it.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// The gateway example binary.
fn gateway_bin() -> PathBuf {
    example_bin("gateway")
}

/// An example binary that `cargo test` builds next to the test binaries.
fn example_bin(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the whole suite (`cargo test --all-features`), which builds the examples",
        bin.display()
    );
    bin
}

/// Starts the gateway and waits for its "proxy listening" and "admin API listening" lines.
fn start(args: &[&str]) -> (Child, SocketAddr, SocketAddr) {
    let (child, proxy, admin, _logs) = start_with_logs(args);
    (child, proxy, admin)
}

/// As [`start`], also handing over the rest of its log lines.
fn start_with_logs(args: &[&str]) -> (Child, SocketAddr, SocketAddr, Logs) {
    start_example("gateway", args)
}

type Logs = std::sync::mpsc::Receiver<String>;

/// Starts example `name` as [`start_with_logs`] does.
fn start_example(name: &str, args: &[&str]) -> (Child, SocketAddr, SocketAddr, Logs) {
    let mut child = Command::new(example_bin(name))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let (mut proxy, mut admin) = (None, None);
    while proxy.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("the gateway exited before listening")
            .unwrap();
        // The address after `http://`, in plain or JSON log lines.
        let addr = |l: &str| {
            let rest = l.rsplit("http://").next().unwrap_or("");
            let end = rest
                .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
                .unwrap_or(rest.len());
            rest[..end].parse::<SocketAddr>().ok()
        };
        if line.contains("proxy listening on http://") {
            proxy = addr(&line);
        } else if line.contains("admin API listening on") {
            admin = addr(&line);
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, proxy.unwrap(), admin.unwrap(), rx)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the gateway did not stop within 5 s of SIGTERM");
}

/// Stops the gateway with SIGTERM and asserts that it exited cleanly.
fn stop(child: &mut Child) {
    let status = terminate(child);
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_config_serves_the_demo_users_and_stops_cleanly_on_sigterm() {
    let (mut child, proxy, admin, logs) = start_with_logs(&[
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);

    let res = send(proxy, get("/api/users")).await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(text(res).await.contains("\"Ada\""));
    // One access-log line, in nginx's combined format, with the route and the request id.
    let access = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(5)).ok())
        .find(|line| line.contains("\"GET /api/users HTTP/1.1\" 200"))
        .expect("no access-log line for the request");
    assert!(access.ends_with(&format!(" users-api {id}")), "{access}");
    let res = send(proxy, get("/api/users/2")).await;
    assert!(text(res).await.contains("\"Grace\""));
    let res = send(proxy, get("/nowhere")).await;
    assert_eq!(res.status(), 404);

    let res = send(admin, get("/")).await;
    assert!(text(res).await.contains("Welcome to tower-gateway"));
    let res = send(admin, get("/status")).await;
    assert_eq!(res.status(), 200);
    let status: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(status["database"]["reachable"], true);
    assert_eq!(status["server"]["total_requests"], 3, "{status}");
    assert!(
        status["server"]["connections_handled"].as_u64() >= Some(1),
        "{status}"
    );

    // Prometheus metrics of the traffic above, parsed line by line.
    let res = send(admin, get("/metrics")).await;
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let exposition = text(res).await;
    let sample = |name: &str| -> Option<f64> {
        exposition
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    };
    let requests = |route: &str, code: u16, source: &str| {
        sample(&format!(
            r#"kong_http_requests_total{{service="{}",route="{route}",code="{code}",source="{source}",consumer=""}}"#,
            if route.is_empty() { "" } else { "users" },
        ))
    };
    assert_eq!(requests("users-api", 200, "service"), Some(1.0));
    assert_eq!(requests("user-by-id", 200, "service"), Some(1.0));
    // The 404 came from the gateway's router, not an upstream.
    assert_eq!(requests("", 404, "kong"), Some(1.0));
    assert_eq!(
        sample(r#"tower_gateway_rejections_total{service="",route="",by="router"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(r#"kong_request_latency_ms_count{service="users",route="users-api"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(r#"kong_upstream_latency_ms_count{service="users",route="users-api"}"#),
        Some(1.0)
    );
    assert!(
        sample(
            r#"kong_bandwidth_bytes_total{service="users",route="users-api",direction="egress",consumer=""}"#
        ) > Some(50.0)
    );
    // Three client connections so far, the others closed or idle.
    assert!(sample(r#"kong_nginx_connections_total{state="accepted"}"#) >= Some(3.0));
    assert!(sample(r#"kong_nginx_connections_total{state="active"}"#).is_some());
    assert_eq!(sample("kong_nginx_requests_total"), Some(3.0));

    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_proxies_to_a_real_upstream() {
    let (up, mut seen) = ok_upstream().await;
    let (dir, file) = config_file(
        "proxies",
        &format!(
            "_format_version: \"3.0\"\nservices:\n  - name: up\n    url: http://{up}/base\n    routes:\n      - name: r\n        paths: [/api]\n"
        ),
    );
    let (mut child, proxy, _admin) = start(&[
        "--config",
        file.to_str().unwrap(),
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let res = send(proxy, get("/api/things?x=1")).await;
    assert_eq!(text(res).await, "ok");
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.uri, "/base/things?x=1");
    assert_eq!(seen.headers["x-forwarded-prefix"], "/api");
    assert!(seen.headers["x-request-id"].to_str().unwrap().contains('#'));
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_invalid_config_is_refused_with_exit_code_2_and_the_field_path() {
    let dir = std::env::temp_dir().join(format!("tower-gateway-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://127.0.0.1:1\n    routes:\n      - paths: [/ok]\n      - paths: [nope]\n",
    )
    .unwrap();
    let out = Command::new(gateway_bin())
        .args([
            "--config",
            file.to_str().unwrap(),
            "--proxy-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services[0].routes[1].paths[0]"),
        "{stderr}"
    );
    assert!(stderr.contains("line 7"), "{stderr}");
    assert!(
        !stderr.contains("listening"),
        "something listened: {stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(gateway_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--config",
        "--proxy-listen",
        "--admin-listen",
        "--trusted-ips",
        "--grace-period",
    ] {
        assert!(help.contains(option), "{option} undocumented");
    }
    let out = Command::new(gateway_bin()).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// An upstream on `listener` answering its name (and `/health`), until `stop` fires.
fn named_server(
    listener: tokio::net::TcpListener,
    name: &'static str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tower::service_fn(
        move |_req: http::Request<hyper::body::Incoming>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(name.as_bytes()),
            )))
        },
    );
    let task = tokio::spawn(async move {
        let _ = tower_gateway::server::Server::from_listener(listener)
            .grace_period(Duration::from_millis(100))
            .serve_with_shutdown(service, async {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, task)
}

async fn named_upstream(
    name: &'static str,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, task) = named_server(listener, name);
    (addr, stop, task)
}

/// A gateway started on a file: the child, proxy and admin addresses, the file's folder, the
/// log lines.
type Started = (
    Child,
    SocketAddr,
    SocketAddr,
    PathBuf,
    std::sync::mpsc::Receiver<String>,
);

/// Writes `yaml` to a fresh file and starts the gateway on it; also hands over its log lines.
fn start_config(tag: &str, yaml: &str) -> Started {
    start_config_with(tag, yaml, &["--access-log", "off"])
}

/// As [`start_config`], with other options.
fn start_config_with(tag: &str, yaml: &str, options: &[&str]) -> Started {
    start_config_of("gateway", tag, yaml, options)
}

/// As [`start_config_with`], running example `example`.
fn start_config_of(example: &str, tag: &str, yaml: &str, options: &[&str]) -> Started {
    let (dir, file) = config_file(tag, yaml);
    let mut args = vec![
        "--config",
        file.to_str().unwrap(),
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(options);
    let (child, proxy, admin, logs) = start_example(example, &args);
    (child, proxy, admin, dir, logs)
}

async fn served(proxy: SocketAddr, path: &str, header: Option<(&str, String)>) -> String {
    let mut req = http::Request::get(path).header("host", "gateway.test");
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let res = send(proxy, req.body(Default::default()).unwrap()).await;
    assert_eq!(res.status(), 200, "{path}");
    text(res).await
}

fn count(served: &[String], name: &str) -> usize {
    served.iter().filter(|s| *s == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kong_algorithm_balances_over_three_real_upstreams() {
    let (a, _sa, _ta) = named_upstream("a").await;
    let (b, _sb, _tb) = named_upstream("b").await;
    let (c, _sc, _tc) = named_upstream("c").await;
    let targets = format!(
        "    targets:\n      - target: {a}\n        weight: 200\n      - target: {b}\n      - target: {c}\n"
    );
    let mut yaml = String::from("_format_version: \"3.0\"\nupstreams:\n");
    for (name, extra) in [
        ("rr", ""),
        ("lc", "    algorithm: least-connections\n"),
        (
            "hash",
            "    algorithm: consistent-hashing\n    hash_on: header\n    hash_on_header: x-user\n",
        ),
        ("latency", "    algorithm: latency\n"),
    ] {
        yaml.push_str(&format!("  - name: {name}\n{extra}{targets}"));
    }
    yaml.push_str("services:\n");
    for name in ["rr", "lc", "hash", "latency"] {
        yaml.push_str(&format!(
            "  - name: {name}\n    host: {name}\n    routes:\n      - paths: [/{name}]\n"
        ));
    }
    let (mut child, proxy, _admin, dir, _logs) = start_config("algorithms", &yaml);

    // round-robin: nginx's smooth sequence for weights 200, 100, 100.
    let mut rr = Vec::new();
    for _ in 0..8 {
        rr.push(served(proxy, "/rr", None).await);
    }
    assert_eq!(rr, ["a", "b", "c", "a", "a", "b", "c", "a"]);

    // least-connections, sequential requests: the heavier target while all are idle.
    let mut lc = Vec::new();
    for _ in 0..6 {
        lc.push(served(proxy, "/lc", None).await);
    }
    assert_eq!(count(&lc, "a"), 6, "{lc:?}");

    // consistent-hashing on a header: each user sticks to one target, users spread.
    let mut owners = std::collections::HashMap::new();
    for round in 0..2 {
        for user in 0..24 {
            let got = served(proxy, "/hash", Some(("x-user", format!("u{user}")))).await;
            let owner = owners.entry(user).or_insert_with(|| got.clone());
            assert_eq!(*owner, got, "user {user} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert_eq!(distinct.len(), 3, "{owners:?}");

    // latency: every request served, by more than one target.
    let mut latency = Vec::new();
    for _ in 0..30 {
        latency.push(served(proxy, "/latency", None).await);
    }
    let distinct: std::collections::HashSet<_> = latency.iter().collect();
    assert!(distinct.len() >= 2, "{latency:?}");

    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

async fn health_of(admin: SocketAddr, upstream: &str) -> Vec<(String, String)> {
    let res = send(admin, get(&format!("/upstreams/{upstream}/health"))).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_owned(),
                t["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn wait_health(
    admin: SocketAddr,
    target: SocketAddr,
    expected: &str,
    logs: &std::sync::mpsc::Receiver<String>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = health_of(admin, "pool").await;
        let state = health
            .iter()
            .find(|(t, _)| *t == target.to_string())
            .map(|(_, h)| h.clone());
        if state.as_deref() == Some(expected) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = logs.try_iter().collect();
            panic!(
                "{target} still {state:?}: {health:?}; gateway logs:\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_is_ejected_without_failing_clients_and_returns() {
    let (a, _sa, _ta) = named_upstream("a").await;
    let (b, _sb, _tb) = named_upstream("b").await;
    let (c, stop_c, task_c) = named_upstream("c").await;
    let yaml = format!(
        "_format_version: \"3.0\"
upstreams:
  - name: pool
    healthchecks:
      passive:
        unhealthy:
          tcp_failures: 1
      active:
        http_path: /health
        timeout: 1
        healthy:
          interval: 0.1
          successes: 1
        unhealthy:
          interval: 0.1
          tcp_failures: 1
    targets:
      - target: {a}
      - target: {b}
      - target: {c}
services:
  - name: s
    host: pool
    routes:
      - paths: [/]
"
    );
    let (mut child, proxy, admin, dir, logs) = start_config("eject", &yaml);
    let mut before = Vec::new();
    for _ in 0..9 {
        before.push(served(proxy, "/", None).await);
    }
    assert_eq!(count(&before, "c"), 3, "{before:?}");

    // c dies: no client request fails, and c is marked unhealthy.
    stop_c.send(()).unwrap();
    task_c.await.unwrap();
    let mut during = Vec::new();
    for _ in 0..30 {
        during.push(served(proxy, "/", None).await);
    }
    assert_eq!(count(&during, "c"), 0);
    wait_health(admin, c, "UNHEALTHY", &logs).await;
    let metrics = text(send(admin, get("/metrics")).await).await;
    let line = format!(
        "kong_upstream_target_health{{upstream=\"pool\",target=\"{c}\",state=\"unhealthy\"}} 1"
    );
    assert!(metrics.contains(&line), "{metrics}");

    // c comes back on the same address: active checks bring it back into rotation.
    let listener = tokio::net::TcpListener::bind(c).await.unwrap();
    let (_stop_c, _task_c) = named_server(listener, "c");
    wait_health(admin, c, "HEALTHY", &logs).await;
    let mut after = Vec::new();
    for _ in 0..9 {
        after.push(served(proxy, "/", None).await);
    }
    assert!(count(&after, "c") >= 2, "{after:?}");

    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "jwt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_s_consumers_authenticate_through_the_gateway() {
    use base64::Engine;
    let (users, mut seen_users) = ok_upstream().await;
    let (orders, mut seen_orders) = ok_upstream().await;
    let yaml = seed_config(users, orders);
    let (mut child, proxy, _admin, dir, _logs) = start_config("seed-auth", &yaml);
    let with = |path: &str, name: &str, value: &str| {
        http::Request::get(path)
            .header("host", "gateway.test")
            .header(name, value)
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap()
    };

    // key-auth: 401 without, 200 with, identity upstream, spoofing replaced.
    assert_eq!(send(proxy, get("/api/users")).await.status(), 401);
    let mut req = with("/api/users", "apikey", "test-api-key");
    req.headers_mut()
        .insert("x-consumer-username", "admin".parse().unwrap());
    assert_eq!(send(proxy, req).await.status(), 200);
    let seen = seen_users.recv().await.unwrap();
    assert_eq!(seen.headers["x-consumer-username"], "test-user");
    assert!(seen.headers.contains_key("x-consumer-id"));

    // jwt: a token whose iss is the credential key.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "iss": "myapikey", "user_id": "7", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(b"mysecret"),
    )
    .unwrap();
    assert_eq!(send(proxy, get("/api/orders")).await.status(), 401);
    let res = send(
        proxy,
        with("/api/orders", "authorization", &format!("Bearer {token}")),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        seen_orders.recv().await.unwrap().headers["x-consumer-username"],
        "test-user"
    );

    // Attacks never reach the upstream.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(r#"{"iss":"myapikey"}"#)
    );
    let wrong = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "iss": "myapikey" }),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    for attack in [none, wrong, "garbage".to_owned()] {
        let res = send(
            proxy,
            with("/api/orders", "authorization", &format!("Bearer {attack}")),
        )
        .await;
        assert_eq!(res.status(), 401, "{attack}");
    }
    assert!(seen_orders.try_recv().is_err());

    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kong_rate_limit_of_100_a_minute_admits_exactly_100_of_110() {
    let (up, mut seen) = ok_upstream().await;
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: users
    url: http://{up}
    routes:
      - name: users
        paths: [/api/users]
    plugins:
      - name: rate-limiting
        config:
          minute: 100
          policy: local
"
    );
    let (mut child, proxy, admin, dir, _logs) = start_config("ratelimit", &yaml);
    // The window is the calendar minute: start well inside one, so all 110 fall in it.
    support::kong::wait_for_a_fresh_minute().await;
    let mut ok = 0;
    let mut limited = Vec::new();
    for i in 0..110 {
        let res = send(proxy, get("/api/users")).await;
        match res.status().as_u16() {
            200 => {
                ok += 1;
                assert_eq!(res.headers()["x-ratelimit-limit-minute"], "100");
                assert_eq!(
                    res.headers()["x-ratelimit-remaining-minute"],
                    (99 - i).to_string().as_str()
                );
            }
            429 => limited.push(res),
            other => panic!("status {other}"),
        }
    }
    assert_eq!(ok, 100);
    assert_eq!(limited.len(), 10);
    for res in limited {
        let retry_after: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(res.headers()["x-ratelimit-remaining-minute"], "0");
        assert_eq!(text(res).await, r#"{"message":"API rate limit exceeded"}"#);
    }
    let mut reached = 0;
    while seen.try_recv().is_ok() {
        reached += 1;
    }
    assert_eq!(reached, 100, "a rejected request reached the upstream");
    let metrics = text(send(admin, get("/metrics")).await).await;
    let sample =
        r#"tower_gateway_rejections_total{service="users",route="users",by="rate-limiting"} 10"#;
    assert!(metrics.contains(sample), "{metrics}");
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_trips_the_breaker_and_one_probe_restores_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let failing = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let (f, h) = (failing.clone(), hits.clone());
    let (up, _seen) = upstream(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        let fail = f.load(Ordering::SeqCst);
        async move {
            let mut res =
                http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"up")));
            if fail {
                *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            }
            res
        }
    })
    .await;
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: orders
    url: http://{up}
    routes:
      - name: orders
        paths: [/api/orders]
    plugins:
      - name: circuit-breaker
        config:
          failures: 3
          open_time: 0.5
"
    );
    let (mut child, proxy, admin, dir, _logs) = start_config("breaker", &yaml);
    let status = |res: http::Response<hyper::body::Incoming>| res.status().as_u16();
    for _ in 0..3 {
        assert_eq!(status(send(proxy, get("/api/orders")).await), 500);
    }
    // Open: fast 503s with Retry-After, the upstream is not called.
    for _ in 0..5 {
        let res = send(proxy, get("/api/orders")).await;
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let metrics = text(send(admin, get("/metrics")).await).await;
    assert!(
        metrics.contains("tower_gateway_circuit_state{breaker=\"orders\"} 1"),
        "{metrics}"
    );
    let refused =
        r#"tower_gateway_rejections_total{service="orders",route="orders",by="circuit-breaker"} 5"#;
    assert!(metrics.contains(refused), "{metrics}");

    // The upstream recovers; after the open time one probe closes the breaker.
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status(send(proxy, get("/api/orders")).await), 200);
    for _ in 0..3 {
        assert_eq!(status(send(proxy, get("/api/orders")).await), 200);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 7);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_correlation_id_and_prometheus_plugins_configure_the_gateway() {
    let (up, mut seen) = ok_upstream().await;
    let (dir, file) = config_file(
        "plugins",
        &format!(
            "_format_version: \"3.0\"
plugins:
  - name: correlation-id
    config:
      header_name: X-Correlation-ID
      echo_downstream: true
      generator: tracker
  - name: prometheus
    config:
      per_consumer: true
services:
  - name: s
    url: http://{up}
    routes:
      - name: r
        paths: [/]
      - name: locked
        paths: [/locked]
        plugins:
          - name: key-auth
consumers:
  - username: ann
    keyauth_credentials:
      - key: k-ann
"
        ),
    );
    // The flags say off; the file's plugins turn both on, as in Kong.
    let (mut child, proxy, admin) = start(&[
        "--config",
        file.to_str().unwrap(),
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--request-id",
        "off",
        "--metrics",
        "off",
    ]);
    let res = send(proxy, get("/x")).await;
    assert_eq!(res.status(), 200);
    let echoed = res.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Kong's tracker: server address, port, pid, connection, request on it, time.
    let port = proxy.port().to_string();
    assert!(
        echoed.starts_with(&format!("127.0.0.1-{port}-{}-", child.id())),
        "{echoed}"
    );
    assert_eq!(
        seen.recv().await.unwrap().headers["x-correlation-id"],
        echoed.as_str()
    );
    // One refused and one admitted request on the key-auth route, counted per consumer.
    assert_eq!(send(proxy, get("/locked")).await.status(), 401);
    let mut req = get("/locked");
    req.headers_mut().insert("apikey", "k-ann".parse().unwrap());
    assert_eq!(send(proxy, req).await.status(), 200);
    let metrics = send(admin, get("/metrics")).await;
    assert_eq!(metrics.status(), 200);
    let exposition = text(metrics).await;
    for sample in [
        r#"kong_http_requests_total{service="s",route="locked",code="200",source="service",consumer="ann"} 1"#,
        r#"kong_http_requests_total{service="s",route="locked",code="401",source="kong",consumer=""} 1"#,
        r#"tower_gateway_rejections_total{service="s",route="locked",by="auth"} 1"#,
    ] {
        assert!(
            exposition.contains(sample),
            "{sample} missing from\n{exposition}"
        );
    }
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_log_plugin_writes_one_json_line_per_request() {
    let (up, _seen) = ok_upstream().await;
    let dir = std::env::temp_dir().join(format!(
        "tower-gateway-test-{}-file-log",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let file = dir.join("kong.yaml");
    std::fs::write(
        &file,
        format!(
            "_format_version: \"3.0\"
plugins:
  - name: file-log
    config:
      path: {}
services:
  - name: s
    url: http://{up}
    routes:
      - name: r
        paths: [/]
",
            log.display()
        ),
    )
    .unwrap();
    let (mut child, proxy, _admin) = start(&[
        "--config",
        file.to_str().unwrap(),
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--access-log",
        "off",
    ]);
    for path in ["/a", "/b"] {
        let res = send(proxy, get(path)).await;
        assert_eq!(text(res).await, "ok");
    }
    stop(&mut child);
    let written = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{written}");
    assert_eq!(lines[0]["fields"]["path"], "/a");
    assert_eq!(lines[1]["fields"]["status"], 200);
    assert_eq!(lines[1]["fields"]["route"], "r");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_s_kong_admin_commands_configure_the_example_gateway() {
    let (mut child, proxy, admin, dir, _logs) =
        start_config("walkthrough", "_format_version: \"3.0\"\n");
    support::kong::walkthrough(admin, proxy).await;
    // The node information counts the route the walkthrough created.
    let (status, node) = support::kong::call(admin, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert_eq!(node["configuration"]["routes"], 1);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

/// Polls `path` on the proxy until it answers `status` (for at most 5 s).
async fn until_status(proxy: SocketAddr, path: &str, status: u16) {
    for _ in 0..100 {
        if send(proxy, get(path)).await.status() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_reloaded_when_it_changes_and_on_sighup_and_a_bad_one_is_refused() {
    let (up, _seen) = ok_upstream().await;
    let config = |path: &str| {
        format!(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: r\n        paths: [{path}]\n"
        )
    };
    let (mut child, proxy, _admin, dir, logs) = start_config("reload", &config("/one"));
    let file = dir.join("kong.yaml");
    assert_eq!(send(proxy, get("/one")).await.status(), 200);

    // Edited: picked up within a couple of seconds.
    std::fs::write(&file, config("/two")).unwrap();
    until_status(proxy, "/two", 200).await;
    assert_eq!(send(proxy, get("/one")).await.status(), 404);

    // Broken: the running configuration stays, and the log says why.
    std::fs::write(&file, "_format_version: \"3.0\"\nservices:\n  - nme: s\n").unwrap();
    let refused = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(5)).ok())
        .find(|line| line.contains("the running configuration stays"))
        .expect("no log line for the refused file");
    assert!(refused.contains("nme"), "{refused}");
    assert_eq!(send(proxy, get("/two")).await.status(), 200);

    // SIGHUP reads it again: written with its old modification time put back, so that only
    // the signal can have reloaded it.
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, config("/three")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(before)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        send(proxy, get("/three")).await.status(),
        404,
        "reloaded without SIGHUP"
    );
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status();
    until_status(proxy, "/three", 200).await;
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_only_plugins_are_refused_through_the_admin_api_and_the_token_is_enforced() {
    let (mut child, _proxy, admin, dir, _logs) = start_config_with(
        "admin-token",
        "_format_version: \"3.0\"\n",
        &["--admin-token", "t0k3n"],
    );
    assert_eq!(send(admin, get("/services")).await.status(), 401);
    let req = http::Request::post("/plugins")
        .header("host", "admin.test")
        .header("kong-admin-token", "t0k3n")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"name=correlation-id",
        )))
        .unwrap();
    let res = send(admin, req).await;
    assert_eq!(res.status(), 400);
    assert!(text(res).await.contains("restart the gateway"));
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_enforce_one_exact_limit() {
    let Some(redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: users
    url: http://{up}
    routes:
      - name: users
        paths: [/api/users]
    plugins:
      - name: rate-limiting
        config:
          minute: 100
          policy: redis
          redis:
            host: 127.0.0.1
            port: {}
",
        redis.port
    );
    let (mut a, proxy_a, _, dir_a, _logs_a) = start_config("redis-a", &yaml);
    let (mut b, proxy_b, _, dir_b, _logs_b) = start_config("redis-b", &yaml);
    support::kong::wait_for_a_fresh_minute().await;
    let tasks: Vec<_> = (0..150)
        .map(|i| {
            let proxy = if i % 2 == 0 { proxy_a } else { proxy_b };
            tokio::spawn(async move { send(proxy, get("/api/users")).await.status().as_u16() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(admitted, 100, "one limit across both gateways");
    stop(&mut a);
    stop(&mut b);
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_on_one_gateway_reaches_the_other_through_redis() {
    let Some(redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let url = redis.url();
    let options = ["--cluster", url.as_str(), "--access-log", "off"];
    let empty = "_format_version: \"3.0\"\n";
    let (mut a, proxy_a, admin_a, dir_a, _logs_a) = start_config_with("cluster-a", empty, &options);
    let (mut b, proxy_b, admin_b, dir_b, _logs_b) = start_config_with("cluster-b", empty, &options);

    // A service and a route created on A...
    let (status, _) = support::kong::call(
        admin_a,
        "POST",
        "/services",
        &format!("name=user-service&url=http://{up}"),
    )
    .await;
    assert_eq!(status, 201);
    let started = std::time::Instant::now();
    let (status, _) = support::kong::call(
        admin_a,
        "POST",
        "/services/user-service/routes",
        "paths[]=/api/users",
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(send(proxy_a, get("/api/users")).await.status(), 200);
    // ...are served by B within a second.
    until_status(proxy_b, "/api/users", 200).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (_, services) = support::kong::call(admin_b, "GET", "/services", "").await;
    assert_eq!(services["data"][0]["name"], "user-service");

    // A change on B comes back to A; a conflicting name is refused on either.
    let (status, _) = support::kong::call(admin_b, "DELETE", "/services/user-service", "").await;
    assert_eq!(status, 400, "its route still uses it");
    let (status, _) = support::kong::call(
        admin_a,
        "POST",
        "/services",
        &format!("name=user-service&url=http://{up}"),
    )
    .await;
    assert_eq!(status, 409);

    // OpenResty's pattern: a route:<path> key naming a service takes effect live.
    let set = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "SET",
            "route:/legacy",
            "user-service",
        ])
        .output()
        .unwrap();
    assert!(set.status.success());
    until_status(proxy_a, "/legacy", 200).await;
    until_status(proxy_b, "/legacy", 200).await;
    let del = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "DEL", "route:/legacy"])
        .output()
        .unwrap();
    assert!(del.status.success());
    until_status(proxy_b, "/legacy", 404).await;

    // Redis goes away: both keep serving; a change is refused (503) rather than made on one
    // instance only.
    let mut redis = redis;
    redis.stop();
    assert_eq!(send(proxy_a, get("/api/users")).await.status(), 200);
    assert_eq!(send(proxy_b, get("/api/users")).await.status(), 200);
    let (status, body) =
        support::kong::call(admin_a, "POST", "/consumers", "username=while-down").await;
    assert_eq!(status, 503, "{body}");
    // Back, empty: the instances put their configuration back, and changes flow again.
    redis.restart();
    let mut created = false;
    for _ in 0..100 {
        let (status, _) =
            support::kong::call(admin_a, "POST", "/consumers", "username=after-restart").await;
        if status == 201 {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "no change accepted after Redis came back");
    let mut seen_on_b = false;
    for _ in 0..100 {
        let (_, consumers) = support::kong::call(admin_b, "GET", "/consumers", "").await;
        if consumers["data"][0]["username"] == "after-restart" {
            seen_on_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_on_b, "the change did not reach the other instance");
    assert_eq!(send(proxy_b, get("/api/users")).await.status(), 200);

    stop(&mut a);
    stop(&mut b);
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_program_terminates_tls_with_the_given_certificate() {
    let (up, _seen) = ok_upstream().await;
    let generated = rcgen::generate_simple_self_signed(vec!["gateway.test".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tower-gateway-test-{}-tls", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    // A second name, with its own pair.
    let other = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()]).unwrap();
    let (other_cert, other_key) = (dir.join("other.pem"), dir.join("other-key.pem"));
    std::fs::write(&other_cert, other.cert.pem()).unwrap();
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n"
    );
    let (mut child, _proxy, _admin, dir2, logs) = start_config_with(
        "tls",
        &yaml,
        &[
            "--proxy-listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-cert",
            other_cert.to_str().unwrap(),
            "--tls-key",
            other_key.to_str().unwrap(),
        ],
    );
    let addr = tls_listener_of(&logs);
    let connect = |root, name| tls_connect(addr, root, name);
    // Each name gets its own certificate (the handshake verifies it).
    connect(other.cert.der().clone(), "other.test")
        .await
        .expect("other.test's certificate");
    let stream = connect(generated.cert.der().clone(), "gateway.test")
        .await
        .expect("gateway.test's certificate");
    let mut h2 = support::h2_client(stream).await;
    let req = http::Request::get("https://gateway.test/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_grpc_pass_the_example_gateway_with_auth_limits_and_logs() {
    use futures_util::{SinkExt, StreamExt};
    use support::protocols::{channel_body, echo_upstream, grpc_request, grpc_upstream};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (ws_up, grpc_up) = (echo_upstream().await, grpc_upstream().await);
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: chat
    url: http://{ws_up}
    routes:
      - name: chat
        paths: [/chat]
  - name: echo
    url: grpc://{grpc_up}
    routes:
      - name: echo
        paths: [/echo.Echo]
        strip_path: false
plugins:
  - name: key-auth
  - name: rate-limiting
    config:
      minute: 1000
consumers:
  - username: ann
    keyauth_credentials:
      - key: k-ann
"
    );
    let (mut child, proxy, _admin, dir, logs) =
        start_config_with("protocols", &yaml, &["--access-log", "json"]);

    // WebSocket, authenticated, counted.
    let mut request = format!("ws://{proxy}/chat").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("apikey", "k-ann".parse().unwrap());
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.headers()["x-ratelimit-limit-minute"], "1000");
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("HI"));
    // The closing handshake, then the connection closed (an open tunnel would hold the
    // gateway's shutdown for its grace period).
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);

    // gRPC over h2c, authenticated; and refused in gRPC's terms without the key.
    let mut client = support::h2_client(tokio::net::TcpStream::connect(proxy).await.unwrap()).await;
    let (tx, body) = channel_body();
    let mut req = grpc_request("/echo.Echo/Stream", body);
    req.headers_mut().insert("apikey", "k-ann".parse().unwrap());
    let res = tokio::time::timeout(Duration::from_secs(5), client.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    tx.send(http_body::Frame::data(bytes::Bytes::from("ping")))
        .unwrap();
    let mut replies = res.into_body();
    let frame = tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::BodyExt::frame(&mut replies),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(frame.into_data().unwrap(), "ping");
    drop(tx);
    let (_tx, body) = channel_body();
    let res = client
        .send_request(grpc_request("/echo.Echo/Stream", body))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "16");

    // Both logged, with their route and consumer.
    let lines: Vec<String> = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(3)).ok())
        .filter(|line| line.contains("request finished"))
        .take(3)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"route\":\"chat\"") && l.contains("\"status\":101")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"route\":\"echo\"") && l.contains("\"consumer\":\"ann\"")),
        "{lines:?}"
    );
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_upstreams_and_server_sent_events_pass_the_example_gateway() {
    use support::protocols::{channel_body, grpc_request, grpcs_upstream};
    let grpcs = grpcs_upstream().await;
    // An upstream of server-sent events, one every 200 ms.
    let sse = support::protocols::sse_upstream(3).await;
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: echo
    url: grpcs://{grpcs}
    tls_verify: false
    routes:
      - paths: [/echo.Echo]
        strip_path: false
  - name: events
    url: http://{sse}
    routes:
      - paths: [/events]
"
    );
    let (mut child, proxy, _admin, dir, _logs) = start_config("grpcs", &yaml);

    // gRPC over TLS upstream (ALPN h2), streaming both ways.
    let mut client = support::h2_client(tokio::net::TcpStream::connect(proxy).await.unwrap()).await;
    let (tx, body) = channel_body();
    let res = client
        .send_request(grpc_request("/echo.Echo/Stream", body))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut replies = res.into_body();
    for message in ["one", "two"] {
        tx.send(http_body::Frame::data(bytes::Bytes::from(message)))
            .unwrap();
        let frame = http_body_util::BodyExt::frame(&mut replies)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), message);
    }
    drop(tx);

    // Server-sent events, each within 100 ms of being sent.
    let res = send(proxy, get("/events")).await;
    let mut body = res.into_body();
    let started = tokio::time::Instant::now();
    let mut received = 0u64;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.unwrap().into_data() {
            let late = started
                .elapsed()
                .saturating_sub(Duration::from_millis(200 * received));
            assert!(
                late < Duration::from_millis(100),
                "event {received}: {late:?} late ({data:?})"
            );
            received += 1;
        }
    }
    assert_eq!(received, 3);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_plugin_example_counts_each_client_in_redis_across_gateways() {
    let Some(redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let port = redis.port;
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: users
    url: http://{up}
    routes:
      - name: users
        paths: [/api/users]
      - name: orders
        paths: [/api/orders]
plugins:
  - name: custom-rate-limiting
    config: {{ limit: 3, window_size: 60, redis_port: {port} }}
"
    );
    let (mut a, proxy_a, admin_a, dir_a, _logs_a) =
        start_config_of("custom_plugin", "custom-a", &yaml, &[]);
    let (mut b, proxy_b, admin_b, dir_b, _logs_b) =
        start_config_of("custom_plugin", "custom-b", &yaml, &[]);

    // One count per client address, kept in Redis under the seed's key: both gateways see it.
    let mut seen = Vec::new();
    for proxy in [proxy_a, proxy_b, proxy_a] {
        let res = send(proxy, get("/api/users")).await;
        let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
        seen.push((
            res.status().as_u16(),
            header("x-ratelimit-limit"),
            header("x-ratelimit-remaining"),
        ));
    }
    let expected: Vec<(u16, String, String)> = [(200, "2"), (200, "1"), (200, "0")]
        .into_iter()
        .map(|(s, r)| (s, "3".to_owned(), r.to_owned()))
        .collect();
    assert_eq!(seen, expected);
    // Past the limit: the seed's body, and no rate-limit headers (its handler exits first).
    let res = send(proxy_b, get("/api/users")).await;
    assert_eq!(res.status(), 429);
    assert!(!res.headers().contains_key("x-ratelimit-remaining"));
    assert_eq!(
        text(res).await,
        r#"{"limit":3,"message":"API rate limit exceeded","window":60}"#
    );
    let key = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "--scan",
            "--pattern",
            "rate_limit:*",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&key.stdout).trim(),
        "rate_limit:127.0.0.1"
    );
    // The refusal (on the second gateway) is counted as the plugin's own answer.
    let metrics = text(send(admin_b, get("/metrics")).await).await;
    assert!(
        metrics.lines().any(|l| l
            == r#"tower_gateway_rejections_total{service="users",route="users",by="custom-rate-limiting"} 1"#),
        "{metrics}"
    );

    // Configured through the Admin API like a built-in plugin: a route's own instance, with
    // the schema's defaults filled in, the same per-client count (as the Lua original).
    let (status, body) = support::kong::call(
        admin_a,
        "POST",
        "/routes/orders/plugins",
        &format!("name=custom-rate-limiting&config.limit=10&config.redis_port={port}"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["config"],
        serde_json::json!({ "limit": 10, "window_size": 60, "redis_host": "localhost", "redis_port": port })
    );
    let res = send(proxy_a, get("/api/orders")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "5");
    let (status, body) = support::kong::call(
        admin_a,
        "POST",
        "/routes/users/plugins",
        "name=custom-rate-limiting&config.window_size=0",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["fields"]["config"]["window_size"].is_string(),
        "{body}"
    );

    stop(&mut a);
    stop(&mut b);
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_program_presents_the_configuration_s_certificates() {
    let (up, _seen) = ok_upstream().await;
    let from_file = rcgen::generate_simple_self_signed(vec!["file.test".to_owned()]).unwrap();
    let indent = |pem: String| -> String { pem.lines().map(|l| format!("      {l}\n")).collect() };
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\ncertificates:\n  - snis: [file.test]\n    cert: |\n{}    key: |\n{}",
        indent(from_file.cert.pem()),
        indent(from_file.signing_key.serialize_pem()),
    );
    // No --tls-cert: the configuration's certificates only.
    let (mut child, _proxy, admin, dir, logs) =
        start_config_with("tls-config", &yaml, &["--proxy-listen-tls", "127.0.0.1:0"]);
    let addr = tls_listener_of(&logs);
    let handshake = |root, name| async move { tls_connect(addr, root, name).await.is_ok() };
    assert!(handshake(from_file.cert.der().clone(), "file.test").await);

    // A certificate added through the Admin API is presented at once.
    let added = rcgen::generate_simple_self_signed(vec!["added.test".to_owned()]).unwrap();
    let body = serde_json::json!({
        "cert": added.cert.pem(),
        "key": added.signing_key.serialize_pem(),
        "snis": ["added.test"],
    });
    let req = http::Request::post("/certificates")
        .header("host", "admin.test")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    assert_eq!(send(admin, req).await.status(), 201);
    assert!(handshake(added.cert.der().clone(), "added.test").await);
    assert!(handshake(from_file.cert.der().clone(), "file.test").await);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(dir);
}

/// The address of the program's TLS listener, from its log line.
#[cfg(feature = "tls")]
fn tls_listener_of(logs: &Logs) -> SocketAddr {
    let line = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(5)).ok())
        .find(|line| line.contains("proxy listening on https://"))
        .expect("no TLS listener");
    line.rsplit("https://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A TLS connection to `addr` asking for `name` (ALPN h2), trusting only `root`.
#[cfg(feature = "tls")]
async fn tls_connect(
    addr: SocketAddr,
    root: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    name: &'static str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from(name).unwrap(), tcp)
        .await
}

/// Threads of process `pid` named as the proxy's workers (Linux cuts thread names to 15
/// bytes: `gateway-worker-`).
fn worker_threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with("gateway-worker"))
        .count()
}

#[tokio::test]
async fn both_runtimes_serve_the_proxy_and_the_workers_asked_for_run_it() {
    let (up, _seen) = ok_upstream().await;
    let (dir, file) = config_file(
        "runtimes",
        &format!(
            "_format_version: \"3.0\"\nservices:\n  - name: up\n    url: http://{up}\n    routes:\n      - name: r\n        paths: [/]\n"
        ),
    );
    let config = file.to_str().unwrap();
    let listen = [
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];

    // Thread per core (the default), three workers: each serves from a listener of its own.
    let mut args = vec!["--config", config, "--workers", "3", "--access-log", "off"];
    args.extend(listen);
    let (mut child, proxy, admin) = start(&args);
    for i in 0..12 {
        // A new connection each time: the kernel spreads them over the listeners.
        assert_eq!(text(send(proxy, get(&format!("/{i}"))).await).await, "ok");
    }
    // Requests are served only once the workers run.
    assert_eq!(worker_threads_of(child.id()), 3);
    let status = text(send(admin, get("/status")).await).await;
    assert!(status.contains("\"total_requests\":12"), "{status}");
    stop(&mut child);

    // Work stealing: no worker threads of the proxy's own, the same answers.
    let mut args = vec![
        "--config",
        config,
        "--runtime",
        "work-stealing",
        "--workers",
        "1",
    ];
    args.extend(listen);
    let (mut child, proxy, _admin) = start(&args);
    assert_eq!(worker_threads_of(child.id()), 0);
    assert_eq!(text(send(proxy, get("/x")).await).await, "ok");
    stop(&mut child);

    for (flag, value, message) in [
        (
            "--runtime",
            "fast",
            "is not thread-per-core or work-stealing",
        ),
        ("--workers", "0", "is not a positive whole number"),
    ] {
        let out = Command::new(gateway_bin())
            .args(["--config", config, flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
