//! Stateless DPoP server nonces (RFC 9449 §8–9): a nonce is a timestamp and
//! its HMAC-SHA-256 under a secret that every replica shares, so that any
//! replica accepts the nonce another one issued without shared state.
//! Rotation: a previous secret keeps verifying nonces until they expire.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a nonce.
const MAC_LEN: usize = 16;
/// Domain separation of the MAC input.
const CONTEXT: &[u8] = b"tokenguard dpop nonce v1\0";

/// Server nonces for DPoP proofs, given to
/// [`DpopConfig::nonces`](crate::DpopConfig::nonces).
///
/// ```
/// use std::time::Duration;
/// use tokenguard::NonceConfig;
/// let nonces = NonceConfig::new(b"0123456789abcdef0123456789abcdef".to_vec())
///     .unwrap()
///     .lifetime(Duration::from_secs(300));
/// # let _ = nonces;
/// ```
#[derive(Clone)]
pub struct NonceConfig {
    pub(crate) secret: Vec<u8>,
    pub(crate) previous: Option<Vec<u8>>,
    pub(crate) lifetime: Duration,
}

/// A nonce secret shorter than 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakSecret;

impl std::fmt::Display for WeakSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a DPoP nonce secret must be at least 32 bytes")
    }
}

impl std::error::Error for WeakSecret {}

impl NonceConfig {
    /// Nonces authenticated with `secret` (at least 32 random bytes, the same
    /// on every replica), valid for 5 minutes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, WeakSecret> {
        let secret = secret.into();
        if secret.len() < 32 {
            return Err(WeakSecret);
        }
        Ok(Self {
            secret,
            previous: None,
            lifetime: Duration::from_secs(300),
        })
    }

    /// The secret being rotated out: nonces it made stay valid until they
    /// expire.
    pub fn previous_secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, WeakSecret> {
        let secret = secret.into();
        if secret.len() < 32 {
            return Err(WeakSecret);
        }
        self.previous = Some(secret);
        Ok(self)
    }

    /// How long a nonce is accepted (default 5 min). A fresh one is offered
    /// in `DPoP-Nonce` once half of it has passed.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(Duration::from_secs(2));
        self
    }
}

impl std::fmt::Debug for NonceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceConfig")
            .field("lifetime", &self.lifetime)
            .field("rotating", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// What a nonce in a proof is worth.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Valid; `refresh`: past half its life, offer a new one.
    Valid { refresh: bool },
    /// Missing, forged, expired or from the future.
    Invalid,
}

fn mac(secret: &[u8], ts: u64) -> Option<[u8; MAC_LEN]> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    m.update(CONTEXT);
    m.update(&ts.to_be_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(full.get(..MAC_LEN)?);
    Some(out)
}

impl NonceConfig {
    /// A nonce made at `now_secs`.
    pub(crate) fn issue(&self, now_secs: u64) -> String {
        let mut raw = [0u8; 8 + MAC_LEN];
        let (ts, tag) = raw.split_at_mut(8);
        ts.copy_from_slice(&now_secs.to_be_bytes());
        if let Some(m) = mac(&self.secret, now_secs) {
            tag.copy_from_slice(&m);
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks `nonce` at `now_secs`.
    pub(crate) fn check(&self, nonce: Option<&str>, now_secs: u64) -> NonceCheck {
        let Some(raw) = nonce.and_then(|n| URL_SAFE_NO_PAD.decode(n).ok()) else {
            return NonceCheck::Invalid;
        };
        let Some((ts, tag)) = raw.split_at_checked(8) else {
            return NonceCheck::Invalid;
        };
        let (Ok(ts), true) = (<[u8; 8]>::try_from(ts), tag.len() == MAC_LEN) else {
            return NonceCheck::Invalid;
        };
        let ts = u64::from_be_bytes(ts);
        let authentic = |secret: &[u8]| {
            let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            m.update(CONTEXT);
            m.update(&ts.to_be_bytes());
            // Constant-time comparison of the truncated tag.
            m.verify_truncated_left(tag).is_ok()
        };
        let genuine = authentic(&self.secret) || self.previous.as_deref().is_some_and(authentic);
        let lifetime = self.lifetime.as_secs();
        // Two seconds of tolerance for replicas whose clocks differ.
        if !genuine || ts > now_secs.saturating_add(2) || now_secs.saturating_sub(ts) >= lifetime {
            return NonceCheck::Invalid;
        }
        NonceCheck::Valid {
            refresh: now_secs.saturating_sub(ts) >= lifetime / 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: u8) -> NonceConfig {
        NonceConfig::new(vec![secret; 32]).unwrap()
    }

    #[test]
    fn nonces_verify_until_they_expire() {
        let c = config(1).lifetime(Duration::from_secs(100));
        let n = c.issue(1000);
        assert_eq!(
            c.check(Some(&n), 1000),
            NonceCheck::Valid { refresh: false }
        );
        assert_eq!(
            c.check(Some(&n), 1049),
            NonceCheck::Valid { refresh: false }
        );
        assert_eq!(c.check(Some(&n), 1050), NonceCheck::Valid { refresh: true });
        assert_eq!(c.check(Some(&n), 1100), NonceCheck::Invalid);
        assert_eq!(c.check(Some(&n), 990), NonceCheck::Invalid);
        assert_eq!(c.check(None, 1000), NonceCheck::Invalid);
        assert_eq!(c.check(Some("garbage"), 1000), NonceCheck::Invalid);
        // Another replica with the same secret accepts it; another secret does not.
        assert!(matches!(
            config(1).check(Some(&n), 1001),
            NonceCheck::Valid { .. }
        ));
        assert_eq!(config(2).check(Some(&n), 1001), NonceCheck::Invalid);
        // A changed timestamp breaks the MAC.
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[7] ^= 1;
        assert_eq!(
            c.check(Some(&URL_SAFE_NO_PAD.encode(raw)), 1000),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn rotation_keeps_old_nonces_valid() {
        let old = config(1);
        let n = old.issue(1000);
        let rotated = config(2).previous_secret(vec![1; 32]).unwrap();
        assert!(matches!(
            rotated.check(Some(&n), 1001),
            NonceCheck::Valid { .. }
        ));
        assert!(matches!(
            rotated.check(Some(&rotated.issue(1001)), 1001),
            NonceCheck::Valid { .. }
        ));
        assert!(NonceConfig::new(vec![0; 31]).is_err());
    }
}
