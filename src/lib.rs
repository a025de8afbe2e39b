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

mod bind;
mod cache;
pub mod claims;
pub mod credential;
pub mod error;
#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "axum")]
pub mod form;
mod guard;
mod jwt;
mod keys;
pub mod layer;
mod multi;
pub mod scope;
#[cfg(feature = "testing")]
pub mod testing;

pub use cache::TokenCacheConfig;
pub use claims::{AccessToken, AccessTokenClaims, Audience, NumericDate};
pub use credential::TokenSources;
pub use error::{AuthError, AuthErrorKind, ChallengeBody, ErrorBody, InvalidRequest, InvalidToken};
#[cfg(feature = "axum")]
pub use extract::{AuthRejection, Claims, RequireScope, Token};
pub use guard::{
    BuildError, DEFAULT_ALGORITHMS, KeySetStatus, MAX_LEEWAY, TokenGuard, TokenGuardBuilder,
    WarmUpError,
};
pub use jsonwebtoken::Algorithm;
pub use layer::{RequireScopeLayer, TokenGuardLayer, TokenGuardService, require_scope};
pub use scope::{AnyOf, Scope, ScopeRequirement, ScopeSource, Scopes};

// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
