//! Metrics: every name, label and label value tokenguard records, and the
//! functions that record them, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`; any exporter plugs in: Prometheus, StatsD, …).
//! Without the feature the record functions are empty and compile to nothing.
//!
//! A leaf, so that every step can record: key fetches in `keys`, caches and
//! introspection in `verify`, DPoP in `bind`, and the outcome of each request
//! in `observe`, which maps a refusal to its [`Decision`] (this module cannot
//! name `error`, a module of its own level).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tokenguard::testing::TestIssuer;
//! use tower::ServiceExt;
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(TestIssuer::new().guard("https://api").layer());
//! let refused = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(refused.status(), 401);
//! // With the `metrics` feature and a recorder installed, this request counts
//! // as tokenguard_requests_total{outcome="missing_token",reason="none"}.
//! # }
//! ```
//!
//! The table (also in the README, section "Metrics and tracing"):
//!
#![doc = include_str!("metrics.md")]

#[cfg(feature = "metrics")]
#[macro_use]
mod record;
#[cfg(not(feature = "metrics"))]
#[macro_use]
#[path = "record_none.rs"]
mod record;

#[cfg(feature = "redis")]
pub(crate) use record::redis_call;
pub(crate) use record::{
    Decision, describe, dpop_nonce_challenge, dpop_replay, introspection, introspection_cache,
    key_fetch, request, shared_introspection_cache, token_cache,
};

/// What one call of a `RedisStore` came to (the `result` label).
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisCall {
    /// Redis answered.
    Ok,
    /// Redis failed or did not answer in time.
    Error,
    /// Not made: the circuit breaker is open.
    Skipped,
}

/// What one introspection call came to (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Introspected {
    /// An active answer the policy accepted.
    Active,
    /// `active: false`, or an answer the policy refused.
    Inactive,
    /// No usable answer: unreachable, slow, failing, garbage.
    Error,
}

impl Introspected {
    /// The label value (also the `result` field of the trace event).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Error => "error",
        }
    }
}

/// The `result` label of a key-set fetch (also the trace event's field).
pub(crate) fn fetch_result(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

// Every (`outcome`, `reason`) pair of `tokenguard_requests_total`, each with
// its series key made at compile time: counting a request allocates nothing.
decisions! {
    /// A verified token; its binding, if any, checked.
    ACCEPTED: "accepted", "none";
    /// No token, let through by `optional_layer`.
    ANONYMOUS: "anonymous", "none";
    /// No token where one is required.
    MISSING_TOKEN: "missing_token", "none";

    /// `InvalidRequest::SeveralAuthorizationHeaders`.
    REQUEST_SEVERAL_AUTHORIZATION_HEADERS: "invalid_request", "several_authorization_headers";
    /// `InvalidRequest::SeveralCredentials`.
    REQUEST_SEVERAL_CREDENTIALS: "invalid_request", "several_credentials";
    /// `InvalidRequest::MalformedCredentials`.
    REQUEST_MALFORMED_CREDENTIALS: "invalid_request", "malformed_credentials";
    /// `InvalidRequest::MalformedClientCertificate`.
    REQUEST_MALFORMED_CLIENT_CERTIFICATE: "invalid_request", "malformed_client_certificate";
    /// `InvalidRequest::McpHeaderMismatch`.
    REQUEST_MCP_HEADER_MISMATCH: "invalid_request", "mcp_header_mismatch";
    /// `InvalidRequest::UnreadableMessage`.
    REQUEST_UNREADABLE_MESSAGE: "invalid_request", "unreadable_message";
    /// A body over the limit of a layer that reads it to decide (413).
    BODY_TOO_LARGE: "body_too_large", "none";

    /// `InvalidToken::Malformed`.
    TOKEN_MALFORMED: "invalid_token", "malformed";
    /// `InvalidToken::TooLarge`.
    TOKEN_TOO_LARGE: "invalid_token", "too_large";
    /// `InvalidToken::UnsupportedAlgorithm`.
    TOKEN_UNSUPPORTED_ALGORITHM: "invalid_token", "unsupported_algorithm";
    /// `InvalidToken::WrongType`.
    TOKEN_WRONG_TYPE: "invalid_token", "wrong_type";
    /// `InvalidToken::UnsupportedCritical`.
    TOKEN_UNSUPPORTED_CRITICAL: "invalid_token", "unsupported_critical";
    /// `InvalidToken::UnknownKey`.
    TOKEN_UNKNOWN_KEY: "invalid_token", "unknown_key";
    /// `InvalidToken::BadSignature`.
    TOKEN_BAD_SIGNATURE: "invalid_token", "bad_signature";
    /// `InvalidToken::MissingClaim` (whichever claim).
    TOKEN_MISSING_CLAIM: "invalid_token", "missing_claim";
    /// `InvalidToken::InvalidClaim` (whichever claim).
    TOKEN_INVALID_CLAIM: "invalid_token", "invalid_claim";
    /// `InvalidToken::WrongIssuer`.
    TOKEN_WRONG_ISSUER: "invalid_token", "wrong_issuer";
    /// `InvalidToken::WrongAudience`.
    TOKEN_WRONG_AUDIENCE: "invalid_token", "wrong_audience";
    /// `InvalidToken::Expired`.
    TOKEN_EXPIRED: "invalid_token", "expired";
    /// `InvalidToken::NotYetValid`.
    TOKEN_NOT_YET_VALID: "invalid_token", "not_yet_valid";
    /// `InvalidToken::IssuedInTheFuture`.
    TOKEN_ISSUED_IN_THE_FUTURE: "invalid_token", "issued_in_the_future";
    /// `InvalidToken::LifetimeTooLong`.
    TOKEN_LIFETIME_TOO_LONG: "invalid_token", "lifetime_too_long";
    /// `InvalidToken::SenderConstrained`.
    TOKEN_SENDER_CONSTRAINED: "invalid_token", "sender_constrained";
    /// `InvalidToken::Inactive`.
    TOKEN_INACTIVE: "invalid_token", "inactive";
    /// `InvalidToken::NotDpopBound`.
    TOKEN_NOT_DPOP_BOUND: "invalid_token", "not_dpop_bound";
    /// `InvalidToken::DpopKeyMismatch`.
    TOKEN_DPOP_KEY_MISMATCH: "invalid_token", "dpop_key_mismatch";
    /// `InvalidToken::DpopRequired`.
    TOKEN_DPOP_REQUIRED: "invalid_token", "dpop_required";
    /// `InvalidToken::CertificateMismatch`.
    TOKEN_CERTIFICATE_MISMATCH: "invalid_token", "certificate_mismatch";
    /// `InvalidToken::CertificateRequired`.
    TOKEN_CERTIFICATE_REQUIRED: "invalid_token", "certificate_required";

    /// `InvalidProof::Missing`.
    PROOF_MISSING: "invalid_dpop_proof", "missing";
    /// `InvalidProof::Several`.
    PROOF_SEVERAL: "invalid_dpop_proof", "several";
    /// `InvalidProof::Malformed`.
    PROOF_MALFORMED: "invalid_dpop_proof", "malformed";
    /// `InvalidProof::TooLarge`.
    PROOF_TOO_LARGE: "invalid_dpop_proof", "too_large";
    /// `InvalidProof::WrongType`.
    PROOF_WRONG_TYPE: "invalid_dpop_proof", "wrong_type";
    /// `InvalidProof::UnsupportedAlgorithm`.
    PROOF_UNSUPPORTED_ALGORITHM: "invalid_dpop_proof", "unsupported_algorithm";
    /// `InvalidProof::PrivateKey`.
    PROOF_PRIVATE_KEY: "invalid_dpop_proof", "private_key";
    /// `InvalidProof::InvalidKey`.
    PROOF_INVALID_KEY: "invalid_dpop_proof", "invalid_key";
    /// `InvalidProof::BadSignature`.
    PROOF_BAD_SIGNATURE: "invalid_dpop_proof", "bad_signature";
    /// `InvalidProof::WrongMethod`.
    PROOF_WRONG_METHOD: "invalid_dpop_proof", "wrong_method";
    /// `InvalidProof::WrongUri`.
    PROOF_WRONG_URI: "invalid_dpop_proof", "wrong_uri";
    /// `InvalidProof::IssuedInTheFuture`.
    PROOF_ISSUED_IN_THE_FUTURE: "invalid_dpop_proof", "issued_in_the_future";
    /// `InvalidProof::Expired`.
    PROOF_EXPIRED: "invalid_dpop_proof", "expired";
    /// `InvalidProof::InvalidJti`.
    PROOF_INVALID_JTI: "invalid_dpop_proof", "invalid_jti";
    /// `InvalidProof::WrongTokenHash`.
    PROOF_WRONG_TOKEN_HASH: "invalid_dpop_proof", "wrong_token_hash";
    /// `InvalidProof::Replayed`.
    PROOF_REPLAYED: "invalid_dpop_proof", "replayed";

    /// A proof without a valid server nonce (RFC 9449 §9).
    USE_DPOP_NONCE: "use_dpop_nonce", "none";
    /// A valid token without the required scope.
    INSUFFICIENT_SCOPE: "insufficient_scope", "none";
    /// Step-up required (RFC 9470).
    INSUFFICIENT_USER_AUTHENTICATION: "insufficient_user_authentication", "none";
    /// The issuer's keys cannot be had.
    KEYS_UNAVAILABLE: "unavailable", "keys";
    /// Introspection cannot be had.
    INTROSPECTION_UNAVAILABLE: "unavailable", "introspection";
    /// The DPoP replay store cannot answer.
    REPLAY_STORE_UNAVAILABLE: "unavailable", "replay_store";
    /// The server is misconfigured (500).
    MISCONFIGURED: "misconfigured", "none";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snake_case(s: &str) -> bool {
        !s.is_empty()
            && !s.starts_with('_')
            && !s.ends_with('_')
            && !s.contains("__")
            && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }

    /// Every pair is snake_case, distinct, and in the documented table
    /// (which the README repeats word for word).
    #[test]
    fn decisions_are_documented() {
        let table = include_str!("metrics.md");
        let mut seen = std::collections::HashSet::new();
        for d in ALL {
            assert!(snake_case(d.outcome()) && snake_case(d.reason()), "{d:?}");
            assert!(seen.insert((d.outcome(), d.reason())), "{d:?} twice");
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `{}`", d.outcome())))
                .unwrap_or_else(|| panic!("no row for outcome {}", d.outcome()));
            assert!(row.contains(&format!("`{}`", d.reason())), "{d:?}: {row}");
        }
        for result in [
            Introspected::Active,
            Introspected::Inactive,
            Introspected::Error,
        ] {
            assert!(table.contains(&format!("`{}`", result.as_str())));
        }
    }

    #[test]
    fn the_readme_has_the_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(include_str!("metrics.md")),
            "README.md must contain src/telemetry/metrics.md word for word"
        );
    }
}
