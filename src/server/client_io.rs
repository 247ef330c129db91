//! The client side of a connection: the header-read (and idle keep-alive) timeout.
//!
//! hyper offers a header-read timeout, but it allocates and registers a fresh timer for every
//! request. Here the same rule is enforced on the socket with a [`LazyDeadline`]: a client may
//! leave the connection idle, or take to send a request head, at most the timeout, counted from
//! the moment the connection last became idle (accepted, or the previous response finished).
//! While a request is in flight (from its head until its response body is finished or dropped)
//! the clock is off, so slow upstreams and long streams are never cut by it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::timer::LazyDeadline;

/// Per-connection state shared by the socket wrapper and the requests on it.
#[derive(Debug)]
pub(crate) struct ConnState {
    in_flight: AtomicUsize,
    /// When the connection was accepted.
    opened: Instant,
    /// Nanoseconds after `opened` when the last request finished.
    idle_since: AtomicU64,
}

/// Marks one request as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

/// The accepted socket, with the header-read timeout applied to its reads.
#[derive(Debug)]
pub(crate) struct ClientIo<T> {
    io: T,
    state: Arc<ConnState>,
    head: LazyDeadline,
}

pin_project! {
    /// A response body that keeps its request counted as in flight until it is finished or
    /// dropped.
    #[derive(Debug)]
    pub(crate) struct InFlightBody<B> {
        #[pin]
        inner: B,
        guard: InFlight,
    }
}

// === impl ConnState ===

impl ConnState {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            opened: Instant::now(),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Counts a request in; the returned guard counts it out.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When an idle connection's client must have sent a request head: `timeout` after the
    /// connection last became idle. `None` while a request is in flight.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
        Some(self.opened + idle_since + timeout)
    }
}

impl InFlight {
    /// The connection switched protocols: from now on it is a tunnel, never idle in the
    /// header-read sense (the tunnel's own timeouts apply).
    pub(crate) fn switched_protocols(&self) {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        let idle_since = u64::try_from(state.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        state.idle_since.store(idle_since, Ordering::Release);
        state.in_flight.fetch_sub(1, Ordering::Release);
    }
}

// === impl ClientIo ===

impl<T> ClientIo<T> {
    pub(crate) fn new(io: T, state: Arc<ConnState>, header_timeout: Duration) -> Self {
        Self {
            io,
            state,
            head: LazyDeadline::new(header_timeout),
        }
    }
}

impl<T: Read + Unpin> Read for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => loop {
                if !this.head.poll_expired(cx) {
                    return Poll::Pending;
                }
                // The read has waited a whole timeout; it only counts while the connection
                // was idle. (hyper keeps a read pending during requests too, to notice a
                // client that goes away.)
                let timeout = this.head.timeout();
                match this.state.idle_deadline(timeout) {
                    None => this.head.extend_to(Instant::now() + timeout),
                    Some(deadline) if deadline > Instant::now() => this.head.extend_to(deadline),
                    Some(_) => {
                        tracing::debug!("client idle or too slow to send a request head; closing");
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received in time",
                        )));
                    }
                }
            },
            ready => {
                this.head.disarm();
                ready
            }
        }
    }
}

impl<T: Write + Unpin> Write for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

// === impl InFlightBody ===

impl<B> InFlightBody<B> {
    pub(crate) fn new(inner: B, guard: InFlight) -> Self {
        Self { inner, guard }
    }
}

impl<B: Body<Data = Bytes>> Body for InFlightBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
