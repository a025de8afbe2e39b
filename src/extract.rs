//! axum extractors for handlers behind the guard's layer.
//!
//! - [`Claims<C>`]: the verified claims as `Arc<C>`, for
//!   [`AccessTokenClaims`](crate::AccessTokenClaims) (no copy) or any `DeserializeOwned` type of yours.
//! - [`RequireScope<S>`]: demands a scope, a tuple of scopes (all of them)
//!   or [`AnyOf`](crate::AnyOf) a tuple; 403 `insufficient_scope` otherwise.
//! - [`Token`]: the whole `Arc<AccessToken>`.
//!
//! `Option<Claims<C>>` and `Option<Token>` are `None` on routes behind
//! [`TokenGuard::optional_layer`](crate::TokenGuard::optional_layer) when the
//! request carried no token (a present but invalid token never reaches the
//! handler).
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use tokenguard::{AccessTokenClaims, Claims, RequireScope, scopes};
//!
//! scopes! { pub ReadInvoices = "read:invoices"; }
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims { sub: String, tenant: Option<String> }
//!
//! async fn list(_: RequireScope<ReadInvoices>, Claims(c): Claims<MyClaims>) -> String {
//!     format!("invoices of {} in {:?}", c.sub, c.tenant)
//! }
//!
//! async fn me(Claims(c): Claims<AccessTokenClaims>) -> Json<AccessTokenClaims> {
//!     Json((*c).clone())
//! }
//!
//! async fn hello(claims: Option<Claims<AccessTokenClaims>>) -> String {
//!     match claims {
//!         Some(Claims(c)) => format!("hello {}", c.sub.as_deref().unwrap_or("?")),
//!         None => "hello stranger".into(),
//!     }
//! }
//! # let _: Router = Router::new().route("/invoices", get(list)).route("/me", get(me)).route("/", get(hello));
//! ```

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::challenge::ChallengeConfig;
use crate::claims::AccessToken;
use crate::error::{AuthError, AuthErrorKind, InvalidToken};
use crate::extensions::{GuardContext, challenge_config};
use crate::scope::ScopeRequirement;

/// Rejection of tokenguard's extractors: an [`AuthError`] rendered with the
/// guard's realm and body renderer.
pub struct AuthRejection {
    error: AuthError,
    ctx: Arc<ChallengeConfig>,
}

impl AuthRejection {
    fn new(error: AuthError, parts: &Parts) -> Self {
        Self {
            error,
            ctx: challenge_config(&parts.extensions),
        }
    }

    /// The underlying error.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// Consumes the rejection, returning the error.
    pub fn into_error(self) -> AuthError {
        self.error
    }
}

impl fmt::Debug for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuthRejection").field(&self.error).finish()
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        crate::observe::reject(&self.error, &self.ctx)
    }
}

fn token(parts: &Parts) -> Result<Arc<AccessToken>, AuthRejection> {
    if let Some(t) = parts.extensions.get::<Arc<AccessToken>>() {
        return Ok(t.clone());
    }
    let err = if parts.extensions.get::<GuardContext>().is_some() {
        // The guard ran (optional layer) and found no token.
        AuthError::missing_token()
    } else {
        AuthError::new(AuthErrorKind::Misconfigured(
            "tokenguard extractor used on a route without the TokenGuard layer",
        ))
    };
    Err(AuthRejection::new(err, parts))
}

/// The whole verified token: claims, scopes, and typed access to any claim.
/// Derefs to [`AccessToken`].
#[derive(Debug, Clone)]
pub struct Token(pub Arc<AccessToken>);

impl std::ops::Deref for Token {
    type Target = AccessToken;
    fn deref(&self) -> &AccessToken {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        token(parts).map(Token)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Token {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        optional(parts, |t| Ok(Token(t)))
    }
}

fn optional<T>(
    parts: &Parts,
    f: impl FnOnce(Arc<AccessToken>) -> Result<T, AuthRejection>,
) -> Result<Option<T>, AuthRejection> {
    match token(parts) {
        Ok(t) => f(t).map(Some),
        Err(r) if matches!(r.error.kind(), AuthErrorKind::MissingToken) => Ok(None),
        Err(r) => Err(r),
    }
}

/// The verified claims as `C`, shared (`Arc<C>`).
///
/// For [`AccessTokenClaims`](crate::AccessTokenClaims) this is the instance
/// parsed during verification; other types are deserialized from the verified
/// payload. A payload that does not fit `C` is refused as `invalid_token`.
///
/// `Claims<C>` derefs to `C`:
///
/// ```
/// use tokenguard::{AccessTokenClaims, Claims};
/// async fn me(claims: Claims<AccessTokenClaims>) -> String {
///     claims.sub.clone().unwrap_or_default()
/// }
/// # let _: axum::Router = axum::Router::new().route("/me", axum::routing::get(me));
/// ```
#[derive(Debug, Clone)]
pub struct Claims<C>(pub Arc<C>);

impl<C> std::ops::Deref for Claims<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.0
    }
}

fn claims<C: DeserializeOwned + Send + Sync + 'static>(
    token: &AccessToken,
    parts: &Parts,
) -> Result<Claims<C>, AuthRejection> {
    let standard: Arc<dyn Any + Send + Sync> = token.claims.clone();
    if let Ok(same) = standard.downcast::<C>() {
        return Ok(Claims(same));
    }
    match token.claims_as::<C>() {
        Ok(c) => Ok(Claims(Arc::new(c))),
        Err(e) => {
            tracing::debug!(error = %e, claims = std::any::type_name::<C>(), "verified claims do not fit the claims type");
            Err(AuthRejection::new(
                AuthError::invalid_token(InvalidToken::InvalidClaim("claims")),
                parts,
            ))
        }
    }
}

impl<S, C> FromRequestParts<S> for Claims<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let t = token(parts)?;
        claims(&t, parts)
    }
}

impl<S, C> OptionalFromRequestParts<S> for Claims<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        optional(parts, |t| claims(&t, parts))
    }
}

/// Demands that the token grant the scope requirement `R`: a
/// [`Scope`](crate::Scope) made by [`scopes!`](crate::scopes), a tuple of them
/// (all), or [`AnyOf`](crate::AnyOf) a tuple (one). Answers 403
/// `insufficient_scope` with `scope="…"` naming what is required.
///
/// ```
/// use tokenguard::{AnyOf, RequireScope, scopes};
/// scopes! { pub Read = "read"; pub Write = "write"; pub Admin = "admin"; }
///
/// async fn update(_: RequireScope<(Read, Write)>) {}
/// async fn moderate(_: RequireScope<AnyOf<(Admin, Write)>>) {}
/// # let _: axum::Router = axum::Router::new()
/// #     .route("/a", axum::routing::put(update)).route("/b", axum::routing::post(moderate));
/// ```
pub struct RequireScope<R>(PhantomData<fn() -> R>);

impl<R> fmt::Debug for RequireScope<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequireScope")
    }
}

impl<S: Send + Sync, R: ScopeRequirement> FromRequestParts<S> for RequireScope<R> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let t = token(parts)?;
        if R::is_satisfied(t.scopes()) {
            Ok(RequireScope(PhantomData))
        } else {
            Err(AuthRejection::new(
                AuthError::insufficient_scope(R::description()),
                parts,
            ))
        }
    }
}
