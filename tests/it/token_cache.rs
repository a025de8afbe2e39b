//! The verified-token cache, through the guard.

use crate::common;

use std::time::Duration;

use common::*;
use tokenguard::testing::{TestIssuer, TestIssuerServer};
use tokenguard::{AuthErrorKind, InvalidToken, NumericDate, TokenCacheConfig};

fn kind(
    r: Result<std::sync::Arc<tokenguard::AccessToken>, tokenguard::AuthError>,
) -> AuthErrorKind {
    r.unwrap_err().kind().clone()
}

#[tokio::test]
async fn repeated_tokens_share_one_verified_instance() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let token = issuer.token().audience(AUD).mint();
    let first = guard.verify(&token).await.unwrap();
    let second = guard.verify(&token).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "served from the cache"
    );

    let uncached = issuer
        .guard_builder(AUD)
        .disable_token_cache()
        .build()
        .unwrap();
    let a = uncached.verify(&token).await.unwrap();
    let b = uncached.verify(&token).await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &b), "verified twice");
}

#[tokio::test]
async fn expiry_is_checked_on_every_hit() {
    let issuer = TestIssuer::new();
    let guard = issuer
        .guard_builder(AUD)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let now = NumericDate::now().as_secs();
    let token = issuer
        .token()
        .audience(AUD)
        .claim("iat", now)
        .claim("exp", now + 1)
        .mint();
    guard.verify(&token).await.unwrap();
    while NumericDate::now().as_secs() <= now + 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        kind(guard.verify(&token).await),
        AuthErrorKind::InvalidToken(InvalidToken::Expired)
    );
}

#[tokio::test]
async fn max_ttl_forces_a_new_verification() {
    let issuer = TestIssuer::new();
    let guard = issuer
        .guard_builder(AUD)
        .token_cache(TokenCacheConfig::default().max_ttl(Duration::ZERO))
        .build()
        .unwrap();
    let token = issuer.token().audience(AUD).mint();
    let first = guard.verify(&token).await.unwrap();
    // An entry with a TTL of zero serves until the end of the current second at most.
    let start = NumericDate::now().as_secs();
    while NumericDate::now().as_secs() == start {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = guard.verify(&token).await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
}

#[tokio::test]
async fn only_the_exact_token_hits() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let token = issuer.token().audience(AUD).mint();
    guard.verify(&token).await.unwrap();
    // Same header and payload, altered signature.
    let mut altered = token.clone().into_bytes();
    let i = altered.len() - 3;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(
        kind(guard.verify(&altered).await),
        AuthErrorKind::InvalidToken(InvalidToken::BadSignature)
    );
    // Same signature, another payload.
    let other = issuer.token().audience(AUD).subject("admin").mint();
    let parts: Vec<&str> = token.split('.').collect();
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_eq!(
        kind(guard.verify(&spliced).await),
        AuthErrorKind::InvalidToken(InvalidToken::BadSignature)
    );
    // Failures are not cached as good: the genuine token still verifies, the bad ones still fail.
    guard.verify(&token).await.unwrap();
    assert!(guard.verify(&altered).await.is_err());
}

#[tokio::test]
async fn entries_of_a_retired_key_are_dropped() {
    let server = TestIssuerServer::start().await.unwrap();
    let guard = server
        .guard_builder(AUD)
        .refetch_cooldown(Duration::from_millis(30))
        .build()
        .unwrap();
    let old = server.issuer();
    let token = old.token().audience(AUD).mint();
    guard.verify(&token).await.unwrap();
    guard.verify(&token).await.unwrap();
    server.rotate();
    server.retire(&old);
    tokio::time::sleep(Duration::from_millis(40)).await;
    // A new kid makes the guard refetch; the cached token's key is gone.
    let new = server.issuer().token().audience(AUD).mint();
    guard.verify(&new).await.unwrap();
    assert_eq!(
        kind(guard.verify(&token).await),
        AuthErrorKind::InvalidToken(InvalidToken::UnknownKey)
    );
}
