//! What the access log records of one request, and how a record is written out.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use tokio::time::Instant;

use std::io::Write as _;
use std::sync::Arc;

use super::Format;
use super::LineWriter;
use super::clf_time;

/// One request, from its head to the end of its response body.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) format: Format,
    /// Where the record goes as a line; a `tracing` event without any.
    pub(crate) sinks: Option<Arc<[Sink]>>,
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
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        format: Format,
        sinks: Option<Arc<[Sink]>>,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        bytes_in: crate::body::Size,
    ) -> Self {
        let combined = format == Format::Combined
            || sinks
                .as_deref()
                .is_some_and(|s| s.iter().any(|s| s.format == Format::Combined));
        Self {
            format,
            sinks,
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
        if let Some(sinks) = &self.sinks {
            for sink in sinks.iter() {
                sink.writer.write_line(|buf| match sink.format {
                    Format::Combined => self.write_combined(buf, latency),
                    Format::Json => self.write_json(buf, latency, completed),
                });
            }
            return;
        }
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
                let mut line = Vec::with_capacity(256);
                self.write_combined(&mut line, latency);
                let line = String::from_utf8_lossy(&line);
                tracing::info!(target: "tower_gateway::access", "{line}");
            }
        }
    }
}

/// A destination of access-log lines, in its format.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    pub(crate) format: Format,
    pub(crate) writer: LineWriter,
}

impl Record {
    fn upstream_text(&self, buf: &mut Vec<u8>) {
        match (&self.upstream, &self.chosen) {
            (Some(addr), _) => {
                let _ = write!(buf, "{addr}");
            }
            (None, Some(chosen)) => {
                let _ = write!(buf, "{}", chosen.endpoint);
            }
            (None, None) => buf.push(b'-'),
        }
    }

    /// nginx's `combined` line, then the latency in seconds, the route and the request id.
    fn write_combined(&self, buf: &mut Vec<u8>, latency: Duration) {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        match self.client {
            Some(ip) => {
                let _ = write!(buf, "{ip}");
            }
            None => buf.push(b'-'),
        }
        buf.extend_from_slice(b" - - [");
        clf_time::write(buf, self.wall);
        let _ = write!(buf, "] \"{} ", self.method);
        escaped(buf, path.as_bytes());
        let _ = write!(
            buf,
            " {:?}\" {} {} \"",
            self.version,
            self.status.as_u16(),
            self.bytes_out,
        );
        header_text(buf, self.referer.as_ref());
        buf.extend_from_slice(b"\" \"");
        header_text(buf, self.user_agent.as_ref());
        let _ = write!(
            buf,
            "\" {:.3} {} ",
            latency.as_secs_f64(),
            self.route.as_deref().unwrap_or("-")
        );
        header_text(buf, self.request_id.as_ref());
    }

    /// The record as one JSON object, shaped as `tracing-subscriber`'s JSON events are
    /// (`timestamp`, `level`, `fields`, `target`), so one reader parses both.
    fn write_json(&self, buf: &mut Vec<u8>, latency: Duration, completed: bool) {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        buf.extend_from_slice(b"{\"timestamp\":\"");
        clf_time::write_rfc3339(buf, SystemTime::now());
        buf.extend_from_slice(
            b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request finished\",\"client_ip\":\"",
        );
        match self.client {
            Some(ip) => {
                let _ = write!(buf, "{ip}");
            }
            None => buf.push(b'-'),
        }
        buf.extend_from_slice(b"\",\"method\":");
        json_str(buf, self.method.as_str().as_bytes());
        buf.extend_from_slice(b",\"path\":");
        json_str(buf, path.as_bytes());
        let _ = write!(
            buf,
            ",\"protocol\":\"{:?}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"latency_ms\":{},\"upstream_latency_ms\":{},\"route\":",
            self.version,
            self.status.as_u16(),
            self.bytes_in.get(),
            self.bytes_out,
            millis(latency),
            self.upstream_latency.map_or(-1.0, millis),
        );
        json_str(buf, self.route.as_deref().unwrap_or("-").as_bytes());
        buf.extend_from_slice(b",\"service\":");
        json_str(buf, self.service.as_deref().unwrap_or("-").as_bytes());
        buf.extend_from_slice(b",\"upstream\":\"");
        self.upstream_text(buf);
        let tries = self.chosen.as_ref().map_or(0, |c| c.attempt);
        let _ = write!(buf, "\",\"tries\":{tries},\"consumer\":");
        json_str(buf, self.consumer.as_deref().unwrap_or("-").as_bytes());
        buf.extend_from_slice(b",\"request_id\":");
        json_str(
            buf,
            self.request_id
                .as_ref()
                .map_or(&b"-"[..], HeaderValue::as_bytes),
        );
        let _ = write!(buf, ",\"completed\":{completed},\"failure\":");
        json_str(buf, self.failure.as_deref().unwrap_or("-").as_bytes());
        buf.extend_from_slice(b"},\"target\":\"tower_gateway::access\"}");
    }
}

/// A header's value as text, `-` when absent; bytes that would break the line (quotes,
/// backslashes, control characters, non-ASCII) escaped as `\xHH`, as nginx escapes them.
fn header_text(buf: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value {
        Some(value) => escaped(buf, value.as_bytes()),
        None => buf.push(b'-'),
    }
}

/// `bytes` with quotes, backslashes, control characters and non-ASCII written as `\xHH`, as
/// nginx writes them, so that no client-sent byte can end a field or a line.
fn escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(buf, "\\x{b:02X}");
        } else {
            buf.push(b);
        }
    }
}

/// `bytes` as a JSON string: quotes, backslashes and control characters escaped; bytes that
/// are not UTF-8 replaced.
fn json_str(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => buf.extend_from_slice(b"\\\""),
                '\\' => buf.extend_from_slice(b"\\\\"),
                '\n' => buf.extend_from_slice(b"\\n"),
                '\r' => buf.extend_from_slice(b"\\r"),
                '\t' => buf.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(buf, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            buf.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    buf.push(b'"');
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
