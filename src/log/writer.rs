//! A non-blocking writer of log lines: requests append to a buffer of their thread's own, a
//! background thread writes the buffers out.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a line may wait in its buffer before the writer thread writes it out (nginx's
/// `access_log … flush=`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// How many bytes may wait per thread before new lines are dropped (and counted).
pub const DEFAULT_MAX_PENDING: usize = 4 << 20;

/// A buffer this large wakes the writer thread before its interval is over.
const WAKE_AT: usize = 64 << 10;

/// Writes log lines without ever blocking the request that logs them: each thread appends to a
/// buffer of its own (no lock shared between workers), and a background thread writes the
/// buffers to the destination every [flush interval](DEFAULT_FLUSH_INTERVAL), or sooner
/// when one fills. When the destination is slower than the traffic (a blocked pipe, a full
/// disk) the buffers stop growing at [`DEFAULT_MAX_PENDING`] bytes per thread and further lines
/// are dropped and counted ([`dropped`](Self::dropped)), with a warning at most every 10 s,
/// rather than stalling requests or growing memory.
///
/// What is still buffered is written when the last clone is dropped, and by
/// [`flush`](Self::flush). Clones share the buffers and the thread.
///
/// ```
/// use tower_gateway::log::{AccessLogLayer, Format, LineWriter};
///
/// let stderr = LineWriter::new(std::io::stderr());
/// let layer = AccessLogLayer::combined().write_to(Format::Combined, stderr);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct LineWriter {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Shard]>,
    max_pending: usize,
    dropped: AtomicU64,
    destination: Mutex<Destination>,
    /// The background writer, woken early when a buffer fills.
    thread: Option<Thread>,
}

#[repr(align(128))]
struct Shard(Mutex<Vec<u8>>);

struct Destination {
    out: Box<dyn Write + Send>,
    /// A buffer swapped with a shard's, so that neither allocates again.
    spare: Vec<u8>,
    reported: u64,
    next_report: Instant,
}

impl LineWriter {
    /// Writes to `out` (stderr, a file…) from a thread of its own, every
    /// [`DEFAULT_FLUSH_INTERVAL`].
    pub fn new<W: Write + Send + 'static>(out: W) -> Self {
        Self::with_settings(out, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_PENDING)
    }

    /// Like [`new`](Self::new), with the flush interval and the bytes that may wait per
    /// thread before lines are dropped.
    pub fn with_settings<W: Write + Send + 'static>(
        out: W,
        flush_interval: Duration,
        max_pending: usize,
    ) -> Self {
        let destination = Mutex::new(Destination {
            out: Box::new(out),
            spare: Vec::new(),
            reported: 0,
            next_report: Instant::now(),
        });
        let shards = (0..crate::shard::count())
            .map(|_| Shard(Mutex::new(Vec::new())))
            .collect();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let weak = weak.clone();
            let thread = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || {
                    loop {
                        std::thread::park_timeout(flush_interval);
                        let Some(inner) = weak.upgrade() else {
                            return;
                        };
                        inner.write_out();
                    }
                })
                .map_err(|err| tracing::error!(%err, "cannot start the log writer thread; lines are written by the requests"))
                .ok()
                .map(|handle| handle.thread().clone());
            Inner {
                shards,
                max_pending,
                dropped: AtomicU64::new(0),
                destination,
                thread,
            }
        });
        Self { inner }
    }

    /// Appends one line, written by `line` into the buffer (the newline is added). Never
    /// blocks on the destination; drops the line when this thread's buffer is full.
    pub fn write_line(&self, line: impl FnOnce(&mut Vec<u8>)) {
        let inner = &*self.inner;
        let shard = &inner.shards[crate::shard::thread_index() % inner.shards.len()];
        let mut buf = lock(&shard.0);
        let start = buf.len();
        if start >= inner.max_pending {
            drop(buf);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        line(&mut buf);
        buf.push(b'\n');
        let full = start < WAKE_AT && buf.len() >= WAKE_AT;
        drop(buf);
        match &inner.thread {
            Some(thread) if full => thread.unpark(),
            Some(_) => {}
            // No writer thread: write at once.
            None => inner.write_out(),
        }
    }

    /// Writes out every buffered line now (e.g. before the process exits).
    pub fn flush(&self) {
        self.inner.write_out();
    }

    /// How many lines were dropped because the destination did not keep up.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Swaps each shard's buffer out and writes it to the destination.
    fn write_out(&self) {
        let mut destination = lock(&self.destination);
        let destination = &mut *destination;
        for shard in &*self.shards {
            {
                let mut buf = lock(&shard.0);
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, &mut destination.spare);
            }
            if let Err(err) = destination.out.write_all(&destination.spare) {
                // Nowhere to log it but the other logs; once per failure burst is enough.
                if destination.next_report <= Instant::now() {
                    tracing::warn!(%err, "writing the access log failed");
                }
            }
            destination.spare.clear();
        }
        let _ = destination.out.flush();
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > destination.reported && destination.next_report <= Instant::now() {
            tracing::warn!(
                dropped = dropped - destination.reported,
                "access log lines dropped: the destination does not keep up"
            );
            destination.reported = dropped;
            destination.next_report = Instant::now() + Duration::from_secs(10);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.write_out();
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination shared with the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A destination that blocks until released.
    struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (released, cv) = &*self.0;
            let mut released = lock(released);
            while !*released {
                released = cv.wait(released).unwrap();
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_destination_in_order_on_flush_and_on_drop() {
        let out = Shared::default();
        let writer = LineWriter::with_settings(out.clone(), Duration::from_secs(3600), 1 << 20);
        writer.write_line(|b| b.extend_from_slice(b"one"));
        writer.write_line(|b| b.extend_from_slice(b"two"));
        writer.flush();
        assert_eq!(&*lock(&out.0), b"one\ntwo\n");
        writer.write_line(|b| b.extend_from_slice(b"three"));
        drop(writer);
        assert_eq!(&*lock(&out.0), b"one\ntwo\nthree\n");
    }

    #[test]
    fn the_writer_thread_writes_within_the_interval() {
        let out = Shared::default();
        let writer = LineWriter::with_settings(out.clone(), Duration::from_millis(10), 1 << 20);
        writer.write_line(|b| b.extend_from_slice(b"later"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&out.0).is_empty() {
            assert!(Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*lock(&out.0), b"later\n");
    }

    #[test]
    fn a_stuck_destination_drops_and_counts_lines_instead_of_blocking_or_growing() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let writer = LineWriter::with_settings(Stuck(gate.clone()), Duration::from_millis(1), 1000);
        let started = Instant::now();
        // The writer thread takes the first buffer and blocks on it; the rest pile up.
        for _ in 0..10_000 {
            writer.write_line(|b| b.extend_from_slice(&[b'x'; 99]));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a request blocked"
        );
        assert!(writer.dropped() >= 9_000, "dropped {}", writer.dropped());
        let pending: usize = writer.inner.shards.iter().map(|s| lock(&s.0).len()).sum();
        assert!(pending <= 2 * 1000 + 100, "{pending} bytes pending");
        let (released, cv) = &*gate;
        *lock(released) = true;
        cv.notify_all();
    }
}
