//! A future shared by services that either pass a request on or answer it themselves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::{HeaderName, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::Service;
use tower::util::Oneshot;

use crate::body::ResponseBody;
use crate::reject;

pin_project! {
    /// Either drives the inner service to readiness and calls it, or yields the gateway's own
    /// JSON answer.
    #[project = CallOrRejectProj]
    pub(crate) enum CallOrReject<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        Call { #[pin] call: Oneshot<S, R> },
        Reject { rejection: Option<Rejection> },
    }
}

/// Calls `service` at once if it is ready now; otherwise calls a clone once that is ready.
///
/// The services of this crate are always ready, so a connection that keeps its own handle on
/// them calls them directly, without a clone (and its shared reference counts) per request.
/// A service that is not ready at once is driven to readiness by `oneshot` on a clone, with a
/// real waker, as tower's contract asks.
pub(crate) fn call_ready<S, R>(service: &mut S, req: R) -> CallOrReject<S, R>
where
    S: Service<R> + Clone,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => CallOrReject::Called {
            future: service.call(req),
        },
        // Pending, or failed: the clone's own readiness check waits properly or reports it.
        // The handle itself is replaced by a fresh clone: what it was waiting on (a
        // balancer's busy endpoints, queued for capacity) was registered with a waker that
        // never wakes, and must not keep its place in the queue.
        _ => {
            let fresh = service.clone();
            drop(std::mem::replace(service, fresh));
            CallOrReject::call(service.clone(), req)
        }
    }
}

/// A response the gateway writes itself: a status, Kong's message (or a whole JSON body) and
/// perhaps one header.
#[derive(Debug)]
pub(crate) struct Rejection {
    /// Which part of the gateway answers.
    pub(crate) by: reject::AnsweredBy,
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
    pub(crate) header: Option<(HeaderName, HeaderValue)>,
    /// A JSON body to send instead of `{"message": message}`.
    pub(crate) json: Option<bytes::Bytes>,
}

impl<S, R> CallOrReject<S, R>
where
    S: Service<R>,
{
    pub(crate) fn call(service: S, req: R) -> Self {
        Self::Call {
            call: Oneshot::new(service, req),
        }
    }

    pub(crate) fn reject(
        by: reject::AnsweredBy,
        status: StatusCode,
        message: &'static str,
    ) -> Self {
        Self::Reject {
            rejection: Some(Rejection {
                by,
                status,
                message,
                header: None,
                json: None,
            }),
        }
    }

    pub(crate) fn reject_with(rejection: Rejection) -> Self {
        Self::Reject {
            rejection: Some(rejection),
        }
    }
}

impl<S, R, B> Future for CallOrReject<S, R>
where
    S: Service<R, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CallOrRejectProj::Called { future } => {
                future.poll(cx).map_ok(|res| res.map(ResponseBody::new))
            }
            CallOrRejectProj::Call { call } => {
                call.poll(cx).map_ok(|res| res.map(ResponseBody::new))
            }
            CallOrRejectProj::Reject { rejection } => {
                let Some(rejection) = rejection.take() else {
                    // Polled after completion: the future contract allows anything but a panic
                    // is unkind on the request path.
                    return Poll::Pending;
                };
                let mut res = match rejection.json {
                    Some(body) => reject::json_body(rejection.status, body),
                    None => reject::json(rejection.status, rejection.message),
                };
                if let Some((name, value)) = rejection.header {
                    res.headers_mut().insert(name, value);
                }
                res.extensions_mut().insert(rejection.by);
                Poll::Ready(Ok(res))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::future::Ready;

    /// Ready only every other time it is asked, waking its caller when it is.
    #[derive(Clone, Default)]
    struct Reluctant {
        asked: bool,
    }

    impl Service<()> for Reluctant {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            let was_asked = self.asked;
            self.asked = !was_asked;
            if was_asked {
                Poll::Ready(Ok(()))
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(Response::new("called".to_owned())))
        }
    }

    #[tokio::test]
    async fn a_service_not_ready_at_once_is_called_through_a_clone_once_ready() {
        let mut service = Reluctant::default();
        let fut = call_ready(&mut service, ());
        assert!(matches!(fut, CallOrReject::Call { .. }));
        let res = fut.await.unwrap();
        assert_eq!(res.status(), 200);
        // The next attempt finds the handle ready and calls it directly.
        assert!(matches!(
            call_ready(&mut service, ()),
            CallOrReject::Called { .. }
        ));
    }
}
