//! The target of `scripts/loadtest.sh`: a quickstart-like invoices API on
//! `127.0.0.1`, trusting an in-process `TestIssuer` (static keys, no network).
//!
//! ```text
//! TOKENS=16 TOKENS_FILE=/tmp/tokens.txt cargo run --release --example loadtest_server
//! ```
//!
//! Routes:
//! - `GET /open/invoices`: no layer;
//! - `GET /guarded/invoices`: behind `guard.layer()`, the handler takes
//!   `RequireScope<ReadInvoices>`;
//! - `GET /stats`: JSON with the live heap bytes (counted by this example's
//!   global allocator while `COUNT_ALLOC=1`), `VmRSS` and `VmHWM` in KiB, how
//!   many calls of the guard's service took at least 8 µs
//!   (`guard_calls_slow`) or less (`guard_calls_fast`), and how many calls
//!   the introspection endpoint answered (`introspection_calls`). With static
//!   keys the layer verifies a JWT inside `call`, so a slow call is (almost
//!   always) a signature check and a fast one a cache hit: an estimate of the
//!   cache's hit rate, which tokenguard does not expose;
//! - `GET /proofs?count=N` (`TOKEN_KIND=dpop` only): `N` lines of
//!   `token<TAB>proof`, each proof fresh (its own `jti`, `iat` now) for
//!   `GET /guarded/invoices` at this server's public URL, the tokens taken
//!   round-robin from the pool. wrk cannot sign, so the load test fetches
//!   them right before each round.
//!
//! Environment:
//! - `PORT` (default 3000);
//! - `CACHE` = `on` (default: tokenguard's verified-token cache, and the
//!   introspection cache, with their defaults) or `off`
//!   (`disable_token_cache`, `IntrospectionConfig::disable_cache`);
//! - `TOKEN_KIND`: what the pool holds and the guard accepts:
//!   - `jwt` (default): bearer JWTs;
//!   - `dpop`: JWTs bound to DPoP keys (`cnf.jkt`, one key per token), the
//!     guard with `DpopConfig::new("http://127.0.0.1:PORT")`;
//!   - `opaque`: random opaque tokens, introspected (RFC 7662) at an endpoint
//!     this process serves on another loopback port, which answers active
//!     for the pool's tokens (with `scope`, `exp`, `aud`, `iss`,
//!     `client_id`) and inactive for any other;
//! - `TOKENS` (default 16): how many distinct tokens to make (JWTs: each has
//!   its own `jti`, scope `read:invoices`, one hour of validity), written one
//!   per line to `TOKENS_FILE` (default `tokenguard_loadtest_tokens.txt` in
//!   the temporary directory) before serving;
//! - `ALG` (default `RS256`; also `ES256`, `EdDSA`, ...): the signing
//!   algorithm of the JWTs (DPoP proofs are ES256);
//! - `REPLAY_CAPACITY` (`dpop` only): the capacity of the in-memory replay
//!   store (`MemoryReplayStore::new`); unset: the guard's default store;
//! - `COUNT_ALLOC=1`: count live heap bytes (a relaxed atomic per allocation;
//!   off by default so the load numbers do not include it).
//!
//! It prints `listening on http://127.0.0.1:PORT` once the token file is
//! complete (after a `dpop:` or `introspection:` line saying how that is
//! set up), and stops on SIGINT or SIGTERM.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use tokenguard::testing::{DpopKey, TestIssuer};
use tokenguard::{
    Algorithm, ClientAuth, DpopConfig, IntrospectionConfig, MemoryReplayStore, NumericDate,
    RequireScope, scopes,
};
use tower::{Layer, Service};

/// Counts live heap bytes while [`COUNTING`] is set.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a
// counter is updated beside it.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A guard call at least this long counts as a verification, not a cache hit.
const SLOW_CALL: Duration = Duration::from_micros(8);
static FAST_CALLS: AtomicU64 = AtomicU64::new(0);
static SLOW_CALLS: AtomicU64 = AtomicU64::new(0);

/// Times the `call` of the service it wraps (the guard's): see `/stats`.
#[derive(Clone)]
struct TimeCalls;

impl<S> Layer<S> for TimeCalls {
    type Service = TimedCalls<S>;

    fn layer(&self, inner: S) -> TimedCalls<S> {
        TimedCalls { inner }
    }
}

#[derive(Clone)]
struct TimedCalls<S> {
    inner: S,
}

impl<S: Service<R>, R> Service<R> for TimedCalls<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        let start = Instant::now();
        let fut = self.inner.call(req);
        let counter = if start.elapsed() >= SLOW_CALL {
            &SLOW_CALLS
        } else {
            &FAST_CALLS
        };
        counter.fetch_add(1, Ordering::Relaxed);
        fut
    }
}

scopes! {
    /// List invoices.
    pub ReadInvoices = "read:invoices";
}

const AUDIENCE: &str = "http://127.0.0.1/invoices-api";

/// The same small JSON list on both routes.
const INVOICES: &str = r#"[{"id":1,"customer":"ACME","amount_cents":1200},{"id":2,"customer":"Globex","amount_cents":990}]"#;

fn invoices() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], INVOICES)
}

async fn open_list() -> impl IntoResponse {
    invoices()
}

async fn guarded_list(_: RequireScope<ReadInvoices>) -> impl IntoResponse {
    invoices()
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn proc_status_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn stats() -> impl IntoResponse {
    let (rss, hwm) = proc_status_kib();
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            r#"{{"heap_counting":{},"heap_live_bytes":{},"vm_rss_kib":{rss},"vm_hwm_kib":{hwm},"guard_calls_fast":{},"guard_calls_slow":{},"introspection_calls":{}}}"#,
            COUNTING.load(Ordering::Relaxed),
            LIVE.load(Ordering::Relaxed),
            FAST_CALLS.load(Ordering::Relaxed),
            SLOW_CALLS.load(Ordering::Relaxed),
            INTROSPECTIONS.load(Ordering::Relaxed),
        ),
    )
}

/// The DPoP-bound tokens and their keys, for `/proofs`.
struct DpopPool {
    tokens: Vec<(String, DpopKey)>,
    /// The `htu` of `GET /guarded/invoices`: the public URL plus the path.
    htu: String,
}

#[derive(serde::Deserialize)]
struct ProofsQuery {
    count: usize,
}

/// Streams `count` lines of `token<TAB>proof`, signed on every core in
/// chunks, so the server's memory does not grow with `count`.
async fn proofs(State(pool): State<Arc<DpopPool>>, Query(q): Query<ProofsQuery>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2 * threads);
    for first in 0..threads {
        let (tx, pool) = (tx.clone(), Arc::clone(&pool));
        std::thread::spawn(move || {
            let mut chunk = String::with_capacity(CHUNK + 4096);
            for i in (first..q.count).step_by(threads) {
                let (token, key) = &pool.tokens[i % pool.tokens.len()];
                chunk.push_str(token);
                chunk.push('\t');
                chunk.push_str(&key.proof("GET", &pool.htu, token));
                chunk.push('\n');
                if chunk.len() >= CHUNK
                    && tx
                        .blocking_send(Bytes::from(std::mem::take(&mut chunk)))
                        .is_err()
                {
                    return; // the client went away
                }
            }
            if !chunk.is_empty() {
                let _ = tx.blocking_send(Bytes::from(chunk));
            }
        });
    }
    drop(tx);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [(header::CONTENT_TYPE, "text/tab-separated-values")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Calls answered by the introspection endpoint.
static INTROSPECTIONS: AtomicU64 = AtomicU64::new(0);

/// The client the guard authenticates as to the introspection endpoint.
const INTROSPECTION_CLIENT: (&str, &str) = ("loadtest-api", "loadtest-secret");

/// What the introspection endpoint knows.
struct Introspection {
    active: HashSet<String>,
    /// The `Authorization` the guard sends (`client_secret_basic`).
    basic: HeaderValue,
    issuer: String,
}

/// RFC 7662 §2: active, with the claims the guard checks, for the pool's
/// tokens; inactive for any other.
async fn introspect(
    State(s): State<Arc<Introspection>>,
    headers: HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    INTROSPECTIONS.fetch_add(1, Ordering::Relaxed);
    if headers.get(header::AUTHORIZATION) != Some(&s.basic) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    let answer = if s.active.contains(token) {
        serde_json::json!({
            "active": true,
            "scope": "read:invoices",
            "exp": NumericDate::now().as_secs() + 3600,
            "aud": AUDIENCE,
            "iss": s.issuer,
            "client_id": "loadtest",
            "sub": "loadtest",
            "token_type": "Bearer",
        })
    } else {
        serde_json::json!({ "active": false })
    };
    axum::Json(answer).into_response()
}

/// Serves the introspection endpoint on an ephemeral loopback port; returns
/// its URL.
async fn serve_introspection(state: Introspection) -> String {
    let app = Router::new()
        .route("/introspect", post(introspect))
        .with_state(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen for introspection: {e}")));
    let url = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}/introspect"),
        Err(e) => fail(e),
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            fail(e);
        }
    });
    url
}

/// A random opaque token: 32 bytes, base64url (43 characters, no dots, so
/// never taken for a JWT).
fn opaque_token() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_else(|_| fail("no system randomness"));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn write_lines<'a>(path: &str, lines: impl IntoIterator<Item = &'a str>) {
    let mut out = String::new();
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(path, out)
        .unwrap_or_else(|e| fail(format!("cannot write TOKENS_FILE={path:?}: {e}")));
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn parse_alg(name: &str) -> Algorithm {
    serde_json::from_value(serde_json::Value::from(name))
        .unwrap_or_else(|_| fail(format!("ALG={name:?} is not a JWS algorithm name")))
}

/// Mints `n` distinct tokens on every core and writes them to `path`, one
/// per line. Nothing is kept in memory afterwards.
fn write_tokens(issuer: &TestIssuer, alg: Algorithm, n: usize, path: &str) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    let chunks: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                s.spawn(move || {
                    let mut out = String::new();
                    for _ in 0..count {
                        let token = issuer
                            .token()
                            .audience(AUDIENCE)
                            .subject("loadtest")
                            .scope("read:invoices")
                            .expires_in(Duration::from_secs(3600))
                            .algorithm(alg)
                            .mint();
                        out.push_str(&token);
                        out.push('\n');
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("minting thread"))
            .collect()
    });
    let mut file = std::fs::File::create(path)
        .unwrap_or_else(|e| fail(format!("cannot create TOKENS_FILE={path:?}: {e}")));
    for chunk in chunks {
        file.write_all(chunk.as_bytes())
            .unwrap_or_else(|e| fail(format!("cannot write {path:?}: {e}")));
    }
}

/// What the pool holds and the guard accepts (`TOKEN_KIND`).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Jwt,
    Dpop,
    Opaque,
}

#[tokio::main]
async fn main() {
    COUNTING.store(env_or("COUNT_ALLOC", "0") == "1", Ordering::Relaxed);
    let port: u16 = env_or("PORT", "3000")
        .parse()
        .unwrap_or_else(|_| fail("PORT is not a port number"));
    let cache = match env_or("CACHE", "on").as_str() {
        "on" => true,
        "off" => false,
        other => fail(format!("CACHE={other:?}: use on or off")),
    };
    let kind = match env_or("TOKEN_KIND", "jwt").as_str() {
        "jwt" => Kind::Jwt,
        "dpop" => Kind::Dpop,
        "opaque" => Kind::Opaque,
        other => fail(format!("TOKEN_KIND={other:?}: use jwt, dpop or opaque")),
    };
    let n: usize = env_or("TOKENS", "16")
        .parse()
        .unwrap_or_else(|_| fail("TOKENS is not a number"));
    if n == 0 {
        fail("TOKENS must be at least 1");
    }
    let default_path = std::env::temp_dir().join("tokenguard_loadtest_tokens.txt");
    let path = env_or("TOKENS_FILE", &default_path.to_string_lossy());
    let alg = parse_alg(&env_or("ALG", "RS256"));

    let issuer = TestIssuer::new();
    let mut builder = issuer.guard_builder(AUDIENCE);
    if !cache {
        builder = builder.disable_token_cache();
    }
    let mut extra: Router = Router::new();
    match kind {
        Kind::Jwt => write_tokens(&issuer, alg, n, &path),
        Kind::Dpop => {
            // `htu` is compared with this configured origin, never `Host`.
            let public = format!("http://127.0.0.1:{port}");
            let mut config = DpopConfig::new(public.clone());
            let store = match std::env::var("REPLAY_CAPACITY") {
                Ok(v) if !v.is_empty() => {
                    let capacity: usize = v
                        .parse()
                        .unwrap_or_else(|_| fail("REPLAY_CAPACITY is not a number"));
                    let store = Arc::new(MemoryReplayStore::new(capacity));
                    let shown = format!("{store:?}");
                    config = config.replay_store(store);
                    shown
                }
                _ => "the default (a MemoryReplayStore of default capacity)".to_owned(),
            };
            builder = builder.dpop(config);
            let tokens: Vec<(String, DpopKey)> = (0..n)
                .map(|_| {
                    let key = DpopKey::new();
                    let token = issuer
                        .token()
                        .audience(AUDIENCE)
                        .subject("loadtest")
                        .scope("read:invoices")
                        .expires_in(Duration::from_secs(3600))
                        .algorithm(alg)
                        .dpop_bound(&key)
                        .mint();
                    (token, key)
                })
                .collect();
            write_lines(&path, tokens.iter().map(|(t, _)| t.as_str()));
            let htu = format!("{public}/guarded/invoices");
            println!("dpop: htu {htu}, proofs ES256, replay store {store}");
            extra = Router::new()
                .route("/proofs", get(proofs))
                .with_state(Arc::new(DpopPool { tokens, htu }));
        }
        Kind::Opaque => {
            let tokens: Vec<String> = (0..n).map(|_| opaque_token()).collect();
            let (id, secret) = INTROSPECTION_CLIENT;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            let basic =
                HeaderValue::from_str(&format!("Basic {basic}")).unwrap_or_else(|e| fail(e));
            let url = serve_introspection(Introspection {
                active: tokens.iter().cloned().collect(),
                basic,
                issuer: issuer.issuer().to_owned(),
            })
            .await;
            let mut config = IntrospectionConfig::new(ClientAuth::client_secret_basic(id, secret))
                .endpoint(&url);
            if !cache {
                config = config.disable_cache();
            }
            println!(
                "introspection: endpoint {url}, cache {}",
                if cache { "on (defaults)" } else { "off" }
            );
            builder = builder.introspection(config);
            write_lines(&path, tokens.iter().map(String::as_str));
        }
    }
    let guard = builder.build().unwrap_or_else(|e| fail(e));

    let guarded = Router::new()
        .route("/guarded/invoices", get(guarded_list))
        // One layer, so that `TimeCalls` wraps the guard's service directly
        // (each `Router::layer` boxes the route, and a boxed route calls its
        // inner service only when its future is polled).
        .layer(
            tower::ServiceBuilder::new()
                .layer(TimeCalls)
                .layer(guard.layer()),
        );
    let app = Router::new()
        .route("/open/invoices", get(open_list))
        .route("/stats", get(stats))
        .merge(guarded)
        .merge(extra);

    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
    println!(
        "listening on http://{addr} (cache {}, {n} {kind:?} tokens, {alg:?}, in {path})",
        if cache { "on" } else { "off" }
    );

    let shutdown = async {
        #[cfg(unix)]
        let term = async {
            use tokio::signal::unix::{SignalKind, signal};
            signal(SignalKind::terminate())
                .unwrap_or_else(|e| fail(e))
                .recv()
                .await
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        fail(e);
    }
}
