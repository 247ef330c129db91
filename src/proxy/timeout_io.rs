//! An upstream connection with nginx-style read and write timeouts.
//!
//! The timeout is the longest time one read (or one write) may wait for the upstream, not a
//! deadline for the whole exchange: a slow but steady stream is fine, a stalled one is cut.
//! This is what Kong's `read_timeout`/`write_timeout` and nginx's `proxy_read_timeout`/
//! `proxy_send_timeout` mean.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

use crate::timer::LazyDeadline;

/// An I/O object whose reads and writes fail with [`io::ErrorKind::TimedOut`] after waiting
/// longer than the configured timeouts.
#[derive(Debug)]
pub(crate) struct TimeoutIo<T> {
    io: T,
    read: LazyDeadline,
    write: LazyDeadline,
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

// === impl TimeoutIo ===

impl<T> TimeoutIo<T> {
    pub(crate) fn new(io: T, read_timeout: Duration, write_timeout: Duration) -> Self {
        Self {
            io,
            read: LazyDeadline::new(read_timeout),
            write: LazyDeadline::new(write_timeout),
        }
    }
}

impl<T: Read + Unpin> Read for TimeoutIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending if this.read.poll_expired(cx) => {
                Poll::Ready(Err(timed_out("upstream read timed out")))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                this.read.disarm();
                ready
            }
        }
    }
}

impl<T> TimeoutIo<T> {
    /// Applies the write timeout to a write's outcome. `wrote` is whether progress means a
    /// request went out, after which the wait for its answer starts afresh, not from when the
    /// connection last went idle in the pool.
    fn after_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
        wrote: bool,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending if self.write.poll_expired(cx) => {
                Poll::Ready(Err(timed_out("upstream write timed out")))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.write.disarm();
                if wrote {
                    self.read.disarm();
                }
                ready
            }
        }
    }
}

impl<T: Write + Unpin> Write for TimeoutIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, poll, true)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, poll, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.after_write(cx, poll, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for TimeoutIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    async fn read_some<T: Read + Unpin>(io: &mut T) -> io::Result<usize> {
        let mut storage = [0u8; 16];
        std::future::poll_fn(|cx| {
            let mut buf = hyper::rt::ReadBuf::new(&mut storage);
            match Pin::new(&mut *io).poll_read(cx, buf.unfilled()) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_waiting_longer_than_the_timeout_fails_with_timed_out() {
        let (client, _server) = tokio::io::duplex(64);
        let mut io = TimeoutIo::new(
            TokioIo::new(client),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        let started = Instant::now();
        let err = read_some(&mut io).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_of_data_never_times_out() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = TimeoutIo::new(
            TokioIo::new(client),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                server.write_all(b"x").await.unwrap();
            }
        });
        for _ in 0..4 {
            assert_eq!(read_some(&mut io).await.unwrap(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_restarts_the_read_clock_of_a_connection_that_sat_idle() {
        // A pooled connection: hyper polls its read side while idle, which arms the timer.
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = TimeoutIo::new(
            TokioIo::new(client),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        let _ = tokio::time::timeout(Duration::ZERO, read_some(&mut io)).await;
        tokio::time::advance(Duration::from_secs(4)).await;

        // A request goes out on it 4 s later and its answer takes 3 s: 7 s after the idle
        // read began, but only 3 s after the request.
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"GET"))
            .await
            .unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            server.write_all(b"x").await.unwrap();
            std::future::pending::<()>().await;
        });
        assert_eq!(read_some(&mut io).await.unwrap(), 1);
    }
}
