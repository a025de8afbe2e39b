//! The `testing` feature's issuer and its loopback server.

use crate::common;

use std::time::Duration;

use common::*;
use tokenguard::testing::{TestIssuer, TestIssuerServer};
use tokenguard::{Algorithm, AuthErrorKind, InvalidToken, NumericDate};

#[tokio::test]
async fn mints_what_it_is_asked_for() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let token = issuer
        .token()
        .audience(AUD)
        .subject("u1")
        .client_id("c1")
        .scope("a b")
        .claim("tenant", "t1")
        .expires_in(Duration::from_secs(120))
        .mint();
    let verified = guard.verify(&token).await.unwrap();
    let c = verified.claims();
    assert_eq!(c.sub.as_deref(), Some("u1"));
    assert_eq!(c.client_id.as_deref(), Some("c1"));
    assert_eq!(c.iss.as_deref(), Some(issuer.issuer()));
    assert_eq!(c.extra["tenant"], "t1");
    assert_eq!(c.exp.unwrap().as_secs() - c.iat.unwrap().as_secs(), 120);
    assert!((c.iat.unwrap().as_secs() - NumericDate::now().as_secs()).abs() <= 2);
    assert!(c.jti.is_some());
    assert_eq!(verified.scopes().iter().collect::<Vec<_>>(), ["a", "b"]);
    // Each token gets its own jti.
    let again = guard
        .verify(&issuer.token().audience(AUD).mint())
        .await
        .unwrap();
    assert_ne!(again.claims().jti, c.jti);
}

#[tokio::test]
async fn negative_variants_are_refused() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let kind = |r: Result<_, tokenguard::AuthError>| r.unwrap_err().kind().clone();
    let invalid = |reason| AuthErrorKind::InvalidToken(reason);
    assert_eq!(
        kind(
            guard
                .verify(&issuer.token().audience(AUD).expired().mint())
                .await
        ),
        invalid(InvalidToken::Expired)
    );
    assert_eq!(
        kind(guard.verify(&issuer.token().wrong_audience().mint()).await),
        invalid(InvalidToken::WrongAudience)
    );
    assert_eq!(
        kind(
            guard
                .verify(&issuer.token().audience(AUD).untyped().mint())
                .await
        ),
        invalid(InvalidToken::WrongType)
    );
    // Another issuer's keys.
    let other = TestIssuer::new();
    assert_eq!(
        kind(guard.verify(&other.token().audience(AUD).mint()).await),
        invalid(InvalidToken::UnknownKey)
    );
}

#[tokio::test]
async fn every_algorithm_round_trips() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    for alg in tokenguard::DEFAULT_ALGORITHMS {
        let token = issuer.token().audience(AUD).algorithm(*alg).mint();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').next().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], serde_json::to_value(alg).unwrap());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], issuer.kid(*alg));
        assert!(guard.verify(&token).await.is_ok(), "{alg:?}");
    }
}

#[tokio::test]
async fn served_issuer_supports_discovery_and_rotation() {
    let server = TestIssuerServer::start().await.unwrap();
    let guard = server
        .guard_builder(AUD)
        .refetch_cooldown(Duration::from_millis(50))
        .build()
        .unwrap();
    let first = server.issuer();
    assert_eq!(first.issuer(), server.url());
    let old_token = first
        .token()
        .audience(AUD)
        .algorithm(Algorithm::EdDSA)
        .mint();
    guard.verify(&old_token).await.unwrap();
    assert_eq!(
        (server.discovery_requests(), server.jwks_requests()),
        (1, 1)
    );

    // Rotate: the new key signs; both are published.
    let previous = server.rotate();
    assert_eq!(previous.kid(Algorithm::ES256), first.kid(Algorithm::ES256));
    let new_token = server.issuer().token().audience(AUD).mint();
    tokio::time::sleep(Duration::from_millis(60)).await;
    guard.verify(&new_token).await.unwrap();
    assert_eq!(
        server.jwks_requests(),
        2,
        "the unknown kid caused one refetch"
    );
    guard.verify(&old_token).await.unwrap();

    // Retire the old keys: after the next refetch, its tokens are refused.
    server.retire(&previous);
    assert_eq!(server.published().len(), 1);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let unknown = server
        .issuer()
        .token()
        .audience(AUD)
        .kid(Some("force-refetch"))
        .mint();
    let _ = guard.verify(&unknown).await;
    assert_eq!(server.jwks_requests(), 3);
    assert_eq!(
        guard.verify(&old_token).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::UnknownKey)
    );
    guard.verify(&new_token).await.unwrap();
}

#[tokio::test]
async fn served_issuer_stops_when_dropped() {
    let server = TestIssuerServer::start().await.unwrap();
    let url = server.url().to_owned();
    let guard = tokenguard::TokenGuard::builder()
        .issuer(&url)
        .audience(AUD)
        .build()
        .unwrap();
    drop(server);
    tokio::task::yield_now().await;
    assert!(guard.warm_up().await.is_err());
}
