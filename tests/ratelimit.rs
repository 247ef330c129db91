//! Rate limiting in front of a real upstream, over real sockets.

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;
use tower::ServiceBuilder;
use tower_gateway::proxy::{ProxyConfig, ReverseProxy, TrustedProxies};
use tower_gateway::ratelimit::{
    Clock, FixedWindow, KeyBy, LeakyBucket, Limit, ManualClock, Period, Rate, RateLimitLayer,
};

/// 2026-11-28T09:00:30Z, in the middle of a minute.
const MID_MINUTE: u64 = 1_795_856_430 * 1_000_000_000;

async fn gateway(layer: RateLimitLayer, up: std::net::SocketAddr) -> std::net::SocketAddr {
    let proxy = ReverseProxy::<Incoming>::new(ProxyConfig::new(&format!("http://{up}")).unwrap());
    let (addr, stop) = serve(ServiceBuilder::new().layer(layer).service(proxy)).await;
    std::mem::forget(stop);
    addr
}

fn kong_minute(limit: u64, key: KeyBy) -> RateLimitLayer {
    RateLimitLayer::builder(key)
        .limit(Limit::FixedWindow(FixedWindow::new([(
            Period::Minute,
            limit,
        )])))
        .clock(Clock::Manual(ManualClock::at(MID_MINUTE)))
        .build()
}

#[tokio::test]
async fn kong_minute_100_admits_exactly_100_of_110_with_kong_headers() {
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(
        kong_minute(100, KeyBy::ClientIp(TrustedProxies::none())),
        up,
    )
    .await;
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
        100
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        10
    );
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
    let (up, _seen) = ok_upstream().await;
    let gw = gateway(kong_minute(10, KeyBy::Global), up).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { send(gw, get("/")).await.status() }))
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
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
    let (up, mut seen) = ok_upstream().await;
    let layer = RateLimitLayer::builder(KeyBy::Global)
        .limit(Limit::LeakyBucket(LeakyBucket::new(
            Rate::per_second(10),
            5,
        )))
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
