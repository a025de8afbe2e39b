//! Several issuers behind one guard, each with its own loopback key server.

use crate::common;

use axum::http::StatusCode;
use common::server::JwksServer;
use common::*;
use tokenguard::testing::TestIssuer;
use tokenguard::{Algorithm, AuthErrorKind, InvalidToken, ScopeSource, TokenGuard};

/// Two issuers whose key sets use the same `kid`s, served over loopback HTTP.
async fn two_issuers() -> (TestIssuer, TestIssuer, JwksServer, JwksServer, TokenGuard) {
    // Start servers first to learn their URLs, which are the issuers.
    let server_a = JwksServer::start(serde_json::json!({"keys": []})).await;
    let server_b = JwksServer::start(serde_json::json!({"keys": []})).await;
    let a = TestIssuer::with_issuer(&server_a.base);
    let b = TestIssuer::with_issuer(&server_b.base);
    // Same kid for both issuers' ES256 keys.
    let rename = |issuer: &TestIssuer| {
        let mut jwks = issuer.jwks();
        for key in jwks["keys"].as_array_mut().unwrap() {
            if key["alg"] == "ES256" {
                key["kid"] = "shared-kid".into();
            }
        }
        jwks
    };
    server_a.set(common::server::Answer::Jwks(rename(&a)));
    server_b.set(common::server::Answer::Jwks(rename(&b)));
    let guard_a = TokenGuard::builder()
        .issuer(&server_a.base)
        .audience(AUD)
        .build()
        .unwrap();
    let guard_b = TokenGuard::builder()
        .issuer(&server_b.base)
        .audience("https://other-api")
        .scope_source(ScopeSource::Scp)
        .build()
        .unwrap();
    let guard = TokenGuard::multi_issuer([guard_a, guard_b]).unwrap();
    (a, b, server_a, server_b, guard)
}

#[tokio::test]
async fn each_issuer_verifies_with_its_own_keys_and_rules() {
    let (a, b, server_a, server_b, guard) = two_issuers().await;
    let token_a = a
        .token()
        .audience(AUD)
        .kid(Some("shared-kid"))
        .scope("read")
        .mint();
    let token_b = b
        .token()
        .audience("https://other-api")
        .kid(Some("shared-kid"))
        .claim("scp", vec!["write"])
        .mint();

    let ok_a = guard.verify(&token_a).await.unwrap();
    assert!(ok_a.scopes().contains("read"));
    let ok_b = guard.verify(&token_b).await.unwrap();
    assert!(
        ok_b.scopes().contains("write"),
        "issuer B reads scopes from `scp`"
    );

    // Discovery and keys were fetched once per issuer.
    assert_eq!((server_a.discovery_hits(), server_a.jwks_hits()), (1, 1));
    assert_eq!((server_b.discovery_hits(), server_b.jwks_hits()), (1, 1));

    // Per-issuer audiences: A's audience is not valid for B.
    let b_for_a_audience = b.token().audience(AUD).kid(Some("shared-kid")).mint();
    assert_eq!(
        guard.verify(&b_for_a_audience).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::WrongAudience)
    );
}

#[tokio::test]
async fn keys_of_one_issuer_never_verify_a_token_claiming_another() {
    let (a, b, _server_a, server_b, guard) = two_issuers().await;
    // Signed with A's key (same kid as B's key), claiming to be from B.
    let forged = a
        .token()
        .issuer(b.issuer())
        .audience("https://other-api")
        .kid(Some("shared-kid"))
        .mint();
    assert_eq!(
        guard.verify(&forged).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::BadSignature)
    );
    assert_eq!(server_b.jwks_hits(), 1);
}

#[tokio::test]
async fn unknown_issuers_are_refused_without_network_access() {
    let (a, _b, server_a, server_b, guard) = two_issuers().await;
    let app = app(&guard);
    let stranger = TestIssuer::with_issuer("http://127.0.0.1:9/evil");
    let token = stranger.token().audience(AUD).mint();
    assert_invalid_token(
        &bearer(&app, "/me", &token).await,
        "The access token issuer is not trusted",
    );
    // A token of A with another issuer string (trailing slash) is unknown too.
    let slash = a
        .token()
        .issuer(&format!("{}/", a.issuer()))
        .audience(AUD)
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &slash).await,
        "The access token issuer is not trusted",
    );
    let no_iss = a.token().without_claim("iss").audience(AUD).mint();
    assert_invalid_token(
        &bearer(&app, "/me", &no_iss).await,
        "The access token lacks a required claim",
    );
    let total = server_a.discovery_hits()
        + server_a.jwks_hits()
        + server_b.discovery_hits()
        + server_b.jwks_hits();
    assert_eq!(total, 0, "no fetch for tokens of unknown issuers");
    // A genuine token still works through the same router.
    let good = a.token().audience(AUD).algorithm(Algorithm::EdDSA).mint();
    assert_eq!(bearer(&app, "/me", &good).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn multi_issuer_configuration_errors() {
    let a = TestIssuer::new();
    let err = TokenGuard::multi_issuer([a.guard(AUD), a.guard(AUD)]).unwrap_err();
    assert_eq!(
        err,
        tokenguard::BuildError::DuplicateIssuer(a.issuer().to_owned())
    );
    let no_iss = TokenGuard::builder()
        .audience(AUD)
        .insecure_skip_issuer_check()
        .jwks_json(a.jwks().to_string())
        .build()
        .unwrap();
    assert_eq!(
        TokenGuard::multi_issuer([no_iss]).unwrap_err(),
        tokenguard::BuildError::MissingIssuer
    );
    assert!(TokenGuard::multi_issuer(Vec::new()).is_err());
}
