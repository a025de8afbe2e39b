//! Shared state on Redis (feature `redis`) through real axum Routers: two
//! guards stand for two replicas of one API, each with its own
//! [`RedisStore`] on one Redis.
//!
//! - DPoP replay: a proof accepted by one replica is refused by the other;
//!   keys are namespaced digests with a TTL, holding no token or proof.
//! - Introspection: an answer fetched by one replica is served to the other
//!   without a second call; what is read back passes every check again.
//! - Failures: Redis stopped (fail closed with 503 and `Retry-After`, or the
//!   local fallback), Redis restarted (recovery without a restart), Redis
//!   hanging (503 within the per-call timeout).
//!
//! Every test starts its own `redis-server` (Debian's package) on a free
//! loopback port, without persistence, killed when the test ends. Without
//! the binary the tests fail: they are never skipped.

#![cfg(all(feature = "redis", feature = "testing"))]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokenguard::testing::{DpopKey, TestIssuer};

use crate::common::redis_server::{RedisServer, free_port};
use tokenguard::{
    AccessTokenClaims, Claims, ClientAuth, DpopConfig, IntrospectionConfig, NumericDate,
    RedisStore, SharedIntrospectionCache, TokenGuard,
};
use tower::ServiceExt as _;

/// The audience of the tokens.
const AUD: &str = "https://api.example.com";
/// The public URL the API is called at (`DpopConfig::new`).
const PUBLIC: &str = "https://api.example.com";
/// The public URI of `/invoices`.
const URL: &str = "https://api.example.com/invoices";
/// The default proof algorithms, as the `DPoP` challenge lists them.
const ALGS: &str = "ES256 ES384 EdDSA RS256 PS256";
/// `Retry-After` of a failed replay check (src/redis.rs).
const RETRY_AFTER: &str = "2";
/// The default DPoP proof window: `max_age` 60 s + `clock_skew` 5 s.
const REPLAY_TTL_MS: i64 = 65_000;
/// "Quickly": a refusal because Redis is away must come well under this.
const QUICK: Duration = Duration::from_secs(1);

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

async fn get_value(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .unwrap()
        == 1
}

/// Polls `condition` every 20 ms until it holds, or fails after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP listener that accepts connections and never answers: a Redis that
/// hangs.
async fn hanging_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

// ---------------------------------------------------------------------------
// Keys, as the stores should name them (computed here, not by the crate).

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The proof's `jti`.
fn jti_of(proof: &str) -> String {
    let payload = proof.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// `{prefix}dpop:` + hex SHA-256(thumbprint, NUL, `jti`).
fn dpop_key(prefix: &str, key: &DpopKey, proof: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(key.thumbprint().as_bytes());
    h.update([0]);
    h.update(jti_of(proof).as_bytes());
    format!("{prefix}dpop:{}", hex(&h.finalize()))
}

/// `tokenguard:introspection:` + hex SHA-256(token).
fn introspection_key(token: &str) -> String {
    format!(
        "tokenguard:introspection:{}",
        hex(&sha2::Sha256::digest(token.as_bytes()))
    )
}

// ---------------------------------------------------------------------------
// Replicas and requests.

fn issuer() -> TestIssuer {
    static ISSUER: LazyLock<TestIssuer> = LazyLock::new(TestIssuer::new);
    ISSUER.clone()
}

fn routes() -> Router {
    Router::new().route(
        "/invoices",
        get(
            |Claims(c): Claims<AccessTokenClaims>| async move { c.sub.clone().unwrap_or_default() },
        ),
    )
}

/// A replica: its own guard (and local caches) behind the layer.
fn replica(guard: TokenGuard) -> Router {
    routes().layer(guard.layer())
}

/// A replica checking DPoP replays in `store`.
fn dpop_replica(store: RedisStore) -> Router {
    replica(
        issuer()
            .guard_builder(AUD)
            .dpop(DpopConfig::new(PUBLIC).replay_store(Arc::new(store)))
            .build()
            .unwrap(),
    )
}

fn open(url: &str) -> RedisStore {
    RedisStore::open(url).unwrap()
}

/// A client: its DPoP key and a token bound to it.
struct Client {
    key: DpopKey,
    token: String,
}

impl Client {
    fn new() -> Self {
        let key = DpopKey::new();
        let token = issuer().token().audience(AUD).dpop_bound(&key).mint();
        Self { key, token }
    }

    fn proof(&self) -> String {
        self.key.proof("GET", URL, &self.token)
    }

    /// `GET /invoices` with this proof, and how long the answer took.
    async fn send(&self, app: &Router, proof: &str) -> (Response, Duration) {
        let req = Request::get("/invoices")
            .header(header::AUTHORIZATION, format!("DPoP {}", self.token))
            .header("dpop", proof)
            .body(Body::empty())
            .unwrap();
        let start = Instant::now();
        let res = app.clone().oneshot(req).await.unwrap();
        (res, start.elapsed())
    }

    async fn status(&self, app: &Router, proof: &str) -> StatusCode {
        self.send(app, proof).await.0.status()
    }
}

async fn bearer(app: &Router, token: &str) -> Response {
    let req = Request::get("/invoices")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

fn challenges(res: &Response) -> Vec<String> {
    res.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn header_value(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn body(res: Response) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[track_caller]
fn assert_ok(res: &Response) {
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "challenges: {:?}",
        challenges(res)
    );
}

/// 401 `invalid_dpop_proof` "The DPoP proof was used before".
#[track_caller]
fn assert_replayed(res: &Response) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(res),
        [
            format!(
                r#"DPoP realm="api", error="invalid_dpop_proof", error_description="The DPoP proof was used before", algs="{ALGS}""#
            ),
            r#"Bearer realm="api""#.to_owned(),
        ]
    );
}

/// 503 with `Retry-After` and no challenge: the replay check could not be
/// made, and the request is refused (fail closed), within `within`.
#[track_caller]
fn assert_unavailable(res: &Response, took: Duration, within: Duration) {
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "challenges: {:?}",
        challenges(res)
    );
    assert_eq!(
        header_value(res, "retry-after").as_deref(),
        Some(RETRY_AFTER)
    );
    assert!(challenges(res).is_empty(), "{:?}", challenges(res));
    assert!(
        took < within,
        "answered after {took:?}, not within {within:?}"
    );
}

// ---------------------------------------------------------------------------
// A loopback introspection endpoint.

struct Endpoint {
    url: String,
    calls: Arc<AtomicUsize>,
    revoked: Arc<Mutex<HashSet<String>>>,
}

#[derive(Clone)]
struct EndpointState {
    calls: Arc<AtomicUsize>,
    revoked: Arc<Mutex<HashSet<String>>>,
}

impl Endpoint {
    /// Every token is active (`sub` u1, scope `read`, `exp` in 5 minutes)
    /// unless revoked, or unless it starts with `inactive-`.
    async fn start() -> Self {
        let state = EndpointState {
            calls: Arc::new(AtomicUsize::new(0)),
            revoked: Arc::new(Mutex::new(HashSet::new())),
        };
        let app = Router::new()
            .route("/introspect", post(introspect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            calls: state.calls,
            revoked: state.revoked,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn revoke(&self, token: &str) {
        self.revoked.lock().unwrap().insert(token.to_owned());
    }

    /// A replica introspecting here, sharing answers through `store`.
    fn replica(&self, store: RedisStore, max_ttl: Duration) -> Router {
        let shared: Arc<dyn SharedIntrospectionCache> = Arc::new(store);
        replica(
            issuer()
                .guard_builder(AUD)
                .introspection(
                    IntrospectionConfig::new(ClientAuth::client_secret_basic("api", "s3cret"))
                        .endpoint(&self.url)
                        .max_ttl(max_ttl)
                        .shared_cache(shared),
                )
                .build()
                .unwrap(),
        )
    }
}

async fn introspect(State(state): State<EndpointState>, form: String) -> impl IntoResponse {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let token = form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let revoked = state.revoked.lock().unwrap().contains(&token);
    let answer = if revoked || token.starts_with("inactive-") {
        json!({ "active": false })
    } else {
        json!({
            "active": true,
            "aud": AUD,
            "sub": "u1",
            "scope": "read",
            "exp": NumericDate::now().as_secs() + 300,
        })
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
}

/// An opaque (not JWT) token, new each time.
fn opaque_token() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("opaque-{nanos:x}-{n}")
}

// ---------------------------------------------------------------------------
// 1. DPoP replay across replicas.

/// A proof accepted by replica A is refused by replica B (and by A); a fresh
/// proof works on B. Redis holds one key per accepted proof, named
/// `tokenguard:dpop:<hex SHA-256(thumbprint, jti)>`, valued `1`, for the
/// proof window (65 s); no token, proof, `jti` or thumbprint is stored.
#[tokio::test]
async fn a_proof_accepted_by_one_replica_is_refused_by_another() {
    let redis = RedisServer::start();
    let a = dpop_replica(open(&redis.url()));
    let b = dpop_replica(open(&redis.url()));
    let client = Client::new();

    let first = client.proof();
    let (res, _) = client.send(&a, &first).await;
    assert_ok(&res);
    assert_eq!(body(res).await, "test-client");
    assert_replayed(&client.send(&b, &first).await.0);
    assert_replayed(&client.send(&a, &first).await.0);

    let second = client.proof();
    assert_ok(&client.send(&b, &second).await.0);
    assert_replayed(&client.send(&a, &second).await.0);
    assert_replayed(&client.send(&b, &second).await.0);

    let mut conn = redis.client().await;
    let stored = keys(&mut conn, "*").await;
    let mut expected = vec![
        dpop_key("tokenguard:", &client.key, &first),
        dpop_key("tokenguard:", &client.key, &second),
    ];
    expected.sort();
    assert_eq!(stored, expected);
    let forbidden = [
        client.token.clone(),
        first.clone(),
        second.clone(),
        jti_of(&first),
        jti_of(&second),
        client.key.thumbprint(),
    ];
    for key in &stored {
        let digest = key.strip_prefix("tokenguard:dpop:").unwrap();
        assert!(
            digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{key}"
        );
        let value = get_value(&mut conn, key).await.unwrap();
        assert_eq!(value, b"1");
        for secret in &forbidden {
            assert!(!key.contains(secret.as_str()));
        }
        let ttl = pttl(&mut conn, key).await;
        assert!(
            (REPLAY_TTL_MS - 10_000..=REPLAY_TTL_MS).contains(&ttl),
            "PTTL {ttl} ms, expected about {REPLAY_TTL_MS}"
        );
    }
}

/// The same proof sent to both replicas at once: exactly one request is
/// accepted (`SET NX` is atomic), every other is refused as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_across_replicas_let_exactly_one_through() {
    let redis = RedisServer::start();
    let replicas = [
        dpop_replica(open(&redis.url())),
        dpop_replica(open(&redis.url())),
    ];
    let client = Arc::new(Client::new());
    for _ in 0..5 {
        let proof = Arc::new(client.proof());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (app, client, proof) = (replicas[i % 2].clone(), client.clone(), proof.clone());
            tasks.spawn(async move { client.send(&app, &proof).await.0 });
        }
        let mut accepted = 0;
        while let Some(res) = tasks.join_next().await {
            let res = res.unwrap();
            if res.status() == StatusCode::OK {
                accepted += 1;
            } else {
                assert_replayed(&res);
            }
        }
        assert_eq!(accepted, 1);
    }
}

/// `with_prefix` names another namespace: a replica of another API (its own
/// prefix) does not see this API's proofs, and its keys carry its prefix.
#[tokio::test]
async fn the_prefix_separates_namespaces() {
    let redis = RedisServer::start();
    let api = dpop_replica(open(&redis.url()));
    let other = dpop_replica(open(&redis.url()).with_prefix("billing:"));
    let client = Client::new();
    let proof = client.proof();
    assert_ok(&client.send(&api, &proof).await.0);
    assert_ok(&client.send(&other, &proof).await.0);
    assert_replayed(&client.send(&other, &proof).await.0);
    let mut conn = redis.client().await;
    assert_eq!(
        keys(&mut conn, "*").await,
        [
            dpop_key("billing:", &client.key, &proof),
            dpop_key("tokenguard:", &client.key, &proof),
        ]
    );
}

// ---------------------------------------------------------------------------
// 2. The shared introspection cache.

/// A token introspected by replica A is served to replica B without a
/// second call. The stored value is the answer (not the token) under
/// `tokenguard:introspection:<hex SHA-256(token)>`, expiring within
/// `max_ttl`. Inactive answers are not shared.
#[tokio::test]
async fn an_answer_introspected_by_one_replica_serves_another() {
    let redis = RedisServer::start();
    let endpoint = Endpoint::start().await;
    let max_ttl = Duration::from_secs(20);
    let a = endpoint.replica(open(&redis.url()), max_ttl);
    let b = endpoint.replica(open(&redis.url()), max_ttl);
    let mut conn = redis.client().await;

    let token = opaque_token();
    let res = bearer(&a, &token).await;
    assert_ok(&res);
    assert_eq!(body(res).await, "u1");
    assert_eq!(endpoint.calls(), 1);

    // Stored after the answer (not waited for by the request).
    let key = introspection_key(&token);
    eventually(Duration::from_secs(5), "the answer is stored", || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move { exists(&mut conn, &key).await }
    })
    .await;
    assert_eq!(keys(&mut conn, "*").await, std::slice::from_ref(&key));
    let ttl = pttl(&mut conn, &key).await;
    assert!(
        ttl > 0 && ttl <= max_ttl.as_millis() as i64,
        "PTTL {ttl} ms, max_ttl {max_ttl:?}"
    );
    assert!(ttl > max_ttl.as_millis() as i64 - 5_000, "PTTL {ttl} ms");
    let value = get_value(&mut conn, &key).await.unwrap();
    let text = String::from_utf8(value.clone()).unwrap();
    assert!(!text.contains(&token), "{text}");
    let answer: Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], "u1");

    let res = bearer(&b, &token).await;
    assert_ok(&res);
    assert_eq!(body(res).await, "u1");
    assert_eq!(endpoint.calls(), 1, "B asked the endpoint");
    // Then from B's own cache.
    assert_ok(&bearer(&b, &token).await);
    assert_eq!(endpoint.calls(), 1);

    // A refusal is not shared: B asks for itself.
    let inactive = format!("inactive-{}", opaque_token());
    assert_eq!(
        bearer(&a, &inactive).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(endpoint.calls(), 2);
    assert_eq!(
        bearer(&b, &inactive).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(endpoint.calls(), 3);
    assert!(!exists(&mut conn, &introspection_key(&inactive)).await);
}

/// What is read back passes every check again: an answer written straight
/// into Redis that has expired, is for another audience, is inactive or is
/// not JSON is not accepted; the replica asks the endpoint instead (and
/// stores the endpoint's answer over it).
#[tokio::test]
async fn an_answer_that_fails_the_checks_when_read_back_is_not_accepted() {
    let redis = RedisServer::start();
    let endpoint = Endpoint::start().await;
    let b = endpoint.replica(open(&redis.url()), Duration::from_secs(30));
    let mut conn = redis.client().await;
    let now = NumericDate::now().as_secs();
    let forged = [
        json!({"active": true, "aud": AUD, "sub": "forged", "scope": "read", "exp": now - 600})
            .to_string(),
        json!({"active": true, "aud": "https://other.example.com", "sub": "forged", "scope": "read", "exp": now + 300})
            .to_string(),
        json!({"active": true, "aud": AUD, "sub": "forged", "scope": "read", "exp": now + 300, "nbf": now + 600})
            .to_string(),
        json!({"active": false, "sub": "forged"}).to_string(),
        json!({"active": true, "aud": AUD, "sub": "forged", "exp": "tomorrow"}).to_string(),
        "not json".to_owned(),
    ];
    for (i, value) in forged.iter().enumerate() {
        let token = opaque_token();
        let key = introspection_key(&token);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let res = bearer(&b, &token).await;
        assert_ok(&res);
        assert_eq!(body(res).await, "u1", "{value}");
        assert_eq!(endpoint.calls(), i + 1, "{value}");
        // The endpoint's answer replaces the bad one.
        eventually(Duration::from_secs(5), "the fresh answer is stored", || {
            let (mut conn, key) = (conn.clone(), key.clone());
            async move {
                get_value(&mut conn, &key).await.is_some_and(|v| {
                    serde_json::from_slice::<Value>(&v).is_ok_and(|a| a["sub"] == "u1")
                })
            }
        })
        .await;
    }
}

/// The revocation delay stays `max_ttl` with a shared cache: an answer
/// fetched by A at t0 and read by B later is not accepted by B after
/// `t0 + max_ttl`, once the token is revoked.
///
/// Fails today: B caches what it read for a full `max_ttl` from when it
/// read it (src/verify/introspect/mod.rs, `call`: `insert_active(key, …,
/// now, …)` with `now` the read time, whatever TTL the entry had left in
/// Redis), so a revoked token is accepted up to 2 × `max_ttl` after it was
/// fetched.
#[tokio::test]
async fn a_shared_answer_does_not_outlive_max_ttl_from_its_fetch() {
    let redis = RedisServer::start();
    let endpoint = Endpoint::start().await;
    let max_ttl = Duration::from_secs(2);
    let a = endpoint.replica(open(&redis.url()), max_ttl);
    let b = endpoint.replica(open(&redis.url()), max_ttl);
    let mut conn = redis.client().await;
    let token = opaque_token();
    let fetched = Instant::now();
    assert_ok(&bearer(&a, &token).await);
    let key = introspection_key(&token);
    eventually(Duration::from_secs(1), "the answer is stored", || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move { exists(&mut conn, &key).await }
    })
    .await;
    // B reads the shared answer late in its life.
    tokio::time::sleep(Duration::from_millis(1_500).saturating_sub(fetched.elapsed())).await;
    assert_ok(&bearer(&b, &token).await);
    assert_eq!(endpoint.calls(), 1);
    endpoint.revoke(&token);
    // Past max_ttl since the fetch: the revocation must be seen.
    tokio::time::sleep((max_ttl + Duration::from_millis(300)).saturating_sub(fetched.elapsed()))
        .await;
    assert!(!exists(&mut conn, &key).await, "the Redis entry expired");
    let res = bearer(&b, &token).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "B accepted a token revoked {:?} after it was fetched (max_ttl {max_ttl:?})",
        fetched.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 3. Redis stopped and restarted.

/// Redis stopped: replay checks fail closed (503 with `Retry-After`, within
/// the per-call timeout) on both replicas. Redis restarted on the same port:
/// the same guards work through Redis again, without a restart.
#[tokio::test]
async fn redis_down_fails_closed_and_recovers_without_a_restart() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let a = dpop_replica(open(&redis.url()));
    let b = dpop_replica(open(&redis.url()));
    let client = Client::new();
    assert_ok(&client.send(&a, &client.proof()).await.0);
    assert_ok(&client.send(&b, &client.proof()).await.0);

    redis.stop();
    for app in [&a, &b, &a, &b] {
        let (res, took) = client.send(app, &client.proof()).await;
        assert_unavailable(&res, took, QUICK);
    }

    let redis = RedisServer::start_on(port);
    let proof = client.proof();
    eventually(
        Duration::from_secs(10),
        "A checks replays again",
        || async {
            // A fresh proof each time: a refused one is never recorded.
            let (res, _) = client.send(&a, &proof).await;
            match res.status() {
                StatusCode::OK => true,
                StatusCode::SERVICE_UNAVAILABLE => false,
                other => panic!("A answered {other} while Redis came back"),
            }
        },
    )
    .await;
    let mut conn = redis.client().await;
    assert!(exists(&mut conn, &dpop_key("tokenguard:", &client.key, &proof)).await);
    // B may still be reconnecting (503); once it answers, it is a replay.
    let deadline = Instant::now() + Duration::from_secs(10);
    let res = loop {
        let (res, _) = client.send(&b, &proof).await;
        if res.status() != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_replayed(&res);
    let fresh = client.proof();
    assert_ok(&client.send(&b, &fresh).await.0);
    assert_replayed(&client.send(&a, &fresh).await.0);
}

/// With `fall_back_to_local_replay_store`, replicas keep accepting proofs
/// while Redis is down, and a replay on the same replica is still refused.
/// When Redis returns, proofs are shared again.
#[tokio::test]
async fn the_local_fallback_keeps_dpop_working_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let store = || open(&redis.url()).fall_back_to_local_replay_store(1000);
    let a = dpop_replica(store());
    let b = dpop_replica(store());
    let client = Client::new();
    let proof = client.proof();
    assert_ok(&client.send(&a, &proof).await.0);
    assert_replayed(&client.send(&b, &proof).await.0);

    redis.stop();
    for app in [&a, &b] {
        let proof = client.proof();
        let (res, took) = client.send(app, &proof).await;
        assert_ok(&res);
        assert!(took < QUICK, "answered after {took:?}");
        let (res, took) = client.send(app, &proof).await;
        assert_replayed(&res);
        assert!(took < QUICK, "answered after {took:?}");
    }

    let redis = RedisServer::start_on(port);
    let mut conn = redis.client().await;
    // Accepted either way: wait until a proof is recorded in Redis again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let shared = loop {
        let proof = client.proof();
        assert_ok(&client.send(&a, &proof).await.0);
        if exists(&mut conn, &dpop_key("tokenguard:", &client.key, &proof)).await {
            break Some(proof);
        }
        assert!(
            Instant::now() < deadline,
            "A does not record in Redis again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let proof = shared.unwrap();
    assert_replayed(&client.send(&b, &proof).await.0);
    assert!(exists(&mut conn, &dpop_key("tokenguard:", &client.key, &proof)).await);
}

/// With the local fallback, a proof accepted through Redis before it went
/// away is still refused when replayed on the same replica while it is away.
///
/// Fails today: an accepted proof is recorded only in Redis
/// (src/redis.rs, `record`: the fallback store is written only when Redis
/// fails), so the replica that accepted it forgets it when Redis goes away
/// and accepts its replay.
#[tokio::test]
async fn the_local_fallback_refuses_replays_of_proofs_accepted_before_the_outage() {
    let mut redis = RedisServer::start();
    let a = dpop_replica(open(&redis.url()).fall_back_to_local_replay_store(1000));
    let client = Client::new();
    let proof = client.proof();
    assert_ok(&client.send(&a, &proof).await.0);
    redis.stop();
    assert_replayed(&client.send(&a, &proof).await.0);
}

/// The introspection path keeps working while Redis is down (the local
/// cache, then the endpoint), quickly; once Redis returns, answers are
/// shared again.
#[tokio::test]
async fn introspection_keeps_working_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let endpoint = Endpoint::start().await;
    let max_ttl = Duration::from_secs(30);
    let a = endpoint.replica(open(&redis.url()), max_ttl);
    let b = endpoint.replica(open(&redis.url()), max_ttl);
    let cached = opaque_token();
    assert_ok(&bearer(&a, &cached).await);
    assert_eq!(endpoint.calls(), 1);

    redis.stop();
    let timed = |app: Router, token: String| async move {
        let start = Instant::now();
        let res = bearer(&app, &token).await;
        let took = start.elapsed();
        assert_ok(&res);
        assert!(took < QUICK, "answered after {took:?}");
    };
    // A's own cache.
    timed(a.clone(), cached.clone()).await;
    assert_eq!(endpoint.calls(), 1);
    // B cannot read Redis: it asks the endpoint.
    timed(b.clone(), cached.clone()).await;
    assert_eq!(endpoint.calls(), 2);
    let fresh = opaque_token();
    timed(a.clone(), fresh.clone()).await;
    assert_eq!(endpoint.calls(), 3);
    timed(a.clone(), fresh.clone()).await;
    assert_eq!(endpoint.calls(), 3);

    let redis = RedisServer::start_on(port);
    let mut conn = redis.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let shared = 'found: loop {
        let token = opaque_token();
        let key = introspection_key(&token);
        assert_ok(&bearer(&a, &token).await);
        // The store is not waited for by the request.
        let stored = Instant::now() + Duration::from_millis(500);
        while Instant::now() < stored {
            if exists(&mut conn, &key).await {
                break 'found Some(token);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(Instant::now() < deadline, "A does not store in Redis again");
    };
    let calls = endpoint.calls();
    assert_ok(&bearer(&b, &shared.unwrap()).await);
    assert_eq!(endpoint.calls(), calls, "B asked the endpoint");
}

/// A Redis that is down when the guard is built is not fatal: requests are
/// refused (503) until it starts, then accepted.
#[tokio::test]
async fn redis_down_at_start_up_is_not_fatal() {
    let port = free_port();
    let a = dpop_replica(open(&format!("redis://127.0.0.1:{port}")));
    let client = Client::new();
    let (res, took) = client.send(&a, &client.proof()).await;
    assert_unavailable(&res, took, QUICK);
    let _redis = RedisServer::start_on(port);
    eventually(Duration::from_secs(10), "A checks replays", || async {
        client.status(&a, &client.proof()).await == StatusCode::OK
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. A Redis that hangs.

/// A Redis that accepts connections and never answers: replay checks are
/// refused with 503 within the per-call timeout (default 250 ms, or the one
/// given to `open_with_timeout`), every time; with the local fallback they
/// are accepted within it; introspection answers come from the endpoint.
#[tokio::test]
async fn a_hanging_redis_is_answered_within_the_timeout() {
    let url = hanging_redis().await;
    let client = Client::new();

    let fail_closed = dpop_replica(open(&url));
    for i in 0..3 {
        let (res, took) = client.send(&fail_closed, &client.proof()).await;
        assert_unavailable(&res, took, QUICK);
        // The first waited for the timeout; later ones may find the
        // connection attempt already failed.
        assert!(
            i > 0 || took >= Duration::from_millis(200),
            "answered after {took:?}: not the timeout"
        );
    }

    let short =
        dpop_replica(RedisStore::open_with_timeout(&url, Duration::from_millis(50)).unwrap());
    for _ in 0..3 {
        let (res, took) = client.send(&short, &client.proof()).await;
        assert_unavailable(&res, took, Duration::from_millis(500));
    }

    let fallback = dpop_replica(open(&url).fall_back_to_local_replay_store(1000));
    let proof = client.proof();
    let (res, took) = client.send(&fallback, &proof).await;
    assert_ok(&res);
    assert!(took < QUICK, "answered after {took:?}");
    assert_replayed(&client.send(&fallback, &proof).await.0);

    let endpoint = Endpoint::start().await;
    let introspecting = endpoint.replica(open(&url), Duration::from_secs(30));
    let start = Instant::now();
    assert_ok(&bearer(&introspecting, &opaque_token()).await);
    assert!(
        start.elapsed() < QUICK,
        "answered after {:?}",
        start.elapsed()
    );
    assert_eq!(endpoint.calls(), 1);
}

// ---------------------------------------------------------------------------
// 5. The circuit breaker.

/// Redis paused (SIGSTOP: its connections stay open and nothing is
/// answered). Three replay checks in a row time out and open the breaker;
/// the seven requests after them are refused (503) without a command sent
/// to Redis: once Redis resumes and runs what was sent, it holds the key of
/// the first proof and of at most those three.
#[tokio::test]
async fn an_open_breaker_sends_nothing_to_redis() {
    let redis = RedisServer::start();
    let store = RedisStore::open_with_timeout(&redis.url(), Duration::from_millis(100))
        .unwrap()
        .circuit_breaker(3, Duration::from_secs(3600));
    let app = dpop_replica(store);
    let client = Client::new();
    assert_ok(&client.send(&app, &client.proof()).await.0);

    redis.signal("STOP");
    for _ in 0..10 {
        let (res, took) = client.send(&app, &client.proof()).await;
        assert_unavailable(&res, took, QUICK);
    }
    redis.signal("CONT");
    let mut conn = redis.client().await;
    // What the guard's connection sent before is run before this client's
    // commands; give it a moment all the same.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recorded = keys(&mut conn, "tokenguard:dpop:*").await.len();
    assert!(
        (1..=4).contains(&recorded),
        "{recorded} proofs reached Redis: the breaker let more than 3 failed calls through"
    );
}

/// With a short cool-down, the breaker lets one probe through once it is
/// over; Redis answering it closes the breaker, and replays are checked in
/// Redis again, without a restart. While it is open, a refused proof is not
/// recorded anywhere, so the same proof is accepted later.
#[tokio::test]
async fn a_probe_closes_the_breaker_when_redis_is_back() {
    let redis = RedisServer::start();
    let store = RedisStore::open_with_timeout(&redis.url(), Duration::from_millis(100))
        .unwrap()
        .circuit_breaker(1, Duration::from_millis(300));
    let app = dpop_replica(store);
    let client = Client::new();
    assert_ok(&client.send(&app, &client.proof()).await.0);

    redis.signal("STOP");
    let (res, took) = client.send(&app, &client.proof()).await;
    assert_unavailable(&res, took, QUICK);
    redis.signal("CONT");

    let proof = client.proof();
    let mut conn = redis.client().await;
    eventually(
        Duration::from_secs(10),
        "a probe closes the breaker",
        || async {
            match client.send(&app, &proof).await.0.status() {
                StatusCode::OK => true,
                StatusCode::SERVICE_UNAVAILABLE => false,
                other => panic!("answered {other} while the breaker was open"),
            }
        },
    )
    .await;
    assert!(exists(&mut conn, &dpop_key("tokenguard:", &client.key, &proof)).await);
    assert_replayed(&client.send(&app, &proof).await.0);
}

// ---------------------------------------------------------------------------
// Opening.

#[test]
fn open_needs_a_runtime_and_a_valid_url() {
    let outside = RedisStore::open("redis://127.0.0.1:6379").unwrap_err();
    assert!(outside.to_string().contains("Tokio runtime"), "{outside}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bad = RedisStore::open("http://127.0.0.1:6379").unwrap_err();
        assert!(bad.to_string().contains("invalid Redis URL"), "{bad}");
        assert!(RedisStore::open("redis://127.0.0.1:6379/0").is_ok());
    });
}
