//! Logging to stderr and to the file-log plugin's file.

/// Logs to stderr (and access records to the file-log plugin's file), filtered by `RUST_LOG`.
pub(super) fn init_logging(json: bool, access_to_stderr: bool, file: Option<std::fs::File>) {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    const ACCESS: &str = "tower_gateway::access";
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    let stderr = stderr.with_filter(filter_fn(move |m| access_to_stderr || m.target() != ACCESS));
    let file = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .with_filter(filter_fn(|m| m.target() == ACCESS))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .ok();
}
