//! Heap allocations and CPU time per proxied request: the bare hyper proxy (hyper-util's
//! pooled client, as `benches/load/bare_proxy.rs`), the gateway on the proxy path alone, and
//! the gateway with each built-in plugin and observability layer.
//!
//! `cargo bench --features config,metrics --bench allocations` (`ROUNDS=9` for more rounds)
//!
//! A counting global allocator counts every allocation of the process; everything runs on
//! one current-thread runtime over loopback (a keep-alive client, the proxy, a hyper
//! upstream), and the proxy's share is the count per request minus the count of the client
//! talking to the upstream directly. Allocation counts are exact and repeatable.
//!
//! The time per request is wall time on that one thread, so it is the CPU time of client,
//! proxy and upstream together (loopback TCP is processed in the sending thread's system
//! calls): a plugin's cost is its configuration's time minus the proxy-only gateway's, in the
//! same round, minus what the client's extra headers (an API key, a token) cost the client
//! and the upstream without the gateway; the median over interleaved rounds. The figures go
//! to the README.
//!
//! `PROFILE=<case name prefix>` runs only that case, long enough to profile (`perf record`).
//! `ALLOC_TRACE=<case name prefix>` instead prints where each allocation of one request
//! through that case is made (a backtrace per allocation, the crate's frames and the
//! allocating callee), client's and upstream's included: what to cut next.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Counts allocations (and reallocations) on top of the system allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Whether allocations are being traced (`ALLOC_TRACE`).
static TRACING: AtomicBool = AtomicBool::new(false);

/// The traced allocations' backtraces.
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while a trace is being taken (its own allocations are not traced).
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// Records where the allocation being made comes from, when tracing.
fn trace() {
    if !TRACING.load(Ordering::Relaxed) || IN_TRACE.with(Cell::get) {
        return;
    }
    IN_TRACE.with(|t| t.set(true));
    let backtrace = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = backtrace
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("at "))
        .map(|l| l.split_once(": ").map_or(l, |(_, f)| f))
        .filter(|f| {
            !f.starts_with("std::")
                && !f.starts_with("alloc::")
                && !f.starts_with("core::")
                && !f.starts_with("<alloc::")
                && !f.starts_with("allocations::")
                && !f.starts_with("__rust")
                && !f.starts_with("<allocations::")
        })
        .collect();
    // The allocating callee and the frames of this crate (or the first few, without one).
    let ours: Vec<&str> = frames
        .iter()
        .copied()
        .filter(|f| f.contains("tower_gateway"))
        .take(3)
        .collect();
    let shown = if ours.is_empty() {
        frames
            .iter()
            .take(4)
            .copied()
            .collect::<Vec<_>>()
            .join("\n    <- ")
    } else {
        format!(
            "{}\n    <- {}",
            if std::env::var_os("ALLOC_TRACE_FULL").is_some() {
                frames.join("\n    <- ")
            } else {
                frames.first().copied().unwrap_or("?").to_owned()
            },
            ours.join("\n    <- ")
        )
    };
    TRACES.lock().unwrap().push(shown);
    IN_TRACE.with(|t| t.set(false));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace();
        // SAFETY: as `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: u64 = 2_000;
const WARM_UP: u64 = 200;

#[path = "support/inproc.rs"]
mod inproc;

use inproc::{Run, Wrap, median, per_request, serve_gateway, upstream};

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The allocation count, turning tracing on (read before a run) or off (read after it).
fn toggle_tracing() -> u64 {
    TRACING.fetch_xor(true, Ordering::Relaxed);
    allocations()
}

/// Prints where one request through `addr` allocates.
async fn print_trace(name: &str, addr: SocketAddr, case: &Case) {
    let run = Run {
        requests: 1,
        warm_up: WARM_UP,
        headers: &case.headers,
        varying: case.varying.as_ref(),
        counter: toggle_tracing,
        ..Run::default()
    };
    let (count, _) = per_request(addr, run).await;
    println!("{count} allocations in one request through {name:?} (client and upstream included):");
    for (i, trace) in TRACES.lock().unwrap().drain(..).enumerate() {
        println!("{:>3}. {trace}", i + 1);
    }
}

/// A run with `headers`, counting allocations.
fn counted<'a>(
    headers: &'a [(&'a str, String)],
    varying: Option<&'a (&'a str, Vec<String>)>,
) -> Run<'a> {
    Run {
        requests: REQUESTS,
        warm_up: WARM_UP,
        headers,
        varying,
        counter: allocations,
        ..Run::default()
    }
}

/// The gateway with `plugins` (YAML under the service) in front of `upstream` (or, with
/// `targets`, of an upstream balancing over them), wrapped in `wrap`.
async fn gateway(
    upstream: SocketAddr,
    targets: &[SocketAddr],
    plugins: &str,
    wrap: Wrap,
) -> SocketAddr {
    let (upstreams, url) = if targets.is_empty() {
        (String::new(), upstream.to_string())
    } else {
        let mut block = "upstreams:\n  - name: balanced\n    targets:\n".to_owned();
        for target in targets {
            block.push_str(&format!("      - target: {target}\n"));
        }
        (block, "balanced".to_owned())
    };
    let yaml = format!(
        r#"_format_version: "3.0"
{upstreams}services:
  - name: backend
    url: http://{url}
    routes:
      - name: everything
        paths: ["/"]
{plugins}
consumers:
  - username: bench
    keyauth_credentials:
      - key: bench-key
    jwt_secrets:
      - key: bench-issuer
        secret: bench-secret
"#
    );
    serve_gateway(&yaml, wrap).await
}

/// The bare hyper proxy of `benches/load/bare_proxy.rs`.
async fn bare_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{path}");
                    *req.uri_mut() = uri.parse().unwrap();
                    client.request(req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A configuration to measure.
struct Case {
    name: &'static str,
    /// The plugins under the service (YAML).
    plugins: String,
    wrap: Wrap,
    headers: Vec<(&'static str, String)>,
    /// A header whose value changes with every request.
    varying: Option<(&'static str, Vec<String>)>,
    /// Balanced over three upstream targets (Kong's default 5 retries) instead of one URL.
    balanced: bool,
}

impl Case {
    fn new(name: &'static str, plugins: &str) -> Self {
        Self {
            name,
            plugins: plugins.to_owned(),
            wrap: Wrap::Nothing,
            headers: Vec::new(),
            varying: None,
            balanced: false,
        }
    }

    fn balanced(mut self) -> Self {
        self.balanced = true;
        self
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The upstream targets to balance over (none: the one upstream's URL).
    fn targets<'a>(&self, targets: &'a [SocketAddr]) -> &'a [SocketAddr] {
        if self.balanced { targets } else { &[] }
    }

    fn wrap(mut self, wrap: Wrap) -> Self {
        self.wrap = wrap;
        self
    }
}

fn rate_limit(config: &str) -> String {
    format!(
        "    plugins:\n      - name: rate-limiting\n        config:\n          limit_by: ip\n{config}"
    )
}

fn jwt(issuer: &str, secret: &str) -> String {
    jwt_with(issuer, secret, 0)
}

/// A token for `issuer`; `n` makes each one different (a cache miss each).
fn jwt_with(issuer: &str, secret: &str, n: u64) -> String {
    let claims = serde_json::json!({ "iss": issuer, "n": n });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn main() {
    inproc::block_on(async {
        let up = upstream().await;
        let targets = [up, upstream().await, upstream().await];
        let direct = per_request(up, counted(&[], None)).await;
        let bare = per_request(bare_proxy(up).await, counted(&[], None)).await;
        println!("allocations per request (the proxy's: minus the client and upstream's own)");
        println!("| configuration | allocations | over the bare hyper proxy |");
        println!("| --- | --- | --- |");
        println!(
            "| client and upstream alone | {:.1} (baseline) | |",
            direct.0
        );
        println!("| bare hyper proxy | {:.1} | |", bare.0 - direct.0);
        let token = jwt("bench-issuer", "bench-secret");
        let fresh: Vec<String> = (0..REQUESTS + WARM_UP)
            .map(|n| format!("Bearer {}", jwt_with("bench-issuer", "bench-secret", n + 1)))
            .collect();
        let mut miss = Case::new(
            "gateway + jwt (token cache miss: HS256 verified)",
            "    plugins:\n      - name: jwt\n",
        );
        miss.varying = Some(("authorization", fresh));
        let cases = vec![
            Case::new("gateway, proxy only", ""),
            Case::new("gateway + key-auth", "    plugins:\n      - name: key-auth\n")
                .header("apikey", "bench-key".to_owned()),
            Case::new("gateway + jwt (cached token)", "    plugins:\n      - name: jwt\n")
                .header("authorization", format!("Bearer {token}")),
            miss,
            Case::new(
                "gateway + rate-limiting (fixed window, local)",
                &rate_limit("          second: 1000000000\n"),
            ),
            Case::new(
                "gateway + rate-limiting (sliding window)",
                &rate_limit("          second: 1000000000\n          algorithm: sliding-window\n"),
            ),
            Case::new(
                "gateway + rate-limiting (sliding log)",
                &rate_limit("          second: 1000000\n          algorithm: sliding-log\n"),
            ),
            Case::new(
                "gateway + rate-limiting (token bucket)",
                &rate_limit("          second: 1000000000\n          algorithm: token-bucket\n"),
            ),
            Case::new(
                "gateway + rate-limiting (leaky bucket)",
                &rate_limit("          second: 1000000000\n          algorithm: leaky-bucket\n"),
            ),
            Case::new("gateway + circuit-breaker", "    plugins:\n      - name: circuit-breaker\n"),
            Case::new("gateway, round robin over 3 targets (Kong's 5 retries)", "").balanced(),
            Case::new("gateway + prometheus (metrics)", "").wrap(Wrap::Metrics),
            Case::new("gateway + correlation-id (request ids)", "").wrap(Wrap::RequestId),
            Case::new("gateway + access log (combined, LineWriter)", "").wrap(Wrap::AccessLog),
            Case::new("gateway, default settings (ids, access log, metrics)", "").wrap(Wrap::Defaults),
            Case::new(
                "gateway + key-auth, rate-limiting, circuit-breaker",
                "    plugins:\n      - name: key-auth\n      - name: rate-limiting\n        config:\n          second: 1000000000\n      - name: circuit-breaker\n",
            )
            .header("apikey", "bench-key".to_owned()),
        ];
        if let Ok(prefix) = std::env::var("ALLOC_TRACE") {
            if prefix == "bare" {
                let case = Case::new("bare hyper proxy", "");
                return print_trace(case.name, bare_proxy(up).await, &case).await;
            }
            let case = cases
                .iter()
                .find(|c| c.name.starts_with(&prefix))
                .expect("ALLOC_TRACE names a case (or `bare`)");
            let addr = gateway(up, case.targets(&targets), &case.plugins, case.wrap).await;
            return print_trace(case.name, addr, case).await;
        }
        if let Ok(prefix) = std::env::var("PROFILE") {
            let case = cases
                .iter()
                .find(|c| c.name.starts_with(&prefix))
                .expect("PROFILE names a case");
            let addr = gateway(up, case.targets(&targets), &case.plugins, case.wrap).await;
            let run = Run {
                requests: 200_000,
                ..counted(&case.headers, case.varying.as_ref())
            };
            let (_, micros) = per_request(addr, run).await;
            println!("{}: {micros:.1} us per request", case.name);
            return;
        }
        let rounds = inproc::rounds();
        let mut addrs = Vec::new();
        let mut own = Vec::new();
        for case in &cases {
            addrs.push(gateway(up, case.targets(&targets), &case.plugins, case.wrap).await);
            // The client's own extra headers cost the same with or without a proxy.
            own.push(
                per_request(up, counted(&case.headers, case.varying.as_ref()))
                    .await
                    .0
                    - direct.0,
            );
        }
        let mut allocations = vec![0.0; cases.len()];
        let mut added: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        let mut proxy_only = Vec::new();
        for round in 0..rounds {
            let mut times = Vec::new();
            // What the client's extra headers cost the client and the upstream, without the
            // gateway: not the plugin's.
            let mut own_time = Vec::new();
            let bare_direct = per_request(up, counted(&[], None)).await.1;
            for (i, case) in cases.iter().enumerate() {
                let (count, micros) =
                    per_request(addrs[i], counted(&case.headers, case.varying.as_ref())).await;
                if round == 0 {
                    allocations[i] = count - direct.0 - own[i];
                }
                times.push(micros);
                own_time.push(if case.headers.is_empty() && case.varying.is_none() {
                    0.0
                } else {
                    per_request(up, counted(&case.headers, case.varying.as_ref()))
                        .await
                        .1
                        - bare_direct
                });
            }
            proxy_only.push(times[0]);
            for (i, t) in times.iter().enumerate() {
                added[i].push(t - times[0] - own_time[i]);
            }
        }
        for (i, case) in cases.iter().enumerate() {
            println!(
                "| {} | {:.1} | {:+.1} |",
                case.name,
                allocations[i],
                allocations[i] - (bare.0 - direct.0)
            );
        }
        println!();
        println!(
            "CPU time per request over the proxy-only gateway (median of {rounds} interleaved rounds; client, proxy and upstream on one thread, {:.1} us per request through the proxy-only gateway)",
            median(proxy_only)
        );
        println!("| configuration | added us per request |");
        println!("| --- | --- |");
        for (i, case) in cases.iter().enumerate().skip(1) {
            println!("| {} | {:+.2} |", case.name, median(added[i].clone()));
        }
    });
}
