//! Token introspection (RFC 7662) against a fake authorization server on
//! 127.0.0.1 written here: it answers what a test scripts (good answers,
//! refusals, garbage, errors, redirects, oversized bodies, silence), records
//! every request it receives and how many it serves at once, so that a test
//! can check what tokenguard sent, how often, and how many calls overlapped.
//!
//! Every test checks the status and the exact `WWW-Authenticate` /
//! `Retry-After` headers through an axum `Router` behind `guard.layer()`,
//! and `guard.verify(..)` where the error kind says more.

#![cfg(all(feature = "testing", feature = "axum"))]

use crate::common;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use tokenguard::testing::TestIssuer;
use tokenguard::{
    AccessTokenClaims, Algorithm, AuthError, AuthErrorKind, Claims, ClientAuth,
    IntrospectionConfig, InvalidToken, RequireScope, TokenGuard, TokenGuardBuilder, scopes,
};

use common::{AUD, assert_invalid_token, bearer, body, challenge};

/// The introspection endpoint of the fake.
const INTROSPECT: &str = "/introspect";
/// Where the fake publishes its metadata (OpenID Connect Discovery).
const METADATA: &str = "/.well-known/openid-configuration";
/// The resource server's client credentials at the fake.
const CLIENT_ID: &str = "rs";
const CLIENT_SECRET: &str = "rs-secret-0123456789";

// The descriptions of `src/error.rs`.
const INACTIVE: &str = "The access token is not active";
const EXPIRED: &str = "The access token expired";
const MISSING_CLAIM: &str = "The access token lacks a required claim";
const NOT_YET_VALID: &str = "The access token is not valid yet";
const FUTURE_IAT: &str = "The access token was issued in the future";
const LIFETIME: &str = "The access token lifetime is too long";
const WRONG_ISSUER: &str = "The access token issuer is not trusted";
const WRONG_AUDIENCE: &str = "The access token is not meant for this resource";
const BOUND: &str = "The access token is bound to a key and cannot be used as a bearer token";
const WRONG_TYPE: &str = "The token is not an access token";

scopes! {
    /// Read access.
    pub Read = "read";
    /// Write access.
    pub Write = "write";
}

// ---------------------------------------------------------------------------
// The fake authorization server.
// ---------------------------------------------------------------------------

/// What the fake answers on one path.
#[derive(Clone)]
enum Reply {
    /// 200 with this JSON document (with `Content-Length`).
    Json(Value),
    /// This status and body, `Content-Type: application/json`.
    Raw(StatusCode, Vec<u8>),
    /// 200 with this `Content-Type` and body.
    Typed(&'static str, String),
    /// 200 with this body, streamed in chunks without `Content-Length`.
    Chunked(Vec<u8>),
    /// This redirect status to this location.
    Redirect(StatusCode, String),
    /// Accepts the request and never answers.
    Hang,
}

/// One request the fake received.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: String,
}

impl Recorded {
    /// The form body as pairs, in order.
    fn pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The form body as a map; panics on a repeated name.
    fn form(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        for (name, value) in self.pairs() {
            assert!(
                map.insert(name.clone(), value).is_none(),
                "{name} is repeated in {:?}",
                self.body
            );
        }
        map
    }

    /// The only value of header `name`; panics if it is repeated.
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        let mut values = self.headers.get_all(&name).iter();
        let first = values.next()?;
        assert!(values.next().is_none(), "{name} is repeated");
        Some(first.to_str().unwrap())
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<HashMap<String, Reply>>,
    requests: Mutex<Vec<Recorded>>,
    /// Delay before every answer.
    delay: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a request as in flight until dropped (answered, or abandoned by
/// the client).
struct Busy(Arc<Script>);

impl Busy {
    fn enter(script: &Arc<Script>) -> Self {
        let now = script.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        script.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(script.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops the server when the test ends.
enum Stop {
    Task(tokio::task::JoinHandle<()>),
    Thread(Option<tokio::sync::oneshot::Sender<()>>),
}

impl Drop for Stop {
    fn drop(&mut self) {
        match self {
            Self::Task(task) => task.abort(),
            Self::Thread(stop) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }
}

/// An authorization server on 127.0.0.1 whose answers are set per path;
/// unset paths answer 404. Every request is recorded, whatever the answer.
struct Fake {
    base: String,
    script: Arc<Script>,
    _stop: Stop,
}

impl Fake {
    /// A fake on a fresh port, answering a good active answer at
    /// [`INTROSPECT`].
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// A fake on `addr` (a port that was closed until now).
    async fn start_on(addr: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> Self {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Script::default());
        let app = Router::new().fallback(scripted).with_state(script.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let fake = Self {
            base,
            script,
            _stop: Stop::Task(task),
        };
        fake.set(INTROSPECT, Reply::Json(good()));
        fake
    }

    /// A fake served by a runtime of its own on another thread, so that
    /// nothing it does shows in the test thread's logs.
    fn start_on_own_thread() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Script::default());
        let app = Router::new().fallback(scripted).with_state(script.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let fake = Self {
            base,
            script,
            _stop: Stop::Thread(Some(stop)),
        };
        fake.set(INTROSPECT, Reply::Json(good()));
        fake
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

    /// The requests received on `path` so far.
    fn requests(&self, path: &str) -> Vec<Recorded> {
        self.script
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The number of requests received on `path` so far.
    fn hits(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// The number of introspection calls so far.
    fn calls(&self) -> usize {
        self.hits(INTROSPECT)
    }

    /// The most requests the fake was serving at once.
    fn max_in_flight(&self) -> usize {
        self.script.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn scripted(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    script.requests.lock().unwrap().push(Recorded {
        method,
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let _busy = Busy::enter(&script);
    let reply = script.replies.lock().unwrap().get(&path).cloned();
    let delay = *script.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match reply {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Json(doc)) => axum::Json(doc).into_response(),
        Some(Reply::Raw(status, body)) => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Reply::Typed(content_type, body)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Some(Reply::Chunked(body)) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Reply::Redirect(status, location)) => {
            (status, [(header::LOCATION, location)]).into_response()
        }
        Some(Reply::Hang) => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------
// Answers, tokens, guards, apps.
// ---------------------------------------------------------------------------

/// Unix time in seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Unix time in milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A good active answer for [`AUD`] with `changes` applied (a `null` value
/// removes the member).
fn answer(changes: Value) -> Value {
    let now = now();
    let mut doc = json!({
        "active": true,
        "aud": AUD,
        "sub": "alice",
        "scope": "read",
        "client_id": "app-1",
        "username": "alice@example.com",
        "iat": now,
        "exp": now + 300,
    });
    let members = doc.as_object_mut().unwrap();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            members.remove(name);
        } else {
            members.insert(name.clone(), value.clone());
        }
    }
    doc
}

/// A good active answer.
fn good() -> Value {
    answer(json!({}))
}

/// A fresh opaque token (no dots, base64url-ish characters).
fn opaque() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let r = std::collections::hash_map::RandomState::new().hash_one(n);
    format!("opaque-{n}-{r:016x}")
}

/// Basic client authentication and the fake's endpoint.
fn config(fake: &Fake) -> IntrospectionConfig {
    IntrospectionConfig::new(ClientAuth::client_secret_basic(CLIENT_ID, CLIENT_SECRET))
        .endpoint(fake.url(INTROSPECT))
}

/// The fake as issuer, [`AUD`] as audience.
fn builder(fake: &Fake) -> TokenGuardBuilder {
    TokenGuard::builder().issuer(&fake.base).audience(AUD)
}

#[derive(Deserialize)]
struct Profile {
    sub: String,
    client_id: String,
    username: String,
    scope: String,
}

async fn me(Claims(c): Claims<AccessTokenClaims>) -> String {
    c.sub.clone().unwrap_or_default()
}

async fn profile(Claims(p): Claims<Profile>) -> String {
    format!("{} {} {} [{}]", p.sub, p.client_id, p.username, p.scope)
}

/// `GET /me` (the `sub`), `/profile` (members of the answer through a
/// custom claims type), `/read` and `/write` (scopes), behind `guard`.
fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/profile", get(profile))
        .route("/read", get(|_: RequireScope<Read>| async { "read" }))
        .route("/write", get(|_: RequireScope<Write>| async { "write" }))
        .layer(guard.layer())
}

/// A fake, a guard that introspects at it, and the app behind that guard.
struct Env {
    fake: Fake,
    guard: TokenGuard,
    app: Router,
}

impl Env {
    /// Default settings; the fake answers `reply`.
    async fn new(reply: Reply) -> Self {
        Self::with(reply, |b| b, |c| c).await
    }

    /// Settings adjusted by `b` (the builder) and `c` (introspection).
    async fn with(
        reply: Reply,
        b: impl FnOnce(TokenGuardBuilder) -> TokenGuardBuilder,
        c: impl FnOnce(IntrospectionConfig) -> IntrospectionConfig,
    ) -> Self {
        let fake = Fake::start().await;
        fake.set(INTROSPECT, reply);
        let guard = b(builder(&fake))
            .introspection(c(config(&fake)))
            .build()
            .unwrap();
        let app = app(&guard);
        Self { fake, guard, app }
    }

    /// `GET /me` with `token`.
    async fn call(&self, token: &str) -> Response {
        bearer(&self.app, "/me", token).await
    }

    fn calls(&self) -> usize {
        self.fake.calls()
    }
}

/// Asserts a 503 with `Retry-After` (whole seconds, at least 1) and no
/// challenge.
fn assert_503(res: &Response, what: &str) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_eq!(challenge(res), None, "{what}: a 503 carries no challenge");
    let retry = res
        .headers()
        .get(header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("{what}: no Retry-After on a 503"))
        .to_str()
        .unwrap();
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s >= 1),
        "{what}: Retry-After {retry:?}"
    );
}

/// Asserts that `err` is an introspection outage (503, retry later).
fn assert_unavailable(err: &AuthError, what: &str) {
    assert!(
        matches!(err.kind(), AuthErrorKind::IntrospectionUnavailable { .. }),
        "{what}: expected IntrospectionUnavailable, got {:?}",
        err.kind()
    );
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert!(
        err.retry_after()
            .is_some_and(|d| d >= Duration::from_secs(1)),
        "{what}: {:?}",
        err.retry_after()
    );
}

/// Asserts that, while the endpoint answers `bad`, a new token is answered
/// 503 on every request (each one asking again: nothing is cached), and
/// that once the endpoint answers well the same token is accepted at once.
async fn assert_outage_not_cached(env: &Env, bad: Reply, what: &str) {
    let token = opaque();
    env.fake.set(INTROSPECT, bad);
    let before = env.calls();
    assert_503(&env.call(&token).await, what);
    assert_unavailable(&env.guard.verify(&token).await.unwrap_err(), what);
    assert_503(&env.call(&token).await, what);
    assert_eq!(env.calls(), before + 3, "{what}: asked every time");

    env.fake.set(INTROSPECT, Reply::Json(good()));
    let res = env.call(&token).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{what}: not accepted after the fix"
    );
    assert_eq!(body(res).await, "alice");
    assert_eq!(env.calls(), before + 4, "{what}");
    // And now it is cached.
    assert_eq!(env.call(&token).await.status(), StatusCode::OK, "{what}");
    assert_eq!(env.calls(), before + 4, "{what}");
}

/// Asserts that an active `answer` is refused with `reason`: 401 with its
/// exact challenge through the layer, and the same kind from `verify`.
async fn assert_refused(answer: Value, reason: InvalidToken, description: &str) {
    assert_refused_with(answer, |c| c, reason, description).await;
}

async fn assert_refused_with(
    answer: Value,
    c: impl FnOnce(IntrospectionConfig) -> IntrospectionConfig,
    reason: InvalidToken,
    description: &str,
) {
    let env = Env::with(Reply::Json(answer.clone()), |b| b, c).await;
    let res = env.call(&opaque()).await;
    assert_invalid_token(&res, description);
    let err = env.guard.verify(&opaque()).await.unwrap_err();
    assert_eq!(err.kind(), &AuthErrorKind::InvalidToken(reason), "{answer}");
    assert_eq!(env.calls(), 2);
}

/// Asserts that an active `answer` is accepted: 200 at the handler.
async fn assert_accepted_with(
    answer: Value,
    c: impl FnOnce(IntrospectionConfig) -> IntrospectionConfig,
) {
    let env = Env::with(Reply::Json(answer.clone()), |b| b, c).await;
    let res = env.call(&opaque()).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{answer}: {:?}",
        challenge(&res)
    );
    assert_eq!(body(res).await, "alice");
    let verified = env.guard.verify(&opaque()).await.unwrap();
    assert_eq!(verified.subject(), Some("alice"));
}

async fn assert_accepted(answer: Value) {
    assert_accepted_with(answer, |c| c).await;
}

/// A closed port on 127.0.0.1: nothing listens on it.
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------
// Active and inactive answers.
// ---------------------------------------------------------------------------

/// An active answer reaches the handler, with its claims and extra members.
#[tokio::test]
async fn active_answer_reaches_the_handler_with_its_claims() {
    let env = Env::new(Reply::Json(answer(json!({"scope": "read profile"})))).await;
    let token = opaque();

    let res = env.call(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(challenge(&res), None);
    assert_eq!(body(res).await, "alice");

    // Members beyond the standard claims, through a custom claims type.
    let res = bearer(&env.app, "/profile", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        body(res).await,
        "alice app-1 alice@example.com [read profile]"
    );

    let verified = env.guard.verify(&token).await.unwrap();
    assert_eq!(verified.subject(), Some("alice"));
    assert!(verified.scopes().contains("read"));
    assert!(verified.scopes().contains("profile"));
    assert!(!verified.scopes().contains("write"));
    assert_eq!(env.calls(), 1, "one introspection for the token");
}

/// `RequireScope` enforces the answer's `scope` member (403 otherwise).
#[tokio::test]
async fn scope_member_is_enforced_by_require_scope() {
    let env = Env::new(Reply::Json(answer(json!({"scope": "read"})))).await;
    let token = opaque();

    let res = bearer(&env.app, "/read", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "read");

    let res = bearer(&env.app, "/write", &token).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res).as_deref(),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="write""#
        )
    );

    // No `scope` member at all: no scope.
    let env = Env::new(Reply::Json(answer(json!({"scope": null})))).await;
    let res = bearer(&env.app, "/read", &opaque()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res).as_deref(),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="read""#
        )
    );
}

/// `"active": false` is a 401 "not active".
#[tokio::test]
async fn inactive_answer_is_refused_as_not_active() {
    let env = Env::new(Reply::Json(json!({"active": false}))).await;
    let res = env.call(&opaque()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&res).as_deref(),
        Some(
            r#"Bearer realm="api", error="invalid_token", error_description="The access token is not active""#
        )
    );
    assert_eq!(res.headers().get(header::RETRY_AFTER), None);
    let err = env.guard.verify(&opaque()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::Inactive)
    );
    // Whatever else an inactive answer says.
    let env = Env::new(Reply::Json(answer(json!({"active": false})))).await;
    assert_invalid_token(&env.call(&opaque()).await, INACTIVE);
}

// ---------------------------------------------------------------------------
// Outages: every failure of the authorization server is a 503, never cached.
// ---------------------------------------------------------------------------

/// `active` missing or not the boolean `true`/`false` is an outage.
#[tokio::test]
async fn active_member_not_a_boolean_is_an_outage() {
    let env = Env::new(Reply::Json(good())).await;
    let mut null = good();
    null["active"] = Value::Null;
    let cases = [
        ("missing", answer(json!({"active": null}))),
        ("string", answer(json!({"active": "true"}))),
        ("number", answer(json!({"active": 1}))),
        ("null", null),
        ("object", answer(json!({"active": {"value": true}}))),
    ];
    for (what, doc) in cases {
        assert_outage_not_cached(&env, Reply::Json(doc), what).await;
    }
}

/// A body that is not a JSON object (or has claims of the wrong types) is an
/// outage.
#[tokio::test]
async fn garbage_answers_are_outages() {
    let env = Env::new(Reply::Json(good())).await;
    let ok = StatusCode::OK;
    let cases: [(&str, Vec<u8>); 8] = [
        ("not JSON", b"active=true".to_vec()),
        ("HTML", b"<html>hello</html>".to_vec()),
        ("empty", Vec::new()),
        ("truncated", br#"{"active": true, "exp": 1"#.to_vec()),
        ("array", json!([good()]).to_string().into_bytes()),
        ("string", br#""active""#.to_vec()),
        (
            "exp of the wrong type",
            answer(json!({"exp": "soon"})).to_string().into_bytes(),
        ),
        (
            "duplicate active",
            br#"{"active": false, "active": true}"#.to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        assert_outage_not_cached(&env, Reply::Raw(ok, bytes), what).await;
    }
}

/// Error statuses (5xx, and our credentials refused) are outages, whatever
/// the body.
#[tokio::test]
async fn error_statuses_are_outages() {
    let env = Env::new(Reply::Json(good())).await;
    // A body that would be accepted with a 200.
    let good_body = good().to_string().into_bytes();
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_FOUND,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_outage_not_cached(&env, Reply::Raw(status, good_body.clone()), status.as_str())
            .await;
    }
    assert_outage_not_cached(
        &env,
        Reply::Raw(
            StatusCode::UNAUTHORIZED,
            br#"{"error": "invalid_client"}"#.to_vec(),
        ),
        "401 invalid_client",
    )
    .await;
}

/// A redirect is an outage and is not followed.
#[tokio::test]
async fn redirect_is_not_followed() {
    let env = Env::new(Reply::Json(good())).await;
    env.fake.set("/elsewhere", Reply::Json(good()));
    for status in [
        StatusCode::FOUND,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        let to = env.fake.url("/elsewhere");
        assert_outage_not_cached(&env, Reply::Redirect(status, to), status.as_str()).await;
    }
    assert_eq!(env.fake.hits("/elsewhere"), 0, "a redirect was followed");
}

/// An answer over `max_response_size` is an outage; one at the limit is fine.
#[tokio::test]
async fn oversized_answer_is_an_outage() {
    const LIMIT: usize = 2048;
    /// A good answer padded with an ignored member to `size` bytes.
    fn padded(size: usize) -> Vec<u8> {
        let mut doc = good();
        let base = doc.to_string().len();
        doc["padding"] = Value::String("x".repeat(size - base - r#","padding":"""#.len()));
        let bytes = doc.to_string().into_bytes();
        assert_eq!(bytes.len(), size);
        bytes
    }
    let env = Env::with(Reply::Json(good()), |b| b, |c| c.max_response_size(LIMIT)).await;
    let ok = StatusCode::OK;

    for (what, reply) in [
        ("at the limit", Reply::Raw(ok, padded(LIMIT))),
        ("at the limit, chunked", Reply::Chunked(padded(LIMIT))),
    ] {
        env.fake.set(INTROSPECT, reply);
        let res = env.call(&opaque()).await;
        assert_eq!(res.status(), StatusCode::OK, "{what}");
    }
    for (what, reply) in [
        ("one byte over", Reply::Raw(ok, padded(LIMIT + 1))),
        ("one byte over, chunked", Reply::Chunked(padded(LIMIT + 1))),
        ("far over", Reply::Raw(ok, padded(64 * LIMIT))),
        ("far over, chunked", Reply::Chunked(padded(64 * LIMIT))),
    ] {
        assert_outage_not_cached(&env, reply, what).await;
    }

    // The default cap is 64 KiB.
    let env = Env::new(Reply::Json(good())).await;
    env.fake.set(INTROSPECT, Reply::Raw(ok, padded(64 * 1024)));
    assert_eq!(env.call(&opaque()).await.status(), StatusCode::OK);
    assert_outage_not_cached(&env, Reply::Raw(ok, padded(64 * 1024 + 1)), "over 64 KiB").await;
}

/// A server that accepts the connection and never answers times out: 503
/// after `timeout`, not later.
#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections, reads nothing, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let _stop = Stop::Task(tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    }));
    let timeout = Duration::from_millis(300);
    let guard = TokenGuard::builder()
        .issuer(format!("http://{addr}"))
        .audience(AUD)
        .introspection(
            IntrospectionConfig::new(ClientAuth::client_secret_basic(CLIENT_ID, CLIENT_SECRET))
                .endpoint(format!("http://{addr}{INTROSPECT}"))
                .timeout(timeout),
        )
        .build()
        .unwrap();
    let app = app(&guard);

    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(5), bearer(&app, "/me", &opaque()))
        .await
        .expect("the guard hung");
    let took = started.elapsed();
    assert_503(&res, "silent server");
    assert!(took >= timeout, "gave up after {took:?}");
    assert!(took < Duration::from_secs(2), "gave up only after {took:?}");

    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), guard.verify(&opaque()))
        .await
        .expect("the guard hung")
        .unwrap_err();
    assert_unavailable(&err, "silent server");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(accepted.load(Ordering::SeqCst) >= 1);
}

/// An HTTP server that takes the request and never answers times out; once
/// it answers, the same token is accepted at once.
#[tokio::test]
async fn hanging_answer_times_out_and_is_not_cached() {
    let timeout = Duration::from_millis(300);
    let env = Env::with(Reply::Json(good()), |b| b, |c| c.timeout(timeout)).await;
    let token = opaque();
    env.fake.set(INTROSPECT, Reply::Hang);

    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(5), env.call(&token))
        .await
        .expect("the guard hung");
    let took = started.elapsed();
    assert_503(&res, "hanging answer");
    assert!(took >= timeout, "gave up after {took:?}");
    assert!(took < Duration::from_secs(2), "gave up only after {took:?}");
    assert_eq!(env.calls(), 1);

    env.fake.set(INTROSPECT, Reply::Json(good()));
    let res = env.call(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(env.calls(), 2);
    // The abandoned request is no longer in flight at the fake.
    let deadline = Instant::now() + Duration::from_secs(2);
    while env.fake.script.in_flight.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the hanging request was kept open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Nothing listening is an outage; once a server listens, the same token is
/// accepted at once.
#[tokio::test]
async fn unreachable_server_is_an_outage_and_is_not_cached() {
    let addr = closed_port();
    let guard = TokenGuard::builder()
        .issuer(format!("http://{addr}"))
        .audience(AUD)
        .introspection(
            IntrospectionConfig::new(ClientAuth::client_secret_basic(CLIENT_ID, CLIENT_SECRET))
                .endpoint(format!("http://{addr}{INTROSPECT}")),
        )
        .build()
        .unwrap();
    let app = app(&guard);
    let token = opaque();

    for _ in 0..2 {
        let started = Instant::now();
        assert_503(&bearer(&app, "/me", &token).await, "closed port");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_unavailable(&guard.verify(&token).await.unwrap_err(), "closed port");

    let fake = Fake::start_on(addr).await;
    let res = bearer(&app, "/me", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fake.calls(), 1);
}

// ---------------------------------------------------------------------------
// The claims of an active answer are checked like a JWT's.
// ---------------------------------------------------------------------------

/// An `exp` in the past is refused as expired.
#[tokio::test]
async fn exp_in_the_past_is_refused() {
    let now = now();
    assert_refused(
        answer(json!({"iat": now - 7200, "exp": now - 3600})),
        InvalidToken::Expired,
        EXPIRED,
    )
    .await;
}

/// An answer without `exp` is refused as missing a claim.
#[tokio::test]
async fn missing_exp_is_refused() {
    assert_refused(
        answer(json!({"exp": null})),
        InvalidToken::MissingClaim("exp"),
        MISSING_CLAIM,
    )
    .await;
}

/// An `nbf` in the future is refused as not valid yet.
#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let now = now();
    assert_refused(
        answer(json!({"nbf": now + 3600, "exp": now + 7200})),
        InvalidToken::NotYetValid,
        NOT_YET_VALID,
    )
    .await;
}

/// An `iat` in the future is refused.
#[tokio::test]
async fn iat_in_the_future_is_refused() {
    let now = now();
    assert_refused(
        answer(json!({"iat": now + 3600, "exp": now + 7200})),
        InvalidToken::IssuedInTheFuture,
        FUTURE_IAT,
    )
    .await;
}

/// A lifetime (`exp` − `iat`) over 24 h is refused.
#[tokio::test]
async fn lifetime_over_24_hours_is_refused() {
    let now = now();
    assert_refused(
        answer(json!({"iat": now, "exp": now + 25 * 3600})),
        InvalidToken::LifetimeTooLong,
        LIFETIME,
    )
    .await;
}

/// An `iss` that is not the guard's issuer is refused.
#[tokio::test]
async fn other_issuer_is_refused() {
    assert_refused(
        answer(json!({"iss": "https://evil.example.com"})),
        InvalidToken::WrongIssuer,
        WRONG_ISSUER,
    )
    .await;
}

/// Without `iss` (optional in RFC 7662), or with the guard's, the answer is
/// accepted.
#[tokio::test]
async fn absent_or_own_issuer_is_accepted() {
    assert_accepted(answer(json!({"iss": null}))).await;
    // The fake's base URL is the guard's issuer.
    let env = Env::new(Reply::Json(good())).await;
    env.fake.set(
        INTROSPECT,
        Reply::Json(answer(json!({"iss": env.fake.base}))),
    );
    assert_eq!(env.call(&opaque()).await.status(), StatusCode::OK);
    // Compared exactly: a trailing slash is another issuer.
    env.fake.set(
        INTROSPECT,
        Reply::Json(answer(json!({"iss": format!("{}/", env.fake.base)}))),
    );
    assert_invalid_token(&env.call(&opaque()).await, WRONG_ISSUER);
}

/// Without `aud` the answer is refused, unless `allow_missing_audience`.
#[tokio::test]
async fn absent_audience_is_refused_unless_allowed() {
    assert_refused(
        answer(json!({"aud": null})),
        InvalidToken::MissingClaim("aud"),
        MISSING_CLAIM,
    )
    .await;
    assert_accepted_with(answer(json!({"aud": null})), |c| c.allow_missing_audience()).await;
}

/// An `aud` naming another resource is refused, even with
/// `allow_missing_audience`.
#[tokio::test]
async fn other_audience_is_refused() {
    let other = json!({"aud": "https://other.example.com"});
    assert_refused(
        answer(other.clone()),
        InvalidToken::WrongAudience,
        WRONG_AUDIENCE,
    )
    .await;
    assert_refused_with(
        answer(other),
        |c| c.allow_missing_audience(),
        InvalidToken::WrongAudience,
        WRONG_AUDIENCE,
    )
    .await;
    assert_refused(
        answer(json!({"aud": ["https://other.example.com", "https://a.example.com"]})),
        InvalidToken::WrongAudience,
        WRONG_AUDIENCE,
    )
    .await;
}

/// An `aud` array containing the guard's audience is accepted.
#[tokio::test]
async fn audience_array_containing_ours_is_accepted() {
    assert_accepted(answer(json!({"aud": ["https://other.example.com", AUD]}))).await;
    assert_accepted(answer(json!({"aud": [AUD]}))).await;
}

/// `token_type` `Bearer` is accepted in any case.
#[tokio::test]
async fn bearer_token_type_is_accepted_in_any_case() {
    for t in ["Bearer", "bearer", "BEARER"] {
        assert_accepted(answer(json!({"token_type": t}))).await;
    }
}

/// `token_type` `DPoP` is a bound token, refused as a bearer token.
#[tokio::test]
async fn dpop_token_type_is_refused_as_bound() {
    assert_refused(
        answer(json!({"token_type": "DPoP"})),
        InvalidToken::SenderConstrained,
        BOUND,
    )
    .await;
    // Bound to a key (`cnf.jkt`): still not usable as a bearer token.
    assert_refused(
        answer(json!({
            "token_type": "DPoP",
            "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
        })),
        InvalidToken::SenderConstrained,
        BOUND,
    )
    .await;
}

/// `token_type` `mac` (or any other type) is refused.
#[tokio::test]
async fn other_token_type_is_refused() {
    for t in ["mac", "N_A", "urn:ietf:params:oauth:token-type:id_token"] {
        assert_refused(
            answer(json!({"token_type": t})),
            InvalidToken::WrongType,
            WRONG_TYPE,
        )
        .await;
    }
}

/// A `cnf` member (a sender-constrained token) is refused as a bearer token.
#[tokio::test]
async fn cnf_member_is_refused_as_bound() {
    for cnf in [
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
    ] {
        assert_refused(
            answer(json!({"token_type": "Bearer", "cnf": cnf})),
            InvalidToken::SenderConstrained,
            BOUND,
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// The request tokenguard sends.
// ---------------------------------------------------------------------------

/// Asserts the parts every introspection request shares; returns its form.
fn assert_introspection_request(r: &Recorded, token: &str) -> HashMap<String, String> {
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, INTROSPECT);
    assert_eq!(r.query, None, "nothing in the query string");
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.header(header::ACCEPT), Some("application/json"));
    let form = r.form();
    assert_eq!(form.get("token").map(String::as_str), Some(token));
    assert_eq!(
        form.get("token_type_hint").map(String::as_str),
        Some("access_token")
    );
    form
}

/// `client_secret_basic`: the form body, the headers, and the id and secret
/// form-encoded before base64 (RFC 6749 §2.3.1).
#[tokio::test]
async fn client_secret_basic_request() {
    let fake = Fake::start().await;
    let guard = builder(&fake)
        .introspection(
            IntrospectionConfig::new(ClientAuth::client_secret_basic("rs client", "s3:cr&t/é"))
                .endpoint(fake.url(INTROSPECT)),
        )
        .build()
        .unwrap();
    // A token with characters that form encoding escapes.
    let token = "tok/en+x~y_z-0=";
    assert_eq!(
        bearer(&app(&guard), "/me", token).await.status(),
        StatusCode::OK
    );

    let requests = fake.requests(INTROSPECT);
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    let form = assert_introspection_request(r, token);
    assert_eq!(form.len(), 2, "only token and hint: {:?}", r.body);
    assert_eq!(
        r.body,
        "token=tok%2Fen%2Bx%7Ey_z-0%3D&token_type_hint=access_token"
    );
    let authorization = r.header(header::AUTHORIZATION).expect("Authorization");
    let b64 = authorization.strip_prefix("Basic ").expect("Basic scheme");
    let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
    assert_eq!(decoded, "rs+client:s3%3Acr%26t%2F%C3%A9");
}

/// `client_secret_post`: the id and secret in the body, no `Authorization`.
#[tokio::test]
async fn client_secret_post_request() {
    let fake = Fake::start().await;
    let guard = builder(&fake)
        .introspection(
            IntrospectionConfig::new(ClientAuth::client_secret_post("rs client", "s3:cr&t/é"))
                .endpoint(fake.url(INTROSPECT)),
        )
        .build()
        .unwrap();
    let token = opaque();
    assert_eq!(
        bearer(&app(&guard), "/me", &token).await.status(),
        StatusCode::OK
    );

    let requests = fake.requests(INTROSPECT);
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    let form = assert_introspection_request(r, &token);
    assert_eq!(r.header(header::AUTHORIZATION), None);
    assert_eq!(form.len(), 4, "{:?}", r.body);
    assert_eq!(form["client_id"], "rs client");
    assert_eq!(form["client_secret"], "s3:cr&t/é");
}

#[derive(Deserialize)]
struct Assertion {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
}

/// `private_key_jwt`: a client assertion signed with the client's key, with
/// `iss` = `sub` = client id, `aud` = issuer, `exp`, `iat`, a fresh `jti`.
#[tokio::test]
async fn private_key_jwt_request() {
    let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
    let public = jsonwebtoken::DecodingKey::from_ec_der(pair.public_key().as_ref());
    let other = EcdsaKeyPair::generate(alg).unwrap();
    let other_public = jsonwebtoken::DecodingKey::from_ec_der(other.public_key().as_ref());

    let fake = Fake::start().await;
    let guard = builder(&fake)
        .introspection(
            IntrospectionConfig::new(ClientAuth::private_key_jwt(
                CLIENT_ID,
                jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
                Algorithm::ES256,
                Some("rs-key-1"),
            ))
            .endpoint(fake.url(INTROSPECT)),
        )
        .build()
        .unwrap();
    let app = app(&guard);
    let tokens = [opaque(), opaque()];
    for token in &tokens {
        assert_eq!(bearer(&app, "/me", token).await.status(), StatusCode::OK);
    }

    let requests = fake.requests(INTROSPECT);
    assert_eq!(requests.len(), 2);
    let mut jtis = Vec::new();
    for (r, token) in requests.iter().zip(&tokens) {
        let form = assert_introspection_request(r, token);
        assert_eq!(r.header(header::AUTHORIZATION), None);
        assert!(!form.contains_key("client_secret"));
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let assertion = &form["client_assertion"];

        let head = jsonwebtoken::decode_header(assertion).unwrap();
        assert_eq!(head.alg, Algorithm::ES256);
        assert_eq!(head.kid.as_deref(), Some("rs-key-1"));

        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&[&fake.base]);
        validation.set_issuer(&[CLIENT_ID]);
        validation.sub = Some(CLIENT_ID.to_owned());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Assertion>(assertion, &public, &validation)
            .expect("the assertion verifies with the client's public key")
            .claims;
        assert!(
            jsonwebtoken::decode::<Assertion>(assertion, &other_public, &validation).is_err(),
            "the assertion verifies with another key"
        );
        assert_eq!(claims.iss, CLIENT_ID);
        assert_eq!(claims.sub, CLIENT_ID);
        assert_eq!(claims.aud, fake.base);
        let now = now();
        assert!((now - 5..=now).contains(&claims.iat), "iat {}", claims.iat);
        assert!(claims.exp > now, "exp {}", claims.exp);
        assert!(
            claims.exp - claims.iat <= 300,
            "lifetime {}",
            claims.exp - claims.iat
        );
        assert!(!claims.jti.is_empty());
        jtis.push(claims.jti);
    }
    assert_ne!(jtis[0], jtis[1], "each assertion has its own jti");
}

/// An injected HTTP client is the one that introspects.
#[tokio::test]
async fn injected_http_client_is_used() {
    let fake = Fake::start().await;
    let client = reqwest::Client::builder()
        .user_agent("injected-agent/1")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let guard = builder(&fake)
        .http_client(client)
        .introspection(config(&fake))
        .build()
        .unwrap();
    assert_eq!(
        bearer(&app(&guard), "/me", &opaque()).await.status(),
        StatusCode::OK
    );
    let requests = fake.requests(INTROSPECT);
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header(header::USER_AGENT),
        Some("injected-agent/1")
    );
}

/// A writer into a shared buffer, for a `tracing_subscriber`.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Nothing logged at any level, during failing and succeeding
/// introspections, contains the token (or the client secret).
#[tokio::test(flavor = "current_thread")]
async fn token_never_appears_in_logs() {
    // The fake runs on its own thread: only the guard's side is captured.
    let fake = Fake::start_on_own_thread();
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let guard = builder(&fake)
        .introspection(config(&fake).inactive_ttl(Duration::ZERO))
        .build()
        .unwrap();
    let app = app(&guard);
    // Form encoding escapes some of these characters: neither spelling may
    // show.
    let token = format!("secret-token/{}+=", opaque());
    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    assert_ne!(token, encoded);

    let failures = [
        Reply::Raw(StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec()),
        Reply::Raw(StatusCode::UNAUTHORIZED, b"{}".to_vec()),
        Reply::Raw(StatusCode::OK, b"not json".to_vec()),
        Reply::Json(json!({"active": "yes"})),
        Reply::Redirect(StatusCode::FOUND, fake.url("/elsewhere")),
    ];
    for reply in failures {
        fake.set(INTROSPECT, reply);
        assert_503(&bearer(&app, "/me", &token).await, "failing introspection");
    }
    fake.set(INTROSPECT, Reply::Json(json!({"active": false})));
    assert_invalid_token(&bearer(&app, "/me", &token).await, INACTIVE);
    fake.set(INTROSPECT, Reply::Json(good()));
    assert_eq!(bearer(&app, "/me", &token).await.status(), StatusCode::OK);
    guard.verify(&token).await.unwrap();
    assert_eq!(fake.calls(), 7);

    let text = logs.text();
    assert!(
        text.contains("token introspection"),
        "the failures were not logged:\n{text}"
    );
    assert!(!text.contains(&token), "the token was logged:\n{text}");
    assert!(
        !text.contains(&encoded),
        "the encoded token was logged:\n{text}"
    );
    assert!(
        !text.contains(CLIENT_SECRET),
        "the client secret was logged:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// The cache.
// ---------------------------------------------------------------------------

/// A second request with the same token makes no second call.
#[tokio::test]
async fn active_answer_is_cached() {
    let env = Env::new(Reply::Json(good())).await;
    let token = opaque();
    for _ in 0..5 {
        assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    }
    env.guard.verify(&token).await.unwrap();
    assert_eq!(env.calls(), 1);
    // Another token is another call.
    assert_eq!(env.call(&opaque()).await.status(), StatusCode::OK);
    assert_eq!(env.calls(), 2);
}

/// An active answer is asked again once `max_ttl` has passed, not before.
#[tokio::test]
async fn active_answer_is_asked_again_after_max_ttl() {
    let ttl = Duration::from_secs(1);
    let env = Env::with(Reply::Json(good()), |b| b, |c| c.max_ttl(ttl)).await;
    let token = opaque();
    let started = Instant::now();
    assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    assert!(started.elapsed() < ttl, "the test itself was too slow");
    assert_eq!(env.calls(), 1);

    let deadline = started + ttl + Duration::from_secs(3);
    while env.calls() < 2 {
        assert!(Instant::now() < deadline, "not asked again after max_ttl");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    }
    assert!(
        started.elapsed() >= ttl,
        "asked again after {:?}",
        started.elapsed()
    );
    assert_eq!(env.calls(), 2);
}

/// An `exp` sooner than `max_ttl` ends the cache entry at `exp`.
#[tokio::test]
async fn exp_earlier_than_max_ttl_bounds_the_cache_entry() {
    let exp = now() + 2;
    let env = Env::with(
        Reply::Json(answer(json!({"exp": exp}))),
        |b| b.leeway(Duration::ZERO),
        |c| c.max_ttl(Duration::from_secs(60)),
    )
    .await;
    let token = opaque();
    assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    assert!(now_ms() < exp * 1000, "the test itself was too slow");
    assert_eq!(env.calls(), 1);
    // From now on the server says the token lives longer.
    env.fake
        .set(INTROSPECT, Reply::Json(answer(json!({"exp": now() + 300}))));

    let deadline = Instant::now() + Duration::from_secs(5);
    while env.calls() < 2 {
        assert!(Instant::now() < deadline, "not asked again after exp");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res = env.call(&token).await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", challenge(&res));
    }
    assert!(
        now_ms() >= exp * 1000,
        "asked again before exp, {} ms early",
        exp * 1000 - now_ms()
    );
    assert_eq!(env.calls(), 2);
}

/// `active: false` is answered from the cache for `inactive_ttl`, then asked
/// again.
#[tokio::test]
async fn inactive_answer_is_cached_for_inactive_ttl() {
    let ttl = Duration::from_secs(1);
    let env = Env::with(
        Reply::Json(json!({"active": false})),
        |b| b,
        |c| c.inactive_ttl(ttl),
    )
    .await;
    let token = opaque();
    let started = Instant::now();
    assert_invalid_token(&env.call(&token).await, INACTIVE);
    // The server changes its mind; the refusal is still cached.
    env.fake.set(INTROSPECT, Reply::Json(good()));
    assert_invalid_token(&env.call(&token).await, INACTIVE);
    assert_eq!(
        env.guard.verify(&token).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::Inactive)
    );
    assert!(started.elapsed() < ttl, "the test itself was too slow");
    assert_eq!(env.calls(), 1);

    let deadline = started + ttl + Duration::from_secs(3);
    loop {
        assert!(
            Instant::now() < deadline,
            "not asked again after inactive_ttl"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res = env.call(&token).await;
        if res.status() == StatusCode::OK {
            break;
        }
        assert_invalid_token(&res, INACTIVE);
        assert_eq!(env.calls(), 1);
    }
    assert!(
        started.elapsed() >= ttl,
        "asked again after {:?}",
        started.elapsed()
    );
    assert_eq!(env.calls(), 2);
}

/// An active answer refused by the checks is cached like `active: false`.
#[tokio::test]
async fn refused_claims_are_cached_for_inactive_ttl() {
    let env = Env::new(Reply::Json(answer(
        json!({"aud": "https://other.example.com"}),
    )))
    .await;
    let token = opaque();
    for _ in 0..3 {
        assert_invalid_token(&env.call(&token).await, WRONG_AUDIENCE);
    }
    assert_eq!(env.calls(), 1);
}

/// With `inactive_ttl(Duration::ZERO)` every request asks again.
#[tokio::test]
async fn zero_inactive_ttl_asks_every_time() {
    let env = Env::with(
        Reply::Json(json!({"active": false})),
        |b| b,
        |c| c.inactive_ttl(Duration::ZERO),
    )
    .await;
    let token = opaque();
    for n in 1..=3 {
        assert_invalid_token(&env.call(&token).await, INACTIVE);
        assert_eq!(env.calls(), n);
    }
    // Active answers are still cached.
    env.fake.set(INTROSPECT, Reply::Json(good()));
    for _ in 0..3 {
        assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    }
    assert_eq!(env.calls(), 4);
}

/// With `disable_cache()` every request asks, active or not.
#[tokio::test]
async fn disabled_cache_asks_every_time() {
    let env = Env::with(Reply::Json(good()), |b| b, |c| c.disable_cache()).await;
    let token = opaque();
    for n in 1..=3 {
        assert_eq!(env.call(&token).await.status(), StatusCode::OK);
        assert_eq!(env.calls(), n);
    }
    env.fake
        .set(INTROSPECT, Reply::Json(json!({"active": false})));
    for n in 4..=5 {
        assert_invalid_token(&env.call(&token).await, INACTIVE);
        assert_eq!(env.calls(), n);
    }
}

// ---------------------------------------------------------------------------
// Concurrency.
// ---------------------------------------------------------------------------

/// 100 concurrent requests with one new token share one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_one_token_share_one_call() {
    let env = Env::new(Reply::Json(good())).await;
    env.fake.set_delay(Duration::from_millis(200));
    let token = opaque();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let app = env.app.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let res = bearer(&app, "/me", &token).await;
                (res.status(), body(res).await)
            })
        })
        .collect();
    for task in tasks {
        let (status, text) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text, "alice");
    }
    assert_eq!(env.calls(), 1);
    assert_eq!(env.call(&token).await.status(), StatusCode::OK);
    assert_eq!(env.calls(), 1);
}

/// Past `max_in_flight` calls, new tokens are answered 503 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_past_max_in_flight_are_refused_at_once() {
    let delay = Duration::from_millis(500);
    let env = Env::with(Reply::Json(good()), |b| b, |c| c.max_in_flight(4)).await;
    env.fake.set_delay(delay);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = env.app.clone();
            let token = opaque();
            tokio::spawn(async move {
                let started = Instant::now();
                let res = bearer(&app, "/me", &token).await;
                (res, started.elapsed())
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for task in tasks {
        let (res, took) = task.await.unwrap();
        match res.status() {
            StatusCode::OK => {
                ok += 1;
                assert!(took >= delay, "answered after {took:?}");
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_503(&res, "busy");
                assert!(
                    took < Duration::from_millis(250),
                    "a busy refusal took {took:?}"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        env.fake.max_in_flight() <= 4,
        "{} calls at once",
        env.fake.max_in_flight()
    );
    assert_eq!(ok, 4, "{ok} accepted, {busy} refused");
    assert_eq!(busy, 46);
    assert_eq!(env.calls(), 4);

    // Once the calls are done, new tokens are introspected again.
    env.fake.set_delay(Duration::ZERO);
    assert_eq!(env.call(&opaque()).await.status(), StatusCode::OK);
    assert_eq!(env.calls(), 5);
}

// ---------------------------------------------------------------------------
// JWTs and opaque tokens side by side.
// ---------------------------------------------------------------------------

/// With JWT keys too, the issuer's JWTs are verified locally and opaque
/// tokens introspected.
#[tokio::test]
async fn jwts_are_verified_locally_and_opaque_tokens_introspected() {
    let fake = Fake::start().await;
    let issuer = TestIssuer::with_issuer(&fake.base);
    let guard = issuer
        .guard_builder(AUD)
        .introspection(config(&fake))
        .build()
        .unwrap();
    let app = app(&guard);

    let jwt = issuer.token().audience(AUD).subject("bob").mint();
    let res = bearer(&app, "/me", &jwt).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "bob");
    assert_eq!(guard.verify(&jwt).await.unwrap().subject(), Some("bob"));
    assert_eq!(fake.calls(), 0, "a JWT of the issuer was introspected");

    // A refused JWT of the issuer is refused locally too.
    let expired = issuer.token().audience(AUD).expired().mint();
    assert_invalid_token(&bearer(&app, "/me", &expired).await, EXPIRED);
    assert_eq!(fake.calls(), 0);

    let res = bearer(&app, "/me", &opaque()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "alice");
    assert_eq!(fake.calls(), 1);

    // A JWT naming another issuer is not the issuer's: introspected.
    let foreign = TestIssuer::with_issuer("https://other.example.com")
        .token()
        .audience(AUD)
        .mint();
    fake.set(INTROSPECT, Reply::Json(json!({"active": false})));
    assert_invalid_token(&bearer(&app, "/me", &foreign).await, INACTIVE);
    assert_eq!(fake.calls(), 2);
    assert_eq!(fake.requests(INTROSPECT)[1].form()["token"], foreign);
}

/// With `introspect_jwts(true)`, the issuer's JWTs are introspected too.
#[tokio::test]
async fn introspect_jwts_sends_jwts_to_the_endpoint() {
    let fake = Fake::start().await;
    let issuer = TestIssuer::with_issuer(&fake.base);
    let guard = issuer
        .guard_builder(AUD)
        .introspection(config(&fake).introspect_jwts(true))
        .build()
        .unwrap();
    let app = app(&guard);

    let jwt = issuer.token().audience(AUD).subject("bob").mint();
    let res = bearer(&app, "/me", &jwt).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The answer decides, not the JWT's own claims.
    assert_eq!(body(res).await, "alice");
    assert_eq!(fake.calls(), 1);
    assert_eq!(fake.requests(INTROSPECT)[0].form()["token"], jwt);

    // Revoked at the server: refused, although its signature is good.
    let revoked = issuer.token().audience(AUD).mint();
    fake.set(INTROSPECT, Reply::Json(json!({"active": false})));
    assert_invalid_token(&bearer(&app, "/me", &revoked).await, INACTIVE);
    assert_eq!(fake.calls(), 2);
    // And an outage is an outage for JWTs too.
    fake.set(
        INTROSPECT,
        Reply::Raw(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    );
    let another = issuer.token().audience(AUD).mint();
    assert_503(&bearer(&app, "/me", &another).await, "JWT introspection");
}

// ---------------------------------------------------------------------------
// Discovery of the endpoint.
// ---------------------------------------------------------------------------

/// A discovery-only guard (no `.endpoint(..)`).
fn discovering_guard(fake: &Fake) -> TokenGuard {
    builder(fake)
        .introspection(IntrospectionConfig::new(ClientAuth::client_secret_basic(
            CLIENT_ID,
            CLIENT_SECRET,
        )))
        .build()
        .unwrap()
}

/// Without `.endpoint(..)`, the metadata's `introspection_endpoint` is used,
/// read once.
#[tokio::test]
async fn endpoint_is_discovered_from_metadata() {
    let fake = Fake::start().await;
    fake.set(
        METADATA,
        Reply::Json(json!({
            "issuer": fake.base,
            "introspection_endpoint": fake.url("/oauth2/introspect"),
        })),
    );
    fake.set("/oauth2/introspect", Reply::Json(good()));
    let guard = discovering_guard(&fake);
    let app = app(&guard);

    for _ in 0..3 {
        let res = bearer(&app, "/me", &opaque()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(fake.hits(METADATA), 1, "the metadata is read once");
    assert_eq!(fake.hits("/oauth2/introspect"), 3);
    assert_eq!(fake.calls(), 0, "{INTROSPECT} was guessed");
    let r = &fake.requests("/oauth2/introspect")[0];
    assert_eq!(r.method, Method::POST);
    assert!(r.header(header::AUTHORIZATION).is_some());
}

/// Metadata naming another issuer is an outage; the endpoint it names is
/// never called.
#[tokio::test]
async fn metadata_naming_another_issuer_is_an_outage() {
    let fake = Fake::start().await;
    for named in [
        "https://other.example.com".to_owned(),
        format!("{}/", fake.base),
    ] {
        fake.set(
            METADATA,
            Reply::Json(json!({
                "issuer": named,
                "introspection_endpoint": fake.url(INTROSPECT),
            })),
        );
        let before = fake.hits(METADATA);
        let guard = discovering_guard(&fake);
        assert_503(&bearer(&app(&guard), "/me", &opaque()).await, &named);
        assert_unavailable(&guard.verify(&opaque()).await.unwrap_err(), &named);
        assert!(guard.warm_up().await.is_err(), "{named}");
        assert!(fake.hits(METADATA) > before, "{named}: no discovery");
        assert_eq!(fake.calls(), 0, "{named}: introspected anyway");
    }
}

/// Metadata without `introspection_endpoint` is an outage.
#[tokio::test]
async fn metadata_without_introspection_endpoint_is_an_outage() {
    let fake = Fake::start().await;
    fake.set(
        METADATA,
        Reply::Json(json!({"issuer": fake.base, "jwks_uri": fake.url("/jwks")})),
    );
    let guard = discovering_guard(&fake);
    assert_503(&bearer(&app(&guard), "/me", &opaque()).await, "no endpoint");
    assert_unavailable(&guard.verify(&opaque()).await.unwrap_err(), "no endpoint");
    assert!(guard.warm_up().await.is_err());
    assert!(fake.hits(METADATA) >= 1);
    assert_eq!(fake.calls(), 0);
}

/// An injected client that follows redirects: the answer of the redirect
/// target is refused (503), so a redirect cannot name another authority.
#[tokio::test]
async fn an_injected_client_following_redirects_is_not_trusted() {
    let env = Env::with(
        Reply::Json(good()),
        |b| b.http_client(reqwest::Client::new()),
        |c| c,
    )
    .await;
    env.fake.set("/elsewhere", Reply::Json(good()));
    let to = env.fake.url("/elsewhere");
    env.fake.set(
        INTROSPECT,
        Reply::Redirect(StatusCode::TEMPORARY_REDIRECT, to),
    );
    let res = env.call(&opaque()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The client did follow it; its answer did not count.
    assert_eq!(env.fake.hits("/elsewhere"), 1);
}

// ---------------------------------------------------------------------------
// Signed answers (RFC 9701).
// ---------------------------------------------------------------------------

const SIGNED: &str = "application/token-introspection+jwt";

/// A signed answer by `issuer` holding `inner`: the claims of RFC 9701 §5
/// with `changes` applied to them (a `null` value removes a claim).
fn signed(issuer: &TestIssuer, inner: Value, changes: Value) -> String {
    let mut token = issuer
        .token()
        .typ("token-introspection+jwt")
        .algorithm(Algorithm::RS256)
        .audience(CLIENT_ID)
        .without_claim("sub")
        .without_claim("client_id")
        .without_claim("exp")
        .without_claim("jti")
        .claim("token_introspection", inner);
    for (name, value) in changes.as_object().unwrap() {
        token = if value.is_null() {
            token.without_claim(name)
        } else {
            token.claim(name, value.clone())
        };
    }
    token.mint()
}

/// A guard on the fake whose issuer keys are `issuer`'s, asking for signed
/// answers.
fn signed_guard(fake: &Fake, issuer: &TestIssuer) -> TokenGuard {
    issuer
        .guard_builder(AUD)
        .introspection(config(fake).signed_responses())
        .build()
        .unwrap()
}

/// RFC 9701: the guard asks for a signed answer, verifies it with the
/// issuer's keys and reads the introspection response inside it.
#[tokio::test]
async fn a_signed_answer_is_verified_and_read() {
    let fake = Fake::start().await;
    let issuer = TestIssuer::with_issuer(&fake.base);
    let guard = signed_guard(&fake, &issuer);
    fake.set(
        INTROSPECT,
        Reply::Typed(SIGNED, signed(&issuer, good(), json!({}))),
    );
    let verified = guard.verify(&opaque()).await.unwrap();
    assert_eq!(verified.subject(), Some("alice"));
    assert_eq!(verified.scopes().iter().collect::<Vec<_>>(), ["read"]);
    let asked = &fake.requests(INTROSPECT)[0];
    assert_eq!(asked.header(header::ACCEPT), Some(SIGNED));

    // The answer inside is read like a JSON one: inactive is 401, for
    // another audience too.
    fake.set(
        INTROSPECT,
        Reply::Typed(SIGNED, signed(&issuer, json!({"active": false}), json!({}))),
    );
    let err = guard.verify(&opaque()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::Inactive)
    );
    fake.set(
        INTROSPECT,
        Reply::Typed(
            SIGNED,
            signed(
                &issuer,
                answer(json!({"aud": "https://other.example.com"})),
                json!({}),
            ),
        ),
    );
    let err = guard.verify(&opaque()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::WrongAudience)
    );
    // `aud` may name the guard's audience instead of its client id.
    fake.set(
        INTROSPECT,
        Reply::Typed(SIGNED, signed(&issuer, good(), json!({"aud": AUD}))),
    );
    assert!(guard.verify(&opaque()).await.is_ok());
}

/// Every way a signed answer can fail its checks is an outage (503), never
/// a verdict on the token, and is not cached.
#[tokio::test]
async fn a_signed_answer_failing_a_check_is_an_outage() {
    let fake = Fake::start().await;
    let issuer = TestIssuer::with_issuer(&fake.base);
    let stranger = TestIssuer::with_issuer(&fake.base);
    let guard = signed_guard(&fake, &issuer);
    let good_jws = signed(&issuer, good(), json!({}));
    let mut tampered = good_jws.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let unsigned = format!("{}.", good_jws.rsplit_once('.').unwrap().0);
    let cases: Vec<(&str, Reply)> = vec![
        ("a JSON answer", Reply::Json(good())),
        (
            "the JWT as application/json",
            Reply::Raw(StatusCode::OK, good_jws.clone().into_bytes()),
        ),
        (
            "another issuer's key",
            Reply::Typed(SIGNED, signed(&stranger, good(), json!({}))),
        ),
        (
            "a tampered signature",
            Reply::Typed(SIGNED, String::from_utf8(tampered).unwrap()),
        ),
        ("no signature", Reply::Typed(SIGNED, unsigned)),
        (
            "another iss",
            Reply::Typed(
                SIGNED,
                signed(&issuer, good(), json!({"iss": "https://evil.example.com"})),
            ),
        ),
        (
            "no iss",
            Reply::Typed(SIGNED, signed(&issuer, good(), json!({"iss": null}))),
        ),
        (
            "aud for another client",
            Reply::Typed(SIGNED, signed(&issuer, good(), json!({"aud": "other-rs"}))),
        ),
        (
            "no aud",
            Reply::Typed(SIGNED, signed(&issuer, good(), json!({"aud": null}))),
        ),
        (
            "no iat",
            Reply::Typed(SIGNED, signed(&issuer, good(), json!({"iat": null}))),
        ),
        (
            "no token_introspection",
            Reply::Typed(
                SIGNED,
                signed(&issuer, good(), json!({"token_introspection": null})),
            ),
        ),
        (
            "token_introspection not an object",
            Reply::Typed(
                SIGNED,
                signed(&issuer, good(), json!({"token_introspection": "active"})),
            ),
        ),
        ("not a JWS", Reply::Typed(SIGNED, "not.a.jws!".into())),
    ];
    for (what, reply) in cases {
        fake.set(INTROSPECT, reply);
        let err = guard.verify(&opaque()).await.unwrap_err();
        assert_unavailable(&err, what);
    }
    // Typed as an ID token, or untyped: refused too.
    for typ in ["JWT", "at+jwt"] {
        let jws = issuer
            .token()
            .typ(typ)
            .algorithm(Algorithm::RS256)
            .audience(CLIENT_ID)
            .claim("token_introspection", good())
            .mint();
        fake.set(INTROSPECT, Reply::Typed(SIGNED, jws));
        assert_unavailable(&guard.verify(&opaque()).await.unwrap_err(), typ);
    }
    // And a good one again: nothing bad was cached.
    fake.set(INTROSPECT, Reply::Typed(SIGNED, good_jws));
    assert!(guard.verify(&opaque()).await.is_ok());
}

/// Property, against a model of RFC 9701 §5: a signed answer whose `iss`,
/// `aud` and `iat` are drawn from good and bad values (absent, other strings,
/// other JSON types), and whose signature is the issuer's or random bytes,
/// is read (200) exactly when the signature is the issuer's, `iss` is the
/// issuer, `aud` names the client or the audience, and `iat` is a number;
/// every other answer is an outage (503). Never a panic, never a 401.
#[test]
fn signed_answers_against_a_model() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let fake = Fake::start_on_own_thread();
    let issuer = TestIssuer::with_issuer(&fake.base);
    let guard = signed_guard(&fake, &issuer);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = fake.base.clone();
    let other = || {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            Just(json!({})),
        ]
    };
    let iss = prop_oneof![Just(Value::from(base.clone())), other()];
    let aud = prop_oneof![
        Just(Value::from(CLIENT_ID)),
        Just(Value::from(AUD)),
        Just(json!(["x", CLIENT_ID])),
        Just(json!([])),
        Just(json!(["other-rs"])),
        other(),
    ];
    let iat = prop_oneof![
        any::<u32>().prop_map(Value::from),
        Just(Value::from(1.5)),
        other()
    ];
    let signature = prop::option::of(prop::collection::vec(any::<u8>(), 0..300));
    let strategy = (iss, aud, iat, signature);
    let config = Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&strategy, |(iss, aud, iat, signature)| {
        let mut jws = signed(
            &issuer,
            good(),
            json!({ "iss": iss.clone(), "aud": aud.clone(), "iat": iat.clone() }),
        );
        if let Some(bytes) = &signature {
            let input = jws.rsplit_once('.').unwrap().0.to_owned();
            jws = format!(
                "{input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            );
        }
        fake.set(INTROSPECT, Reply::Typed(SIGNED, jws));
        let names = |a: &Value| match a {
            Value::String(s) => s == CLIENT_ID || s == AUD,
            Value::Array(all) => all.iter().any(|s| s == CLIENT_ID || s == AUD),
            _ => false,
        };
        let model = signature.is_none() && iss == base && names(&aud) && iat.is_number();
        let got = rt.block_on(guard.verify(&opaque()));
        match (model, got) {
            (true, Ok(_)) => Ok(()),
            (false, Err(e)) => {
                prop_assert!(
                    matches!(e.kind(), AuthErrorKind::IntrospectionUnavailable { .. }),
                    "{:?}",
                    e.kind()
                );
                Ok(())
            }
            (model, got) => Err(proptest::test_runner::TestCaseError::fail(format!(
                "model {model}, guard {got:?}"
            ))),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
