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
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::Request;
use tracing::{Instrument, Span};

use crate::bind::dpop;
use crate::bind::{Binders, Bound, Extra, Presented};
use crate::challenge::ChallengeConfig;
use crate::claims::AccessToken;
use crate::credential::{self, TokenSources};
use crate::error::AuthError;
use crate::extensions::GuardContext;
use crate::keys::KeySetStatus;
use crate::keys::remote::RefreshError;
use crate::observe;
use crate::syntax::Scheme;
use crate::verify::issuer::IssuerVerifier;
use crate::verify::jwt::KeySource;
use crate::verify::{Verification, Verifier};

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
    /// The RFC 9728 document, when configured.
    pub(crate) metadata: Option<Arc<ResourceMetadata>>,
}

/// A rendered RFC 9728 document and where it is served.
#[derive(Clone)]
pub(crate) struct ResourceMetadata {
    /// Its URL (what challenges name in `resource_metadata`).
    pub(crate) url: Arc<str>,
    /// The paths to serve it at.
    pub(crate) paths: Vec<String>,
    pub(crate) json: bytes::Bytes,
    /// When no authorization server was named: the document again for
    /// other issuers (those of a multi-issuer guard).
    pub(crate) for_issuers: Option<RenderForIssuers>,
}

/// Renders a metadata document for the given issuers.
pub(crate) type RenderForIssuers =
    Arc<dyn Fn(Vec<String>) -> Result<bytes::Bytes, String> + Send + Sync>;

/// The request-level settings: where the token is looked for, how large it
/// may be, DPoP, and how every refusal is rendered. One set per guard; a
/// [`multi_issuer`](TokenGuard::multi_issuer) guard has the first guard's.
#[derive(Clone)]
pub(crate) struct RequestSettings {
    pub(crate) sources: TokenSources,
    pub(crate) max_token_len: usize,
    /// For refusals of `Bearer` requests (and requests without a token).
    pub(crate) challenge: Arc<ChallengeConfig>,
    /// For refusals of `DPoP` requests.
    pub(crate) dpop_challenge: Arc<ChallengeConfig>,
    pub(crate) binders: Binders,
}

/// A verified token whose binding passed, and what it adds to the response.
pub(crate) type Admission = Result<(Arc<AccessToken>, Extra), AuthError>;

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
        match crate::bind::check(
            &token,
            Scheme::Bearer,
            &Presented::default(),
            &self.inner.request.binders,
        ) {
            Bound::Done(result) => result.map(|_| token),
            Bound::Pending(record) => record.await.map(|_| token),
        }
    }

    /// The decision for one request, in request order: find the credential →
    /// the verified-token cache, or verification → [`bind`](Self::bind) →
    /// [`admit`](Self::admit). Every path binds and admits, cache hits
    /// included. One span covers it (`observe::span`), waiting included, and
    /// gets the outcome when it is known.
    pub(crate) fn authenticate<B>(&self, req: &mut Request<B>, optional: bool) -> Outcome {
        let span = observe::span();
        let outcome = span.in_scope(|| self.decide(req, optional, &span));
        if span.is_disabled() {
            return outcome;
        }
        match outcome {
            Outcome::Refuse(e, scheme) => {
                observe::span_refused(&span, &e);
                Outcome::Refuse(e, scheme)
            }
            Outcome::Pending {
                admission,
                scheme,
                private,
            } => {
                // The span stays open while the keys, the introspection or
                // the replay store are waited for; their events are its children.
                let this = self.clone();
                let settle = span.clone();
                let admission = async move {
                    let admitted = admission.await;
                    match &admitted {
                        Ok((token, _)) => this.span_accepted(&settle, token),
                        Err(e) => observe::span_refused(&settle, e),
                    }
                    admitted
                }
                .instrument(span)
                .boxed();
                Outcome::Pending {
                    admission,
                    scheme,
                    private,
                }
            }
            pass @ Outcome::Pass { .. } => pass,
        }
    }

    /// [`authenticate`](Self::authenticate) inside its span.
    fn decide<B>(&self, req: &mut Request<B>, optional: bool, span: &Span) -> Outcome {
        let inner = &*self.inner;
        let found = credential::extract(
            req.headers(),
            req.uri(),
            req.extensions(),
            &inner.request.sources,
            inner.request.max_token_len,
        );
        let found = match found {
            Err(e) => {
                let scheme = credential::scheme_of(req.headers(), inner.request.sources.dpop);
                return Outcome::Refuse(e, scheme);
            }
            Ok(None) if optional => {
                // No token: extractors still need the challenge settings.
                req.extensions_mut()
                    .insert(GuardContext(inner.request.challenge.clone()));
                observe::anonymous(span);
                return Outcome::Pass {
                    private: false,
                    extra: Extra::default(),
                };
            }
            Ok(None) => return Outcome::Refuse(AuthError::missing_token(), Scheme::Bearer),
            Ok(Some(found)) => found,
        };
        let private = found.in_query();
        let scheme = found.scheme();
        // What the binding step needs from the request, taken now: it may
        // run after the request has moved on.
        let cert = match &inner.request.binders.mtls {
            Some(mtls) => match mtls.certificate(req.headers(), req.extensions()) {
                Ok(cert) => cert,
                Err(e) => return Outcome::Refuse(e, scheme),
            },
            None => None,
        };
        let presented = Presented {
            dpop: (scheme == Scheme::Dpop).then(|| {
                dpop::Presented::new(req.headers(), req.method(), req.uri().path(), found.bytes())
            }),
            cert,
        };
        // The hot path: exactly a token verified before. Its syntax was
        // checked then, so nothing else is needed before binding.
        let verification = match inner.verifier.cached(found.bytes()) {
            Some(hit) => Verification::Done(Ok(hit)),
            None => match found.text() {
                Ok(token) => inner.verifier.verify_request(token, &|| found.syntax()),
                Err(e) => Verification::Done(Err(e)),
            },
        };
        let admission = match verification {
            Verification::Done(Err(e)) => return Outcome::Refuse(e, scheme),
            Verification::Done(Ok(token)) => match self.bind(&token, scheme, &presented) {
                Bound::Done(Ok(extra)) => {
                    self.span_accepted(span, &token);
                    self.admit(req, token, scheme);
                    return Outcome::Pass { private, extra };
                }
                Bound::Done(Err(e)) => return Outcome::Refuse(e, scheme),
                Bound::Pending(record) => record.map(|r| r.map(|extra| (token, extra))).boxed(),
            },
            Verification::Pending(verify) => {
                let this = self.clone();
                async move {
                    let token = verify.await?;
                    let extra = match this.bind(&token, scheme, &presented) {
                        Bound::Done(result) => result?,
                        Bound::Pending(record) => record.await?,
                    };
                    Ok((token, extra))
                }
                .boxed()
            }
        };
        Outcome::Pending {
            admission,
            scheme,
            private,
        }
    }

    /// The binding step (`bind`) with this guard's settings.
    fn bind(&self, token: &AccessToken, scheme: Scheme, presented: &Presented) -> Bound {
        crate::bind::check(token, scheme, presented, &self.inner.request.binders)
    }

    /// Records an accepted token on its span, with the configured issuer
    /// whose rules verified it: the guard's one issuer, or the one that its
    /// verified `iss` names. A configured value, never a token's.
    fn span_accepted(&self, span: &Span, token: &AccessToken) {
        if span.is_disabled() {
            return;
        }
        let issuer = match self.inner.issuers.as_slice() {
            [only] => only.issuer(),
            several => {
                let iss = token.claims.iss.as_deref();
                several
                    .iter()
                    .filter_map(|v| v.issuer())
                    .find(|configured| Some(*configured) == iss)
            }
        };
        observe::span_accepted(span, issuer);
    }

    /// The last step of every authenticated request: the extensions (the
    /// token and the challenge settings for the scheme it came with). Counts
    /// the request as accepted: every accepted request passes here once.
    pub(crate) fn admit<B>(&self, req: &mut Request<B>, token: Arc<AccessToken>, scheme: Scheme) {
        observe::accepted();
        let challenge = self.challenge_config(scheme).clone();
        let ext = req.extensions_mut();
        ext.insert(token);
        ext.insert(GuardContext(challenge));
    }

    /// The challenge settings of refusals of requests made with `scheme`.
    pub(crate) fn challenge_config(&self, scheme: Scheme) -> &Arc<ChallengeConfig> {
        match scheme {
            Scheme::Bearer => &self.inner.request.challenge,
            Scheme::Dpop => &self.inner.request.dpop_challenge,
        }
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
    /// `Cache-Control: private`, RFC 6750 §2.3; `extra`: headers the
    /// binding adds).
    Pass { private: bool, extra: Extra },
    /// Answer with this refusal of a request made with this scheme.
    Refuse(AuthError, Scheme),
    /// Keys, introspection or the replay store are being waited for;
    /// [`TokenGuard::admit`] the result.
    Pending {
        admission: BoxFuture<'static, Admission>,
        scheme: Scheme,
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
                Outcome::Refuse(e, _) => assert_eq!(e.kind(), &bound),
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
                Outcome::Pass { private: false, .. }
            ));
            assert!(req.extensions().get::<Arc<AccessToken>>().is_some());
            assert!(req.extensions().get::<GuardContext>().is_some());
        }
    }
}
