//! Opaque access tokens: token introspection (RFC 7662).
//!
//! A token that is not a JWT of the issuer (or every token, with
//! [`IntrospectionConfig::introspect_jwts`]) is sent to the authorization
//! server's introspection endpoint, and its answer becomes the same
//! [`AccessToken`] a JWT would: handlers cannot tell the shapes apart.
//!
//! - **Cache** ([`cache`]): keyed by the token's SHA-256 digest; active
//!   answers until `min(exp, max_ttl)` (the revocation delay), refusals
//!   briefly; errors never.
//! - **Single-flight**: requests carrying the same uncached token share one
//!   call, which runs in its own task (a caller that goes away does not
//!   cancel it for the others).
//! - **Back-pressure**: at most `max_in_flight` calls at once; a request that
//!   would start one more is answered 503 with `Retry-After` at once.
//! - **Failures** of the authorization server (unreachable, slow, 5xx,
//!   garbage, oversized, our credentials refused) are 503, never 401 and
//!   never cached. Log lines name the endpoint and the failure, never the
//!   token.
//!
//! ```
//! use tokenguard::{ClientAuth, IntrospectionConfig};
//! let config = IntrospectionConfig::new(ClientAuth::client_secret_post("api", "s3cret"))
//!     .endpoint("https://id.example.com/oauth2/introspect");
//! # let _ = config;
//! ```

pub(crate) mod cache;
pub(crate) mod config;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod shared;
pub(crate) mod signed;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::{StatusCode, Url};
use tokio::sync::{OnceCell, Semaphore};
use tracing::Instrument;

pub use config::{ClientAuth, IntrospectionConfig};
pub use shared::{SharedIntrospectionCache, TokenDigest};

use self::cache::{Digest, IntrospectionCache, digest, now_ms};
use self::response::{Answer, Garbage};
use super::jwt::Policy;
use super::{Verification, Verifier, VerifyResult};
use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidToken};
use crate::fetch::{FetchError, Fetcher};
use crate::keys::discovery::{self, Endpoint};
use crate::telemetry::{self, Introspected};

/// `Retry-After` when the authorization server failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// `Retry-After` when too many introspections are in flight.
const RETRY_AFTER_BUSY: Duration = Duration::from_secs(1);
/// Wait after a failed discovery before the next attempt.
const DISCOVERY_COOLDOWN: Duration = Duration::from_secs(5);
/// At most one warning (or error) line per this long; the rest at debug.
const LOG_EVERY_MS: i64 = 10_000;

type SharedCall = Shared<BoxFuture<'static, VerifyResult>>;

/// Where the endpoint comes from.
pub(crate) enum EndpointSource {
    Fixed(Url),
    /// The issuer's metadata, resolved once.
    Discovered {
        url: OnceCell<Url>,
        /// Unix ms of the last failed discovery.
        failed_at: AtomicI64,
    },
}

/// Everything an introspection needs, per issuer.
pub(crate) struct Introspector {
    pub(crate) issuer: String,
    pub(crate) endpoint: EndpointSource,
    pub(crate) fetcher: Fetcher,
    pub(crate) auth: ClientAuth,
    pub(crate) policy: Policy,
    pub(crate) require_audience: bool,
    pub(crate) introspect_jwts: bool,
    /// RFC 9701: answers must be signed JWTs, checked by this.
    pub(crate) signed: Option<signed::SignedAnswers>,
    pub(crate) cache: Option<IntrospectionCache>,
    pub(crate) shared: Option<Arc<dyn SharedIntrospectionCache>>,
    /// Calls in flight, each with an id so that only its own entry is removed.
    pub(crate) inflight: Mutex<HashMap<Digest, (u64, SharedCall)>>,
    pub(crate) next_call: std::sync::atomic::AtomicU64,
    pub(crate) permits: Arc<Semaphore>,
    /// Unix ms of the last warning logged.
    pub(crate) logged_at: AtomicI64,
}

/// Why no answer could be had.
struct Unavailable {
    message: String,
    /// Our own misconfiguration (credentials refused, endpoint missing).
    ours: bool,
}

impl Introspector {
    pub(crate) fn new(
        issuer: String,
        endpoint: EndpointSource,
        fetcher: Fetcher,
        policy: Policy,
        config: &IntrospectionConfig,
        signed: Option<signed::SignedAnswers>,
    ) -> Self {
        Self {
            issuer,
            endpoint,
            fetcher,
            auth: config.auth.clone(),
            policy,
            require_audience: config.require_audience,
            introspect_jwts: config.introspect_jwts,
            signed,
            cache: config.cache.then(|| IntrospectionCache::new(config)),
            shared: config.shared.clone().filter(|_| config.cache),
            inflight: Mutex::new(HashMap::new()),
            next_call: std::sync::atomic::AtomicU64::new(0),
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            logged_at: AtomicI64::new(i64::MIN),
        }
    }

    /// Resolves the endpoint (discovery at most once per cooldown).
    async fn endpoint(&self) -> Result<Url, Unavailable> {
        let (url, failed_at) = match &self.endpoint {
            EndpointSource::Fixed(url) => return Ok(url.clone()),
            EndpointSource::Discovered { url, failed_at } => (url, failed_at),
        };
        if let Some(url) = url.get() {
            return Ok(url.clone());
        }
        let since = now_ms().saturating_sub(failed_at.load(Ordering::Relaxed));
        if since < DISCOVERY_COOLDOWN.as_millis() as i64 {
            return Err(Unavailable {
                message: "discovery of the introspection endpoint failed recently".into(),
                ours: false,
            });
        }
        let found = url
            .get_or_try_init(|| {
                discovery::endpoint(&self.fetcher, &self.issuer, Endpoint::Introspection)
            })
            .await;
        match found {
            Ok(url) => Ok(url.clone()),
            Err(e) => {
                failed_at.store(now_ms(), Ordering::Relaxed);
                Err(Unavailable {
                    message: format!("cannot discover the introspection endpoint: {e}"),
                    ours: false,
                })
            }
        }
    }

    /// Loads what introspection needs before the first request (discovery).
    pub(crate) async fn warm_up(&self) -> Result<(), String> {
        self.endpoint().await.map(|_| ()).map_err(|e| e.message)
    }

    /// One call to the endpoint, and what its answer means.
    async fn introspect(&self, token: &str) -> Result<Answer, Unavailable> {
        let url = self.endpoint().await?;
        let request =
            request::build(&self.auth, &self.issuer, token).map_err(|message| Unavailable {
                message,
                ours: true,
            })?;
        let fetched = self
            .fetcher
            .post_form(
                &url,
                request.authorization,
                request.form,
                if self.signed.is_some() {
                    signed::MEDIA_TYPE
                } else {
                    "application/json"
                },
            )
            .await
            .map_err(|e: FetchError| {
                let ours = matches!(
                    e.status,
                    Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST)
                );
                let message = match e.status {
                    Some(StatusCode::BAD_REQUEST) => format!(
                        "{} (the introspection endpoint refused the request: check the client authentication method {:?}; some servers also refuse to introspect JWTs, see introspect_jwts)",
                        e.message, self.auth
                    ),
                    _ if ours => format!(
                        "{} (the introspection endpoint refused our credentials: check the client id and secret or key of {:?})",
                        e.message, self.auth
                    ),
                    _ => e.message,
                };
                Unavailable { message, ours }
            })?;
        let body = match &self.signed {
            None => fetched.body,
            Some(signed) => signed
                .open(fetched.content_type.as_deref(), &fetched.body)
                .await
                .map_err(|why| Unavailable {
                    message: format!("invalid signed introspection answer from {url}: {why}"),
                    ours: false,
                })?,
        };
        response::read(body, &self.policy, self.require_audience).map_err(|Garbage(why)| {
            Unavailable {
                message: format!("invalid introspection answer from {url}: {why}"),
                ours: false,
            }
        })
    }

    /// [`introspect`](Self::introspect), counted and timed.
    async fn timed_introspect(&self, token: &str) -> Result<Answer, Unavailable> {
        let started = std::time::Instant::now();
        let answer = self.introspect(token).await;
        let took = started.elapsed();
        let result = match &answer {
            Ok(Answer::Active(_)) => Introspected::Active,
            Ok(Answer::Refused(_)) => Introspected::Inactive,
            Err(_) => Introspected::Error,
        };
        telemetry::introspection(result, took);
        tracing::debug!(
            issuer = %self.issuer,
            result = result.as_str(),
            seconds = took.as_secs_f64(),
            "token introspection"
        );
        answer
    }

    /// Logs a failure: at most one line per [`LOG_EVERY_MS`] at WARN (ERROR
    /// for our own misconfiguration), the rest at DEBUG.
    fn log(&self, failure: &Unavailable) {
        let now = now_ms();
        let last = self.logged_at.load(Ordering::Relaxed);
        let loud = now.saturating_sub(last) >= LOG_EVERY_MS
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        match (loud, failure.ours) {
            (true, true) => {
                tracing::error!(issuer = %self.issuer, error = %failure.message, "token introspection is misconfigured")
            }
            (true, false) => {
                tracing::warn!(issuer = %self.issuer, error = %failure.message, "token introspection failed")
            }
            (false, _) => {
                tracing::debug!(issuer = %self.issuer, error = %failure.message, "token introspection failed")
            }
        }
    }

    /// An active answer another replica stored, checked again as if fresh.
    async fn shared_answer(&self, key: Digest) -> Option<(Arc<AccessToken>, i64)> {
        let shared = self.shared.as_ref()?;
        let answer = match shared.get(TokenDigest(key)).await {
            Some((body, left)) => match response::read(body, &self.policy, self.require_audience) {
                Ok(Answer::Active(token)) => {
                    Some((token, left.as_millis().min(i64::MAX as u128) as i64))
                }
                // Expired since, or not an answer: ask the authorization server.
                _ => None,
            },
            None => None,
        };
        telemetry::shared_introspection_cache(answer.is_some());
        answer
    }

    /// Introspects (or takes another replica's answer) and caches the
    /// answer (errors are not cached).
    async fn call(self: Arc<Self>, key: Digest, id: u64, token: String) -> VerifyResult {
        let (answer, shared_left) = match self.shared_answer(key).await {
            Some((token, left)) => (Ok(Answer::Active(token)), Some(left)),
            None => (self.timed_introspect(&token).await, None),
        };
        let from_shared = shared_left.is_some();
        let now = now_ms();
        let result = match answer {
            Ok(Answer::Active(verified)) => {
                if let Some(cache) = &self.cache {
                    let claims = verified.claims();
                    let leeway = self.policy.leeway.saturating_mul(1000);
                    if let Some(exp) = claims.exp {
                        let valid_until = cache.insert_active(
                            key,
                            &verified,
                            now,
                            // Another replica's answer: no longer than it had left.
                            exp.as_secs()
                                .saturating_mul(1000)
                                .saturating_add(leeway)
                                .min(shared_left.map_or(i64::MAX, |l| now.saturating_add(l))),
                            claims
                                .nbf
                                .map(|n| n.as_secs().saturating_mul(1000).saturating_sub(leeway)),
                        );
                        if let (Some(shared), false, Some(until)) =
                            (&self.shared, from_shared, valid_until)
                        {
                            let ttl =
                                Duration::from_millis(until.saturating_sub(now).unsigned_abs());
                            let body = bytes::Bytes::copy_from_slice(&verified.payload);
                            // Not waited for: the callers have their answer.
                            let put = shared.put(TokenDigest(key), body, ttl);
                            match tokio::runtime::Handle::try_current() {
                                Ok(handle) => drop(handle.spawn(put)),
                                Err(_) => put.await,
                            }
                        }
                    }
                }
                Ok(verified)
            }
            Ok(Answer::Refused(e)) => {
                if let Some(cache) = &self.cache {
                    cache.insert_refused(key, &e, now);
                }
                Err(e)
            }
            Err(failure) => {
                self.log(&failure);
                Err(AuthError::introspection_unavailable(RETRY_AFTER_FAILURE))
            }
        };
        // After the cache is filled, so that no request in between finds
        // neither the call nor its answer.
        self.forget(&key, id);
        result
    }

    /// Removes call `id` from the calls in flight (not a later one).
    fn forget(&self, key: &Digest, id: u64) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.get(key).is_some_and(|(current, _)| *current == id) {
            inflight.remove(key);
        }
    }

    fn lookup(&self, key: &Digest) -> Option<VerifyResult> {
        self.cache.as_ref()?.get(key, now_ms())
    }
}

/// Removes an in-flight entry whose task ended without doing so (it panicked
/// or the runtime shut down), so that the token can be asked again.
struct Forget {
    introspector: Arc<Introspector>,
    key: Digest,
    id: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.introspector.forget(&self.key, self.id);
    }
}

impl Verifier for Arc<Introspector> {
    fn cached(&self, token: &[u8]) -> Option<Arc<AccessToken>> {
        // A cached refusal is answered by `verify`, which finds it again (and
        // counts the lookup, as it counts every miss).
        let hit = self.lookup(&digest(token))?.ok()?;
        telemetry::introspection_cache(true);
        Some(hit)
    }

    fn verify(&self, token: &str) -> Verification {
        if token.len() > self.policy.max_token_len {
            return Verification::Done(Err(AuthError::invalid_token(InvalidToken::TooLarge)));
        }
        let key = digest(token.as_bytes());
        let call = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some((_, call)) => {
                    if self.cache.is_some() {
                        telemetry::introspection_cache(false);
                    }
                    call.clone()
                }
                None => {
                    // Looked up under the lock: an answer is cached before its
                    // call leaves the map, so one of the two is found.
                    if let Some(answer) = self.lookup(&key) {
                        telemetry::introspection_cache(true);
                        return Verification::Done(answer);
                    }
                    if self.cache.is_some() {
                        telemetry::introspection_cache(false);
                    }
                    let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                        tracing::debug!(issuer = %self.issuer, "too many introspections in flight");
                        return Verification::Done(Err(AuthError::introspection_unavailable(
                            RETRY_AFTER_BUSY,
                        )));
                    };
                    let id = self.next_call.fetch_add(1, Ordering::Relaxed);
                    let this = self.clone();
                    let owned = token.to_owned();
                    let work = async move {
                        let _permit = permit;
                        this.call(key, id, owned).await
                    };
                    let call: SharedCall = match tokio::runtime::Handle::try_current() {
                        Ok(handle) => {
                            // Its events belong to the span of the request
                            // that started the call.
                            let task = handle.spawn(work.in_current_span());
                            let forget = Forget {
                                introspector: self.clone(),
                                key,
                                id,
                            };
                            async move {
                                let result = task.await;
                                drop(forget);
                                result.unwrap_or_else(|_| {
                                    Err(AuthError::introspection_unavailable(RETRY_AFTER_FAILURE))
                                })
                            }
                            .boxed()
                            .shared()
                        }
                        // No runtime to spawn on: the caller drives the call.
                        Err(_) => work.boxed().shared(),
                    };
                    inflight.insert(key, (id, call.clone()));
                    call
                }
            }
        };
        Verification::Pending(Box::pin(call))
    }
}
