//! Route lookup cost as the table grows: 10, 100 and 1,000 routes.
//!
//! `cargo bench --bench router`

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use tower::Service;
use tower_gateway::router::{Route, Router};

/// The cheapest possible route service, so the figures are the router's own.
#[derive(Clone)]
struct Done;

impl Service<Request<()>> for Done {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// `n` routes shaped like a real API: a prefix and an exact `{id}` route per resource, a few
/// with methods, some under their own host.
fn router(n: usize) -> Router<Done> {
    let mut builder = Router::builder();
    for i in 0..n / 2 {
        let mut list = Route::new().path(format!("/api/v1/resource{i}"));
        if i % 3 == 0 {
            list = list.methods([Method::GET, Method::POST]);
        }
        if i % 10 == 9 {
            list = list.host(format!("tenant{i}.example.com"));
        }
        builder = builder.route(list, Done).route(
            Route::new().path(format!("/api/v1/resource{i}/{{id}}")),
            Done,
        );
    }
    builder.build().unwrap()
}

fn request(path: &str) -> Request<()> {
    Request::get(path)
        .header("host", "api.example.com")
        .body(())
        .unwrap()
}

fn call(router: &mut Router<Done>, req: Request<()>) -> u16 {
    let mut cx = Context::from_waker(Waker::noop());
    let fut = pin!(router.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => res.status().as_u16(),
        _ => unreachable!("the router answers synchronously here"),
    }
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router");
    for n in [10, 100, 1000] {
        let mut r = router(n);
        let last = n / 2 - 1;
        let cases = [
            ("prefix-hit", format!("/api/v1/resource{last}/items?page=2")),
            ("param-hit", format!("/api/v1/resource{last}/12345")),
            ("miss-404", "/nothing/here".to_owned()),
        ];
        for (name, path) in cases {
            assert!(call(&mut r, request(&path)) > 0);
            group.bench_with_input(BenchmarkId::new(name, n), &path, |b, path| {
                b.iter_batched(
                    || request(path),
                    |req| call(&mut r, req),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
