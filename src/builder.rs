//! [`TokenGuardBuilder`]: every setting of a guard, its defaults written once
//! ([`TokenGuardBuilder::default`]), checked and assembled by
//! [`build`](TokenGuardBuilder::build). The only module that names every part.
//!
//! ```
//! use std::time::Duration;
//! use tokenguard::TokenGuard;
//! let guard = TokenGuard::builder()
//!     .issuer("https://id.example.com")
//!     .audience("https://api.example.com")
//!     .leeway(Duration::from_secs(10))
//!     .build()
//!     .unwrap();
//! # let _ = guard;
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::bind::Binders;
use crate::bind::dpop::{Dpop, DpopConfig};
use crate::bind::mtls::{Mtls, MtlsConfig};
use crate::challenge::{ChallengeConfig, DpopChallenge, ErrorBody, ErrorBodyRenderer};
use crate::claims::ScopeSource;
use crate::credential::TokenSources;
use crate::error::AuthError;
use crate::fetch::{FetchError, Fetcher, check_url, default_client};
use crate::guard::{GuardInner, RequestSettings, ResourceMetadata, TokenGuard};
use crate::keys::remote::{RemoteConfig, RemoteKeys, RemoteSource};
use crate::keys::{KeyError, KeyRules, KeySet, VerifyingKey};
use crate::metadata::{GuardFacts, ProtectedResource};
use crate::scope::ScopeHierarchy;
use crate::syntax::Scheme;
use crate::verify::cache::{TokenCache, TokenCacheConfig};
use crate::verify::introspect::config::Method;
use crate::verify::introspect::signed::SignedAnswers;
use crate::verify::introspect::{EndpointSource, IntrospectionConfig, Introspector};
use crate::verify::issuer::IssuerVerifier;
use crate::verify::jwt::{JwtVerifier, KeySource, Policy};
use crate::verify::multi::MultiIssuer;

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

impl TokenGuard {
    /// Starts configuring a guard.
    pub fn builder() -> TokenGuardBuilder {
        TokenGuardBuilder::default()
    }

    /// One guard trusting several issuers (multi-tenant). Each guard brings its
    /// own issuer, keys, audience and rules; a token's `iss` (read before
    /// verification) chooses which one verifies it. Tokens naming any other
    /// issuer are refused without any network access.
    ///
    /// The request-level settings (token sources, token size limit, realm,
    /// error body) are the first guard's, for every refusal whichever issuer
    /// a token names; the other guards' request-level settings are not used.
    ///
    /// At most one of the guards may introspect: tokens that are not JWTs
    /// name no issuer, and go to that one.
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
        let mut opaque = None;
        for verifier in guards.iter().flat_map(|g| g.inner.issuers.iter()) {
            let issuer = verifier
                .issuer()
                .ok_or(BuildError::MissingIssuer)?
                .to_owned();
            if by_issuer.insert(issuer.clone(), verifier.clone()).is_some() {
                return Err(BuildError::DuplicateIssuer(issuer));
            }
            if let Some(introspection) = &verifier.introspection
                && opaque.replace(introspection.clone()).is_some()
            {
                return Err(BuildError::ConflictingSettings(
                    "more than one issuer introspects: a token that is not a JWT names no issuer, so only one may".into(),
                ));
            }
            issuers.push(verifier.clone());
        }
        let multi = MultiIssuer {
            by_issuer,
            opaque,
            max_token_len: first.request.max_token_len,
        };
        // The document names every issuer, unless the first guard named its
        // authorization servers itself.
        let metadata = match &first.metadata {
            Some(m) => match &m.for_issuers {
                Some(render) => {
                    let names = issuers.iter().filter_map(|v| v.issuer()).map(Into::into);
                    let json =
                        render(names.collect()).map_err(BuildError::InvalidResourceMetadata)?;
                    Some(Arc::new(ResourceMetadata {
                        json,
                        ..(**m).clone()
                    }))
                }
                None => Some(m.clone()),
            },
            None => None,
        };
        Ok(TokenGuard {
            inner: Arc::new(GuardInner {
                verifier: Box::new(multi),
                issuers,
                request: first.request.clone(),
                metadata,
            }),
        })
    }
}

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
    /// The leeway is longer than [`MAX_LEEWAY`] (5 min).
    LeewayTooLarge(Duration),
    /// Two settings contradict each other.
    ConflictingSettings(String),
    /// The DPoP settings cannot be used (public URL, algorithms).
    InvalidDpopConfig(String),
    /// The mTLS settings cannot be used (the proxy header's name).
    InvalidMtlsConfig(String),
    /// The RFC 9728 resource description is invalid.
    InvalidResourceMetadata(String),
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
            Self::LeewayTooLarge(leeway) => write!(
                f,
                "a leeway of {leeway:?} is longer than the {MAX_LEEWAY:?} allowed: fix the clocks instead"
            ),
            Self::ConflictingSettings(why) => f.write_str(why),
            Self::InvalidDpopConfig(why) => write!(f, "invalid DPoP settings: {why}"),
            Self::InvalidMtlsConfig(why) => write!(f, "invalid mTLS settings: {why}"),
            Self::InvalidResourceMetadata(why) => {
                write!(f, "invalid protected resource metadata: {why}")
            }
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
/// | leeway | 30 s (at most 5 min) |
/// | lifetime (`exp` − `iat`) | at most 24 h ([`max_lifetime`](Self::max_lifetime)) |
/// | RSA keys without `alg` | RS256 ([`rsa_algorithm`](Self::rsa_algorithm)) |
/// | scopes | the `scope` claim ([`scope_source`](Self::scope_source)), matched exactly ([`scope_hierarchy`](Self::scope_hierarchy)) |
/// | token sources | `Authorization: Bearer` only ([`token_sources`](Self::token_sources)) |
/// | token size | at most 8 KiB ([`max_token_size`](Self::max_token_size)) |
/// | realm | `api` ([`realm`](Self::realm)) |
/// | key and metadata fetches | 10 s timeout, at most 512 KiB ([`fetch_timeout`](Self::fetch_timeout), [`max_jwks_size`](Self::max_jwks_size)) |
/// | verified-token cache | on ([`TokenCacheConfig::default`]) |
/// | opaque tokens | refused: off until [`introspection`](Self::introspection) |
/// | DPoP | off: DPoP-bound tokens refused until [`dpop`](Self::dpop) |
/// | certificate-bound tokens | refused until [`mtls`](Self::mtls) |
/// | RFC 9728 metadata | none until [`protected_resource`](Self::protected_resource) |
#[must_use]
pub struct TokenGuardBuilder {
    issuer: Option<String>,
    skip_issuer: bool,
    audiences: Vec<String>,
    skip_audience: bool,
    jwks_url: Option<String>,
    static_keys: Vec<StaticKey>,
    hmac_algs: Vec<Algorithm>,
    algorithms: Vec<Algorithm>,
    rsa_algorithm: Algorithm,
    leeway: Duration,
    allow_untyped: bool,
    max_lifetime: Option<Duration>,
    max_token_len: usize,
    scope_source: ScopeSource,
    hierarchy: Option<ScopeHierarchy>,
    sources: TokenSources,
    realm: String,
    render: Option<ErrorBodyRenderer>,
    client: Option<reqwest::Client>,
    remote: RemoteConfig,
    fetch_timeout: Duration,
    max_jwks_bytes: usize,
    token_cache: Option<TokenCacheConfig>,
    introspection: Option<IntrospectionConfig>,
    dpop: Option<DpopConfig>,
    mtls: Option<MtlsConfig>,
    resource: Option<ProtectedResource>,
}

/// The defaults, written once: the builder starts from them, and the table
/// in [`TokenGuardBuilder`]'s documentation is tested against them.
mod defaults {
    use std::time::Duration;

    pub(super) const LEEWAY: Duration = Duration::from_secs(30);
    pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
    pub(super) const MAX_TOKEN_SIZE: usize = 8 * 1024;
    pub(super) const REALM: &str = "api";
    pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
    pub(super) const MAX_DOCUMENT_SIZE: usize = 512 * 1024;
}

impl Default for TokenGuardBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            skip_issuer: false,
            audiences: Vec::new(),
            skip_audience: false,
            jwks_url: None,
            static_keys: Vec::new(),
            hmac_algs: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            rsa_algorithm: Algorithm::RS256,
            leeway: defaults::LEEWAY,
            allow_untyped: false,
            max_lifetime: Some(defaults::MAX_LIFETIME),
            max_token_len: defaults::MAX_TOKEN_SIZE,
            scope_source: ScopeSource::default(),
            hierarchy: None,
            sources: TokenSources::default(),
            realm: defaults::REALM.into(),
            render: None,
            client: None,
            remote: RemoteConfig::default(),
            fetch_timeout: defaults::FETCH_TIMEOUT,
            max_jwks_bytes: defaults::MAX_DOCUMENT_SIZE,
            token_cache: Some(TokenCacheConfig::default()),
            introspection: None,
            dpop: None,
            mtls: None,
            resource: None,
        }
    }
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

    /// Static keys from a JWKS document. Unusable members are skipped with a
    /// warning (members holding private key material are refused); the
    /// document is parsed by [`build`](Self::build), against the final
    /// algorithm settings.
    pub fn jwks_json(mut self, json: impl AsRef<[u8]>) -> Self {
        self.static_keys
            .push(StaticKey::Jwks(json.as_ref().to_vec()));
        self
    }

    /// A static key from one JWK (JSON).
    pub fn jwk(mut self, json: impl AsRef<[u8]>) -> Self {
        self.static_keys
            .push(StaticKey::Jwk(json.as_ref().to_vec()));
        self
    }

    /// A static PEM public key (RSA, EC P-256/P-384 or Ed25519), with an
    /// optional `kid` that tokens must then name. An RSA key verifies one
    /// algorithm: [`rsa_algorithm`](Self::rsa_algorithm) (RS256 by default).
    pub fn pem(mut self, pem: impl AsRef<[u8]>, kid: Option<&str>) -> Self {
        self.static_keys
            .push(StaticKey::Pem(pem.as_ref().to_vec(), kid.map(Into::into)));
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
        if alg.family() != jsonwebtoken::AlgorithmFamily::Hmac {
            self.static_keys.push(StaticKey::Invalid(format!(
                "{alg:?} is not an HMAC algorithm"
            )));
            return self;
        }
        self.decoding_key(DecodingKey::from_secret(secret.as_ref()), alg, kid)
    }

    /// A prepared `jsonwebtoken` key, pinned to `alg`. It passes the same
    /// checks as every other key (RSA modulus 2048–8192 bits, exact EC and
    /// Ed25519 sizes, HMAC secrets at least as long as the hash).
    pub fn decoding_key(mut self, key: DecodingKey, alg: Algorithm, kid: Option<&str>) -> Self {
        if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            self.hmac_algs.push(alg);
        }
        self.static_keys
            .push(StaticKey::Prepared(key, alg, kid.map(Into::into)));
        self
    }

    /// Replaces the asymmetric algorithm allowlist. HMAC algorithms are added
    /// only through [`hmac_secret`](Self::hmac_secret).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The one algorithm of RSA keys that do not name theirs (a JWK without
    /// `alg`, every PEM key): RS256 by default. Each key verifies exactly one
    /// algorithm (RFC 8725 §3.1); a JWK's own `alg` always wins.
    pub fn rsa_algorithm(mut self, alg: Algorithm) -> Self {
        self.rsa_algorithm = alg;
        self
    }

    /// Clock skew tolerated for `exp`, `nbf` and `iat` (default 30 s, at
    /// most 5 min: [`build`](Self::build) refuses more).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
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
        self.max_lifetime = max;
        self
    }

    /// The largest token accepted, in bytes (default 8192).
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// Where scopes are read from (default: the `scope` claim).
    pub fn scope_source(mut self, source: ScopeSource) -> Self {
        self.scope_source = source;
        self
    }

    /// Scopes that imply others (opt-in; matching is exact by default): a
    /// token's granted scopes are expanded once, when it is verified, so
    /// every extractor and layer sees them.
    pub fn scope_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Self {
        self.hierarchy = Some(hierarchy);
        self
    }

    /// Where tokens are looked for (default: the `Authorization` header only).
    pub fn token_sources(mut self, sources: TokenSources) -> Self {
        self.sources = sources;
        self
    }

    /// The `realm` of challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
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

    /// The HTTP client for discovery, key fetches and introspection. The
    /// default one follows no redirects; an answer an injected client got
    /// by following one is refused.
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
        self.max_jwks_bytes = bytes;
        self
    }

    /// Total timeout of one fetch (default 10 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Settings of the verified-token cache, which is on by default
    /// ([`TokenCacheConfig::default`]): a token seen again within its
    /// lifetime (and the cache's max TTL) skips the signature check; `exp`
    /// and `nbf` are checked on every request, and entries whose key left the
    /// key set are dropped.
    pub fn token_cache(mut self, config: TokenCacheConfig) -> Self {
        self.token_cache = Some(config);
        self
    }

    /// Verify every token fully, every time.
    pub fn disable_token_cache(mut self) -> Self {
        self.token_cache = None;
        self
    }

    /// Accept opaque tokens through token introspection (RFC 7662) at the
    /// issuer's authorization server: tokens that are not JWTs of the issuer
    /// (or every token, with
    /// [`introspect_jwts`](IntrospectionConfig::introspect_jwts)) are sent
    /// to its introspection endpoint, with the same HTTP client as key
    /// fetches. The answer is checked by the same rules as a JWT (audience,
    /// lifetime, scopes), and cached ([`IntrospectionConfig`]). Needs
    /// [`issuer`](Self::issuer).
    pub fn introspection(mut self, config: IntrospectionConfig) -> Self {
        self.introspection = Some(config);
        self
    }

    /// Accept DPoP-bound access tokens (RFC 9449): `Authorization: DPoP`
    /// with a proof in the `DPoP` header, checked on every request. Without
    /// this, tokens bound to a key (`cnf.jkt`) are refused, and only
    /// `Bearer` is read. Unbound tokens stay accepted as `Bearer` unless
    /// [`DpopConfig::required`].
    pub fn dpop(mut self, config: DpopConfig) -> Self {
        self.dpop = Some(config);
        self
    }

    /// Accept certificate-bound access tokens (RFC 8705 §3): a token whose
    /// `cnf["x5t#S256"]` is the SHA-256 thumbprint of a client certificate
    /// is accepted only from a request authenticated by that certificate
    /// (from the connection or a trusted proxy's header, [`MtlsConfig`]).
    /// Without this, certificate-bound tokens are refused.
    pub fn mtls(mut self, config: MtlsConfig) -> Self {
        self.mtls = Some(config);
        self
    }

    /// Describe this resource (RFC 9728): every 401 and 403 challenge then
    /// names the metadata document in `resource_metadata`, and
    /// [`TokenGuard::metadata_router`] serves it. The members that describe
    /// the guard (token methods, DPoP, certificate binding) come from its
    /// settings; the authorization server defaults to the issuer.
    pub fn protected_resource(mut self, resource: ProtectedResource) -> Self {
        self.resource = Some(resource);
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
    /// single issuer: [`build`](Self::build) refuses it with remote keys.
    pub fn insecure_skip_issuer_check(mut self) -> Self {
        self.skip_issuer = true;
        self
    }

    /// Checks the configuration and builds the guard. No network access
    /// happens here: remote keys are fetched on first use (or by
    /// [`TokenGuard::warm_up`]).
    pub fn build(self) -> Result<TokenGuard, BuildError> {
        crate::verify::install_default_provider();
        crate::telemetry::describe();
        let mut algorithms = self.algorithms.clone();
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
        let rsa_default = self.rsa_algorithm;
        if rsa_default.family() != jsonwebtoken::AlgorithmFamily::Rsa {
            return Err(BuildError::InvalidAlgorithms(format!(
                "rsa_algorithm({rsa_default:?}) is not an RSA algorithm"
            )));
        }
        if self.issuer.is_none() && !self.skip_issuer {
            return Err(BuildError::MissingIssuer);
        }
        if let Some(issuer) = &self.issuer
            && !self.skip_issuer
            && issuer.contains(['?', '#'])
        {
            // RFC 8414 §2: an issuer identifier has no query or fragment.
            return Err(BuildError::InvalidUrl(format!(
                "the issuer {issuer:?} has a query or fragment (RFC 8414 §2)"
            )));
        }
        let leeway = self.leeway;
        if leeway > MAX_LEEWAY {
            return Err(BuildError::LeewayTooLarge(leeway));
        }
        if self.audiences.is_empty() && !self.skip_audience {
            return Err(BuildError::MissingAudience);
        }
        let realm = self.realm;
        if realm.is_empty() || !realm.chars().all(crate::syntax::is_scope_char_or_space) {
            return Err(BuildError::InvalidRealm);
        }
        let dpop = match self.dpop {
            Some(config) => Some(Arc::new(
                Dpop::new(config).map_err(|e| BuildError::InvalidDpopConfig(e.0))?,
            )),
            None => None,
        };
        let metadata = match self.resource {
            Some(resource) => {
                let mut bearer_methods = vec!["header"];
                if self.sources.query {
                    bearer_methods.push("query");
                }
                let facts = GuardFacts {
                    issuers: self.issuer.iter().cloned().collect(),
                    bearer_methods,
                    dpop_algs: dpop
                        .as_ref()
                        .map(|d| d.algs.split(' ').map(Into::into).collect()),
                    dpop_required: dpop.as_ref().is_some_and(|d| d.required),
                    certificate_bound: self.mtls.is_some(),
                };
                Some(Arc::new(
                    resource
                        .build(facts)
                        .map_err(BuildError::InvalidResourceMetadata)?,
                ))
            }
            None => None,
        };
        let challenge = Arc::new(ChallengeConfig {
            realm: realm.into(),
            render: self.render,
            dpop: dpop.as_ref().map(|d| DpopChallenge {
                algs: d.algs.clone(),
                bearer: !d.required,
            }),
            used: Scheme::Bearer,
            resource_metadata: metadata.as_ref().map(|m| m.url.clone()),
        });
        let dpop_challenge = Arc::new(challenge.for_scheme(Scheme::Dpop));
        let mtls = match self.mtls {
            Some(config) => Some(Arc::new(
                Mtls::new(config).map_err(BuildError::InvalidMtlsConfig)?,
            )),
            None => None,
        };
        let mut sources = self.sources;
        sources.dpop = dpop.is_some();
        let policy = Policy {
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
            // At most MAX_LEEWAY: fits an i64.
            leeway: leeway.as_secs() as i64,
            require_typ: !self.allow_untyped,
            max_lifetime: self
                .max_lifetime
                .map(|d| d.as_secs().min(i64::MAX as u64) as i64),
            max_token_len: self.max_token_len,
            scope_source: self.scope_source,
            hierarchy: match self.hierarchy {
                Some(h) => {
                    if let Some(bad) = h.names().find(|n| !crate::syntax::is_valid_scope_token(n)) {
                        return Err(BuildError::ConflictingSettings(format!(
                            "the scope hierarchy names {bad:?}, which is not a scope token (RFC 6749 §3.3)"
                        )));
                    }
                    Some(Arc::new(h))
                }
                None => None,
            },
            header_memo: Default::default(),
        };

        let rules = KeyRules {
            allowed: algorithms.clone(),
            rsa_default,
        };
        let needs_client = self.static_keys.is_empty() || self.introspection.is_some();
        let client = match (self.client, needs_client) {
            (Some(c), _) => Some(c),
            (None, true) => {
                Some(default_client().map_err(|e| BuildError::HttpClient(e.to_string()))?)
            }
            (None, false) => None,
        };
        let keys = if !self.static_keys.is_empty() {
            if self.jwks_url.is_some() {
                return Err(BuildError::InvalidKey(
                    "configure either static keys or a JWKS URL, not both".into(),
                ));
            }
            let mut keys = Vec::new();
            for key in self.static_keys {
                key.parse(&rules, &mut keys)
                    .map_err(|e| BuildError::InvalidKey(e.0))?;
            }
            KeySource::Static(Arc::new(KeySet { keys }))
        } else {
            let source = match (&self.jwks_url, &self.issuer) {
                (Some(_), _) | (None, Some(_)) if self.skip_issuer => {
                    return Err(BuildError::ConflictingSettings(
                        "insecure_skip_issuer_check() needs static keys: keys fetched from a URL belong to an issuer whose `iss` must be checked".into(),
                    ));
                }
                (Some(url), _) => RemoteSource::Jwks(check_url(url).map_err(url_error)?),
                (None, Some(issuer)) => {
                    check_url(issuer).map_err(url_error)?;
                    RemoteSource::Discovery(issuer.clone())
                }
                (None, None) => return Err(BuildError::NoKeySource),
            };
            let fetcher = Fetcher {
                client: client.clone().ok_or(BuildError::NoKeySource)?,
                timeout: self.fetch_timeout,
                max_bytes: self.max_jwks_bytes,
            };
            KeySource::Remote(Arc::new(RemoteKeys::new(
                source,
                fetcher,
                rules,
                self.remote,
            )))
        };

        let introspection = match self.introspection {
            None => None,
            Some(config) => {
                let issuer = match (&policy.issuer, client) {
                    (Some(issuer), Some(client)) => (issuer.clone(), client),
                    _ => {
                        return Err(BuildError::ConflictingSettings(
                            "introspection needs .issuer(..): answers are checked against it, and its metadata names the endpoint".into(),
                        ));
                    }
                };
                let signed = config.signed.then(|| SignedAnswers {
                    keys: keys.clone(),
                    algorithms: policy.algorithms.clone(),
                    issuer: issuer.0.clone(),
                    recipients: std::iter::once(config.auth.client_id().to_owned())
                        .chain(policy.audiences.iter().cloned())
                        .collect(),
                });
                Some(Arc::new(introspector(issuer, &config, &policy, signed)?))
            }
        };
        let verifier = Arc::new(IssuerVerifier {
            jwt: Arc::new(JwtVerifier {
                policy: policy.clone(),
                keys,
                cache: self.token_cache.as_ref().map(TokenCache::new),
            }),
            introspection,
        });
        Ok(TokenGuard {
            inner: Arc::new(GuardInner {
                verifier: Box::new(verifier.clone()),
                issuers: vec![verifier],
                request: RequestSettings {
                    sources,
                    max_token_len: policy.max_token_len,
                    challenge,
                    dpop_challenge,
                    binders: Binders { dpop, mtls },
                },
                metadata,
            }),
        })
    }
}

/// Largest clock skew tolerance [`TokenGuardBuilder::build`] accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

/// Key material as configured, parsed by [`TokenGuardBuilder::build`] against
/// the final settings, so that the order of the builder calls does not matter.
enum StaticKey {
    Jwks(Vec<u8>),
    Jwk(Vec<u8>),
    Pem(Vec<u8>, Option<String>),
    Prepared(DecodingKey, Algorithm, Option<String>),
    Invalid(String),
}

impl StaticKey {
    fn parse(
        self,
        rules: &KeyRules,
        out: &mut Vec<VerifyingKey>,
    ) -> Result<(), crate::keys::KeyError> {
        match self {
            Self::Jwks(json) => out.extend(rules.jwks(&json, "static JWK set")?.keys),
            Self::Jwk(json) => {
                let value = serde_json::from_slice(&json)
                    .map_err(|e| KeyError(format!("not JSON: {e}")))?;
                out.push(rules.jwk(&value)?);
            }
            Self::Pem(pem, kid) => out.push(rules.pem(&pem, kid.as_deref())?),
            Self::Prepared(key, alg, kid) => out.push(rules.prepared(key, alg, kid.as_deref())?),
            Self::Invalid(why) => return Err(KeyError(why)),
        }
        Ok(())
    }
}

/// The introspector of `issuer`, its settings checked.
fn introspector(
    (issuer, client): (String, reqwest::Client),
    config: &IntrospectionConfig,
    policy: &Policy,
    signed: Option<SignedAnswers>,
) -> Result<Introspector, BuildError> {
    let endpoint = match &config.endpoint {
        Some(url) => EndpointSource::Fixed(check_url(url).map_err(url_error)?),
        None => EndpointSource::Discovered {
            url: tokio::sync::OnceCell::new(),
            failed_at: std::sync::atomic::AtomicI64::new(i64::MIN),
        },
    };
    if let Method::PrivateKeyJwt { id, key, alg, kid } = &config.auth.0 {
        // A key that cannot sign its algorithm fails here, not per request.
        crate::verify::introspect::request::assertion(id, key, *alg, kid.as_deref(), &issuer)
            .map_err(BuildError::InvalidKey)?;
    }
    let fetcher = Fetcher {
        client,
        timeout: config.timeout,
        max_bytes: config.max_response_size,
    };
    Ok(Introspector::new(
        issuer,
        endpoint,
        fetcher,
        policy.clone(),
        config,
        signed,
    ))
}

fn url_error(e: FetchError) -> BuildError {
    BuildError::InvalidUrl(e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's table of defaults says what `Default` sets.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let source = include_str!("builder.rs");
        let row = |setting: &str| {
            source
                .lines()
                .find(|l| l.starts_with(&format!("/// | {setting} |")))
                .unwrap_or_else(|| panic!("no row for {setting}"))
                .to_owned()
        };
        let b = TokenGuardBuilder::default();
        assert!(row("leeway").contains(&format!(
            "| {} s (at most {} min)",
            b.leeway.as_secs(),
            MAX_LEEWAY.as_secs() / 60
        )));
        let lifetime = b.max_lifetime.unwrap();
        assert!(
            row("lifetime (`exp` − `iat`)")
                .contains(&format!("at most {} h", lifetime.as_secs() / 3600))
        );
        assert!(row("token size").contains(&format!("at most {} KiB", b.max_token_len / 1024)));
        assert!(row("realm").contains(&format!("`{}`", b.realm)));
        assert!(row("RSA keys without `alg`").contains(&format!("{:?}", b.rsa_algorithm)));
        let fetch = row("key and metadata fetches");
        assert!(fetch.contains(&format!("{} s timeout", b.fetch_timeout.as_secs())));
        assert!(fetch.contains(&format!("at most {} KiB", b.max_jwks_bytes / 1024)));
        assert!(b.token_cache.is_some() && row("verified-token cache").contains("on"));
        assert!(b.introspection.is_none() && row("opaque tokens").contains("off"));
        assert!(b.dpop.is_none() && row("DPoP").contains("off"));
        assert!(b.mtls.is_none() && row("certificate-bound tokens").contains("refused"));
        assert!(b.resource.is_none() && row("RFC 9728 metadata").contains("none"));
        assert_eq!(b.algorithms, DEFAULT_ALGORITHMS);
        assert!(!b.allow_untyped && row("`typ`").contains("`at+jwt` required"));
        assert!(
            matches!(b.scope_source, ScopeSource::Scope)
                && row("scopes").contains("the `scope` claim")
        );
    }
}
