//! Binding: a sender-constrained token (one with a `cnf` claim, RFC 7800) is
//! accepted only with a verified proof that its presenter holds the key it is
//! bound to. This step runs on every request, cache hits included, after the
//! token is verified and before it is handed to the application.
//!
//! - `cnf.jkt` (DPoP, RFC 9449): only with the `DPoP` scheme and a valid
//!   proof by that key ([`dpop`]); as a bearer token it is refused (§7.2).
//! - `cnf["x5t#S256"]` (RFC 8705): only from a request authenticated by that
//!   client certificate ([`mtls`]), whatever the scheme; both bindings are
//!   checked when a token has both.
//! - Without the step a binding needs (DPoP or mTLS not configured), and for
//!   RFC 7800 keys (`jwk`, `jwe`, `jku`, `kid`), the token is refused: a
//!   bound token is never accepted as a bearer token.
//! - Other members of `cnf` next to a verified binding are ignored.
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
pub(crate) mod mtls;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::dpop::Dpop;
use self::mtls::{ClientCertificate, Mtls};
use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidProof, InvalidToken};
use crate::syntax::Scheme;

/// RFC 7800 §3 `cnf` members: proof-of-possession keys this crate does not
/// verify. A token bound so is refused.
const UNVERIFIABLE: &[&str] = &["jwk", "jwe", "jku", "kid"];
/// RFC 8705 §3.1.
const X5T: &str = "x5t#S256";

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

/// The binding steps the guard runs.
#[derive(Default, Clone)]
pub(crate) struct Binders {
    pub(crate) dpop: Option<std::sync::Arc<Dpop>>,
    pub(crate) mtls: Option<std::sync::Arc<Mtls>>,
}

/// What the request brought for the binding step, taken from it before
/// anything waits.
#[derive(Default)]
pub(crate) struct Presented {
    /// With the `DPoP` scheme: the proof and what it must match.
    pub(crate) dpop: Option<dpop::Presented>,
    /// With mTLS on: the client certificate, if any.
    pub(crate) cert: Option<ClientCertificate>,
}

/// Checks that `token`, presented with `scheme`, may be used by this sender.
pub(crate) fn check(
    token: &AccessToken,
    scheme: Scheme,
    presented: &Presented,
    binders: &Binders,
) -> Bound {
    let refuse = |reason| Bound::Done(Err(AuthError::invalid_token(reason)));
    let cnf = token.claims.cnf.as_ref();
    let member = |name: &str| cnf.and_then(|c| c.get(name));
    if cnf.is_some_and(|c| UNVERIFIABLE.iter().any(|m| c.contains_key(*m))) {
        return refuse(InvalidToken::SenderConstrained);
    }
    // RFC 8705 §3: a certificate binding is checked whatever the scheme.
    match (&binders.mtls, member(X5T)) {
        (Some(mtls), x5t) => {
            if let Err(e) = mtls::check(mtls, x5t, presented.cert.as_ref()) {
                return Bound::Done(Err(e));
            }
        }
        (None, Some(_)) => return refuse(InvalidToken::SenderConstrained),
        (None, None) => {}
    }
    let jkt = member("jkt");
    match scheme {
        // RFC 9449 §7.2: a DPoP-bound token is not a bearer token; nor is one
        // whose `cnf` names no binding verified here.
        Scheme::Bearer if jkt.is_some() => refuse(InvalidToken::SenderConstrained),
        Scheme::Bearer if cnf.is_some() && member(X5T).is_none() => {
            refuse(InvalidToken::SenderConstrained)
        }
        Scheme::Bearer if binders.dpop.as_ref().is_some_and(|d| d.required) => {
            refuse(InvalidToken::DpopRequired)
        }
        Scheme::Bearer => Bound::Done(Ok(Extra::default())),
        Scheme::Dpop => {
            let (Some(dpop), Some(jkt)) = (&binders.dpop, jkt) else {
                return refuse(InvalidToken::NotDpopBound);
            };
            let serde_json::Value::String(jkt) = jkt else {
                return refuse(InvalidToken::InvalidClaim("cnf"));
            };
            let Some(input) = &presented.dpop else {
                return Bound::Done(Err(AuthError::invalid_dpop_proof(InvalidProof::Missing)));
            };
            let proven = match dpop.check(jkt, input) {
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
    }
}
