//! # tokenguard
//!
//! Protect tower and axum services with OAuth 2.0 access tokens.
//!
//! One [`Layer`](tower_layer::Layer) finds the access token of each request
//! (RFC 6750), verifies it strictly (RFC 9068 JWT access tokens, RFC 8725
//! practices), and stores the verified [`AccessToken`] in the request
//! extensions. Handlers ask for what they need with extractors:
//! [`Claims<C>`] for typed claims and [`RequireScope<S>`] for a scope. Every
//! failure is an RFC 6750 challenge: 401 / 403 / 400 with `WWW-Authenticate`,
//! 503 with `Retry-After` when the issuer's keys cannot be had.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tokenguard::{AccessTokenClaims, Claims, RequireScope, TokenGuard, scopes};
//!
//! scopes! {
//!     /// Read invoices.
//!     pub ReadInvoices = "read:invoices";
//! }
//!
//! async fn list(_: RequireScope<ReadInvoices>, Claims(c): Claims<AccessTokenClaims>) -> String {
//!     format!("invoices of {}", c.sub.as_deref().unwrap_or("?"))
//! }
//!
//! # fn main() -> Result<(), tokenguard::BuildError> {
//! let guard = TokenGuard::builder()
//!     .issuer("https://id.example.com")   // keys through discovery, fetched on first use
//!     .audience("https://api.example.com")
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/invoices", get(list))
//!     .layer(guard.layer())
//!     .route("/healthz", get(|| async { "ok" })); // added after the layer: public
//! # Ok(()) }
//! ```
//!
//! ## Crate features
//! - `axum` (default): the extractors.
//! - `aws-lc-rs` (default): cryptography through aws-lc-rs.
//! - `rust-crypto`: pure-Rust cryptography (RustCrypto). Verifying RS256 is
//!   about 6–7× slower than with aws-lc-rs. When both are enabled, aws-lc-rs is
//!   used.
//! - `tonic`: lets the layer wrap tonic services (their `tonic::body::Body`
//!   responses). A refused gRPC call gets HTTP 401/403, which gRPC clients
//!   report as `UNAUTHENTICATED` / `PERMISSION_DENIED`.
//! - `metrics`: counters and histograms through the `metrics` facade (see the
//!   README, "Metrics and tracing", for the table).
//! - `testing`: [`testing::TestIssuer`], an in-process issuer for tests.

#![warn(missing_docs)]
// Request-path code is panic-free by construction: no slicing or indexing
// that can go out of bounds, no unwrap, expect or panic (each exception is
// an `#[allow]` with its reason).
#![cfg_attr(
    not(test),
    deny(
        clippy::string_slice,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tokenguard needs a crypto backend: enable the `aws-lc-rs` (default) or `rust-crypto` feature"
);

/// `get_ref`, `get_mut` and `into_inner` for a middleware service whose
/// wrapped service is its `inner` field.
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

// The request's path, in order (ARCHITECTURE.md): credential → verify →
// bind → extensions → authorize → challenge. Modules are private; the API is
// the curated list of re-exports below.
mod authorize;
mod bind;
mod builder;
mod challenge;
mod claims;
mod credential;
mod error;
mod extensions;
#[cfg(feature = "axum")]
mod extract;
mod fetch;
#[cfg(feature = "axum")]
mod form;
mod guard;
mod keys;
mod layer;
#[cfg(feature = "mcp")]
mod mcp;
mod metadata;
mod observe;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "rmcp")]
mod rmcp;
mod scope;
mod syntax;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;

#[cfg(feature = "mcp")]
pub use self::mcp::{McpBody, McpScopeFuture, McpScopeLayer, McpScopeService};
#[cfg(feature = "rmcp")]
pub use self::rmcp::{StripCredentials, StripCredentialsLayer, ToolScopes};
pub use authorize::{
    RequireScopeFuture, RequireScopeLayer, RequireScopeService, StepUp, StepUpLayer, StepUpService,
    require_scope,
};
pub use bind::dpop::{
    DpopConfig, MemoryReplayStore, NonceConfig, ReplayFuture, ReplayKey, ReplayStore,
    ReplayStoreError, Seen, WeakSecret,
};
pub use bind::mtls::{ClientCertificate, MtlsConfig};
pub use builder::{BuildError, DEFAULT_ALGORITHMS, MAX_LEEWAY, TokenGuardBuilder};
pub use challenge::{ChallengeBody, ErrorBody, ErrorBodyRenderer};
pub use claims::{AccessToken, AccessTokenClaims, Audience, NumericDate, ScopeSource};
pub use credential::TokenSources;
pub use error::{AuthError, AuthErrorKind, InvalidProof, InvalidRequest, InvalidToken};
#[cfg(feature = "axum")]
pub use extract::{AuthRejection, Claims, RequireScope, Token};
#[cfg(feature = "axum")]
pub use form::{FormTokenLayer, FormTokenService};
pub use guard::{TokenGuard, WarmUpError};
pub use jsonwebtoken::Algorithm;
pub use keys::KeySetStatus;
pub use layer::{ResponseFuture, TokenGuardLayer, TokenGuardService};
pub use metadata::ProtectedResource;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreError};
pub use scope::{AnyOf, Scope, ScopeHierarchy, ScopeRequirement, ScopeTuple, Scopes};
pub use verify::cache::TokenCacheConfig;
pub use verify::introspect::{
    ClientAuth, IntrospectionConfig, SharedIntrospectionCache, TokenDigest,
};

/// Parsers exposed for the fuzz targets, the property tests and the
/// [`scopes!`] macro. Not part of the API: no stability promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::credential::parse_authorization;
    pub use crate::scope::{ScopeLiteral, scope_chunk};
    pub use crate::syntax::{is_scope_char, is_token68, is_valid_scope_token};
}

// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
