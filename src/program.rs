//! The bundled gateway program as a library entry point: Kong's declarative file, Admin API,
//! reload, cluster, TLS, access log and metrics, behind a command line; an application adds
//! its own plugins and gets its own gateway binary.
//!
//! ```no_run
//! use tower_gateway::program::Program;
//!
//! fn main() -> std::process::ExitCode {
//!     // The bundled gateway (`examples/gateway.rs`); add plugins with `.plugin(...)`.
//!     Program::new().run()
//! }
//! ```
//!
//! `examples/custom_plugin.rs` builds a gateway with a plugin of its own. The command line is
//! the one `--help` prints ([`HELP`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::admin::AdminApi;
use crate::config::{Config, Gateway, Settings};
use crate::log::{AccessLogLayer, Format};
use crate::metrics::{Metrics, MetricsLayer};
use crate::plugin::{Definition, Registry, RegistryError};
use crate::proxy::TrustedProxies;
use crate::request_id::RequestIdLayer;
use crate::server::{ConnectionStats, Server, shutdown_signal};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::util::option_layer;
use tower::{ServiceBuilder, service_fn};

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
                            feature (cargo run --release --features tls --example gateway).
    --tls-cert FILE         A PEM certificate chain for the TLS listener; give several
                            (each followed by its --tls-key) to serve several names by SNI
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
                            (cargo run --release --features redis --example gateway).
    --cluster-name NAME     Several clusters on one Redis (default: default)
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

/// The configuration run without `--config`: `examples/gateway.yaml`, two routes to the demo
/// upstream.
pub const BUNDLED_CONFIG: &str = include_str!("../examples/gateway.yaml");

/// Where the demo upstream listens when the bundled configuration runs.
pub const DEMO_UPSTREAM: &str = "127.0.0.1:9001";

/// The gateway program: a command line over a [`Registry`] of plugins. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Program {
    registry: Registry,
    bundled: (String, String),
    refused: Option<RegistryError>,
}

impl Default for Program {
    fn default() -> Self {
        Self::new()
    }
}

impl Program {
    /// The bundled gateway: the built-in plugins, [`BUNDLED_CONFIG`] without `--config`.
    pub fn new() -> Self {
        Self {
            registry: Registry::builtin(),
            bundled: (
                BUNDLED_CONFIG.to_owned(),
                "examples/gateway.yaml (bundled)".to_owned(),
            ),
            refused: None,
        }
    }

    /// Adds a plugin: configuration files and the Admin API may then name it. A name already
    /// taken is reported when the program runs (exit code 2).
    pub fn plugin(mut self, definition: Definition) -> Self {
        if let Err(err) = self.registry.register(definition)
            && self.refused.is_none()
        {
            self.refused = Some(err);
        }
        self
    }

    /// Replaces the plugins with `registry`'s.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The configuration run without `--config` (with the demo upstream on
    /// [`DEMO_UPSTREAM`]); `source` names it in logs and errors.
    pub fn bundled_config(mut self, yaml: impl Into<String>, source: impl Into<String>) -> Self {
        self.bundled = (yaml.into(), source.into());
        self
    }

    /// Runs with the process's command line until SIGINT/SIGTERM. Exit codes: 0 clean
    /// shutdown, 1 runtime error, 2 invalid arguments or configuration.
    pub fn run(self) -> ExitCode {
        self.run_with_args(std::env::args().skip(1))
    }

    /// Runs with `args` (without the program name) as the command line.
    pub fn run_with_args(self, args: impl IntoIterator<Item = String>) -> ExitCode {
        if let Some(err) = &self.refused {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        main(args.into_iter(), self)
    }
}

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
    admin_token: Option<String>,
    cluster: Option<String>,
    cluster_name: String,
    proxy_listen_tls: Option<SocketAddr>,
    /// Certificate and key files, in pairs.
    tls_files: Vec<(String, Option<String>)>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        proxy_listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
        settings: Settings::default(),
        header_timeout: crate::server::DEFAULT_HEADER_READ_TIMEOUT,
        max_header_size: crate::server::DEFAULT_MAX_HEADER_SIZE,
        grace_period: crate::server::DEFAULT_GRACE_PERIOD,
        check: false,
        access_log: Some(Format::Combined),
        access_log_to_stderr: true,
        request_id: Some(RequestIdLayer::new()),
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
            "--cluster" => {
                let url = value("--cluster")?;
                if !cfg!(feature = "redis") {
                    return Err(
                        "--cluster needs the redis feature: cargo run --release --features redis --example gateway".into(),
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
                        "--proxy-listen-tls needs the tls feature: cargo run --release --features tls --example gateway".into(),
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
    if args.proxy_listen_tls.is_some() && args.tls_files.is_empty() {
        return Err("--proxy-listen-tls needs --tls-cert and --tls-key".into());
    }
    Ok(Some(args))
}

fn addr(value: String, flag: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not an address such as 0.0.0.0:8000"))
}

fn main(argv: impl Iterator<Item = String>, program: Program) -> ExitCode {
    let args = match parse_args(argv) {
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
    let registry = program.registry;
    let (config, text, source) = match &args.config {
        Some(file) => (
            Config::from_file_with(file, &registry),
            std::fs::read_to_string(file).unwrap_or_default(),
            file.clone(),
        ),
        None => {
            let (text, source) = program.bundled;
            (Config::from_yaml_with(&text, &registry), text, source)
        }
    };
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    // The file's global file-log plugin: access records as JSON lines in that file.
    let file_log = config
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .find_map(|p| p.config.get::<crate::config::FileLogConfig>())
        .map(|c| c.path.clone());
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
    drop(config);
    runtime.block_on(run(args, text, source, registry))
}

async fn run(args: Args, text: String, source: String, registry: Registry) -> ExitCode {
    let admin = match AdminApi::from_text_with(&text, &source, args.settings.clone(), &registry) {
        Ok(admin) => admin,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let gateway = admin.live().current();
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
    let admin_listener = match tokio::net::TcpListener::bind(args.admin_listen).await {
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
        local(&admin_listener, args.admin_listen)
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
    }
    // The request id, metrics and file log are set up once, here: a change to their global
    // plugins needs a restart, and is refused rather than ignored.
    let startup = startup_plugins(&gateway);
    let mut node = serde_json::Map::new();
    node.insert("declarative_config".into(), source.clone().into());
    node.insert(
        "proxy_listen".into(),
        serde_json::json!([args.proxy_listen.to_string()]),
    );
    node.insert(
        "admin_listen".into(),
        serde_json::json!([args.admin_listen.to_string()]),
    );
    node.insert(
        "upstream_keepalive_pool_size".into(),
        args.settings.max_idle_per_host.into(),
    );
    let mut admin = admin
        .connections(connections.clone())
        .node_info(node)
        .guard(move |next| {
            if startup_plugins(next) == startup {
                Ok(())
            } else {
                Err("the global correlation-id, prometheus and file-log plugins are set up at startup: restart the gateway to change them".into())
            }
        })
        .on_swap(|next| tracing::info!(routes = next.routes().len(), "configuration changed"));
    if let Some(metrics) = metrics.clone() {
        admin = admin.metrics(metrics);
    }
    if let Some(token) = args.admin_token.clone() {
        admin = admin.token(token);
    }
    #[cfg(feature = "redis")]
    if let Some(url) = &args.cluster {
        if let Err(err) = admin.join_cluster(url, &args.cluster_name).await {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
        tracing::info!(
            "configuration shared through {url} (cluster {:?})",
            args.cluster_name
        );
    }
    if let Some(file) = args.config.clone() {
        reload::watch(admin.clone(), file);
    }
    tokio::spawn(
        Server::from_listener(admin_listener)
            .grace_period(Duration::ZERO)
            .serve(admin.clone()),
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
    let tls_server = match tls_server(&args).await {
        Ok(server) => server,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let served = match args.access_log {
        Some(format) => {
            let service = ServiceBuilder::new()
                .layer(ids)
                .layer(AccessLogLayer::new(format))
                .layer(counted)
                .service(admin.live().service());
            serve_all(service, server, tls_server).await
        }
        None => {
            let service = ServiceBuilder::new()
                .layer(ids)
                .layer(counted)
                .service(admin.live().service());
            serve_all(service, server, tls_server).await
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

/// The TLS listener of `--proxy-listen-tls`, with its certificates.
async fn tls_server(args: &Args) -> Result<Option<Server>, String> {
    let Some(listen) = args.proxy_listen_tls else {
        return Ok(None);
    };
    #[cfg(feature = "tls")]
    {
        let mut tls = crate::server::TlsConfig::new();
        for (cert, key) in &args.tls_files {
            tls = tls
                .certificate_files(cert, key.as_deref().unwrap_or_default())
                .map_err(|err| format!("invalid TLS certificate: {err}"))?;
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|err| format!("cannot listen on {listen}: {err}"))?;
        let bound = listener.local_addr().unwrap_or(listen);
        tracing::info!("proxy listening on https://{bound}");
        Ok(Some(
            Server::from_listener(listener)
                .header_read_timeout(args.header_timeout)
                .max_header_size(args.max_header_size)
                .grace_period(args.grace_period)
                .tls(tls),
        ))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = listen;
        Err("--proxy-listen-tls needs the tls feature".into())
    }
}

/// Serves `service` on the plain listener, and on the TLS one when there is one, until
/// SIGINT/SIGTERM.
async fn serve_all<S, B>(service: S, plain: Server, tls: Option<Server>) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(tls) = tls {
        let service = service.clone();
        tokio::spawn(async move {
            if let Err(err) = tls.serve_with_shutdown(service, shutdown_signal()).await {
                tracing::error!(%err, "the TLS listener stopped");
            }
        });
    }
    plain.serve_with_shutdown(service, shutdown_signal()).await
}

/// Logs to stderr (and access records to the file-log plugin's file), filtered by `RUST_LOG`.
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
        .try_init()
        .ok();
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

/// What the global correlation-id, prometheus and file-log plugins set up at startup.
fn startup_plugins(gateway: &Gateway) -> (String, bool, bool, Option<std::path::PathBuf>) {
    (
        format!("{:?}", gateway.request_id()),
        gateway.prometheus(),
        gateway.per_consumer_metrics(),
        gateway.file_log().map(std::path::Path::to_path_buf),
    )
}

/// Reloading the configuration file on SIGHUP and when it changes.
mod reload {
    use super::*;

    /// How often the file's modification time is looked at.
    const POLL: Duration = Duration::from_secs(1);
    /// How long the file must stay unchanged before it is read (editors write in steps).
    const SETTLE: Duration = Duration::from_millis(300);

    pub(super) fn watch(admin: AdminApi, path: String) {
        #[cfg(unix)]
        {
            let (admin, path) = (admin.clone(), path.clone());
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut hangups = match signal(SignalKind::hangup()) {
                    Ok(hangups) => hangups,
                    Err(err) => {
                        tracing::warn!(%err, "no reload on SIGHUP");
                        return;
                    }
                };
                while hangups.recv().await.is_some() {
                    load(&admin, &path, "SIGHUP").await;
                }
            });
        }
        tokio::spawn(async move {
            let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let mut seen = modified(&path);
            loop {
                tokio::time::sleep(POLL).await;
                let mut now = modified(&path);
                if now == seen {
                    continue;
                }
                // Wait for the writes to settle.
                loop {
                    tokio::time::sleep(SETTLE).await;
                    let again = modified(&path);
                    if again == now {
                        break;
                    }
                    now = again;
                }
                seen = now;
                load(&admin, &path, "file changed").await;
            }
        });
    }

    async fn load(admin: &AdminApi, path: &str, why: &str) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(%err, "{why}: cannot read {path}; the running configuration stays");
                return;
            }
        };
        match admin.reload(&text, path).await {
            Ok(()) => tracing::info!("{why}: configuration reloaded from {path}"),
            Err(err) => {
                tracing::warn!("{why}: {err}; the running configuration stays");
            }
        }
    }
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
