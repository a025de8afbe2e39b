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

use http::{HeaderMap, HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::claims::AccessToken;
use crate::error::{AuthError, ChallengeBody, ErrorContext};
use crate::guard::{GuardErrors, Outcome, TokenGuard};
use crate::jwt::Verified;

/// The challenge settings of the guard that handled this request (the
/// default ones outside any guard).
pub(crate) fn error_context(ext: &http::Extensions) -> Arc<ErrorContext> {
    ext.get::<GuardErrors>()
        .map(|g| g.0.clone())
        .unwrap_or_default()
}

fn reject<B: ChallengeBody>(err: &AuthError, ctx: &ErrorContext) -> Response<B> {
    tracing::debug!(status = err.status().as_u16(), reason = %err, "request refused");
    err.to_response(ctx)
}

/// RFC 6750 §2.3: a response to a request authenticated by a URI query token
/// must not be stored by shared caches.
fn mark_private(headers: &mut HeaderMap) {
    let mut value = String::from("private");
    for directive in headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        if directive.eq_ignore_ascii_case("private") || directive.eq_ignore_ascii_case("no-store") {
            return;
        }
        if !directive.eq_ignore_ascii_case("public") {
            value.push_str(", ");
            value.push_str(directive);
        }
    }
    let value =
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("private"));
    headers.insert(header::CACHE_CONTROL, value);
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
        let state = match self.guard.authenticate(&mut req, self.optional) {
            Outcome::Pass { private } => State::Inner {
                fut: self.inner.call(req),
                private,
            },
            Outcome::Refuse(e) => State::Rejected {
                resp: Some(reject(&e, self.guard.errors())),
            },
            Outcome::Pending { verify, private } => {
                // `poll_ready` was called on `self.inner`, so that instance is
                // the one allowed to take this request: it goes into the
                // future, and a fresh clone stays for the next `poll_ready`.
                let clone = self.inner.clone();
                State::Verifying {
                    verify,
                    pending: Some((req, std::mem::replace(&mut self.inner, clone))),
                    guard: self.guard.clone(),
                    private,
                }
            }
        };
        ResponseFuture { state }
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
            pending: Option<(Request<ReqBody>, S)>,
            guard: TokenGuard,
            private: bool,
        },
        Inner {
            #[pin]
            fut: S::Future,
            private: bool,
        },
        Rejected {
            resp: Option<S::Response>,
        },
        Done,
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
                    pending,
                    guard,
                    private,
                } => {
                    let verified = ready!(verify.as_mut().poll(cx));
                    let private = *private;
                    let Some((mut req, mut svc)) = pending.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    match guard.admit(&mut req, verified) {
                        Ok(()) => {
                            let fut = svc.call(req);
                            this.state.set(State::Inner { fut, private });
                        }
                        Err(e) => {
                            let resp = reject(&e, guard.errors());
                            this.state.set(State::Rejected { resp: Some(resp) });
                        }
                    }
                }
                StateProj::Inner { fut, private } => {
                    let mut result = ready!(fut.poll(cx));
                    if *private && let Ok(resp) = &mut result {
                        mark_private(resp.headers_mut());
                    }
                    return Poll::Ready(result);
                }
                StateProj::Rejected { resp } => match resp.take() {
                    Some(resp) => return Poll::Ready(Ok(resp)),
                    None => this.state.set(State::Done),
                },
                // Polled after completion: a contract violation by the
                // caller; never resolves rather than panicking.
                StateProj::Done => return Poll::Pending,
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
            // `None` only when polled after completion: never resolves again.
            ScopeStateProj::Rejected { resp } => {
                resp.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r)))
            }
        }
    }
}
