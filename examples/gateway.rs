//! The bundled gateway: a Kong-compatible declarative file in, a running proxy out.
//!
//! ```text
//! cargo run --release --example gateway                      # bundled config + demo upstream
//! cargo run --release --example gateway -- --config kong.yaml
//! ```
//!
//! See `--help` for every option.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::util::option_layer;
use tower::{ServiceBuilder, service_fn};
use tower_gateway::config::{Config, Gateway, ServiceBalancer, Settings};
use tower_gateway::log::{AccessLogLayer, Format};
use tower_gateway::metrics::{Metrics, MetricsLayer};
use tower_gateway::proxy::TrustedProxies;
use tower_gateway::request_id::RequestIdLayer;
use tower_gateway::server::{ConnectionStats, Server, shutdown_signal};

const HELP: &str = "\
tower-gateway example: a Kong-compatible API gateway

USAGE:
    gateway [OPTIONS]

OPTIONS:
    --config FILE           Kong declarative configuration (YAML, _format_version 1.1, 2.1
                            or 3.0). Without it, the bundled examples/gateway.yaml runs with
                            a demo upstream started in-process on 127.0.0.1:9001.
    --proxy-listen ADDR     Address of the proxy (default 0.0.0.0:8000; Kong: 8000)
    --admin-listen ADDR     Address of the Admin API (default 127.0.0.1:8001; Kong: 8001).
                            GET / (node information), GET /status, GET /metrics and
                            GET /upstreams/{name}/health are served.
    --trusted-ips LIST      Comma-separated addresses/CIDR blocks whose X-Forwarded-* headers
                            are believed (Kong's trusted_ips; default: none)
    --keepalive-pool N      Idle upstream connections kept per host (default 512)
    --keepalive-timeout S   Seconds an idle upstream connection is kept (default 60)
    --header-timeout S      Seconds a client may take to send its request head (default 30)
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

ENVIRONMENT:
    RUST_LOG                Log filter (default: info), e.g. RUST_LOG=tower_gateway=debug

EXIT CODES:
    0 clean shutdown, 1 runtime error (e.g. an address in use), 2 invalid arguments or
    configuration (nothing was started)
";

const BUNDLED_CONFIG: &str = include_str!("gateway.yaml");
const DEMO_UPSTREAM: &str = "127.0.0.1:9001";

#[derive(Debug)]
struct Args {
    config: Option<String>,
    proxy_listen: SocketAddr,
    admin_listen: SocketAddr,
    settings: Settings,
    header_timeout: Duration,
    max_header_size: usize,
    grace_period: Duration,
    check: bool,
    access_log: Option<Format>,
    /// Whether access records also go to stderr (false only when a file-log plugin takes them
    /// and `--access-log off` was given).
    access_log_to_stderr: bool,
    request_id: Option<RequestIdLayer>,
    metrics: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        proxy_listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
        settings: Settings::default(),
        header_timeout: tower_gateway::server::DEFAULT_HEADER_READ_TIMEOUT,
        max_header_size: tower_gateway::server::DEFAULT_MAX_HEADER_SIZE,
        grace_period: tower_gateway::server::DEFAULT_GRACE_PERIOD,
        check: false,
        access_log: Some(Format::Combined),
        access_log_to_stderr: true,
        request_id: Some(RequestIdLayer::new()),
        metrics: true,
    };
    let mut it = std::env::args().skip(1);
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
                args.header_timeout = secs(value("--header-timeout")?, "--header-timeout")?
            }
            "--max-header-size" => {
                let v = value("--max-header-size")?;
                args.max_header_size = v.parse().ok().filter(|n| *n >= 1024).ok_or_else(|| {
                    format!("--max-header-size: {v:?} is not a number of bytes >= 1024")
                })?;
            }
            "--grace-period" => {
                args.grace_period = secs(value("--grace-period")?, "--grace-period")?
            }
            "--check" => args.check = true,
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
    Ok(Some(args))
}

fn addr(value: String, flag: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not an address such as 0.0.0.0:8000"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let config = match &args.config {
        Some(file) => Config::from_file(file),
        None => Config::from_yaml(BUNDLED_CONFIG).map(|mut c| {
            c.source = "examples/gateway.yaml (bundled)".into();
            c
        }),
    };
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    // The file's global file-log plugin: access records as JSON lines in that file.
    let file_log = config.plugins.iter().find_map(|p| match &p.config {
        tower_gateway::config::PluginConfig::FileLog(c) if p.enabled => Some(c.path.clone()),
        _ => None,
    });
    let file = match &file_log {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Some(file),
            Err(err) => {
                eprintln!("error: file-log: cannot open {path}: {err}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut args = args;
    let stderr_json = args.access_log == Some(Format::Json);
    if file.is_some() {
        // The file gets records with their fields (JSON lines); stderr keeps its format and
        // shows them only if the access log is on.
        args.access_log_to_stderr = args.access_log.is_some();
        args.access_log = Some(Format::Json);
    }
    init_logging(stderr_json, args.access_log_to_stderr, file);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, config))
}

async fn run(args: Args, config: Config) -> ExitCode {
    let gateway = match Gateway::from_config(&config, &args.settings) {
        Ok(gateway) => gateway,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    for route in gateway.routes() {
        tracing::info!(
            "route {} → service {} → {} ({})",
            route.route,
            route.service,
            route.origin,
            route.matches
        );
    }
    if !gateway.consumers().is_empty() {
        tracing::info!("{} consumers", gateway.consumers().len());
    }
    if args.check {
        println!("configuration OK: {} routes", gateway.routes().len());
        return ExitCode::SUCCESS;
    }

    if args.config.is_none() {
        match tokio::net::TcpListener::bind(DEMO_UPSTREAM).await {
            Ok(listener) => {
                tracing::info!("demo upstream listening on http://{DEMO_UPSTREAM}");
                tokio::spawn(Server::from_listener(listener).serve(service_fn(demo::handle)));
            }
            Err(err) => {
                eprintln!("error: cannot start the demo upstream on {DEMO_UPSTREAM}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }

    let proxy = match tokio::net::TcpListener::bind(args.proxy_listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.proxy_listen);
            return ExitCode::FAILURE;
        }
    };
    let admin = match tokio::net::TcpListener::bind(args.admin_listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.admin_listen);
            return ExitCode::FAILURE;
        }
    };
    // The bound addresses, so that port 0 shows the port it got.
    let local = |l: &tokio::net::TcpListener, asked: SocketAddr| l.local_addr().unwrap_or(asked);
    tracing::info!(
        "proxy listening on http://{}",
        local(&proxy, args.proxy_listen)
    );
    tracing::info!(
        "admin API listening on http://{}",
        local(&admin, args.admin_listen)
    );

    // The file's global correlation-id and prometheus plugins, as in Kong.
    let mut args = args;
    if let Some(layer) = gateway.request_id() {
        args.request_id = Some(layer);
    }
    let metrics = (args.metrics || gateway.prometheus())
        .then(|| Metrics::new().per_consumer(gateway.per_consumer_metrics()));
    let connections = ConnectionStats::new();
    if let Some(metrics) = &metrics {
        metrics.watch_connections(connections.clone());
        for (name, breaker) in gateway.breakers() {
            metrics.watch_breaker(name.clone(), breaker.clone());
        }
        for (upstream, balancer) in gateway.upstreams() {
            metrics.watch_balancer(upstream.clone(), balancer.clone());
        }
    }
    let info = Arc::new(admin::NodeInfo::new(
        &args,
        gateway.routes().len(),
        metrics.clone(),
        gateway.upstreams().to_vec(),
        enabled_plugins(&config),
    ));
    let admin_service = service_fn(move |req| admin::handle(req, info.clone()));
    tokio::spawn(
        Server::from_listener(admin)
            .grace_period(Duration::ZERO)
            .serve(admin_service),
    );

    let server = Server::from_listener(proxy)
        .header_read_timeout(args.header_timeout)
        .max_header_size(args.max_header_size)
        .grace_period(args.grace_period)
        .connection_stats(connections);
    // Request id outermost, so that generated ids reach the access log and the upstream;
    // metrics inside the log, next to the router that reports the matched route.
    let ids = option_layer(args.request_id.clone());
    let counted = match metrics {
        Some(metrics) => MetricsLayer::new(metrics),
        None => MetricsLayer::disabled(),
    };
    let served = match args.access_log {
        Some(format) => {
            let service = ServiceBuilder::new()
                .layer(ids)
                .layer(AccessLogLayer::new(format))
                .layer(counted)
                .service(gateway.router());
            server.serve_with_shutdown(service, shutdown_signal()).await
        }
        None => {
            let service = ServiceBuilder::new()
                .layer(ids)
                .layer(counted)
                .service(gateway.router());
            server.serve_with_shutdown(service, shutdown_signal()).await
        }
    };
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool, access_to_stderr: bool, file: Option<std::fs::File>) {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    const ACCESS: &str = "tower_gateway::access";
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    let stderr = stderr.with_filter(filter_fn(move |m| access_to_stderr || m.target() != ACCESS));
    let file = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .with_filter(filter_fn(|m| m.target() == ACCESS))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .init();
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// The Admin API's first two endpoints (the full Kong Admin API comes later).
mod admin {
    use super::*;

    #[derive(Debug)]
    pub(super) struct NodeInfo {
        body: String,
        started: std::time::Instant,
        metrics: Option<Metrics>,
        upstreams: Vec<(String, ServiceBalancer)>,
    }

    impl NodeInfo {
        pub(super) fn new(
            args: &Args,
            routes: usize,
            metrics: Option<Metrics>,
            upstreams: Vec<(String, ServiceBalancer)>,
            enabled: Vec<&'static str>,
        ) -> Self {
            let hostname = std::env::var("HOSTNAME").unwrap_or_default();
            let body = serde_json::json!({
                "tagline": "Welcome to tower-gateway",
                "version": env!("CARGO_PKG_VERSION"),
                "hostname": hostname,
                "node_id": format!("{:x}", std::process::id()),
                "configuration": {
                    "database": "off",
                    "declarative_config": args.config.clone().unwrap_or_else(|| "examples/gateway.yaml (bundled)".into()),
                    "proxy_listen": [args.proxy_listen.to_string()],
                    "admin_listen": [args.admin_listen.to_string()],
                    "trusted_ips": !args.settings.trusted_proxies.is_empty(),
                    "upstream_keepalive_pool_size": args.settings.max_idle_per_host,
                    "upstream_keepalive_idle_timeout": args.settings.idle_timeout.as_secs(),
                    "routes": routes,
                },
                "plugins": {
                    "available_on_server": { "key-auth": true, "jwt": cfg!(feature = "jwt") },
                    "enabled_in_cluster": enabled,
                },
            });
            Self {
                body: body.to_string(),
                started: std::time::Instant::now(),
                metrics,
                upstreams,
            }
        }
    }

    pub(super) async fn handle(
        req: Request<Incoming>,
        info: Arc<NodeInfo>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => json(StatusCode::OK, info.body.clone()),
            (&Method::GET, "/status") => json(
                StatusCode::OK,
                serde_json::json!({
                    "database": { "reachable": true },
                    "server": { "uptime_seconds": info.started.elapsed().as_secs() },
                })
                .to_string(),
            ),
            (&Method::GET, "/metrics") => match &info.metrics {
                Some(metrics) => {
                    let mut res = Response::new(Full::new(Bytes::from(metrics.encode())));
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    res
                }
                None => json(
                    StatusCode::NOT_FOUND,
                    r#"{"message":"metrics are off (--metrics off)"}"#.into(),
                ),
            },
            (&Method::GET, path) if upstream_health(path).is_some() => {
                let name = upstream_health(path).unwrap_or_default();
                match info.upstreams.iter().find(|(n, _)| n == name) {
                    Some((_, balancer)) => json(StatusCode::OK, health(balancer)),
                    None => json(StatusCode::NOT_FOUND, r#"{"message":"Not found"}"#.into()),
                }
            }
            (_, "/" | "/status" | "/metrics") => json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"message":"Method not allowed"}"#.into(),
            ),
            _ => json(StatusCode::NOT_FOUND, r#"{"message":"Not found"}"#.into()),
        })
    }
}

/// The names of the plugins the configuration uses, once each (Kong's `enabled_in_cluster`).
fn enabled_plugins(config: &Config) -> Vec<&'static str> {
    let scoped = config
        .services
        .iter()
        .flat_map(|s| {
            s.plugins
                .iter()
                .chain(s.routes.iter().flat_map(|r| &r.plugins))
        })
        .chain(config.routes.iter().flat_map(|r| &r.plugins))
        .chain(config.consumers.iter().flat_map(|c| &c.plugins));
    let mut names: Vec<&'static str> = config
        .plugins
        .iter()
        .chain(scoped)
        .filter(|p| p.enabled)
        .map(|p| p.config.name())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `name` from `/upstreams/{name}/health`.
fn upstream_health(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/upstreams/")?.strip_suffix("/health")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Kong's `GET /upstreams/{name}/health` body: each target's weight and health.
fn health(balancer: &ServiceBalancer) -> String {
    let data: Vec<_> = balancer
        .endpoints()
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "target": e.endpoint.name(),
                "weight": e.endpoint.get_weight(),
                "health": if e.healthy { "HEALTHY" } else { "UNHEALTHY" },
                "data": { "in_flight": e.in_flight },
            })
        })
        .collect();
    serde_json::json!({ "data": data, "next": null }).to_string()
}

/// The in-process demo upstream behind the bundled configuration.
mod demo {
    use super::*;

    const USERS: [(&str, &str); 3] = [("1", "Ada"), ("2", "Grace"), ("3", "Linus")];

    pub(super) async fn handle(
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path();
        let user = path.strip_prefix("/api/users/").filter(|id| !id.is_empty());
        Ok(match (path, user) {
            ("/api/users" | "/api/users/", _) => {
                let users: Vec<_> = USERS
                    .iter()
                    .map(|(id, name)| serde_json::json!({ "id": id, "name": name }))
                    .collect();
                json(StatusCode::OK, serde_json::json!({ "data": users }).to_string())
            }
            (_, Some(id)) => match USERS.iter().find(|(uid, _)| *uid == id) {
                Some((id, name)) => json(
                    StatusCode::OK,
                    serde_json::json!({ "id": id, "name": name, "method": req.method().as_str() })
                        .to_string(),
                ),
                None => json(StatusCode::NOT_FOUND, r#"{"message":"no such user"}"#.into()),
            },
            _ => json(
                StatusCode::OK,
                serde_json::json!({
                    "demo": "tower-gateway demo upstream",
                    "path": path,
                    "method": req.method().as_str(),
                    "x-forwarded-for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
                })
                .to_string(),
            ),
        })
    }
}
