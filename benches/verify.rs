//! Per-request cost of tokenguard, as ratios measured in one run:
//!
//! - `floor/jsonwebtoken_decode`: the raw `jsonwebtoken::decode` of the token
//!   with a prepared `DecodingKey` — the cost of verification itself;
//! - `guard_verify_uncached`: `TokenGuard::verify` with the cache off;
//! - `router/plain`: the same axum Router without the layer;
//! - `router/layer_uncached`: the Router behind the layer, cache off;
//! - `router/layer_cached`: the Router behind the layer, cache hit;
//! - `reject/*`: refusals through the layer (bad signature, no header,
//!   unknown kid).
//!
//! `threads/*` runs the same number of cached requests on one and on two
//! threads: without contention between cores, two threads take half the time.
//!
//! Run: `cargo bench --bench verify`. The printed summary gives the ratios.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group};
use futures_util::FutureExt;
use http::{Request, header};
use tokenguard::testing::TestIssuer;
use tokenguard::{AccessTokenClaims, Algorithm, Claims, TokenGuard};
use tower::ServiceExt;

const AUD: &str = "https://api.example.com";

struct Setup {
    alg: Algorithm,
    token: String,
    decoding_key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    guard_uncached: TokenGuard,
    guard_cached: TokenGuard,
    plain: Router,
    layer_uncached: Router,
    layer_cached: Router,
    bad_signature: String,
    unknown_kid: String,
}

fn routes() -> Router {
    Router::new().route(
        "/me",
        get(
            |Claims(c): Claims<AccessTokenClaims>| async move { c.sub.clone().unwrap_or_default() },
        ),
    )
}

fn plain_routes() -> Router {
    Router::new().route("/me", get(|| async { String::from("u1") }))
}

fn setup(issuer: &TestIssuer, alg: Algorithm) -> Setup {
    let token = issuer
        .token()
        .audience(AUD)
        .subject("u1")
        .scope("read:invoices write:invoices")
        .algorithm(alg)
        .mint();
    let jwk = issuer.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == issuer.kid(alg))
        .cloned()
        .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
    let decoding_key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[issuer.issuer()]);
    let guard_uncached = issuer
        .guard_builder(AUD)
        .disable_token_cache()
        .build()
        .unwrap();
    let guard_cached = issuer.guard(AUD);
    let mut bad = token.clone().into_bytes();
    let i = bad.len() - 5;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    Setup {
        alg,
        bad_signature: String::from_utf8(bad).unwrap(),
        unknown_kid: issuer
            .token()
            .audience(AUD)
            .algorithm(alg)
            .kid(Some("unknown"))
            .mint(),
        plain: plain_routes(),
        layer_uncached: routes().layer(guard_uncached.layer()),
        layer_cached: routes().layer(guard_cached.layer()),
        token,
        decoding_key,
        validation,
        guard_uncached,
        guard_cached,
    }
}

fn request(token: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/me");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    req.body(Body::empty()).unwrap()
}

/// Calls the router; every future here completes without waiting.
fn call(router: &Router, token: Option<&str>) -> http::StatusCode {
    router
        .clone()
        .oneshot(request(token))
        .now_or_never()
        .unwrap()
        .unwrap()
        .status()
}

fn bench_alg(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group(format!("{:?}", s.alg));
    g.bench_function("floor/jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(
                black_box(&s.token),
                &s.decoding_key,
                &s.validation,
            )
            .unwrap()
        })
    });
    g.bench_function("guard_verify_uncached", |b| {
        b.iter(|| {
            s.guard_uncached
                .verify(black_box(&s.token))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("guard_verify_cached", |b| {
        b.iter(|| {
            s.guard_cached
                .verify(black_box(&s.token))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("router/plain", |b| {
        b.iter(|| call(&s.plain, Some(&s.token)))
    });
    g.bench_function("router/layer_uncached", |b| {
        b.iter(|| call(&s.layer_uncached, Some(&s.token)))
    });
    g.bench_function("router/layer_cached", |b| {
        b.iter(|| call(&s.layer_cached, Some(&s.token)))
    });
    g.bench_function("reject/bad_signature", |b| {
        b.iter(|| call(&s.layer_uncached, Some(&s.bad_signature)))
    });
    g.bench_function("reject/no_header", |b| {
        b.iter(|| call(&s.layer_uncached, None))
    });
    g.bench_function("reject/unknown_kid", |b| {
        b.iter(|| call(&s.layer_uncached, Some(&s.unknown_kid)))
    });
    g.finish();
}

fn bench_threads(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("threads");
    for threads in [1usize, 2] {
        g.bench_function(format!("layer_cached_x{threads}"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(threads as u64);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        scope.spawn(|| {
                            for _ in 0..per {
                                black_box(call(&s.layer_cached, Some(&s.token)));
                            }
                        });
                    }
                });
                // The same number of requests, split over the threads: with
                // no contention, 2 threads take half the time of 1.
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let issuer = TestIssuer::new();
    let setups: Vec<Arc<Setup>> = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .map(|alg| Arc::new(setup(&issuer, alg)))
        .collect();
    for s in &setups {
        bench_alg(c, s);
    }
    bench_threads(c, &setups[0]);
}

criterion_group! {
    name = verify;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}

fn main() {
    verify();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

/// Reads criterion's estimates of this run and prints the ratios.
fn summary() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("criterion");
    let mean = |group: &str, id: &str| -> Option<f64> {
        let path = dir
            .join(group)
            .join(id.replace('/', "_"))
            .join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    println!("\n== tokenguard summary (median ns; ratios within this run)");
    for alg in ["RS256", "ES256", "EdDSA"] {
        let (Some(floor), Some(uncached), Some(plain), Some(layer), Some(cached)) = (
            mean(alg, "floor/jsonwebtoken_decode"),
            mean(alg, "guard_verify_uncached"),
            mean(alg, "router/plain"),
            mean(alg, "router/layer_uncached"),
            mean(alg, "router/layer_cached"),
        ) else {
            continue;
        };
        println!(
            "{alg}: floor {floor:.0} ns | guard.verify {uncached:.0} ns ({:.3}x floor) | layer (cache off) adds {:.0} ns = {:.3}x floor | cache hit adds {:.0} ns over the plain router ({plain:.0} ns)",
            uncached / floor,
            layer - plain,
            (layer - plain) / floor,
            cached - plain,
        );
        for reject in ["bad_signature", "no_header", "unknown_kid"] {
            if let Some(r) = mean(alg, &format!("reject/{reject}")) {
                println!(
                    "    reject/{reject}: {r:.0} ns ({:.3}x a verification through the layer)",
                    r / layer
                );
            }
        }
    }
    if let (Some(one), Some(two)) = (
        mean("threads", "layer_cached_x1"),
        mean("threads", "layer_cached_x2"),
    ) {
        println!(
            "threads: cached request, 2 threads vs 1: {:.2}x time per request",
            two / one
        );
    }
}
