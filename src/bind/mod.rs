//! Binding: a sender-constrained token (one with a `cnf` claim, RFC 7800) is
//! accepted only with a verified proof that its presenter holds the key it is
//! bound to. This step runs on every request, cache hits included, after the
//! token is verified and before it is handed to the application.
//!
//! No binding method is verified yet (DPoP, RFC 9449, and mutual-TLS
//! certificates, RFC 8705, will be), so any token with `cnf` is refused: a
//! bound token must never be accepted as a bearer token (RFC 9449 §7.2,
//! RFC 8705 §3).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tokenguard::testing::TestIssuer;
//! let issuer = TestIssuer::new();
//! let guard = issuer.guard("https://api");
//! let bound = issuer
//!     .token()
//!     .audience("https://api")
//!     .claim("cnf", serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}))
//!     .mint();
//! assert!(guard.verify(&bound).await.is_err());
//! # }
//! ```

use http::Request;

use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidToken};

/// Checks that `token` may be used by the sender of `req`.
pub(crate) fn check<B>(token: &AccessToken, _req: Option<&Request<B>>) -> Result<(), AuthError> {
    if token.claims.cnf.is_some() {
        return Err(AuthError::invalid_token(InvalidToken::SenderConstrained));
    }
    Ok(())
}
