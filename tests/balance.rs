//! The balancer over real upstreams: strategies, in-flight tracking, retries, health,
//! membership changes.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::{ChannelBody, get, send, serve, text, upstream};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_gateway::balance::{
    ActiveHealth, Balancer, ConsistentHash, Endpoint, HashOn, LeastConnections, PassiveHealth,
    PeakEwma, RoundRobin, Strategy, WeightedRoundRobin,
};
use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
use tower_gateway::server::Server;

type Proxy = ReverseProxy<Incoming>;

/// An upstream answering its own name, optionally after a delay.
async fn named(name: &'static str, delay: Duration) -> SocketAddr {
    upstream(move |_| async move {
        tokio::time::sleep(delay).await;
        Response::new(Full::new(Bytes::from_static(name.as_bytes())))
    })
    .await
    .0
}

/// A loopback port nobody listens on.
async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn proxy_to(addr: SocketAddr) -> Proxy {
    ReverseProxy::new(
        ProxyConfig::new(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2)),
    )
}

fn balancer(
    strategy: impl Strategy,
    endpoints: &[(SocketAddr, u32)],
    tweak: impl FnOnce(
        tower_gateway::balance::BalancerBuilder<Proxy>,
    ) -> tower_gateway::balance::BalancerBuilder<Proxy>,
) -> Balancer<Proxy> {
    let mut builder = Balancer::builder(strategy);
    for (addr, weight) in endpoints {
        builder = builder.endpoint(
            Endpoint::new(addr.to_string()).weight(*weight),
            proxy_to(*addr),
        );
    }
    tweak(builder).build()
}

async fn bodies(gateway: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(text(send(gateway, get("/")).await).await);
    }
    out
}

#[tokio::test]
async fn weighted_round_robin_follows_nginx_sequence_over_real_upstreams() {
    let (a, b, c) = (
        named("a", Duration::ZERO).await,
        named("b", Duration::ZERO).await,
        named("c", Duration::ZERO).await,
    );
    let lb = balancer(WeightedRoundRobin::new(), &[(a, 5), (b, 1), (c, 1)], |b| b);
    let (gateway, _stop) = serve(lb).await;
    assert_eq!(
        bodies(gateway, 14).await,
        [
            "a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"
        ]
    );
}

#[tokio::test]
async fn round_robin_takes_turns_over_real_upstreams() {
    let (a, b) = (
        named("a", Duration::ZERO).await,
        named("b", Duration::ZERO).await,
    );
    let lb = balancer(RoundRobin::new(), &[(a, 1), (b, 1)], |b| b);
    let (gateway, _stop) = serve(lb).await;
    assert_eq!(bodies(gateway, 4).await, ["a", "b", "a", "b"]);
}

/// An upstream whose responses stream until the test drops the sender it gets.
async fn streaming_upstream(
    name: &'static str,
) -> (SocketAddr, mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (senders, rx) = mpsc::unbounded_channel();
    let service = tower::service_fn(move |_req: Request<Incoming>| {
        let (tx, body) = mpsc::channel(4);
        let _ = tx.try_send(Bytes::from_static(name.as_bytes()));
        let _ = senders.send(tx);
        async move { Ok::<_, Infallible>(Response::new(ChannelBody(body))) }
    });
    tokio::spawn(Server::from_listener(listener).serve(service));
    (addr, rx)
}

fn in_flight(lb: &Balancer<Proxy>) -> Vec<u32> {
    lb.endpoints().iter().map(|e| e.in_flight).collect()
}

#[tokio::test]
async fn least_connections_counts_until_the_body_ends_or_is_dropped() {
    let (a, mut a_streams) = streaming_upstream("a").await;
    let (b, mut b_streams) = streaming_upstream("b").await;
    let lb = balancer(LeastConnections::new(), &[(a, 1), (b, 1)], |b| b);
    let (gateway, _stop) = serve(lb.clone()).await;

    // First request: its head arrives, its body is still streaming.
    let mut first = send(gateway, get("/")).await;
    let chunk = first
        .body_mut()
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let first_endpoint = chunk.clone();
    let held = if chunk == "a" {
        a_streams.recv().await.unwrap()
    } else {
        b_streams.recv().await.unwrap()
    };
    assert_eq!(
        in_flight(&lb).iter().sum::<u32>(),
        1,
        "counted after the head"
    );

    // The next requests go to the other endpoint while the first body streams.
    for _ in 0..3 {
        let mut res = send(gateway, get("/")).await;
        let chunk = res
            .body_mut()
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_ne!(chunk, first_endpoint);
        let other = if chunk == "a" {
            &mut a_streams
        } else {
            &mut b_streams
        };
        drop(other.recv().await.unwrap()); // ends that body
        let _ = res.into_body().collect().await;
    }

    // The client drops the first response mid-stream: the count is released.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while in_flight(&lb).iter().sum::<u32>() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            in_flight(&lb)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_endpoint_with_the_body() {
    let dead = dead_port().await;
    let (live, mut seen) = support::ok_upstream().await;
    let lb = balancer(RoundRobin::new(), &[(dead, 1), (live, 1)], |b| b);
    let (gateway, _stop) = serve(lb).await;
    for i in 0..4 {
        let req = Request::post("/orders")
            .header("host", "gateway.test")
            .body(Full::new(Bytes::from(format!("order {i}"))))
            .unwrap();
        let res = send(gateway, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(seen.recv().await.unwrap().body, format!("order {i}"));
    }
}

#[tokio::test]
async fn retries_are_bounded_and_zero_means_none() {
    let (dead1, dead2) = (dead_port().await, dead_port().await);
    let lb = balancer(RoundRobin::new(), &[(dead1, 1), (dead2, 1)], |b| b);
    let (gateway, _stop) = serve(lb).await;
    assert_eq!(
        send(gateway, get("/")).await.status(),
        StatusCode::BAD_GATEWAY
    );

    let (live, _seen) = support::ok_upstream().await;
    let lb = balancer(RoundRobin::new(), &[(dead1, 1), (live, 1)], |b| {
        b.retries(0)
    });
    let (gateway, _stop) = serve(lb).await;
    let statuses: Vec<u16> = futures_statuses(gateway, 4).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 502).count(), 2);
}

async fn futures_statuses(gateway: SocketAddr, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(gateway, get("/")).await.status().as_u16());
    }
    out
}

/// An upstream that reads the request head and closes without answering.
async fn hang_up_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            support::read_head(&mut stream).await;
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_closed_connection_is_retried_for_get_but_not_for_post() {
    let (rude, hits) = hang_up_upstream().await;
    let (live, _seen) = support::ok_upstream().await;
    let lb = balancer(RoundRobin::new(), &[(rude, 1), (live, 1)], |b| b);
    let (gateway, _stop) = serve(lb).await;

    // GET: whichever endpoint comes first, the client gets the live one's answer.
    for _ in 0..2 {
        assert_eq!(send(gateway, get("/")).await.status(), StatusCode::OK);
    }
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "the rude endpoint was tried"
    );

    // POST that reached the rude endpoint: not repeated elsewhere.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let req = Request::post("/pay")
            .header("host", "gateway.test")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        statuses.push(send(gateway, req).await.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);
}

#[tokio::test]
async fn no_usable_endpoint_answers_503_with_kong_s_message() {
    let (a, _seen) = support::ok_upstream().await;
    let lb = balancer(RoundRobin::new(), &[(a, 0)], |b| b);
    let (gateway, _stop) = serve(lb.clone()).await;
    let res = send(gateway, get("/")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text(res).await,
        r#"{"message":"failure to get a peer from the ring-balancer"}"#
    );
    // Re-weighted at run time, it takes traffic.
    assert!(lb.set_weight(&a.to_string(), 10));
    assert_eq!(send(gateway, get("/")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn consistent_hashing_sticks_a_header_to_one_endpoint() {
    let names = ["a", "b", "c"];
    let mut endpoints = Vec::new();
    for name in names {
        endpoints.push((named(name, Duration::ZERO).await, 100));
    }
    let lb = balancer(ConsistentHash::new(), &endpoints, |b| {
        b.hash_on(HashOn::Header(http::HeaderName::from_static("x-user")))
    });
    let (gateway, _stop) = serve(lb).await;
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut used = std::collections::HashSet::new();
    for round in 0..3 {
        for user in 0..30 {
            let req = Request::get("/")
                .header("host", "gateway.test")
                .header("x-user", format!("user-{user}"))
                .body(Full::default())
                .unwrap();
            let served = text(send(gateway, req).await).await;
            used.insert(served.clone());
            let owner = owners
                .entry(format!("user-{user}"))
                .or_insert(served.clone());
            assert_eq!(*owner, served, "user-{user} moved in round {round}");
        }
    }
    assert_eq!(used.len(), 3, "30 users spread over all three endpoints");
}

#[tokio::test]
async fn consistent_hashing_on_a_cookie_sets_it_when_missing() {
    let mut endpoints = Vec::new();
    for name in ["a", "b", "c"] {
        endpoints.push((named(name, Duration::ZERO).await, 100));
    }
    let lb = balancer(ConsistentHash::new(), &endpoints, |b| {
        b.hash_on(HashOn::Cookie {
            name: "lb".into(),
            path: "/".into(),
        })
    });
    let (gateway, _stop) = serve(lb).await;
    let res = send(gateway, get("/")).await;
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let first = text(res).await;
    let pair = cookie.split(';').next().unwrap().to_owned();
    for _ in 0..10 {
        let req = Request::get("/")
            .header("host", "gateway.test")
            .header("cookie", &pair)
            .body(Full::default())
            .unwrap();
        let res = send(gateway, req).await;
        assert!(res.headers().get("set-cookie").is_none());
        assert_eq!(text(res).await, first);
    }
}

#[tokio::test]
async fn peak_ewma_sends_less_to_a_slow_endpoint() {
    let slow = named("slow", Duration::from_millis(60)).await;
    let fast1 = named("fast", Duration::ZERO).await;
    let fast2 = named("fast", Duration::ZERO).await;
    let lb = balancer(
        PeakEwma::new(),
        &[(slow, 100), (fast1, 100), (fast2, 100)],
        |b| b,
    );
    let (gateway, _stop) = serve(lb).await;
    let served = bodies(gateway, 90).await;
    let slow_share = served.iter().filter(|s| *s == "slow").count();
    // Round-robin would give it 30.
    assert!(slow_share <= 10, "slow endpoint served {slow_share} of 90");
}

#[tokio::test]
async fn a_dead_endpoint_is_ejected_and_clients_see_no_failure() {
    let dead = dead_port().await;
    let (live1, _s1) = support::ok_upstream().await;
    let (live2, _s2) = support::ok_upstream().await;
    let lb = balancer(
        RoundRobin::new(),
        &[(dead, 1), (live1, 1), (live2, 1)],
        |b| b.passive_health(PassiveHealth::default().tcp_failures(2)),
    );
    let (gateway, _stop) = serve(lb.clone()).await;
    let statuses = futures_statuses(gateway, 12).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let health: Vec<bool> = lb.endpoints().iter().map(|e| e.healthy).collect();
    assert_eq!(health, [false, true, true]);
}

/// An upstream whose `/health` answers 200 or 503 by a switch.
async fn switchable_upstream() -> (SocketAddr, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let switch = healthy.clone();
    let (addr, _seen) = upstream(move |_| {
        let up = switch.load(Ordering::SeqCst);
        async move {
            let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
            if !up {
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            res
        }
    })
    .await;
    (addr, healthy)
}

async fn wait_for(lb: &Balancer<Proxy>, expected: &[bool]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health: Vec<bool> = lb.endpoints().iter().map(|e| e.healthy).collect();
        if health == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {health:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Multi-threaded, so the checks task may start before `build` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_an_endpoint_down_and_bring_it_back() {
    let (flaky, switch) = switchable_upstream().await;
    let (steady, _) = switchable_upstream().await;
    let lb = balancer(RoundRobin::new(), &[(flaky, 1), (steady, 1)], |b| {
        b.active_health(
            ActiveHealth::new("/health")
                .interval(Duration::from_millis(50), Duration::from_millis(50))
                .successes(2)
                .failures(2, 2, 2),
        )
    });
    let (gateway, _stop) = serve(lb.clone()).await;
    switch.store(false, Ordering::SeqCst);
    wait_for(&lb, &[false, true]).await;
    // Down: all traffic to the steady one.
    assert!(futures_statuses(gateway, 6).await.iter().all(|&s| s == 200));
    switch.store(true, Ordering::SeqCst);
    wait_for(&lb, &[true, true]).await;
}

#[tokio::test]
async fn active_checks_stop_when_the_balancer_is_dropped() {
    let probes = Arc::new(AtomicUsize::new(0));
    let counter = probes.clone();
    let (addr, _) = upstream(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Response::new(Full::new(Bytes::new())) }
    })
    .await;
    let lb = balancer(RoundRobin::new(), &[(addr, 1)], |b| {
        b.active_health(
            ActiveHealth::new("/").interval(Duration::from_millis(20), Duration::from_millis(20)),
        )
    });
    while probes.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(lb);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_drop = probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(probes.load(Ordering::SeqCst), after_drop);
}

#[tokio::test]
async fn membership_changes_under_traffic_fail_no_request() {
    let a = named("a", Duration::from_millis(5)).await;
    let b = named("b", Duration::from_millis(5)).await;
    let c = named("c", Duration::from_millis(5)).await;
    let lb = balancer(LeastConnections::new(), &[(a, 1), (b, 1)], |b| b);
    let (gateway, _stop) = serve(lb.clone()).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let failures = failures.clone();
        clients.push(tokio::spawn(async move {
            for _ in 0..40 {
                if send(gateway, get("/")).await.status() != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for step in 0..20 {
        tokio::time::sleep(Duration::from_millis(7)).await;
        match step % 4 {
            0 => lb.insert(Endpoint::new(c.to_string()), proxy_to(c)),
            1 => assert!(lb.set_weight(&a.to_string(), 3)),
            2 => assert!(lb.remove(&b.to_string())),
            _ => lb.insert(Endpoint::new(b.to_string()), proxy_to(b)),
        }
    }
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let names: Vec<String> = lb
        .endpoints()
        .iter()
        .map(|e| e.endpoint.name().to_owned())
        .collect();
    assert_eq!(names.len(), 3);
}

#[test]
fn library_papercuts_take_what_users_have_at_hand() {
    use tower_gateway::proxy::{ProxyConfig, TrustedProxies};
    use tower_gateway::ratelimit::{KeyBy, Rate, RateLimitLayer, TokenBucket};

    // An owned URL, a socket address as an endpoint, an algorithm as a limit.
    let addr: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
    let config = ProxyConfig::new(format!("http://{addr}")).unwrap();
    assert_eq!(config.origin().authority().as_str(), "127.0.0.1:9000");
    assert_eq!(
        tower_gateway::balance::Endpoint::from(addr).name(),
        "127.0.0.1:9000"
    );
    let _layer = RateLimitLayer::new(
        KeyBy::ClientIp(TrustedProxies::none()),
        TokenBucket::new(Rate::per_second(10), 20),
    );
}

#[tokio::test]
async fn per_endpoint_breakers_make_the_balancer_go_around_an_open_one() {
    use tower::Layer;
    use tower_gateway::circuit::{CircuitBreaker, CircuitBreakerLayer, Policy, Trip};

    // One endpoint answers 500 to everything: its breaker opens after 2 failures.
    let (broken, _) = upstream(|_| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"broken")));
        *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        res
    })
    .await;
    let (a, b) = (
        named("a", Duration::ZERO).await,
        named("b", Duration::ZERO).await,
    );
    let mut builder = Balancer::<CircuitBreaker<Proxy>>::builder(RoundRobin::new());
    let mut breakers = Vec::new();
    for addr in [broken, a, b] {
        let layer = CircuitBreakerLayer::new(Policy::default().trip(Trip::ConsecutiveFailures(2)));
        breakers.push(layer.breaker().cloned().unwrap());
        builder = builder.endpoint(Endpoint::from(addr), layer.layer(proxy_to(addr)));
    }
    let (gateway, _stop) = serve(builder.build()).await;
    let statuses = futures_statuses(gateway, 30).await;
    // The broken endpoint's two answers before its breaker opened; none after.
    let failed = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(failed, 2, "{statuses:?}");
    assert!(statuses[6..].iter().all(|&s| s == 200), "{statuses:?}");
    assert!(matches!(
        breakers[0].state(),
        tower_gateway::circuit::State::Open { .. } | tower_gateway::circuit::State::HalfOpen
    ));
}

/// An upstream that holds every response until `release` is sent, reporting arrivals.
async fn held_upstream() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    let (addr, _) = upstream(move |_| {
        let arrived_tx = arrived_tx.clone();
        let mut released = released.clone();
        async move {
            let _ = arrived_tx.send(());
            let _ = released.wait_for(|r| *r).await;
            Response::new(Full::new(Bytes::from_static(b"done")))
        }
    })
    .await;
    (addr, arrived, release)
}

/// A proxy to `addr` that takes one request at a time (tower's `ConcurrencyLimit`).
fn one_at_a_time(addr: SocketAddr) -> tower::limit::ConcurrencyLimit<ReverseProxy<Full<Bytes>>> {
    tower::limit::ConcurrencyLimit::new(
        ReverseProxy::new(ProxyConfig::new(format!("http://{addr}")).unwrap()),
        1,
    )
}

/// A bodiless GET, for calling a balancer in process.
fn in_process_get() -> Request<Full<Bytes>> {
    Request::get("/")
        .header("host", "lb.test")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn load_shed_in_front_of_a_balancer_sheds_only_when_every_endpoint_is_busy() {
    use tower::ServiceExt;
    use tower::load_shed::LoadShed;

    let (a, mut arrived_a, release_a) = held_upstream().await;
    let (b, mut arrived_b, release_b) = held_upstream().await;
    let lb = Balancer::builder(RoundRobin::new())
        .endpoint(Endpoint::from(a), one_at_a_time(a))
        .endpoint(Endpoint::from(b), one_at_a_time(b))
        .build();
    let shed = LoadShed::new(lb);
    let request = in_process_get;

    // Two requests occupy both endpoints…
    let first = tokio::spawn(shed.clone().oneshot(request()));
    arrived_a.recv().await.unwrap();
    let second = tokio::spawn(shed.clone().oneshot(request()));
    arrived_b.recv().await.unwrap();
    // … so a third is shed at once instead of queueing behind them.
    let third = shed.clone().oneshot(request()).await;
    let err = third.expect_err("shed");
    assert!(err.is::<tower::load_shed::error::Overloaded>(), "{err}");

    // Capacity back: served again.
    release_a.send(true).unwrap();
    release_b.send(true).unwrap();
    for done in [first, second] {
        assert_eq!(done.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let res = shed.oneshot(request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_balancer_waits_for_a_busy_endpoint_then_sends_there() {
    use tower::ServiceExt;

    let (a, mut arrived, release) = held_upstream().await;
    let lb = Balancer::builder(RoundRobin::new())
        .endpoint(Endpoint::from(a), one_at_a_time(a))
        .build();
    let request = in_process_get;
    let first = tokio::spawn(lb.clone().oneshot(request()));
    arrived.recv().await.unwrap();
    // Not ready while the only endpoint is busy…
    let mut waiting = lb.clone();
    let once = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(tower::Service::<Request<Full<Bytes>>>::poll_ready(
            &mut waiting,
            cx,
        ))
    })
    .await;
    assert!(once.is_pending());
    // … ready once it is free, and the request goes there.
    release.send(true).unwrap();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), waiting.ready())
        .await
        .expect("ready once the endpoint is free")
        .unwrap();
    let res = tower::Service::call(&mut waiting, request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_connection_waiting_for_a_busy_endpoint_is_served_when_it_frees() {
    use tower::limit::ConcurrencyLimit;
    use tower_gateway::router::{Route, Router};

    // `/slow` is held until released; anything else is answered at once.
    let (release, released) = tokio::sync::watch::channel(false);
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let (up, _) = upstream(move |seen| {
        let mut released = released.clone();
        let arrived_tx = arrived_tx.clone();
        async move {
            if seen.uri.path() == "/slow" {
                let _ = arrived_tx.send(());
                let _ = released.wait_for(|r| *r).await;
            }
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    let lb = Balancer::builder(RoundRobin::new())
        .endpoint(Endpoint::from(up), ConcurrencyLimit::new(proxy_to(up), 1))
        .build();
    let router = Router::builder()
        .route(Route::new().name("all").path("/"), lb)
        .build()
        .unwrap();
    let (gateway, _stop) = serve(router).await;

    // A keep-alive connection whose router has its own handle on the route by now.
    let mut kept = support::http1_client::<Full<Bytes>>(gateway).await;
    for _ in 0..2 {
        let res = kept.send_request(get("/fast")).await.unwrap();
        assert_eq!(res.status(), 200);
        text(res).await;
    }
    // Another connection takes the endpoint's only slot…
    let slow = tokio::spawn(send(gateway, get("/slow")));
    arrived.recv().await.unwrap();
    // … the kept connection's next request waits for it, and is served once it frees.
    let waiting = tokio::spawn(async move { kept.send_request(get("/fast")).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    release.send(true).unwrap();
    assert_eq!(slow.await.unwrap().status(), 200);
    let res = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the endpoint is free")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Issue 18's body trap: a proxy behind a balancer had to be a `ReverseProxy<BalancedBody<B>>`,
/// so a plain route and a balanced one could not share its connections.
#[tokio::test]
async fn one_proxy_serves_a_plain_route_and_a_balancers_endpoint_on_one_connection() {
    use tower::ServiceExt;

    let (up, mut seen) = support::named_upstream("up").await;
    let proxy = ReverseProxy::<Full<Bytes>>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let balanced = Balancer::builder(RoundRobin::new())
        .endpoint(Endpoint::from(up), proxy.clone())
        .build();

    let plain = proxy.clone().oneshot(in_process_get()).await.unwrap();
    assert_eq!(plain.into_body().collect().await.unwrap().to_bytes(), "up");
    let via_balancer = balanced.oneshot(in_process_get()).await.unwrap();
    assert_eq!(via_balancer.status(), StatusCode::OK);
    via_balancer.into_body().collect().await.unwrap();

    let first = seen.recv().await.unwrap();
    let second = seen.recv().await.unwrap();
    assert_eq!(
        first.peer, second.peer,
        "the second request reused the first's connection"
    );
}
