//! The proxy's response future: turns the upstream's answer, or its failure, into the response
//! the client sees.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::ResponseFuture as ClientFuture;
use hyper_util::client::legacy::connect::HttpInfo;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::UpstreamFailure;
use super::connect::ConnectFailed;
use super::headers;
use crate::body::ResponseBody;
use crate::reject;
use crate::server::Drain;

pin_project! {
    /// Response future of [`ReverseProxy`](super::ReverseProxy).
    pub struct ResponseFuture {
        #[pin]
        upstream: ClientFuture,
        started: Instant,
        // The client's connection, for a request that asked to switch protocols, and the
        // server's shutdown the tunnel then follows.
        client_side: Option<(hyper::upgrade::OnUpgrade, Option<Drain>)>,
    }
}

/// How long the upstream took to answer with a response head, in the response's extensions
/// (for access logs and metrics; Kong's upstream latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLatency(pub std::time::Duration);

impl ResponseFuture {
    pub(crate) fn new(
        upstream: ClientFuture,
        client_side: Option<(hyper::upgrade::OnUpgrade, Option<Drain>)>,
    ) -> Self {
        Self {
            upstream,
            started: Instant::now(),
            client_side,
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody<Incoming>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match std::task::ready!(this.upstream.poll(cx)) {
            Ok(mut res) => match invalid_framing(res.headers()) {
                None if res.status() == StatusCode::SWITCHING_PROTOCOLS
                    && this.client_side.is_some() =>
                {
                    let upstream_side = hyper::upgrade::on(&mut res);
                    if let Some((client_side, drain)) = this.client_side.take() {
                        tokio::spawn(tunnel(client_side, upstream_side, drain));
                    }
                    let protocol = res.headers().get(header::UPGRADE).cloned();
                    let mut res = downstream_response(res);
                    if let Some(protocol) = protocol {
                        headers::ask_upgrade(res.headers_mut(), protocol);
                    }
                    res.extensions_mut()
                        .insert(UpstreamLatency(this.started.elapsed()));
                    Ok(res)
                }
                None => {
                    let mut res = downstream_response(res);
                    res.extensions_mut()
                        .insert(UpstreamLatency(this.started.elapsed()));
                    Ok(res)
                }
                Some(reason) => {
                    let upstream = res
                        .extensions()
                        .get::<HttpInfo>()
                        .map(|info| info.remote_addr().to_string());
                    Err((UpstreamFailure::InvalidResponse(reason), upstream))
                }
            },
            Err(err) => Err((classify(&err), upstream_address(&err))),
        };
        Poll::Ready(Ok(result.unwrap_or_else(|(failure, upstream)| {
            let upstream = upstream.as_deref().unwrap_or("-");
            tracing::warn!(upstream, %failure, "upstream request failed");
            failure_response(failure)
        })))
    }
}

/// Pumps bytes both ways between the client's and the upstream's upgraded connections until
/// either side closes, or the server's grace period is over (a shutdown waits for the tunnel
/// until then, as nginx's `worker_shutdown_timeout` does).
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    drain: Option<Drain>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(%err, "upgrade abandoned");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let copied = match drain {
        // Held until the tunnel ends: the server's shutdown waits for it.
        Some(mut drain) => tokio::select! {
            copied = copied => copied,
            () = drain.closing() => {
                tracing::debug!("upgraded connection closed: the server's grace period is over");
                return;
            }
        },
        None => copied.await,
    };
    match copied {
        Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
        Err(err) => tracing::debug!(%err, "upgraded connection ended"),
    }
}

/// Strips the hop-by-hop fields of the upstream's response and wraps its body.
fn downstream_response(res: Response<Incoming>) -> Response<ResponseBody<Incoming>> {
    let (mut parts, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    // Identical repeated lengths were accepted by the parser; send one.
    let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (lengths.next(), lengths.next()) {
        let first = first.clone();
        parts.headers.insert(header::CONTENT_LENGTH, first);
    }
    Response::from_parts(parts, ResponseBody::new(body))
}

/// Framing the parser accepted but a proxy must not relay (RFC 9112 §6.1, §6.3): both
/// `Transfer-Encoding` and `Content-Length`, or a transfer coding that does not end in
/// `chunked` (the body would be read to the end of the connection and could be truncated
/// without anybody noticing).
fn invalid_framing(headers: &HeaderMap) -> Option<&'static str> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    codings.peek()?;
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Some("both Transfer-Encoding and Content-Length");
    }
    let last = codings.next_back()?;
    let last_coding = last
        .as_bytes()
        .rsplit(|b| *b == b',')
        .next()
        .unwrap_or_default();
    if !last_coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
        return Some("a Transfer-Encoding that does not end in chunked");
    }
    None
}

/// Reads a client error: which phase failed, and whether a timer fired.
fn classify(err: &hyper_util::client::legacy::Error) -> UpstreamFailure {
    let timed_out = sources(err).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
    });
    let detail = sources(err)
        .last()
        .map(ToString::to_string)
        .unwrap_or_else(|| err.to_string());
    match (err.is_connect(), timed_out) {
        (true, true) => UpstreamFailure::ConnectTimeout,
        (true, false) => UpstreamFailure::Connect(detail),
        (false, true) => UpstreamFailure::Timeout,
        (false, false) => UpstreamFailure::Protocol(detail),
    }
}

/// The upstream's address, from the failed connection attempt or the connection used.
fn upstream_address(err: &hyper_util::client::legacy::Error) -> Option<String> {
    if let Some(info) = err.connect_info() {
        let mut extensions = http::Extensions::new();
        info.get_extras(&mut extensions);
        if let Some(http) = extensions.get::<HttpInfo>() {
            return Some(http.remote_addr().to_string());
        }
    }
    sources(err)
        .find_map(|e| e.downcast_ref::<ConnectFailed>())
        .map(|failed| failed.address().to_owned())
}

fn sources<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

fn failure_response(failure: UpstreamFailure) -> Response<ResponseBody<Incoming>> {
    let (status, message) = match failure {
        UpstreamFailure::ConnectTimeout | UpstreamFailure::Timeout => {
            (StatusCode::GATEWAY_TIMEOUT, reject::GATEWAY_TIMEOUT)
        }
        _ => (StatusCode::BAD_GATEWAY, reject::BAD_GATEWAY),
    };
    let mut res = reject::answer(reject::AnsweredBy::PROXY, status, message);
    res.extensions_mut().insert(failure);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn chunked_alone_is_valid_framing() {
        assert_eq!(
            invalid_framing(&headers(&[("transfer-encoding", "chunked")])),
            None
        );
        assert_eq!(
            invalid_framing(&headers(&[("transfer-encoding", "gzip, chunked")])),
            None
        );
        assert_eq!(invalid_framing(&headers(&[("content-length", "3")])), None);
    }

    #[test]
    fn length_plus_chunked_is_refused() {
        let h = headers(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
        assert!(invalid_framing(&h).is_some());
    }

    #[test]
    fn codings_not_ending_in_chunked_are_refused() {
        assert!(invalid_framing(&headers(&[("transfer-encoding", "foo")])).is_some());
        assert!(invalid_framing(&headers(&[("transfer-encoding", "chunked, gzip")])).is_some());
        assert!(
            invalid_framing(&headers(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "identity")
            ]))
            .is_some()
        );
    }
}
