//! Shared state on Redis (feature `redis`), for APIs that run as several
//! replicas: a DPoP [`ReplayStore`] (a proof accepted by one replica is
//! refused by every other) and a [`SharedIntrospectionCache`] (a token
//! introspected by one replica is served to the others).
//!
//! - Replay checks are one atomic `SET key 1 NX PX ttl`; keys are
//!   namespaced (`{prefix}dpop:…`, `{prefix}introspection:…`) and hold
//!   digests only: no token, proof or key is stored.
//! - Every call has a timeout (default 250 ms). When Redis is unreachable or
//!   slow, replay checks fail closed (503 with `Retry-After`) unless
//!   [`RedisStore::fall_back_to_local_replay_store`] is set; the
//!   introspection cache falls back to the local cache and the authorization
//!   server. The connection is re-established when Redis returns, without a
//!   restart.
//! - After 3 failed calls in a row, Redis is skipped for 1 s, then one call
//!   probes it ([`RedisStore::circuit_breaker`]): during an outage, requests
//!   are answered at once instead of each waiting for the timeout.
//! - Anyone who can write to this Redis can make tokens look introspected:
//!   keep it private to the API's replicas.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tokenguard::{ClientAuth, DpopConfig, IntrospectionConfig, RedisStore, TokenGuard};
//!
//! let redis = Arc::new(RedisStore::open("redis://127.0.0.1:6379")?);
//! let guard = TokenGuard::builder()
//!     .issuer("https://id.example.com")
//!     .audience("https://api.example.com")
//!     .dpop(DpopConfig::new("https://api.example.com").replay_store(redis.clone()))
//!     .introspection(
//!         IntrospectionConfig::new(ClientAuth::client_secret_basic("api", "s3cret"))
//!             .shared_cache(redis),
//!     )
//!     .build()?;
//! # let _ = guard; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::bind::dpop::{
    MemoryReplayStore, ReplayFuture, ReplayKey, ReplayStore, ReplayStoreError, Seen,
};
use crate::telemetry::{self, RedisCall};
use crate::verify::introspect::{SharedIntrospectionCache, TokenDigest};

mod breaker;
use breaker::{Admit, Breaker};

/// Largest introspection answer stored or read back.
const MAX_ANSWER: usize = 64 * 1024;
/// `Retry-After` when Redis fails a replay check.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A connection to Redis used as a [`ReplayStore`] and a
/// [`SharedIntrospectionCache`]. Cheap to share (`Arc`); one multiplexed
/// connection serves every request.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    fallback: Option<Arc<MemoryReplayStore>>,
    breaker: Arc<Breaker>,
}

/// [`RedisStore::open`] failed.
#[derive(Debug)]
pub struct RedisStoreError(String);

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedisStoreError {}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://host:port/db`), keys prefixed
    /// `tokenguard:`, calls timing out after 250 ms. Connects on first use
    /// (so a Redis that is down at start-up is not fatal) and reconnects by
    /// itself. Must be called within a Tokio runtime.
    pub fn open(url: &str) -> Result<Self, RedisStoreError> {
        Self::open_with_timeout(url, Duration::from_millis(250))
    }

    /// [`open`](Self::open) with another per-call timeout.
    pub fn open_with_timeout(url: &str, timeout: Duration) -> Result<Self, RedisStoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisStoreError(
                "RedisStore::open must be called within a Tokio runtime".into(),
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|e| RedisStoreError(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisStoreError(format!("cannot set up the Redis connection: {e}")))?;
        Ok(Self {
            conn,
            prefix: "tokenguard:".into(),
            timeout,
            fallback: None,
            breaker: Arc::new(Breaker::new(3, Duration::from_secs(1))),
        })
    }

    /// The prefix of every key (default `tokenguard:`), e.g. one per API.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// When Redis cannot answer, check replays in a local store of this
    /// capacity instead of refusing (503). Replays across replicas are then
    /// not caught while Redis is away: availability over that protection.
    pub fn fall_back_to_local_replay_store(mut self, capacity: usize) -> Self {
        self.fallback = Some(Arc::new(MemoryReplayStore::new(capacity)));
        self
    }

    /// After `failures` failed or timed-out calls in a row (default 3), skip
    /// Redis for `cool_down` (default 1 s): replay checks fail at once (or use
    /// the local fallback), the introspection cache is bypassed. Then one call
    /// probes Redis; its success resumes normal use. `failures` of 0 turns
    /// the breaker off (every call waits for its timeout).
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker = Arc::new(Breaker::new(failures, cool_down));
        self
    }

    fn key(&self, kind: &str, digest: &[u8; 32]) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + 65);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push(':');
        for b in digest {
            let _ = write!(key, "{b:02x}");
        }
        key
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback.is_some())
            .field("breaker_threshold", &self.breaker.threshold())
            .finish_non_exhaustive()
    }
}

impl ReplayStore for RedisStore {
    fn record(&self, key: ReplayKey, ttl: Duration) -> ReplayFuture {
        let mut conn = self.conn.clone();
        let name = self.key("dpop", key.as_bytes());
        let timeout = self.timeout;
        let fallback = self.fallback.clone();
        let breaker = self.breaker.clone();
        let ttl_ms = ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        async move {
            let failure = if !admitted(&breaker) {
                "Redis is skipped for now: its last calls failed".to_owned()
            } else {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&name).arg(1).arg("NX").arg("PX").arg(ttl_ms);
                let answer: Result<Result<Option<String>, redis::RedisError>, _> =
                    tokio::time::timeout(timeout, cmd.query_async(&mut conn)).await;
                let failure = match answer {
                    // `OK` when set, nil when the key existed. With a fallback,
                    // the local store records every proof too, so that it still
                    // knows them if Redis goes away.
                    Ok(Ok(Some(_))) => {
                        answered(&breaker);
                        return match fallback {
                            Some(local) => local.record(key, ttl).await.or(Ok(Seen::First)),
                            None => Ok(Seen::First),
                        };
                    }
                    Ok(Ok(None)) => {
                        answered(&breaker);
                        return Ok(Seen::Before);
                    }
                    Ok(Err(e)) => format!("Redis refused the replay check: {e}"),
                    Err(_) => format!("Redis did not answer the replay check within {timeout:?}"),
                };
                failed(&breaker, &failure);
                failure
            };
            match fallback {
                Some(local) => {
                    tracing::debug!(error = %failure, "DPoP replay check falls back to the local store");
                    local.record(key, ttl).await
                }
                None => Err(ReplayStoreError::new(failure, RETRY_AFTER)),
            }
        }
        .boxed()
    }
}

impl SharedIntrospectionCache for RedisStore {
    fn get(&self, key: TokenDigest) -> BoxFuture<'static, Option<(Bytes, Duration)>> {
        let mut conn = self.conn.clone();
        let name = self.key("introspection", key.as_bytes());
        let timeout = self.timeout;
        let breaker = self.breaker.clone();
        async move {
            if !admitted(&breaker) {
                return None;
            }
            // The value and the time it has left, in one round trip.
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&name).cmd("PTTL").arg(&name);
            let answer = tokio::time::timeout(
                timeout,
                pipe.query_async::<(Option<Vec<u8>>, i64)>(&mut conn),
            )
            .await;
            match answer {
                Ok(Ok((value, left))) => {
                    answered(&breaker);
                    match value {
                        Some(value) if value.len() <= MAX_ANSWER && left > 0 => Some((
                            Bytes::from(value),
                            Duration::from_millis(left.unsigned_abs()),
                        )),
                        _ => None,
                    }
                }
                Ok(Err(e)) => {
                    failed(
                        &breaker,
                        &format!("shared introspection cache: Redis failed: {e}"),
                    );
                    None
                }
                Err(_) => {
                    failed(
                        &breaker,
                        "shared introspection cache: Redis did not answer in time",
                    );
                    None
                }
            }
        }
        .boxed()
    }

    fn put(&self, key: TokenDigest, answer: Bytes, ttl: Duration) -> BoxFuture<'static, ()> {
        let mut conn = self.conn.clone();
        let name = self.key("introspection", key.as_bytes());
        let timeout = self.timeout;
        let ttl_ms = ttl.as_millis().min(u128::from(u64::MAX)) as u64;
        let breaker = self.breaker.clone();
        async move {
            if answer.len() > MAX_ANSWER || ttl_ms == 0 {
                return;
            }
            if !admitted(&breaker) {
                return;
            }
            let mut cmd = redis::cmd("SET");
            cmd.arg(&name).arg(answer.as_ref()).arg("PX").arg(ttl_ms);
            let done = tokio::time::timeout(timeout, cmd.query_async::<()>(&mut conn)).await;
            if matches!(done, Ok(Ok(()))) {
                answered(&breaker);
            } else {
                failed(
                    &breaker,
                    "shared introspection cache: the answer was not stored",
                );
            }
        }
        .boxed()
    }
}

/// Whether to call Redis now (the breaker is closed, or this call probes).
fn admitted(breaker: &Breaker) -> bool {
    match breaker.admit(Instant::now()) {
        Admit::Call => true,
        Admit::Skip(_) => {
            telemetry::redis_call(RedisCall::Skipped);
            false
        }
    }
}

/// Counts an answered call.
fn answered(breaker: &Breaker) {
    breaker.success();
    telemetry::redis_call(RedisCall::Ok);
}

/// Counts a failed call; says so once when it opens the breaker.
fn failed(breaker: &Breaker, what: &str) {
    telemetry::redis_call(RedisCall::Error);
    if breaker.failure(Instant::now()) {
        tracing::warn!(
            error = %what,
            cool_down = ?breaker.cool_down(),
            "Redis failed its last calls: skipped until the cool-down is over"
        );
    } else {
        tracing::debug!(error = %what, "Redis call failed");
    }
}
