//! The access log over real sockets: one event per finished request, with the fields filled.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::*;
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_gateway::log::AccessLogLayer;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::router::{Route, Router};
use tracing::field::{Field, Visit};
use tracing::span;

type Fields = BTreeMap<String, String>;

/// A subscriber that sends every access-log event's fields down a channel.
struct Capture(mpsc::UnboundedSender<Fields>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "tower_gateway::access" {
            let mut fields = Fields::new();
            event.record(&mut Collect(&mut fields));
            let _ = self.0.send(fields);
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Fields>) -> Fields {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no access-log event")
        .unwrap()
}

/// Route `users` of service `user-service` on `/api/users`, proxied to `up`.
fn users_router(up: std::net::SocketAddr) -> Router<ReverseProxy<Incoming>> {
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    Router::builder()
        .route(
            Route::new()
                .name("users")
                .service("user-service")
                .path("/api/users"),
            proxy,
        )
        .build()
        .unwrap()
}

async fn gateway(layer: AccessLogLayer, up: std::net::SocketAddr) -> std::net::SocketAddr {
    let router = users_router(up);
    let (addr, stop) = serve(ServiceBuilder::new().layer(layer).service(router)).await;
    std::mem::forget(stop);
    addr
}

#[tokio::test]
async fn each_finished_request_leaves_one_event_with_its_fields() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(AccessLogLayer::json(), up).await;

    let req = Request::post("/api/users/7?x=1")
        .header("host", "gw")
        .header("x-request-id", "abc-123")
        .header("authorization", "Bearer secret-token")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    let res = send(gw, req).await;
    assert_eq!(text(res).await, "ok");

    let event = next_event(&mut rx).await;
    assert_eq!(event["method"], "POST");
    assert_eq!(event["path"], "/api/users/7?x=1");
    assert_eq!(event["status"], "200");
    assert_eq!(event["route"], "users");
    assert_eq!(event["service"], "user-service");
    assert_eq!(event["upstream"], up.to_string());
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert_eq!(event["request_id"], "abc-123");
    assert_eq!(event["bytes_in"], "5");
    assert_eq!(event["bytes_out"], "2");
    assert_eq!(event["completed"], "true");
    assert!(event["latency_ms"].parse::<f64>().unwrap() >= 0.0);
    let upstream_ms: f64 = event["upstream_latency_ms"].parse().unwrap();
    assert!(upstream_ms >= 0.0 && upstream_ms <= event["latency_ms"].parse::<f64>().unwrap());
    assert!(
        !format!("{event:?}").contains("secret-token"),
        "a credential was logged"
    );

    let res = send(gw, get("/nowhere")).await;
    assert_eq!(res.status(), 404);
    res.into_body().collect().await.unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(event["status"], "404");
    assert_eq!(event["route"], "-");
    assert!(rx.try_recv().is_err(), "more than one event per request");
}

#[tokio::test]
async fn a_failed_upstream_is_logged_with_the_reason() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(AccessLogLayer::json(), port).await;
    let res = send(gw, get("/api/users")).await;
    assert_eq!(res.status(), 502);
    res.into_body().collect().await.unwrap();
    let event = loop {
        let event = next_event(&mut rx).await;
        if event.contains_key("status") {
            break event;
        }
    };
    assert_eq!(event["status"], "502");
    assert!(
        event["failure"].contains("connecting to the upstream failed"),
        "{event:?}"
    );
}

#[tokio::test]
async fn the_combined_format_reads_like_nginx() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    let (up, _seen) =
        upstream(|_| async { Response::new(Full::new(Bytes::from_static(b"hello"))) }).await;
    let gw = gateway(AccessLogLayer::combined(), up).await;
    let req = Request::get("/api/users")
        .header("host", "gw")
        .header("user-agent", "curl/8.5")
        .body(Full::default())
        .unwrap();
    text(send(gw, req).await).await;
    let line = &next_event(&mut rx).await["message"];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /api/users HTTP/1.1\" 200 5 \"-\" \"curl/8.5\" "),
        "{line}"
    );
    assert!(line.ends_with(" users -"), "{line}");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_logged_as_499() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    // An upstream that reports the request's arrival and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await;
        let _ = arrived_tx.send(());
        std::future::pending::<()>().await;
        drop(stream);
    });
    let gw = gateway(AccessLogLayer::json(), up).await;
    let mut client = tokio::net::TcpStream::connect(gw).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut client,
        b"GET /api/users HTTP/1.1\r\nhost: gw\r\n\r\n",
    )
    .await
    .unwrap();
    arrived_rx.await.unwrap();
    drop(client);
    let event = next_event(&mut rx).await;
    assert_eq!(event["status"], "499");
    assert_eq!(event["completed"], "false");
}

#[tokio::test]
async fn a_retried_request_is_logged_with_its_tries_and_the_endpoint_that_answered() {
    use tower_gateway::balance::{Balancer, RoundRobin};
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (live, _seen) = ok_upstream().await;
    let pool = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{dead}")).unwrap());
    let balancer = Balancer::builder(RoundRobin::new())
        .endpoint(dead.to_string(), pool.clone())
        .endpoint(
            live.to_string(),
            pool.to_origin(format!("http://{live}")).unwrap(),
        )
        .build();
    let router = Router::builder()
        .route(Route::new().name("users").path("/api/users"), balancer)
        .build()
        .unwrap();
    let (gw, _stop) = serve(
        ServiceBuilder::new()
            .layer(AccessLogLayer::json())
            .service(router),
    )
    .await;
    let res = send(gw, get("/api/users")).await;
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    let event = loop {
        let event = next_event(&mut rx).await;
        if event.contains_key("status") {
            break event;
        }
    };
    assert_eq!(event["tries"], "2");
    assert_eq!(event["upstream"], live.to_string());
}

#[tokio::test]
async fn the_authenticated_consumer_is_logged() {
    use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers};
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    let (up, _seen) = ok_upstream().await;
    let consumers = Consumers::new();
    consumers.insert(Consumer::new("c-1").username("test-user"));
    consumers.add_api_key("test-user", "test-api-key").unwrap();
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let route = ServiceBuilder::new()
        .layer(AuthLayer::new(ApiKey::new(consumers)))
        .service(proxy);
    let router = Router::builder()
        .route(Route::new().name("users").path("/api/users"), route)
        .build()
        .unwrap();
    let (gw, _stop) = serve(
        ServiceBuilder::new()
            .layer(AccessLogLayer::json())
            .service(router),
    )
    .await;
    let req = http::Request::get("/api/users")
        .header("host", "gateway.test")
        .header("apikey", "test-api-key")
        .body(Default::default())
        .unwrap();
    let res = send(gw, req).await;
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    let event = loop {
        let event = next_event(&mut rx).await;
        if event.contains_key("status") {
            break event;
        }
    };
    assert_eq!(event["consumer"], "test-user");
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn a_body_of_unknown_length_is_counted_as_it_is_sent_upstream() {
    use tower_gateway::metrics::{Metrics, MetricsLayer};
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _guard = tracing::subscriber::set_default(Capture(tx));
    let (up, mut seen) = ok_upstream().await;
    let router = users_router(up);
    let metrics = Metrics::new();
    let service = ServiceBuilder::new()
        .layer(AccessLogLayer::json())
        .layer(MetricsLayer::new(metrics.clone()))
        .service(router);
    let (gw, stop) = serve(service).await;
    std::mem::forget(stop);

    // Chunked: no Content-Length to read the size from.
    let answer = raw_exchange(
        gw,
        b"POST /api/users HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(seen.recv().await.unwrap().body, "hello world");
    let event = next_event(&mut rx).await;
    assert_eq!(event["bytes_in"], "11");
    let exposition = metrics.encode();
    assert!(
        exposition.lines().any(|l| l
            == r#"kong_bandwidth_bytes_total{service="user-service",route="users",direction="ingress",consumer=""} 11"#),
        "{exposition}"
    );
}

#[tokio::test]
async fn a_line_writer_gets_json_lines_shaped_as_tracing_json_and_nginx_combined_lines() {
    use tower_gateway::log::{Format, LineWriter};
    let (json, combined) = (Lines::default(), Lines::default());
    let layer = AccessLogLayer::json()
        .write_to(Format::Json, LineWriter::new(json.clone()))
        .write_to(Format::Combined, LineWriter::new(combined.clone()));
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(layer, up).await;
    let req = Request::post("/api/users/7?x=1")
        .header("host", "gw")
        .header("x-request-id", "abc-123")
        .header("user-agent", "curl/8.5")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    assert_eq!(text(send(gw, req).await).await, "ok");

    let line = &json.wait_for(1).await[0];
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["target"], "tower_gateway::access");
    assert_eq!(event["level"], "INFO");
    assert!(
        event["timestamp"].as_str().unwrap().ends_with('Z'),
        "{line}"
    );
    let fields = &event["fields"];
    assert_eq!(fields["message"], "request finished");
    assert_eq!(fields["method"], "POST");
    assert_eq!(fields["path"], "/api/users/7?x=1");
    assert_eq!(fields["protocol"], "HTTP/1.1");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["bytes_in"], 5);
    assert_eq!(fields["bytes_out"], 2);
    assert_eq!(fields["route"], "users");
    assert_eq!(fields["service"], "user-service");
    assert_eq!(fields["upstream"], up.to_string());
    assert_eq!(fields["client_ip"], "127.0.0.1");
    assert_eq!(fields["request_id"], "abc-123");
    assert_eq!(fields["consumer"], "-");
    assert_eq!(fields["tries"], 0, "no balancer here");
    assert_eq!(fields["completed"], true);
    assert!(fields["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(fields["upstream_latency_ms"].as_f64().unwrap() >= 0.0);

    let line = &combined.wait_for(1).await[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"POST /api/users/7?x=1 HTTP/1.1\" 200 2 \"-\" \"curl/8.5\" "),
        "{line}"
    );
    assert!(line.ends_with(" users abc-123"), "{line}");
}

#[tokio::test]
async fn a_client_cannot_forge_log_lines_or_fields_through_its_headers() {
    use tower_gateway::log::{Format, LineWriter};
    let (json, combined) = (Lines::default(), Lines::default());
    let layer = AccessLogLayer::json()
        .write_to(Format::Json, LineWriter::new(json.clone()))
        .write_to(Format::Combined, LineWriter::new(combined.clone()));
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(layer, up).await;
    // Quotes to close the field early, a backslash, and bytes that are not ASCII.
    let forged = http::HeaderValue::from_bytes(b"x\" 500 1 \"-\" \"fake\\ \xff").unwrap();
    let req = Request::get("/api/users")
        .header("host", "gw")
        .header("user-agent", forged.clone())
        .header("x-request-id", forged)
        .body(Full::default())
        .unwrap();
    text(send(gw, req).await).await;

    // A quote in the path, as a raw request line carries it (hyper accepts it).
    let mut raw = tokio::net::TcpStream::connect(gw).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut raw,
        b"GET /api/users/a\"b HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut reply)
        .await
        .unwrap();

    let lines = combined.wait_for(2).await;
    let line = &lines[0];
    assert!(
        line.contains("\"x\\x22 500 1 \\x22-\\x22 \\x22fake\\x5C \\xFF\""),
        "{line}"
    );
    assert_eq!(line.matches('"').count(), 6, "{line}");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        lines[1].contains("\"GET /api/users/a\\x22b HTTP/1.1\""),
        "{}",
        lines[1]
    );
    assert_eq!(lines[1].matches('"').count(), 6, "{}", lines[1]);
    let lines = json.wait_for(1).await;
    let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        event["fields"]["request_id"],
        "x\" 500 1 \"-\" \"fake\\ \u{fffd}"
    );
}
