//! [`TokenGuard`]: the configured guard, and the one decision it makes for
//! each request ([`TokenGuard::authenticate`]): credential → verified-token
//! cache or verification → binding → extensions. Every path, cache hits
//! included, ends in [`TokenGuard::admit`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tokenguard::testing::TestIssuer;
//! let issuer = TestIssuer::new();
//! let guard = issuer.guard("https://api");
//! let token = issuer.token().audience("https://api").mint();
//! assert!(guard.verify(&token).await.is_ok());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Request;

use crate::challenge::ChallengeConfig;
use crate::claims::AccessToken;
use crate::credential::{self, TokenSources};
use crate::error::AuthError;
use crate::extensions::GuardContext;
use crate::keys::KeySetStatus;
use crate::keys::remote::RefreshError;
use crate::verify::issuer::IssuerVerifier;
use crate::verify::jwt::KeySource;
use crate::verify::{Verification, Verifier, VerifyResult};

/// Verifies access tokens. Cheap to clone; build one per issuer with
/// [`TokenGuard::builder`] and turn it into a tower layer with
/// [`layer`](TokenGuard::layer).
///
/// ```no_run
/// # async fn run() -> Result<(), tokenguard::BuildError> {
/// use tokenguard::TokenGuard;
///
/// let guard = TokenGuard::builder()
///     .issuer("https://id.example.com")   // keys found through discovery
///     .audience("https://api.example.com")
///     .build()?;
/// let app: axum::Router = axum::Router::new().layer(guard.layer());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenGuard {
    pub(crate) inner: Arc<GuardInner>,
}

pub(crate) struct GuardInner {
    pub(crate) verifier: Box<dyn Verifier>,
    /// One verifier per trusted issuer (one, unless built by `multi_issuer`).
    pub(crate) issuers: Vec<Arc<IssuerVerifier>>,
    pub(crate) request: RequestSettings,
}

/// The request-level settings: where the token is looked for, how large it
/// may be, and how every refusal is rendered. One set per guard; a
/// [`multi_issuer`](TokenGuard::multi_issuer) guard has the first guard's.
#[derive(Clone)]
pub(crate) struct RequestSettings {
    pub(crate) sources: TokenSources,
    pub(crate) max_token_len: usize,
    pub(crate) challenge: Arc<ChallengeConfig>,
}

impl fmt::Debug for TokenGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGuard")
            .field("sources", &self.inner.request.sources)
            .field("realm", &self.inner.request.challenge.realm)
            .finish_non_exhaustive()
    }
}

impl TokenGuard {
    /// Verifies one token (the credential itself, without `Bearer `).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use tokenguard::{TokenGuard, testing::TestIssuer};
    /// let issuer = TestIssuer::new();
    /// let guard = issuer.guard("https://api.example.com");
    /// let token = issuer.token().audience("https://api.example.com").scope("read").mint();
    /// let verified = guard.verify(&token).await.unwrap();
    /// assert!(verified.scopes().contains("read"));
    /// assert!(guard.verify("not-a-token").await.is_err());
    /// # }
    /// ```
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessToken>, AuthError> {
        let token = match self.inner.verifier.cached_or_verify(token) {
            Verification::Done(result) => result,
            Verification::Pending(fut) => fut.await,
        }?;
        // Without a request there is no proof: a bound token is refused.
        crate::bind::check::<()>(&token, None)?;
        Ok(token)
    }

    /// The decision for one request, in request order: find the credential →
    /// the verified-token cache, or verification → [`admit`](Self::admit).
    /// Every path goes through `admit`, cache hits included.
    pub(crate) fn authenticate<B>(&self, req: &mut Request<B>, optional: bool) -> Outcome {
        let inner = &*self.inner;
        let found = credential::extract(
            req.headers(),
            req.uri(),
            req.extensions(),
            &inner.request.sources,
            inner.request.max_token_len,
        );
        let found = match found {
            Err(e) => return Outcome::Refuse(e),
            Ok(None) if optional => {
                // No token: extractors still need the challenge settings.
                req.extensions_mut()
                    .insert(GuardContext(inner.request.challenge.clone()));
                return Outcome::Pass { private: false };
            }
            Ok(None) => return Outcome::Refuse(AuthError::missing_token()),
            Ok(Some(found)) => found,
        };
        let private = found.in_query();
        // The hot path: exactly a token verified before. Its syntax was
        // checked then, so nothing else is needed before binding.
        let verification = match inner.verifier.cached(found.bytes()) {
            Some(hit) => Verification::Done(Ok(hit)),
            None => match found.token() {
                Ok(token) => inner.verifier.verify(token),
                Err(e) => Verification::Done(Err(e)),
            },
        };
        match verification {
            Verification::Done(verified) => match self.admit(req, verified) {
                Ok(()) => Outcome::Pass { private },
                Err(e) => Outcome::Refuse(e),
            },
            Verification::Pending(verify) => Outcome::Pending { verify, private },
        }
    }

    /// The last steps of every authenticated request: the binding check, then
    /// the extensions (the token and the challenge settings).
    pub(crate) fn admit<B>(
        &self,
        req: &mut Request<B>,
        verified: VerifyResult,
    ) -> Result<(), AuthError> {
        let token = verified?;
        crate::bind::check(&token, Some(req))?;
        let ext = req.extensions_mut();
        ext.insert(token);
        ext.insert(GuardContext(self.inner.request.challenge.clone()));
        Ok(())
    }

    /// The challenge settings of every refusal this guard answers.
    pub(crate) fn challenge_config(&self) -> &Arc<ChallengeConfig> {
        &self.inner.request.challenge
    }

    /// Loads remote keys (and discovers the introspection endpoint) now, so
    /// that an application can fail fast at start-up when an issuer is
    /// unreachable. Not needed otherwise: both happen on first use. Does
    /// nothing for static keys.
    pub async fn warm_up(&self) -> Result<(), WarmUpError> {
        for verifier in &self.inner.issuers {
            if let Some(introspection) = &verifier.introspection {
                introspection.warm_up().await.map_err(WarmUpError)?;
                if introspection.introspect_jwts {
                    // Every token is introspected: the keys are never used.
                    continue;
                }
            }
            let KeySource::Remote(remote) = &verifier.jwt.keys else {
                continue;
            };
            match remote.refresh().await {
                Ok(_) => {}
                Err(RefreshError::Failed(e)) => return Err(WarmUpError(e.message)),
                Err(RefreshError::CoolingDown(_)) if remote.cached().is_some() => {}
                Err(RefreshError::CoolingDown(wait)) => {
                    return Err(WarmUpError(format!(
                        "a fetch failed recently; retry in {wait:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The state of each issuer's key set, for health endpoints and
    /// diagnostics. Reading it never waits on the network.
    ///
    /// ```
    /// use tokenguard::testing::TestIssuer;
    /// let issuer = TestIssuer::new();
    /// let status = issuer.guard("https://api.example.com").key_status();
    /// assert_eq!(status[0].keys_loaded, 9);
    /// assert!(status[0].last_error.is_none());
    /// ```
    pub fn key_status(&self) -> Vec<KeySetStatus> {
        self.inner
            .issuers
            .iter()
            .map(|v| {
                let issuer = v.jwt.policy.issuer.clone();
                match &v.jwt.keys {
                    KeySource::Static(keys) => KeySetStatus {
                        issuer,
                        source: "static".into(),
                        keys_loaded: keys.keys.len(),
                        kids: keys.kids(),
                        last_refresh: None,
                        last_error: None,
                        consecutive_failures: 0,
                    },
                    KeySource::Remote(remote) => remote.status(issuer),
                }
            })
            .collect()
    }
}

/// What [`TokenGuard::authenticate`] decided.
pub(crate) enum Outcome {
    /// Let the request through (`private`: the response must be
    /// `Cache-Control: private`, RFC 6750 §2.3).
    Pass { private: bool },
    /// Answer with this refusal.
    Refuse(AuthError),
    /// Keys are being fetched; [`TokenGuard::admit`] the result.
    Pending {
        verify: Pin<Box<dyn Future<Output = VerifyResult> + Send>>,
        private: bool,
    },
}

/// [`TokenGuard::warm_up`] could not load the issuer's keys or find its
/// introspection endpoint.
#[derive(Debug, Clone)]
pub struct WarmUpError(String);

impl fmt::Display for WarmUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not load the issuer's keys or metadata: {}",
            self.0
        )
    }
}

impl std::error::Error for WarmUpError {}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::error::{AuthErrorKind, InvalidToken};
    use crate::testing::TestIssuer;

    fn request(token: &str) -> Request<()> {
        Request::get("/")
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap()
    }

    /// The binding step runs on every path: a bound token is verified and
    /// cached, and still refused when the cache answers.
    #[test]
    fn binding_runs_on_cache_hits() {
        let issuer = TestIssuer::new();
        let guard = issuer.guard("https://api");
        let token = issuer
            .token()
            .audience("https://api")
            .claim("cnf", serde_json::json!({"jkt": "x"}))
            .mint();
        let bound = AuthErrorKind::InvalidToken(InvalidToken::SenderConstrained);
        assert!(guard.inner.verifier.cached(token.as_bytes()).is_none());
        for _ in 0..2 {
            match guard.authenticate(&mut request(&token), false) {
                Outcome::Refuse(e) => assert_eq!(e.kind(), &bound),
                _ => panic!("a bound token was let through"),
            }
            // Verified (and cached) before the binding step refused it.
            assert!(guard.inner.verifier.cached(token.as_bytes()).is_some());
        }
        // An unbound token passes and gets its extensions, from the cache too.
        let plain = issuer.token().audience("https://api").mint();
        for _ in 0..2 {
            let mut req = request(&plain);
            assert!(matches!(
                guard.authenticate(&mut req, false),
                Outcome::Pass { private: false }
            ));
            assert!(req.extensions().get::<Arc<AccessToken>>().is_some());
            assert!(req.extensions().get::<GuardContext>().is_some());
        }
    }
}
