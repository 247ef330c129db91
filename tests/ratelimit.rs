//! Rate limiting in front of a real upstream, over real sockets.

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::sync::Arc;
use support::*;
use tower::ServiceBuilder;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy, TrustedProxies};

use tower_gateway::ratelimit::{
    Clock, Decided, FixedWindow, Key, KeyBy, LeakyBucket, Limit, ManualClock, MemoryStore, Nanos,
    Period, Rate, RateLimitLayer, Store, StoreError,
};

/// 2026-11-28T09:00:30Z, in the middle of a minute.
const MID_MINUTE: u64 = 1_795_856_430 * 1_000_000_000;

async fn gateway(layer: RateLimitLayer, up: std::net::SocketAddr) -> std::net::SocketAddr {
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(format!("http://{up}")).unwrap());
    let (addr, stop) = serve(ServiceBuilder::new().layer(layer).service(proxy)).await;
    std::mem::forget(stop);
    addr
}

fn kong_minute(limit: u64, key: KeyBy) -> RateLimitLayer {
    kong_minute_in(limit, key, MemoryStore::new(1_000_000))
}

fn kong_minute_in(limit: u64, key: KeyBy, store: impl Store) -> RateLimitLayer {
    RateLimitLayer::builder(key)
        .limit(Limit::FixedWindow(FixedWindow::new([(
            Period::Minute,
            limit,
        )])))
        .clock(Clock::Manual(ManualClock::at(MID_MINUTE)))
        .store(store)
        .build()
}

/// A store that answers later, as one across the network does: the in-memory store behind
/// a task switch.
#[derive(Debug)]
struct Deferred(Arc<MemoryStore>);

impl Store for Deferred {
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided {
        let (store, key, limits) = (self.0.clone(), key.clone(), limits.to_vec());
        Decided::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(store.decide(&key, &limits, now))
        }))
    }
}

/// A store whose server is down.
#[derive(Debug)]
struct Down;

impl Store for Down {
    fn decide(&self, _: &Key, _: &[Limit], _: Nanos) -> Decided {
        Decided::Pending(Box::pin(async {
            Err(StoreError::Unavailable("connection refused".into()))
        }))
    }
}

/// Builds a per-minute layer over one kind of store.
type LayerIn = Box<dyn Fn(u64, KeyBy) -> RateLimitLayer>;

/// Every store the layer tests run against: memory, a deferred one, and a real Redis when
/// this machine has one (the server lives as long as the returned guard).
fn stores() -> (
    Vec<(&'static str, LayerIn)>,
    Option<support::redis::RedisServer>,
) {
    let mut list: Vec<(&'static str, LayerIn)> = vec![
        ("memory", Box::new(kong_minute)),
        (
            "deferred",
            Box::new(|limit, key| {
                kong_minute_in(limit, key, Deferred(Arc::new(MemoryStore::new(1_000_000))))
            }),
        ),
    ];
    let redis = redis_store_for_tests(&mut list);
    (list, redis)
}

#[cfg(feature = "redis")]
fn redis_store_for_tests(
    list: &mut Vec<(&'static str, LayerIn)>,
) -> Option<support::redis::RedisServer> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LAYERS: AtomicUsize = AtomicUsize::new(0);
    let server = support::redis::RedisServer::start()?;
    let url = server.url();
    list.push((
        "redis",
        Box::new(move |limit, key| {
            // A namespace per layer: layers must not share counts.
            let namespace = format!("test-{}", LAYERS.fetch_add(1, Ordering::Relaxed));
            let store = tower_gateway::ratelimit::RedisStore::new(&url, &namespace).unwrap();
            kong_minute_in(limit, key, store)
        }),
    ));
    Some(server)
}

#[cfg(not(feature = "redis"))]
fn redis_store_for_tests(
    _: &mut Vec<(&'static str, LayerIn)>,
) -> Option<support::redis::RedisServer> {
    None
}

#[tokio::test]
async fn kong_minute_100_admits_exactly_100_of_110_with_kong_headers() {
    let (stores, _redis) = stores();
    for (store, layer) in stores {
        admits_100_of_110(layer(100, KeyBy::ClientIp(TrustedProxies::none())), store).await;
    }
}

async fn admits_100_of_110(layer: RateLimitLayer, store: &str) {
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(layer, up).await;
    let mut statuses = Vec::new();
    for i in 0..110u64 {
        let res = send(gw, get("/")).await;
        statuses.push(res.status());
        let h = res.headers();
        if i < 100 {
            assert_eq!(h["x-ratelimit-limit-minute"], "100");
            assert_eq!(
                h["x-ratelimit-remaining-minute"],
                (99 - i).to_string().as_str()
            );
            assert_eq!(h["ratelimit-limit"], "100");
            assert_eq!(h["ratelimit-remaining"], (99 - i).to_string().as_str());
            assert_eq!(h["ratelimit-reset"], "30");
        } else {
            assert_eq!(h["retry-after"], "30");
            assert_eq!(h["x-ratelimit-remaining-minute"], "0");
            assert_eq!(h["ratelimit-remaining"], "0");
            assert_eq!(text(res).await, r#"{"message":"API rate limit exceeded"}"#);
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        100,
        "{store}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        10,
        "{store}"
    );
}

#[tokio::test]
async fn a_failed_store_lets_requests_through_when_fault_tolerant_and_refuses_otherwise() {
    let (up, mut seen) = ok_upstream().await;
    let tolerant = RateLimitLayer::builder(KeyBy::Global)
        .limit(Limit::FixedWindow(FixedWindow::new([(Period::Minute, 1)])))
        .store(Down)
        .build();
    let gw = gateway(tolerant, up).await;
    for _ in 0..3 {
        assert_eq!(send(gw, get("/")).await.status(), StatusCode::OK);
        seen.recv().await.unwrap();
    }
    let strict = RateLimitLayer::builder(KeyBy::Global)
        .limit(Limit::FixedWindow(FixedWindow::new([(Period::Minute, 1)])))
        .store(Down)
        .fault_tolerant(false)
        .build();
    let gw = gateway(strict, up).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        text(res).await,
        r#"{"message":"An unexpected error occurred"}"#
    );
    assert!(seen.try_recv().is_err());
}

#[tokio::test]
async fn the_ietf_draft_fields_are_sent_when_asked_for() {
    let (up, _seen) = ok_upstream().await;
    let layer = RateLimitLayer::builder(KeyBy::Global)
        .limit(Limit::FixedWindow(FixedWindow::new([
            (Period::Second, 10),
            (Period::Minute, 2),
        ])))
        .clock(Clock::Manual(ManualClock::at(MID_MINUTE)))
        .ietf_headers(true)
        .build();
    let gw = gateway(layer, up).await;
    let res = send(gw, get("/")).await;
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""second";q=10;w=1, "minute";q=2;w=60"#
    );
    assert_eq!(res.headers()["ratelimit"], r#""minute";r=1;t=30"#);
    send(gw, get("/")).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit"], r#""minute";r=0;t=30"#);
    assert_eq!(res.headers()["retry-after"], "30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overshoot_the_limit() {
    let (stores, _redis) = stores();
    for (store, layer) in stores {
        let (up, _seen) = ok_upstream().await;
        let gw = gateway(layer(10, KeyBy::Global), up).await;
        let tasks: Vec<_> = (0..100)
            .map(|_| tokio::spawn(async move { send(gw, get("/")).await.status() }))
            .collect();
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap() == StatusCode::OK {
                ok += 1;
            }
        }
        assert_eq!(ok, 10, "{store}");
    }
}

#[tokio::test]
async fn keys_are_counted_apart_and_requests_without_a_key_are_not_limited() {
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(
        kong_minute(1, KeyBy::Header(http::HeaderName::from_static("x-user"))),
        up,
    )
    .await;
    let as_user = |user: &str| {
        Request::get("/")
            .header("host", "gw")
            .header("x-user", user)
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(gw, as_user("ann")).await.status(), 200);
    assert_eq!(send(gw, as_user("ann")).await.status(), 429);
    assert_eq!(send(gw, as_user("bob")).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(send(gw, get("/")).await.status(), 200);
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_key() {
    let (up, _seen) = ok_upstream().await;
    let trusted: TrustedProxies = "127.0.0.0/8".parse().unwrap();
    let gw = gateway(kong_minute(1, KeyBy::ClientIp(trusted)), up).await;
    let from = |client: &str| {
        Request::get("/")
            .header("host", "gw")
            .header("x-forwarded-for", client)
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(gw, from("203.0.113.1")).await.status(), 200);
    assert_eq!(send(gw, from("203.0.113.1")).await.status(), 429);
    assert_eq!(send(gw, from("203.0.113.2")).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_leaky_bucket_delays_requests_until_they_conform() {
    leaky_delays(MemoryStore::new(1_000)).await;
}

#[tokio::test(start_paused = true)]
async fn a_store_that_answers_later_delays_leaky_bucket_requests_alike() {
    leaky_delays(Deferred(Arc::new(MemoryStore::new(1_000)))).await;
}

async fn leaky_delays(store: impl Store) {
    let (up, mut seen) = ok_upstream().await;
    let layer = RateLimitLayer::builder(KeyBy::Global)
        .limit(Limit::LeakyBucket(LeakyBucket::new(
            Rate::per_second(10),
            5,
        )))
        .store(store)
        .build();
    let gw = gateway(layer, up).await;
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { send(gw, get("/")).await.status() }))
        .collect();
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        seen.recv().await.unwrap();
        arrivals.push(started.elapsed());
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let rounded: Vec<u128> = arrivals.iter().map(|d| d.as_millis() / 10 * 10).collect();
    assert_eq!(rounded, [0, 100, 200]);
}

/// Two "instances": layers of their own, sharing one Redis namespace.
#[cfg(feature = "redis")]
fn shared_minute(url: &str, namespace: &str, limit: u64) -> [RateLimitLayer; 2] {
    use tower_gateway::ratelimit::RedisStore;
    [0, 1].map(|_| {
        let store = RedisStore::new(url, namespace)
            .unwrap()
            .timeout(std::time::Duration::from_millis(300));
        kong_minute_in(limit, KeyBy::Global, store)
    })
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_admit_exactly_the_limit_between_them() {
    let Some(_redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let [a, b] = shared_minute(&_redis.url(), "shared-150", 100);
    let (a, b) = (gateway(a, up).await, gateway(b, up).await);
    // 150 requests, alternating, some of them at the same time.
    assert_eq!(admitted_at_once(a, b, 150).await, 100);
}

/// Sends `n` requests at once, alternating between gateways `a` and `b`; how many passed
/// (every other answer must be a 429).
#[cfg(feature = "redis")]
async fn admitted_at_once(a: std::net::SocketAddr, b: std::net::SocketAddr, n: usize) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gw = if i % 2 == 0 { a } else { b };
            tokio::spawn(async move { send(gw, get("/")).await.status() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("status {other}"),
        }
    }
    admitted
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_falls_back_or_fails_as_configured_and_recovers() {
    use tower_gateway::ratelimit::RedisStore;
    let Some(mut redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let url = redis.url();
    let layer = |namespace: &str, tolerant: bool| {
        let store = RedisStore::new(&url, namespace)
            .unwrap()
            .timeout(std::time::Duration::from_millis(300));
        let store = if tolerant {
            store.local_fallback(1_000)
        } else {
            store
        };
        RateLimitLayer::builder(KeyBy::Global)
            .limit(Limit::FixedWindow(FixedWindow::new([(Period::Minute, 2)])))
            .clock(Clock::Manual(ManualClock::at(MID_MINUTE)))
            .store(store)
            .fault_tolerant(tolerant)
            .build()
    };
    let tolerant = gateway(layer("tolerant", true), up).await;
    let strict = gateway(layer("strict", false), up).await;
    assert_eq!(
        send(tolerant, get("/")).await.status(),
        200,
        "counted in redis"
    );
    assert_eq!(send(strict, get("/")).await.status(), 200);

    redis.stop();
    // Tolerant: the local fallback limits on its own (a fresh count of 2).
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(send(tolerant, get("/")).await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses, [200, 200, 429]);
    // Strict: 500, the upstream untouched.
    assert_eq!(send(strict, get("/")).await.status(), 500);

    // Back (empty, as a restarted server without persistence is): shared counting resumes.
    redis.restart();
    let mut recovered = false;
    for _ in 0..50 {
        if send(strict, get("/")).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store never reconnected");
    assert_eq!(send(strict, get("/")).await.status(), 200);
    assert_eq!(send(strict, get("/")).await.status(), 429);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_algorithm_is_exact_across_instances_through_redis() {
    use tower_gateway::ratelimit::{RedisStore, SlidingLog, SlidingWindow, TokenBucket};
    let Some(redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let limits = [
        (
            "token-bucket",
            Limit::TokenBucket(TokenBucket::new(Rate::per_minute(5), 5)),
        ),
        (
            "sliding-window",
            Limit::SlidingWindow(SlidingWindow::new(5, std::time::Duration::from_secs(60))),
        ),
        (
            "sliding-log",
            Limit::SlidingLog(SlidingLog::new(5, std::time::Duration::from_secs(60))),
        ),
    ];
    for (name, limit) in limits {
        // Two instances on one namespace, 40 requests at once, the clock standing still.
        let instance = || {
            let store = RedisStore::new(&redis.url(), name).unwrap();
            RateLimitLayer::builder(KeyBy::Global)
                .limit(limit.clone())
                .clock(Clock::Manual(ManualClock::at(MID_MINUTE)))
                .store(store)
                .fault_tolerant(false)
                .build()
        };
        let (a, b) = (gateway(instance(), up).await, gateway(instance(), up).await);
        assert_eq!(admitted_at_once(a, b, 40).await, 5, "{name}");
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_rate_counts_locally_and_overshoots_no_more_than_one_interval_allows() {
    use tower_gateway::ratelimit::RedisStore;
    let Some(redis) = support::redis::RedisServer::start() else {
        return;
    };
    let (up, _seen) = ok_upstream().await;
    let instance = || {
        let store = RedisStore::new(&redis.url(), "batched")
            .unwrap()
            .sync_every(std::time::Duration::from_millis(100));
        kong_minute_in(100, KeyBy::Global, store)
    };
    let (a, b) = (gateway(instance(), up).await, gateway(instance(), up).await);
    let admitted = |gw, n| async move {
        let mut ok = 0;
        for _ in 0..n {
            if send(gw, get("/")).await.status() == StatusCode::OK {
                ok += 1;
            }
        }
        ok
    };
    // Within one interval each instance knows only its own count: 60 + 60 pass, 20 over the
    // limit, fewer than the 60 one instance admitted unseen by the other.
    let first = admitted(a, 60).await + admitted(b, 60).await;
    assert!(first <= 100 + 60, "{first}");
    assert!(first >= 100, "{first}");
    // After a synchronisation both know the cluster's count: nothing more passes.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(admitted(a, 10).await + admitted(b, 10).await, 0);
}
