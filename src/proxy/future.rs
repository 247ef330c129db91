//! The proxy's response future: turns the upstream's answer, or its failure, into the response
//! the client sees.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpInfo;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::client_body::Witness;
use super::connect::ConnectFailed;
use super::headers;
use super::pool::{self, Failed};
use super::{ClientFault, UpstreamFailure};
use crate::body::ResponseBody;
use crate::identity::Drain;
use crate::reject;

/// The upstream exchange: the response head and the connection's address (when not in the
/// response's extensions already), or why there is none.
pub(crate) type Upstream = Pin<
    Box<
        dyn Future<Output = Result<(Response<Incoming>, Option<HttpInfo>), Failed>>
            + Send
            + 'static,
    >,
>;

pin_project! {
    /// Response future of [`ReverseProxy`](super::ReverseProxy).
    pub struct ResponseFuture {
        upstream: Upstream,
        started: Instant,
        // For a request that asked to switch protocols: what it asked for, its connection,
        // and the server's shutdown the tunnel then follows.
        client_side: Option<Upgrading>,
        // What the request body saw of the client, for a request with a body.
        witness: Option<Arc<Witness>>,
        // The request's extension map, for the response (see `crate::spare`).
        spare: http::Extensions,
    }
}

/// A request's upgrade, as forwarded.
pub(crate) struct Upgrading {
    /// The protocols asked for, as sent upstream.
    pub(crate) protocol: http::HeaderValue,
    /// The client's connection, once the server hands it over.
    pub(crate) client: hyper::upgrade::OnUpgrade,
    pub(crate) drain: Option<Drain>,
}

/// What the proxy learned of the upstream exchange, in a proxied response's extensions (for
/// access logs and metrics): how long the upstream took to answer with a response head
/// (Kong's upstream latency) and the connection it answered on.
///
/// ```
/// # async fn run(res: http::Response<()>) {
/// use tower_gateway::proxy::UpstreamInfo;
///
/// if let Some(upstream) = res.extensions().get::<UpstreamInfo>() {
///     println!("{:?} answered in {:?}", upstream.remote_addr, upstream.latency);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamInfo {
    /// From sending the request to the response head.
    pub latency: std::time::Duration,
    /// The upstream's address, when the connection's is known.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The gateway's side of that connection.
    pub local_addr: Option<std::net::SocketAddr>,
}

impl ResponseFuture {
    pub(crate) fn new(
        upstream: Upstream,
        client_side: Option<Upgrading>,
        witness: Option<Arc<Witness>>,
        spare: http::Extensions,
    ) -> Self {
        Self {
            upstream,
            started: Instant::now(),
            client_side,
            witness,
            spare,
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
        let result = match std::task::ready!(this.upstream.as_mut().poll(cx)) {
            Ok((mut res, info)) => match invalid_framing(res.headers()) {
                None if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    match this.client_side.take() {
                        Some(upgrading)
                            if headers::upgrade_matches(res.headers(), &upgrading.protocol) =>
                        {
                            let upstream_side = hyper::upgrade::on(&mut res);
                            let protocol = res.headers().get(header::UPGRADE).cloned();
                            tokio::spawn(tunnel(upgrading.client, upstream_side, upgrading.drain));
                            let mut res = downstream_response(res);
                            if let Some(protocol) = protocol {
                                headers::ask_upgrade(res.headers_mut(), protocol);
                            }
                            facts(&mut res, info, this.spare, *this.started);
                            Ok(res)
                        }
                        // Dropping the response drops the upstream connection with it.
                        Some(_) => Err((
                            UpstreamFailure::InvalidResponse(
                                "a 101 to a protocol the client did not ask for",
                            ),
                            remote_of(&res, info),
                        )),
                        None => Err((
                            UpstreamFailure::InvalidResponse(
                                "a 101 to a request that asked for no upgrade",
                            ),
                            remote_of(&res, info),
                        )),
                    }
                }
                None => {
                    let mut res = downstream_response(res);
                    facts(&mut res, info, this.spare, *this.started);
                    Ok(res)
                }
                Some(reason) => Err((
                    UpstreamFailure::InvalidResponse(reason),
                    remote_of(&res, info),
                )),
            },
            Err(failed) => {
                // The exchange failed because the client broke or stalled its body: the
                // client's fault, answered as such.
                if let Some(fault) = this.witness.as_deref().and_then(Witness::fault) {
                    tracing::debug!(%fault, "request aborted by the client");
                    return Poll::Ready(Ok(client_fault_response(fault.clone())));
                }
                Err(failed)
            }
        };
        Poll::Ready(Ok(result.unwrap_or_else(|(failure, upstream)| {
            let upstream = upstream.as_deref().unwrap_or("-");
            tracing::warn!(upstream, %failure, "upstream request failed");
            failure_response(failure)
        })))
    }
}

/// Puts what the proxy knows of the exchange into the response's extensions, as one
/// [`UpstreamInfo`] (hyper-util's `HttpInfo` folded in), in the request's map when the
/// response has none.
fn facts<B>(
    res: &mut Response<B>,
    info: Option<HttpInfo>,
    spare: &mut http::Extensions,
    started: Instant,
) {
    let extensions = res.extensions_mut();
    let info = info.or_else(|| extensions.remove::<HttpInfo>());
    crate::spare::adopt(extensions, std::mem::take(spare));
    extensions.insert(UpstreamInfo {
        latency: started.elapsed(),
        remote_addr: info.as_ref().map(HttpInfo::remote_addr),
        local_addr: info.as_ref().map(HttpInfo::local_addr),
    });
}

/// The upstream's address, from the connection a response arrived on.
fn remote_of<B>(res: &Response<B>, info: Option<HttpInfo>) -> Option<String> {
    info.as_ref()
        .or_else(|| res.extensions().get::<HttpInfo>())
        .map(|info| info.remote_addr().to_string())
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

/// Reads a failure of hyper-util's client (HTTP/2 upstreams): which phase failed, whether a
/// timer fired, and the upstream's address.
pub(crate) fn failed(err: &hyper_util::client::legacy::Error) -> Failed {
    let failure = if err.is_connect() {
        pool::classify_connect(err)
    } else {
        pool::classify(err)
    };
    (failure, upstream_address(err))
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
    pool::sources(err)
        .find_map(|e| e.downcast_ref::<ConnectFailed>())
        .map(|failed| failed.address().to_owned())
}

/// `400` for a broken body, `408` for a stalled one: the client's fault, marked so that no
/// breaker, health check or upstream metric counts it.
fn client_fault_response(fault: ClientFault) -> Response<ResponseBody<Incoming>> {
    let (status, message) = match fault {
        ClientFault::Timeout => (StatusCode::REQUEST_TIMEOUT, reject::REQUEST_TIMEOUT),
        ClientFault::Malformed(_) => (StatusCode::BAD_REQUEST, reject::BAD_REQUEST),
    };
    let mut res = reject::answer(reject::AnsweredBy::CLIENT, status, message);
    // The connection's framing is broken or the client is stalled: do not keep it.
    res.headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    res.extensions_mut().insert(fault);
    res
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
