//! Authorization for a whole (sub-)service: [`RequireScopeLayer`] demands
//! scopes of the token the guard's layer verified, on any tower service.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tokenguard::{require_scope, testing::TestIssuer};
//!
//! let issuer = TestIssuer::new();
//! let svc = ServiceBuilder::new()
//!     .layer(issuer.guard("https://api").layer())
//!     .layer(require_scope("admin"))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from("hello")))
//!     }));
//! let token = issuer.token().audience("https://api").scope("admin").mint();
//! let req = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {token}")).body(()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::challenge::ChallengeBody;
use crate::claims::AccessToken;
use crate::error::AuthError;
use crate::extensions::challenge_config;
use crate::observe::reject_request;

/// Demands scopes of the verified token for every request of the wrapped
/// service: 401 without a verified token, 403 `insufficient_scope` when a
/// scope is missing. Place it inside a [`TokenGuardLayer`](crate::TokenGuardLayer). Works on any
/// tower service; with axum, use `Router::route_layer`.
///
/// ```
/// use tokenguard::{require_scope, RequireScopeLayer};
/// let admin = require_scope("admin");
/// let both = RequireScopeLayer::all_of(["read:invoices", "write:invoices"]);
/// let either = RequireScopeLayer::any_of(["admin", "support"]);
/// # let _ = (admin, both, either);
/// ```
#[derive(Clone, Debug)]
pub struct RequireScopeLayer {
    scopes: Arc<[Box<str>]>,
    any: bool,
}

/// A [`RequireScopeLayer`] for one scope.
///
/// # Panics
/// If `scope` is not a valid RFC 6749 scope-token (e.g. empty or with a space).
pub fn require_scope(scope: &str) -> RequireScopeLayer {
    RequireScopeLayer::all_of([scope])
}

impl RequireScopeLayer {
    fn new<'a>(scopes: impl IntoIterator<Item = &'a str>, any: bool) -> Self {
        let scopes: Arc<[Box<str>]> = scopes.into_iter().map(Box::from).collect();
        assert!(
            !scopes.is_empty(),
            "RequireScopeLayer needs at least one scope"
        );
        for s in scopes.iter() {
            assert!(
                crate::syntax::is_valid_scope_token(s),
                "{s:?} is not a valid scope (RFC 6749: non-empty, printable ASCII, no space, quote or backslash)"
            );
        }
        Self { scopes, any }
    }

    /// Every one of `scopes` is required.
    ///
    /// # Panics
    /// If `scopes` is empty or holds an invalid scope-token.
    pub fn all_of<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(scopes, false)
    }

    /// At least one of `scopes` is required.
    ///
    /// # Panics
    /// If `scopes` is empty or holds an invalid scope-token.
    pub fn any_of<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(scopes, true)
    }

    fn check(&self, ext: &http::Extensions) -> Result<(), AuthError> {
        let token = ext
            .get::<Arc<AccessToken>>()
            .ok_or_else(AuthError::missing_token)?;
        let granted = token.scopes();
        let ok = if self.any {
            self.scopes.iter().any(|s| granted.contains(s))
        } else {
            self.scopes.iter().all(|s| granted.contains(s))
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::insufficient_scope(self.scopes.join(" ")))
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequireScopeLayer`].
#[derive(Clone, Debug)]
pub struct RequireScopeService<S> {
    inner: S,
    layer: RequireScopeLayer,
}

impl<S> RequireScopeService<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopeService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ChallengeBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireScopeFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let checked = self.layer.check(req.extensions());
        gate(checked, &mut self.inner, req)
    }
}

/// Calls `inner` when `checked` passed; otherwise answers the refusal with
/// the challenge settings of the guard that handled the request.
fn gate<S, ReqBody, ResBody>(
    checked: Result<(), AuthError>,
    inner: &mut S,
    req: Request<ReqBody>,
) -> RequireScopeFuture<S::Future, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ChallengeBody,
{
    let state = match checked {
        Ok(()) => ScopeState::Inner {
            fut: inner.call(req),
        },
        Err(e) => ScopeState::Rejected {
            resp: Some(reject_request(
                &e,
                &challenge_config(req.extensions()),
                req.headers(),
            )),
        },
    };
    RequireScopeFuture { state }
}

pin_project! {
    /// Response future of [`RequireScopeService`].
    pub struct RequireScopeFuture<F, B> {
        #[pin]
        state: ScopeState<F, B>,
    }
}

pin_project! {
    #[project = ScopeStateProj]
    enum ScopeState<F, B> {
        Inner { #[pin] fut: F },
        Rejected { resp: Option<Response<B>> },
    }
}

impl<F, B, E> Future for RequireScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ScopeStateProj::Inner { fut } => fut.poll(cx),
            // `None` only when polled after completion: never resolves again.
            ScopeStateProj::Rejected { resp } => {
                resp.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r)))
            }
        }
    }
}

/// A step-up requirement (RFC 9470): the user must have authenticated with
/// one of these `acr` values and/or within `max_age`. Refused with 401
/// `insufficient_user_authentication` naming `acr_values` / `max_age`, so
/// that the client can ask the authorization server for a stronger or
/// fresher authentication. Use it as a route layer ([`StepUp::layer`]) or in
/// a handler ([`StepUp::check`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use tokenguard::{StepUp, testing::TestIssuer};
/// let issuer = TestIssuer::new();
/// let mfa = StepUp::acr_values(["urn:example:mfa"]).max_age(Duration::from_secs(300));
/// let token = issuer.guard("https://api").verify(
///     &issuer.token().audience("https://api").claim("acr", "urn:example:pwd").mint(),
/// ).await.unwrap();
/// let err = mfa.check(&token).unwrap_err();
/// assert_eq!(err.status(), 401);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct StepUp {
    acr_values: Option<Arc<[Box<str>]>>,
    max_age: Option<std::time::Duration>,
}

impl StepUp {
    /// The user must have authenticated with one of these `acr` values.
    ///
    /// # Panics
    /// If a value is not a valid `acr` (printable ASCII without space, `"`
    /// or `\`): a configuration error, caught when the route is built.
    #[allow(
        clippy::panic,
        reason = "configuration, at start-up, never per request"
    )]
    pub fn acr_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let values: Arc<[Box<str>]> = values.into_iter().map(Box::from).collect();
        if let Some(bad) = values
            .iter()
            .find(|v| !crate::syntax::is_valid_scope_token(v))
        {
            panic!("{bad:?} is not a valid acr value");
        }
        Self {
            acr_values: Some(values),
            max_age: None,
        }
    }

    /// The user must have authenticated at most this long ago (`auth_time`).
    pub fn max_age(mut self, max_age: std::time::Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Whether `token` satisfies the requirement.
    pub fn check(&self, token: &AccessToken) -> Result<(), AuthError> {
        let claims = token.claims();
        let acr_ok = self.acr_values.as_ref().is_none_or(|values| {
            claims
                .acr
                .as_deref()
                .is_some_and(|acr| values.iter().any(|v| &**v == acr))
        });
        let age_ok = self.max_age.is_none_or(|max| {
            claims.auth_time.is_some_and(|at| {
                let age = crate::claims::NumericDate::now()
                    .as_secs()
                    .saturating_sub(at.as_secs());
                age >= -60 && age.unsigned_abs() <= max.as_secs()
            })
        });
        if acr_ok && age_ok {
            return Ok(());
        }
        Err(AuthError::new(
            crate::error::AuthErrorKind::InsufficientUserAuthentication {
                acr_values: self.acr_values.as_ref().map(|v| v.join(" ")),
                max_age: self.max_age.map(|d| d.as_secs()),
            },
        ))
    }

    /// This requirement as a route layer, inside the guard's layer.
    pub fn layer(&self) -> StepUpLayer {
        StepUpLayer(self.clone())
    }
}

/// Applies [`StepUpService`]. Made by [`StepUp::layer`].
#[derive(Clone, Debug)]
pub struct StepUpLayer(StepUp);

impl<S> Layer<S> for StepUpLayer {
    type Service = StepUpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StepUpService {
            inner,
            rule: self.0.clone(),
        }
    }
}

/// The service of [`StepUpLayer`]: 401 without a verified token, 401
/// `insufficient_user_authentication` when the requirement is not met.
#[derive(Clone, Debug)]
pub struct StepUpService<S> {
    inner: S,
    rule: StepUp,
}

impl<S> StepUpService<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for StepUpService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ChallengeBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireScopeFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let checked = req
            .extensions()
            .get::<Arc<AccessToken>>()
            .ok_or_else(AuthError::missing_token)
            .and_then(|token| self.rule.check(token));
        gate(checked, &mut self.inner, req)
    }
}
