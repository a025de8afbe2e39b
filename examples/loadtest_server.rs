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
//!   global allocator while `COUNT_ALLOC=1`), `VmRSS` and `VmHWM` in KiB, and
//!   how many calls of the guard's service took at least 8 µs
//!   (`guard_calls_slow`) or less (`guard_calls_fast`). With static keys the
//!   layer verifies the token inside `call`, so a slow call is (almost
//!   always) a signature check and a fast one a cache hit: an estimate of the
//!   cache's hit rate, which tokenguard does not expose.
//!
//! Environment:
//! - `PORT` (default 3000);
//! - `CACHE` = `on` (default: tokenguard's verified-token cache with its
//!   defaults) or `off` (`disable_token_cache`);
//! - `TOKENS` (default 16): how many distinct tokens to mint (each has its own
//!   `jti`, scope `read:invoices`, one hour of validity), written one per
//!   line to `TOKENS_FILE` (default `tokenguard_loadtest_tokens.txt` in the
//!   temporary directory) before serving;
//! - `ALG` (default `RS256`; also `ES256`, `EdDSA`, ...): the signing algorithm;
//! - `COUNT_ALLOC=1`: count live heap bytes (a relaxed atomic per allocation;
//!   off by default so the load numbers do not include it).
//!
//! It prints `listening on http://127.0.0.1:PORT` once the token file is
//! complete, and stops on SIGINT or SIGTERM.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokenguard::testing::TestIssuer;
use tokenguard::{Algorithm, RequireScope, scopes};
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
            r#"{{"heap_counting":{},"heap_live_bytes":{},"vm_rss_kib":{rss},"vm_hwm_kib":{hwm},"guard_calls_fast":{},"guard_calls_slow":{}}}"#,
            COUNTING.load(Ordering::Relaxed),
            LIVE.load(Ordering::Relaxed),
            FAST_CALLS.load(Ordering::Relaxed),
            SLOW_CALLS.load(Ordering::Relaxed),
        ),
    )
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
    let n: usize = env_or("TOKENS", "16")
        .parse()
        .unwrap_or_else(|_| fail("TOKENS is not a number"));
    let default_path = std::env::temp_dir().join("tokenguard_loadtest_tokens.txt");
    let path = env_or("TOKENS_FILE", &default_path.to_string_lossy());
    let alg = parse_alg(&env_or("ALG", "RS256"));

    let issuer = TestIssuer::new();
    let mut builder = issuer.guard_builder(AUDIENCE);
    if !cache {
        builder = builder.disable_token_cache();
    }
    let guard = builder.build().unwrap_or_else(|e| fail(e));
    write_tokens(&issuer, alg, n, &path);

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
        .merge(guarded);

    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
    println!(
        "listening on http://{addr} (cache {}, {n} {alg:?} tokens in {path})",
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
