//! Logging to stderr.

use std::io::Write;

/// Logs to stderr, filtered by `RUST_LOG`. Access records do not come this way: the access
/// log's [`LineWriter`](crate::log::LineWriter)s write them.
pub(super) fn init_logging(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .try_init()
        .ok();
}

/// stderr for a [`LineWriter`](crate::log::LineWriter): its buffers written in pieces that
/// end at a line's end and fit one atomic pipe write (`PIPE_BUF`, 4 KiB), so that the other
/// log lines written to stderr never land inside an access-log line.
pub(super) struct Stderr;

const PIPE_BUF: usize = 4096;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let piece = if buf.len() <= PIPE_BUF {
            buf
        } else {
            match buf[..PIPE_BUF].iter().rposition(|b| *b == b'\n') {
                Some(end) => &buf[..=end],
                // A line longer than a pipe write: whole, in as many writes as it takes.
                None => match buf.iter().position(|b| *b == b'\n') {
                    Some(end) => &buf[..=end],
                    None => buf,
                },
            }
        };
        std::io::stderr().lock().write_all(piece)?;
        Ok(piece.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
