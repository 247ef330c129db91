//! Verified tokens, remembered so a repeated token costs a hash lookup instead of a signature
//! check. Bounded: at most [`MAX_ENTRIES`] tokens of at most [`MAX_TOKEN`] bytes; an entry
//! never outlives its token's `exp` or a change of the credentials.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use super::super::{Claims, Consumer};

/// Most tokens kept (16 shards of 256).
pub const MAX_ENTRIES: usize = 4096;
/// Longer tokens are verified every time (and never held in memory).
pub const MAX_TOKEN: usize = 2048;
const SHARDS: usize = 16;

/// What a verified token proved.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) consumer: Option<Consumer>,
    pub(crate) claims: Claims,
}

#[derive(Debug)]
struct Entry {
    token: Box<str>,
    /// The credentials version the token was verified against.
    version: u64,
    /// Unix seconds after which the entry is useless (the token's `exp`), if any.
    expires: Option<i64>,
    verified: Verified,
}

#[derive(Debug)]
pub(crate) struct TokenCache {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    hasher: RandomState,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl TokenCache {
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The verification of `token` against credentials `version`, if remembered and alive.
    pub(crate) fn get(&self, token: &str, version: u64, now: i64) -> Option<Verified> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let hash = self.hasher.hash_one(token);
        let shard = self.shard(hash);
        let entry = shard.get(&hash)?;
        let alive = entry.version == version && entry.expires.is_none_or(|exp| now < exp);
        (alive && *entry.token == *token).then(|| entry.verified.clone())
    }

    /// Remembers a verified token.
    pub(crate) fn put(
        &self,
        token: &str,
        version: u64,
        expires: Option<i64>,
        now: i64,
        verified: Verified,
    ) {
        if token.len() > MAX_TOKEN || expires.is_some_and(|exp| exp <= now) {
            return;
        }
        let hash = self.hasher.hash_one(token);
        let mut shard = self.shard(hash);
        if shard.len() >= MAX_ENTRIES / SHARDS && !shard.contains_key(&hash) {
            shard.retain(|_, e| e.version == version && e.expires.is_none_or(|exp| now < exp));
            if shard.len() >= MAX_ENTRIES / SHARDS {
                // Still full of live tokens: start this shard over. Forgetting only costs a
                // signature check later; it never admits anything.
                shard.clear();
            }
        }
        shard.insert(
            hash,
            Entry {
                token: token.into(),
                version,
                expires,
                verified,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Shared by clones of one authenticator.
pub(crate) type SharedCache = Arc<TokenCache>;

#[cfg(test)]
mod tests {
    use super::*;

    fn verified() -> Verified {
        Verified {
            consumer: None,
            claims: Claims(Arc::new(serde_json::Map::new())),
        }
    }

    #[test]
    fn entries_end_with_exp_or_a_credentials_change() {
        let cache = TokenCache::default();
        cache.put("t", 1, Some(100), 50, verified());
        assert!(cache.get("t", 1, 99).is_some());
        assert!(cache.get("t", 1, 100).is_none());
        assert!(cache.get("t", 2, 60).is_none());
        assert!(cache.get("u", 1, 60).is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TokenCache::default();
        for i in 0..20_000 {
            cache.put(&format!("token-{i}"), 1, None, 0, verified());
        }
        assert!(cache.len() <= MAX_ENTRIES);
        let long = "x".repeat(MAX_TOKEN + 1);
        cache.put(&long, 1, None, 0, verified());
        assert!(cache.get(&long, 1, 0).is_none());
    }
}
