//! DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is accepted only with
//! `Authorization: DPoP <token>` and one `DPoP` header holding a fresh proof
//! signed by that key, for this method and URI and this token.
//!
//! Order on every request (cache hits included): the proof's own checks
//! ([`proof`]) → the proof key's thumbprint equals `cnf.jkt` → the server
//! nonce, when nonces are on ([`nonce`]) → the `jti` recorded, keyed by
//! (thumbprint, `jti`), only after everything else passed ([`replay`]).
//!
//! ```
//! use std::time::Duration;
//! use tokenguard::{DpopConfig, TokenGuard};
//! let guard = TokenGuard::builder()
//!     .issuer("https://id.example.com")
//!     .audience("https://api.example.com")
//!     // The origin clients call: `htu` is compared with it, never with `Host`.
//!     .dpop(DpopConfig::new("https://api.example.com").max_age(Duration::from_secs(30)))
//!     .build()
//!     .unwrap();
//! # let _ = guard;
//! ```

pub(crate) mod htu;
pub(crate) mod nonce;
pub(crate) mod proof;
pub(crate) mod replay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;

pub use nonce::{NonceConfig, WeakSecret};
pub use replay::{MemoryReplayStore, ReplayFuture, ReplayKey, ReplayStore, ReplayStoreError, Seen};

use self::nonce::NonceCheck;
use self::proof::{Expect, KeyCache};
use crate::claims::NumericDate;
use crate::error::{AuthError, AuthErrorKind, InvalidProof, InvalidToken};
use crate::telemetry;

/// The `DPoP` request header (RFC 9449 §4.1).
static DPOP: HeaderName = HeaderName::from_static("dpop");

/// DPoP settings, given to
/// [`TokenGuardBuilder::dpop`](crate::TokenGuardBuilder::dpop).
///
/// | setting | default |
/// |---|---|
/// | bearer tokens | accepted unless bound; [`required`](Self::required) refuses them |
/// | proof algorithms | ES256, ES384, EdDSA, RS256, PS256 ([`algorithms`](Self::algorithms)) |
/// | proof age (`iat`) | at most 60 s old, 5 s in the future ([`max_age`](Self::max_age), [`clock_skew`](Self::clock_skew)) |
/// | replay store | in memory, 1000000 proofs ([`replay_store`](Self::replay_store)) |
/// | server nonces | off ([`nonces`](Self::nonces)) |
#[derive(Clone)]
#[must_use]
pub struct DpopConfig {
    pub(crate) public_url: String,
    pub(crate) required: bool,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) max_age: Duration,
    pub(crate) clock_skew: Duration,
    pub(crate) store: Option<Arc<dyn ReplayStore>>,
    pub(crate) nonces: Option<NonceConfig>,
}

mod defaults {
    use std::time::Duration;

    use jsonwebtoken::Algorithm;

    pub(super) const ALGORITHMS: &[Algorithm] = &[
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
    ];
    pub(super) const MAX_AGE: Duration = Duration::from_secs(60);
    pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(5);
    /// A proof is kept for its whole `iat` window (65 s by default): a
    /// million hold about 15,000 proofs a second, at about 90 bytes each.
    pub(super) const REPLAY_CAPACITY: usize = 1_000_000;
    /// Proof keys kept parsed.
    pub(super) const KEY_CACHE: usize = 10_000;
}

impl DpopConfig {
    /// DPoP for the API that clients call at `public_url` (scheme, host,
    /// port when not the default, and the path prefix the API is mounted
    /// under, if any). A proof's `htu` must be this URL followed by the
    /// request's path: it is never derived from `Host` or `X-Forwarded-*`.
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            required: false,
            algorithms: defaults::ALGORITHMS.to_vec(),
            max_age: defaults::MAX_AGE,
            clock_skew: defaults::CLOCK_SKEW,
            store: None,
            nonces: None,
        }
    }

    /// Refuse bearer tokens: every request must use DPoP.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The accepted proof algorithms (asymmetric only; `build` refuses HMAC).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old a proof's `iat` may be (default 60 s).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// How far in the future a proof's `iat` may be (default 5 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Where proofs are recorded against replay (default: a
    /// [`MemoryReplayStore`] of 1,000,000 proofs, for one process: a proof
    /// stays for its `iat` window, so that is about 15,000 proofs a second
    /// with the default window, about 90 MB when full). Replicas of one API
    /// should share one store.
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Require server nonces in proofs (RFC 9449 §8): a proof without a valid
    /// one is answered 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`.
    pub fn nonces(mut self, nonces: NonceConfig) -> Self {
        self.nonces = Some(nonces);
        self
    }
}

impl fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopConfig")
            .field("public_url", &self.public_url)
            .field("required", &self.required)
            .field("algorithms", &self.algorithms)
            .field("max_age", &self.max_age)
            .field("clock_skew", &self.clock_skew)
            .field("nonces", &self.nonces)
            .finish_non_exhaustive()
    }
}

/// The DPoP step, built from a [`DpopConfig`].
pub(crate) struct Dpop {
    /// The normalized public URL.
    base: String,
    pub(crate) required: bool,
    algorithms: Vec<Algorithm>,
    pub(crate) algs: Arc<str>,
    max_age: i64,
    skew: i64,
    store: Arc<dyn ReplayStore>,
    nonces: Option<NonceConfig>,
    keys: KeyCache,
}

/// A [`DpopConfig`] that cannot be used.
#[derive(Debug)]
pub(crate) struct BadConfig(pub(crate) String);

impl Dpop {
    pub(crate) fn new(config: DpopConfig) -> Result<Self, BadConfig> {
        let base = htu::normalize(&config.public_url)
            .filter(|_| !config.public_url.contains(['?', '#']))
            .ok_or_else(|| {
                BadConfig(format!(
                    "the DPoP public URL {:?} is not an absolute http(s) URL without query or fragment",
                    config.public_url
                ))
            })?;
        if config.algorithms.is_empty()
            || config
                .algorithms
                .iter()
                .any(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac)
        {
            return Err(BadConfig(
                "DPoP proof algorithms must be a non-empty list of asymmetric algorithms".into(),
            ));
        }
        let algs = config
            .algorithms
            .iter()
            .map(|a| match a {
                Algorithm::EdDSA => "EdDSA".to_owned(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let secs = |d: Duration| d.as_secs().min(i64::MAX as u64) as i64;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            required: config.required,
            algorithms: config.algorithms,
            algs: algs.into(),
            max_age: secs(config.max_age),
            skew: secs(config.clock_skew),
            store: config
                .store
                .unwrap_or_else(|| Arc::new(MemoryReplayStore::new(defaults::REPLAY_CAPACITY))),
            nonces: config.nonces,
            keys: KeyCache::new(defaults::KEY_CACHE),
        })
    }
}

/// What a DPoP request brought, taken from it before any waiting.
pub(crate) struct Presented {
    /// The one `DPoP` header, or why there is not exactly one.
    proof: Result<HeaderValue, InvalidProof>,
    method: http::Method,
    path: String,
    /// `ath` of the access token.
    ath: String,
}

impl Presented {
    pub(crate) fn new(
        headers: &HeaderMap,
        method: &http::Method,
        path: &str,
        token: &[u8],
    ) -> Self {
        let mut values = headers.get_all(&DPOP).iter();
        let proof = match (values.next(), values.next()) {
            (None, _) => Err(InvalidProof::Missing),
            (Some(_), Some(_)) => Err(InvalidProof::Several),
            // A comma cannot occur in a compact JWS: two proofs joined.
            (Some(v), None) if v.as_bytes().contains(&b',') => Err(InvalidProof::Several),
            (Some(v), None) => Ok(v.clone()),
        };
        Self {
            proof,
            method: method.clone(),
            path: path.to_owned(),
            ath: proof::token_hash(token),
        }
    }
}

/// A proof that passed: what is left to do.
pub(crate) struct Proven {
    pub(crate) replay: ReplayKey,
    pub(crate) ttl: Duration,
    /// A fresh nonce to offer in the response.
    pub(crate) nonce: Option<String>,
}

impl Dpop {
    /// Every check but the replay record, for a token bound to `jkt`.
    pub(crate) fn check(&self, jkt: &str, presented: &Presented) -> Result<Proven, AuthError> {
        let bad = AuthError::invalid_dpop_proof;
        let proof = presented.proof.as_ref().map_err(|r| bad(*r))?;
        let proof = proof.to_str().map_err(|_| bad(InvalidProof::Malformed))?;
        let htu =
            htu::request_uri(&self.base, &presented.path).ok_or(bad(InvalidProof::WrongUri))?;
        let now = NumericDate::now().as_secs();
        let expect = Expect {
            algorithms: &self.algorithms,
            method: presented.method.as_str(),
            htu: &htu,
            ath: &presented.ath,
            now,
            max_age: self.max_age,
            skew: self.skew,
        };
        let checked = proof::check(proof, &expect, &self.keys).map_err(bad)?;
        // RFC 9449 §7.1: the token is bound to the key that signed the proof.
        if checked.thumbprint != jkt {
            return Err(AuthError::invalid_token(InvalidToken::DpopKeyMismatch));
        }
        let mut fresh = None;
        if let Some(nonces) = &self.nonces {
            let now = now.max(0).unsigned_abs();
            match nonces.check(checked.nonce.as_deref(), now) {
                NonceCheck::Valid { refresh } => {
                    fresh = refresh.then(|| nonces.issue(now));
                }
                NonceCheck::Invalid => {
                    telemetry::dpop_nonce_challenge();
                    return Err(AuthError::new(AuthErrorKind::UseDpopNonce {
                        nonce: nonces.issue(now),
                    }));
                }
            }
        }
        Ok(Proven {
            replay: ReplayKey::new(&checked.thumbprint, &checked.jti),
            // Covers the whole window in which the proof's `iat` is accepted.
            ttl: Duration::from_secs(self.max_age.saturating_add(self.skew).max(1).unsigned_abs()),
            nonce: fresh,
        })
    }

    /// Records the proof; a replay or a store failure refuses the request.
    pub(crate) fn record(
        &self,
        proven: &Proven,
    ) -> impl Future<Output = Result<(), AuthError>> + Send + 'static {
        let future = self.store.record(proven.replay, proven.ttl);
        async move {
            match future.await {
                Ok(Seen::First) => Ok(()),
                Ok(Seen::Before) => {
                    telemetry::dpop_replay();
                    Err(AuthError::invalid_dpop_proof(InvalidProof::Replayed))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the DPoP replay store failed");
                    Err(AuthError::new(AuthErrorKind::ReplayCheckUnavailable {
                        retry_after: e.retry_after(),
                    }))
                }
            }
        }
    }
}
