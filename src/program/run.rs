//! Serving: the Admin API, the proxy listeners, the layers around the live router.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::service_fn;
use tower::util::option_layer;

use super::args::Args;
use super::{DEMO_UPSTREAM, demo, reload};
use crate::admin::AdminApi;
use crate::config::Gateway;
use crate::metrics::{Metrics, MetricsLayer};
use crate::plugin::Registry;
use crate::server::{ConnectionStats, Server, shutdown_signal};

pub(super) async fn run(args: Args, text: String, source: String, registry: Registry) -> ExitCode {
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

    let proxy = match args.edge.bind(args.proxy_listen).await {
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
    // The configuration's certificates, followed by the TLS listener.
    #[cfg(feature = "tls")]
    let certificates = crate::server::SniCertificates::new();
    #[cfg(feature = "tls")]
    {
        certificates.replace(gateway.certificates().to_vec());
        let followed = certificates.clone();
        admin = admin.on_swap(move |next| followed.replace(next.certificates().to_vec()));
    }
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

    let server = args
        .edge
        .server(proxy)
        .connection_stats(connections.clone());
    // Request id outermost, so that generated ids reach the access log and the upstream;
    // metrics inside the log, next to the router that reports the matched route.
    let ids = option_layer(args.request_id.clone());
    let counted = match metrics {
        Some(metrics) => MetricsLayer::new(metrics),
        None => MetricsLayer::disabled(),
    };
    #[cfg(feature = "tls")]
    let tls_server = tls_server(&args, certificates).await;
    #[cfg(not(feature = "tls"))]
    let tls_server = tls_server(&args).await;
    let tls_server = match tls_server {
        // Its connections and requests are counted with the plain listener's.
        Ok(server) => server.map(|s| s.connection_stats(connections)),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let served = match args.access.clone() {
        Some(access) => {
            let service = ServiceBuilder::new()
                .layer(ids)
                .layer(access)
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
    if let Some(access) = &args.access {
        access.flush();
    }
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

/// The TLS listener of `--proxy-listen-tls`, with its certificates: the configuration's
/// (`certificates`), then the files'.
#[cfg(feature = "tls")]
async fn tls_server(
    args: &Args,
    certificates: crate::server::SniCertificates,
) -> Result<Option<Server>, String> {
    let Some(listen) = args.proxy_listen_tls else {
        return Ok(None);
    };
    {
        if args.tls_files.is_empty() && certificates.is_empty() {
            tracing::warn!(
                "no certificate yet (no --tls-cert, none in the configuration): TLS handshakes fail until one is configured"
            );
        }
        let mut tls = crate::server::TlsConfig::new().sni_certificates(certificates);
        for (cert, key) in &args.tls_files {
            tls = tls
                .certificate_files(cert, key.as_deref().unwrap_or_default())
                .map_err(|err| format!("invalid TLS certificate: {err}"))?;
        }
        let listener = args
            .edge
            .bind(listen)
            .await
            .map_err(|err| format!("cannot listen on {listen}: {err}"))?;
        let bound = listener.local_addr().unwrap_or(listen);
        tracing::info!("proxy listening on https://{bound}");
        Ok(Some(args.edge.server(listener).tls(tls)))
    }
}

/// Without the `tls` feature, `--proxy-listen-tls` was refused with the arguments.
#[cfg(not(feature = "tls"))]
async fn tls_server(args: &Args) -> Result<Option<Server>, String> {
    match args.proxy_listen_tls {
        Some(_) => Err("--proxy-listen-tls needs the tls feature".into()),
        None => Ok(None),
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

/// What the global correlation-id, prometheus and file-log plugins set up at startup.
fn startup_plugins(gateway: &Gateway) -> (String, bool, bool, Option<std::path::PathBuf>) {
    (
        format!("{:?}", gateway.request_id()),
        gateway.prometheus(),
        gateway.per_consumer_metrics(),
        gateway.file_log().map(std::path::Path::to_path_buf),
    )
}
