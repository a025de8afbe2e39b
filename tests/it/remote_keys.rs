//! Remote key sets over real HTTP on 127.0.0.1: JWKS URLs, discovery (OpenID
//! Connect and RFC 8414), caching, refetch on unknown `kid`, rate limiting,
//! outages, refused documents, timeouts, and the guarded app end to end.
//!
//! Every server here is an axum app (or a bare TCP listener) bound to
//! `127.0.0.1:0` inside the test; its replies and request counts live in
//! shared state so that a test can change them while the guard runs.

#![cfg(all(feature = "testing", feature = "axum"))]

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokenguard::testing::TestIssuer;
use tokenguard::{
    AccessTokenClaims, Algorithm, AuthError, AuthErrorKind, Claims, InvalidToken, TokenGuard,
};
use tower::ServiceExt;

const AUD: &str = "https://api.example.com";
/// The JWKS path on the test servers.
const JWKS: &str = "/jwks";

// ---------------------------------------------------------------------------
// A scriptable HTTP server on 127.0.0.1.
// ---------------------------------------------------------------------------

/// What the server answers on one path.
#[derive(Clone)]
enum Reply {
    /// 200 with this JSON document (with `Content-Length`).
    Json(Value),
    /// This status with this body, `Content-Type: application/json`.
    Raw(StatusCode, Vec<u8>),
    /// 200 with this body, streamed in chunks without `Content-Length`.
    Chunked(Vec<u8>),
    /// 302 to this location.
    Redirect(String),
}

#[derive(Default)]
struct Script {
    replies: Mutex<HashMap<String, Reply>>,
    hits: Mutex<HashMap<String, usize>>,
    /// Delay before every answer.
    delay: Mutex<Duration>,
}

/// Aborts a spawned server task when the test ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An HTTP server whose replies are set per path; unset paths answer 404.
/// Every request is counted per path, whatever the answer.
struct Server {
    base: String,
    script: Arc<Script>,
    _task: AbortOnDrop,
}

impl Server {
    async fn start() -> Self {
        let script = Arc::new(Script::default());
        let app = Router::new().fallback(scripted).with_state(script.clone());
        let (base, task) = serve(app).await;
        Self {
            base,
            script,
            _task: task,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn set(&self, path: &str, reply: Reply) {
        self.script
            .replies
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    fn set_delay(&self, delay: Duration) {
        *self.script.delay.lock().unwrap() = delay;
    }

    /// Requests received on `path` so far.
    fn hits(&self, path: &str) -> usize {
        self.script
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn scripted(State(script): State<Arc<Script>>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    *script.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = script.replies.lock().unwrap().get(&path).cloned();
    let delay = *script.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match reply {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Json(doc)) => Json(doc).into_response(),
        Some(Reply::Raw(status, body)) => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Reply::Chunked(body)) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Reply::Redirect(location)) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
    }
}

/// Serves `app` on a fresh 127.0.0.1 port; returns its base URL.
async fn serve(app: Router) -> (String, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), AbortOnDrop(task))
}

// ---------------------------------------------------------------------------
// Guards, apps, requests.
// ---------------------------------------------------------------------------

fn jwks_guard(issuer: &TestIssuer, jwks_url: &str, cooldown: Duration) -> TokenGuard {
    TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(jwks_url)
        .refetch_cooldown(cooldown)
        .build()
        .unwrap()
}

fn discovery_guard(issuer: &str) -> TokenGuard {
    TokenGuard::builder()
        .issuer(issuer)
        .audience(AUD)
        .build()
        .unwrap()
}

fn token(issuer: &TestIssuer) -> String {
    issuer.token().audience(AUD).scope("read").mint()
}

async fn me(Claims(c): Claims<AccessTokenClaims>) -> String {
    c.sub.clone().unwrap_or_default()
}

/// `GET /me` (answers the token's `sub`) behind the guard's layer.
fn app(guard: &TokenGuard) -> Router {
    Router::new().route("/me", get(me)).layer(guard.layer())
}

async fn call(app: &Router, token: Option<&str>) -> Response {
    let mut req = Request::get("/me");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body_text(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn assert_unknown_key(err: &AuthError) {
    assert_eq!(
        err.kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::UnknownKey),
        "{err}"
    );
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.error_code(), Some("invalid_token"));
}

fn assert_keys_unavailable(err: &AuthError) {
    assert!(
        matches!(err.kind(), AuthErrorKind::KeysUnavailable { .. }),
        "expected KeysUnavailable, got {:?}",
        err.kind()
    );
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Asserts a 503 with `Retry-After` (whole seconds, at least 1) and no
/// challenge.
fn assert_503(res: &Response) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        res.headers().get(header::WWW_AUTHENTICATE).is_none(),
        "a 503 carries no challenge"
    );
    let retry = res
        .headers()
        .get(header::RETRY_AFTER)
        .expect("Retry-After on a 503")
        .to_str()
        .unwrap();
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After {retry:?}"
    );
}

/// A fresh, random-looking `kid` that no issuer uses.
fn random_kid(i: usize) -> String {
    let r = std::collections::hash_map::RandomState::new().hash_one(i);
    format!("unknown-{i}-{r:016x}")
}

/// Sleeps until `since + d` (plus a small margin) has passed.
async fn sleep_past(since: Instant, d: Duration) {
    let deadline = since + d + Duration::from_millis(30);
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
}

/// Waits (up to 2 s) until the guard's (only) key set has failed `n` fetches
/// in a row.
async fn wait_for_failures(guard: &TokenGuard, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = guard.key_status().remove(0);
        if status.consecutive_failures >= n {
            assert_eq!(status.consecutive_failures, n, "{status:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{status:?}, expected {n} failures"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// 1. JWKS URL.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn jwks_url_keys_are_fetched_once_and_cached() {
    let server = Server::start().await;
    let issuer = TestIssuer::with_issuer(server.url(""));
    server.set(JWKS, Reply::Json(issuer.jwks()));
    let cooldown = Duration::from_millis(100);
    let guard = jwks_guard(&issuer, &server.url(JWKS), cooldown);
    let app = app(&guard);

    // No network access before the first token.
    assert_eq!(server.hits(JWKS), 0);
    guard.verify(&token(&issuer)).await.unwrap();
    let loaded = Instant::now();
    // Every key type of the set, several requests each.
    for alg in [
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        for _ in 0..2 {
            let t = issuer
                .token()
                .audience(AUD)
                .subject("alice")
                .algorithm(alg)
                .mint();
            let res = call(&app, Some(&t)).await;
            assert_eq!(res.status(), StatusCode::OK, "{alg:?}");
            assert_eq!(body_text(res).await, "alice");
            let verified = guard.verify(&t).await.unwrap();
            assert_eq!(verified.subject(), Some("alice"));
        }
    }
    assert_eq!(server.hits(JWKS), 1, "keys are cached");

    // Past the cooldown, known keys still cause no fetch: they are refreshed
    // only after the refresh interval (10 min by default).
    sleep_past(loaded, cooldown).await;
    assert_eq!(
        call(&app, Some(&token(&issuer))).await.status(),
        StatusCode::OK
    );
    guard.verify(&token(&issuer)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.hits(JWKS), 1, "no refresh before the interval");
}

// ---------------------------------------------------------------------------
// 2–4. Discovery.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn discovery_openid_configuration() {
    let server = Server::start().await;
    let iss = server.url("");
    let issuer = TestIssuer::with_issuer(&iss);
    server.set(
        "/.well-known/openid-configuration",
        Reply::Json(json!({"issuer": iss, "jwks_uri": server.url(JWKS)})),
    );
    server.set(JWKS, Reply::Json(issuer.jwks()));
    let guard = discovery_guard(&iss);

    for _ in 0..3 {
        let verified = guard.verify(&token(&issuer)).await.unwrap();
        assert!(verified.scopes().contains("read"));
    }
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/.well-known/oauth-authorization-server"), 0);
    assert_eq!(server.hits(JWKS), 1);
}

#[tokio::test]
async fn discovery_falls_back_to_rfc8414_for_an_issuer_with_a_path() {
    let server = Server::start().await;
    let iss = server.url("/tenant");
    let issuer = TestIssuer::with_issuer(&iss);
    // `/tenant/.well-known/openid-configuration` is not set: 404.
    server.set(
        "/.well-known/oauth-authorization-server/tenant",
        Reply::Json(json!({"issuer": iss, "jwks_uri": server.url("/tenant/jwks")})),
    );
    server.set("/tenant/jwks", Reply::Json(issuer.jwks()));
    let guard = discovery_guard(&iss);

    guard.verify(&token(&issuer)).await.unwrap();
    assert_eq!(server.hits("/tenant/.well-known/openid-configuration"), 1);
    assert_eq!(
        server.hits("/.well-known/oauth-authorization-server/tenant"),
        1
    );
    assert_eq!(server.hits("/tenant/jwks"), 1);
    // Neither the un-suffixed RFC 8414 URL nor the host's root OpenID URL.
    assert_eq!(server.hits("/.well-known/oauth-authorization-server"), 0);
    assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn discovery_refuses_metadata_naming_another_issuer() {
    let server = Server::start().await;
    let iss = server.url("");
    let port = iss.rsplit(':').next().unwrap().to_owned();
    let issuer = TestIssuer::with_issuer(&iss);
    // A perfectly good key set: only the issuer check stands in the way.
    server.set(JWKS, Reply::Json(issuer.jwks()));

    for named in [
        format!("{iss}/"),                   // trailing slash added
        format!("http://localhost:{port}"),  // same server, another host name
        "https://id.example.com".to_owned(), // another issuer altogether
        iss.to_uppercase(),                  // case differs
    ] {
        server.set(
            "/.well-known/openid-configuration",
            Reply::Json(json!({"issuer": named, "jwks_uri": server.url(JWKS)})),
        );
        let before = server.hits("/.well-known/openid-configuration");

        let guard = discovery_guard(&iss);
        let err = guard.warm_up().await.expect_err(&named);
        assert!(
            err.to_string().contains("names issuer"),
            "{named}: warm-up error {err}"
        );

        let guard = discovery_guard(&iss);
        let err = guard.verify(&token(&issuer)).await.unwrap_err();
        assert_keys_unavailable(&err);
        let res = call(&app(&guard), Some(&token(&issuer))).await;
        assert_503(&res);

        assert_eq!(
            server.hits("/.well-known/openid-configuration"),
            before + 2,
            "{named}: each guard read the metadata once"
        );
        assert_eq!(server.hits(JWKS), 0, "{named}: the JWKS was fetched");
    }
}

// ---------------------------------------------------------------------------
// 5. Issuer down.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn issuer_down_from_the_start_answers_503_with_retry_after() {
    // A port on which nothing listens: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let iss = format!("http://127.0.0.1:{port}");
    let issuer = TestIssuer::with_issuer(&iss);
    let cooldown = Duration::from_secs(3);

    let with_jwks_url = jwks_guard(&issuer, &format!("{iss}{JWKS}"), cooldown);
    let with_discovery = TokenGuard::builder()
        .issuer(&iss)
        .audience(AUD)
        .refetch_cooldown(cooldown)
        .build()
        .unwrap();

    for guard in [with_jwks_url, with_discovery] {
        let app = app(&guard);
        let tokens = [
            token(&issuer),
            token(&issuer),
            issuer.token().audience(AUD).kid(Some("other")).mint(),
        ];
        for t in &tokens {
            let res = call(&app, Some(t)).await;
            assert_503(&res);
            let retry: u64 = res.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry <= cooldown.as_secs(), "Retry-After {retry}");
        }
        let err = guard.verify(&tokens[0]).await.unwrap_err();
        assert_keys_unavailable(&err);
        assert!(guard.warm_up().await.is_err());
        // Without a token it is still a plain 401 challenge.
        let res = call(&app, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

// ---------------------------------------------------------------------------
// 6–7. Unknown kid: refetch, rate limit, bursts.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_kid_refetches_after_the_cooldown() {
    let cooldown = Duration::from_millis(300);
    let server = Server::start().await;
    let old = TestIssuer::with_issuer(server.url(""));
    let new = TestIssuer::with_issuer(server.url(""));
    assert_ne!(old.kid(Algorithm::ES256), new.kid(Algorithm::ES256));
    // Generated up front: the RSA key of a fresh issuer takes a while.
    let (old_jwks, new_jwks) = (old.jwks(), new.jwks());
    let (old_token, new_token) = (token(&old), token(&new));
    server.set(JWKS, Reply::Json(old_jwks));
    let guard = jwks_guard(&old, &server.url(JWKS), cooldown);
    let app = app(&guard);

    let before_load = Instant::now();
    guard.verify(&old_token).await.unwrap();
    let loaded = Instant::now();
    assert_eq!(server.hits(JWKS), 1);

    // The issuer rotates to the new key.
    server.set(JWKS, Reply::Json(new_jwks));

    // Within the cooldown, the new kid is unknown and no fetch happens.
    for _ in 0..3 {
        let err = guard.verify(&new_token).await.expect_err(&format!(
            "accepted {:?} after the load",
            before_load.elapsed()
        ));
        assert_unknown_key(&err);
    }
    let res = call(&app, Some(&new_token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer realm="api", error="invalid_token""#),
        "{challenge}"
    );
    assert!(
        before_load.elapsed() < cooldown,
        "the test itself was too slow"
    );
    assert_eq!(server.hits(JWKS), 1, "no fetch within the cooldown");
    // The cached old keys still serve.
    guard.verify(&old_token).await.unwrap();

    // After the cooldown, the unknown kid triggers one refetch.
    sleep_past(loaded, cooldown).await;
    let verified = guard.verify(&token(&new)).await.unwrap();
    assert!(verified.scopes().contains("read"));
    assert_eq!(server.hits(JWKS), 2);

    // The old key left the set; its kid is now unknown, and the cooldown
    // (restarted by the refetch) keeps it from causing another fetch.
    let err = guard.verify(&token(&old)).await.unwrap_err();
    assert_unknown_key(&err);
    guard.verify(&token(&new)).await.unwrap();
    assert_eq!(server.hits(JWKS), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_unknown_kids_causes_no_fetch_within_the_cooldown() {
    let server = Server::start().await;
    let issuer = TestIssuer::with_issuer(server.url(""));
    server.set(JWKS, Reply::Json(issuer.jwks()));
    let guard = jwks_guard(&issuer, &server.url(JWKS), Duration::from_secs(60));
    guard.warm_up().await.unwrap();
    assert_eq!(server.hits(JWKS), 1);

    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let guard = guard.clone();
            let t = issuer
                .token()
                .audience(AUD)
                .kid(Some(&random_kid(i)))
                .mint();
            tokio::spawn(async move { guard.verify(&t).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_unknown_key(&err);
    }
    // The cooldown runs from the last fetch attempt (the warm-up), so not
    // even one more fetch may start within 60 s.
    assert_eq!(server.hits(JWKS), 1);
    // Known keys are unaffected.
    guard.verify(&token(&issuer)).await.unwrap();
    assert_eq!(server.hits(JWKS), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_unknown_kids_after_the_cooldown_causes_exactly_one_fetch() {
    // Long enough that the whole burst fits in one cooldown on a loaded
    // machine: a second fetch would then be a real bug, not the clock.
    let cooldown = Duration::from_secs(1);
    let server = Server::start().await;
    let issuer = TestIssuer::with_issuer(server.url(""));
    server.set(JWKS, Reply::Json(issuer.jwks()));
    let guard = jwks_guard(&issuer, &server.url(JWKS), cooldown);
    guard.warm_up().await.unwrap();
    let loaded = Instant::now();
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            issuer
                .token()
                .audience(AUD)
                .kid(Some(&random_kid(i)))
                .mint()
        })
        .collect();
    // A slow issuer, so that the burst overlaps the fetch it causes.
    server.set_delay(Duration::from_millis(100));
    sleep_past(loaded, cooldown).await;
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let guard = guard.clone();
            tokio::spawn(async move { guard.verify(&t).await })
        })
        .collect();
    for task in tasks {
        assert_unknown_key(&task.await.unwrap().unwrap_err());
    }
    // 1,000 unknown kids: one shared fetch, then the cooldown.
    assert_eq!(server.hits(JWKS), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_after_rotation_shares_one_fetch() {
    let cooldown = Duration::from_millis(100);
    let server = Server::start().await;
    let old = TestIssuer::with_issuer(server.url(""));
    let new = TestIssuer::with_issuer(server.url(""));
    server.set(JWKS, Reply::Json(old.jwks()));
    let guard = jwks_guard(&old, &server.url(JWKS), cooldown);
    guard.warm_up().await.unwrap();
    let loaded = Instant::now();

    server.set(JWKS, Reply::Json(new.jwks()));
    // A slow issuer, so that the whole burst overlaps the one fetch.
    server.set_delay(Duration::from_millis(200));
    sleep_past(loaded, cooldown).await;

    let tokens: Vec<String> = (0..1000).map(|_| token(&new)).collect();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let guard = guard.clone();
            tokio::spawn(async move { guard.verify(&t).await })
        })
        .collect();
    for task in tasks {
        // Every request waited for the fetch in flight instead of being
        // refused as cooling down.
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.hits(JWKS), 2);
}

// ---------------------------------------------------------------------------
// 8. Outage with cached keys.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cached_keys_survive_an_outage() {
    let cooldown = Duration::from_millis(150);
    let server = Server::start().await;
    let issuer = TestIssuer::with_issuer(server.url(""));
    let recovered = TestIssuer::with_issuer(server.url(""));
    let recovered_jwks = recovered.jwks();
    server.set(JWKS, Reply::Json(issuer.jwks()));
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(server.url(JWKS))
        .refetch_cooldown(cooldown)
        .refresh_interval(cooldown)
        .max_fetch_backoff(2 * cooldown)
        .build()
        .unwrap();
    let app = app(&guard);
    let valid = token(&issuer);

    guard.verify(&valid).await.unwrap();
    let loaded = Instant::now();
    assert_eq!(server.hits(JWKS), 1);

    server.set(
        JWKS,
        Reply::Raw(StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec()),
    );
    sleep_past(loaded, cooldown).await;

    // Failure 1: an unknown kid makes the guard refetch; the fetch fails and
    // the cached keys decide: the kid is unknown (401, not 503).
    let unknown = issuer.token().audience(AUD).kid(Some("rotated")).mint();
    let err = guard.verify(&unknown).await.unwrap_err();
    assert_unknown_key(&err);
    let after_2 = Instant::now();
    assert_eq!(server.hits(JWKS), 2, "a refetch was attempted");
    assert_eq!(guard.key_status()[0].consecutive_failures, 1);

    // Tokens of the cached keys still verify.
    guard.verify(&valid).await.unwrap();
    assert_eq!(call(&app, Some(&valid)).await.status(), StatusCode::OK);

    // Failure 2: past the cooldown (and the refresh interval), a request
    // starts a background refresh; it fails too, and the keys keep serving.
    sleep_past(after_2, cooldown).await;
    let before_3 = Instant::now();
    guard.verify(&valid).await.unwrap();
    let after_3 = Instant::now();
    wait_for_failures(&guard, 2).await;
    assert_eq!(server.hits(JWKS), 3);
    guard.verify(&valid).await.unwrap();
    assert_eq!(call(&app, Some(&valid)).await.status(), StatusCode::OK);
    let status = &guard.key_status()[0];
    assert_eq!(status.keys_loaded, 9);
    assert!(
        status.last_error.as_deref().unwrap().contains("500"),
        "{status:?}"
    );

    // After two failures in a row the wait doubles: one cooldown later there
    // is no new attempt yet; two cooldowns later there is.
    sleep_past(before_3, cooldown).await;
    assert_unknown_key(&guard.verify(&unknown).await.unwrap_err());
    assert_eq!(server.hits(JWKS), 3, "backoff after two failures");
    sleep_past(after_3, 2 * cooldown).await;
    guard.verify(&valid).await.unwrap();
    let after_4 = Instant::now();
    wait_for_failures(&guard, 3).await;
    assert_eq!(server.hits(JWKS), 4);
    assert_eq!(call(&app, Some(&valid)).await.status(), StatusCode::OK);

    // The issuer recovers with a new key; the next attempt (the backoff is
    // capped at 2 cooldowns) loads it, and the old key is gone.
    server.set(JWKS, Reply::Json(recovered_jwks));
    sleep_past(after_4, 2 * cooldown).await;
    guard.verify(&token(&recovered)).await.unwrap();
    assert_eq!(server.hits(JWKS), 5);
    assert_eq!(guard.key_status()[0].consecutive_failures, 0);
    assert_unknown_key(&guard.verify(&valid).await.unwrap_err());
}

#[tokio::test]
async fn stale_keys_stop_serving_after_max_staleness() {
    let cooldown = Duration::from_millis(50);
    let interval = Duration::from_millis(100);
    let staleness = Duration::from_millis(200);
    let server = Server::start().await;
    let issuer = TestIssuer::with_issuer(server.url(""));
    let jwks = issuer.jwks();
    server.set(JWKS, Reply::Json(jwks.clone()));
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(server.url(JWKS))
        .refetch_cooldown(cooldown)
        .refresh_interval(interval)
        .max_key_staleness(staleness)
        .build()
        .unwrap();
    let app = app(&guard);
    let valid = token(&issuer);

    let before_load = Instant::now();
    guard.verify(&valid).await.unwrap();
    let loaded = Instant::now();
    server.set(
        JWKS,
        Reply::Raw(StatusCode::SERVICE_UNAVAILABLE, b"down".to_vec()),
    );

    // Due for a refresh, which fails: the keys keep serving for now.
    sleep_past(loaded, interval).await;
    guard.verify(&valid).await.unwrap();
    assert_eq!(call(&app, Some(&valid)).await.status(), StatusCode::OK);
    assert!(
        before_load.elapsed() < interval + staleness,
        "the test itself was too slow"
    );
    wait_for_failures(&guard, 1).await;

    // Past the refresh interval plus the staleness limit they no longer do.
    sleep_past(loaded, interval + staleness).await;
    let err = guard.verify(&valid).await.unwrap_err();
    assert_keys_unavailable(&err);
    assert_503(&call(&app, Some(&valid)).await);
    assert_eq!(guard.key_status()[0].keys_loaded, 0);

    // The issuer recovers: the next attempt after the backoff loads the keys.
    server.set(JWKS, Reply::Json(jwks));
    sleep_past(Instant::now(), 4 * cooldown).await;
    guard.verify(&valid).await.unwrap();
    assert_eq!(guard.key_status()[0].keys_loaded, 9);
}

// ---------------------------------------------------------------------------
// 9. Refused documents.
// ---------------------------------------------------------------------------

/// A valid key set of `issuer`, padded with an ignored member to `size` bytes.
fn padded_jwks(issuer: &TestIssuer, size: usize) -> Vec<u8> {
    let mut doc = issuer.jwks();
    let base = doc.to_string().len();
    let pad = size.saturating_sub(base + r#","padding":"""#.len());
    doc["padding"] = Value::String("x".repeat(pad));
    let bytes = doc.to_string().into_bytes();
    assert_eq!(bytes.len(), size);
    bytes
}

#[tokio::test]
async fn refused_jwks_documents_leave_keys_unavailable() {
    const LIMIT: usize = 512 * 1024;
    let server = Server::start().await;
    let issuer = TestIssuer::with_issuer(server.url(""));

    // Controls: the padded documents are acceptable when small enough, and
    // exactly at the limit.
    for (path, reply) in [
        (
            "/padded-small",
            Reply::Json(serde_json::from_slice(&padded_jwks(&issuer, 100_000)).unwrap()),
        ),
        (
            "/at-limit",
            Reply::Raw(StatusCode::OK, padded_jwks(&issuer, LIMIT)),
        ),
        (
            "/at-limit-chunked",
            Reply::Chunked(padded_jwks(&issuer, LIMIT)),
        ),
    ] {
        server.set(path, reply);
        let guard = jwks_guard(&issuer, &server.url(path), Duration::from_secs(60));
        guard
            .verify(&token(&issuer))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    let mut unusable = issuer.jwks();
    for key in unusable["keys"].as_array_mut().unwrap() {
        key["use"] = json!("enc");
    }
    unusable["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}));
    server.set(JWKS, Reply::Json(issuer.jwks()));

    let cases = [
        (
            "/truncated",
            Reply::Raw(StatusCode::OK, br#"{"keys": [{"kty": "EC""#.to_vec()),
        ),
        (
            "/html",
            Reply::Raw(StatusCode::OK, b"<html>hello</html>".to_vec()),
        ),
        (
            "/not-a-set",
            Reply::Raw(
                StatusCode::OK,
                issuer.jwks()["keys"].to_string().into_bytes(),
            ),
        ),
        ("/no-usable-key", Reply::Json(unusable)),
        ("/empty-set", Reply::Json(json!({"keys": []}))),
        (
            "/oversized",
            Reply::Raw(StatusCode::OK, padded_jwks(&issuer, LIMIT + 1)),
        ),
        (
            "/oversized-chunked",
            Reply::Chunked(padded_jwks(&issuer, LIMIT + 1)),
        ),
        (
            "/huge",
            Reply::Raw(StatusCode::OK, padded_jwks(&issuer, 4 * LIMIT)),
        ),
        ("/redirect", Reply::Redirect(server.url(JWKS))),
        (
            "/gone",
            Reply::Raw(
                StatusCode::NOT_FOUND,
                issuer.jwks().to_string().into_bytes(),
            ),
        ),
    ];
    for (path, reply) in cases {
        server.set(path, reply);
        let guard = jwks_guard(&issuer, &server.url(path), Duration::from_secs(60));
        let err = guard.verify(&token(&issuer)).await.unwrap_err();
        assert_keys_unavailable(&err);
        assert_503(&call(&app(&guard), Some(&token(&issuer))).await);
        assert!(guard.warm_up().await.is_err(), "{path}");
        assert_eq!(server.hits(path), 1, "{path}: one fetch, then the cooldown");
    }
    assert_eq!(server.hits(JWKS), 0, "the redirect was not followed");
}

// ---------------------------------------------------------------------------
// 10. Hanging issuer.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hanging_issuer_times_out() {
    // Accepts connections, reads nothing, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let _task = AbortOnDrop(tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    }));

    let iss = format!("http://{addr}");
    let issuer = TestIssuer::with_issuer(&iss);
    let timeout = Duration::from_millis(300);
    let jwks = TokenGuard::builder()
        .issuer(&iss)
        .audience(AUD)
        .jwks_url(format!("{iss}{JWKS}"))
        .fetch_timeout(timeout)
        .build()
        .unwrap();
    let discovery = TokenGuard::builder()
        .issuer(&iss)
        .audience(AUD)
        .fetch_timeout(timeout)
        .build()
        .unwrap();

    for (n, guard) in [jwks, discovery].into_iter().enumerate() {
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), guard.verify(&token(&issuer)))
            .await
            .expect("the guard hung")
            .unwrap_err();
        let took = started.elapsed();
        assert_keys_unavailable(&err);
        assert!(took >= timeout, "gave up after {took:?}");
        assert!(took < Duration::from_secs(2), "gave up only after {took:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), n + 1);
    }
}

// ---------------------------------------------------------------------------
// 11. End to end.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn guarded_app_over_http() {
    let idp = Server::start().await;
    let issuer = TestIssuer::with_issuer(idp.url(""));
    idp.set(JWKS, Reply::Json(issuer.jwks()));
    let guard = jwks_guard(&issuer, &idp.url(JWKS), Duration::from_secs(5));
    let (api, _task) = serve(app(&guard)).await;
    let client = reqwest::Client::new();
    let me = format!("{api}/me");

    let t = issuer.token().audience(AUD).subject("alice").mint();
    let res = client.get(&me).bearer_auth(&t).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");

    let res = client.get(&me).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers().get(header::WWW_AUTHENTICATE),
        Some(&HeaderValue::from_static(r#"Bearer realm="api""#))
    );

    let other = TestIssuer::with_issuer(idp.url(""));
    let res = client
        .get(&me)
        .bearer_auth(token(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api", error="invalid_token", error_description="The access token signing key is unknown""#
    );
    assert_eq!(idp.hits(JWKS), 1);
}
