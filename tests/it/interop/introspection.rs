//! Token introspection (RFC 7662) against the real server: oidc-provider
//! issues opaque access tokens for [`OPAQUE_API`] and introspects them for
//! the resource server's own clients (`tokenguard-rs-*`, one per client
//! authentication method), and revokes them (RFC 7009).
//!
//! The guards know only the issuer: the introspection endpoint comes from
//! discovery. The server counts the requests to its introspection endpoint
//! (`GET /test/introspections`); tests that assert exact counts have a
//! server of their own.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{StatusCode, header};
use serde_json::Value;
use tokenguard::{
    Algorithm, AuthErrorKind, ClientAuth, IntrospectionConfig, InvalidToken, TokenGuard,
};

use super::{
    AuthServer, CLIENT_ID, CLIENT_SECRET, ES256_API, access_token, app, assert_invalid_token,
    assert_ok, assert_refused, call, challenge, decode, form, get_json, guard_builder, http_client,
    shared_server, start_server,
};

// ---------------------------------------------------------------------------
// What interop/server.mjs configures for introspection.
// ---------------------------------------------------------------------------

/// The resource whose access tokens are opaque.
const OPAQUE_API: &str = "https://api.example.com/opaque";
const RS_BASIC_ID: &str = "tokenguard-rs-basic";
const RS_BASIC_SECRET: &str = "tokenguard-rs-basic-secret-0123456789abcdef";
const RS_POST_ID: &str = "tokenguard-rs-post";
const RS_POST_SECRET: &str = "tokenguard-rs-post-secret-0123456789abcdef";
/// `private_key_jwt` (ES256) with the server's `RS_KEY`.
const RS_JWT_ID: &str = "tokenguard-rs-jwt";
/// The lifetime of the server's access tokens.
const TOKEN_TTL: i64 = 300;

const INACTIVE: &str = "The access token is not active";

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn basic() -> ClientAuth {
    ClientAuth::client_secret_basic(RS_BASIC_ID, RS_BASIC_SECRET)
}

fn post() -> ClientAuth {
    ClientAuth::client_secret_post(RS_POST_ID, RS_POST_SECRET)
}

/// The private key of `tokenguard-rs-jwt` at `server`.
fn rs_key(server: &AuthServer) -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_ec_pem(server.rs_key_pem.as_bytes())
        .expect("RS_KEY is a PKCS#8 EC key")
}

fn private_key_jwt(server: &AuthServer) -> ClientAuth {
    ClientAuth::private_key_jwt(RS_JWT_ID, rs_key(server), Algorithm::ES256, None)
}

/// A guard for [`OPAQUE_API`] that introspects with `config`.
fn opaque_guard(issuer: &str, config: IntrospectionConfig) -> TokenGuard {
    TokenGuard::builder()
        .issuer(issuer)
        .audience(OPAQUE_API)
        .introspection(config)
        .build()
        .unwrap()
}

/// The JWT resources of [`guard_builder`] and [`OPAQUE_API`], with `config`.
fn mixed_guard(issuer: &str, config: IntrospectionConfig) -> TokenGuard {
    guard_builder(issuer)
        .audience(OPAQUE_API)
        .introspection(config)
        .build()
        .unwrap()
}

/// An opaque access token for [`OPAQUE_API`] with `scope` (client
/// credentials grant of `tokenguard-interop`).
async fn opaque_token(http: &reqwest::Client, issuer: &str, scope: &str) -> String {
    let (token, granted) = access_token(http, issuer, OPAQUE_API, scope).await;
    assert_eq!(granted, scope);
    assert!(
        !token.contains('.'),
        "the token for {OPAQUE_API} must be opaque: {token}"
    );
    token
}

/// The number of requests the server's introspection endpoint has received.
async fn introspections(http: &reqwest::Client, issuer: &str) -> u64 {
    get_json(http, &format!("{issuer}/test/introspections")).await["count"]
        .as_u64()
        .expect("a count")
}

/// Asks the introspection endpoint directly, as `tokenguard-rs-basic`.
async fn introspect_directly(http: &reqwest::Client, issuer: &str, token: &str) -> Value {
    let meta = get_json(http, &format!("{issuer}/.well-known/openid-configuration")).await;
    let res = http
        .post(meta["introspection_endpoint"].as_str().unwrap())
        .basic_auth(RS_BASIC_ID, Some(RS_BASIC_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", token),
            ("token_type_hint", "access_token"),
        ]))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Revokes `token` at the revocation endpoint (RFC 7009) as the client it
/// was issued to.
async fn revoke(http: &reqwest::Client, issuer: &str, token: &str) {
    let meta = get_json(http, &format!("{issuer}/.well-known/openid-configuration")).await;
    let res = http
        .post(meta["revocation_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", token),
            ("token_type_hint", "access_token"),
        ]))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, StatusCode::OK, "{}", res.text().await.unwrap());
}

/// A random token-shaped string the server never issued.
fn random_token() -> String {
    let mut out = Vec::with_capacity(32);
    for _ in 0..4 {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.extend_from_slice(&h.finish().to_le_bytes());
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// 503 with `Retry-After` (whole seconds, at least 1) and no challenge: the
/// token was not judged, the client may retry.
fn assert_unavailable(res: &Response) {
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        challenge(res)
    );
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After: {retry_after}"
    );
    assert_eq!(challenge(res), None);
}

fn assert_unavailable_error(result: Result<impl std::fmt::Debug, tokenguard::AuthError>) {
    let err = result.expect_err("the token cannot be checked");
    assert!(
        matches!(err.kind(), AuthErrorKind::IntrospectionUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.retry_after()
            .is_some_and(|d| d >= Duration::from_secs(1))
    );
}

/// `n` concurrent GET requests with `tokens[i % len]`, each its own task.
async fn concurrent_gets(app: &Router, tokens: &[String], n: usize) -> Vec<Response> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let app = app.clone();
        let token = tokens[i % tokens.len()].clone();
        tasks.spawn(async move { call(&app, "GET", &token).await });
    }
    tasks.join_all().await
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

/// Opaque tokens of the server are introspected with `auth`, become the same
/// verified token a JWT would (issuer, audience, client, times, scopes), and
/// their scopes are enforced by `RequireScope`.
async fn introspected_and_scopes_enforced(auth: impl FnOnce(&AuthServer) -> ClientAuth) {
    let server = shared_server().await;
    let http = http_client();
    let guard = opaque_guard(&server.issuer, IntrospectionConfig::new(auth(server)));
    let app = app(&guard);

    // Read-only.
    let read_only = opaque_token(&http, &server.issuer, "read:invoices").await;
    let verified = guard.verify(&read_only).await.unwrap();
    let claims = verified.claims();
    assert_eq!(claims.iss.as_deref(), Some(server.issuer.as_str()));
    assert!(claims.aud.as_ref().unwrap().contains(OPAQUE_API));
    assert_eq!(claims.aud.as_ref().unwrap().iter().count(), 1);
    assert_eq!(claims.client_id.as_deref(), Some(CLIENT_ID));
    // A client credentials token has no subject (oidc-provider sends no `sub`).
    assert_eq!(verified.subject(), None);
    let (exp, iat) = (claims.exp.unwrap().as_secs(), claims.iat.unwrap().as_secs());
    assert_eq!(exp - iat, TOKEN_TTL);
    let scopes: Vec<&str> = verified.scopes().iter().collect();
    assert_eq!(scopes, ["read:invoices"]);

    assert_ok(call(&app, "GET", &read_only).await, "[]").await;
    let res = call(&app, "POST", &read_only).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="write:invoices""#
        )
    );

    // Read and write.
    let read_write = opaque_token(&http, &server.issuer, "read:invoices write:invoices").await;
    assert_ok(call(&app, "GET", &read_write).await, "[]").await;
    assert_ok(call(&app, "POST", &read_write).await, "created").await;

    // Write only: the read route refuses it.
    let write_only = opaque_token(&http, &server.issuer, "write:invoices").await;
    assert_ok(call(&app, "POST", &write_only).await, "created").await;
    let res = call(&app, "GET", &write_only).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        challenge(&res)
            .unwrap()
            .ends_with(r#"scope="read:invoices""#)
    );

    // A token the server never issued.
    assert_invalid_token(&call(&app, "GET", &random_token()).await, INACTIVE);
}

/// RFC 9701 with a real server: asked for a signed answer, oidc-provider
/// (its `jwtIntrospection` feature) signs it with the keys of its JWT access
/// tokens; the guard verifies it with the key set it discovered and reads
/// the same claims as from a JSON answer. An unknown token is answered
/// inactive, signed too.
#[tokio::test]
async fn signed_introspection_answers_are_verified() {
    let server = shared_server().await;
    let http = http_client();
    let guard = opaque_guard(
        &server.issuer,
        IntrospectionConfig::new(basic()).signed_responses(),
    );
    let token = opaque_token(&http, &server.issuer, "read:invoices").await;
    let before = introspections(&http, &server.issuer).await;
    let verified = guard.verify(&token).await.unwrap();
    assert_eq!(introspections(&http, &server.issuer).await, before + 1);
    let claims = verified.claims();
    assert_eq!(claims.iss.as_deref(), Some(server.issuer.as_str()));
    assert!(claims.aud.as_ref().unwrap().contains(OPAQUE_API));
    assert_eq!(claims.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(
        verified.scopes().iter().collect::<Vec<_>>(),
        ["read:invoices"]
    );
    let app = app(&guard);
    assert_ok(call(&app, "GET", &token).await, "[]").await;
    assert_invalid_token(&call(&app, "GET", &random_token()).await, INACTIVE);
}

#[tokio::test]
async fn opaque_tokens_are_introspected_with_client_secret_basic() {
    introspected_and_scopes_enforced(|_| basic()).await;
}

#[tokio::test]
async fn opaque_tokens_are_introspected_with_client_secret_post() {
    introspected_and_scopes_enforced(|_| post()).await;
}

/// Each introspection carries a new assertion (oidc-provider refuses a
/// replayed `jti`), with the issuer as its audience.
#[tokio::test]
async fn opaque_tokens_are_introspected_with_private_key_jwt() {
    introspected_and_scopes_enforced(private_key_jwt).await;
}

/// An opaque token of the server for another audience is refused like a JWT
/// would be: the introspection answer's `aud` is checked.
#[tokio::test]
async fn an_opaque_token_for_another_audience_is_refused() {
    let server = shared_server().await;
    let http = http_client();
    let token = opaque_token(&http, &server.issuer, "read:invoices").await;
    let guard = TokenGuard::builder()
        .issuer(&server.issuer)
        .audience(ES256_API)
        .introspection(IntrospectionConfig::new(basic()))
        .build()
        .unwrap();
    assert_refused(guard.verify(&token).await, InvalidToken::WrongAudience);
    assert_invalid_token(
        &call(&app(&guard), "GET", &token).await,
        "The access token is not meant for this resource",
    );
}

/// Client credentials the server refuses (401 `invalid_client`) are the
/// resource server's misconfiguration, not the caller's: 503 with
/// `Retry-After`, never 401, and never cached (each request asks again).
#[tokio::test]
async fn refused_client_credentials_are_503_not_401() {
    let server = start_server(0).await;
    let http = http_client();
    let token = opaque_token(&http, &server.issuer, "read:invoices").await;
    let wrong = [
        ClientAuth::client_secret_basic(RS_BASIC_ID, "not-the-secret"),
        ClientAuth::client_secret_post(RS_POST_ID, "not-the-secret"),
        // A well-formed assertion from a client registered for another method.
        ClientAuth::private_key_jwt(RS_BASIC_ID, rs_key(&server), Algorithm::ES256, None),
    ];
    for auth in wrong {
        let what = format!("{auth:?}");
        let guard = opaque_guard(&server.issuer, IntrospectionConfig::new(auth));
        let app = app(&guard);
        let before = introspections(&http, &server.issuer).await;
        assert_unavailable(&call(&app, "GET", &token).await);
        assert_unavailable(&call(&app, "GET", &token).await);
        assert_unavailable_error(guard.verify(&token).await);
        assert_eq!(
            introspections(&http, &server.issuer).await - before,
            3,
            "{what}: every request asked the server"
        );
    }
    // Control: the token itself is fine.
    let guard = opaque_guard(&server.issuer, IntrospectionConfig::new(basic()));
    assert_ok(call(&app(&guard), "GET", &token).await, "[]").await;
}

/// One guard for JWT and opaque resources: the server's JWTs are verified
/// locally (no introspection), its opaque tokens introspected.
#[tokio::test]
async fn jwts_are_verified_locally_and_opaque_tokens_introspected() {
    let server = start_server(0).await;
    let http = http_client();
    let guard = mixed_guard(&server.issuer, IntrospectionConfig::new(basic()));
    let app = app(&guard);
    let start = introspections(&http, &server.issuer).await;

    let (jwt, _) = access_token(&http, &server.issuer, ES256_API, "read:invoices").await;
    assert_eq!(decode(&jwt).0["typ"], "at+jwt");
    assert_ok(call(&app, "GET", &jwt).await, "[]").await;
    let verified = guard.verify(&jwt).await.unwrap();
    assert!(verified.claims().aud.as_ref().unwrap().contains(ES256_API));
    assert_eq!(introspections(&http, &server.issuer).await, start);
    // The keys were fetched for it.
    assert_eq!(guard.key_status()[0].keys_loaded, 4);

    let opaque = opaque_token(&http, &server.issuer, "read:invoices write:invoices").await;
    assert_ok(call(&app, "POST", &opaque).await, "created").await;
    assert_eq!(introspections(&http, &server.issuer).await, start + 1);
    // Cached: neither kind asks again.
    assert_ok(call(&app, "GET", &opaque).await, "[]").await;
    assert_ok(call(&app, "GET", &jwt).await, "[]").await;
    assert_eq!(introspections(&http, &server.issuer).await, start + 1);
}

/// With `introspect_jwts(true)`, the server's JWTs go to the introspection
/// endpoint too. oidc-provider does not introspect structured tokens (400
/// `unsupported_token_type`): no verdict on the token, so 503 with
/// `Retry-After`, not cached; opaque tokens keep working.
#[tokio::test]
async fn introspect_jwts_sends_jwts_to_the_endpoint() {
    let server = start_server(0).await;
    let http = http_client();
    let guard = mixed_guard(
        &server.issuer,
        IntrospectionConfig::new(basic()).introspect_jwts(true),
    );
    let app = app(&guard);
    let start = introspections(&http, &server.issuer).await;

    let (jwt, _) = access_token(&http, &server.issuer, ES256_API, "read:invoices").await;
    assert_unavailable(&call(&app, "GET", &jwt).await);
    assert_eq!(introspections(&http, &server.issuer).await, start + 1);
    assert_unavailable_error(guard.verify(&jwt).await);
    assert_eq!(introspections(&http, &server.issuer).await, start + 2);
    // No keys were needed.
    assert_eq!(guard.key_status()[0].keys_loaded, 0);

    let opaque = opaque_token(&http, &server.issuer, "read:invoices").await;
    assert_ok(call(&app, "GET", &opaque).await, "[]").await;
    assert_eq!(introspections(&http, &server.issuer).await, start + 3);

    // Control: the JWT is genuine, and verified locally without the setting.
    let local = mixed_guard(&server.issuer, IntrospectionConfig::new(basic()));
    assert_ok(call(&super::app(&local), "GET", &jwt).await, "[]").await;
    assert_eq!(introspections(&http, &server.issuer).await, start + 3);
}

/// A token revoked at the server (RFC 7009) is still accepted from the cache
/// right after, for at most `max_ttl`, then refused as not active by the next
/// introspection; the refusal is cached in turn.
#[tokio::test]
async fn a_revoked_token_is_refused_once_max_ttl_has_passed() {
    const MAX_TTL: Duration = Duration::from_secs(1);
    let server = start_server(0).await;
    let http = http_client();
    let guard = opaque_guard(
        &server.issuer,
        IntrospectionConfig::new(basic()).max_ttl(MAX_TTL),
    );
    let app = app(&guard);
    let token = opaque_token(&http, &server.issuer, "read:invoices").await;
    let start = introspections(&http, &server.issuer).await;

    let accepted_at = Instant::now();
    assert_ok(call(&app, "GET", &token).await, "[]").await;
    assert_eq!(introspections(&http, &server.issuer).await, start + 1);

    revoke(&http, &server.issuer, &token).await;
    let direct = introspect_directly(&http, &server.issuer, &token).await;
    assert_eq!(direct, serde_json::json!({"active": false}));
    let start = start + 2;
    assert_eq!(introspections(&http, &server.issuer).await, start);

    // Within max_ttl: from the cache, without asking.
    assert_ok(call(&app, "GET", &token).await, "[]").await;
    assert!(
        accepted_at.elapsed() < MAX_TTL,
        "revocation took too long to test the cache"
    );
    assert_eq!(introspections(&http, &server.issuer).await, start);

    // Then refused, by a new introspection.
    let deadline = accepted_at + MAX_TTL + Duration::from_secs(10);
    let refused = loop {
        let res = call(&app, "GET", &token).await;
        if res.status() != StatusCode::OK {
            break res;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        accepted_at.elapsed() >= MAX_TTL,
        "refused after {:?}, before max_ttl",
        accepted_at.elapsed()
    );
    assert_invalid_token(&refused, INACTIVE);
    assert_eq!(introspections(&http, &server.issuer).await, start + 1);

    // The refusal is cached (inactive_ttl, 5 s by default).
    assert_refused(guard.verify(&token).await, InvalidToken::Inactive);
    assert_invalid_token(&call(&app, "GET", &token).await, INACTIVE);
    assert_eq!(introspections(&http, &server.issuer).await, start + 1);
}

/// 100 concurrent requests with one new token share one introspection; the
/// next 100 are answered from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_token_share_one_introspection() {
    let server = start_server(0).await;
    let http = http_client();
    let guard = opaque_guard(&server.issuer, IntrospectionConfig::new(post()));
    let app = app(&guard);
    let token = opaque_token(&http, &server.issuer, "read:invoices").await;
    let start = introspections(&http, &server.issuer).await;

    for round in 1..=2 {
        let responses = concurrent_gets(&app, std::slice::from_ref(&token), 100).await;
        assert_eq!(responses.len(), 100);
        for res in responses {
            assert_ok(res, "[]").await;
        }
        assert_eq!(
            introspections(&http, &server.issuer).await,
            start + 1,
            "round {round}"
        );
    }
}

/// 200 distinct unknown tokens at once with `max_in_flight(8)`: each is
/// refused after its own introspection (401, not active) or turned away
/// before any (503, `Retry-After`); never accepted, never a 500. Exactly the
/// refused ones reached the server.
///
/// On a current-thread runtime every request reaches the guard before any
/// introspection can finish (they share the thread), so at most 8 start and
/// the rest are turned away: both outcomes occur.
#[tokio::test]
async fn a_flood_of_unknown_tokens_is_bounded_by_max_in_flight() {
    let server = start_server(0).await;
    let http = http_client();
    let guard = opaque_guard(
        &server.issuer,
        IntrospectionConfig::new(basic()).max_in_flight(8),
    );
    let app = app(&guard);
    let tokens: Vec<String> = (0..200).map(|_| random_token()).collect();
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        200
    );
    let start = introspections(&http, &server.issuer).await;

    let (mut refused, mut busy) = (0, 0);
    for res in concurrent_gets(&app, &tokens, tokens.len()).await {
        match res.status() {
            StatusCode::UNAUTHORIZED => {
                assert_invalid_token(&res, INACTIVE);
                refused += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_unavailable(&res);
                busy += 1;
            }
            other => panic!("{other}: {:?}", challenge(&res)),
        }
    }
    assert_eq!(refused + busy, 200);
    assert!((1..=8).contains(&refused), "{refused} refused, {busy} busy");
    assert_eq!(
        introspections(&http, &server.issuer).await - start,
        refused,
        "{refused} refused, {busy} busy"
    );

    // Turned away, not judged: once the flood is over, the same tokens are
    // introspected (and refused) like any other.
    let later = &tokens[tokens.len() - 1];
    assert_invalid_token(&call(&app, "GET", later).await, INACTIVE);
}

/// The server gone: an uncached token is 503 with `Retry-After` (errors are
/// not cached), a cached one still accepted within `max_ttl`. The server back
/// on the same port: the same guard introspects again, without a restart.
/// (The server keeps tokens in memory: those issued before are unknown to
/// it now. Its `RS_KEY` changes too, hence `client_secret_basic` here.)
#[tokio::test]
async fn introspection_recovers_when_the_server_comes_back() {
    let mut first = start_server(0).await;
    let issuer = first.issuer.clone();
    let http = http_client();
    let guard = opaque_guard(&issuer, IntrospectionConfig::new(basic()));
    let app = app(&guard);
    let cached = opaque_token(&http, &issuer, "read:invoices").await;
    let uncached = opaque_token(&http, &issuer, "read:invoices").await;
    assert_ok(call(&app, "GET", &cached).await, "[]").await;

    first.stop();
    assert_unavailable(&call(&app, "GET", &uncached).await);
    assert_unavailable(&call(&app, "GET", &uncached).await);
    assert_unavailable_error(guard.verify(&uncached).await);
    assert_ok(call(&app, "GET", &cached).await, "[]").await;

    let second = start_server(first.port).await;
    assert_eq!(second.issuer, issuer);
    let start = introspections(&http, &issuer).await;
    // Asked again (the 503s were not cached): unknown to the new server.
    assert_invalid_token(&call(&app, "GET", &uncached).await, INACTIVE);
    let fresh = opaque_token(&http, &issuer, "read:invoices write:invoices").await;
    assert_ok(call(&app, "POST", &fresh).await, "created").await;
    assert_eq!(introspections(&http, &issuer).await, start + 2);
    // The cached answer still stands within max_ttl (30 s), although the new
    // server does not know the token: the revocation delay.
    assert_ok(call(&app, "GET", &cached).await, "[]").await;
    assert_eq!(introspections(&http, &issuer).await, start + 2);
    assert_eq!(
        introspect_directly(&http, &issuer, &cached).await,
        serde_json::json!({"active": false})
    );
}
