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
    /// The token's user authentication is not strong or recent enough for
    /// this resource (401 `insufficient_user_authentication`, RFC 9470 §3):
    /// the client should get a new token with these `acr_values` and/or
    /// this `max_age`.
    InsufficientUserAuthentication {
        /// Acceptable authentication context classes, space-separated.
        acr_values: Option<String>,
        /// Longest time since the user authenticated, in seconds.
        max_age: Option<u64>,
    },
    /// The DPoP proof is missing or invalid (401 `invalid_dpop_proof`,
    /// RFC 9449 §7.1).
    InvalidDpopProof(InvalidProof),
    /// The DPoP proof lacks a valid server nonce: retry with `nonce`, which
    /// the response carries in `DPoP-Nonce` (401 `use_dpop_nonce`, RFC 9449 §9).
    UseDpopNonce {
        /// The nonce to put in the next proof.
        nonce: String,
    },
    /// The DPoP replay store could not answer (503): without it, a replayed
    /// proof cannot be told from a fresh one.
    ReplayCheckUnavailable {
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
    /// The credentials are malformed: `Authorization` is not `Bearer <token68>`
    /// (or `DPoP <token68>`), or a query, cookie or form token is not valid.
    MalformedCredentials,
    /// The trusted proxy's client-certificate header is malformed or
    /// repeated (RFC 9440 §2.2).
    MalformedClientCertificate,
    /// An `Mcp-Method` or `Mcp-Name` header does not match the JSON-RPC
    /// message in the body (MCP 2026-07-28, SEP-2243).
    McpHeaderMismatch,
    /// The body of an MCP request is not a JSON-RPC message (or batch) that
    /// the per-operation policy can read.
    UnreadableMessage,
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
    /// Presented with the `DPoP` scheme, but not bound to a DPoP key
    /// (no `cnf.jkt`).
    NotDpopBound,
    /// Bound to another key than the one that signed the DPoP proof
    /// (RFC 9449 §7.1: `cnf.jkt` is not the proof key's thumbprint).
    DpopKeyMismatch,
    /// This resource accepts only DPoP-bound tokens with a proof, and the
    /// token was presented as a bearer token.
    DpopRequired,
    /// Bound to a client certificate (`cnf["x5t#S256"]`, RFC 8705 §3) that
    /// the request was not authenticated with (another one, or none).
    CertificateMismatch,
    /// This resource accepts only certificate-bound tokens.
    CertificateRequired,
}

/// Why a DPoP proof was refused (401 `invalid_dpop_proof`, RFC 9449 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidProof {
    /// The `DPoP` scheme was used without a `DPoP` header.
    Missing,
    /// More than one `DPoP` header, or several proofs in one.
    Several,
    /// Not a compact JWS with JSON header and claims of the right types.
    Malformed,
    /// Larger than the limit.
    TooLarge,
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is not an accepted asymmetric algorithm.
    UnsupportedAlgorithm,
    /// The `jwk` holds private key material.
    PrivateKey,
    /// The `jwk` is not a usable public key for `alg`.
    InvalidKey,
    /// The signature does not verify with the `jwk`.
    BadSignature,
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the request's URI.
    WrongUri,
    /// `iat` is too far in the future.
    IssuedInTheFuture,
    /// `iat` is too old.
    Expired,
    /// `jti` is missing, empty or too long.
    InvalidJti,
    /// `ath` is missing or not the hash of the access token.
    WrongTokenHash,
    /// The proof was used before.
    Replayed,
}

impl InvalidProof {
    /// A short, fixed description, safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "A DPoP proof is required",
            Self::Several => "More than one DPoP proof",
            Self::Malformed => "The DPoP proof is malformed",
            Self::TooLarge => "The DPoP proof is too large",
            Self::WrongType => "The DPoP proof is not typed dpop+jwt",
            Self::UnsupportedAlgorithm => "The DPoP proof algorithm is not accepted",
            Self::PrivateKey => "The DPoP proof key holds private key material",
            Self::InvalidKey => "The DPoP proof key is invalid",
            Self::BadSignature => "The DPoP proof signature is invalid",
            Self::WrongMethod => "The DPoP proof is for another HTTP method",
            Self::WrongUri => "The DPoP proof is for another URI",
            Self::IssuedInTheFuture => "The DPoP proof was issued in the future",
            Self::Expired => "The DPoP proof is too old",
            Self::InvalidJti => "The DPoP proof has no valid jti",
            Self::WrongTokenHash => "The DPoP proof is for another access token",
            Self::Replayed => "The DPoP proof was used before",
        }
    }
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
            Self::NotDpopBound => "The access token is not bound to a DPoP key",
            Self::DpopKeyMismatch => "The access token is bound to another key",
            Self::DpopRequired => "The access token must be presented with a DPoP proof",
            Self::CertificateMismatch => {
                "The access token is bound to a client certificate this request did not present"
            }
            Self::CertificateRequired => "The access token must be bound to a client certificate",
        }
    }
}

impl InvalidRequest {
    /// A short, fixed description, safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            Self::SeveralAuthorizationHeaders => "More than one Authorization header",
            Self::SeveralCredentials => "More than one access token in the request",
            Self::MalformedCredentials => "Malformed credentials",
            Self::MalformedClientCertificate => "Malformed client certificate header",
            Self::McpHeaderMismatch => {
                "The Mcp-Method or Mcp-Name header does not match the request body"
            }
            Self::UnreadableMessage => "The request body is not a readable JSON-RPC message",
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
            | AuthErrorKind::IntrospectionUnavailable { retry_after }
            | AuthErrorKind::ReplayCheckUnavailable { retry_after } => Some(retry_after),
            _ => None,
        }
    }

    /// A refused DPoP proof.
    pub fn invalid_dpop_proof(reason: InvalidProof) -> Self {
        Self::new(AuthErrorKind::InvalidDpopProof(reason))
    }

    /// What went wrong.
    pub fn kind(&self) -> &AuthErrorKind {
        &self.kind
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            AuthErrorKind::MissingToken
            | AuthErrorKind::InvalidToken(_)
            | AuthErrorKind::InvalidDpopProof(_)
            | AuthErrorKind::UseDpopNonce { .. }
            | AuthErrorKind::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
            AuthErrorKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthErrorKind::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthErrorKind::KeysUnavailable { .. }
            | AuthErrorKind::IntrospectionUnavailable { .. }
            | AuthErrorKind::ReplayCheckUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AuthErrorKind::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 `error` code, if the challenge carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind {
            AuthErrorKind::InvalidRequest(_) => Some("invalid_request"),
            AuthErrorKind::InvalidToken(_) => Some("invalid_token"),
            AuthErrorKind::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthErrorKind::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            AuthErrorKind::UseDpopNonce { .. } => Some("use_dpop_nonce"),
            AuthErrorKind::InsufficientUserAuthentication { .. } => {
                Some("insufficient_user_authentication")
            }
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
            AuthErrorKind::InvalidDpopProof(r) => r.description(),
            AuthErrorKind::UseDpopNonce { .. } => "Resend the request with the DPoP nonce given",
            AuthErrorKind::InsufficientUserAuthentication { .. } => {
                "A different authentication level is required"
            }
            AuthErrorKind::ReplayCheckUnavailable { .. } => {
                "The DPoP proof cannot be checked right now; try again later"
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
