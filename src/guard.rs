//! [`TokenGuard`]: the configured verifier, and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::cache::{TokenCache, TokenCacheConfig};
use crate::claims::AccessToken;
use crate::credential::TokenSources;
use crate::error::{AuthError, ErrorBody, ErrorContext, RenderError};
use crate::jwt::{JwtVerifier, KeySource, Policy, Verification, Verifier};
use crate::keys::remote::{
    FetchError, Fetcher, RefreshError, RemoteConfig, RemoteKeys, RemoteSource, check_url,
};
use crate::keys::{KeyAlgs, KeySet, VerifyingKey, key_from_jwk, key_from_pem, parse_jwks};
use crate::layer::TokenGuardLayer;
use crate::scope::ScopeSource;

/// The asymmetric algorithms accepted by default.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

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
    pub(crate) issuers: Vec<Arc<JwtVerifier>>,
    pub(crate) sources: TokenSources,
    pub(crate) max_token_len: usize,
    pub(crate) errors: Arc<ErrorContext>,
}

impl fmt::Debug for TokenGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGuard")
            .field("sources", &self.inner.sources)
            .field("realm", &self.inner.errors.realm)
            .finish_non_exhaustive()
    }
}

impl TokenGuard {
    /// Starts configuring a guard.
    pub fn builder() -> TokenGuardBuilder {
        TokenGuardBuilder::default()
    }

    /// A layer that refuses requests without a valid access token and puts
    /// the verified `Arc<AccessToken>` into the request extensions.
    pub fn layer(&self) -> TokenGuardLayer {
        TokenGuardLayer::new(self.clone(), false)
    }

    /// Like [`layer`](Self::layer), but lets requests without any access
    /// token through (a present but invalid token is still refused). Handlers
    /// then decide, e.g. with `Option<Claims<C>>`.
    pub fn optional_layer(&self) -> TokenGuardLayer {
        TokenGuardLayer::new(self.clone(), true)
    }

    /// A layer that reads the access token from form-encoded request bodies
    /// (RFC 6750 §2.2), for clients that cannot send the `Authorization`
    /// header. Place it outside [`layer`](Self::layer). See
    /// [`FormTokenLayer`](crate::form::FormTokenLayer).
    #[cfg(feature = "axum")]
    pub fn form_token_layer(&self) -> crate::form::FormTokenLayer {
        crate::form::FormTokenLayer::new(self.inner.max_token_len)
    }

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
        match self.inner.verifier.cached_or_verify(token) {
            Verification::Done(result) => result,
            Verification::Pending(fut) => fut.await,
        }
    }

    /// Loads remote keys now, so that an application can fail fast at start-up
    /// when an issuer is unreachable. Not needed otherwise: keys are fetched
    /// on first use. Does nothing for static keys.
    pub async fn warm_up(&self) -> Result<(), WarmUpError> {
        for verifier in &self.inner.issuers {
            let KeySource::Remote(remote) = &verifier.keys else {
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
    /// assert_eq!(status[0].keys_loaded, 4);
    /// assert!(status[0].last_error.is_none());
    /// ```
    pub fn key_status(&self) -> Vec<KeySetStatus> {
        self.inner
            .issuers
            .iter()
            .map(|v| {
                let issuer = v.policy.issuer.clone();
                match &v.keys {
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

    /// One guard trusting several issuers (multi-tenant). Each guard brings its
    /// own issuer, keys, audience and rules; a token's `iss` (read before
    /// verification) chooses which one verifies it. Tokens naming any other
    /// issuer are refused without any network access. Token sources, realm,
    /// error bodies and the size limit are those of the first guard.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use tokenguard::{TokenGuard, testing::TestIssuer};
    /// let a = TestIssuer::with_issuer("https://a.example.com");
    /// let b = TestIssuer::with_issuer("https://b.example.com");
    /// let guard = TokenGuard::multi_issuer([a.guard("https://api"), b.guard("https://api")]).unwrap();
    /// assert!(guard.verify(&b.token().audience("https://api").mint()).await.is_ok());
    /// let c = TestIssuer::with_issuer("https://c.example.com");
    /// assert!(guard.verify(&c.token().audience("https://api").mint()).await.is_err());
    /// # }
    /// ```
    pub fn multi_issuer(
        guards: impl IntoIterator<Item = TokenGuard>,
    ) -> Result<TokenGuard, BuildError> {
        let guards: Vec<TokenGuard> = guards.into_iter().collect();
        let first = guards
            .first()
            .ok_or(BuildError::MissingIssuer)?
            .inner
            .clone();
        let mut by_issuer = std::collections::HashMap::new();
        let mut issuers = Vec::new();
        for verifier in guards.iter().flat_map(|g| g.inner.issuers.iter()) {
            let issuer = verifier
                .policy
                .issuer
                .clone()
                .ok_or(BuildError::MissingIssuer)?;
            if by_issuer.insert(issuer.clone(), verifier.clone()).is_some() {
                return Err(BuildError::DuplicateIssuer(issuer));
            }
            issuers.push(verifier.clone());
        }
        let multi = crate::multi::MultiIssuer {
            by_issuer,
            max_token_len: first.max_token_len,
        };
        Ok(TokenGuard {
            inner: Arc::new(GuardInner {
                verifier: Box::new(multi),
                issuers,
                sources: first.sources.clone(),
                max_token_len: first.max_token_len,
                errors: first.errors.clone(),
            }),
        })
    }

    pub(crate) fn sources(&self) -> &TokenSources {
        &self.inner.sources
    }
}

/// The state of one issuer's key set. See [`TokenGuard::key_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySetStatus {
    /// The issuer the keys belong to (`None` if the issuer check is skipped).
    pub issuer: Option<String>,
    /// Where the keys come from: `static`, or the JWKS URL (or the issuer's
    /// discovery URL while its `jwks_uri` is not known yet).
    pub source: String,
    /// How many keys are usable now.
    pub keys_loaded: usize,
    /// Their `kid`s.
    pub kids: Vec<String>,
    /// When the keys were last fetched successfully.
    pub last_refresh: Option<std::time::SystemTime>,
    /// The error of the last fetch, if it failed.
    pub last_error: Option<String>,
    /// Fetches failed in a row since the last success.
    pub consecutive_failures: u32,
}

/// [`TokenGuard::warm_up`] could not load the issuer's keys.
#[derive(Debug, Clone)]
pub struct WarmUpError(String);

impl fmt::Display for WarmUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not load the issuer's keys: {}", self.0)
    }
}

impl std::error::Error for WarmUpError {}

/// A configuration that [`TokenGuardBuilder::build`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No audience was configured (and the check was not explicitly skipped).
    MissingAudience,
    /// No issuer was configured (and the check was not explicitly skipped).
    MissingIssuer,
    /// No key source: configure an issuer (discovery), a JWKS URL or static keys.
    NoKeySource,
    /// A key could not be used.
    InvalidKey(String),
    /// A URL is not acceptable (HTTPS required except on loopback).
    InvalidUrl(String),
    /// The realm holds characters that cannot appear in a quoted-string.
    InvalidRealm,
    /// Two guards given to [`TokenGuard::multi_issuer`] trust the same issuer.
    DuplicateIssuer(String),
    /// The algorithm allowlist is empty, or names an HMAC algorithm without a secret.
    InvalidAlgorithms(String),
    /// The HTTP client could not be built.
    HttpClient(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingAudience => f.write_str(
                "no audience configured: call .audience(..) (or, knowingly, .insecure_skip_audience_check())",
            ),
            Self::MissingIssuer => f.write_str(
                "no issuer configured: call .issuer(..) (or, knowingly, .insecure_skip_issuer_check())",
            ),
            Self::NoKeySource => f.write_str(
                "no key source: call .issuer(..) for discovery, .jwks_url(..), .jwks_json(..), .pem(..) or .jwk(..)",
            ),
            Self::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Self::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Self::InvalidRealm => f.write_str("the realm must be printable ASCII without `\"` or `\\`"),
            Self::DuplicateIssuer(iss) => write!(f, "issuer {iss:?} is configured twice"),
            Self::InvalidAlgorithms(why) => write!(f, "invalid algorithm allowlist: {why}"),
            Self::HttpClient(why) => write!(f, "could not build the HTTP client: {why}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Configures a [`TokenGuard`]. Every default is strict; each relaxation is a
/// method of its own.
///
/// | setting | default |
/// |---|---|
/// | algorithms | RS256/384/512, PS256/384/512, ES256/384, EdDSA ([`DEFAULT_ALGORITHMS`]) |
/// | `typ` | `at+jwt` required ([`allow_untyped_tokens`](Self::allow_untyped_tokens)) |
/// | `iss` | exact match, required |
/// | `aud` | required, exact match of one configured audience |
/// | `exp` | required; `nbf` and `iat` checked when present |
/// | leeway | 30 s |
/// | lifetime (`exp` − `iat`) | at most 24 h ([`max_lifetime`](Self::max_lifetime)) |
/// | scopes | the `scope` claim ([`scope_source`](Self::scope_source)) |
/// | token sources | `Authorization: Bearer` only ([`token_sources`](Self::token_sources)) |
/// | token size | at most 8 KiB |
/// | realm | `api` |
#[derive(Default)]
#[must_use]
pub struct TokenGuardBuilder {
    issuer: Option<String>,
    skip_issuer: bool,
    audiences: Vec<String>,
    skip_audience: bool,
    jwks_url: Option<String>,
    static_keys: Vec<Result<VerifyingKey, String>>,
    hmac_algs: Vec<Algorithm>,
    algorithms: Option<Vec<Algorithm>>,
    leeway: Option<Duration>,
    allow_untyped: bool,
    max_lifetime: Option<Option<Duration>>,
    max_token_len: Option<usize>,
    scope_source: ScopeSource,
    sources: TokenSources,
    realm: Option<String>,
    render: Option<RenderError>,
    client: Option<reqwest::Client>,
    remote: RemoteConfig,
    fetch_timeout: Option<Duration>,
    max_jwks_bytes: Option<usize>,
    token_cache: Option<Option<TokenCacheConfig>>,
}

impl TokenGuardBuilder {
    /// The issuer: tokens must carry exactly this `iss`. Without another key
    /// source, keys are found through its metadata
    /// (`/.well-known/openid-configuration`, then RFC 8414).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An accepted audience. Call again to accept several: a token must name
    /// at least one of them in `aud`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Fetch keys from this JWKS URL instead of through discovery.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Static keys from a JWKS document. Unusable members are skipped with a warning.
    pub fn jwks_json(mut self, json: impl AsRef<[u8]>) -> Self {
        let allowed = self.allowed_algorithms();
        match parse_jwks(json.as_ref(), &allowed, "static JWK set") {
            Ok(set) => self.static_keys.extend(set.keys.into_iter().map(Ok)),
            Err(e) => self.static_keys.push(Err(e.0)),
        }
        self
    }

    /// A static key from one JWK (JSON).
    pub fn jwk(mut self, json: impl AsRef<[u8]>) -> Self {
        let allowed = self.allowed_algorithms();
        let key = serde_json::from_slice(json.as_ref())
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| key_from_jwk(&v, &allowed).map_err(|e| e.0));
        self.static_keys.push(key);
        self
    }

    /// A static PEM public key (RSA, EC P-256/P-384 or Ed25519), with an
    /// optional `kid` that tokens must then name.
    pub fn pem(mut self, pem: impl AsRef<[u8]>, kid: Option<&str>) -> Self {
        self.static_keys
            .push(key_from_pem(pem.as_ref(), kid).map_err(|e| e.0));
        self
    }

    /// A shared HMAC secret for `alg` (HS256/384/512). Only with this
    /// explicit call are HMAC tokens accepted; the secret must be at least as
    /// long as the hash (RFC 7518 §3.2).
    pub fn hmac_secret(
        mut self,
        alg: Algorithm,
        secret: impl AsRef<[u8]>,
        kid: Option<&str>,
    ) -> Self {
        let secret = secret.as_ref();
        let min = match alg {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            other => {
                self.static_keys
                    .push(Err(format!("{other:?} is not an HMAC algorithm")));
                return self;
            }
        };
        if secret.len() < min {
            self.static_keys
                .push(Err(format!("an {alg:?} secret needs at least {min} bytes")));
            return self;
        }
        self.hmac_algs.push(alg);
        self.static_keys.push(Ok(VerifyingKey::new(
            kid.map(Into::into),
            KeyAlgs::Pinned(alg),
            DecodingKey::from_secret(secret),
        )));
        self
    }

    /// A prepared `jsonwebtoken` key, pinned to `alg`.
    pub fn decoding_key(mut self, key: DecodingKey, alg: Algorithm, kid: Option<&str>) -> Self {
        if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            self.hmac_algs.push(alg);
        }
        self.static_keys.push(Ok(VerifyingKey::new(
            kid.map(Into::into),
            KeyAlgs::Pinned(alg),
            key,
        )));
        self
    }

    /// Replaces the asymmetric algorithm allowlist. HMAC algorithms are added
    /// only through [`hmac_secret`](Self::hmac_secret). Call before adding
    /// static keys, which are checked against it.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Clock skew tolerated for `exp`, `nbf` and `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Accept tokens without `typ`, or with `typ: JWT`, as well as `at+jwt`.
    /// Needed for providers that do not type their access tokens (Auth0,
    /// Entra ID, Keycloak, Okta, Cognito). Tokens typed as something else
    /// (e.g. `dpop+jwt`) stay refused. This weakens the separation of access
    /// tokens from ID tokens: keep the audience check.
    pub fn allow_untyped_tokens(mut self) -> Self {
        self.allow_untyped = true;
        self
    }

    /// The longest lifetime (`exp` − `iat`) accepted; `None` disables the
    /// check. Default 24 h.
    pub fn max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// The largest token accepted, in bytes (default 8192).
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_len = Some(bytes);
        self
    }

    /// Where scopes are read from (default: the `scope` claim).
    pub fn scope_source(mut self, source: ScopeSource) -> Self {
        self.scope_source = source;
        self
    }

    /// Where tokens are looked for (default: the `Authorization` header only).
    pub fn token_sources(mut self, sources: TokenSources) -> Self {
        self.sources = sources;
        self
    }

    /// The `realm` of challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Renders a custom body for errors (e.g. JSON). Status,
    /// `WWW-Authenticate` and `Retry-After` are set by tokenguard regardless.
    pub fn error_body(
        mut self,
        render: impl Fn(&AuthError) -> Option<ErrorBody> + Send + Sync + 'static,
    ) -> Self {
        self.render = Some(Arc::new(render));
        self
    }

    /// JSON error bodies: `{"error": "…", "error_description": "…"}`.
    pub fn json_errors(self) -> Self {
        self.error_body(|e| Some(ErrorBody::standard_json(e)))
    }

    /// The HTTP client for discovery and key fetches. The default one follows
    /// no redirects; an injected client should not either.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Minimum time between two key fetches, which bounds the fetches that
    /// tokens with unknown `kid`s can cause (default 5 s).
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.remote.refetch_cooldown = cooldown;
        self
    }

    /// How often cached remote keys are refreshed when the response has no
    /// `Cache-Control: max-age` (default 10 min).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.remote.refresh_interval = interval;
        self
    }

    /// Bounds for a key set's `Cache-Control: max-age` (default 5 min to 24 h).
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.remote.min_refresh = min;
        self.remote.max_refresh = max.max(min);
        self
    }

    /// How long past their planned refresh cached keys keep verifying tokens
    /// while the issuer cannot be reached (default 24 h). After that, requests
    /// get 503 until a fetch succeeds.
    pub fn max_key_staleness(mut self, staleness: Duration) -> Self {
        self.remote.max_stale = staleness;
        self
    }

    /// Longest wait between fetch attempts while they keep failing: the
    /// cooldown doubles with each failure up to this (default 5 min).
    pub fn max_fetch_backoff(mut self, backoff: Duration) -> Self {
        self.remote.max_backoff = backoff;
        self
    }

    /// Largest JWKS or metadata response accepted, in bytes (default 512 KiB).
    pub fn max_jwks_size(mut self, bytes: usize) -> Self {
        self.max_jwks_bytes = Some(bytes);
        self
    }

    /// Total timeout of one fetch (default 10 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = Some(timeout);
        self
    }

    /// Settings of the verified-token cache, which is on by default
    /// ([`TokenCacheConfig::default`]): a token seen again within its
    /// lifetime (and the cache's max TTL) skips the signature check; `exp`
    /// and `nbf` are checked on every request, and entries whose key left the
    /// key set are dropped.
    pub fn token_cache(mut self, config: TokenCacheConfig) -> Self {
        self.token_cache = Some(Some(config));
        self
    }

    /// Verify every token fully, every time.
    pub fn disable_token_cache(mut self) -> Self {
        self.token_cache = Some(None);
        self
    }

    /// Accept tokens for any audience. Only for a resource server that is
    /// the sole audience of its issuer: otherwise tokens minted for other
    /// services are accepted here too.
    pub fn insecure_skip_audience_check(mut self) -> Self {
        self.skip_audience = true;
        self
    }

    /// Accept tokens with any `iss`. Only with static keys that belong to a
    /// single issuer.
    pub fn insecure_skip_issuer_check(mut self) -> Self {
        self.skip_issuer = true;
        self
    }

    fn allowed_algorithms(&self) -> Vec<Algorithm> {
        self.algorithms
            .clone()
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.to_vec())
    }

    /// Checks the configuration and builds the guard. No network access
    /// happens here: remote keys are fetched on first use (or by
    /// [`TokenGuard::warm_up`]).
    pub fn build(self) -> Result<TokenGuard, BuildError> {
        crate::jwt::install_default_provider();
        let mut algorithms = self.allowed_algorithms();
        if algorithms
            .iter()
            .any(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac)
        {
            return Err(BuildError::InvalidAlgorithms(
                "HMAC algorithms are enabled only through .hmac_secret(..)".into(),
            ));
        }
        algorithms.extend(self.hmac_algs.iter().copied());
        if algorithms.is_empty() {
            return Err(BuildError::InvalidAlgorithms("no algorithm allowed".into()));
        }
        if self.issuer.is_none() && !self.skip_issuer {
            return Err(BuildError::MissingIssuer);
        }
        if self.audiences.is_empty() && !self.skip_audience {
            return Err(BuildError::MissingAudience);
        }
        let realm = self.realm.unwrap_or_else(|| "api".into());
        if realm.is_empty() || !realm.chars().all(crate::scope::is_scope_char_or_space) {
            return Err(BuildError::InvalidRealm);
        }
        let errors = Arc::new(ErrorContext {
            realm: realm.into(),
            render: self.render,
        });
        let policy = Policy {
            errors: errors.clone(),
            issuer: if self.skip_issuer {
                None
            } else {
                self.issuer.clone()
            },
            audiences: if self.skip_audience {
                Vec::new()
            } else {
                self.audiences
            },
            algorithms: algorithms.clone(),
            leeway: self
                .leeway
                .unwrap_or(Duration::from_secs(30))
                .as_secs()
                .min(i64::MAX as u64) as i64,
            require_typ: !self.allow_untyped,
            max_lifetime: self
                .max_lifetime
                .unwrap_or(Some(Duration::from_secs(24 * 3600)))
                .map(|d| d.as_secs().min(i64::MAX as u64) as i64),
            max_token_len: self.max_token_len.unwrap_or(8192),
            scope_source: self.scope_source,
        };

        let keys = if !self.static_keys.is_empty() {
            if self.jwks_url.is_some() {
                return Err(BuildError::InvalidKey(
                    "configure either static keys or a JWKS URL, not both".into(),
                ));
            }
            let keys = self
                .static_keys
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(BuildError::InvalidKey)?;
            KeySource::Static(Arc::new(KeySet { keys }))
        } else {
            let source = match (&self.jwks_url, &self.issuer) {
                (Some(url), _) => RemoteSource::Jwks(check_url(url).map_err(url_error)?),
                (None, Some(issuer)) if !self.skip_issuer => {
                    check_url(issuer).map_err(url_error)?;
                    RemoteSource::Discovery(issuer.clone())
                }
                _ => return Err(BuildError::NoKeySource),
            };
            let client = match self.client {
                Some(c) => c,
                None => crate::keys::remote::default_client()
                    .map_err(|e| BuildError::HttpClient(e.to_string()))?,
            };
            let fetcher = Fetcher {
                client,
                timeout: self.fetch_timeout.unwrap_or(Duration::from_secs(10)),
                max_bytes: self.max_jwks_bytes.unwrap_or(512 * 1024),
            };
            KeySource::Remote(Arc::new(RemoteKeys::new(
                source,
                fetcher,
                algorithms,
                self.remote,
            )))
        };

        let cache = self
            .token_cache
            .unwrap_or(Some(TokenCacheConfig::default()));
        let verifier = Arc::new(JwtVerifier {
            policy: policy.clone(),
            keys,
            cache: cache.as_ref().map(TokenCache::new),
        });
        Ok(TokenGuard {
            inner: Arc::new(GuardInner {
                verifier: Box::new(verifier.clone()),
                issuers: vec![verifier],
                sources: self.sources,
                max_token_len: policy.max_token_len,
                errors,
            }),
        })
    }
}

fn url_error(e: FetchError) -> BuildError {
    BuildError::InvalidUrl(e.message)
}
