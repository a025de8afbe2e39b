//! Public keys parsed once per key-set load (aws-lc-rs `ParsedPublicKey`),
//! so that verifying a signature does not parse the key again, as
//! `jsonwebtoken` does on every call. HMAC keys are not prepared: they go
//! through `jsonwebtoken`.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// A key ready to verify signatures of one algorithm.
pub(crate) struct Prepared {
    key: ParsedPublicKey,
    /// The digest RSA and ECDSA sign, computed here so that aws-lc verifies
    /// the digest alone: its message API copies its hashing and key
    /// contexts on every call. `None` for Ed25519, which signs the message.
    digest: Option<&'static digest::Algorithm>,
}

type Algorithms = (
    &'static dyn VerificationAlgorithm,
    Option<&'static digest::Algorithm>,
);

fn algorithm(alg: Algorithm) -> Option<Algorithms> {
    use digest::{SHA256, SHA384, SHA512};
    Some(match alg {
        Algorithm::RS256 => (&sig::RSA_PKCS1_2048_8192_SHA256, Some(&SHA256)),
        Algorithm::RS384 => (&sig::RSA_PKCS1_2048_8192_SHA384, Some(&SHA384)),
        Algorithm::RS512 => (&sig::RSA_PKCS1_2048_8192_SHA512, Some(&SHA512)),
        Algorithm::PS256 => (&sig::RSA_PSS_2048_8192_SHA256, Some(&SHA256)),
        Algorithm::PS384 => (&sig::RSA_PSS_2048_8192_SHA384, Some(&SHA384)),
        Algorithm::PS512 => (&sig::RSA_PSS_2048_8192_SHA512, Some(&SHA512)),
        // JWS ECDSA signatures are the fixed-width `r ‖ s` (RFC 7518 §3.4).
        Algorithm::ES256 => (&sig::ECDSA_P256_SHA256_FIXED, Some(&SHA256)),
        Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED, Some(&SHA384)),
        Algorithm::EdDSA => (&sig::ED25519, None),
        _ => return None,
    })
}

/// A DER length (X.690 §8.1.3).
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let bytes = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
}

/// A DER INTEGER of the unsigned big-endian `value` (minimal encoding).
fn der_uint(out: &mut Vec<u8>, value: &[u8]) {
    let skip = value.iter().take_while(|b| **b == 0).count();
    let value = value.get(skip..).unwrap_or_default();
    let pad = value.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    der_len(out, value.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(value);
}

/// PKCS#1 `RSAPublicKey` (RFC 8017 §A.1.1) of a modulus and exponent.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_uint(&mut body, n);
    der_uint(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl Prepared {
    /// Parses `key` for `alg`; `None` for HMAC, or a key aws-lc-rs refuses
    /// (the caller then verifies through `jsonwebtoken`).
    pub(crate) fn new(alg: Algorithm, key: &DecodingKey) -> Option<Self> {
        let (algorithm, digest) = algorithm(alg)?;
        let parsed = match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                ParsedPublicKey::new(algorithm, rsa_public_key_der(n, e))
            }
            DecodingKeyKind::SecretOrDer(bytes) => ParsedPublicKey::new(algorithm, bytes),
        };
        let key = parsed.ok()?;
        Some(Self { key, digest })
    }

    /// Whether `signature` is a valid signature of `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.digest {
            // aws-lc-rs refuses a digest of another algorithm than the key's.
            Some(alg) => self
                .key
                .verify_digest_sig(&digest::digest(alg, message), signature)
                .is_ok(),
            None => self.key.verify_sig(message, signature).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal() {
        let mut out = Vec::new();
        der_uint(&mut out, &[0, 0, 0x7f]);
        assert_eq!(out, [0x02, 0x01, 0x7f]);
        let mut out = Vec::new();
        der_uint(&mut out, &[0x80]);
        assert_eq!(out, [0x02, 0x02, 0x00, 0x80]);
        let mut out = Vec::new();
        der_len(&mut out, 300);
        assert_eq!(out, [0x82, 0x01, 0x2c]);
        assert_eq!(
            rsa_public_key_der(&[0x01], &[0x03]),
            [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x03]
        );
    }
}
