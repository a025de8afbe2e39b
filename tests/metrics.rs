//! Metrics (feature `metrics`) and the span per authentication, through real
//! axum Routers behind the guard's layer.
//!
//! One `DebuggingRecorder` is the process-wide recorder: the guard's work
//! happens on spawned tasks (key fetches, introspection calls), which a
//! thread-local recorder would not see. The tests therefore run one at a
//! time (`Recorded::start` holds a lock), and each reads what it recorded:
//! a snapshot drains the counters, so the one taken at the start throws away
//! whatever came before, and the one taken at the end holds exactly this
//! test's values. Every assertion compares whole series sets, so a metric
//! counted twice or under another label fails as surely as a missing one.

#![cfg(all(feature = "metrics", feature = "testing", feature = "axum"))]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use futures_util::future::BoxFuture;
use http::{Request, StatusCode, header};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use tokenguard::testing::{DpopKey, TestIssuer};
use tokenguard::{
    AccessTokenClaims, Claims, ClientAuth, DpopConfig, IntrospectionConfig, NonceConfig,
    RequireScope, SharedIntrospectionCache, TokenDigest, TokenGuard, require_scope, scopes,
};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use common::AUD;
use common::server::JwksServer;

scopes! {
    /// The scope no test token has.
    pub Admin = "admin";
}

/// The public URL of the DPoP guards, and the proofs' `htu`.
const PUBLIC: &str = "https://api.example.com";
const URL: &str = "https://api.example.com/invoices";

// ---------------------------------------------------------------------------
// The recorder.
// ---------------------------------------------------------------------------

/// The process-wide recorder, installed once.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: LazyLock<Snapshotter> = LazyLock::new(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    });
    &SNAPSHOTTER
}

/// One test at a time: all of them record into the one recorder.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What one test recorded.
struct Recorded {
    counters: BTreeMap<Series, u64>,
    histograms: BTreeMap<Series, Vec<f64>>,
}

/// Holds the recorder for one test.
struct Recording {
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Recording {
    /// Waits for the other tests, then forgets what they recorded.
    async fn start() -> Self {
        let serial = SERIAL.lock().await;
        drop(snapshotter().snapshot());
        Self { _serial: serial }
    }

    /// Everything recorded since `start` (or the last `take`).
    fn take(&self) -> Recorded {
        let mut counters = BTreeMap::new();
        let mut histograms = BTreeMap::new();
        for (key, _, _, value) in snapshotter().snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let series = (key.name().to_owned(), labels);
            match value {
                DebugValue::Counter(0) => {}
                DebugValue::Counter(n) => {
                    counters.insert(series, n);
                }
                DebugValue::Histogram(values) if values.is_empty() => {}
                DebugValue::Histogram(values) => {
                    histograms.insert(series, values.into_iter().map(|v| v.0).collect());
                }
                DebugValue::Gauge(_) => panic!("tokenguard records no gauges: {series:?}"),
            }
        }
        Recorded {
            counters,
            histograms,
        }
    }
}

impl Recorded {
    /// The series of counter `name` that moved, by their labels.
    fn counter(&self, name: &str) -> BTreeMap<Vec<(String, String)>, u64> {
        self.counters
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone(), *v))
            .collect()
    }

    /// `tokenguard_requests_total` by (`outcome`, `reason`).
    fn requests(&self) -> BTreeMap<(String, String), u64> {
        self.counter("tokenguard_requests_total")
            .into_iter()
            .map(|(labels, n)| {
                let get = |name: &str| {
                    labels
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| panic!("no {name} label in {labels:?}"))
                };
                assert_eq!(labels.len(), 2, "{labels:?}");
                ((get("outcome"), get("reason")), n)
            })
            .collect()
    }

    /// `tokenguard_cache_lookups_total` by (`cache`, `result`).
    fn cache(&self) -> BTreeMap<(String, String), u64> {
        self.counter("tokenguard_cache_lookups_total")
            .into_iter()
            .map(|(labels, n)| match labels.as_slice() {
                [(c, cache), (r, result)] if c == "cache" && r == "result" => {
                    ((cache.clone(), result.clone()), n)
                }
                other => panic!("unexpected labels {other:?}"),
            })
            .collect()
    }

    /// The counter `name` by its single `result` label.
    fn by_result(&self, name: &str) -> BTreeMap<String, u64> {
        self.counter(name)
            .into_iter()
            .map(|(labels, n)| match labels.as_slice() {
                [(k, v)] if k == "result" => (v.clone(), n),
                other => panic!("unexpected labels {other:?}"),
            })
            .collect()
    }

    /// The values of histogram `name` with `result="…"`.
    fn histogram(&self, name: &str, result: &str) -> Vec<f64> {
        self.histograms
            .get(&(
                name.to_owned(),
                vec![("result".to_owned(), result.to_owned())],
            ))
            .cloned()
            .unwrap_or_default()
    }

    /// Every counter name that moved.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.counters.keys().map(|(n, _)| n.as_str()).collect();
        names.dedup();
        names
    }
}

/// An expected `(a, b) → n` map.
fn pairs(expected: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    expected
        .iter()
        .map(|(a, b, n)| ((a.to_string(), b.to_string()), *n))
        .collect()
}

/// An expected `result → n` map.
fn results(expected: &[(&str, u64)]) -> BTreeMap<String, u64> {
    expected.iter().map(|(r, n)| (r.to_string(), *n)).collect()
}

// ---------------------------------------------------------------------------
// Issuers, routers, requests.
// ---------------------------------------------------------------------------

/// One issuer for every test (key generation is slow).
fn issuer() -> TestIssuer {
    static ISSUER: LazyLock<TestIssuer> = LazyLock::new(TestIssuer::new);
    ISSUER.clone()
}

/// `/invoices` (plain), `/me` (`Claims`), `/scoped` (`RequireScope<Admin>`)
/// and `/layered` (`require_scope("admin")`), behind `layer`.
fn app(layer: tokenguard::TokenGuardLayer) -> Router {
    Router::new()
        .route("/invoices", get(|| async { "invoices" }))
        .route(
            "/me",
            get(|Claims(c): Claims<AccessTokenClaims>| async move { c.sub.clone().unwrap_or_default() }),
        )
        .route("/scoped", get(|_: RequireScope<Admin>| async { "admin" }))
        .route(
            "/layered",
            get(|| async { "admin" }).route_layer(require_scope("admin")),
        )
        .route(
            "/hello",
            get(|c: Option<Claims<AccessTokenClaims>>| async move {
                if c.is_some() { "hello you" } else { "hello stranger" }
            }),
        )
        .layer(layer)
}

/// `GET path` with `Authorization: Bearer token`.
async fn bearer(app: &Router, path: &str, token: &str) -> StatusCode {
    common::send(app, path, &[&format!("Bearer {token}")])
        .await
        .status()
}

/// `GET /invoices` with `Authorization: DPoP token` and `DPoP: proof`.
/// A router whose guard checks DPoP proofs with `config`, a client key, a
/// token bound to it, and a proof that was just accepted (200).
async fn dpop_accepted(config: DpopConfig) -> (Router, DpopKey, String, String) {
    let issuer = issuer();
    let guard = issuer.guard_builder(AUD).dpop(config).build().unwrap();
    let app = app(guard.layer());
    let key = DpopKey::new();
    let token = issuer.token().audience(AUD).dpop_bound(&key).mint();
    let proof = key.proof("GET", URL, &token);
    assert_eq!(dpop(&app, &token, &proof).await.status(), StatusCode::OK);
    (app, key, token, proof)
}

async fn dpop(app: &Router, token: &str, proof: &str) -> Response {
    let req = Request::get("/invoices")
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

/// `token` with the signature of `other` (same header and issuer).
fn with_signature_of(token: &str, other: &str) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    format!("{signed}.{signature}")
}

/// A URL on 127.0.0.1 where nothing listens.
async fn closed_port_url(path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{path}")
}

// ---------------------------------------------------------------------------
// Requests by outcome and reason; the verified-token cache.
// ---------------------------------------------------------------------------

/// An accepted token counts once per request; its first request misses the
/// verified-token cache, the next ones hit it. Nothing else is recorded.
#[tokio::test]
async fn accepted_requests_and_the_token_cache() {
    let rec = Recording::start().await;
    let issuer = issuer();
    let app = app(issuer.guard(AUD).layer());
    let token = issuer.token().audience(AUD).mint();
    for _ in 0..3 {
        assert_eq!(bearer(&app, "/me", &token).await, StatusCode::OK);
    }
    let got = rec.take();
    assert_eq!(got.requests(), pairs(&[("accepted", "none", 3)]));
    assert_eq!(
        got.cache(),
        pairs(&[("token", "miss", 1), ("token", "hit", 2)])
    );
    assert_eq!(
        got.names(),
        [
            "tokenguard_cache_lookups_total",
            "tokenguard_requests_total"
        ]
    );
    assert!(got.histograms.is_empty());
}

/// Each refusal of the layer counts once, under its own reason: no token,
/// malformed requests, and the kinds of invalid tokens. Refused tokens are
/// never cached: each is a cache miss.
#[tokio::test]
async fn refusals_by_reason() {
    let rec = Recording::start().await;
    let issuer = issuer();
    let app = app(issuer.guard(AUD).layer());
    let good = issuer.token().audience(AUD).mint();
    let other = issuer.token().audience(AUD).subject("someone-else").mint();

    assert_eq!(
        common::send(&app, "/me", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let twice = format!("Bearer {good}");
    assert_eq!(
        common::send(&app, "/me", &[&twice, &twice]).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        common::send(&app, "/me", &["Bearer a b"]).await.status(),
        StatusCode::BAD_REQUEST
    );
    for (token, what) in [
        (issuer.token().audience(AUD).expired().mint(), "expired"),
        (issuer.token().wrong_audience().mint(), "wrong audience"),
        (with_signature_of(&good, &other), "bad signature"),
        (
            issuer
                .token()
                .audience(AUD)
                .issuer("https://evil.example")
                .mint(),
            "wrong issuer",
        ),
        (
            issuer.token().audience(AUD).kid(Some("nobody")).mint(),
            "unknown key",
        ),
        (issuer.token().audience(AUD).typ("JWT").mint(), "wrong type"),
        (
            issuer
                .token()
                .audience(AUD)
                .not_before_in(Duration::from_secs(600))
                .mint(),
            "not yet valid",
        ),
        (
            issuer.token().audience(AUD).without_claim("exp").mint(),
            "no exp",
        ),
        ("not-a-jwt".to_owned(), "malformed"),
    ] {
        assert_eq!(
            bearer(&app, "/me", &token).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    let got = rec.take();
    assert_eq!(
        got.requests(),
        pairs(&[
            ("missing_token", "none", 1),
            ("invalid_request", "several_authorization_headers", 1),
            ("invalid_request", "malformed_credentials", 1),
            ("invalid_token", "expired", 1),
            ("invalid_token", "wrong_audience", 1),
            ("invalid_token", "bad_signature", 1),
            ("invalid_token", "wrong_issuer", 1),
            ("invalid_token", "unknown_key", 1),
            ("invalid_token", "wrong_type", 1),
            ("invalid_token", "not_yet_valid", 1),
            ("invalid_token", "missing_claim", 1),
            ("invalid_token", "malformed", 1),
        ])
    );
    // Every request with one credential was looked up, and missed: the nine
    // tokens and `a b` (the cache is asked before the token68 check, which
    // only a miss needs). Two `Authorization` headers are refused before.
    assert_eq!(got.cache(), pairs(&[("token", "miss", 10)]));
}

/// Scope refusals from the extractor and from the route layer count as
/// `insufficient_scope`, after the layer counted the request as accepted.
/// Behind the optional layer, a request without a token counts as
/// `anonymous`, and once more as `missing_token` when an extractor needs a
/// token.
#[tokio::test]
async fn insufficient_scope_and_anonymous_requests() {
    let rec = Recording::start().await;
    let issuer = issuer();
    let guard = issuer.guard(AUD);
    let app = app(guard.layer());
    let token = issuer.token().audience(AUD).scope("read").mint();
    assert_eq!(bearer(&app, "/scoped", &token).await, StatusCode::FORBIDDEN);
    assert_eq!(
        bearer(&app, "/layered", &token).await,
        StatusCode::FORBIDDEN
    );
    let got = rec.take();
    assert_eq!(
        got.requests(),
        pairs(&[("accepted", "none", 2), ("insufficient_scope", "none", 2)])
    );

    let optional = app_optional(&guard);
    assert_eq!(
        common::send(&optional, "/hello", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        common::send(&optional, "/me", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(bearer(&optional, "/hello", &token).await, StatusCode::OK);
    let got = rec.take();
    assert_eq!(
        got.requests(),
        pairs(&[
            ("anonymous", "none", 2),
            ("missing_token", "none", 1),
            ("accepted", "none", 1),
        ])
    );
}

fn app_optional(guard: &TokenGuard) -> Router {
    app(guard.optional_layer())
}

// ---------------------------------------------------------------------------
// Key fetches.
// ---------------------------------------------------------------------------

/// Keys at a URL where nothing listens: the request is `unavailable`
/// (`keys`), and the failed fetch is counted and timed.
#[tokio::test]
async fn unreachable_keys_are_unavailable_and_a_failed_fetch() {
    let rec = Recording::start().await;
    let issuer = issuer();
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(closed_port_url("/jwks").await)
        .build()
        .unwrap();
    let app = app(guard.layer());
    let token = issuer.token().audience(AUD).mint();
    assert_eq!(
        bearer(&app, "/me", &token).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let got = rec.take();
    assert_eq!(got.requests(), pairs(&[("unavailable", "keys", 1)]));
    assert_eq!(
        got.by_result("tokenguard_key_fetches_total"),
        results(&[("error", 1)])
    );
    let took = got.histogram("tokenguard_key_fetch_duration_seconds", "error");
    assert_eq!(took.len(), 1);
    assert!((0.0..10.0).contains(&took[0]), "{took:?}");
    assert!(
        got.histogram("tokenguard_key_fetch_duration_seconds", "ok")
            .is_empty()
    );
}

/// Keys from a JWKS server: one fetch, counted `ok` and timed; the request
/// is accepted, and the next one is a cache hit without a fetch.
#[tokio::test]
async fn a_key_fetch_is_counted_and_timed() {
    let rec = Recording::start().await;
    let issuer = issuer();
    let server = JwksServer::start(issuer.jwks()).await;
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(server.jwks_url())
        .build()
        .unwrap();
    let app = app(guard.layer());
    let token = issuer.token().audience(AUD).mint();
    assert_eq!(bearer(&app, "/me", &token).await, StatusCode::OK);
    assert_eq!(bearer(&app, "/me", &token).await, StatusCode::OK);
    assert_eq!(server.jwks_hits(), 1);
    let got = rec.take();
    assert_eq!(got.requests(), pairs(&[("accepted", "none", 2)]));
    assert_eq!(
        got.by_result("tokenguard_key_fetches_total"),
        results(&[("ok", 1)])
    );
    let took = got.histogram("tokenguard_key_fetch_duration_seconds", "ok");
    assert_eq!(took.len(), 1);
    assert!(took[0] > 0.0 && took[0] < 10.0, "{took:?}");
    assert_eq!(
        got.cache(),
        pairs(&[("token", "miss", 1), ("token", "hit", 1)])
    );
}

// ---------------------------------------------------------------------------
// Introspection.
// ---------------------------------------------------------------------------

/// A loopback authorization server whose introspection endpoint answers by
/// token: `good-…` active, `dead-…` inactive, anything else 500.
struct AuthServer {
    url: String,
    calls: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let app = Router::new().route(
            "/introspect",
            post(move |Form(form): Form<HashMap<String, String>>| {
                let counted = counted.clone();
                async move {
                    *counted.lock().unwrap() += 1;
                    let token = form.get("token").cloned().unwrap_or_default();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    if token.starts_with("good-") {
                        axum::Json(json!({
                            "active": true, "aud": AUD, "sub": "alice", "scope": "read",
                            "iat": now, "exp": now + 300,
                        }))
                        .into_response()
                    } else if token.starts_with("dead-") {
                        axum::Json(json!({"active": false})).into_response()
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, calls, task }
    }

    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }

    fn config(&self) -> IntrospectionConfig {
        IntrospectionConfig::new(ClientAuth::client_secret_basic(
            "rs",
            "rs-secret-0123456789",
        ))
        .endpoint(&self.url)
    }

    fn guard(&self, config: IntrospectionConfig) -> TokenGuard {
        TokenGuard::builder()
            .issuer("https://id.example.com")
            .audience(AUD)
            .introspection(config)
            .build()
            .unwrap()
    }
}

/// Each call is counted by what it came to and timed; answers are cached,
/// active and inactive alike, so the second request of each token is a
/// cache hit without a call. An error is not cached: both requests call.
#[tokio::test]
async fn introspection_calls_and_cache() {
    let rec = Recording::start().await;
    let server = AuthServer::start().await;
    let app = app(server.guard(server.config()).layer());
    for _ in 0..2 {
        assert_eq!(bearer(&app, "/me", "good-1").await, StatusCode::OK);
        assert_eq!(
            bearer(&app, "/me", "dead-1").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            bearer(&app, "/me", "boom-1").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(server.calls(), 4);
    let got = rec.take();
    assert_eq!(
        got.requests(),
        pairs(&[
            ("accepted", "none", 2),
            ("invalid_token", "inactive", 2),
            ("unavailable", "introspection", 2),
        ])
    );
    assert_eq!(
        got.by_result("tokenguard_introspections_total"),
        results(&[("active", 1), ("inactive", 1), ("error", 2)])
    );
    for (result, n) in [("active", 1), ("inactive", 1), ("error", 2)] {
        let took = got.histogram("tokenguard_introspection_duration_seconds", result);
        assert_eq!(took.len(), n, "{result}");
        assert!(took.iter().all(|t| *t > 0.0 && *t < 10.0), "{took:?}");
    }
    // Opaque tokens never touch the verified-token cache.
    assert_eq!(
        got.cache(),
        pairs(&[("introspection", "miss", 4), ("introspection", "hit", 2)])
    );
    assert!(
        got.by_result("tokenguard_key_fetches_total").is_empty(),
        "no keys are fetched for opaque tokens"
    );
}

/// A shared store (another replica's answers), kept in memory.
#[derive(Default)]
struct Shared(Mutex<HashMap<[u8; 32], Bytes>>);

impl SharedIntrospectionCache for Shared {
    fn get(&self, key: TokenDigest) -> BoxFuture<'static, Option<(Bytes, Duration)>> {
        let found = self.0.lock().unwrap().get(key.as_bytes()).cloned();
        Box::pin(async move { found.map(|b| (b, Duration::from_secs(60))) })
    }

    fn put(&self, key: TokenDigest, answer: Bytes, _ttl: Duration) -> BoxFuture<'static, ()> {
        self.0.lock().unwrap().insert(*key.as_bytes(), answer);
        Box::pin(async {})
    }
}

/// Two replicas share a store: the first misses it and calls, the second
/// misses its own cache, hits the store and does not call.
#[tokio::test]
async fn the_shared_introspection_cache() {
    let rec = Recording::start().await;
    let server = AuthServer::start().await;
    let shared = Arc::new(Shared::default());
    let one = app(server
        .guard(server.config().shared_cache(shared.clone()))
        .layer());
    let two = app(server
        .guard(server.config().shared_cache(shared.clone()))
        .layer());
    assert_eq!(bearer(&one, "/me", "good-2").await, StatusCode::OK);
    // The store is written by a task of its own.
    for _ in 0..100 {
        if !shared.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bearer(&two, "/me", "good-2").await, StatusCode::OK);
    assert_eq!(server.calls(), 1);
    let got = rec.take();
    assert_eq!(got.requests(), pairs(&[("accepted", "none", 2)]));
    assert_eq!(
        got.cache(),
        pairs(&[
            ("introspection", "miss", 2),
            ("introspection_shared", "miss", 1),
            ("introspection_shared", "hit", 1),
        ])
    );
    assert_eq!(
        got.by_result("tokenguard_introspections_total"),
        results(&[("active", 1)])
    );
}

// ---------------------------------------------------------------------------
// DPoP.
// ---------------------------------------------------------------------------

/// A proof used twice: accepted, then refused as `replayed` and counted as
/// a replay. The token itself is verified once and then found in the cache.
#[tokio::test]
async fn a_dpop_replay_is_counted() {
    let rec = Recording::start().await;
    let (app, _, token, proof) = dpop_accepted(DpopConfig::new(PUBLIC)).await;
    assert_eq!(
        dpop(&app, &token, &proof).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let got = rec.take();
    assert_eq!(
        got.requests(),
        pairs(&[
            ("accepted", "none", 1),
            ("invalid_dpop_proof", "replayed", 1)
        ])
    );
    assert_eq!(
        got.counter("tokenguard_dpop_replays_total")
            .values()
            .sum::<u64>(),
        1
    );
    assert!(
        got.counter("tokenguard_dpop_nonce_challenges_total")
            .is_empty()
    );
    assert_eq!(
        got.cache(),
        pairs(&[("token", "miss", 1), ("token", "hit", 1)])
    );
}

/// Calls of a `RedisStore` by result. A real `redis-server`: a replay check
/// is answered (`ok`). Then it is stopped: the next three checks fail
/// (`error`), which opens the circuit breaker, and the two after them are not
/// made (`skipped`); those five requests are 503.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_calls_by_result() {
    let rec = Recording::start().await;
    let mut redis = common::redis_server::RedisServer::start();
    let store = tokenguard::RedisStore::open(&redis.url())
        .unwrap()
        .circuit_breaker(3, Duration::from_secs(3600));
    let (app, key, token, _) =
        dpop_accepted(DpopConfig::new(PUBLIC).replay_store(Arc::new(store))).await;
    redis.stop();
    for _ in 0..5 {
        let proof = key.proof("GET", URL, &token);
        let res = dpop(&app, &token, &proof).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let got = rec.take();
    assert_eq!(
        got.by_result("tokenguard_redis_calls_total"),
        results(&[("ok", 1), ("error", 3), ("skipped", 2)])
    );
    assert_eq!(
        got.requests(),
        pairs(&[("accepted", "none", 1), ("unavailable", "replay_store", 5)])
    );
}

/// With server nonces on, a proof without one is answered `use_dpop_nonce`
/// and counted as a nonce challenge; the retry with the nonce is accepted.
#[tokio::test]
async fn a_dpop_nonce_challenge_is_counted() {
    let rec = Recording::start().await;
    let issuer = issuer();
    let nonces = NonceConfig::new(vec![7u8; 32]).unwrap();
    let guard = issuer
        .guard_builder(AUD)
        .dpop(DpopConfig::new(PUBLIC).nonces(nonces))
        .build()
        .unwrap();
    let app = app(guard.layer());
    let key = DpopKey::new();
    let token = issuer.token().audience(AUD).dpop_bound(&key).mint();
    let res = dpop(&app, &token, &key.proof("GET", URL, &token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof_builder("GET", URL, &token).nonce(&nonce).sign();
    assert_eq!(dpop(&app, &token, &proof).await.status(), StatusCode::OK);
    let got = rec.take();
    assert_eq!(
        got.requests(),
        pairs(&[("use_dpop_nonce", "none", 1), ("accepted", "none", 1)])
    );
    let challenges = got.counter("tokenguard_dpop_nonce_challenges_total");
    assert_eq!(challenges, BTreeMap::from([(vec![], 1)]));
    assert!(got.counter("tokenguard_dpop_replays_total").is_empty());
}

// ---------------------------------------------------------------------------
// The span per authentication.
// ---------------------------------------------------------------------------

/// A span or an event of target `tokenguard…`, with its fields.
#[derive(Debug, Clone)]
struct Captured {
    name: String,
    fields: BTreeMap<String, String>,
    /// For an event: the names of the spans it happened in, innermost first.
    scope: Vec<String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every closed `tokenguard` span with its final fields, and every
/// `tokenguard` event.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Captured>>>,
    events: Arc<Mutex<Vec<Captured>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("tokenguard") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        self.events.lock().unwrap().push(Captured {
            name: fields.0.get("message").cloned().unwrap_or_default(),
            fields: fields.0,
            scope,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if !span.metadata().target().starts_with("tokenguard") {
            return;
        }
        let fields = span
            .extensions()
            .get::<Fields>()
            .map(|f| f.0.clone())
            .unwrap_or_default();
        self.spans.lock().unwrap().push(Captured {
            name: span.name().to_owned(),
            fields,
            scope: vec![],
        });
    }
}

/// One `authenticate` span per request, target `tokenguard`, with outcome,
/// reason and, once verified, the configured issuer; the key fetch is an
/// event inside it. No field of any span or event holds the token, a part
/// of it, or a claim value; an unverified token's `iss` is never recorded.
#[tokio::test]
async fn one_span_per_authentication_without_tokens() {
    let _rec = Recording::start().await;
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let issuer = issuer();
    let server = JwksServer::start(issuer.jwks()).await;
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwks_url(server.jwks_url())
        .build()
        .unwrap();
    let router = app(guard.layer());
    let subject = "subject-4711";
    let token = issuer.token().audience(AUD).subject(subject).mint();
    let expired = issuer
        .token()
        .audience(AUD)
        .subject(subject)
        .expired()
        .mint();
    let foreign = issuer
        .token()
        .audience(AUD)
        .issuer("https://evil.example")
        .mint();
    // The first waits for the keys; the second is a cache hit.
    assert_eq!(bearer(&router, "/me", &token).await, StatusCode::OK);
    assert_eq!(bearer(&router, "/me", &token).await, StatusCode::OK);
    assert_eq!(
        bearer(&router, "/me", &expired).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bearer(&router, "/me", &foreign).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        common::send(&router, "/me", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let spans: Vec<Captured> = capture
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name == "authenticate")
        .cloned()
        .collect();
    let fields = |outcome: &str, reason: &str, issuer: Option<&str>| {
        let mut f = BTreeMap::from([
            ("outcome".to_owned(), outcome.to_owned()),
            ("reason".to_owned(), reason.to_owned()),
        ]);
        if let Some(issuer) = issuer {
            f.insert("issuer".to_owned(), issuer.to_owned());
        }
        f
    };
    let got: Vec<_> = spans.iter().map(|s| s.fields.clone()).collect();
    assert_eq!(
        got,
        vec![
            fields("accepted", "none", Some(issuer.issuer())),
            fields("accepted", "none", Some(issuer.issuer())),
            fields("invalid_token", "expired", None),
            fields("invalid_token", "wrong_issuer", None),
            fields("missing_token", "none", None),
        ]
    );

    let events = capture.events.lock().unwrap().clone();
    let fetch: Vec<_> = events
        .iter()
        .filter(|e| e.name == "key set fetch")
        .collect();
    assert_eq!(fetch.len(), 1, "{events:#?}");
    assert_eq!(fetch[0].fields["result"], "ok");
    assert_eq!(
        fetch[0].scope.first().map(String::as_str),
        Some("authenticate")
    );
    // The refusals are logged with their outcome and reason.
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.name == "request refused")
        .map(|e| (e.fields["outcome"].as_str(), e.fields["reason"].as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            ("invalid_token", "expired"),
            ("invalid_token", "wrong_issuer"),
            ("missing_token", "none"),
        ]
    );

    // An opaque token: introspected inside its request's span; the issuer
    // recorded is the guard's (the answer names none).
    let auth = AuthServer::start().await;
    let opaque = app(auth.guard(auth.config()).layer());
    assert_eq!(bearer(&opaque, "/me", "good-4711").await, StatusCode::OK);
    let last = capture.spans.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.name, "authenticate");
    assert_eq!(
        last.fields,
        fields("accepted", "none", Some("https://id.example.com"))
    );
    let events = capture.events.lock().unwrap().clone();
    let introspected: Vec<_> = events
        .iter()
        .filter(|e| e.name == "token introspection")
        .collect();
    assert_eq!(introspected.len(), 1, "{events:#?}");
    assert_eq!(introspected[0].fields["result"], "active");
    assert_eq!(
        introspected[0].scope.first().map(String::as_str),
        Some("authenticate")
    );
    let spans = capture.spans.lock().unwrap().clone();

    let mut secrets = vec![
        subject.to_owned(),
        "evil.example".to_owned(),
        "good-4711".to_owned(),
        "alice".to_owned(),
    ];
    for t in [&token, &expired, &foreign] {
        secrets.push(t.to_string());
        secrets.extend(t.split('.').map(str::to_owned));
    }
    for captured in spans.iter().chain(events.iter()) {
        for (name, value) in &captured.fields {
            for secret in &secrets {
                assert!(
                    !value.contains(secret.as_str()),
                    "{} field {name} holds request data: {value}",
                    captured.name
                );
            }
        }
    }
}
