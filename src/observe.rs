//! The single place where the outcome of a request is observed: every
//! refused request, from the guard's layer, a scope layer or an extractor,
//! passes through [`reject`], which logs it (reason only, never the token),
//! counts it and renders it; every request the layer lets through is counted
//! by [`accepted`] or [`anonymous`]. The guard's span per authentication
//! ([`span`]) gets its `outcome` and `reason` here too, from the same
//! vocabulary as the metric (`crate::telemetry`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tokenguard::testing::TestIssuer;
//! // Refusals are `DEBUG` events of target `tokenguard::observe` with
//! // status, outcome and reason.
//! let guard = TestIssuer::new().guard("https://api");
//! assert!(guard.verify("not-a-token").await.is_err());
//! # }
//! ```

use http::{HeaderMap, Response, StatusCode};
use tracing::Span;
use tracing::field::Empty;

use crate::challenge::{ChallengeBody, ChallengeConfig, grpc_content_type};
use crate::error::{AuthError, AuthErrorKind, InvalidProof, InvalidRequest, InvalidToken};
use crate::telemetry::{self, Decision};

/// Logs a refusal, counts it and renders its response.
pub(crate) fn reject<B: ChallengeBody>(err: &AuthError, config: &ChallengeConfig) -> Response<B> {
    log(err);
    err.to_response(config)
}

/// Logs and counts a refusal of a request with these headers and renders
/// its response: a gRPC answer to a gRPC request, HTTP otherwise.
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

/// The one log line and count of every refusal.
fn log(err: &AuthError) {
    let decision = decision(err);
    telemetry::request(decision);
    if let AuthErrorKind::Misconfigured(why) = err.kind() {
        tracing::error!(why, "tokenguard misconfigured");
    } else {
        tracing::debug!(
            status = err.status().as_u16(),
            outcome = decision.outcome(),
            reason = decision.reason(),
            description = %err,
            "request refused"
        );
    }
}

/// Logs and renders the refusal of a request body larger than `limit` bytes
/// (413), by a layer that must read the body to decide.
pub(crate) fn body_too_large<B: ChallengeBody>(limit: usize) -> Response<B> {
    let decision = &telemetry::BODY_TOO_LARGE;
    telemetry::request(decision);
    tracing::debug!(
        status = 413,
        outcome = decision.outcome(),
        reason = decision.reason(),
        limit,
        "request refused: body too large"
    );
    let mut res = Response::new(B::from_bytes(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    res
}

/// Counts a request the guard's layer let through with a verified token.
pub(crate) fn accepted() {
    telemetry::request(&telemetry::ACCEPTED);
}

/// Counts a request without a token that an optional layer let through,
/// and closes its span so.
pub(crate) fn anonymous(span: &Span) {
    telemetry::request(&telemetry::ANONYMOUS);
    record(span, &telemetry::ANONYMOUS);
}

/// The span of one authentication (target `tokenguard`, `DEBUG`). Its
/// fields are filled in when the decision is made: `outcome` and `reason`
/// (the labels of `tokenguard_requests_total`) and, for an accepted token,
/// `issuer`: the configured issuer that verified it.
pub(crate) fn span() -> Span {
    tracing::debug_span!(
        target: "tokenguard",
        "authenticate",
        issuer = Empty,
        outcome = Empty,
        reason = Empty
    )
}

/// Records an accepted token on its span. `issuer` must be configuration
/// (the issuer whose rules verified the token), never read from a token.
pub(crate) fn span_accepted(span: &Span, issuer: Option<&str>) {
    if let Some(issuer) = issuer {
        span.record("issuer", issuer);
    }
    record(span, &telemetry::ACCEPTED);
}

/// Records a refusal on its span (counted by [`reject`], when answered).
pub(crate) fn span_refused(span: &Span, err: &AuthError) {
    record(span, decision(err));
}

fn record(span: &Span, decision: &Decision) {
    span.record("outcome", decision.outcome());
    span.record("reason", decision.reason());
}

/// The (`outcome`, `reason`) of a refusal: a fixed pair per kind, so that
/// no label or field ever carries request data.
pub(crate) fn decision(err: &AuthError) -> &'static Decision {
    use telemetry as t;
    match err.kind() {
        AuthErrorKind::MissingToken => &t::MISSING_TOKEN,
        AuthErrorKind::InvalidRequest(r) => match r {
            InvalidRequest::SeveralAuthorizationHeaders => {
                &t::REQUEST_SEVERAL_AUTHORIZATION_HEADERS
            }
            InvalidRequest::SeveralCredentials => &t::REQUEST_SEVERAL_CREDENTIALS,
            InvalidRequest::MalformedCredentials => &t::REQUEST_MALFORMED_CREDENTIALS,
            InvalidRequest::MalformedClientCertificate => &t::REQUEST_MALFORMED_CLIENT_CERTIFICATE,
            InvalidRequest::McpHeaderMismatch => &t::REQUEST_MCP_HEADER_MISMATCH,
            InvalidRequest::UnreadableMessage => &t::REQUEST_UNREADABLE_MESSAGE,
        },
        AuthErrorKind::InvalidToken(r) => match r {
            InvalidToken::Malformed => &t::TOKEN_MALFORMED,
            InvalidToken::TooLarge => &t::TOKEN_TOO_LARGE,
            InvalidToken::UnsupportedAlgorithm => &t::TOKEN_UNSUPPORTED_ALGORITHM,
            InvalidToken::WrongType => &t::TOKEN_WRONG_TYPE,
            InvalidToken::UnsupportedCritical => &t::TOKEN_UNSUPPORTED_CRITICAL,
            InvalidToken::UnknownKey => &t::TOKEN_UNKNOWN_KEY,
            InvalidToken::BadSignature => &t::TOKEN_BAD_SIGNATURE,
            InvalidToken::MissingClaim(_) => &t::TOKEN_MISSING_CLAIM,
            InvalidToken::InvalidClaim(_) => &t::TOKEN_INVALID_CLAIM,
            InvalidToken::WrongIssuer => &t::TOKEN_WRONG_ISSUER,
            InvalidToken::WrongAudience => &t::TOKEN_WRONG_AUDIENCE,
            InvalidToken::Expired => &t::TOKEN_EXPIRED,
            InvalidToken::NotYetValid => &t::TOKEN_NOT_YET_VALID,
            InvalidToken::IssuedInTheFuture => &t::TOKEN_ISSUED_IN_THE_FUTURE,
            InvalidToken::LifetimeTooLong => &t::TOKEN_LIFETIME_TOO_LONG,
            InvalidToken::SenderConstrained => &t::TOKEN_SENDER_CONSTRAINED,
            InvalidToken::Inactive => &t::TOKEN_INACTIVE,
            InvalidToken::NotDpopBound => &t::TOKEN_NOT_DPOP_BOUND,
            InvalidToken::DpopKeyMismatch => &t::TOKEN_DPOP_KEY_MISMATCH,
            InvalidToken::DpopRequired => &t::TOKEN_DPOP_REQUIRED,
            InvalidToken::CertificateMismatch => &t::TOKEN_CERTIFICATE_MISMATCH,
            InvalidToken::CertificateRequired => &t::TOKEN_CERTIFICATE_REQUIRED,
        },
        AuthErrorKind::InvalidDpopProof(r) => match r {
            InvalidProof::Missing => &t::PROOF_MISSING,
            InvalidProof::Several => &t::PROOF_SEVERAL,
            InvalidProof::Malformed => &t::PROOF_MALFORMED,
            InvalidProof::TooLarge => &t::PROOF_TOO_LARGE,
            InvalidProof::WrongType => &t::PROOF_WRONG_TYPE,
            InvalidProof::UnsupportedAlgorithm => &t::PROOF_UNSUPPORTED_ALGORITHM,
            InvalidProof::PrivateKey => &t::PROOF_PRIVATE_KEY,
            InvalidProof::InvalidKey => &t::PROOF_INVALID_KEY,
            InvalidProof::BadSignature => &t::PROOF_BAD_SIGNATURE,
            InvalidProof::WrongMethod => &t::PROOF_WRONG_METHOD,
            InvalidProof::WrongUri => &t::PROOF_WRONG_URI,
            InvalidProof::IssuedInTheFuture => &t::PROOF_ISSUED_IN_THE_FUTURE,
            InvalidProof::Expired => &t::PROOF_EXPIRED,
            InvalidProof::InvalidJti => &t::PROOF_INVALID_JTI,
            InvalidProof::WrongTokenHash => &t::PROOF_WRONG_TOKEN_HASH,
            InvalidProof::Replayed => &t::PROOF_REPLAYED,
        },
        AuthErrorKind::UseDpopNonce { .. } => &t::USE_DPOP_NONCE,
        AuthErrorKind::InsufficientScope { .. } => &t::INSUFFICIENT_SCOPE,
        AuthErrorKind::InsufficientUserAuthentication { .. } => {
            &t::INSUFFICIENT_USER_AUTHENTICATION
        }
        AuthErrorKind::KeysUnavailable { .. } => &t::KEYS_UNAVAILABLE,
        AuthErrorKind::IntrospectionUnavailable { .. } => &t::INTROSPECTION_UNAVAILABLE,
        AuthErrorKind::ReplayCheckUnavailable { .. } => &t::REPLAY_STORE_UNAVAILABLE,
        AuthErrorKind::Misconfigured(_) => &t::MISCONFIGURED,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Each kind has a pair of its own (the unit-less kinds share theirs
    /// with nothing), and the outcome is the RFC error code where one exists.
    #[test]
    fn every_kind_has_its_pair() {
        let d = |kind| decision(&AuthError::new(kind));
        let token = |r| d(AuthErrorKind::InvalidToken(r));
        let proof = |r| d(AuthErrorKind::InvalidDpopProof(r));
        let wait = Duration::from_secs(1);
        let cases: Vec<(&Decision, (&str, &str))> = vec![
            (d(AuthErrorKind::MissingToken), ("missing_token", "none")),
            (
                d(AuthErrorKind::InvalidRequest(
                    InvalidRequest::SeveralCredentials,
                )),
                ("invalid_request", "several_credentials"),
            ),
            (token(InvalidToken::Expired), ("invalid_token", "expired")),
            (
                token(InvalidToken::MissingClaim("exp")),
                ("invalid_token", "missing_claim"),
            ),
            (
                token(InvalidToken::BadSignature),
                ("invalid_token", "bad_signature"),
            ),
            (
                proof(InvalidProof::Expired),
                ("invalid_dpop_proof", "expired"),
            ),
            (
                proof(InvalidProof::Replayed),
                ("invalid_dpop_proof", "replayed"),
            ),
            (
                d(AuthErrorKind::UseDpopNonce { nonce: "n".into() }),
                ("use_dpop_nonce", "none"),
            ),
            (
                d(AuthErrorKind::InsufficientScope {
                    required: "admin".into(),
                }),
                ("insufficient_scope", "none"),
            ),
            (
                d(AuthErrorKind::KeysUnavailable { retry_after: wait }),
                ("unavailable", "keys"),
            ),
            (
                d(AuthErrorKind::IntrospectionUnavailable { retry_after: wait }),
                ("unavailable", "introspection"),
            ),
            (
                d(AuthErrorKind::ReplayCheckUnavailable { retry_after: wait }),
                ("unavailable", "replay_store"),
            ),
            (
                d(AuthErrorKind::Misconfigured("x")),
                ("misconfigured", "none"),
            ),
        ];
        for (got, (outcome, reason)) in cases {
            assert_eq!((got.outcome(), got.reason()), (outcome, reason));
        }
        for err in [
            AuthError::invalid_token(InvalidToken::Expired),
            AuthError::invalid_request(InvalidRequest::MalformedCredentials),
            AuthError::invalid_dpop_proof(InvalidProof::Missing),
            AuthError::insufficient_scope("x"),
        ] {
            assert_eq!(Some(decision(&err).outcome()), err.error_code());
        }
    }
}
