//! Binding: a sender-constrained token (one with a `cnf` claim, RFC 7800) is
//! accepted only with a verified proof that its presenter holds the key it is
//! bound to. This step runs on every request, cache hits included, after the
//! token is verified and before it is handed to the application.
//!
//! - `cnf.jkt` (DPoP, RFC 9449): only with the `DPoP` scheme and a valid
//!   proof by that key ([`dpop`]); as a bearer token it is refused (§7.2).
//! - Any other binding (`x5t#S256` certificates, RFC 8705; RFC 7800 keys)
//!   cannot be verified yet, so such a token is refused: a bound token is
//!   never accepted as a bearer token (RFC 8705 §3).
//! - Members of `cnf` that bind nothing are ignored.
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

pub(crate) mod dpop;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::dpop::{Dpop, Presented};
use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidToken};
use crate::syntax::Scheme;

/// `cnf` members that bind a token to something this crate cannot verify
/// yet: certificates (RFC 8705 §3.1) and RFC 7800 §3 keys.
const UNVERIFIABLE: &[&str] = &["x5t#S256", "jwk", "jwe", "jku", "kid"];

/// What a passed binding adds to the response.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// A fresh DPoP nonce (`DPoP-Nonce`).
    pub(crate) nonce: Option<String>,
}

/// The binding decision.
pub(crate) enum Bound {
    Done(Result<Extra, AuthError>),
    /// Waiting on the replay store.
    Pending(BoxFuture<'static, Result<Extra, AuthError>>),
}

/// Checks that `token`, presented with `scheme`, may be used by this sender.
/// `presented` is the DPoP request data (with the `DPoP` scheme only);
/// `dpop` the guard's DPoP step, if DPoP is on.
pub(crate) fn check(
    token: &AccessToken,
    scheme: Scheme,
    presented: Option<&Presented>,
    dpop: Option<&Dpop>,
) -> Bound {
    let refuse = |reason| Bound::Done(Err(AuthError::invalid_token(reason)));
    let cnf = token.claims.cnf.as_ref();
    if cnf.is_some_and(|c| UNVERIFIABLE.iter().any(|m| c.contains_key(*m))) {
        return refuse(InvalidToken::SenderConstrained);
    }
    let jkt = cnf.and_then(|c| c.get("jkt"));
    match (scheme, jkt, dpop) {
        // RFC 9449 §7.2: a DPoP-bound token is not a bearer token; nor is
        // one whose `cnf` binds it to anything else.
        (Scheme::Bearer, _, _) if cnf.is_some() => refuse(InvalidToken::SenderConstrained),
        (Scheme::Bearer, _, Some(dpop)) if dpop.required => refuse(InvalidToken::DpopRequired),
        (Scheme::Bearer, _, _) => Bound::Done(Ok(Extra::default())),
        (Scheme::Dpop, Some(serde_json::Value::String(jkt)), Some(dpop)) => {
            let Some(presented) = presented else {
                return Bound::Done(Err(AuthError::invalid_dpop_proof(
                    crate::error::InvalidProof::Missing,
                )));
            };
            let proven = match dpop.check(jkt, presented) {
                Ok(proven) => proven,
                Err(e) => return Bound::Done(Err(e)),
            };
            let nonce = proven.nonce.clone();
            let mut record = dpop
                .record(&proven)
                .map(move |r| r.map(|()| Extra { nonce }))
                .boxed();
            // The in-memory store answers at once.
            match (&mut record).now_or_never() {
                Some(done) => Bound::Done(done),
                None => Bound::Pending(record),
            }
        }
        (Scheme::Dpop, Some(serde_json::Value::String(_)), None) => {
            refuse(InvalidToken::SenderConstrained)
        }
        (Scheme::Dpop, Some(_), _) => refuse(InvalidToken::InvalidClaim("cnf")),
        (Scheme::Dpop, None, _) => refuse(InvalidToken::NotDpopBound),
    }
}
