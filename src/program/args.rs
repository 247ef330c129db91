//! The command line.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Settings;
use crate::log::Format;
use crate::proxy::TrustedProxies;
use crate::request_id::RequestIdLayer;

/// What `--help` prints.
pub const HELP: &str = "\
tower-gateway: a Kong-compatible API gateway

USAGE:
    gateway [OPTIONS]

OPTIONS:
    --config FILE           Kong declarative configuration (YAML, _format_version 1.1, 2.1
                            or 3.0). Without it, the program's bundled configuration (the
                            gateway example's: examples/gateway.yaml) runs with a demo
                            upstream started in-process on 127.0.0.1:9001.
    --proxy-listen ADDR     Address of the proxy (default 0.0.0.0:8000; Kong: 8000)
    --proxy-listen-tls ADDR Also serve the proxy over TLS on ADDR (Kong: 8443), HTTP/2 or
                            HTTP/1.1 by ALPN. Needs --tls-cert and --tls-key and the tls
                            feature (cargo run --release --features program,tls --example gateway).
    --tls-cert FILE         A PEM certificate chain for the TLS listener; give several
                            (each followed by its --tls-key) to serve several names by SNI.
                            The configuration's certificates (Kong's certificates and
                            snis) come first for the names they list, and follow every
                            change; the files are the default certificates.
    --tls-key FILE          The PEM private key of the preceding --tls-cert
    --admin-listen ADDR     Address of Kong's Admin API (default 127.0.0.1:8001; Kong:
                            8001): services, routes, consumers, plugins, upstreams, targets
                            and credentials; GET /, /status, /metrics, /config. Changes
                            apply at once, without dropping a request.
    --admin-token TOKEN     Require TOKEN on every Admin API call (Kong-Admin-Token header
                            or Authorization: Bearer)
    --cluster URL           Share the configuration with every gateway started with the same
                            Redis (redis://host:6379/0): an Admin API change on any of them
                            reaches all within a second; keys route:<path> naming a service
                            or upstream add routes. Needs the redis feature
                            (cargo run --release --features program,redis --example gateway).
    --cluster-name NAME     Several clusters on one Redis (default: default)
    --trusted-ips LIST      Comma-separated addresses/CIDR blocks whose X-Forwarded-* headers
                            are believed (Kong's trusted_ips; default: none)
    --keepalive-pool N      Idle upstream connections kept per host and worker (default 512)
    --keepalive-timeout S   Seconds an idle upstream connection is kept (default 60)
    --header-timeout S      Seconds a client may take to send a request head, from the accept
                            or the head's first byte, never extended (default 30; nginx
                            client_header_timeout)
    --client-keepalive-timeout S
                            Seconds a client connection may sit idle between requests
                            (default 60; nginx keepalive_timeout)
    --client-body-timeout S Seconds a request body may stall between two reads; then 408
                            (default 60; nginx client_body_timeout)
    --client-body-total-timeout S
                            Seconds a whole request body may take; then 408 (default: no
                            limit; Envoy request_timeout)
    --send-timeout S        Seconds a response write may wait for a client that does not
                            read (default 60; nginx send_timeout)
    --max-connections N     Client connections open at once; more are closed at accept
                            (default 10000; nginx worker_connections)
    --max-connections-per-ip N
                            Client connections open at once from one address (default: no
                            limit; nginx limit_conn)
    --upgrade-protocols LIST
                            Comma-separated Upgrade protocols forwarded to upstreams
                            (default websocket; h2c never is)
    --runtime MODE          thread-per-core (default: one thread per worker, each with its
                            own listener (SO_REUSEPORT), runtime and upstream connections;
                            a connection stays on the thread that accepted it) or
                            work-stealing (one tokio multi-thread runtime; tasks move to
                            idle threads, for a few long, busy connections)
    --workers N|auto        Proxy threads (default auto: one per core; nginx
                            worker_processes)
    --max-header-size BYTES Largest request head accepted, larger gets 431 (default 32768)
    --grace-period S        Seconds in-flight requests may finish after SIGINT/SIGTERM
                            (default 30)
    --access-log FORMAT     combined (default: nginx's combined format plus latency, route
                            and request id), json (every log line, access log included, as
                            JSON), or off
    --request-id MODE       keep (default: forward the client's X-Request-Id or generate one,
                            and echo it in the response), overwrite (always generate), or off
    --metrics on|off        Prometheus metrics at GET /metrics on the admin listener (default
                            on)
    --check                 Check the configuration, print the routes and exit
    -h, --help              Print this help

RELOAD:
    With --config, the file is read again on SIGHUP and when it changes (checked every
    second); a file that does not load is logged and the running configuration stays. A
    reload replaces changes made through the Admin API, as Kong's DB-less mode does.

ENVIRONMENT:
    RUST_LOG                Log filter (default: info), e.g. RUST_LOG=tower_gateway=debug

EXIT CODES:
    0 clean shutdown, 1 runtime error (e.g. an address in use), 2 invalid arguments or
    configuration (nothing was started)
";

#[derive(Debug)]
pub(super) struct Args {
    pub(super) config: Option<String>,
    pub(super) proxy_listen: SocketAddr,
    pub(super) admin_listen: SocketAddr,
    pub(super) settings: Settings,
    pub(super) edge: Edge,
    pub(super) check: bool,
    pub(super) access_log: Option<Format>,
    pub(super) request_id: Option<RequestIdLayer>,
    /// The access log, as the program sets it up from `access_log` and the file-log plugin.
    pub(super) access: Option<crate::log::AccessLogLayer>,
    pub(super) metrics: bool,
    pub(super) admin_token: Option<String>,
    pub(super) cluster: Option<String>,
    pub(super) cluster_name: String,
    pub(super) proxy_listen_tls: Option<SocketAddr>,
    /// Certificate and key files, in pairs.
    pub(super) tls_files: Vec<(String, Option<String>)>,
}

pub(super) fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        proxy_listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
        settings: Settings::default(),
        edge: Edge::default(),
        check: false,
        access_log: Some(Format::Combined),
        request_id: Some(RequestIdLayer::new()),
        access: None,
        metrics: true,
        admin_token: None,
        cluster: None,
        cluster_name: "default".into(),
        proxy_listen_tls: None,
        tls_files: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let secs = |v: String, name: &str| {
            v.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{name}: {v:?} is not a whole number of seconds"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--config" => args.config = Some(value("--config")?),
            "--proxy-listen" => {
                args.proxy_listen = addr(value("--proxy-listen")?, "--proxy-listen")?
            }
            "--admin-listen" => {
                args.admin_listen = addr(value("--admin-listen")?, "--admin-listen")?
            }
            "--trusted-ips" => {
                args.settings.trusted_proxies = value("--trusted-ips")?
                    .parse::<TrustedProxies>()
                    .map_err(|e| format!("--trusted-ips: {e}"))?;
            }
            "--keepalive-pool" => {
                let v = value("--keepalive-pool")?;
                args.settings.max_idle_per_host = v
                    .parse()
                    .map_err(|_| format!("--keepalive-pool: {v:?} is not a number"))?;
            }
            "--keepalive-timeout" => {
                args.settings.idle_timeout =
                    secs(value("--keepalive-timeout")?, "--keepalive-timeout")?;
            }
            "--header-timeout" => {
                args.edge.header_timeout = secs(value("--header-timeout")?, "--header-timeout")?
            }
            "--max-header-size" => {
                let v = value("--max-header-size")?;
                args.edge.max_header_size =
                    v.parse().ok().filter(|n| *n >= 1024).ok_or_else(|| {
                        format!("--max-header-size: {v:?} is not a number of bytes >= 1024")
                    })?;
            }
            "--grace-period" => {
                args.edge.grace_period = secs(value("--grace-period")?, "--grace-period")?
            }
            "--client-keepalive-timeout" => {
                let flag = "--client-keepalive-timeout";
                args.edge.keep_alive_timeout = secs(value(flag)?, flag)?;
            }
            "--client-body-timeout" => {
                let flag = "--client-body-timeout";
                args.edge.body.between_reads = secs(value(flag)?, flag)?;
            }
            "--client-body-total-timeout" => {
                let flag = "--client-body-total-timeout";
                args.edge.body.total = Some(secs(value(flag)?, flag)?);
            }
            "--send-timeout" => {
                args.edge.send_timeout = secs(value("--send-timeout")?, "--send-timeout")?;
            }
            "--max-connections" => {
                args.edge.max_connections =
                    count(value("--max-connections")?, "--max-connections")?;
            }
            "--runtime" => {
                args.edge.runtime = match value("--runtime")?.as_str() {
                    "thread-per-core" => Runtime::ThreadPerCore,
                    "work-stealing" => Runtime::WorkStealing,
                    other => {
                        return Err(format!(
                            "--runtime: {other:?} is not thread-per-core or work-stealing"
                        ));
                    }
                };
            }
            "--workers" => {
                let v = value("--workers")?;
                args.edge.workers = match v.as_str() {
                    "auto" => Edge::default().workers,
                    _ => count(v, "--workers")?,
                };
            }
            "--max-connections-per-ip" => {
                let flag = "--max-connections-per-ip";
                args.edge.max_connections_per_ip = Some(count(value(flag)?, flag)?);
            }
            "--upgrade-protocols" => {
                let list = value("--upgrade-protocols")?;
                let protocols: Vec<String> = list
                    .split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                if let Some(bad) = protocols.iter().find(|p| {
                    p.eq_ignore_ascii_case("h2c") || http::HeaderValue::from_str(p).is_err()
                }) {
                    return Err(format!(
                        "--upgrade-protocols: {bad:?} cannot be forwarded (h2c never is)"
                    ));
                }
                args.settings.upgrade_protocols = protocols;
            }
            "--check" => args.check = true,
            "--cluster" => {
                let url = value("--cluster")?;
                if !cfg!(feature = "redis") {
                    return Err(
                        "--cluster needs the redis feature: cargo run --release --features program,redis --example gateway".into(),
                    );
                }
                if !url.starts_with("redis://") {
                    return Err(format!("--cluster: {url:?} is not a redis:// URL"));
                }
                args.cluster = Some(url);
            }
            "--cluster-name" => args.cluster_name = value("--cluster-name")?,
            "--proxy-listen-tls" => {
                if !cfg!(feature = "tls") {
                    return Err(
                        "--proxy-listen-tls needs the tls feature: cargo run --release --features program,tls --example gateway".into(),
                    );
                }
                args.proxy_listen_tls =
                    Some(addr(value("--proxy-listen-tls")?, "--proxy-listen-tls")?);
            }
            "--tls-cert" => args.tls_files.push((value("--tls-cert")?, None)),
            "--tls-key" => {
                let key = value("--tls-key")?;
                match args.tls_files.last_mut() {
                    Some((_, slot @ None)) => *slot = Some(key),
                    _ => return Err("--tls-key must follow its --tls-cert".into()),
                }
            }
            "--admin-token" => {
                let token = value("--admin-token")?;
                if token.is_empty() {
                    return Err("--admin-token must not be empty".into());
                }
                args.admin_token = Some(token);
            }
            "--metrics" => {
                args.metrics = match value("--metrics")?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--metrics: {other:?} is not on or off")),
                };
            }
            "--request-id" => {
                args.request_id = match value("--request-id")?.as_str() {
                    "keep" => Some(RequestIdLayer::new()),
                    "overwrite" => Some(RequestIdLayer::new().overwrite(true)),
                    "off" => None,
                    other => {
                        return Err(format!(
                            "--request-id: {other:?} is not keep, overwrite or off"
                        ));
                    }
                };
            }
            "--access-log" => {
                args.access_log = match value("--access-log")?.as_str() {
                    "combined" => Some(Format::Combined),
                    "json" => Some(Format::Json),
                    "off" => None,
                    other => {
                        return Err(format!(
                            "--access-log: {other:?} is not combined, json or off"
                        ));
                    }
                };
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if args.tls_files.iter().any(|(_, key)| key.is_none()) {
        return Err("every --tls-cert needs its --tls-key".into());
    }
    Ok(Some(args))
}

/// A positive whole number.
fn count(value: String, flag: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag}: {value:?} is not a positive whole number"))
}

/// How the proxy listeners treat clients: timeouts, caps, grace period.
#[derive(Debug, Clone)]
pub(super) struct Edge {
    pub(super) header_timeout: Duration,
    pub(super) keep_alive_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) body: crate::body::BodyTimeouts,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_ip: Option<usize>,
    pub(super) max_header_size: usize,
    pub(super) grace_period: Duration,
    pub(super) runtime: Runtime,
    /// Threads serving the proxy (thread per core) or running the runtime (work stealing).
    pub(super) workers: usize,
}

/// How the proxy's connections are spread over threads (`--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Runtime {
    /// One current-thread runtime per worker thread, each with its own listener; the
    /// Admin API and background tasks on a runtime of their own.
    ThreadPerCore,
    /// One multi-thread (work-stealing) runtime for everything.
    WorkStealing,
}

impl Default for Edge {
    fn default() -> Self {
        use crate::server;
        Self {
            header_timeout: server::DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: server::DEFAULT_KEEP_ALIVE_TIMEOUT,
            send_timeout: server::DEFAULT_SEND_TIMEOUT,
            body: crate::body::BodyTimeouts::DEFAULT,
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: None,
            max_header_size: server::DEFAULT_MAX_HEADER_SIZE,
            grace_period: server::DEFAULT_GRACE_PERIOD,
            runtime: Runtime::ThreadPerCore,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl Edge {
    /// A proxy listener on `addr`: one that the workers' own listeners may join, thread per
    /// core.
    pub(super) async fn bind(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        match self.runtime {
            Runtime::ThreadPerCore => crate::server::bind_reuse_port(addr),
            Runtime::WorkStealing => tokio::net::TcpListener::bind(addr).await,
        }
    }

    /// A proxy listener's server with these settings.
    pub(super) fn server(&self, listener: tokio::net::TcpListener) -> crate::server::Server {
        let server = crate::server::Server::from_listener(listener)
            .header_read_timeout(self.header_timeout)
            .keep_alive_timeout(self.keep_alive_timeout)
            .send_timeout(self.send_timeout)
            .body_timeouts(self.body)
            .max_connections(self.max_connections)
            .max_header_size(self.max_header_size)
            .grace_period(self.grace_period)
            .worker_threads(match self.runtime {
                Runtime::ThreadPerCore => self.workers,
                Runtime::WorkStealing => 0,
            });
        match self.max_connections_per_ip {
            Some(max) => server.max_connections_per_ip(max),
            None => server,
        }
    }
}

fn addr(value: String, flag: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not an address such as 0.0.0.0:8000"))
}
