//! One issuer's verification: its JWTs verified locally, everything else
//! introspected when introspection is configured (and every token, with
//! `introspect_jwts`). A token counts as a JWT of the issuer when its payload
//! names the issuer in `iss`; that peek only routes, it proves nothing.

use std::sync::Arc;

use super::introspect::Introspector;
use super::jwt::JwtVerifier;
use super::{Verification, Verifier, peek_issuer};
use crate::claims::AccessToken;
use crate::error::AuthError;

pub(crate) struct IssuerVerifier {
    pub(crate) jwt: Arc<JwtVerifier>,
    pub(crate) introspection: Option<Arc<Introspector>>,
}

impl IssuerVerifier {
    /// The issuer's identifier, if one is configured.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.jwt.policy.issuer.as_deref()
    }

    fn is_own_jwt(&self, token: &str) -> bool {
        let own = self.issuer();
        own.is_some()
            && peek_issuer(token, self.jwt.policy.max_token_len).is_ok_and(|iss| Some(&*iss) == own)
    }
}

impl Verifier for Arc<IssuerVerifier> {
    fn cached(&self, token: &[u8]) -> Option<Arc<AccessToken>> {
        match &self.introspection {
            None => self.jwt.cached(token),
            Some(introspect) if introspect.introspect_jwts => introspect.cached(token),
            // Only a token with two dots can be a JWT in the JWT cache.
            Some(introspect) if token.iter().filter(|b| **b == b'.').count() != 2 => {
                introspect.cached(token)
            }
            Some(introspect) => self.jwt.cached(token).or_else(|| introspect.cached(token)),
        }
    }

    fn verify(&self, token: &str) -> Verification {
        match &self.introspection {
            Some(introspect) if introspect.introspect_jwts || !self.is_own_jwt(token) => {
                introspect.verify(token)
            }
            _ => self.jwt.verify(token),
        }
    }

    fn verify_request(
        &self,
        token: &str,
        syntax: &dyn Fn() -> Result<(), AuthError>,
    ) -> Verification {
        match &self.introspection {
            Some(introspect) if introspect.introspect_jwts || !self.is_own_jwt(token) => {
                match syntax() {
                    Ok(()) => introspect.verify(token),
                    Err(e) => Verification::Done(Err(e)),
                }
            }
            _ => self.jwt.verify_request(token, syntax),
        }
    }
}
