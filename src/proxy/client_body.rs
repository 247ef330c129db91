//! The request body as the proxy sends it upstream: counted, timed, and watched for the
//! client's faults.
//!
//! A client that breaks its body's framing (a bad chunk size, an early end, more or fewer
//! bytes than its `Content-Length`) or stalls it makes the upstream exchange fail too. Without
//! a witness that failure would read as the upstream's (`502`/`504`, counted by breakers and
//! health checks). [`ClientBody`] is that witness: it records what the client did in a slot
//! the response future reads, ends the body with an error (so the upstream request is aborted
//! and never sees a complete message), and enforces [`BodyTimeouts`].

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::BoxError;
use crate::body::{BodyTimeouts, RequestBytes};
use crate::timer::LazyDeadline;

/// How a client spoiled its own request, as the proxy found out while streaming the body. In
/// the extensions of the proxy's `400`/`408` answer (next to
/// [`AnsweredBy::CLIENT`](crate::reject::AnsweredBy::CLIENT)), for access logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientFault {
    /// The body's framing was broken, or it ended before it was complete (400).
    #[error("the client sent a malformed or truncated request body: {0}")]
    Malformed(String),
    /// The body stalled past the body timeout, between reads or in all (408).
    #[error("the client did not send its request body in time")]
    Timeout,
}

/// What the body saw, shared with the response future.
#[derive(Debug, Default)]
pub(crate) struct Witness(OnceLock<ClientFault>);

impl Witness {
    pub(crate) fn fault(&self) -> Option<&ClientFault> {
        self.0.get()
    }

    fn record(&self, fault: ClientFault) {
        let _ = self.0.set(fault);
    }
}

pin_project! {
    /// The client's request body on its way upstream.
    #[derive(Debug)]
    pub(crate) struct ClientBody<B> {
        #[pin]
        body: B,
        count: Option<RequestBytes>,
        // `None` for a body that was over before it began (no allocation for a GET).
        witness: Option<Arc<Witness>>,
        timeouts: BodyTimeouts,
        timer: Option<LazyDeadline>,
        // When the current wait for the client began.
        waiting_since: Option<Instant>,
        // When the whole body is due, from the first read (with a total timeout).
        due: Option<Instant>,
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("client body timeout")]
struct BodyTimedOut;

impl<B: Body> ClientBody<B> {
    pub(crate) fn new(body: B, count: Option<RequestBytes>, timeouts: BodyTimeouts) -> Self {
        let witness = (!body.is_end_stream()).then(Arc::default);
        Self {
            body,
            count,
            witness,
            timeouts,
            timer: None,
            waiting_since: None,
            due: None,
        }
    }

    /// The slot the response future reads, for a body that has anything to send.
    pub(crate) fn witness(&self) -> Option<Arc<Witness>> {
        self.witness.clone()
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(count), Some(data)) = (this.count.as_ref(), frame.data_ref()) {
                    count.add(data.len());
                }
                *this.waiting_since = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                let err = err.into();
                if let Some(witness) = this.witness {
                    witness.record(ClientFault::Malformed(err.to_string()));
                }
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let mut deadline = since + this.timeouts.between_reads;
                if let Some(total) = this.timeouts.total {
                    deadline = deadline.min(*this.due.get_or_insert(now + total));
                }
                let timer = this
                    .timer
                    .get_or_insert_with(|| LazyDeadline::new(this.timeouts.between_reads));
                if !timer.poll_until(cx, deadline) {
                    return Poll::Pending;
                }
                tracing::debug!("client request body timed out");
                if let Some(witness) = this.witness {
                    witness.record(ClientFault::Timeout);
                }
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A body fed by a channel: a client that sends when the test says so.
    struct Fed(mpsc::UnboundedReceiver<&'static str>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|piece| piece.map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes())))))
        }
    }

    fn timeouts(between: u64, total: Option<u64>) -> BodyTimeouts {
        BodyTimeouts {
            between_reads: Duration::from_secs(between),
            total: total.map(Duration::from_secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_between_reads_fails_as_the_clients_timeout() {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send("a").unwrap();
        let body = ClientBody::new(Fed(rx), None, timeouts(5, None));
        let witness = body.witness().unwrap();
        let started = Instant::now();
        assert!(body.collect().await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(witness.fault(), Some(&ClientFault::Timeout));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_is_cut_by_the_total_timeout_not_between_reads() {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send("x").is_err() {
                    return;
                }
            }
        });
        let body = ClientBody::new(Fed(rx), None, timeouts(5, Some(30)));
        let started = Instant::now();
        assert!(body.collect().await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_body_is_recorded_as_malformed() {
        let failing = Frames(
            [
                Ok(Frame::data(Bytes::from_static(b"a"))),
                Err(std::io::Error::other("invalid chunk size")),
            ]
            .into(),
        );
        let body = ClientBody::new(failing, None, timeouts(5, None));
        let witness = body.witness().unwrap();
        assert!(body.collect().await.is_err());
        assert!(matches!(witness.fault(), Some(ClientFault::Malformed(m)) if m.contains("chunk")));
    }

    #[test]
    fn a_body_over_before_it_began_costs_no_witness() {
        let body = ClientBody::new(
            http_body_util::Empty::<Bytes>::new(),
            None,
            timeouts(5, None),
        );
        assert!(body.witness().is_none());
    }

    /// A ready-made sequence of frames and errors.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, std::io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }
}
