//! How an upstream exchange failed.

/// Why the proxy answered 502 or 504 instead of relaying the upstream's response. It is logged
/// and put into the response's extensions, so access logs and metrics can tell the cases apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamFailure {
    /// The connection was refused, reset or could not be made (502).
    #[error("connecting to the upstream failed: {0}")]
    Connect(String),
    /// Connecting took longer than the connect timeout (504).
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// A read or write waited longer than its timeout (504).
    #[error("the upstream timed out")]
    Timeout,
    /// The upstream closed the connection or sent something that is not HTTP (502).
    #[error("the upstream exchange failed: {0}")]
    Protocol(String),
    /// The upstream's response was parsed but must not be relayed (502).
    #[error("the upstream sent an invalid response: {0}")]
    InvalidResponse(&'static str),
}
