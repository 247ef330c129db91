//! A future shared by services that either pass a request on or answer it themselves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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
        Call { #[pin] call: Oneshot<S, R> },
        Reject { rejection: Option<Rejection> },
    }
}

/// A response the gateway writes itself: a status, Kong's message and perhaps one header.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
    pub(crate) header: Option<(HeaderName, HeaderValue)>,
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

    pub(crate) fn reject(status: StatusCode, message: &'static str) -> Self {
        Self::Reject {
            rejection: Some(Rejection {
                status,
                message,
                header: None,
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
            CallOrRejectProj::Call { call } => {
                call.poll(cx).map_ok(|res| res.map(ResponseBody::new))
            }
            CallOrRejectProj::Reject { rejection } => {
                let Some(rejection) = rejection.take() else {
                    // Polled after completion: the future contract allows anything but a panic
                    // is unkind on the request path.
                    return Poll::Pending;
                };
                let mut res = reject::json(rejection.status, rejection.message);
                if let Some((name, value)) = rejection.header {
                    res.headers_mut().insert(name, value);
                }
                Poll::Ready(Ok(res))
            }
        }
    }
}
