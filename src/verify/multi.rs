//! Several issuers behind one guard (multi-tenant).
//!
//! The token's `iss` is read before verification, only to choose the issuer:
//! that issuer's own keys and rules (audience, scope source, typ, lifetime)
//! then verify the token, and its verifier checks `iss` again. An `iss` that
//! is not configured is refused at once, without any network access, so a
//! token can never make the guard discover or fetch keys of an issuer it
//! names. Keys of one issuer never verify a token of another, even when their
//! `kid`s collide.

use std::collections::HashMap;
use std::sync::Arc;

use super::introspect::Introspector;
use super::issuer::IssuerVerifier;
use super::{Verification, Verifier, peek_issuer};
use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidToken};

pub(crate) struct MultiIssuer {
    pub(crate) by_issuer: HashMap<String, Arc<IssuerVerifier>>,
    /// The one issuer that introspects tokens that are not JWTs, if any: an
    /// opaque token names no issuer, and sending it to several would hand
    /// it to authorization servers it does not belong to.
    pub(crate) opaque: Option<Arc<Introspector>>,
    pub(crate) max_token_len: usize,
}

impl Verifier for MultiIssuer {
    fn cached(&self, token: &[u8]) -> Option<Arc<AccessToken>> {
        self.opaque.as_ref()?.cached(token)
    }

    fn verify(&self, token: &str) -> Verification {
        let issuer = match (peek_issuer(token, self.max_token_len), &self.opaque) {
            (Ok(iss), _) => iss,
            (Err(_), Some(opaque)) if token.len() <= self.max_token_len => {
                return opaque.verify(token);
            }
            (Err(e), _) => return Verification::Done(Err(e)),
        };
        match self.by_issuer.get(&issuer) {
            Some(verifier) => verifier.cached_or_verify(token),
            None => Verification::Done(Err(AuthError::invalid_token(InvalidToken::WrongIssuer))),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::error::AuthErrorKind;

    fn token(payload: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn peeks_the_issuer() {
        assert_eq!(
            peek_issuer(&token(r#"{"iss":"https://a","x":1}"#), 8192).unwrap(),
            "https://a"
        );
        let kind = |t: &str| peek_issuer(t, 8192).unwrap_err().kind().clone();
        assert_eq!(
            kind(&token(r#"{"x":1}"#)),
            AuthErrorKind::InvalidToken(InvalidToken::MissingClaim("iss"))
        );
        assert_eq!(
            kind(&token(r#"{"iss":"a","iss":"b"}"#)),
            AuthErrorKind::InvalidToken(InvalidToken::Malformed)
        );
        assert_eq!(
            kind(&token(r#"{"iss":1}"#)),
            AuthErrorKind::InvalidToken(InvalidToken::Malformed)
        );
        assert_eq!(
            kind("nodots"),
            AuthErrorKind::InvalidToken(InvalidToken::Malformed)
        );
    }
}
