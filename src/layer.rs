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
use std::task::{Context, Poll, ready};

use http::{HeaderMap, HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use futures_util::future::BoxFuture;

use crate::bind::Extra;
use crate::challenge::{ChallengeBody, DPOP_NONCE};
use crate::guard::{Admission, Outcome, TokenGuard};
use crate::observe::reject_request;
use crate::syntax::Scheme;

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

impl TokenGuard {
    /// A layer that refuses requests without a valid access token and puts
    /// the verified `Arc<AccessToken>` into the request extensions.
    pub fn layer(&self) -> TokenGuardLayer {
        TokenGuardLayer::new(self.clone(), false)
    }

    /// Like [`layer`](Self::layer), but lets requests without any access
    /// token through (a present but invalid token is still refused). Handlers
    /// then decide, e.g. with `Option<Claims<C>>`.
    pub fn optional_layer(&self) -> TokenGuardLayer {
        TokenGuardLayer::new(self.clone(), true)
    }
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
    inner_service_accessors!();
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
            Outcome::Pass { private, extra } => State::Inner {
                fut: self.inner.call(req),
                private,
                extra,
            },
            Outcome::Refuse(e, scheme) => State::Rejected {
                resp: Some(reject_request(
                    &e,
                    self.guard.challenge_config(scheme),
                    req.headers(),
                )),
            },
            Outcome::Pending {
                admission,
                scheme,
                private,
            } => {
                // `poll_ready` was called on `self.inner`, so that instance is
                // the one allowed to take this request: it goes into the
                // future, and a fresh clone stays for the next `poll_ready`.
                let clone = self.inner.clone();
                State::Verifying {
                    admission,
                    pending: Some((req, std::mem::replace(&mut self.inner, clone))),
                    guard: self.guard.clone(),
                    scheme,
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
            admission: BoxFuture<'static, Admission>,
            pending: Option<(Request<ReqBody>, S)>,
            guard: TokenGuard,
            scheme: Scheme,
            private: bool,
        },
        Inner {
            #[pin]
            fut: S::Future,
            private: bool,
            extra: Extra,
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
                    admission,
                    pending,
                    guard,
                    scheme,
                    private,
                } => {
                    let admitted = ready!(admission.as_mut().poll(cx));
                    let (private, scheme) = (*private, *scheme);
                    let Some((mut req, mut svc)) = pending.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    match admitted {
                        Ok((token, extra)) => {
                            guard.admit(&mut req, token, scheme);
                            let fut = svc.call(req);
                            this.state.set(State::Inner {
                                fut,
                                private,
                                extra,
                            });
                        }
                        Err(e) => {
                            let resp =
                                reject_request(&e, guard.challenge_config(scheme), req.headers());
                            this.state.set(State::Rejected { resp: Some(resp) });
                        }
                    }
                }
                StateProj::Inner {
                    fut,
                    private,
                    extra,
                } => {
                    let mut result = ready!(fut.poll(cx));
                    if let Ok(resp) = &mut result {
                        if *private {
                            mark_private(resp.headers_mut());
                        }
                        // RFC 9449 §8.2: a fresh nonce before the current expires.
                        if let Some(nonce) = extra.nonce.take()
                            && let Ok(value) = HeaderValue::try_from(nonce)
                        {
                            resp.headers_mut().insert(DPOP_NONCE.clone(), value);
                        }
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
