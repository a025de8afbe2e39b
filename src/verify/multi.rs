//! Several issuers behind one guard (multi-tenant).
//!
//! The token's `iss` is read before verification, only to choose the issuer:
//! that issuer's own keys and rules (audience, scope source, typ, lifetime)
//! then verify the token, and its verifier checks `iss` again. An `iss` that
//! is not configured is refused at once, without any network access, so a
//! token can never make the guard discover or fetch keys of an issuer it
//! names. Keys of one issuer never verify a token of another, even when their
//! `kid`s collide.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::jwt::JwtVerifier;
use super::{Verification, Verifier};
use crate::error::{AuthError, InvalidToken};

pub(crate) struct MultiIssuer {
    pub(crate) by_issuer: HashMap<String, Arc<JwtVerifier>>,
    pub(crate) max_token_len: usize,
}

/// Reads `iss` from an unverified token, for routing only.
fn peek_issuer(token: &str, max_len: usize) -> Result<String, AuthError> {
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

impl Verifier for MultiIssuer {
    fn verify(&self, token: &str) -> Verification {
        let issuer = match peek_issuer(token, self.max_token_len) {
            Ok(iss) => iss,
            Err(e) => return Verification::Done(Err(e)),
        };
        match self.by_issuer.get(&issuer) {
            Some(verifier) => verifier.cached_or_verify(token),
            None => Verification::Done(Err(AuthError::invalid_token(InvalidToken::WrongIssuer))),
        }
    }
}

#[cfg(test)]
mod tests {
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
