//! The verified-token cache.
//!
//! Clients reuse one access token for minutes, and verifying its signature is
//! most of the cost of a request (25–80 µs). The cache keeps the result of a
//! successful verification, keyed by the exact token string (the whole
//! string is compared, so no collision can authenticate a different token),
//! until `min(exp, verification time + max TTL)`. On every hit, `exp` and
//! `nbf` are checked again against the clock, and the entry is dropped if the
//! key that verified it has left the issuer's key set. Failed verifications
//! are never cached.
//!
//! Bounded by entries and by memory: each entry weighs its token, its claims
//! and a fixed overhead, and at least `max_bytes / max_entries`, so the cache
//! never holds more than `max_entries` entries nor (approximately) more than
//! `max_bytes`. Eviction is CLOCK-Pro (`quick_cache`), sharded, so readers on
//! different cores do not contend.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::claims::AccessToken;
use crate::telemetry;

/// Settings of the verified-token cache. See
/// [`TokenGuardBuilder::token_cache`](crate::TokenGuardBuilder::token_cache).
///
/// ```
/// use std::time::Duration;
/// use tokenguard::TokenCacheConfig;
/// let config = TokenCacheConfig::default()
///     .max_entries(50_000)
///     .max_bytes(64 << 20)
///     .max_ttl(Duration::from_secs(60));
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenCacheConfig {
    /// Most entries held (default 10 000).
    pub max_entries: usize,
    /// Approximate memory bound in bytes (default 32 MiB).
    pub max_bytes: u64,
    /// Longest time an entry is trusted without verifying again (default
    /// 5 min), even if the token's `exp` is later.
    pub max_ttl: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 << 20,
            max_ttl: Duration::from_secs(300),
        }
    }
}

impl TokenCacheConfig {
    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Sets [`max_ttl`](Self::max_ttl).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
}

/// Bytes counted per entry beyond its token and payload: the entry, the
/// `AccessToken`, the claims struct and the cache's own bookkeeping.
pub(crate) const ENTRY_OVERHEAD: u64 = 512;

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) token: Arc<AccessToken>,
    /// Unix seconds from which the entry is not used (`exp` + leeway, or
    /// the max TTL).
    pub(crate) valid_until: i64,
    /// Unix seconds before which the token is not valid (`nbf` − leeway).
    pub(crate) valid_from: i64,
    /// The key that verified the token.
    pub(crate) key_fingerprint: u64,
    weight: u64,
}

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<Box<[u8]>, Entry> for EntryWeighter {
    fn weight(&self, _key: &Box<[u8]>, entry: &Entry) -> u64 {
        entry.weight
    }
}

pub(crate) struct TokenCache {
    cache: Cache<Box<[u8]>, Entry, EntryWeighter>,
    max_ttl: i64,
    min_weight: u64,
}

impl TokenCache {
    pub(crate) fn new(config: &TokenCacheConfig) -> Self {
        let max_entries = config.max_entries.max(1);
        Self {
            cache: Cache::with_weighter(max_entries, config.max_bytes, EntryWeighter),
            max_ttl: config.max_ttl.as_secs().min(i64::MAX as u64) as i64,
            min_weight: (config.max_bytes / max_entries as u64).max(1),
        }
    }

    /// The cached token if present and still valid at `now`; `present`
    /// tells whether the verifying key is still in the key set.
    pub(crate) fn get(
        &self,
        token: &[u8],
        now: i64,
        present: impl FnOnce(u64) -> bool,
    ) -> Option<Arc<AccessToken>> {
        let Some(entry) = self.cache.get(token) else {
            telemetry::token_cache(false);
            return None;
        };
        if now >= entry.valid_until || now < entry.valid_from || !present(entry.key_fingerprint) {
            self.cache.remove(token);
            telemetry::token_cache(false);
            return None;
        }
        telemetry::token_cache(true);
        Some(entry.token)
    }

    /// Caches a successful verification. `exp` and `nbf` are already offset
    /// by the leeway.
    pub(crate) fn insert(
        &self,
        token: &str,
        verified: &Arc<AccessToken>,
        now: i64,
        exp: i64,
        nbf: Option<i64>,
        key_fingerprint: u64,
    ) {
        let weight = (token.len() as u64 + verified.payload.len() as u64 * 2 + ENTRY_OVERHEAD)
            .max(self.min_weight);
        let entry = Entry {
            token: verified.clone(),
            valid_until: exp.min(now.saturating_add(self.max_ttl)),
            valid_from: nbf.unwrap_or(i64::MIN),
            key_fingerprint,
            weight,
        };
        self.cache.insert(token.as_bytes().into(), entry);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::AccessTokenClaims;
    use crate::scope::Scopes;

    fn token(payload_len: usize) -> Arc<AccessToken> {
        Arc::new(AccessToken {
            claims: Arc::new(AccessTokenClaims::default()),
            scopes: Scopes::default(),
            payload: vec![b'x'; payload_len].into_boxed_slice(),
        })
    }

    #[test]
    fn hits_only_while_valid_and_keyed() {
        let cache = TokenCache::new(&TokenCacheConfig::default().max_ttl(Duration::from_secs(100)));
        let t = token(10);
        cache.insert("a.b.c", &t, 1000, 1050, Some(990), 7);
        assert!(Arc::ptr_eq(
            &cache.get(b"a.b.c", 1000, |k| k == 7).unwrap(),
            &t
        ));
        // Exactly the same string only.
        assert!(cache.get(b"a.b.C", 1000, |_| true).is_none());
        assert!(cache.get(b"a.b.c ", 1000, |_| true).is_none());
        // Not before nbf (already offset by leeway), not after exp.
        assert!(cache.get(b"a.b.c", 989, |_| true).is_none());
        cache.insert("a.b.c", &t, 1000, 1050, Some(990), 7);
        assert!(cache.get(b"a.b.c", 1049, |_| true).is_some());
        // RFC 7519 §4.1.4: not on or after `exp`.
        assert!(cache.get(b"a.b.c", 1050, |_| true).is_none());
        // Dropped once expired.
        assert!(cache.get(b"a.b.c", 1000, |_| true).is_none());
    }

    #[test]
    fn max_ttl_caps_long_tokens() {
        let cache = TokenCache::new(&TokenCacheConfig::default().max_ttl(Duration::from_secs(60)));
        cache.insert("t", &token(1), 1000, 5000, None, 1);
        assert!(cache.get(b"t", 1059, |_| true).is_some());
        assert!(cache.get(b"t", 1060, |_| true).is_none());
    }

    #[test]
    fn entries_of_retired_keys_are_dropped() {
        let cache = TokenCache::new(&TokenCacheConfig::default());
        cache.insert("t", &token(1), 1000, 2000, None, 1);
        assert!(cache.get(b"t", 1000, |k| k == 2).is_none());
        assert_eq!(cache.len(), 0);
        assert!(cache.get(b"t", 1000, |_| true).is_none());
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let cache = TokenCache::new(
            &TokenCacheConfig::default()
                .max_entries(100)
                .max_bytes(1 << 30),
        );
        for i in 0..1000 {
            cache.insert(&format!("token-{i}"), &token(10), 0, 100, None, 1);
        }
        assert!(cache.len() <= 100, "{}", cache.len());
        assert!(cache.len() >= 50, "{}", cache.len());

        let cache = TokenCache::new(
            &TokenCacheConfig::default()
                .max_entries(1_000_000)
                .max_bytes(64 * 1024),
        );
        for i in 0..1000 {
            cache.insert(&format!("token-{i}"), &token(1000), 0, 100, None, 1);
        }
        // Each entry weighs at least 2,512 bytes here: at most 26 fit in 64 KiB.
        assert!(cache.len() <= 26, "{}", cache.len());
        assert!(cache.cache.weight() <= 64 * 1024);
    }
}
