//! Signed introspection answers (RFC 9701): the authorization server answers
//! with a JWT (`application/token-introspection+jwt`) signed with the keys it
//! publishes for its access tokens, and the introspection response is its
//! `token_introspection` claim. The signature proves the answer came from the
//! issuer, even through a TLS-intercepting proxy or a mistaken endpoint URL.
//!
//! ```
//! use tokenguard::{ClientAuth, IntrospectionConfig};
//! let config = IntrospectionConfig::new(ClientAuth::client_secret_basic("api", "s3cret"))
//!     .signed_responses();
//! # let _ = config;
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::claims::Audience;
use crate::keys::{KeySet, NoKey, header_alg};
use crate::verify::jwt::{Header, KeySource, typ_is};

/// The media type of a signed answer (RFC 9701 §4, §5).
pub(crate) const MEDIA_TYPE: &str = "application/token-introspection+jwt";

/// What a signed answer is checked against.
pub(crate) struct SignedAnswers {
    /// The key set of the issuer's JWT verifier.
    pub(crate) keys: KeySource,
    pub(crate) algorithms: Vec<Algorithm>,
    /// The issuer, which must sign as `iss`.
    pub(crate) issuer: String,
    /// Who the answer is for (`aud`): the resource server's client id, or
    /// one of its audiences.
    pub(crate) recipients: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(default)]
    token_introspection: Option<Box<serde_json::value::RawValue>>,
}

impl SignedAnswers {
    /// The introspection response inside a signed answer; `Err` says why the
    /// answer is not one (an outage or an attack, never a verdict on the
    /// token).
    pub(crate) async fn open(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Bytes, &'static str> {
        let media_type = content_type
            .and_then(|t| t.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if !media_type.eq_ignore_ascii_case(MEDIA_TYPE) {
            return Err(
                "the answer is not signed (content type is not application/token-introspection+jwt)",
            );
        }
        let jws = std::str::from_utf8(body)
            .map_err(|_| "the signed answer is not a JWS")?
            .trim_ascii();
        let (signing_input, signature) = jws
            .rsplit_once('.')
            .ok_or("the signed answer is not a JWS")?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or("the signed answer is not a JWS")?;
        // Decoding checks each part's base64url syntax.
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| "the signed answer is not a JWS")
        };
        let header_json = decode(header)?;
        let header =
            Header::parse(&header_json).ok_or("the signed answer's header is not a JOSE header")?;
        let alg = header_alg(&header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or("the signed answer's algorithm is not accepted")?;
        if header.crit {
            return Err("the signed answer has a crit header");
        }
        // RFC 9701 §5: `typ` is `token-introspection+jwt`, with or without
        // `application/` (RFC 7515 §4.1.9).
        let typ = header.typ.as_deref().unwrap_or_default();
        if !typ_is(typ, "token-introspection+jwt") {
            return Err("the signed answer's typ is not token-introspection+jwt");
        }
        let signature = decode(signature)?;
        if signature.is_empty() {
            return Err("the signed answer is unsigned");
        }
        let kid = header.kid.as_deref();
        let verified = match &self.keys {
            KeySource::Static(keys) => verify(keys, kid, alg, signing_input, &signature)?,
            KeySource::Remote(remote) => {
                let cached = remote.cached();
                let first = match &cached {
                    Some(keys) => verify(keys, kid, alg, signing_input, &signature),
                    None => Err(NO_KEY),
                };
                match first {
                    Err(NO_KEY) => {
                        // Not loaded yet, or an unknown `kid`: fetch (rate-limited).
                        let keys = remote.refresh().await.map_err(
                            |_| "the issuer's keys for the signed answer are unavailable",
                        )?;
                        verify(&keys, kid, alg, signing_input, &signature)?
                    }
                    other => other?,
                }
            }
        };
        if !verified {
            return Err("the signed answer's signature does not verify");
        }
        let claims: Claims = serde_json::from_slice(&decode(payload)?)
            .map_err(|_| "the signed answer's claims have the wrong types")?;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err("the signed answer's iss is not the issuer");
        }
        let for_us = claims
            .aud
            .is_some_and(|aud| self.recipients.iter().any(|r| aud.contains(r)));
        if !for_us {
            return Err("the signed answer's aud names neither this client nor its audience");
        }
        if claims.iat.is_none() {
            return Err("the signed answer has no iat");
        }
        let inner = claims
            .token_introspection
            .ok_or("the signed answer has no token_introspection")?;
        Ok(Bytes::copy_from_slice(inner.get().as_bytes()))
    }
}

const NO_KEY: &str = "no key of the issuer signed the answer";

fn verify(
    keys: &KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    signing_input: &str,
    signature: &[u8],
) -> Result<bool, &'static str> {
    match keys.select(kid, alg) {
        Ok(key) => Ok(key.verify(signing_input.as_bytes(), signature)),
        Err(NoKey::Unknown) => Err(NO_KEY),
        Err(NoKey::AlgorithmMismatch) => {
            Err("the signed answer's key is pinned to another algorithm")
        }
    }
}
