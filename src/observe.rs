//! The single place where refusals are observed: every refused request, from
//! the guard's layer, a scope layer or an extractor, passes through
//! [`reject`], which logs it (reason only, never the token) and renders it.
//! Metrics will be counted here.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tokenguard::testing::TestIssuer;
//! // Refusals are `DEBUG` events of target `tokenguard` with status and reason.
//! let guard = TestIssuer::new().guard("https://api");
//! assert!(guard.verify("not-a-token").await.is_err());
//! # }
//! ```

use http::{Response, StatusCode};

use crate::challenge::{ChallengeBody, ChallengeConfig};
use crate::error::{AuthError, AuthErrorKind};

/// Logs a refusal and renders its response.
pub(crate) fn reject<B: ChallengeBody>(err: &AuthError, config: &ChallengeConfig) -> Response<B> {
    if let AuthErrorKind::Misconfigured(why) = err.kind() {
        tracing::error!(why, "tokenguard misconfigured");
    } else {
        tracing::debug!(status = err.status().as_u16(), reason = %err, "request refused");
    }
    err.to_response(config)
}

/// Logs and renders the refusal of a request body larger than `limit` bytes
/// (413), by a layer that must read the body to decide.
pub(crate) fn body_too_large<B: ChallengeBody>(limit: usize) -> Response<B> {
    tracing::debug!(status = 413, limit, "request refused: body too large");
    let mut res = Response::new(B::from_bytes(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    res
}
