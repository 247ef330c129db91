//! Consumers (Kong's entity: who a client is) and their credentials.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use crate::identity::Consumer;

use super::credential::CredentialError;
use super::credential::derived_id;

/// A registry of consumers and their credentials, shared by the authenticators that read it
/// (clones share it; changes are atomic, readers never wait).
///
/// ```
/// use tower_gateway::auth::{Consumer, Consumers};
///
/// let consumers = Consumers::new();
/// consumers.insert(Consumer::new("4e8e7f0a").username("test-user"));
/// consumers.add_api_key("test-user", "test-api-key").unwrap();
/// assert!(consumers.add_api_key("nobody", "k").is_err());
/// ```
#[derive(Clone, Default)]
pub struct Consumers {
    registry: Arc<ArcSwap<Registry>>,
    /// Serializes changes (readers never take it).
    writer: Arc<std::sync::Mutex<()>>,
}

/// One immutable version of the registry.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    consumers: HashMap<Arc<str>, Consumer>,
    usernames: HashMap<Arc<str>, Arc<str>>,
    /// hashbrown's map for lookups by borrowed bytes ([`KeyProbe`]), with std's randomly
    /// keyed SipHash.
    keys: hashbrown::HashMap<SecretKey, ApiKeyCredential, std::hash::RandomState>,
    #[cfg(feature = "jwt")]
    pub(crate) jwt: HashMap<Arc<str>, Arc<super::jwt::credential::JwtCredential>>,
    /// Bumped on every change (token caches compare it).
    pub(crate) version: u64,
}

/// An API key's owner.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyCredential {
    pub(crate) consumer: Arc<str>,
    pub(crate) id: Arc<str>,
}

/// Key bytes whose comparison takes the same time wherever they differ. The map hashes them
/// with its randomly keyed SipHash, so lookups leak nothing an attacker can steer either.
#[derive(Clone)]
pub(crate) struct SecretKey(Box<[u8]>);

impl SecretKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        Self(key.into())
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for SecretKey {}

impl Hash for SecretKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Key bytes as a request carries them, to look a [`SecretKey`] up without copying them.
struct KeyProbe<'a>(&'a [u8]);

impl Hash for KeyProbe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `SecretKey`'s: a boxed slice hashes as the slice.
        self.0.hash(state);
    }
}

impl hashbrown::Equivalent<SecretKey> for KeyProbe<'_> {
    fn equivalent(&self, key: &SecretKey) -> bool {
        constant_time_eq(self.0, &key.0)
    }
}

/// Compares two byte strings in time that depends only on their lengths (`subtle`'s
/// constant-time equality).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

// === impl Consumers ===

impl Consumers {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a consumer, or replaces the one with the same id.
    pub fn insert(&self, consumer: Consumer) {
        let _ = self.edit(|edit| {
            edit.insert(consumer);
            Ok::<_, CredentialError>(())
        });
    }

    /// The consumer with this id or username.
    pub fn get(&self, id_or_username: &str) -> Option<Consumer> {
        self.registry.load().consumer(id_or_username).cloned()
    }

    /// Gives consumer `owner` (id or username) the API key `key`; returns the credential's id.
    pub fn add_api_key(&self, owner: &str, key: &str) -> Result<Arc<str>, CredentialError> {
        self.edit(|edit| edit.add_api_key(owner, key, None))
    }

    /// Applies several changes at once: one copy of the registry, published when `changes`
    /// returns `Ok`, dropped when it fails (readers never see half of it). Loading thousands
    /// of credentials goes through one edit.
    ///
    /// ```
    /// use tower_gateway::auth::{Consumer, Consumers, CredentialError};
    ///
    /// let consumers = Consumers::new();
    /// consumers
    ///     .edit(|edit| {
    ///         edit.insert(Consumer::new("c-1").username("ann"));
    ///         for i in 0..1000 {
    ///             edit.add_api_key("ann", &format!("key-{i}"), None)?;
    ///         }
    ///         Ok::<_, CredentialError>(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn edit<T, E>(
        &self,
        changes: impl FnOnce(&mut Editor<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // Writers are rare (configuration, the Admin API): one at a time, copy on write.
        let _serial = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.registry.load_full();
        let mut next = Registry::clone(&current);
        let out = changes(&mut Editor {
            registry: &mut next,
        })?;
        next.version += 1;
        self.registry.store(Arc::new(next));
        Ok(out)
    }

    /// How many consumers there are.
    pub fn len(&self) -> usize {
        self.registry.load().consumers.len()
    }

    /// Whether there is no consumer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Registry>> {
        self.registry.load()
    }
}

impl std::fmt::Debug for Consumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.registry.load();
        f.debug_struct("Consumers")
            .field("consumers", &registry.consumers.len())
            .field("api_keys", &registry.keys.len())
            .finish_non_exhaustive()
    }
}

/// Changes to a [`Consumers`] registry, applied together by [`Consumers::edit`].
pub struct Editor<'a> {
    pub(crate) registry: &'a mut Registry,
}

impl std::fmt::Debug for Editor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor").finish_non_exhaustive()
    }
}

impl Editor<'_> {
    /// Adds a consumer, or replaces the one with the same id.
    pub fn insert(&mut self, consumer: Consumer) {
        let next = &mut *self.registry;
        if let Some(old) = next.consumers.get(&consumer.id)
            && let Some(name) = &old.username
        {
            next.usernames.remove(name);
        }
        if let Some(name) = &consumer.username {
            next.usernames.insert(name.clone(), consumer.id.clone());
        }
        next.consumers.insert(consumer.id.clone(), consumer);
    }

    /// The consumer with this id or username, as edited so far.
    pub fn get(&self, id_or_username: &str) -> Option<&Consumer> {
        self.registry.consumer(id_or_username)
    }

    /// Gives consumer `owner` (id or username) the API key `key`, with the credential id `id`
    /// (default: derived from the key); returns the id.
    pub fn add_api_key(
        &mut self,
        owner: &str,
        key: &str,
        id: Option<Arc<str>>,
    ) -> Result<Arc<str>, CredentialError> {
        if key.is_empty() {
            return Err(CredentialError::EmptyKey);
        }
        let consumer = self
            .registry
            .consumer(owner)
            .ok_or_else(|| CredentialError::NoConsumer(owner.to_owned()))?
            .id
            .clone();
        let secret = SecretKey::new(key.as_bytes());
        if self.registry.keys.contains_key(&secret) {
            return Err(CredentialError::DuplicateKey);
        }
        let id = id.unwrap_or_else(|| derived_id("keyauth_credential", key).into());
        self.registry.keys.insert(
            secret,
            ApiKeyCredential {
                consumer,
                id: id.clone(),
            },
        );
        Ok(id)
    }
}

// === impl Registry ===

impl Registry {
    pub(crate) fn consumer(&self, id_or_username: &str) -> Option<&Consumer> {
        self.consumers.get(id_or_username).or_else(|| {
            self.usernames
                .get(id_or_username)
                .and_then(|id| self.consumers.get(id))
        })
    }

    pub(crate) fn api_key(&self, key: &[u8]) -> Option<&ApiKeyCredential> {
        self.keys.get(&KeyProbe(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_compare_equal_and_others_not() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derived_id("consumer", "ann");
        assert_eq!(a, derived_id("consumer", "ann"));
        assert_ne!(a, derived_id("consumer", "bob"));
        assert_ne!(a, derived_id("keyauth_credential", "ann"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn keys_find_their_consumer_by_id_or_username() {
        let consumers = Consumers::new();
        consumers.insert(Consumer::new("id-1").username("ann"));
        let credential = consumers.add_api_key("ann", "k1").unwrap();
        let registry = consumers.snapshot();
        let found = registry.api_key(b"k1").unwrap();
        assert_eq!(&*found.consumer, "id-1");
        assert_eq!(found.id, credential);
        assert!(registry.api_key(b"k2").is_none());
        assert_eq!(
            consumers.add_api_key("id-1", "k1"),
            Err(CredentialError::DuplicateKey)
        );
        assert_eq!(consumers.get("ann").unwrap().id.as_ref(), "id-1");
    }
}
