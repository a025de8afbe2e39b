//! One DPoP proof (RFC 9449 §4.2–4.3): a compact JWS whose header carries the
//! client's public key. Checks, cheapest first: size and shape → header
//! (`typ` `dpop+jwt`, `alg` asymmetric and allowed, `jwk` public, no `crit`)
//! → key (parsed once per thumbprint) → signature → claims (`htm`, `htu`,
//! `iat` window, `jti`, `ath`). Recording the `jti` and comparing the
//! thumbprint with the token's `cnf.jkt` are the caller's steps.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use quick_cache::sync::Cache;
use serde::Deserialize;
use sha2::Digest as _;

use crate::claims::NumericDate;
use crate::error::InvalidProof;
use crate::keys::{KeyRules, VerifyingKey, header_alg};
use crate::syntax::is_b64url;

/// Largest `DPoP` header value accepted (an RSA-8192 key and signature fit).
pub(crate) const MAX_PROOF_LEN: usize = 8 * 1024;
/// Longest `jti` accepted.
pub(crate) const MAX_JTI_LEN: usize = 256;
/// Largest decoded claims set of a proof.
const MAX_CLAIMS_LEN: usize = 4 * 1024;

/// Members of a JWK that only a private or symmetric key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the request says the proof must match.
pub(crate) struct Expect<'a> {
    pub(crate) algorithms: &'a [Algorithm],
    pub(crate) method: &'a str,
    /// The normalized public URI of the request.
    pub(crate) htu: &'a str,
    /// base64url(SHA-256(access token)).
    pub(crate) ath: &'a str,
    pub(crate) now: i64,
    /// Oldest `iat` accepted, in seconds before `now`.
    pub(crate) max_age: i64,
    /// Latest `iat` accepted, in seconds after `now`.
    pub(crate) skew: i64,
}

/// A proof that passed every check of its own.
#[derive(Debug)]
pub(crate) struct Checked {
    /// RFC 7638 thumbprint of the proof's key (base64url).
    pub(crate) thumbprint: String,
    pub(crate) jti: String,
    pub(crate) nonce: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
    jwk: serde_json::Map<String, serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
struct Claims {
    // Missing is refused by the `jti` check, with its own description.
    #[serde(default)]
    jti: String,
    htm: String,
    htu: String,
    iat: NumericDate,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Proof keys parsed before, by (thumbprint, algorithm).
pub(crate) struct KeyCache(Cache<(String, Algorithm), Arc<VerifyingKey>>);

impl KeyCache {
    pub(crate) fn new(entries: usize) -> Self {
        Self(Cache::new(entries.max(1)))
    }
}

/// RFC 7638 §3: the SHA-256 of the required members, in lexicographic order,
/// as compact JSON.
pub(crate) fn thumbprint(jwk: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let s = |name: &str| jwk.get(name).and_then(|v| v.as_str());
    let members: &[&str] = match s("kty")? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    // Compact JSON, members in lexicographic order. The values are base64url
    // or curve names: characters that need no JSON escaping (others refused).
    let mut json = String::with_capacity(600);
    json.push('{');
    for (i, name) in members.iter().enumerate() {
        let value = s(name)?;
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return None;
        }
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        json.push_str(name);
        json.push_str("\":\"");
        json.push_str(value);
        json.push('"');
    }
    json.push('}');
    Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(json.as_bytes())))
}

/// base64url(SHA-256(`token`)): the `ath` of a proof for `token`.
pub(crate) fn token_hash(token: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token))
}

fn decode_object(part: &str, max: usize) -> Result<Vec<u8>, InvalidProof> {
    if part.len() > max * 4 / 3 + 4 {
        return Err(InvalidProof::Malformed);
    }
    let json = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| InvalidProof::Malformed)?;
    let is_object = json.trim_ascii_start().first() == Some(&b'{');
    if !is_object || std::str::from_utf8(&json).is_err() {
        return Err(InvalidProof::Malformed);
    }
    Ok(json)
}

/// Checks `proof` against `expect`, with keys from (and into) `keys`.
pub(crate) fn check(
    proof: &str,
    expect: &Expect<'_>,
    keys: &KeyCache,
) -> Result<Checked, InvalidProof> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(InvalidProof::TooLarge);
    }
    let (signing_input, signature) = proof.rsplit_once('.').ok_or(InvalidProof::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(InvalidProof::Malformed)?;
    if [header, payload, signature]
        .iter()
        .any(|p| p.is_empty() || !is_b64url(p))
    {
        return Err(InvalidProof::Malformed);
    }
    let header: Header = serde_json::from_slice(&decode_object(header, MAX_PROOF_LEN)?)
        .map_err(|_| InvalidProof::Malformed)?;
    // RFC 9449 §4.2: `typ` is `dpop+jwt` (media types compare
    // case-insensitively, with or without `application/`).
    let typ = header.typ.as_bytes();
    let typ = match typ.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"application/") => rest,
        _ => typ,
    };
    if !typ.eq_ignore_ascii_case(b"dpop+jwt") {
        return Err(InvalidProof::WrongType);
    }
    let alg = header_alg(&header.alg)
        .filter(|a| a.family() != AlgorithmFamily::Hmac && expect.algorithms.contains(a))
        .ok_or(InvalidProof::UnsupportedAlgorithm)?;
    if header.crit {
        return Err(InvalidProof::Malformed);
    }
    if PRIVATE_MEMBERS.iter().any(|m| header.jwk.contains_key(*m)) {
        return Err(InvalidProof::PrivateKey);
    }
    // Checked before the key cache, so that a cached key never lets a
    // `jwk` through that would not parse (RFC 7517 §4.2–4.4).
    let member = |name: &str| header.jwk.get(name);
    let fits = member("use").is_none_or(|u| u == "sig")
        && member("key_ops").is_none_or(|ops| {
            ops.as_array()
                .is_some_and(|o| o.iter().any(|op| op == "verify"))
        })
        && member("alg").is_none_or(|a| a.as_str() == Some(header.alg.as_str()));
    if !fits {
        return Err(InvalidProof::InvalidKey);
    }
    let thumbprint = thumbprint(&header.jwk).ok_or(InvalidProof::InvalidKey)?;
    let cache_key = (thumbprint, alg);
    let key = match keys.0.get(&cache_key) {
        Some(key) => key,
        None => {
            let rules = KeyRules {
                allowed: vec![alg],
                rsa_default: if alg.family() == AlgorithmFamily::Rsa {
                    alg
                } else {
                    Algorithm::RS256
                },
            };
            // The proof's key is the client's, not a key-set member: only its
            // public parameters count (a `use` or `alg` it carries must fit).
            let key = rules
                .jwk(&serde_json::Value::Object(header.jwk))
                .map_err(|_| InvalidProof::InvalidKey)?;
            if key.alg != alg {
                return Err(InvalidProof::InvalidKey);
            }
            let key = Arc::new(key);
            keys.0.insert(cache_key.clone(), key.clone());
            key
        }
    };
    let (thumbprint, _) = cache_key;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| InvalidProof::Malformed)?;
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(InvalidProof::BadSignature);
    }
    let claims: Claims = serde_json::from_slice(&decode_object(payload, MAX_CLAIMS_LEN)?)
        .map_err(|_| InvalidProof::Malformed)?;
    if claims.htm != expect.method {
        return Err(InvalidProof::WrongMethod);
    }
    if !super::htu::matches(&claims.htu, expect.htu) {
        return Err(InvalidProof::WrongUri);
    }
    let iat = claims.iat.as_secs();
    if iat > expect.now.saturating_add(expect.skew) {
        return Err(InvalidProof::IssuedInTheFuture);
    }
    if iat < expect.now.saturating_sub(expect.max_age) {
        return Err(InvalidProof::Expired);
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(InvalidProof::InvalidJti);
    }
    // RFC 9449 §4.3 step 12: with an access token, `ath` is its hash.
    if claims.ath.as_deref() != Some(expect.ath) {
        return Err(InvalidProof::WrongTokenHash);
    }
    Ok(Checked {
        thumbprint,
        jti: claims.jti,
        nonce: claims.nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert!(
            thumbprint(
                serde_json::json!({"kty": "oct", "k": "x"})
                    .as_object()
                    .unwrap()
            )
            .is_none()
        );
        assert!(
            thumbprint(
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": "a"})
                    .as_object()
                    .unwrap()
            )
            .is_none()
        );
    }

    #[test]
    fn token_hash_is_base64url_sha256() {
        // SHA-256("") from FIPS 180-2.
        assert_eq!(
            token_hash(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
