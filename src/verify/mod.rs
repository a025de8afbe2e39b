//! Verification: a token's bytes in, a verified [`AccessToken`] or an
//! [`AuthError`] out. JWTs are verified locally ([`jwt`]: strict JOSE header →
//! key → signature → policy), in front of them the verified-token cache
//! ([`cache`]); opaque tokens are introspected (RFC 7662, [`introspect`]);
//! [`issuer`] chooses between the two for one issuer, and several issuers
//! are routed by [`multi`]. Nothing here knows tower, axum or the request.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tokenguard::testing::TestIssuer;
//! let issuer = TestIssuer::new();
//! let guard = issuer.guard("https://api");
//! let token = issuer.token().audience("https://api").scope("read").mint();
//! assert!(guard.verify(&token).await.unwrap().scopes().contains("read"));
//! # }
//! ```

pub(crate) mod cache;
pub(crate) mod introspect;
pub(crate) mod issuer;
pub(crate) mod jwt;
pub(crate) mod multi;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidToken};

/// Result of a verification.
pub(crate) type VerifyResult = Result<Arc<AccessToken>, AuthError>;

/// A verification that may have to wait for keys.
pub(crate) enum Verification {
    /// Decided without waiting.
    Done(VerifyResult),
    /// Waiting for a key fetch.
    Pending(Pin<Box<dyn Future<Output = VerifyResult> + Send + 'static>>),
}

/// Turns a token into a verified [`AccessToken`]: JWT verification,
/// introspection, and the routing between them, behind one trait.
pub(crate) trait Verifier: Send + Sync + 'static {
    /// A still-valid earlier verification of exactly these bytes, if cached.
    /// Looked up before anything else: a hit needs no other check.
    fn cached(&self, _token: &[u8]) -> Option<Arc<AccessToken>> {
        None
    }

    /// Verifies `token` (not looking in the cache).
    fn verify(&self, token: &str) -> Verification;

    /// Verifies a request's token whose token68 syntax `syntax` checks. By
    /// default it is checked first; a verifier whose parsing proves it (a
    /// JWT: base64url segments and dots) checks it only before a refusal.
    fn verify_request(
        &self,
        token: &str,
        syntax: &dyn Fn() -> Result<(), AuthError>,
    ) -> Verification {
        match syntax() {
            Ok(()) => self.verify(token),
            Err(e) => Verification::Done(Err(e)),
        }
    }

    /// The cache, then verification.
    fn cached_or_verify(&self, token: &str) -> Verification {
        match self.cached(token.as_bytes()) {
            Some(hit) => Verification::Done(Ok(hit)),
            None => self.verify(token),
        }
    }
}

/// Reads `iss` from an unverified token, for routing only.
pub(crate) fn peek_issuer(token: &str, max_len: usize) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct Iss<'a> {
        #[serde(borrow)]
        iss: Option<Cow<'a, str>>,
    }
    let malformed = || AuthError::invalid_token(InvalidToken::Malformed);
    if token.len() > max_len {
        return Err(AuthError::invalid_token(InvalidToken::TooLarge));
    }
    let payload = token.split('.').nth(1).ok_or_else(malformed)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    let claims: Iss<'_> = serde_json::from_slice(&json).map_err(|_| malformed())?;
    claims
        .iss
        .map(Cow::into_owned)
        .ok_or_else(|| AuthError::invalid_token(InvalidToken::MissingClaim("iss")))
}

pub(crate) use crate::keys::crypto_provider;

/// Installs tokenguard's crypto backend as jsonwebtoken's process-wide
/// default, unless the application installed one already. With both backends
/// compiled in, jsonwebtoken would otherwise panic on first use elsewhere in
/// the process.
pub(crate) fn install_default_provider() {
    let _ = crypto_provider().install_default();
}
