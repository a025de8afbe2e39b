//! Access tokens in form-encoded bodies (RFC 6750 §2.2), an opt-in layer.

use crate::common;

use axum::body::Body;
use axum::routing::post;
use axum::{Form, Router};
use common::*;
use http::{Request, StatusCode, header};
use tokenguard::testing::TestIssuer;
use tower::ServiceExt;

#[derive(serde::Deserialize)]
struct Invoice {
    customer: String,
}

fn app(issuer: &TestIssuer) -> Router {
    let guard = issuer.guard(AUD);
    Router::new()
        .route(
            "/invoices",
            post(|Form(f): Form<Invoice>| async move { format!("created for {}", f.customer) }),
        )
        .layer(guard.layer())
        .layer(guard.form_token_layer().max_body(16 * 1024))
}

async fn send(
    app: &Router,
    method: &str,
    content_type: &str,
    body: String,
    auth: Option<&str>,
) -> axum::response::Response {
    let mut req = Request::builder()
        .method(method)
        .uri("/invoices")
        .header(header::CONTENT_TYPE, content_type);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    app.clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn a_token_in_a_form_body_is_accepted_and_the_body_kept() {
    let issuer = TestIssuer::new();
    let app = app(&issuer);
    let token = issuer.token().audience(AUD).mint();
    let res = send(
        &app,
        "POST",
        FORM,
        format!("customer=ACME&access_token={token}"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "created for ACME");
    // With a charset parameter too.
    let res = send(
        &app,
        "POST",
        "application/x-www-form-urlencoded; charset=utf-8",
        format!("access_token={token}&customer=B"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn form_tokens_are_verified_like_any_other() {
    let issuer = TestIssuer::new();
    let app = app(&issuer);
    let expired = issuer.token().audience(AUD).expired().mint();
    let res = send(
        &app,
        "POST",
        FORM,
        format!("customer=A&access_token={expired}"),
        None,
    )
    .await;
    assert_invalid_token(&res, "The access token expired");
}

#[tokio::test]
async fn only_form_bodies_of_methods_with_body_semantics_count() {
    let issuer = TestIssuer::new();
    let app = app(&issuer);
    let token = issuer.token().audience(AUD).mint();
    // Another content type: no token found.
    let res = send(
        &app,
        "POST",
        "text/plain",
        format!("access_token={token}"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&res).as_deref(), Some(r#"Bearer realm="api""#));
    // GET must not carry it (the route answers 405 only after the guard let it through).
    let res = send(&app, "GET", FORM, format!("access_token={token}"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_or_duplicated_form_tokens_are_bad_requests() {
    let issuer = TestIssuer::new();
    let app = app(&issuer);
    let token = issuer.token().audience(AUD).mint();
    let bad_request = |res: &axum::response::Response| {
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            challenge(res)
                .unwrap()
                .contains(r#"error="invalid_request""#)
        );
    };
    bad_request(
        &send(
            &app,
            "POST",
            FORM,
            format!("access_token={token}"),
            Some(&format!("Bearer {token}")),
        )
        .await,
    );
    bad_request(
        &send(
            &app,
            "POST",
            FORM,
            format!("access_token={token}&access_token={token}"),
            None,
        )
        .await,
    );
    bad_request(&send(&app, "POST", FORM, "access_token=a+b".into(), None).await);
    bad_request(&send(&app, "POST", FORM, "access_token=%ZZ".into(), None).await);
}

#[tokio::test]
async fn large_form_bodies_are_refused() {
    let issuer = TestIssuer::new();
    let app = app(&issuer);
    let res = send(
        &app,
        "POST",
        FORM,
        format!("customer={}", "x".repeat(20 * 1024)),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
