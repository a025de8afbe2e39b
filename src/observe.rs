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

use http::Response;

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
