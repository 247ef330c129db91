//! The bodies the balancer wraps: the request body, kept re-sendable until an endpoint starts
//! reading it; and the response body, which holds the endpoint's in-flight count until it ends.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::endpoint::InFlight;

/// The request body an endpoint service receives from a [`Balancer`](super::Balancer).
///
/// While no endpoint has read it, the balancer can still send the request to another endpoint
/// (after a connection failure); the first read hands it over for good.
#[derive(Debug)]
pub struct BalancedBody<B> {
    kind: Kind<B>,
}

#[derive(Debug)]
enum Kind<B> {
    /// No retry possible: the body itself.
    Direct(B),
    /// The client's body had ended before it was sent.
    Empty,
    /// Parked where the balancer can take it back until the first read.
    Parked(Arc<Mutex<Option<B>>>),
    /// Read by this attempt.
    Taken(B),
}

/// Where a retriable body waits.
pub(crate) type Slot<B> = Arc<Mutex<Option<B>>>;

impl<B> BalancedBody<B> {
    pub(crate) fn direct(body: B) -> Self {
        Self {
            kind: Kind::Direct(body),
        }
    }

    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub(crate) fn parked(slot: Slot<B>) -> Self {
        Self {
            kind: Kind::Parked(slot),
        }
    }
}

/// Whether a parked body is still there (no endpoint read it).
pub(crate) fn unread<B>(slot: &Slot<B>) -> bool {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

impl<B> Body for BalancedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut self.kind;
        if let Kind::Parked(slot) = this {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            *this = match taken {
                Some(body) => Kind::Taken(body),
                // Another attempt took it (cannot happen: attempts are sequential).
                None => Kind::Empty,
            };
        }
        match this {
            Kind::Direct(body) | Kind::Taken(body) => Pin::new(body).poll_frame(cx),
            Kind::Empty | Kind::Parked(_) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Direct(body) | Kind::Taken(body) => body.is_end_stream(),
            Kind::Empty => true,
            Kind::Parked(slot) => slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Direct(body) | Kind::Taken(body) => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Parked(slot) => slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}

pin_project! {
    /// A response body that counts as in flight on its endpoint until it ends or is dropped.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        body: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let mut body = this.body;
        let frame = std::task::ready!(body.as_mut().poll_frame(cx));
        if frame.is_none() || body.is_end_stream() {
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
