//! The issuer's verification keys: parsing (JWK, JWKS, PEM, prepared
//! `jsonwebtoken` keys), selection by `kid` and algorithm, and remote key sets
//! (JWKS URL, discovery).
//!
//! Every key, however it enters, passes one set of rules ([`KeyRules`]):
//! - it is pinned to exactly one algorithm (RFC 8725 §3.1): the JWK's `alg`
//!   when it has one, otherwise its curve (`EC` P-256 → ES256, P-384 → ES384,
//!   `OKP` Ed25519 → EdDSA) or, for RSA keys, the configured RSA algorithm
//!   (RS256 unless set otherwise); that algorithm must be in the allowlist;
//! - RSA moduli are 2048–8192 bits, EC points and Ed25519 keys have their
//!   exact sizes, HMAC secrets are at least as long as their hash;
//! - private key material (a JWK with `d`, `p`, `q`, …, `k`, a PEM private
//!   key) is refused: a published private key is an incident, not a key.
//!
//! A token's key is chosen by its `kid`; a token without `kid` is accepted
//! only when exactly one key fits its algorithm. Keys are never tried one
//! after another, and never taken from the token (`jwk`, `jku`, `x5u`, `x5c`
//! are ignored, RFC 8725 §3.10).

pub(crate) mod discovery;
#[cfg(feature = "aws-lc-rs")]
pub(crate) mod prepared;
#[cfg(not(feature = "aws-lc-rs"))]
#[path = "prepared_none.rs"]
pub(crate) mod prepared;
pub(crate) mod remote;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use serde::Deserialize;

/// The crypto backend tokenguard uses, chosen explicitly so that verification
/// never depends on (or panics for lack of) a process-wide default.
pub(crate) fn crypto_provider() -> &'static CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    {
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
    }
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    {
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
    }
}

/// Smallest RSA modulus accepted, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub(crate) const MAX_RSA_BITS: usize = 8192;

/// The rules every key passes, whichever way it enters.
#[derive(Debug, Clone)]
pub(crate) struct KeyRules {
    /// The algorithm allowlist (HMAC only when a secret was configured).
    pub(crate) allowed: Vec<Algorithm>,
    /// The algorithm of RSA keys that name none (a JWK without `alg`, a PEM key).
    pub(crate) rsa_default: Algorithm,
}

/// One verification key, prepared once per key-set load.
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<Box<str>>,
    /// The one algorithm this key verifies.
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
    /// The key parsed once for `alg`, when the backend can (aws-lc-rs).
    pub(crate) prepared: Option<prepared::Prepared>,
    /// Identifies the key across key-set refreshes (kid, algorithm and key
    /// material), so that cached verifications can tell whether their key
    /// is still published.
    pub(crate) fingerprint: u64,
}

impl VerifyingKey {
    fn new(kid: Option<Box<str>>, alg: Algorithm, key: DecodingKey) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        kid.hash(&mut h);
        alg.hash(&mut h);
        match key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => bytes.hash(&mut h),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                n.hash(&mut h);
                e.hash(&mut h);
            }
        }
        Self {
            kid,
            alg,
            prepared: prepared::Prepared::new(alg, &key),
            key,
            fingerprint: h.finish(),
        }
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this
    /// key: with the prepared key when there is one, else through
    /// `jsonwebtoken`'s crypto provider.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if let Some(prepared) = &self.prepared {
            return prepared.verify(message, signature);
        }
        (crypto_provider().verifier_factory)(&self.alg, &self.key)
            .is_ok_and(|v| v.verify(message, &signature.to_vec()).is_ok())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// The state of one issuer's key set. See [`TokenGuard::key_status`](crate::TokenGuard::key_status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySetStatus {
    /// The issuer the keys belong to (`None` if the issuer check is skipped).
    pub issuer: Option<String>,
    /// Where the keys come from: `static`, or the JWKS URL (or the issuer's
    /// discovery URL while its `jwks_uri` is not known yet).
    pub source: String,
    /// How many keys are usable now.
    pub keys_loaded: usize,
    /// Their `kid`s.
    pub kids: Vec<String>,
    /// When the keys were last fetched successfully.
    pub last_refresh: Option<std::time::SystemTime>,
    /// The error of the last fetch, if it failed.
    pub last_error: Option<String>,
    /// Fetches failed in a row since the last success.
    pub consecutive_failures: u32,
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
                        if key.alg == alg {
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
                let mut fitting = self.keys.iter().filter(|k| k.alg == alg);
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

/// JWK members that hold private or symmetric key material (RFC 7518 §6.2.2,
/// §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn has_private_material(jwk: &serde_json::Value) -> bool {
    PRIVATE_MEMBERS.iter().any(|m| jwk.get(m).is_some())
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

/// Significant bits of a big-endian unsigned integer.
fn bit_len(bytes: &[u8]) -> usize {
    let mut rest = bytes.iter().skip_while(|&&b| b == 0);
    match rest.next() {
        Some(first) => rest.count() * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

fn check_rsa_bits(bits: usize) -> Result<(), KeyError> {
    if (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(err(format!(
            "RSA modulus of {bits} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
        )))
    }
}

/// One DER element: `(tag, content, rest)`. Definite lengths only.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// The modulus size of a PKCS#1 `RSAPublicKey` (`SEQUENCE { n INTEGER, e INTEGER }`).
fn rsa_der_modulus_bits(der: &[u8]) -> Option<usize> {
    let (0x30, seq, _) = der_element(der)? else {
        return None;
    };
    let (0x02, n, rest) = der_element(seq)? else {
        return None;
    };
    let (0x02, _e, _) = der_element(rest)? else {
        return None;
    };
    Some(bit_len(n))
}

/// Checks a key's material against `alg` (sizes, types; see the module docs).
fn check_material(key: &DecodingKey, alg: Algorithm) -> Result<(), KeyError> {
    let bytes = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            if alg.family() != AlgorithmFamily::Rsa {
                return Err(err(format!("an RSA key cannot verify {alg:?}")));
            }
            if e.is_empty() || e.len() > 8 {
                return Err(err("RSA exponent has an invalid size"));
            }
            return check_rsa_bits(bit_len(n));
        }
        DecodingKeyKind::SecretOrDer(bytes) => bytes,
    };
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let bits = rsa_der_modulus_bits(bytes)
                .ok_or_else(|| err("not a DER-encoded RSA public key (PKCS#1)"))?;
            check_rsa_bits(bits)
        }
        // An uncompressed point: 0x04 ‖ x ‖ y.
        Algorithm::ES256 if bytes.len() == 65 => Ok(()),
        Algorithm::ES384 if bytes.len() == 97 => Ok(()),
        Algorithm::ES256 | Algorithm::ES384 => Err(err(format!(
            "not an uncompressed EC point of the {alg:?} curve"
        ))),
        Algorithm::EdDSA if bytes.len() == 32 => Ok(()),
        Algorithm::EdDSA => Err(err("an Ed25519 key has 32 bytes")),
        // RFC 7518 §3.2: a key at least as long as the hash output.
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let min = match alg {
                Algorithm::HS256 => 32,
                Algorithm::HS384 => 48,
                _ => 64,
            };
            if bytes.len() < min {
                Err(err(format!("an {alg:?} secret needs at least {min} bytes")))
            } else {
                Ok(())
            }
        }
        other => Err(err(format!("{other:?} keys are not supported"))),
    }
}

impl KeyRules {
    /// The last check of every key: its algorithm is allowed and its
    /// material fits it.
    fn admit(
        &self,
        kid: Option<Box<str>>,
        alg: Algorithm,
        key: DecodingKey,
    ) -> Result<VerifyingKey, KeyError> {
        if !self.allowed.contains(&alg) {
            return Err(err(format!(
                "the key's algorithm {alg:?} is not in the allowlist"
            )));
        }
        check_material(&key, alg)?;
        Ok(VerifyingKey::new(kid, alg, key))
    }

    /// A prepared `jsonwebtoken` key, pinned to `alg` by the application.
    pub(crate) fn prepared(
        &self,
        key: DecodingKey,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<VerifyingKey, KeyError> {
        self.admit(kid.map(Into::into), alg, key)
    }

    /// Builds one verifying key from a JWK (a JSON object).
    pub(crate) fn jwk(&self, jwk: &serde_json::Value) -> Result<VerifyingKey, KeyError> {
        if has_private_material(jwk) {
            return Err(err("the JWK holds private or symmetric key material"));
        }
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
        let (alg, key) = match jwk.kty.as_str() {
            "RSA" => {
                let alg = pinned.unwrap_or(self.rsa_default);
                if alg.family() != AlgorithmFamily::Rsa {
                    return Err(err(format!("`alg` {alg:?} does not fit an RSA key")));
                }
                let n = b64("n", jwk.n.as_deref())?;
                let e = b64("e", jwk.e.as_deref())?;
                (alg, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            "EC" => {
                let alg = match jwk.crv.as_deref() {
                    Some("P-256") => Algorithm::ES256,
                    Some("P-384") => Algorithm::ES384,
                    other => return Err(err(format!("unsupported EC curve {other:?}"))),
                };
                if pinned.is_some_and(|p| p != alg) {
                    return Err(err("`alg` does not fit the curve"));
                }
                let x = b64("x", jwk.x.as_deref())?;
                let y = b64("y", jwk.y.as_deref())?;
                if x.len() != y.len() {
                    return Err(err("EC coordinates have the wrong length"));
                }
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (alg, DecodingKey::from_ec_der(&point))
            }
            "OKP" => {
                if jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(err(format!("unsupported OKP curve {:?}", jwk.crv)));
                }
                if pinned.is_some_and(|p| p != Algorithm::EdDSA) {
                    return Err(err("`alg` does not fit an Ed25519 key"));
                }
                let x = b64("x", jwk.x.as_deref())?;
                (Algorithm::EdDSA, DecodingKey::from_ed_der(&x))
            }
            other => return Err(err(format!("unsupported `kty` {other:?}"))),
        };
        self.admit(jwk.kid.map(Into::into), alg, key)
    }

    /// Parses a JWKS document. Members that cannot be used are skipped with a
    /// warning; the rest serve. Members holding private key material are
    /// refused with one error event per document. Fails only when the
    /// document itself is not a key set, or no member is usable.
    pub(crate) fn jwks(&self, json: &[u8], origin: &str) -> Result<KeySet, KeyError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks =
            serde_json::from_slice(json).map_err(|e| err(format!("not a JWK set: {e}")))?;
        let mut keys = Vec::with_capacity(jwks.keys.len());
        let mut private = Vec::new();
        for (index, member) in jwks.keys.iter().enumerate() {
            let kid = member.get("kid").and_then(|k| k.as_str()).unwrap_or("");
            if has_private_material(member) {
                private.push(kid.to_owned());
                continue;
            }
            match self.jwk(member) {
                Ok(key) => keys.push(key),
                Err(why) => {
                    tracing::warn!(origin, index, kid, reason = %why, "skipping a key of the JWK set");
                }
            }
        }
        if !private.is_empty() {
            tracing::error!(
                origin,
                kids = ?private,
                "the JWK set publishes private or symmetric key material; those members are refused (rotate those keys)"
            );
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

    /// Builds a verifying key from a PEM public key (RSA, EC P-256/P-384 or
    /// Ed25519). RSA keys verify the configured RSA algorithm.
    pub(crate) fn pem(&self, pem: &[u8], kid: Option<&str>) -> Result<VerifyingKey, KeyError> {
        let kid = kid.map(Into::into);
        if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(err("a PEM private key: configure the public key only"));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return self.admit(kid, self.rsa_default, key);
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            let alg = match key.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => Algorithm::ES256,
                Ok(97) => Algorithm::ES384,
                _ => return Err(err("unsupported EC curve in PEM")),
            };
            return self.admit(kid, alg, key);
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return self.admit(kid, Algorithm::EdDSA, key);
        }
        Err(err(
            "not a PEM public key of a supported type (RSA, EC P-256/P-384, Ed25519)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[Algorithm]) -> KeyRules {
        KeyRules {
            allowed: allowed.to_vec(),
            rsa_default: Algorithm::RS256,
        }
    }

    const ALL: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    fn ec_jwk(kid: &str) -> serde_json::Value {
        serde_json::json!({"kty":"EC","crv":"P-256","kid":kid,
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])})
    }

    fn rsa_jwk(kid: &str, bytes: usize) -> serde_json::Value {
        serde_json::json!({"kty":"RSA","kid":kid,"n": URL_SAFE_NO_PAD.encode(vec![0xc1u8; bytes]),"e":"AQAB"})
    }

    #[test]
    fn tolerant_key_set() {
        let jwks = serde_json::json!({"keys": [
            ec_jwk("good"),
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            rsa_jwk("small", 128),
            {"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"},
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"X25519","kid":"x","x":"AA"},
            {"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","x":"AA"},
            "not an object",
            {"kty":"OKP","crv":"Ed25519","x": URL_SAFE_NO_PAD.encode([3u8; 32])},
        ]});
        let set = rules(ALL)
            .jwks(jwks.to_string().as_bytes(), "test")
            .unwrap();
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
        assert!(rules(ALL).jwks(br#"{"keys":[]}"#, "t").is_err());
        assert!(rules(ALL).jwks(b"[]", "t").is_err());
    }

    #[test]
    fn kidless_token_needs_a_single_fitting_key() {
        let jwks = serde_json::json!({"keys": [ec_jwk("a"), ec_jwk("b")]});
        let set = rules(ALL).jwks(jwks.to_string().as_bytes(), "t").unwrap();
        assert_eq!(
            set.select(None, Algorithm::ES256).unwrap_err(),
            NoKey::Unknown
        );
    }

    #[test]
    fn rsa_keys_without_alg_are_pinned_to_one_algorithm() {
        let all = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ];
        let key = rules(&all).jwk(&rsa_jwk("r", 256)).unwrap();
        assert_eq!(key.alg, Algorithm::RS256);
        let set = KeySet { keys: vec![key] };
        assert!(set.select(Some("r"), Algorithm::RS256).is_ok());
        for other in &all[1..] {
            assert_eq!(
                set.select(Some("r"), *other).unwrap_err(),
                NoKey::AlgorithmMismatch
            );
        }
        let ps = KeyRules {
            allowed: all.to_vec(),
            rsa_default: Algorithm::PS256,
        };
        assert_eq!(ps.jwk(&rsa_jwk("r", 256)).unwrap().alg, Algorithm::PS256);
        let mut labelled = rsa_jwk("r", 256);
        labelled["alg"] = "PS512".into();
        assert_eq!(rules(&all).jwk(&labelled).unwrap().alg, Algorithm::PS512);
    }

    #[test]
    fn private_material_is_refused() {
        for member in PRIVATE_MEMBERS {
            let mut jwk = ec_jwk("a");
            jwk[*member] = "AQAB".into();
            let e = rules(ALL).jwk(&jwk).unwrap_err();
            assert!(e.0.contains("private"), "{member}: {e}");
            let jwks = serde_json::json!({"keys": [jwk, ec_jwk("b")]});
            let set = rules(ALL).jwks(jwks.to_string().as_bytes(), "t").unwrap();
            assert_eq!(set.kids(), ["b"]);
        }
    }

    #[test]
    fn key_sizes() {
        let prepared = |key: DecodingKey, alg| rules(&[alg]).prepared(key, alg, None);
        let rsa =
            |bytes: usize| DecodingKey::from_rsa_raw_components(&vec![0xc1; bytes], &[1, 0, 1]);
        assert!(prepared(rsa(255), Algorithm::RS256).is_err());
        assert!(prepared(rsa(256), Algorithm::RS256).is_ok());
        assert!(prepared(rsa(1025), Algorithm::RS256).is_err());
        assert!(prepared(rsa(256), Algorithm::ES256).is_err());
        // PKCS#1 DER: SEQUENCE { INTEGER n, INTEGER e }.
        let der = |n: &[u8]| {
            let mut int = vec![0x02, 0x82];
            int.extend_from_slice(&(n.len() as u16).to_be_bytes());
            int.extend_from_slice(n);
            int.extend_from_slice(&[0x02, 0x03, 1, 0, 1]);
            let mut seq = vec![0x30, 0x82];
            seq.extend_from_slice(&(int.len() as u16).to_be_bytes());
            seq.extend_from_slice(&int);
            seq
        };
        assert_eq!(rsa_der_modulus_bits(&der(&[0x00, 0x80, 0, 0])), Some(24));
        assert!(
            prepared(
                DecodingKey::from_rsa_der(&der(&[0xc1; 128])),
                Algorithm::RS256
            )
            .is_err()
        );
        assert!(
            prepared(
                DecodingKey::from_rsa_der(&der(&[0xc1; 256])),
                Algorithm::RS256
            )
            .is_ok()
        );
        assert!(prepared(DecodingKey::from_rsa_der(b"\x30\x82\xff"), Algorithm::RS256).is_err());
        assert!(prepared(DecodingKey::from_secret(&[7; 31]), Algorithm::HS256).is_err());
        assert!(prepared(DecodingKey::from_secret(&[7; 32]), Algorithm::HS256).is_ok());
        assert!(prepared(DecodingKey::from_secret(&[7; 63]), Algorithm::HS512).is_err());
        assert!(prepared(DecodingKey::from_ec_der(&[4; 64]), Algorithm::ES256).is_err());
        assert!(prepared(DecodingKey::from_ed_der(&[4; 31]), Algorithm::EdDSA).is_err());
    }

    #[test]
    fn allowlist_filters_keys() {
        assert!(rules(&[Algorithm::RS256]).jwk(&ec_jwk("a")).is_err());
        assert!(rules(&[Algorithm::RS384]).jwk(&rsa_jwk("r", 256)).is_err());
        assert!(header_alg("none").is_none());
        assert_eq!(header_alg("Ed25519"), Some(Algorithm::EdDSA));
        assert!(header_alg("rs256").is_none());
        assert_eq!(bit_len(&[0, 0x01, 0]), 9);
        assert_eq!(bit_len(&[0, 0]), 0);
    }
}
