//! The hostile side of the soak test (`benches/soak/run.sh`): every class of attack of
//! `tests/hostile.rs`, run in loops against a gateway for a while, from one loopback address.
//!
//!     soak-hostile GATEWAY_ADDR SECONDS [SOURCE_IP]
//!
//! Prints one line per class: what was tried and what came back. A line marked `WRONG` is an
//! answer the gateway must never give (a 5xx to a client's own fault, a 101 to h2c). Only
//! ever targets the address it is given; stops by itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

#[derive(Default)]
struct Count {
    tried: AtomicU64,
    ok: AtomicU64,
    wrong: AtomicU64,
}

impl Count {
    fn tried(&self) {
        self.tried.fetch_add(1, Ordering::Relaxed);
    }
    fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }
    fn wrong(&self, what: &str) {
        if self.wrong.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("WRONG: {what}");
        }
    }
    fn line(&self, class: &str, ok_means: &str) {
        println!(
            "{class:<22} tried {:>9}  {ok_means} {:>9}  WRONG {}",
            self.tried.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.wrong.load(Ordering::Relaxed)
        );
    }
}

#[derive(Clone)]
struct Target {
    gateway: SocketAddr,
    source: IpAddr,
    until: Instant,
}

impl Target {
    async fn connect(&self) -> Option<TcpStream> {
        let socket = match self.source {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .ok()?;
        socket.bind(SocketAddr::new(self.source, 0)).ok()?;
        tokio::time::timeout(Duration::from_secs(5), socket.connect(self.gateway))
            .await
            .ok()?
            .ok()
    }

    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// Sends `request`, half-closes, and reads the reply (status code, or 0 for a close).
    async fn exchange(&self, request: &[u8], wait: Duration) -> Option<u16> {
        let mut stream = self.connect().await?;
        stream.write_all(request).await.ok()?;
        let _ = stream.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
        Some(status(&out))
    }
}

fn status(reply: &[u8]) -> u16 {
    reply
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Sockets that trickle a request head, one byte a second, reconnecting when cut.
async fn slowloris(t: Target, count: Arc<Count>) {
    let head = b"GET /api/legit HTTP/1.1\r\nhost: soak\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    while t.running() {
        let Some(mut stream) = t.connect().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        count.tried();
        let started = Instant::now();
        for byte in head.iter() {
            if stream.write_all(&[*byte]).await.is_err() || !t.running() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // The head never completes in time: it must have been cut.
        if started.elapsed() < Duration::from_secs(head.len() as u64) {
            count.ok();
        } else if t.running() {
            count.wrong("a trickled head was served to the end");
        }
    }
}

/// Requests whose body stalls: never a 5xx.
async fn stalled_bodies(t: Target, count: Arc<Count>) {
    while t.running() {
        let Some(mut stream) = t.connect().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        count.tried();
        let _ = stream
            .write_all(
                b"POST /api/legit HTTP/1.1\r\nhost: soak\r\ncontent-length: 1000\r\n\r\nstalled",
            )
            .await;
        let mut out = vec![0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut out)).await;
        match read {
            // 408, a close, or the upstream's own answer if it did not wait for the body;
            // never a 5xx.
            Ok(Ok(n)) => match status(&out[..n]) {
                500.. => count.wrong(&format!("a stalled body answered {}", status(&out[..n]))),
                _ => count.ok(),
            },
            _ => count.wrong("a stalled body was never answered"),
        }
    }
}

/// Broken chunk sizes and framing: never a 5xx.
async fn malformed(t: Target, count: Arc<Count>) {
    let sizes = [
        "0x5",
        "+5",
        "-5",
        " 5",
        "0_5",
        "",
        "5junk",
        "11111111111111111",
        "z",
    ];
    let mut i = 0;
    while t.running() {
        let size = sizes[i % sizes.len()];
        i += 1;
        let request = format!(
            "POST /api/legit HTTP/1.1\r\nhost: soak\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n{size}\r\nhello\r\n0\r\n\r\n"
        );
        count.tried();
        match t
            .exchange(request.as_bytes(), Duration::from_secs(30))
            .await
        {
            // 400, a close, or the upstream's own answer if it did not read the body; never
            // a 5xx.
            Some(other @ 500..) => count.wrong(&format!("chunk size {size:?} answered {other}")),
            Some(_) => count.ok(),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// h2c upgrade attempts: served plain, never switched.
async fn smuggling(t: Target, count: Arc<Count>) {
    let request = b"GET /api/legit HTTP/1.1\r\nhost: soak\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    while t.running() {
        count.tried();
        match t.exchange(request, Duration::from_secs(30)).await {
            Some(101) => count.wrong("h2c was switched to"),
            Some(_) => count.ok(),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// As many idle connections as the gateway lets one address hold.
async fn connection_flood(t: Target, count: Arc<Count>) {
    let mut held: Vec<TcpStream> = Vec::new();
    while t.running() {
        for _ in 0..100 {
            count.tried();
            if let Some(stream) = t.connect().await {
                held.push(stream);
            }
        }
        // Keep what the gateway kept; count the ones it closed at once.
        let mut kept = Vec::with_capacity(held.len());
        for mut stream in held.drain(..) {
            let mut probe = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => count.ok(),
                _ => kept.push(stream),
            }
        }
        held = kept;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Rate-limited requests under ever new keys, on keep-alive connections.
async fn key_flood(t: Target, count: Arc<Count>, seed: u64) {
    let mut key = seed;
    while t.running() {
        let Some(stream) = t.connect().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (mut read, mut write) = stream.into_split();
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..1000 {
            if !t.running() {
                break;
            }
            key = key
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let request =
                format!("GET /api/limited HTTP/1.1\r\nhost: soak\r\nx-key: {key:x}\r\n\r\n");
            count.tried();
            if write.write_all(request.as_bytes()).await.is_err() {
                break;
            }
            match read.read(&mut buf).await {
                Ok(n) if n > 0 => match status(&buf[..n]) {
                    200 | 429 => count.ok(),
                    other => count.wrong(&format!("a flooding key answered {other}")),
                },
                _ => break,
            }
        }
    }
}

/// Pipelined requests whose responses are never read: once the gateway's writes block, it
/// must close the connection within its send timeout (the soak runs it at 10 s).
async fn non_readers(t: Target, count: Arc<Count>) {
    let requests = b"GET /api/legit HTTP/1.1\r\nhost: soak\r\n\r\n".repeat(1000);
    while t.running() {
        let Some(mut stream) = t.connect().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Write until the gateway stops taking requests: it cannot send the answers.
        let mut stalled = false;
        while t.running() {
            match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&requests)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    stalled = true;
                    break;
                }
            }
        }
        if !stalled {
            continue;
        }
        count.tried();
        // Without ever reading, wait for the gateway to give up on us: once it has worked off
        // what it could and its writes block, it closes within its send timeout, and our
        // next write fails (it reset the connection).
        let since = Instant::now();
        let mut closed = false;
        while since.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let probe = b"GET /api/legit HTTP/1.1\r\nhost: soak\r\n\r\n";
            if let Ok(Err(_)) =
                tokio::time::timeout(Duration::from_secs(1), stream.write_all(probe)).await
            {
                closed = true;
                break;
            }
        }
        if closed {
            count.ok();
        } else {
            count.wrong("a client that stopped reading was kept for 3 minutes");
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(gateway), Some(seconds)) = (args.next(), args.next()) else {
        eprintln!("usage: soak-hostile GATEWAY_ADDR SECONDS [SOURCE_IP]");
        std::process::exit(2);
    };
    let gateway: SocketAddr = gateway.parse().expect("a gateway address");
    let source: IpAddr = args
        .next()
        .map(|ip| ip.parse().expect("a source address"))
        .unwrap_or(IpAddr::from([127, 0, 0, 2]));
    assert!(
        gateway.ip().is_loopback() && source.is_loopback(),
        "loopback addresses only"
    );
    let seconds: u64 = seconds.parse().expect("seconds");
    let t = Target {
        gateway,
        source,
        until: Instant::now() + Duration::from_secs(seconds),
    };
    let names = [
        ("slowloris", "cut"),
        ("stalled bodies", "not 5xx"),
        ("malformed framing", "not 5xx"),
        ("h2c smuggling", "plain"),
        ("connection flood", "closed"),
        ("key flood", "200/429"),
        ("non-reading clients", "closed"),
    ];
    let counts: Vec<Arc<Count>> = names.iter().map(|_| Arc::default()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        tasks.spawn(slowloris(t.clone(), counts[0].clone()));
    }
    for _ in 0..10 {
        tasks.spawn(stalled_bodies(t.clone(), counts[1].clone()));
    }
    for _ in 0..2 {
        tasks.spawn(malformed(t.clone(), counts[2].clone()));
        tasks.spawn(smuggling(t.clone(), counts[3].clone()));
    }
    tasks.spawn(connection_flood(t.clone(), counts[4].clone()));
    for seed in 0..2 {
        tasks.spawn(key_flood(t.clone(), counts[5].clone(), seed));
    }
    for _ in 0..4 {
        tasks.spawn(non_readers(t.clone(), counts[6].clone()));
    }
    // Every loop checks the clock; the slowest waits at most one timeout past the end.
    let grace = Duration::from_secs(150);
    let _ = tokio::time::timeout_at(t.until + grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    for ((class, ok_means), count) in names.iter().zip(&counts) {
        count.line(class, ok_means);
    }
    let wrong: u64 = counts.iter().map(|c| c.wrong.load(Ordering::Relaxed)).sum();
    println!("hostile answers that must never happen: {wrong}");
}
