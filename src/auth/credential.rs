//! What every kind of credential shares: why one cannot be added, and the ids of those the
//! configuration gives none.

/// Why a credential could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// No consumer has this id or username.
    #[error("no consumer {0:?}")]
    NoConsumer(String),
    /// Another credential already uses this key.
    #[error("the key is already in use")]
    DuplicateKey,
    /// The key is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The JWT credential is unusable (a bad public key, an unsupported algorithm…).
    #[error("{0}")]
    InvalidJwt(String),
}

/// A stable id for an entity that has none in the file: the same name always gives the same
/// id, on every gateway instance (formatted like a UUID).
pub(crate) fn derived_id(kind: &str, name: &str) -> String {
    let hash = |seed: &str| crate::balance::hash64(format!("{seed}\0{kind}\0{name}").as_bytes());
    let (a, b) = (hash("a"), hash("b"));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}
