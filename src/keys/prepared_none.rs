//! Without aws-lc-rs, keys are not prepared: every signature is verified
//! through `jsonwebtoken`'s RustCrypto backend.

use jsonwebtoken::{Algorithm, DecodingKey};

/// Never made: see [`Prepared::new`].
pub(crate) enum Prepared {}

impl Prepared {
    /// Always `None`.
    pub(crate) fn new(_alg: Algorithm, _key: &DecodingKey) -> Option<Self> {
        None
    }

    /// Unreachable: no value exists.
    pub(crate) fn verify(&self, _message: &[u8], _signature: &[u8]) -> bool {
        match *self {}
    }
}
