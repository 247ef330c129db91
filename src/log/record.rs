//! What the access log records of one request, and how a record is written out.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use tokio::time::Instant;

use super::Format;
use super::clf_time;

/// One request, from its head to the end of its response body.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) format: Format,
    pub(crate) started: Instant,
    pub(crate) wall: SystemTime,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) client: Option<IpAddr>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) referer: Option<HeaderValue>,
    /// The request body's size: its `Content-Length`, or counted as the proxy sends it.
    pub(crate) bytes_in: crate::body::Size,
    pub(crate) status: StatusCode,
    pub(crate) route: Option<std::sync::Arc<str>>,
    pub(crate) service: Option<std::sync::Arc<str>>,
    pub(crate) upstream: Option<SocketAddr>,
    /// The balancer's choice, when a balancer was passed.
    pub(crate) chosen: Option<crate::balance::Chosen>,
    /// The authenticated consumer (username, else id).
    pub(crate) consumer: Option<std::sync::Arc<str>>,
    pub(crate) upstream_latency: Option<Duration>,
    pub(crate) failure: Option<String>,
    pub(crate) bytes_out: u64,
}

impl Record {
    pub(crate) fn new(
        format: Format,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        bytes_in: crate::body::Size,
    ) -> Self {
        let combined = format == Format::Combined;
        Self {
            format,
            started: Instant::now(),
            wall: SystemTime::now(),
            method: method.clone(),
            uri: uri.clone(),
            version,
            client,
            request_id: headers.get("x-request-id").cloned(),
            user_agent: combined
                .then(|| headers.get(header::USER_AGENT).cloned())
                .flatten(),
            referer: combined
                .then(|| headers.get(header::REFERER).cloned())
                .flatten(),
            bytes_in,
            status: StatusCode::OK,
            route: None,
            service: None,
            upstream: None,
            chosen: None,
            consumer: None,
            upstream_latency: None,
            failure: None,
            bytes_out: 0,
        }
    }

    /// Writes the record as one `tracing` event (target `tower_gateway::access`, level INFO).
    /// `completed` says whether the whole response body was sent.
    pub(crate) fn emit(&self, completed: bool) {
        let latency = self.started.elapsed();
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let client = self.client.map(|ip| ip.to_string());
        let client = client.as_deref().unwrap_or("-");
        let text = |v: &Option<HeaderValue>| {
            v.as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let request_id = text(&self.request_id);
        // The address connected to, or (when connecting failed) the endpoint chosen.
        let upstream = self
            .upstream
            .map(|a| a.to_string())
            .or_else(|| self.chosen.as_ref().map(|c| c.endpoint.to_string()));
        let tries = self.chosen.as_ref().map_or(0, |c| c.attempt);
        let route = self.route.as_deref().unwrap_or("-");
        let service = self.service.as_deref().unwrap_or("-");
        let failure = self.failure.as_deref().unwrap_or("-");
        match self.format {
            Format::Json => tracing::info!(
                target: "tower_gateway::access",
                client_ip = client,
                method = self.method.as_str(),
                path,
                protocol = ?self.version,
                status = self.status.as_u16(),
                bytes_in = self.bytes_in.get(),
                bytes_out = self.bytes_out,
                latency_ms = millis(latency),
                upstream_latency_ms = self.upstream_latency.map_or(-1.0, millis),
                route,
                service,
                upstream = upstream.as_deref().unwrap_or("-"),
                tries,
                consumer = self.consumer.as_deref().unwrap_or("-"),
                request_id = request_id.as_str(),
                completed,
                failure,
                "request finished"
            ),
            Format::Combined => {
                let line = format!(
                    "{client} - - [{}] \"{} {path} {:?}\" {} {} \"{}\" \"{}\" {:.3} {route} {request_id}",
                    clf_time::format(self.wall),
                    self.method,
                    self.version,
                    self.status.as_u16(),
                    self.bytes_out,
                    text(&self.referer),
                    text(&self.user_agent),
                    latency.as_secs_f64(),
                );
                tracing::info!(target: "tower_gateway::access", "{line}");
            }
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
