//! The introspection cache: answers keyed by the SHA-256 digest of the token,
//! never the token itself. Active answers live until `min(exp + leeway,
//! now + max_ttl)` and are checked against the clock on every hit; refused
//! ones for `inactive_ttl`, in a separate, smaller cache so that a flood of
//! junk tokens cannot evict the active ones. Errors are never cached.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::claims::AccessToken;
use crate::error::AuthError;
use crate::verify::cache::ENTRY_OVERHEAD;

/// SHA-256 of a token.
pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(token: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(token).into()
}

#[derive(Clone)]
struct Active {
    token: Arc<AccessToken>,
    valid_from: i64,
    valid_until: i64,
    weight: u64,
}

#[derive(Clone)]
struct Refused {
    error: AuthError,
    valid_until: i64,
}

#[derive(Clone)]
struct ActiveWeighter;

impl Weighter<Digest, Active> for ActiveWeighter {
    fn weight(&self, _key: &Digest, entry: &Active) -> u64 {
        entry.weight
    }
}

pub(crate) struct IntrospectionCache {
    active: Cache<Digest, Active, ActiveWeighter>,
    refused: Option<Cache<Digest, Refused>>,
    max_ttl: i64,
    inactive_ttl: i64,
    min_weight: u64,
}

fn millis(d: std::time::Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Unix time in milliseconds: entries live for sub-second TTLs too.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

impl IntrospectionCache {
    pub(crate) fn new(config: &super::IntrospectionConfig) -> Self {
        let max_entries = config.max_entries.max(1);
        let inactive_ttl = millis(config.inactive_ttl);
        Self {
            active: Cache::with_weighter(max_entries, config.max_bytes, ActiveWeighter),
            // A refusal weighs little; an eighth of the entries absorbs floods
            // of the same dead tokens.
            refused: (inactive_ttl > 0).then(|| Cache::new((max_entries / 8).max(16))),
            max_ttl: millis(config.max_ttl),
            inactive_ttl,
            min_weight: (config.max_bytes / max_entries as u64).max(1),
        }
    }

    /// The cached answer for `key` at `now` (Unix milliseconds, as every
    /// time here), if one is still valid.
    pub(crate) fn get(
        &self,
        key: &Digest,
        now: i64,
    ) -> Option<Result<Arc<AccessToken>, AuthError>> {
        if let Some(entry) = self.active.get(key) {
            if now >= entry.valid_from && now < entry.valid_until {
                return Some(Ok(entry.token));
            }
            self.active.remove(key);
        }
        let refused = self.refused.as_ref()?;
        let entry = refused.get(key)?;
        if now < entry.valid_until {
            return Some(Err(entry.error));
        }
        refused.remove(key);
        None
    }

    /// Caches an active answer until the time it returns (none when it is
    /// not valid now). `exp` and `nbf` are already offset by the leeway.
    pub(crate) fn insert_active(
        &self,
        key: Digest,
        token: &Arc<AccessToken>,
        now: i64,
        exp: i64,
        nbf: Option<i64>,
    ) -> Option<i64> {
        let valid_until = exp.min(now.saturating_add(self.max_ttl));
        if valid_until <= now {
            return None;
        }
        let weight = (token.payload.len() as u64 * 2 + ENTRY_OVERHEAD).max(self.min_weight);
        self.active.insert(
            key,
            Active {
                token: token.clone(),
                valid_from: nbf.unwrap_or(i64::MIN),
                valid_until,
                weight,
            },
        );
        Some(valid_until)
    }

    /// Caches a refusal for `inactive_ttl`.
    pub(crate) fn insert_refused(&self, key: Digest, error: &AuthError, now: i64) {
        if let Some(refused) = &self.refused {
            refused.insert(
                key,
                Refused {
                    error: error.clone(),
                    valid_until: now.saturating_add(self.inactive_ttl),
                },
            );
        }
    }
}
