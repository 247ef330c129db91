//! Reloading the configuration file on SIGHUP and when it changes.

use std::time::Duration;

use crate::admin::AdminApi;

/// How often the file's modification time is looked at.
const POLL: Duration = Duration::from_secs(1);
/// How long the file must stay unchanged before it is read (editors write in steps).
const SETTLE: Duration = Duration::from_millis(300);

pub(super) fn watch(admin: AdminApi, path: String) {
    #[cfg(unix)]
    {
        let (admin, path) = (admin.clone(), path.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(err) => {
                    tracing::warn!(%err, "no reload on SIGHUP");
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                load(&admin, &path, "SIGHUP").await;
            }
        });
    }
    tokio::spawn(async move {
        let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut seen = modified(&path);
        loop {
            tokio::time::sleep(POLL).await;
            let mut now = modified(&path);
            if now == seen {
                continue;
            }
            // Wait for the writes to settle.
            loop {
                tokio::time::sleep(SETTLE).await;
                let again = modified(&path);
                if again == now {
                    break;
                }
                now = again;
            }
            seen = now;
            load(&admin, &path, "file changed").await;
        }
    });
}

async fn load(admin: &AdminApi, path: &str, why: &str) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!(%err, "{why}: cannot read {path}; the running configuration stays");
            return;
        }
    };
    match admin.reload(&text, path).await {
        Ok(()) => tracing::info!("{why}: configuration reloaded from {path}"),
        Err(err) => {
            tracing::warn!("{why}: {err}; the running configuration stays");
        }
    }
}
