//! CPU time per request as the configuration grows: routes (1 to 10 000), key-auth consumers
//! (1 to 100 000), and targets behind one upstream (1 to 1 000, round-robin).
//!
//! `cargo bench --features config,metrics --bench scale` (`ROUNDS=9` for more rounds)
//!
//! Everything runs on one current-thread runtime over loopback (see `support/inproc.rs`): the
//! time per request is the CPU time of client, gateway and upstream together, so a growing
//! configuration shows as the difference to its smallest size, measured in the same
//! interleaved rounds (medians).

use std::net::SocketAddr;

#[path = "support/inproc.rs"]
mod inproc;

use inproc::{Run, Wrap, median, per_request, serve_gateway, upstream};

/// A configuration to serve: its file, the request's path and headers.
type Setup = (String, String, Vec<(&'static str, String)>);

/// `count` prefix routes `/r<i>` on one service; the request goes to the middle one.
fn routes(up: SocketAddr, count: usize) -> Setup {
    let mut yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: backend\n    url: http://{up}\n    routes:\n"
    );
    for i in 0..count {
        yaml.push_str(&format!("      - name: r{i}\n        paths: [\"/r{i}\"]\n"));
    }
    (yaml, format!("/r{}/users", count / 2), Vec::new())
}

/// key-auth on the service and `count` consumers with a key each; the request carries the
/// middle one's.
fn consumers(up: SocketAddr, count: usize) -> Setup {
    let mut yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: backend\n    url: http://{up}\n    routes:\n      - name: all\n        paths: [\"/\"]\n    plugins:\n      - name: key-auth\nconsumers:\n"
    );
    for i in 0..count {
        yaml.push_str(&format!(
            "  - username: c{i}\n    keyauth_credentials:\n      - key: key-{i}\n"
        ));
    }
    (
        yaml,
        "/users".into(),
        vec![("apikey", format!("key-{}", count / 2))],
    )
}

/// One upstream with `targets` (each a listener of its own), round-robin; or, `hashed`,
/// consistent hashing on a header every request carries with the same value (so every
/// request goes to one target: the balancer's cost without the spread over connections).
fn targets(targets: &[SocketAddr], hashed: bool) -> Setup {
    let algorithm = if hashed {
        "consistent-hashing\n    hash_on: header\n    hash_on_header: x-user"
    } else {
        "round-robin"
    };
    let mut yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: backend\n    algorithm: {algorithm}\n    targets:\n"
    );
    for t in targets {
        yaml.push_str(&format!("      - target: {t}\n"));
    }
    yaml.push_str("services:\n  - name: api\n    url: http://backend\n    routes:\n      - name: all\n        paths: [\"/\"]\n");
    (yaml, "/users".into(), vec![("x-user", "bench".to_owned())])
}

/// Measures each configuration in interleaved rounds and prints one table row per size.
async fn table(title: &str, unit: &str, configs: Vec<(usize, Setup)>, rounds: usize) {
    let mut served = Vec::new();
    for (size, (yaml, path, headers)) in &configs {
        let started = std::time::Instant::now();
        let addr = serve_gateway(yaml, Wrap::Nothing).await;
        served.push((
            *size,
            addr,
            path.clone(),
            headers.clone(),
            started.elapsed(),
        ));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); served.len()];
    for _ in 0..rounds {
        for (i, (size, addr, path, headers, _)) in served.iter().enumerate() {
            let run = Run {
                path,
                headers,
                // Every target gets a connection before the clock starts.
                warm_up: 200 + 2 * *size as u64,
                ..Run::default()
            };
            times[i].push(per_request(*addr, run).await.1);
        }
    }
    println!("{title}");
    println!("| {unit} | µs per request | × the smallest | configuration built in |");
    println!("| --- | --- | --- | --- |");
    let base: Vec<f64> = times[0].clone();
    for (i, (size, _, _, _, built)) in served.iter().enumerate() {
        let ratios: Vec<f64> = times[i].iter().zip(&base).map(|(t, b)| t / b).collect();
        println!(
            "| {size} | {:.1} | {:.3} | {:.0} ms |",
            median(times[i].clone()),
            median(ratios),
            built.as_secs_f64() * 1000.0
        );
    }
    println!();
}

fn main() {
    let rounds = inproc::rounds();
    inproc::block_on(async {
        let up = upstream().await;
        println!(
            "CPU time per request (client, gateway and upstream on one thread; medians of {rounds} interleaved rounds)\n"
        );
        table(
            "Routes (prefix routes on one service, the request matching the middle one)",
            "routes",
            [1, 100, 10_000].map(|n| (n, routes(up, n))).into(),
            rounds,
        )
        .await;
        table(
            "key-auth consumers (one key each, the request carrying the middle one's)",
            "consumers",
            [1, 1_000, 100_000].map(|n| (n, consumers(up, n))).into(),
            rounds,
        )
        .await;
        let mut listeners = Vec::new();
        for _ in 0..1_000 {
            listeners.push(upstream().await);
        }
        table(
            "Targets behind one upstream (round-robin; each target a listener of its own)",
            "targets",
            [1, 10, 1_000]
                .map(|n| (n, targets(&listeners[..n], false)))
                .into(),
            rounds,
        )
        .await;
        table(
            "Targets behind one upstream, consistent hashing on a header all requests share (one target serves)",
            "targets",
            [1, 10, 1_000]
                .map(|n| (n, targets(&listeners[..n], true)))
                .into(),
            rounds,
        )
        .await;
    });
}
