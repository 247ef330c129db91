//! Errors from building a router.

/// A route that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A path pattern is malformed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The pattern as written.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A regex path does not compile.
    #[error("invalid regex path {path:?}: {reason}")]
    InvalidRegex {
        /// The path as written.
        path: String,
        /// The regex engine's explanation.
        reason: String,
    },
    /// A host pattern is malformed.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The pattern as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header condition is malformed.
    #[error("invalid header condition {name:?}: {reason}")]
    InvalidHeader {
        /// The header name as written.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A route with no path, host, method or header condition (Kong refuses these too).
    #[error("route {0} must have at least one of paths, hosts, methods or headers")]
    NoCondition(String),
}
