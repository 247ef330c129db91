//! The gateway's own responses: a status and a JSON body `{"message": "..."}`.
//!
//! Every layer and service in this crate that answers on its own builds its response here, so
//! the format is the same everywhere and the texts match Kong's where Kong has one. Clients and
//! runbooks that parse Kong's error bodies keep working.
//!
//! ```
//! use http::StatusCode;
//! use http_body_util::BodyExt;
//! use tower_gateway::{body::ResponseBody, reject};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let res = reject::json::<http_body_util::Empty<bytes::Bytes>>(
//!     StatusCode::NOT_FOUND,
//!     reject::NO_ROUTE,
//! );
//! assert_eq!(res.status(), 404);
//! assert_eq!(res.headers()["content-type"], "application/json; charset=utf-8");
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&body[..], br#"{"message":"no Route matched with those values"}"#);
//! # }
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::ResponseBody;

/// No route matched the request (404). Kong's text.
pub const NO_ROUTE: &str = "no Route matched with those values";
/// A route matched the path but not the method (405).
pub const METHOD_NOT_ALLOWED: &str = "Method not allowed";
/// The request itself is malformed (400), for example a missing or repeated `Host`.
pub const BAD_REQUEST: &str = "Bad request";
/// The client took too long to send its request (408).
pub const REQUEST_TIMEOUT: &str = "Request timeout";
/// The upstream refused or reset the connection, or answered with something that is not valid
/// HTTP (502). Kong's text.
pub const BAD_GATEWAY: &str = "An invalid response was received from the upstream server";
/// The upstream did not connect or answer in time (504). Kong's text.
pub const GATEWAY_TIMEOUT: &str = "The upstream server is timing out";
/// No upstream can take the request (503). Kong's text.
pub const SERVICE_UNAVAILABLE: &str = "Service unavailable";
/// Every endpoint of a balanced upstream is unhealthy or failed (503). Kong's text.
pub const NO_PEER: &str = "failure to get a peer from the ring-balancer";
/// Something failed inside the gateway (500). Kong's text.
pub const INTERNAL_ERROR: &str = "An unexpected error occurred";

/// Put into the extensions of every response the gateway writes itself instead of
/// forwarding the upstream's: which part of the gateway answered. The metrics count such
/// responses by it (`tower_gateway_rejections_total{by}`, `source="kong"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnsweredBy(pub &'static str);

impl AnsweredBy {
    /// Authentication refused the request (401, or 400 for a broken body).
    pub const AUTH: Self = Self("auth");
    /// A rate limit refused the request (429), or its store failed (500).
    pub const RATE_LIMITING: Self = Self("rate-limiting");
    /// An open circuit breaker refused the request (503).
    pub const CIRCUIT_BREAKER: Self = Self("circuit-breaker");
    /// No endpoint of a balanced upstream could take the request (503).
    pub const BALANCER: Self = Self("balancer");
    /// The upstream could not be reached or failed mid-way (502, 504).
    pub const PROXY: Self = Self("proxy");
    /// No route matched (404) or the method is not allowed (405).
    pub const ROUTER: Self = Self("router");
    /// The client broke its own request (a malformed or truncated body: 400) or stalled it
    /// (408). The client's fault: breakers, passive health checks and the upstream's metrics
    /// never count it (`source="client"` in `kong_http_requests_total`).
    pub const CLIENT: Self = Self("client");
    /// The request was malformed (400) or the server failed (500).
    pub const SERVER: Self = Self("server");

    /// The name, as written in metrics.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// [`json`], marked as answered by `by`.
pub(crate) fn answer<B>(
    by: AnsweredBy,
    status: StatusCode,
    message: &str,
) -> Response<ResponseBody<B>> {
    let mut res = json(status, message);
    res.extensions_mut().insert(by);
    res
}

const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// Builds a response with `status` and the body `{"message": message}`.
pub fn json<B>(status: StatusCode, message: &str) -> Response<ResponseBody<B>> {
    let mut body = Vec::with_capacity(message.len() + 14);
    body.extend_from_slice(br#"{"message":"#);
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut body, message);
    body.push(b'}');
    json_body(status, Bytes::from(body))
}

/// Builds a response with `status` and an already-serialized JSON document as its body.
pub fn json_body<B>(status: StatusCode, body: Bytes) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, JSON);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    #[tokio::test]
    async fn message_is_escaped_as_a_json_string() {
        let res = json::<Empty<Bytes>>(StatusCode::BAD_REQUEST, "a \"quoted\"\nline");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["message"], "a \"quoted\"\nline");
    }
}
