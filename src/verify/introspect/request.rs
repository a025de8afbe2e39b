//! The introspection request (RFC 7662 §2.1): the token, a hint, and the
//! resource server's client authentication.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use serde::Serialize;

use super::config::{ClientAuth, Method};
use crate::claims::NumericDate;

/// How long a `private_key_jwt` assertion is valid.
const ASSERTION_LIFETIME: i64 = 60;

/// One request's body and `Authorization` value.
pub(crate) struct Request {
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) form: String,
}

/// Builds the request introspecting `token`; `issuer` is the audience of a
/// `private_key_jwt` assertion. Fails only when the assertion cannot be
/// signed (a key that does not fit its algorithm, refused at build time).
pub(crate) fn build(auth: &ClientAuth, issuer: &str, token: &str) -> Result<Request, String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token);
    form.append_pair("token_type_hint", "access_token");
    let mut authorization = None;
    match &auth.0 {
        Method::Basic { id, secret } => {
            // RFC 6749 §2.3.1: id and secret are form-encoded, then joined.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = STANDARD.encode(format!("{}:{}", encode(id), encode(secret)));
            let mut value = HeaderValue::try_from(format!("Basic {credentials}"))
                .map_err(|_| "the client credentials do not fit a header".to_owned())?;
            value.set_sensitive(true);
            authorization = Some(value);
        }
        Method::Post { id, secret } => {
            form.append_pair("client_id", id);
            form.append_pair("client_secret", secret);
        }
        Method::PrivateKeyJwt { id, key, alg, kid } => {
            let assertion = assertion(id, key, *alg, kid.as_deref(), issuer)?;
            form.append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            );
            form.append_pair("client_assertion", &assertion);
        }
    }
    Ok(Request {
        authorization,
        form: form.finish(),
    })
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// An RFC 7523 §3 client assertion.
pub(crate) fn assertion(
    client_id: &str,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    audience: &str,
) -> Result<String, String> {
    let now = NumericDate::now().as_secs();
    let claims = Assertion {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat: now,
        exp: now.saturating_add(ASSERTION_LIFETIME),
        jti: unique_id(),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|e| format!("cannot sign the client assertion: {e}"))
}

/// A 128-bit identifier unique within the process and unpredictable across
/// processes: a counter hashed under the standard library's random keys.
/// A `jti` must be unique (RFC 7523 §3), not secret.
fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 16];
    for (half, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(half);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let auth = ClientAuth::client_secret_basic("my client", "p@ss:wörd");
        let req = build(&auth, "https://id", "tok/en+=").unwrap();
        assert_eq!(
            req.form,
            "token=tok%2Fen%2B%3D&token_type_hint=access_token"
        );
        let value = req.authorization.unwrap();
        assert!(value.is_sensitive());
        let b64 = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:p%40ss%3Aw%C3%B6rd");
    }

    #[test]
    fn post_credentials_are_in_the_body() {
        let auth = ClientAuth::client_secret_post("rs", "s&cret");
        let req = build(&auth, "https://id", "t").unwrap();
        assert!(req.authorization.is_none());
        assert_eq!(
            req.form,
            "token=t&token_type_hint=access_token&client_id=rs&client_secret=s%26cret"
        );
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| unique_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 22));
    }
}
