//! Waiting for the operating system to ask the process to stop.

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: the signals process managers send to
/// stop a service. Pass it to [`Server::serve_with_shutdown`](super::Server::serve_with_shutdown).
///
/// Called inside a tokio runtime, it takes over both signals at once, before the future is
/// first polled: a signal sent as soon as the server answers its first request stops it
/// gracefully rather than killing the process (the default action).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let streams = tokio::runtime::Handle::try_current().ok().map(|_| {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    });
    async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (interrupt, terminate) = match streams {
                Some(streams) => streams,
                None => (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ),
            };
            let wait = |stream: std::io::Result<tokio::signal::unix::Signal>,
                        name: &'static str| async move {
                match stream {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(err) => {
                        tracing::error!(%err, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(interrupt, "SIGINT") => tracing::info!("SIGINT received, shutting down"),
                () = wait(terminate, "SIGTERM") => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(%err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received, shutting down");
        }
    }
}
