//! The `Auth` service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::headers::{set_identity, strip_identity};
use super::layer::Policy;
use super::{Authenticated, Claims};
use crate::body::ResponseBody;
use crate::future::CallOrReject;

/// A service behind authentication; built by [`AuthLayer`](super::AuthLayer).
///
/// Every request loses its client-sent identity headers (and mapped claim headers) first, so
/// they cannot be spoofed; then the authenticators run. A refused request is answered 401
/// (Kong's messages) without reaching the inner service; an accepted one carries the
/// [`Consumer`](super::Consumer) and [`Claims`] in its extensions and the identity headers.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`Auth`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        inner: CallOrReject<S, Request<B>>,
        // Copied into the response for the access log and metrics outside the router.
        consumer: Option<super::Consumer>,
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S> Auth<S> {
    pub(crate) fn new(inner: S, policy: Arc<Policy>) -> Self {
        Self { inner, policy }
    }

    inner_service_accessors!();
}

/// Writes what authentication found into the request; returns the consumer.
fn admit(
    parts: &mut Parts,
    policy: &Policy,
    authenticated: Authenticated,
) -> Option<super::Consumer> {
    if let Some(consumer) = &authenticated.consumer {
        set_identity(&mut parts.headers, consumer);
    }
    if let Some(claims) = &authenticated.claims {
        for (claim, header) in &policy.claim_headers {
            let value = match claims.get(claim) {
                Some(serde_json::Value::String(s)) => HeaderValue::from_str(s).ok(),
                Some(serde_json::Value::Null) | None => None,
                Some(other) => HeaderValue::from_str(&other.to_string()).ok(),
            };
            if let Some(value) = value {
                parts.headers.insert(header.clone(), value);
            }
        }
    }
    if let Some(claims) = authenticated.claims {
        parts.extensions.insert::<Claims>(claims);
    }
    let consumer = authenticated.consumer?;
    parts.extensions.insert(consumer.clone());
    Some(consumer)
}

impl<S, B, ResB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        strip(&self.policy, &mut parts);
        let consumer = if self.policy.is_empty() || self.policy.skips(&parts) {
            None
        } else {
            match decide(&self.policy, &mut parts, None) {
                Ok(consumer) => consumer,
                Err(refused) => {
                    return ResponseFuture {
                        inner: CallOrReject::reject_with(refused.into_crate()),
                        consumer: None,
                    };
                }
            }
        };
        let req = Request::from_parts(parts, body);
        // `poll_ready` was answered by the inner service itself.
        ResponseFuture {
            inner: CallOrReject::Called {
                future: self.inner.call(req),
            },
            consumer,
        }
    }
}

/// Removes client-sent identity headers (and headers mapped from claims): they cannot be
/// spoofed, whether the request is authenticated or not.
pub(crate) fn strip(policy: &Policy, parts: &mut Parts) {
    strip_identity(&mut parts.headers);
    for (_, name) in &policy.claim_headers {
        parts.headers.remove(name);
    }
}

/// Authenticates the request and writes what was found into it: the consumer, if any, or
/// the refusal.
pub(crate) fn decide(
    policy: &Policy,
    parts: &mut Parts,
    body: Option<&mut bytes::Bytes>,
) -> Result<Option<super::Consumer>, super::Rejection> {
    let authenticated = policy.evaluate(parts, body)?;
    Ok(admit(parts, policy, authenticated))
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Some(consumer) = this.consumer.take() {
            res.extensions_mut().insert(consumer);
        }
        Poll::Ready(Ok(res))
    }
}
