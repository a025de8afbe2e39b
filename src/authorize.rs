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
use crate::observe::reject;

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
        match self.layer.check(req.extensions()) {
            Ok(()) => RequireScopeFuture {
                state: ScopeState::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(e) => {
                let resp = reject(&e, &challenge_config(req.extensions()));
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
