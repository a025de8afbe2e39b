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

use http::{HeaderMap, Response, StatusCode};

use crate::challenge::{ChallengeBody, ChallengeConfig, grpc_content_type};
use crate::error::{AuthError, AuthErrorKind};

/// Logs a refusal and renders its response.
pub(crate) fn reject<B: ChallengeBody>(err: &AuthError, config: &ChallengeConfig) -> Response<B> {
    log(err);
    err.to_response(config)
}

/// Logs a refusal of a request with these headers and renders its response:
/// a gRPC answer to a gRPC request, HTTP otherwise.
pub(crate) fn reject_request<B: ChallengeBody>(
    err: &AuthError,
    config: &ChallengeConfig,
    headers: &HeaderMap,
) -> Response<B> {
    match grpc_content_type(headers) {
        Some(content_type) => {
            log(err);
            err.to_grpc_response(config, content_type.clone())
        }
        None => reject(err, config),
    }
}

fn log(err: &AuthError) {
    if let AuthErrorKind::Misconfigured(why) = err.kind() {
        tracing::error!(why, "tokenguard misconfigured");
    } else {
        tracing::debug!(status = err.status().as_u16(), reason = %err, "request refused");
    }
}

/// Logs and renders the refusal of a request body larger than `limit` bytes
/// (413), by a layer that must read the body to decide.
pub(crate) fn body_too_large<B: ChallengeBody>(limit: usize) -> Response<B> {
    tracing::debug!(status = 413, limit, "request refused: body too large");
    let mut res = Response::new(B::from_bytes(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    res
}
