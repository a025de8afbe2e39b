//! The access token in a form-encoded body (RFC 6750 §2.2), as an opt-in.
//!
//! Reading a body means buffering it, so this is a layer of its own, for
//! axum bodies, placed *outside* the guard's layer. It reads the
//! `access_token` parameter of `application/x-www-form-urlencoded` bodies of
//! requests whose method defines body semantics (RFC 6750 §2.2: never `GET`,
//! `HEAD`, `DELETE`, `OPTIONS`, `TRACE` or `CONNECT`), hands
//! it to the guard, and passes the body on unchanged so handlers can still
//! read the form. A token sent both in the body and in the `Authorization`
//! header is a malformed request (400). RFC 6750 recommends the header: use
//! this only for clients that cannot send it.
//!
//! ```
//! use axum::{Router, routing::post};
//! use tokenguard::testing::TestIssuer;
//!
//! let guard = TestIssuer::new().guard("https://api.example.com");
//! let app: Router = Router::new()
//!     .route("/invoices", post(|| async { "created" }))
//!     .layer(guard.layer())
//!     .layer(guard.form_token_layer()); // outermost: runs first
//! ```

use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::{BoxFuture, Either};
use http::{Method, Request, Response, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::credential::{FormToken, decode_param, is_access_token_name, name_value};
use crate::error::{AuthError, InvalidRequest};
use crate::guard::TokenGuard;
use crate::observe::body_too_large;

impl TokenGuard {
    /// A layer that reads the access token from form-encoded request bodies
    /// (RFC 6750 §2.2), for clients that cannot send the `Authorization`
    /// header. Place it outside [`layer`](Self::layer). See
    /// [`FormTokenLayer`](FormTokenLayer).
    pub fn form_token_layer(&self) -> FormTokenLayer {
        FormTokenLayer::new(self.inner.request.max_token_len)
    }
}

/// Reads the access token from form-encoded bodies. Made by
/// [`TokenGuard::form_token_layer`](crate::TokenGuard::form_token_layer).
#[derive(Debug, Clone)]
pub struct FormTokenLayer {
    max_token_len: usize,
    max_body: usize,
}

impl FormTokenLayer {
    pub(crate) fn new(max_token_len: usize) -> Self {
        Self {
            max_token_len,
            max_body: 64 * 1024,
        }
    }

    /// The largest form body read, in bytes (default 64 KiB); larger form
    /// bodies are answered with 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for FormTokenLayer {
    type Service = FormTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FormTokenService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`FormTokenLayer`].
#[derive(Debug, Clone)]
pub struct FormTokenService<S> {
    inner: S,
    layer: FormTokenLayer,
}

impl<S> FormTokenService<S> {
    inner_service_accessors!();
}

fn is_form(req: &Request<Body>) -> bool {
    // Methods whose request content has no defined meaning (RFC 9110 §9.3).
    if matches!(
        *req.method(),
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    ) {
        return false;
    }
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The `access_token` parameter of a form body, if any.
fn form_token(body: &[u8], max_len: usize) -> Option<Result<String, AuthError>> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&') {
        // A name without `=` has an empty value.
        let (name, value) = name_value(pair).unwrap_or((pair, b""));
        if !is_access_token_name(name) {
            continue;
        }
        if found.is_some() {
            return Some(Err(AuthError::invalid_request(
                InvalidRequest::SeveralCredentials,
            )));
        }
        found = Some(match std::str::from_utf8(value) {
            Ok(value) => decode_param(value, max_len, true),
            Err(_) => Err(AuthError::invalid_request(
                InvalidRequest::MalformedCredentials,
            )),
        });
    }
    found
}

impl<S> Service<Request<Body>> for FormTokenService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !is_form(&req) {
            return Either::Left(self.inner.call(req));
        }
        // The body must be read first: the instance made ready by
        // `poll_ready` goes into the future, a clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let FormTokenLayer {
            max_token_len,
            max_body,
        } = self.layer.clone();
        Either::Right(Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, max_body).await {
                Ok(bytes) => bytes,
                Err(_) => return Ok(body_too_large(max_body)),
            };
            if let Some(token) = form_token(&bytes, max_token_len) {
                parts.extensions.insert(FormToken(token));
            }
            inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AuthErrorKind;

    #[test]
    fn form_parameters() {
        let token = |b: &str| form_token(b.as_bytes(), 64).map(|r| r.map_err(|e| e.kind().clone()));
        assert_eq!(
            token("a=1&access_token=abc.def&b=2"),
            Some(Ok("abc.def".into()))
        );
        assert_eq!(token("access_token=ab%2Ecd"), Some(Ok("ab.cd".into())));
        // Names are decoded too.
        assert_eq!(token("access%5Ftoken=ab"), Some(Ok("ab".into())));
        assert!(matches!(
            token("access_token=a&access%5ftoken=b"),
            Some(Err(_))
        ));
        assert_eq!(
            token("access_token="),
            Some(Err(AuthErrorKind::InvalidRequest(
                InvalidRequest::MalformedCredentials
            )))
        );
        assert_eq!(token("a=1"), None);
        assert!(matches!(
            token("access_token=a&access_token=b"),
            Some(Err(_))
        ));
        // `+` is a space in form encoding: not a token68.
        assert!(matches!(token("access_token=a+b"), Some(Err(_))));
    }
}
