//! Replay protection for DPoP proofs (RFC 9449 §11.1): each proof's `jti` is
//! accepted once per key within the window in which its `iat` is accepted.
//!
//! The store sees only [`ReplayKey`]s, a SHA-256 digest of the proof key's
//! thumbprint and the `jti`: no proof, token or key is stored.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use sha2::Digest as _;

/// What a replay store records: the digest of (thumbprint, `jti`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of a proof by the key with this RFC 7638 `thumbprint`,
    /// carrying this `jti`.
    pub fn new(thumbprint: &str, jti: &str) -> Self {
        let mut h = sha2::Sha256::new();
        h.update(thumbprint.as_bytes());
        // The thumbprint is base64url: a NUL cannot occur in it.
        h.update([0]);
        h.update(jti.as_bytes());
        Self(h.finalize().into())
    }

    /// The digest, e.g. to build a key of a shared store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplayKey(..)")
    }
}

/// What [`ReplayStore::record`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use: recorded now.
    First,
    /// Recorded before and not expired: a replay.
    Before,
}

/// The store could not answer (full, unreachable, timed out). The request is
/// refused with 503: a store that cannot answer never lets a replay through.
#[derive(Debug, Clone)]
pub struct ReplayStoreError {
    message: String,
    retry_after: Duration,
}

impl ReplayStoreError {
    /// An error with a message for the log and the client's retry delay.
    pub fn new(message: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            message: message.into(),
            retry_after,
        }
    }

    /// When the client may retry.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for ReplayStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReplayStoreError {}

/// The future of [`ReplayStore::record`].
pub type ReplayFuture = Pin<Box<dyn Future<Output = Result<Seen, ReplayStoreError>> + Send>>;

/// Where the `jti`s of accepted proofs are recorded. Must be atomic: of two
/// concurrent calls with one key, exactly one sees [`Seen::First`].
///
/// [`MemoryReplayStore`] is the default; a store shared by every replica of
/// an API (e.g. on Redis) lets no replica accept a proof another one has.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` for `ttl` unless it is recorded already.
    fn record(&self, key: ReplayKey, ttl: Duration) -> ReplayFuture;
}

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    /// Key → expiry (Unix ms).
    seen: HashMap<ReplayKey, i64>,
    /// Keys in insertion order with their expiry, to drop expired ones in
    /// amortised constant time (every TTL is the same window).
    order: VecDeque<(i64, ReplayKey)>,
}

impl Shard {
    fn purge(&mut self, now: i64) {
        while let Some(&(expiry, key)) = self.order.front() {
            if expiry > now {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key).is_some_and(|e| *e <= now) {
                self.seen.remove(&key);
            }
        }
    }
}

/// The in-process replay store: bounded, and safe when full. It never
/// evicts an unexpired entry (that would let its replay through): when full,
/// new proofs are refused with 503 until entries expire.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use tokenguard::{MemoryReplayStore, ReplayStore, Seen};
/// let store = MemoryReplayStore::new(100_000);
/// use tokenguard::ReplayKey;
/// let key = ReplayKey::new("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "jti-1");
/// assert_eq!(store.record(key, Duration::from_secs(60)).await.unwrap(), Seen::First);
/// assert_eq!(store.record(key, Duration::from_secs(60)).await.unwrap(), Seen::Before);
/// # }
/// ```
pub struct MemoryReplayStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl MemoryReplayStore {
    /// A store holding at most `capacity` unexpired proofs.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn record_now(
        &self,
        key: ReplayKey,
        ttl: Duration,
        now: i64,
    ) -> Result<Seen, ReplayStoreError> {
        let index = usize::from(key.0[0]) % SHARDS;
        let Some(shard) = self.shards.get(index) else {
            return Err(ReplayStoreError::new("no shard", Duration::from_secs(1)));
        };
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.purge(now);
        if let Some(expiry) = shard.seen.get(&key)
            && *expiry > now
        {
            return Ok(Seen::Before);
        }
        if shard.seen.len() >= self.per_shard {
            // The oldest entry expires first: retry once it has.
            let wait = shard.order.front().map_or(1, |(expiry, _)| {
                expiry
                    .saturating_sub(now)
                    .max(0)
                    .unsigned_abs()
                    .div_ceil(1000)
                    .max(1)
            });
            return Err(ReplayStoreError::new(
                "the DPoP replay store is full",
                Duration::from_secs(wait),
            ));
        }
        let expiry = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        shard.seen.insert(key, expiry);
        shard.order.push_back((expiry, key));
        Ok(Seen::First)
    }
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

impl ReplayStore for MemoryReplayStore {
    fn record(&self, key: ReplayKey, ttl: Duration) -> ReplayFuture {
        Box::pin(std::future::ready(self.record_now(key, ttl, now_ms())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_key_within_the_ttl() {
        let store = MemoryReplayStore::new(1000);
        let ttl = Duration::from_secs(10);
        let a = ReplayKey::new("t", "1");
        assert_eq!(store.record_now(a, ttl, 0).unwrap(), Seen::First);
        assert_eq!(store.record_now(a, ttl, 9_999).unwrap(), Seen::Before);
        assert_eq!(
            store.record_now(ReplayKey::new("t", "2"), ttl, 1).unwrap(),
            Seen::First
        );
        assert_eq!(
            store.record_now(ReplayKey::new("u", "1"), ttl, 1).unwrap(),
            Seen::First
        );
        // Expired: may be used again (its `iat` is outside the window by then).
        assert_eq!(store.record_now(a, ttl, 10_000).unwrap(), Seen::First);
    }

    #[test]
    fn full_refuses_rather_than_forgets() {
        let store = MemoryReplayStore::new(SHARDS);
        let ttl = Duration::from_secs(10);
        let mut first = Vec::new();
        let mut refused = 0;
        for i in 0..200 {
            let key = ReplayKey::new("t", &i.to_string());
            match store.record_now(key, ttl, 0) {
                Ok(Seen::First) => first.push(key),
                Ok(Seen::Before) => panic!("a new key was called a replay"),
                Err(e) => {
                    refused += 1;
                    assert_eq!(e.retry_after(), Duration::from_secs(10));
                }
            }
        }
        assert!(refused > 0 && !first.is_empty());
        // Every accepted key is still remembered: no replay gets through.
        for key in &first {
            assert_eq!(store.record_now(*key, ttl, 5_000).unwrap(), Seen::Before);
        }
        // Once they expire, room again.
        let later = ReplayKey::new("t", "later");
        assert_eq!(store.record_now(later, ttl, 10_000).unwrap(), Seen::First);
    }
}
