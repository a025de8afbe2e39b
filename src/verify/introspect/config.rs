//! The settings of token introspection: [`IntrospectionConfig`] and how the
//! resource server authenticates to the endpoint ([`ClientAuth`]).

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};

/// Token introspection (RFC 7662) for opaque access tokens, given to
/// [`TokenGuardBuilder::introspection`](crate::TokenGuardBuilder::introspection).
///
/// | setting | default |
/// |---|---|
/// | endpoint | the issuer's `introspection_endpoint` (discovery) ([`endpoint`](Self::endpoint)) |
/// | cache of active tokens | until `exp`, at most 30 s: the revocation delay ([`max_ttl`](Self::max_ttl)) |
/// | cache of refused tokens | 5 s ([`inactive_ttl`](Self::inactive_ttl)) |
/// | cache bounds | 10000 entries, 16 MiB ([`max_entries`](Self::max_entries), [`max_bytes`](Self::max_bytes)) |
/// | introspections in flight | 64; past it, 503 ([`max_in_flight`](Self::max_in_flight)) |
/// | one introspection | 5 s timeout, answer at most 64 KiB ([`timeout`](Self::timeout), [`max_response_size`](Self::max_response_size)) |
/// | JWTs of the issuer | verified locally ([`introspect_jwts`](Self::introspect_jwts)) |
/// | `aud` | required in the answer ([`allow_missing_audience`](Self::allow_missing_audience)) |
/// | answers | JSON; signed JWTs (RFC 9701) with [`signed_responses`](Self::signed_responses) |
///
/// A revoked token keeps being accepted from the cache for at most
/// [`max_ttl`](Self::max_ttl): shorten it (or [`disable_cache`](Self::disable_cache))
/// where revocation must take effect sooner, at the price of one
/// introspection per request.
///
/// ```
/// use std::time::Duration;
/// use tokenguard::{ClientAuth, IntrospectionConfig, TokenGuard};
/// let guard = TokenGuard::builder()
///     .issuer("https://id.example.com")
///     .audience("https://api.example.com")
///     .introspection(
///         IntrospectionConfig::new(ClientAuth::client_secret_basic("api", "s3cret"))
///             .max_ttl(Duration::from_secs(10)),
///     )
///     .build()
///     .unwrap();
/// # let _ = guard;
/// ```
#[derive(Clone)]
#[must_use]
pub struct IntrospectionConfig {
    pub(crate) auth: ClientAuth,
    pub(crate) endpoint: Option<String>,
    pub(crate) cache: bool,
    pub(crate) max_ttl: Duration,
    pub(crate) inactive_ttl: Duration,
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: u64,
    pub(crate) max_in_flight: usize,
    pub(crate) timeout: Duration,
    pub(crate) max_response_size: usize,
    pub(crate) introspect_jwts: bool,
    pub(crate) require_audience: bool,
    pub(crate) signed: bool,
    pub(crate) shared: Option<std::sync::Arc<dyn super::SharedIntrospectionCache>>,
}

/// The defaults, written once: [`IntrospectionConfig::new`] starts from
/// them, and the table of defaults is tested against them.
mod defaults {
    use std::time::Duration;

    pub(super) const MAX_TTL: Duration = Duration::from_secs(30);
    pub(super) const INACTIVE_TTL: Duration = Duration::from_secs(5);
    pub(super) const MAX_ENTRIES: usize = 10_000;
    pub(super) const MAX_BYTES: u64 = 16 << 20;
    pub(super) const MAX_IN_FLIGHT: usize = 64;
    pub(super) const TIMEOUT: Duration = Duration::from_secs(5);
    pub(super) const MAX_RESPONSE_SIZE: usize = 64 * 1024;
}

impl IntrospectionConfig {
    /// Introspection with this client authentication, every other setting
    /// at its default.
    pub fn new(auth: ClientAuth) -> Self {
        Self {
            auth,
            endpoint: None,
            cache: true,
            max_ttl: defaults::MAX_TTL,
            inactive_ttl: defaults::INACTIVE_TTL,
            max_entries: defaults::MAX_ENTRIES,
            max_bytes: defaults::MAX_BYTES,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            timeout: defaults::TIMEOUT,
            max_response_size: defaults::MAX_RESPONSE_SIZE,
            introspect_jwts: false,
            require_audience: true,
            signed: false,
            shared: None,
        }
    }

    /// Shares active answers with the other replicas through `cache` (e.g.
    /// the `redis` feature's store): a token introspected by one is served
    /// to the others without another call. Each replica keeps its own
    /// in-memory cache in front of it.
    pub fn shared_cache(
        mut self,
        cache: std::sync::Arc<dyn super::SharedIntrospectionCache>,
    ) -> Self {
        self.shared = Some(cache);
        self
    }

    /// The introspection endpoint, instead of the issuer's metadata
    /// (`introspection_endpoint`). HTTPS, or HTTP on loopback.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Longest time an active answer is trusted without asking again
    /// (default 30 s; never past the token's `exp`). This is the revocation
    /// delay: a token revoked at the authorization server is refused within it.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// How long a refused token (`active: false`, or an answer that fails
    /// the checks) is answered from the cache, which absorbs floods of the
    /// same dead token (default 5 s; `Duration::ZERO`: never cached). Errors
    /// of the authorization server are never cached.
    pub fn inactive_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = ttl;
        self
    }

    /// Most cached answers (default 10 000).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// Approximate memory bound of the cache in bytes (default 16 MiB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Introspect every token, verified each time by the authorization
    /// server: no cache at all.
    pub fn disable_cache(mut self) -> Self {
        self.cache = false;
        self
    }

    /// Most introspection calls in flight at once (default 64). Requests
    /// carrying the same token share one call; a request that would start
    /// one more is answered 503 with `Retry-After` at once, never queued.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Total time one introspection may take (default 5 s); past it the
    /// request is answered 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest introspection answer accepted, in bytes (default 64 KiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Introspect JWTs of the issuer too, instead of verifying them locally
    /// (default `false`): for APIs where revocation must take effect within
    /// [`max_ttl`](Self::max_ttl) for every token. The authorization server
    /// must introspect JWTs: some do not (`oidc-provider` answers 400
    /// `unsupported_token_type`), and every JWT is then answered 503.
    pub fn introspect_jwts(mut self, yes: bool) -> Self {
        self.introspect_jwts = yes;
        self
    }

    /// Accept answers without `aud`, for authorization servers that do not
    /// name the audience in introspection answers. An `aud` that is present
    /// must still name a configured audience. Without `aud`, a token issued
    /// for another resource of the same authorization server is accepted.
    pub fn allow_missing_audience(mut self) -> Self {
        self.require_audience = false;
        self
    }

    /// Ask for signed answers (RFC 9701, `Accept:
    /// application/token-introspection+jwt`) and accept nothing else: each
    /// must be a JWT of type `token-introspection+jwt` signed with one of the
    /// issuer's keys (the key set of its access tokens, with the same
    /// algorithms), its `iss` the issuer and its `aud` this client's id or one
    /// of the guard's audiences. An answer that fails any of this is an
    /// outage (503), never a verdict on the token. The authorization server
    /// must be configured to sign for this client (in `oidc-provider`, the
    /// `jwtIntrospection` feature). With a [`shared_cache`](Self::shared_cache),
    /// replicas store the checked answer's inner JSON there and trust each
    /// other's entries: keep that store private to them.
    pub fn signed_responses(mut self) -> Self {
        self.signed = true;
        self
    }
}

impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("auth", &self.auth)
            .field("endpoint", &self.endpoint)
            .field("cache", &self.cache)
            .field("max_ttl", &self.max_ttl)
            .field("inactive_ttl", &self.inactive_ttl)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout", &self.timeout)
            .field("introspect_jwts", &self.introspect_jwts)
            .field("require_audience", &self.require_audience)
            .field("signed", &self.signed)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// How the resource server authenticates to the introspection endpoint
/// (RFC 7662 §2.1 requires it).
///
/// ```
/// use tokenguard::ClientAuth;
/// let basic = ClientAuth::client_secret_basic("api", "s3cret");
/// // The secret never shows in debug output.
/// assert!(!format!("{basic:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ClientAuth(pub(crate) Method);

#[derive(Clone)]
pub(crate) enum Method {
    Basic {
        id: String,
        secret: String,
    },
    Post {
        id: String,
        secret: String,
    },
    PrivateKeyJwt {
        id: String,
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    },
}

impl ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the client id and secret
    /// (RFC 6749 §2.3.1; both form-encoded first, as it says).
    pub fn client_secret_basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self(Method::Basic {
            id: client_id.into(),
            secret: secret.into(),
        })
    }

    /// `client_secret_post`: the client id and secret in the request body
    /// (RFC 6749 §2.3.1).
    pub fn client_secret_post(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self(Method::Post {
            id: client_id.into(),
            secret: secret.into(),
        })
    }

    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a short
    /// JWT assertion signed with the client's private key, so that no
    /// shared secret exists. Its `iss` and `sub` are the client id, its
    /// `aud` the issuer identifier, and it is valid for 60 s.
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Self {
        Self(Method::PrivateKeyJwt {
            id: client_id.into(),
            key,
            alg,
            kid: kid.map(Into::into),
        })
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        match &self.0 {
            Method::Basic { id, .. }
            | Method::Post { id, .. }
            | Method::PrivateKeyJwt { id, .. } => id,
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match &self.0 {
            Method::Basic { .. } => "client_secret_basic",
            Method::Post { .. } => "client_secret_post",
            Method::PrivateKeyJwt { .. } => "private_key_jwt",
        };
        f.debug_struct("ClientAuth")
            .field("method", &method)
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of defaults says what `new` sets.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let source = include_str!("config.rs");
        let row = |setting: &str| {
            source
                .lines()
                .find(|l| l.starts_with(&format!("/// | {setting} |")))
                .unwrap_or_else(|| panic!("no row for {setting}"))
                .to_owned()
        };
        let c = IntrospectionConfig::new(ClientAuth::client_secret_post("a", "b"));
        assert!(c.cache && c.endpoint.is_none());
        assert!(
            row("cache of active tokens").contains(&format!("at most {} s", c.max_ttl.as_secs()))
        );
        assert!(
            row("cache of refused tokens").contains(&format!("| {} s", c.inactive_ttl.as_secs()))
        );
        let bounds = row("cache bounds");
        assert!(bounds.contains(&format!("{} entries", c.max_entries)));
        assert!(bounds.contains(&format!("{} MiB", c.max_bytes >> 20)));
        assert!(row("introspections in flight").contains(&format!("| {};", c.max_in_flight)));
        let one = row("one introspection");
        assert!(one.contains(&format!("{} s timeout", c.timeout.as_secs())));
        assert!(one.contains(&format!("at most {} KiB", c.max_response_size / 1024)));
        assert!(!c.introspect_jwts && row("JWTs of the issuer").contains("verified locally"));
        assert!(c.require_audience && row("`aud`").contains("required"));
    }
}
