//! The issuer's verification keys: parsing (JWK, JWKS, PEM), selection by
//! `kid` and algorithm, and remote key sets (JWKS URL, discovery).
//!
//! Each key is pinned: to the JWK's `alg` when it has one, otherwise to the
//! algorithms of its type (`RSA` → RS*/PS*, `EC` P-256 → ES256, P-384 →
//! ES384, `OKP` Ed25519 → EdDSA), always intersected with the guard's
//! algorithm allowlist. A token's key is chosen by its `kid`; a token without
//! `kid` is accepted only when exactly one key fits its algorithm. Keys are
//! never tried one after another, and never taken from the token
//! (`jwk`, `jku`, `x5u`, `x5c` are ignored).

pub(crate) mod discovery;
pub(crate) mod remote;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;

/// Smallest RSA modulus accepted from a key set, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted from a key set, in bits.
pub(crate) const MAX_RSA_BITS: usize = 8192;

/// Which algorithms a key verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAlgs {
    /// Exactly this algorithm (from the JWK `alg`, or the curve).
    Pinned(Algorithm),
    /// Any algorithm of this family that the allowlist admits.
    Family(AlgorithmFamily),
}

impl KeyAlgs {
    fn admits(self, alg: Algorithm) -> bool {
        match self {
            Self::Pinned(a) => a == alg,
            Self::Family(f) => alg.family() == f,
        }
    }
}

/// One verification key, prepared once per key-set load.
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<Box<str>>,
    pub(crate) algs: KeyAlgs,
    pub(crate) key: DecodingKey,
    /// Identifies the key across key-set refreshes (kid, algorithms and key
    /// material), so that cached verifications can tell whether their key
    /// is still published.
    pub(crate) fingerprint: u64,
}

impl VerifyingKey {
    pub(crate) fn new(kid: Option<Box<str>>, algs: KeyAlgs, key: DecodingKey) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        kid.hash(&mut h);
        format!("{algs:?}").hash(&mut h);
        match key.kind() {
            jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) => bytes.hash(&mut h),
            jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
                n.hash(&mut h);
                e.hash(&mut h);
            }
        }
        Self {
            kid,
            algs,
            key,
            fingerprint: h.finish(),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish()
    }
}

/// A set of keys, immutable once built; replaced whole on refresh.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerifyingKey>,
}

/// Why no key was found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoKey {
    /// No key has the token's `kid` (or, without `kid`, none or several fit).
    Unknown,
    /// A key has the `kid`, but is pinned to another algorithm.
    AlgorithmMismatch,
}

impl KeySet {
    /// Chooses the key for a token with this `kid` and `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, NoKey> {
        match kid {
            Some(kid) => {
                let mut seen = false;
                for key in &self.keys {
                    if key.kid.as_deref() == Some(kid) {
                        if key.algs.admits(alg) {
                            return Ok(key);
                        }
                        seen = true;
                    }
                }
                Err(if seen {
                    NoKey::AlgorithmMismatch
                } else {
                    NoKey::Unknown
                })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.algs.admits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(NoKey::Unknown),
                }
            }
        }
    }

    /// Whether the key with this fingerprint is in the set.
    pub(crate) fn contains_fingerprint(&self, fingerprint: u64) -> bool {
        self.keys.iter().any(|k| k.fingerprint == fingerprint)
    }

    /// The `kid`s of the set (for logs and health reports).
    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|k| k.kid.as_deref().map(str::to_owned))
            .collect()
    }
}

/// Why a configured key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError(pub(crate) String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> KeyError {
    KeyError(msg.into())
}

/// The JWK members this crate reads (RFC 7517, RFC 7518 §6, RFC 8037).
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(field: &'static str, v: Option<&str>) -> Result<Vec<u8>, KeyError> {
    let v = v.ok_or_else(|| err(format!("missing `{field}`")))?;
    URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|_| err(format!("`{field}` is not base64url")))
}

fn parse_alg(alg: &str) -> Option<Algorithm> {
    Some(match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        // RFC 9864 names the fully-specified Ed25519 algorithm `Ed25519`.
        "EdDSA" | "Ed25519" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return None,
    })
}

/// The JWS `alg` header value, parsed exactly (case-sensitive; `none` is not
/// an algorithm here).
///
/// `Ed25519` (the fully-specified name of RFC 9864) verifies as EdDSA, which
/// with the Ed25519 keys this crate supports is the same algorithm.
pub(crate) fn header_alg(alg: &str) -> Option<Algorithm> {
    parse_alg(alg)
}

fn bit_len(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

/// Builds one verifying key from a JWK (a JSON object), checked against the
/// algorithm allowlist.
pub(crate) fn key_from_jwk(
    jwk: &serde_json::Value,
    allowed: &[Algorithm],
) -> Result<VerifyingKey, KeyError> {
    let jwk = RawJwk::deserialize(jwk).map_err(|e| err(format!("unparsable JWK: {e}")))?;
    if let Some(u) = &jwk.use_
        && u != "sig"
    {
        return Err(err(format!("`use` is `{u}`, not `sig`")));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return Err(err("`key_ops` does not include `verify`"));
    }
    let pinned = match jwk.alg.as_deref() {
        None => None,
        Some(a) => Some(parse_alg(a).ok_or_else(|| err(format!("unsupported `alg` {a:?}")))?),
    };
    let (algs, key) = match jwk.kty.as_str() {
        "RSA" => {
            let n = b64("n", jwk.n.as_deref())?;
            let e = b64("e", jwk.e.as_deref())?;
            let bits = bit_len(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(err(format!(
                    "RSA modulus of {bits} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
                )));
            }
            if e.is_empty() || e.len() > 8 {
                return Err(err("RSA exponent has an invalid size"));
            }
            let algs = match pinned {
                Some(a) if a.family() == AlgorithmFamily::Rsa => KeyAlgs::Pinned(a),
                Some(a) => return Err(err(format!("`alg` {a:?} does not fit an RSA key"))),
                None => KeyAlgs::Family(AlgorithmFamily::Rsa),
            };
            (algs, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let (alg, len) = match jwk.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                other => return Err(err(format!("unsupported EC curve {other:?}"))),
            };
            if pinned.is_some_and(|p| p != alg) {
                return Err(err("`alg` does not fit the curve"));
            }
            let x = b64("x", jwk.x.as_deref())?;
            let y = b64("y", jwk.y.as_deref())?;
            if x.len() != len || y.len() != len {
                return Err(err("EC coordinates have the wrong length"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (KeyAlgs::Pinned(alg), DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(err(format!("unsupported OKP curve {:?}", jwk.crv)));
            }
            if pinned.is_some_and(|p| p != Algorithm::EdDSA) {
                return Err(err("`alg` does not fit an Ed25519 key"));
            }
            let x = b64("x", jwk.x.as_deref())?;
            if x.len() != 32 {
                return Err(err("Ed25519 key has the wrong length"));
            }
            (
                KeyAlgs::Pinned(Algorithm::EdDSA),
                DecodingKey::from_ed_der(&x),
            )
        }
        "oct" => return Err(err("symmetric (`oct`) keys are not taken from key sets")),
        other => return Err(err(format!("unsupported `kty` {other:?}"))),
    };
    let usable = match algs {
        KeyAlgs::Pinned(a) => allowed.contains(&a),
        KeyAlgs::Family(f) => allowed.iter().any(|a| a.family() == f),
    };
    if !usable {
        return Err(err("the key's algorithm is not in the allowlist"));
    }
    Ok(VerifyingKey::new(jwk.kid.map(Into::into), algs, key))
}

/// Parses a JWKS document. Members that cannot be used are skipped with a
/// warning; the rest serve. Fails only when the document itself is not a
/// key set, or no member is usable.
pub(crate) fn parse_jwks(
    json: &[u8],
    allowed: &[Algorithm],
    origin: &str,
) -> Result<KeySet, KeyError> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<serde_json::Value>,
    }
    let jwks: Jwks =
        serde_json::from_slice(json).map_err(|e| err(format!("not a JWK set: {e}")))?;
    let mut keys = Vec::with_capacity(jwks.keys.len());
    for (index, member) in jwks.keys.iter().enumerate() {
        match key_from_jwk(member, allowed) {
            Ok(key) => keys.push(key),
            Err(why) => {
                let kid = member.get("kid").and_then(|k| k.as_str()).unwrap_or("");
                tracing::warn!(origin, index, kid, reason = %why, "skipping a key of the JWK set");
            }
        }
    }
    // A key without `kid` in a set whose other keys have one would answer
    // every kid-less token: drop it (RFC 7517 §4.5 expects distinct kids).
    if keys.iter().any(|k| k.kid.is_some()) {
        keys.retain(|k| {
            if k.kid.is_none() {
                tracing::warn!(
                    origin,
                    "skipping a key without `kid` in a set whose other keys have one"
                );
            }
            k.kid.is_some()
        });
    }
    if keys.is_empty() {
        return Err(err("the JWK set holds no usable key"));
    }
    Ok(KeySet { keys })
}

/// Builds a verifying key from a PEM public key (RSA, EC P-256/P-384 or Ed25519).
pub(crate) fn key_from_pem(pem: &[u8], kid: Option<&str>) -> Result<VerifyingKey, KeyError> {
    let kid = kid.map(Into::into);
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(VerifyingKey::new(
            kid,
            KeyAlgs::Family(AlgorithmFamily::Rsa),
            key,
        ));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        let alg = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => Algorithm::ES256,
            Ok(97) => Algorithm::ES384,
            _ => return Err(err("unsupported EC curve in PEM")),
        };
        return Ok(VerifyingKey::new(kid, KeyAlgs::Pinned(alg), key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(VerifyingKey::new(
            kid,
            KeyAlgs::Pinned(Algorithm::EdDSA),
            key,
        ));
    }
    Err(err(
        "not a PEM public key of a supported type (RSA, EC P-256/P-384, Ed25519)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    fn ec_jwk(kid: &str) -> serde_json::Value {
        serde_json::json!({"kty":"EC","crv":"P-256","kid":kid,
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])})
    }

    #[test]
    fn tolerant_key_set() {
        let jwks = serde_json::json!({"keys": [
            ec_jwk("good"),
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"small","n": URL_SAFE_NO_PAD.encode([0xffu8; 128]),"e":"AQAB"},
            {"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"},
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"X25519","kid":"x","x":"AA"},
            {"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","x":"AA"},
            "not an object",
            {"kty":"OKP","crv":"Ed25519","x": URL_SAFE_NO_PAD.encode([3u8; 32])},
        ]});
        let set = parse_jwks(jwks.to_string().as_bytes(), ALL, "test").unwrap();
        assert_eq!(set.kids(), ["good"]);
        assert!(set.select(Some("good"), Algorithm::ES256).is_ok());
        assert_eq!(
            set.select(Some("good"), Algorithm::RS256).unwrap_err(),
            NoKey::AlgorithmMismatch
        );
        assert_eq!(
            set.select(Some("other"), Algorithm::ES256).unwrap_err(),
            NoKey::Unknown
        );
        assert!(set.select(None, Algorithm::ES256).is_ok());
        assert!(parse_jwks(br#"{"keys":[]}"#, ALL, "t").is_err());
        assert!(parse_jwks(b"[]", ALL, "t").is_err());
    }

    #[test]
    fn kidless_token_needs_a_single_fitting_key() {
        let jwks = serde_json::json!({"keys": [ec_jwk("a"), ec_jwk("b")]});
        let set = parse_jwks(jwks.to_string().as_bytes(), ALL, "t").unwrap();
        assert_eq!(
            set.select(None, Algorithm::ES256).unwrap_err(),
            NoKey::Unknown
        );
    }

    #[test]
    fn allowlist_filters_keys() {
        let only_rs = [Algorithm::RS256];
        assert!(key_from_jwk(&ec_jwk("a"), &only_rs).is_err());
        assert!(header_alg("none").is_none());
        assert_eq!(header_alg("Ed25519"), Some(Algorithm::EdDSA));
        assert!(header_alg("rs256").is_none());
        assert_eq!(bit_len(&[0, 0x01, 0]), 9);
    }
}
