//! Failures: every way a request can be refused, as one [`AuthError`]. How
//! each is rendered lives in the challenge module.
//!
//! Every way a request can fail authentication or authorization ends as one
//! [`AuthError`]. Its [`status`](AuthError::status) and
//! [`WWW-Authenticate`](AuthError::challenge) value follow RFC 6750 §3:
//!
//! | failure                                   | status | challenge                                                  |
//! |-------------------------------------------|--------|------------------------------------------------------------|
//! | no access token in the request            | 401    | `Bearer realm="…"` (no error code)                          |
//! | malformed request, several credentials    | 400    | `Bearer realm="…", error="invalid_request", …`              |
//! | token invalid, expired, wrong audience, … | 401    | `Bearer realm="…", error="invalid_token", …`                |
//! | token lacks a required scope              | 403    | `Bearer realm="…", error="insufficient_scope", scope="…"`   |
//! | issuer keys cannot be had                 | 503    | none; `Retry-After` instead                                 |
//! | introspection cannot be had (RFC 7662)    | 503    | none; `Retry-After` instead                                 |
//!
//! Descriptions are fixed, generic sentences: they never echo token content,
//! so they can neither leak claims nor break the header.
//!
//! ```
//! use tokenguard::{AuthError, InvalidToken};
//!
//! let err = AuthError::invalid_token(InvalidToken::Expired);
//! assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     err.challenge("api").unwrap(),
//!     r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#
//! );
//! ```

use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// Why a request was refused. Rendered as an RFC 6750 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthErrorKind,
}

/// The kind of an [`AuthError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// The request carried no access token (401, no error code).
    MissingToken,
    /// The request is malformed: several credentials, a malformed
    /// `Authorization` header, … (400 `invalid_request`).
    InvalidRequest(InvalidRequest),
    /// The access token was refused (401 `invalid_token`).
    InvalidToken(InvalidToken),
    /// The token is valid but lacks the scope(s) named here, space-separated
    /// (403 `insufficient_scope`).
    InsufficientScope {
        /// The scope(s) the resource needs, space-separated.
        required: String,
    },
    /// The issuer's keys cannot be had right now and none are cached (503).
    KeysUnavailable {
        /// When the client may retry.
        retry_after: Duration,
    },
    /// The token could not be introspected (RFC 7662): the authorization
    /// server is unreachable, slow, failing or refused our credentials, or
    /// too many introspections are in flight (503). Never the caller's fault,
    /// so never 401.
    IntrospectionUnavailable {
        /// When the client may retry.
        retry_after: Duration,
    },
    /// The server is misconfigured, e.g. an extractor is used on a route that
    /// the guard's layer does not cover (500).
    Misconfigured(&'static str),
}

/// Why a request was malformed (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// More than one `Authorization` header.
    SeveralAuthorizationHeaders,
    /// The token was presented by more than one method (header, query, cookie).
    SeveralCredentials,
    /// The `Authorization: Bearer` header is not `Bearer <token68>`.
    MalformedCredentials,
}

/// Why an access token was refused (401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Not a compact JWS (three base64url parts), or the parts are not valid
    /// base64url / JSON.
    Malformed,
    /// Larger than the configured maximum size.
    TooLarge,
    /// The `alg` is not in the allowlist (includes `none`), or does not fit
    /// the key.
    UnsupportedAlgorithm,
    /// The `typ` header is not `at+jwt` (RFC 9068), or names another kind of token.
    WrongType,
    /// The header has a `crit` parameter this verifier does not understand.
    UnsupportedCritical,
    /// No key of the issuer matches the token's `kid` and algorithm.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// A claim the policy requires is missing.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an impossible value.
    InvalidClaim(&'static str),
    /// `iss` is not the expected issuer.
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    WrongAudience,
    /// `exp` is in the past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInTheFuture,
    /// `exp` − `iat` is longer than the configured maximum lifetime.
    LifetimeTooLong,
    /// The token is sender-constrained (it has a `cnf` claim) and its
    /// binding was not verified (RFC 9449 §7.2, RFC 8705 §3).
    SenderConstrained,
    /// The authorization server says the token is not active: revoked,
    /// expired or never issued (RFC 7662 §2.2).
    Inactive,
}

impl InvalidToken {
    /// A short, fixed description, safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Malformed => "The access token is malformed",
            Self::TooLarge => "The access token is too large",
            Self::UnsupportedAlgorithm => "The access token algorithm is not accepted",
            Self::WrongType => "The token is not an access token",
            Self::UnsupportedCritical => "The access token has an unsupported critical header",
            Self::UnknownKey => "The access token signing key is unknown",
            Self::BadSignature => "The access token signature is invalid",
            Self::MissingClaim(_) => "The access token lacks a required claim",
            Self::InvalidClaim(_) => "The access token has an invalid claim",
            Self::WrongIssuer => "The access token issuer is not trusted",
            Self::WrongAudience => "The access token is not meant for this resource",
            Self::Expired => "The access token expired",
            Self::NotYetValid => "The access token is not valid yet",
            Self::IssuedInTheFuture => "The access token was issued in the future",
            Self::LifetimeTooLong => "The access token lifetime is too long",
            Self::SenderConstrained => {
                "The access token is bound to a key and cannot be used as a bearer token"
            }
            Self::Inactive => "The access token is not active",
        }
    }
}

impl InvalidRequest {
    /// A short, fixed description, safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            Self::SeveralAuthorizationHeaders => "More than one Authorization header",
            Self::SeveralCredentials => "More than one access token in the request",
            Self::MalformedCredentials => "Malformed Bearer credentials",
        }
    }
}

impl AuthError {
    /// Creates an error of the given kind.
    pub fn new(kind: AuthErrorKind) -> Self {
        Self { kind }
    }

    /// No access token in the request.
    pub fn missing_token() -> Self {
        Self::new(AuthErrorKind::MissingToken)
    }

    /// A malformed request.
    pub fn invalid_request(reason: InvalidRequest) -> Self {
        Self::new(AuthErrorKind::InvalidRequest(reason))
    }

    /// A refused token.
    pub fn invalid_token(reason: InvalidToken) -> Self {
        Self::new(AuthErrorKind::InvalidToken(reason))
    }

    /// A token without the required scope(s) (space-separated).
    pub fn insufficient_scope(required: impl Into<String>) -> Self {
        Self::new(AuthErrorKind::InsufficientScope {
            required: required.into(),
        })
    }

    /// The issuer's keys cannot be had.
    pub fn keys_unavailable(retry_after: Duration) -> Self {
        Self::new(AuthErrorKind::KeysUnavailable { retry_after })
    }

    /// The token could not be introspected; retry after `retry_after`.
    pub fn introspection_unavailable(retry_after: Duration) -> Self {
        Self::new(AuthErrorKind::IntrospectionUnavailable { retry_after })
    }

    /// When the client may retry, for a 503.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            AuthErrorKind::KeysUnavailable { retry_after }
            | AuthErrorKind::IntrospectionUnavailable { retry_after } => Some(retry_after),
            _ => None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &AuthErrorKind {
        &self.kind
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            AuthErrorKind::MissingToken | AuthErrorKind::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            AuthErrorKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthErrorKind::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthErrorKind::KeysUnavailable { .. }
            | AuthErrorKind::IntrospectionUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AuthErrorKind::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 `error` code, if the challenge carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind {
            AuthErrorKind::InvalidRequest(_) => Some("invalid_request"),
            AuthErrorKind::InvalidToken(_) => Some("invalid_token"),
            AuthErrorKind::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// A short description safe to show the client (never token content).
    pub fn description(&self) -> &'static str {
        match &self.kind {
            AuthErrorKind::MissingToken => "An access token is required",
            AuthErrorKind::InvalidRequest(r) => r.description(),
            AuthErrorKind::InvalidToken(r) => r.description(),
            AuthErrorKind::InsufficientScope { .. } => {
                "The access token does not grant the required scope"
            }
            AuthErrorKind::KeysUnavailable { .. } => {
                "The token issuer's keys are unavailable; try again later"
            }
            AuthErrorKind::IntrospectionUnavailable { .. } => {
                "The access token cannot be checked right now; try again later"
            }
            AuthErrorKind::Misconfigured(_) => "Internal server error",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            AuthErrorKind::InvalidToken(InvalidToken::MissingClaim(c)) => {
                write!(f, "access token lacks the `{c}` claim")
            }
            AuthErrorKind::InvalidToken(InvalidToken::InvalidClaim(c)) => {
                write!(f, "access token has an invalid `{c}` claim")
            }
            AuthErrorKind::InsufficientScope { required } => {
                write!(f, "access token lacks the required scope `{required}`")
            }
            AuthErrorKind::Misconfigured(why) => write!(f, "misconfigured: {why}"),
            _ => f.write_str(self.description()),
        }
    }
}

impl std::error::Error for AuthError {}
