//! The remote key cache over loopback HTTP: status view, background refresh
//! honouring `Cache-Control`, rotation through refresh, bounded staleness and
//! backoff while the issuer fails.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use common::server::{Answer, JwksServer};
use common::*;
use tokenguard::testing::TestIssuer;
use tokenguard::{AuthErrorKind, InvalidToken, TokenGuard, TokenGuardBuilder};

async fn setup() -> (TestIssuer, JwksServer) {
    let issuer = TestIssuer::new();
    let server = JwksServer::start(issuer.jwks()).await;
    (issuer, server)
}

fn builder(issuer: &TestIssuer, server: &JwksServer) -> TokenGuardBuilder {
    TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(server.jwks_url())
}

/// Polls `cond` every 10 ms for up to 3 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn status_reports_loads_and_failures() {
    let (issuer, server) = setup().await;
    let guard = builder(&issuer, &server)
        .refetch_cooldown(Duration::from_millis(50))
        .build()
        .unwrap();
    let before = &guard.key_status()[0];
    assert_eq!(
        (
            before.keys_loaded,
            before.last_refresh,
            before.consecutive_failures
        ),
        (0, None, 0)
    );
    assert_eq!(before.source, server.jwks_url());
    assert_eq!(before.issuer.as_deref(), Some(issuer.issuer()));

    guard
        .verify(&issuer.token().audience(AUD).mint())
        .await
        .unwrap();
    let loaded = &guard.key_status()[0];
    assert_eq!(loaded.keys_loaded, 9);
    assert!(
        loaded
            .kids
            .contains(&issuer.kid(tokenguard::Algorithm::ES256))
    );
    assert!(loaded.last_refresh.is_some());
    assert!(loaded.last_error.is_none());

    server.set(Answer::Status(StatusCode::INTERNAL_SERVER_ERROR));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let unknown = issuer
        .token()
        .audience(AUD)
        .kid(Some("rotated-away"))
        .mint();
    assert_eq!(
        guard.verify(&unknown).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::UnknownKey)
    );
    let failing = &guard.key_status()[0];
    assert_eq!(failing.consecutive_failures, 1);
    assert!(
        failing.last_error.as_deref().unwrap().contains("500"),
        "{:?}",
        failing.last_error
    );
    assert_eq!(failing.keys_loaded, 9, "the last good keys stay");
    assert_eq!(failing.last_refresh, loaded.last_refresh);
}

#[tokio::test]
async fn background_refresh_honours_max_age_and_rotates_keys() {
    let (issuer, server) = setup().await;
    server.set_cache_control("public, max-age=0");
    let guard = builder(&issuer, &server)
        .refresh_bounds(Duration::from_millis(100), Duration::from_secs(3600))
        .refetch_cooldown(Duration::from_millis(20))
        .build()
        .unwrap();
    let old_token = issuer.token().audience(AUD).mint();
    guard.verify(&old_token).await.unwrap();
    assert_eq!(server.jwks_hits(), 1);

    // The issuer rotates to a new key set.
    let rotated = TestIssuer::with_issuer(issuer.issuer());
    server.set(Answer::Jwks(rotated.jwks()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Due for refresh: this request is served from the cache at once, and a
    // background refresh starts.
    guard.verify(&old_token).await.unwrap();
    assert!(
        eventually(|| server.jwks_hits() == 2).await,
        "background refresh happened"
    );
    assert!(
        eventually(|| guard.key_status()[0]
            .kids
            .contains(&rotated.kid(tokenguard::Algorithm::ES256)))
        .await
    );
    // The retired key no longer verifies; the new one does.
    assert_eq!(
        guard.verify(&old_token).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::UnknownKey)
    );
    guard
        .verify(&rotated.token().audience(AUD).mint())
        .await
        .unwrap();
}

#[tokio::test]
async fn refresh_interval_applies_without_cache_control() {
    let (issuer, server) = setup().await;
    let guard = builder(&issuer, &server)
        .refresh_interval(Duration::from_millis(100))
        .refetch_cooldown(Duration::from_millis(20))
        .build()
        .unwrap();
    let token = issuer.token().audience(AUD).mint();
    guard.verify(&token).await.unwrap();
    guard.verify(&token).await.unwrap();
    assert_eq!(server.jwks_hits(), 1, "fresh keys are not refetched");
    tokio::time::sleep(Duration::from_millis(120)).await;
    guard.verify(&token).await.unwrap();
    assert!(eventually(|| server.jwks_hits() == 2).await);
}

#[tokio::test]
async fn keys_stop_serving_past_the_staleness_limit() {
    let (issuer, server) = setup().await;
    let guard = builder(&issuer, &server)
        .refresh_interval(Duration::from_millis(50))
        .max_key_staleness(Duration::from_millis(300))
        .refetch_cooldown(Duration::from_millis(20))
        .build()
        .unwrap();
    let app = app(&guard);
    let token = issuer.token().audience(AUD).mint();
    assert_eq!(bearer(&app, "/me", &token).await.status(), StatusCode::OK);
    server.set(Answer::Status(StatusCode::SERVICE_UNAVAILABLE));
    // Past the planned refresh but within the staleness limit: still served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bearer(&app, "/me", &token).await.status(), StatusCode::OK);
    // Past the limit: 503 with Retry-After, never 401.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = bearer(&app, "/me", &token).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key(http::header::RETRY_AFTER));
    assert!(challenge(&res).is_none());
    // The issuer recovers: served again.
    server.set(Answer::Jwks(issuer.jwks()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(bearer(&app, "/me", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn failing_fetches_back_off() {
    let (issuer, server) = setup().await;
    server.set(Answer::Status(StatusCode::INTERNAL_SERVER_ERROR));
    let guard = builder(&issuer, &server)
        .refetch_cooldown(Duration::from_millis(100))
        .max_fetch_backoff(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = issuer.token().audience(AUD).mint();
    let retry_after = |e: tokenguard::AuthError| match e.kind() {
        AuthErrorKind::KeysUnavailable { retry_after } => *retry_after,
        other => panic!("expected KeysUnavailable, got {other:?}"),
    };
    // First failure: the cooldown.
    let first = retry_after(guard.verify(&token).await.unwrap_err());
    assert!(
        first > Duration::from_millis(50) && first <= Duration::from_millis(100),
        "{first:?}"
    );
    assert_eq!(server.jwks_hits(), 1);
    // Within it: no new fetch.
    let _ = guard.verify(&token).await.unwrap_err();
    assert_eq!(server.jwks_hits(), 1);
    // Second failure doubles the wait.
    tokio::time::sleep(Duration::from_millis(110)).await;
    let _ = guard.verify(&token).await.unwrap_err();
    assert_eq!(server.jwks_hits(), 2);
    let waiting = retry_after(guard.verify(&token).await.unwrap_err());
    assert!(waiting > Duration::from_millis(150), "{waiting:?}");
    assert_eq!(server.jwks_hits(), 2);
    assert_eq!(guard.key_status()[0].consecutive_failures, 2);
}

/// A fetch cut off by its runtime shutting down must not leave the guard
/// joining a dead fetch forever.
#[test]
fn a_fetch_interrupted_by_runtime_shutdown_does_not_wedge_the_guard() {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    let server_rt = rt();
    let issuer = TestIssuer::new();
    // A server that answers slowly the first time.
    let slow = server_rt.block_on(async {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let jwks = issuer.jwks();
        let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let app = axum::Router::new().route(
            "/jwks",
            get(move || {
                let (jwks, first) = (jwks.clone(), first.clone());
                async move {
                    if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    axum::Json(jwks)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(slow)
        .refetch_cooldown(Duration::from_millis(50))
        .build()
        .unwrap();
    let token = issuer.token().audience(AUD).mint();

    // Runtime A starts the fetch and goes away mid-fetch.
    let a = rt();
    let g = guard.clone();
    let t = token.clone();
    a.block_on(async move {
        let _ = tokio::time::timeout(Duration::from_millis(100), g.verify(&t)).await;
    });
    drop(a);

    // Runtime B: after the cooldown and backoff, a new fetch succeeds.
    let b = rt();
    let ok = b.block_on(async {
        for _ in 0..100 {
            if guard.verify(&token).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    assert!(ok, "the guard fetched again after the interrupted fetch");
    drop(server_rt);
}

#[tokio::test]
async fn retry_after_reports_the_backed_off_wait() {
    let (issuer, server) = setup().await;
    server.set(Answer::Status(StatusCode::INTERNAL_SERVER_ERROR));
    let guard = builder(&issuer, &server)
        .refetch_cooldown(Duration::from_millis(200))
        .max_fetch_backoff(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = issuer.token().audience(AUD).mint();
    let wait = |e: tokenguard::AuthError| match e.kind() {
        AuthErrorKind::KeysUnavailable { retry_after } => *retry_after,
        other => panic!("expected KeysUnavailable, got {other:?}"),
    };
    let first = wait(guard.verify(&token).await.unwrap_err());
    assert!(
        first > Duration::from_millis(150) && first <= Duration::from_millis(200),
        "{first:?}"
    );
    tokio::time::sleep(first + Duration::from_millis(10)).await;
    // The second failure itself reports the doubled wait.
    let second = wait(guard.verify(&token).await.unwrap_err());
    assert_eq!(server.jwks_hits(), 2);
    assert!(second > Duration::from_millis(350), "{second:?}");
    // Waiting that long allows the next attempt.
    tokio::time::sleep(second + Duration::from_millis(10)).await;
    let _ = guard.verify(&token).await.unwrap_err();
    assert_eq!(server.jwks_hits(), 3);
}

#[tokio::test]
async fn extreme_durations_do_not_overflow() {
    let (issuer, server) = setup().await;
    server.set_cache_control("max-age=99999999999");
    let guard = builder(&issuer, &server)
        .refresh_interval(Duration::MAX)
        .refresh_bounds(Duration::MAX, Duration::MAX)
        .max_key_staleness(Duration::MAX)
        .max_fetch_backoff(Duration::MAX)
        .refetch_cooldown(Duration::MAX)
        .fetch_timeout(Duration::from_secs(5))
        .token_cache(tokenguard::TokenCacheConfig::default().max_ttl(Duration::MAX))
        .build()
        .unwrap();
    let token = issuer.token().audience(AUD).mint();
    guard.verify(&token).await.unwrap();
    guard.verify(&token).await.unwrap();
    let unknown = issuer.token().audience(AUD).kid(Some("nope")).mint();
    assert_eq!(
        guard.verify(&unknown).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::UnknownKey)
    );
}
