//! The client side of a connection: the header-read, keep-alive and send timeouts.
//!
//! hyper offers a header-read timeout, but it allocates and registers a fresh timer for every
//! request. Here the rules are enforced on the socket with a [`LazyDeadline`] whose deadline
//! is fixed by the connection's state, never re-armed by a byte received (nginx's rules):
//!
//! - the first request head must be complete within the header timeout of the accept (TLS
//!   handshake and protocol sniffing included);
//! - an idle keep-alive connection is closed after the keep-alive timeout; once the first
//!   byte of its next request arrives, that head must be complete within the header timeout
//!   of that byte (HTTP/1.1; on HTTP/2, where frames between streams are no request head,
//!   the keep-alive timeout alone bounds an idle connection, pings or not, as Envoy's
//!   `idle_timeout` does; a half-sent HTTP/2 header block has the header timeout from its
//!   first byte even while other streams are in flight);
//! - while a request is in flight (from its head until its response body is finished or
//!   dropped) neither clock runs, so slow upstreams and long streams are never cut by them
//!   (the request body has its own timeout, in the proxy);
//! - a write the client does not take (it stopped reading) may wait at most the send timeout
//!   (nginx's `send_timeout`), between two successive writes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::h2_frames::FrameWatch;
use crate::timer::LazyDeadline;

/// The client-side timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientTimeouts {
    /// From accept (first request) or from its first byte (later ones) to a complete head.
    pub(crate) header: Duration,
    /// How long a connection may sit idle between requests.
    pub(crate) keep_alive: Duration,
    /// How long one write may wait for the client to take it.
    pub(crate) send: Duration,
}

/// Per-connection state shared by the socket wrapper and the requests on it.
#[derive(Debug)]
pub(crate) struct ConnState {
    in_flight: AtomicUsize,
    /// When the connection was accepted.
    opened: Instant,
    /// Nanoseconds after `opened`, plus one, when the last request finished; 0 before the
    /// first request.
    idle_since: AtomicU64,
    /// Nanoseconds after `opened`, plus one, when the first byte of the next request head
    /// arrived on an idle connection; 0 while none has.
    head_started: AtomicU64,
    /// The connection's reader, parked without a clock while a request was in flight: woken
    /// when the last one ends so that the idle clock starts.
    reader: Mutex<Option<Waker>>,
}

/// Marks one request as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

/// The accepted socket, with the client-side timeouts applied to its reads and writes.
#[derive(Debug)]
pub(crate) struct ClientIo<T> {
    io: T,
    state: Arc<ConnState>,
    timeouts: ClientTimeouts,
    /// HTTP/2 only: where the client is in its frames. Frames between streams (pings, window
    /// updates) are no request head, so an idle connection has the keep-alive timeout alone,
    /// counted from its last stream; a header block half sent has the header timeout from its
    /// first byte, whatever other streams do.
    frames: Option<FrameWatch>,
    read: LazyDeadline,
    write: LazyDeadline,
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
            head_started: AtomicU64::new(0),
            reader: Mutex::new(None),
        }
    }

    /// Remembers the task reading the connection, to wake it when the connection goes idle.
    fn park_reader(&self, waker: &Waker) {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if !reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *reader = Some(waker.clone());
        }
    }

    /// When the connection was accepted.
    pub(crate) fn opened(&self) -> Instant {
        self.opened
    }

    /// Counts a request in; the returned guard counts it out.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn since_opened(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Bytes arrived while no request is in flight: the next request head has begun.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.since_opened(), Ordering::Relaxed);
        }
    }

    /// When the client must have sent the rest of its next request head, or have started
    /// one, or the connection is closed. `None` while a request is in flight.
    fn read_deadline(&self, timeouts: &ClientTimeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = |encoded: u64| self.opened + Duration::from_nanos(encoded.saturating_sub(1));
        let idle_since = self.idle_since.load(Ordering::Acquire);
        if idle_since == 0 {
            // The first request: counted from the accept.
            return Some(self.opened + timeouts.header);
        }
        match self.head_started.load(Ordering::Relaxed) {
            0 => Some(at(idle_since) + timeouts.keep_alive),
            started => Some(at(started) + timeouts.header),
        }
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
        state
            .idle_since
            .store(state.since_opened(), Ordering::Release);
        if state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let reader = state
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(reader) = reader {
                reader.wake();
            }
        }
    }
}

// === impl ClientIo ===

impl<T> ClientIo<T> {
    pub(crate) fn new(io: T, state: Arc<ConnState>, timeouts: ClientTimeouts, h2: bool) -> Self {
        Self {
            io,
            state,
            timeouts,
            frames: h2.then(FrameWatch::new),
            read: LazyDeadline::new(timeouts.header),
            write: LazyDeadline::new(timeouts.send),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                // (hyper keeps a read pending during requests too, to notice a client that
                // goes away; the idle clocks do not run then.)
                let idle = this.state.read_deadline(&this.timeouts);
                if idle.is_none() {
                    this.state.park_reader(cx.waker());
                }
                // An HTTP/2 request head half sent is due whatever other streams do.
                let head = this
                    .frames
                    .as_ref()
                    .and_then(FrameWatch::head_pending_since)
                    .map(|since| since + this.timeouts.header);
                let deadline = match (idle, head) {
                    (Some(idle), Some(head)) => idle.min(head),
                    (idle, head) => match idle.or(head) {
                        Some(deadline) => deadline,
                        None => return Poll::Pending,
                    },
                };
                if this.read.poll_until(cx, deadline) {
                    tracing::debug!("client idle or too slow to send a request head; closing");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received in time",
                    )));
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                match &mut this.frames {
                    Some(frames) => frames.saw(&buf.filled()[before..], Instant::now()),
                    None => this.state.bytes_arrived(),
                }
                Poll::Ready(Ok(()))
            }
            failed => failed,
        }
    }
}

impl<T: AsyncWrite + Unpin> ClientIo<T> {
    /// Times a write the client has not taken yet.
    fn timed<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending if self.write.poll_expired(cx) => {
                tracing::debug!("client stopped reading the response; closing");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read the response in time",
                )))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.write.disarm();
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.timed(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.timed(cx, polled)
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
