//! The tower [`Layer`]s: [`TokenGuardLayer`] verifies the token of every
//! request; [`RequireScopeLayer`] demands scopes for a whole (sub-)service.
//!
//! Both are generic over request and response bodies and work on an axum
//! `Router` as on any tower service:
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
//! let guard = issuer.guard("https://api.example.com");
//! let svc = ServiceBuilder::new()
//!     .layer(guard.layer())
//!     .layer(require_scope("admin"))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from("hello")))
//!     }));
//!
//! let token = issuer.token().audience("https://api.example.com").scope("read").mint();
//! let req = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {token}")).body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::claims::AccessToken;
use crate::credential::extract;
use crate::error::{AuthError, ChallengeBody, ErrorContext};
use crate::guard::TokenGuard;
use crate::jwt::{Verification, Verified};

/// The guard's error rendering, made available to extractors and
/// [`RequireScopeLayer`] through the request extensions.
#[derive(Clone)]
pub(crate) struct GuardErrors(pub(crate) Arc<ErrorContext>);

pub(crate) fn error_context(ext: &http::Extensions) -> Arc<ErrorContext> {
    if let Some(token) = ext.get::<Arc<AccessToken>>() {
        return token.errors.clone();
    }
    ext.get::<GuardErrors>()
        .map(|g| g.0.clone())
        .unwrap_or_default()
}

fn reject<B: ChallengeBody>(err: &AuthError, ctx: &ErrorContext) -> Response<B> {
    tracing::debug!(status = err.status().as_u16(), reason = %err, "request refused");
    err.to_response(ctx)
}

/// Applies [`TokenGuardService`]. Made by [`TokenGuard::layer`] and
/// [`TokenGuard::optional_layer`].
#[derive(Clone, Debug)]
pub struct TokenGuardLayer {
    guard: TokenGuard,
    optional: bool,
}

impl TokenGuardLayer {
    pub(crate) fn new(guard: TokenGuard, optional: bool) -> Self {
        Self { guard, optional }
    }
}

impl<S> Layer<S> for TokenGuardLayer {
    type Service = TokenGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenGuardService {
            inner,
            guard: self.guard.clone(),
            optional: self.optional,
        }
    }
}

/// Verifies the request's access token, stores the `Arc<AccessToken>` in the
/// request extensions and calls the inner service; answers the RFC 6750
/// challenge itself otherwise.
#[derive(Clone, Debug)]
pub struct TokenGuardService<S> {
    inner: S,
    guard: TokenGuard,
    optional: bool,
}

impl<S> TokenGuardService<S> {
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
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TokenGuardService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: ChallengeBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let guard = &self.guard.inner;
        let found = extract(
            req.headers(),
            req.uri(),
            req.extensions(),
            self.guard.sources(),
            guard.max_token_len,
        );
        let found = match found {
            Err(e) => return ResponseFuture::rejected(reject(&e, &guard.errors)),
            Ok(None) if self.optional => {
                // No token: extractors will need the guard's error rendering.
                req.extensions_mut()
                    .insert(GuardErrors(guard.errors.clone()));
                return ResponseFuture::inner(self.inner.call(req));
            }
            Ok(None) => {
                return ResponseFuture::rejected(reject(
                    &AuthError::missing_token(),
                    &guard.errors,
                ));
            }
            Ok(Some(found)) => found,
        };
        // The hot path: exactly a token verified before. Its syntax was
        // checked then, so nothing else is needed.
        let verification = match guard.verifier.cached(found.bytes()) {
            Some(hit) => Verification::Done(Ok(hit)),
            None => match found.token() {
                Ok(token) => guard.verifier.verify(token),
                Err(e) => Verification::Done(Err(e)),
            },
        };
        match verification {
            Verification::Done(Ok(token)) => {
                req.extensions_mut().insert(token);
                ResponseFuture::inner(self.inner.call(req))
            }
            Verification::Done(Err(e)) => ResponseFuture::rejected(reject(&e, &guard.errors)),
            Verification::Pending(verify) => {
                // The verification has to wait for keys. `poll_ready` was
                // called on `self.inner`, so that instance is the one allowed
                // to take this request: move it into the future and leave a
                // fresh clone behind for the next `poll_ready`.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Verifying {
                        verify,
                        req: Some(req),
                        svc: Some(ready),
                        errors: guard.errors.clone(),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`TokenGuardService`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Verifying {
            verify: Pin<Box<dyn Future<Output = Verified> + Send>>,
            req: Option<Request<ReqBody>>,
            svc: Option<S>,
            errors: Arc<ErrorContext>,
        },
        Inner {
            #[pin]
            fut: S::Future,
        },
        Rejected {
            resp: Option<S::Response>,
        },
    }
}

impl<S: Service<Request<ReqBody>>, ReqBody> ResponseFuture<S, ReqBody> {
    fn inner(fut: S::Future) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    fn rejected(resp: S::Response) -> Self {
        Self {
            state: State::Rejected { resp: Some(resp) },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ChallengeBody,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Verifying {
                    verify,
                    req,
                    svc,
                    errors,
                } => {
                    let result = ready!(verify.as_mut().poll(cx));
                    let mut req = req.take().expect("ResponseFuture polled after completion");
                    let mut svc = svc.take().expect("ResponseFuture polled after completion");
                    match result {
                        Ok(token) => {
                            req.extensions_mut().insert(token);
                            let fut = svc.call(req);
                            this.state.set(State::Inner { fut });
                        }
                        Err(e) => {
                            let resp = reject(&e, errors);
                            this.state.set(State::Rejected { resp: None });
                            return Poll::Ready(Ok(resp));
                        }
                    }
                }
                StateProj::Inner { fut } => return fut.poll(cx),
                StateProj::Rejected { resp } => {
                    return Poll::Ready(Ok(resp
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
            }
        }
    }
}

/// Demands scopes of the verified token for every request of the wrapped
/// service: 401 without a verified token, 403 `insufficient_scope` when a
/// scope is missing. Place it inside a [`TokenGuardLayer`]. Works on any
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
                crate::scope::is_valid_scope_token(s),
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
        match self.layer.check(req.extensions()) {
            Ok(()) => RequireScopeFuture {
                state: ScopeState::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(e) => {
                let resp = reject(&e, &error_context(req.extensions()));
                RequireScopeFuture {
                    state: ScopeState::Rejected { resp: Some(resp) },
                }
            }
        }
    }
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
            ScopeStateProj::Rejected { resp } => Poll::Ready(Ok(resp
                .take()
                .expect("RequireScopeFuture polled after completion"))),
        }
    }
}
