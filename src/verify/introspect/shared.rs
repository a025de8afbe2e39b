//! A cache of introspection answers shared by every replica of an API (e.g.
//! on Redis): a token introspected by one replica is served to the others
//! without another call to the authorization server.
//!
//! Only active answers are shared, keyed by the token's SHA-256 digest, for
//! as long as they are valid (`min(exp, max_ttl)` from when they were
//! fetched). An answer read back passes every check again (`exp`, audience,
//! …), so a stale one is never accepted; a store that fails or answers
//! garbage only costs a call to the authorization server.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// The SHA-256 digest of an access token: the key of shared stores, so that
/// no token is ever stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub(crate) [u8; 32]);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &[u8]) -> Self {
        Self(super::cache::digest(token))
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// A store of introspection answers shared by replicas. Implementations
/// handle their own timeouts and failures: a `get` that fails answers
/// `None`, a `put` that fails is dropped.
pub trait SharedIntrospectionCache: Send + Sync + 'static {
    /// The answer stored for `key`, if any, and how long it stays valid (the
    /// rest of the TTL it was stored with): a replica that reads it trusts
    /// it no longer than the replica that fetched it would.
    fn get(&self, key: TokenDigest) -> BoxFuture<'static, Option<(Bytes, Duration)>>;

    /// Stores `answer` (an active introspection answer, JSON) for `ttl`.
    fn put(&self, key: TokenDigest, answer: Bytes, ttl: Duration) -> BoxFuture<'static, ()>;
}
