//! Helpers shared by the integration tests.
#![allow(dead_code)]

use axum::body::Body;
use axum::response::Response;
use axum::{Router, routing::get};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokenguard::{AccessTokenClaims, Claims, TokenGuard};
use tower::ServiceExt;

pub const AUD: &str = "https://api.example.com";

/// A router with `GET /me` (returns `sub`) behind `guard`.
pub fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route(
            "/me",
            get(|Claims(c): Claims<AccessTokenClaims>| async move { c.sub.clone().unwrap_or_default() }),
        )
        .layer(guard.layer())
}

/// Sends `GET path` with the given `Authorization` header values.
pub async fn send(app: &Router, path: &str, authorization: &[&str]) -> Response {
    let mut req = Request::get(path);
    for value in authorization {
        req = req.header(header::AUTHORIZATION, *value);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Sends `GET path` with `Authorization: Bearer token`.
pub async fn bearer(app: &Router, path: &str, token: &str) -> Response {
    send(app, path, &[&format!("Bearer {token}")]).await
}

/// The `WWW-Authenticate` header, if any.
pub fn challenge(res: &Response) -> Option<String> {
    res.headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Asserts a 401 `invalid_token` with the given description.
pub fn assert_invalid_token(res: &Response, description: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(res).as_deref(),
        Some(
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
            )
            .as_str()
        )
    );
}

/// The response body as a string.
pub async fn body(res: Response) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}
