//! The cost of shared state on Redis (feature `redis`), measured in one run
//! against a `redis-server` this bench starts on a free loopback port:
//!
//! - `replay/memory`: `MemoryReplayStore::record` of a fresh key;
//! - `replay/redis`: `RedisStore::record` of a fresh key (one `SET NX PX`
//!   round trip over loopback, one call at a time);
//! - `dpop_layer/memory_store`, `dpop_layer/redis_store`: a DPoP-bound
//!   ES256 token (from the token cache) with a fresh proof per request
//!   (made outside the timing), through the layer, with each replay store;
//! - a load test (not criterion): 64 concurrent tasks recording fresh keys
//!   in one `RedisStore` (one multiplexed connection) for 3 s, then one task
//!   for 3 s: checks per second and p50/p99 latency.
//!
//! Run: `cargo bench --bench redis --features redis,testing` (needs Debian's
//! `redis-server`). The printed summary gives the ratios and the load lines.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BatchSize, Criterion, criterion_group};
use futures_util::FutureExt as _;
use http::{Request, header};
use tokenguard::testing::{DpopKey, TestIssuer};
use tokenguard::{
    AccessTokenClaims, Claims, DpopConfig, MemoryReplayStore, RedisStore, ReplayKey, ReplayStore,
    Seen,
};
use tower::ServiceExt as _;

const AUD: &str = "https://api.example.com";
const ORIGIN: &str = "https://api.example.com";
/// The replay TTL of the default DPoP window (60 s + 5 s).
const TTL: Duration = Duration::from_secs(65);
/// Concurrent tasks of the load test.
const TASKS: usize = 64;
/// How long each load test runs.
const LOAD_FOR: Duration = Duration::from_secs(3);

/// The URL of the redis-server started by `main`.
static REDIS_URL: OnceLock<String> = OnceLock::new();

// ---------------------------------------------------------------------------
// A redis-server of our own: the tests' helper.

#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

fn redis_url() -> &'static str {
    REDIS_URL
        .get()
        .expect("the redis-server is started by main")
}

/// A key never recorded before (in this run, or any other: the run's start
/// time is part of it).
fn fresh_key() -> ReplayKey {
    static RUN: OnceLock<u128> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ReplayKey::new("bench-thumbprint", &format!("{run:x}-{n}"))
}

// ---------------------------------------------------------------------------
// Criterion.

fn bench_replay(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let redis = rt.block_on(async { RedisStore::open(redis_url()).unwrap() });
    // Connects before the timing.
    rt.block_on(redis.record(fresh_key(), TTL)).unwrap();

    let mut g = c.benchmark_group("replay");
    g.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            // A store per sample, with room for every key of it.
            let store = MemoryReplayStore::new(iters as usize * 2 + 1024);
            let keys: Vec<ReplayKey> = (0..iters).map(|_| fresh_key()).collect();
            let start = Instant::now();
            for key in keys {
                let seen = store.record(black_box(key), TTL).now_or_never().unwrap();
                assert_eq!(seen.unwrap(), Seen::First);
            }
            let took = start.elapsed();
            drop(store);
            took
        })
    });
    g.bench_function("redis", |b| {
        b.iter_custom(|iters| {
            let keys: Vec<ReplayKey> = (0..iters).map(|_| fresh_key()).collect();
            rt.block_on(async {
                let start = Instant::now();
                for key in keys {
                    let seen = redis.record(black_box(key), TTL).await;
                    assert_eq!(seen.unwrap(), Seen::First);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn routes() -> Router {
    Router::new().route(
        "/me",
        get(
            |Claims(c): Claims<AccessTokenClaims>| async move { c.sub.clone().unwrap_or_default() },
        ),
    )
}

fn bench_dpop(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let issuer = TestIssuer::new();
    let key = DpopKey::new();
    let token = issuer
        .token()
        .audience(AUD)
        .subject("u1")
        .dpop_bound(&key)
        .mint();
    let router = |store: Arc<dyn ReplayStore>| {
        let guard = issuer
            .guard_builder(AUD)
            .dpop(DpopConfig::new(ORIGIN).replay_store(store))
            .build()
            .unwrap();
        routes().layer(guard.layer())
    };
    // Room for every proof of the run: the default store would fill up.
    let memory = router(Arc::new(MemoryReplayStore::new(20_000_000)));
    let redis = router(Arc::new(
        rt.block_on(async { RedisStore::open(redis_url()).unwrap() }),
    ));
    let url = format!("{ORIGIN}/me");
    let request = || {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", key.proof("GET", &url, &token))
            .body(Body::empty())
            .unwrap()
    };
    let send = |router: &Router, req: Request<Body>| {
        let res = rt.block_on(router.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
    };
    // Fills the token caches and connects.
    send(&memory, request());
    send(&redis, request());

    let mut g = c.benchmark_group("dpop_layer");
    for (name, router) in [("memory_store", &memory), ("redis_store", &redis)] {
        g.bench_function(name, |b| {
            b.iter_batched(request, |req| send(router, req), BatchSize::SmallInput)
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    bench_replay(c, &rt);
    bench_dpop(c, &rt);
}

criterion_group! {
    name = redis_benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}

// ---------------------------------------------------------------------------
// The load test.

struct Load {
    tasks: usize,
    elapsed: Duration,
    /// Every successful check's latency, sorted.
    latencies: Vec<Duration>,
    errors: usize,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn line(&self) -> String {
        format!(
            "load: {} task(s) x {:.1} s, replay checks on one RedisStore: {:.0} checks/s | p50 {:.0} us | p99 {:.0} us | max {:.0} us | {} checks, {} errors",
            self.tasks,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            micros(self.percentile(50.0)),
            micros(self.percentile(99.0)),
            micros(self.latencies.last().copied().unwrap_or_default()),
            self.latencies.len(),
            self.errors,
        )
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `tasks` tasks recording fresh keys in one store for [`LOAD_FOR`] on a
/// runtime with a worker per core.
fn load_test(tasks: usize) -> Load {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(RedisStore::open(redis_url()).unwrap());
        store.record(fresh_key(), TTL).await.unwrap();
        let start = Instant::now();
        let deadline = start + LOAD_FOR;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let store = store.clone();
            set.spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut errors = 0;
                while Instant::now() < deadline {
                    let key = fresh_key();
                    let t = Instant::now();
                    match store.record(key, TTL).await {
                        Ok(Seen::First) => latencies.push(t.elapsed()),
                        Ok(Seen::Before) => panic!("a fresh key was called a replay"),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            });
        }
        let mut load = Load {
            tasks,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            errors: 0,
        };
        while let Some(done) = set.join_next().await {
            let (latencies, errors) = done.unwrap();
            load.latencies.extend(latencies);
            load.errors += errors;
        }
        load.elapsed = start.elapsed();
        load.latencies.sort_unstable();
        load
    })
}

/// Keys and memory of the Redis after the run.
fn redis_memory() -> Option<(u64, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let mut conn = redis::Client::open(redis_url())
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .ok()?;
        let used = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))?
            .trim()
            .parse()
            .ok()?;
        Some((keys, used))
    })
}

fn main() {
    let server = RedisServer::start();
    REDIS_URL.set(server.url()).unwrap();
    redis_benches();
    Criterion::default().configure_from_args().final_summary();
    // Not under `cargo bench -- <filter>` runs that measure nothing else.
    let loads = if std::env::args().any(|a| a == "--list") {
        Vec::new()
    } else {
        vec![load_test(TASKS), load_test(1)]
    };
    summary(&loads);
    if let Some((keys, bytes)) = redis_memory() {
        println!(
            "redis after the run: {keys} keys, used_memory {:.1} MiB (about {} bytes per replay key)",
            bytes as f64 / 1048576.0,
            bytes / keys.max(1)
        );
    }
    drop(server);
}

/// Reads criterion's estimates of this run and prints the ratios.
fn summary(loads: &[Load]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("criterion");
    let median = |group: &str, id: &str| -> Option<f64> {
        let path = dir.join(group).join(id).join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    println!("\n== tokenguard redis summary (median ns; ratios within this run)");
    if let (Some(memory), Some(redis)) = (median("replay", "memory"), median("replay", "redis")) {
        println!(
            "replay check: memory {memory:.0} ns | redis {redis:.0} ns (loopback round trip) = {:.1}x memory",
            redis / memory
        );
    }
    if let (Some(memory), Some(redis)) = (
        median("dpop_layer", "memory_store"),
        median("dpop_layer", "redis_store"),
    ) {
        println!(
            "dpop request through the layer (token cache hit, fresh ES256 proof): memory store {memory:.0} ns | redis store {redis:.0} ns = {:.2}x (+{:.0} ns)",
            redis / memory,
            redis - memory
        );
    }
    for load in loads {
        println!("{}", load.line());
    }
}
