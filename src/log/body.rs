//! The response body that writes the access-log record when it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::record::Record;

pin_project! {
    /// A response body that counts the bytes it sends and logs its request once: when it ends,
    /// fails, or is dropped (the client went away).
    #[derive(Debug)]
    pub struct LogBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        record: Option<Box<Record>>,
    }

    impl<B> PinnedDrop for LogBody<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                // hyper stops polling once a body says it has ended, and drops it.
                record.emit(this.inner.is_end_stream());
            }
        }
    }
}

impl<B: Body> LogBody<B> {
    pub(crate) fn new(inner: B, record: Box<Record>) -> Self {
        Self {
            inner,
            record: Some(record),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for LogBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = std::task::ready!(inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    record.bytes_out += data.len() as u64;
                }
                if inner.is_end_stream()
                    && let Some(record) = this.record.take()
                {
                    record.emit(true);
                }
            }
            Some(Err(_)) => {
                if let Some(record) = this.record.take() {
                    record.emit(false);
                }
            }
            None => {
                if let Some(record) = this.record.take() {
                    record.emit(true);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
