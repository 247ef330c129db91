//! The circuit-breaker service and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower::Service;
use tower_http::classify::{ClassifiedResponse, ClassifyResponse};

use super::Breaker;
use super::breaker::Attempt;
use super::state::Outcome;
use crate::body::ResponseBody;
use crate::reject;

/// A service behind a circuit breaker: while the breaker is open, requests are answered with
/// `503` and `Retry-After` without reaching the inner service.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceExt, service_fn};
/// use tower_gateway::circuit::{Breaker, CircuitBreaker, Policy, Trip};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let failing = service_fn(|_req: Request<()>| async {
///     let mut res = Response::new(String::new());
///     *res.status_mut() = StatusCode::BAD_GATEWAY;
///     Ok::<_, std::convert::Infallible>(res)
/// });
/// // A breaker shared with whoever watches it (the metrics, an admin page).
/// let breaker = Breaker::new(Policy::default().trip(Trip::ConsecutiveFailures(1)));
/// let service = CircuitBreaker::new(failing, breaker.clone());
/// assert_eq!(service.clone().oneshot(Request::new(())).await.unwrap().status(), 502);
/// assert_eq!(service.oneshot(Request::new(())).await.unwrap().status(), 503);
/// assert!(matches!(breaker.state(), tower_gateway::circuit::State::Open { .. }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    /// `None`: a pass-through (a route without a breaker).
    breaker: Option<Breaker>,
    failure: FailureRule,
}

/// Which responses count as failures.
#[derive(Clone)]
pub(crate) enum FailureRule {
    /// A predicate on the status.
    Fn(fn(StatusCode) -> bool),
    /// A list of statuses.
    Set(crate::balance::StatusSet),
    /// A tower-http classifier, asked about the response head.
    Classify(Classifier),
}

/// A classifier behind a pointer: whether a response head is a failure.
type Classifier = Arc<dyn Fn(&Response<()>) -> bool + Send + Sync>;

impl std::fmt::Debug for FailureRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fn(_) => f.write_str("FailureRule::Fn"),
            Self::Set(set) => f.debug_tuple("FailureRule::Set").field(set).finish(),
            Self::Classify(_) => f.write_str("FailureRule::Classify"),
        }
    }
}

impl FailureRule {
    /// A rule from a tower-http classifier: a response it classifies as a failure from the
    /// head alone is one; one it can only judge at the end of the stream is not.
    pub(crate) fn classifier<C>(classifier: C) -> Self
    where
        C: ClassifyResponse + Clone + Send + Sync + 'static,
    {
        Self::Classify(Arc::new(move |head: &Response<()>| {
            matches!(
                classifier.clone().classify_response(head),
                ClassifiedResponse::Ready(Err(_))
            )
        }))
    }

    /// Judges `res`, handing it back.
    fn judge<B>(&self, res: Response<B>) -> (Outcome, Response<B>) {
        let failed = match self {
            Self::Fn(f) => f(res.status()),
            Self::Set(set) => set.contains(res.status()),
            Self::Classify(classify) => {
                // The head alone, moved out and back: nothing is copied.
                let (parts, body) = res.into_parts();
                let head = Response::from_parts(parts, ());
                let failed = classify(&head);
                let (parts, ()) = head.into_parts();
                return (outcome(failed), Response::from_parts(parts, body));
            }
        };
        (outcome(failed), res)
    }
}

fn outcome(failed: bool) -> Outcome {
    if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called { #[pin] future: F, attempt: Option<Attempt>, failure: FailureRule },
        Open { retry_after: Duration },
    }
}

/// Whether the gateway answered for the client's own fault (a broken or stalled request).
fn is_clients_fault<B>(res: &Response<B>) -> bool {
    res.extensions().get::<reject::AnsweredBy>() == Some(&reject::AnsweredBy::CLIENT)
}

/// The default failure rule: any 5xx.
pub(crate) fn server_error(status: StatusCode) -> bool {
    status.is_server_error()
}

// === impl CircuitBreaker ===

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` with `breaker`.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        Self {
            inner,
            breaker: Some(breaker),
            failure: FailureRule::Fn(server_error),
        }
    }

    /// `inner` without a breaker: every request passes (for stacks where only some routes
    /// have one).
    pub fn disabled(inner: S) -> Self {
        Self {
            inner,
            breaker: None,
            failure: FailureRule::Fn(server_error),
        }
    }

    /// Which response statuses count as failures (default: every 5xx).
    pub fn failure_statuses(mut self, is_failure: fn(StatusCode) -> bool) -> Self {
        self.failure = FailureRule::Fn(is_failure);
        self
    }

    pub(crate) fn failure_rule(mut self, rule: FailureRule) -> Self {
        self.failure = rule;
        self
    }

    /// The breaker, to read its state (`None` when disabled).
    pub fn breaker(&self) -> Option<&Breaker> {
        self.breaker.as_ref()
    }

    inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for CircuitBreaker<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let admitted = match &self.breaker {
            None => Ok(None),
            Some(breaker) => breaker.try_admit().map(Some),
        };
        let kind = match admitted {
            Ok(attempt) => Kind::Called {
                future: self.inner.call(req),
                attempt,
                failure: self.failure.clone(),
            },
            Err(retry_after) => Kind::Open { retry_after },
        };
        ResponseFuture { kind }
    }
}

// === impl ResponseFuture ===

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                attempt,
                failure,
            } => {
                let result = std::task::ready!(future.poll(cx));
                let (outcome, result) = match result {
                    // The client broke or stalled its own request: that proves nothing about
                    // the upstream either way (the attempt is dropped as abandoned).
                    Ok(res) if is_clients_fault(&res) => (None, Ok(res)),
                    Ok(res) => {
                        let (outcome, res) = failure.judge(res);
                        (Some(outcome), Ok(res))
                    }
                    Err(err) => (Some(Outcome::Failure), Err(err)),
                };
                if let (Some(attempt), Some(outcome)) = (attempt.take(), outcome) {
                    attempt.finish(outcome);
                }
                Poll::Ready(result.map(|res| res.map(ResponseBody::new)))
            }
            KindProj::Open { retry_after } => {
                let mut res = reject::answer(
                    reject::AnsweredBy::CIRCUIT_BREAKER,
                    StatusCode::SERVICE_UNAVAILABLE,
                    reject::SERVICE_UNAVAILABLE,
                );
                // Whole seconds, rounded up, at least 1.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                Poll::Ready(Ok(res))
            }
        }
    }
}
