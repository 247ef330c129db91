//! Balancer cost per request and strategy, for 2, 16 and 256 endpoints: single-threaded, and
//! from 2 threads on one balancer (total time / total requests, so perfect scaling would halve
//! it). Each request goes through `Balancer::call` to an endpoint service that answers at once,
//! and its response body is dropped: the figure is the balancer's whole per-request cost
//! (pick, in-flight count, `Chosen` in both extension maps, latency sample where used), plus
//! building the request.
//!
//! `cargo bench --bench balance`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Service, service_fn};
use tower_gateway::balance::{
    BalancedBody, Balancer, ConsistentHash, Endpoint, HashOn, LeastConnections, PeakEwma,
    RoundRobin, Strategy, WeightedRoundRobin,
};

const X_USER: HeaderName = HeaderName::from_static("x-user");

fn strategies() -> Vec<(&'static str, Box<dyn Strategy>)> {
    vec![
        ("round-robin", Box::new(RoundRobin::new())),
        ("weighted-round-robin", Box::new(WeightedRoundRobin::new())),
        ("least-connections", Box::new(LeastConnections::new())),
        ("consistent-hash", Box::new(ConsistentHash::new())),
        ("peak-ewma", Box::new(PeakEwma::new())),
    ]
}

type Endpoint0 = tower::util::ServiceFn<
    fn(Request<BalancedBody<String>>) -> std::future::Ready<Result<Response<String>, Infallible>>,
>;

fn answer(
    _req: Request<BalancedBody<String>>,
) -> std::future::Ready<Result<Response<String>, Infallible>> {
    std::future::ready(Ok(Response::new(String::new())))
}

fn balancer(strategy: Box<dyn Strategy>, n: usize) -> Balancer<Endpoint0> {
    let mut builder = Balancer::builder(strategy)
        .hash_on(HashOn::Header(X_USER))
        .retries(0);
    for i in 0..n {
        let endpoint: Endpoint0 = service_fn(answer as fn(_) -> _);
        // Unequal weights, so the weighted strategies do real work.
        let weight = 100 + (i as u32 % 3) * 50;
        builder = builder.endpoint(
            Endpoint::new(format!("10.0.{}.{}:8080", i / 250, i % 250)).weight(weight),
            endpoint,
        );
    }
    builder.build()
}

/// One request through the balancer, completed on the spot.
fn one(balancer: &mut Balancer<Endpoint0>, user: &HeaderValue) {
    let mut req = Request::new(String::new());
    req.headers_mut().insert(X_USER, user.clone());
    let mut future = pin!(balancer.call(req));
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => drop(res),
        _ => unreachable!("the endpoint answers at once"),
    }
}

fn users() -> Vec<HeaderValue> {
    (0..1024)
        .map(|i| HeaderValue::try_from(format!("user-{i}")).unwrap())
        .collect()
}

fn picks(c: &mut Criterion) {
    let users = users();
    let mut group = c.benchmark_group("balance");
    for n in [2usize, 16, 256] {
        for (name, strategy) in strategies() {
            let mut lb = balancer(strategy, n);
            let mut i = 0usize;
            group.bench_function(BenchmarkId::new(format!("{name}/1-thread"), n), |b| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    one(&mut lb, &users[i]);
                })
            });
            group.bench_function(BenchmarkId::new(format!("{name}/2-threads"), n), |b| {
                b.iter_custom(|iters| {
                    let began = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..2usize {
                            let (mut lb, users) = (lb.clone(), &users);
                            s.spawn(move || {
                                for i in 0..iters as usize / 2 {
                                    one(&mut lb, &users[(i * 2 + t) & 1023]);
                                }
                            });
                        }
                    });
                    began.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
