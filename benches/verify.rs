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
//! `introspection/*`: an opaque token through the layer, introspected at a
//! loopback endpoint: `router/layer_cache_hit` (answered by the
//! introspection cache) against `router/plain`; `router/layer_miss` (cache
//! off: one introspection per request) against `http/round_trip`, one bare
//! `reqwest` POST of the same form to the same endpoint.
//!
//! `dpop/*`: a DPoP-bound ES256 token with a fresh ES256 proof per request:
//! `router/layer_cache_hit` (the token from the cache, the proof checked in
//! full) against `proof_signature_alone` (only the proof's signature
//! verified, with a prepared key); `router/layer_miss` with the token
//! cache off.
//!
//! `mcp/*`: a `tools/call` POST (token cache hit) through the guard's layer
//! alone and with `McpScopeLayer` reading the body and deciding.
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
use tokenguard::testing::DpopKey;
use tokenguard::testing::TestIssuer;
use tokenguard::{
    AccessTokenClaims, Algorithm, Claims, ClientAuth, DpopConfig, IntrospectionConfig,
    McpScopeLayer, MemoryReplayStore, TokenGuard,
};
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

/// An introspection endpoint on loopback that calls every token active.
async fn introspection_endpoint() -> String {
    let answer = serde_json::json!({
        "active": true,
        "aud": AUD,
        "sub": "u1",
        "scope": "read:invoices",
        "exp": tokenguard::NumericDate::now().as_secs() + 3600,
        "token_type": "Bearer",
    })
    .to_string();
    let app = Router::new().route(
        "/introspect",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], answer) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn bench_introspection(c: &mut Criterion, issuer: &TestIssuer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(introspection_endpoint());
    let config = || {
        IntrospectionConfig::new(ClientAuth::client_secret_basic("api", "secret")).endpoint(&url)
    };
    let cached = issuer
        .guard_builder(AUD)
        .introspection(config())
        .build()
        .unwrap();
    let uncached = issuer
        .guard_builder(AUD)
        .introspection(config().disable_cache())
        .build()
        .unwrap();
    let token = "2YotnFZFEjr1zCsicMWpAA-opaque-token-of-43-chars";
    let layer_cached = routes().layer(cached.layer());
    let layer_uncached = routes().layer(uncached.layer());
    let plain = plain_routes();
    let async_call = |router: &Router| {
        let status = rt.block_on(router.clone().oneshot(request(Some(token))));
        assert_eq!(status.unwrap().status(), http::StatusCode::OK);
    };
    // Fills the cache.
    async_call(&layer_cached);
    assert_eq!(call(&layer_cached, Some(token)), http::StatusCode::OK);

    let mut g = c.benchmark_group("introspection");
    g.bench_function("router/plain", |b| b.iter(|| call(&plain, Some(token))));
    g.bench_function("router/layer_cache_hit", |b| {
        b.iter(|| call(&layer_cached, Some(token)))
    });
    g.bench_function("router/layer_miss", |b| {
        b.iter(|| async_call(&layer_uncached))
    });
    let client = reqwest::Client::new();
    let form = format!("token={token}&token_type_hint=access_token");
    g.bench_function("http/round_trip", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = client
                    .post(&url)
                    .basic_auth("api", Some("secret"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.clone())
                    .send()
                    .await
                    .unwrap();
                black_box(res.bytes().await.unwrap())
            })
        })
    });
    g.finish();
}

fn bench_dpop(c: &mut Criterion, issuer: &TestIssuer) {
    const ORIGIN: &str = "https://api.example.com";
    let key = DpopKey::new();
    let token = issuer
        .token()
        .audience(AUD)
        .subject("u1")
        .dpop_bound(&key)
        .mint();
    let dpop = || {
        // Room for every proof of the run: the default store would fill up.
        DpopConfig::new(ORIGIN).replay_store(Arc::new(MemoryReplayStore::new(20_000_000)))
    };
    let cached = issuer.guard_builder(AUD).dpop(dpop()).build().unwrap();
    let uncached = issuer
        .guard_builder(AUD)
        .disable_token_cache()
        .dpop(dpop())
        .build()
        .unwrap();
    let layer_cached = routes().layer(cached.layer());
    let layer_uncached = routes().layer(uncached.layer());
    let url = format!("{ORIGIN}/me");
    let request = |proof: String| {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", proof)
            .body(Body::empty())
            .unwrap()
    };
    let send = |router: &Router, req: Request<Body>| {
        let status = router
            .clone()
            .oneshot(req)
            .now_or_never()
            .unwrap()
            .unwrap()
            .status();
        assert_eq!(status, http::StatusCode::OK);
    };
    send(&layer_cached, request(key.proof("GET", &url, &token)));

    // The proof's signature alone, with a key prepared once; fresh proofs
    // made outside the timing, as for the requests below.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk()).unwrap();
    let decoding_key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let split = |proof: String| {
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .unwrap();
        (input.to_owned(), signature)
    };

    let mut g = c.benchmark_group("dpop");
    g.bench_function("proof_signature_alone", |b| {
        b.iter_batched(
            || split(key.proof("GET", &url, &token)),
            |(input, signature)| {
                let verifier =
                    (provider.verifier_factory)(&Algorithm::ES256, &decoding_key).unwrap();
                verifier
                    .verify(black_box(input.as_bytes()), black_box(&signature))
                    .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    for (name, router) in [
        ("router/layer_cache_hit", &layer_cached),
        ("router/layer_miss", &layer_uncached),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || request(key.proof("GET", &url, &token)),
                |req| send(router, req),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_mcp(c: &mut Criterion, issuer: &TestIssuer) {
    let guard = issuer.guard(AUD);
    let token = issuer.token().audience(AUD).scope("read:invoices").mint();
    let endpoint = || Router::new().route("/mcp", axum::routing::post(|| async { "ok" }));
    let plain = endpoint().layer(guard.layer());
    let policy = McpScopeLayer::new()
        .tool("list_invoices", ["read:invoices"])
        .tool("create_invoice", ["write:invoices"]);
    let with_policy = endpoint().layer(policy).layer(guard.layer());
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_invoices","arguments":{"customer":"ACME","limit":50}}}"#;
    let post = |router: &Router| {
        let req = Request::post("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = router.clone().oneshot(req).now_or_never().unwrap().unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
    };
    let mut g = c.benchmark_group("mcp");
    g.bench_function("router/guard_only", |b| b.iter(|| post(&plain)));
    g.bench_function("router/guard_and_policy", |b| b.iter(|| post(&with_policy)));
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
    bench_introspection(c, &issuer);
    bench_dpop(c, &issuer);
    bench_mcp(c, &issuer);
}

criterion_group! {
    name = verify;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}

fn main() {
    // `INTERLEAVED_ONLY=1 cargo bench --bench verify`: the interleaved pass alone.
    if std::env::var_os("INTERLEAVED_ONLY").is_some() {
        interleaved();
        return;
    }
    verify();
    Criterion::default().configure_from_args().final_summary();
    summary();
    if std::env::args().skip(1).all(|a| a.starts_with('-')) {
        interleaved();
    }
}

/// The per-algorithm ratios again, measured in rotation: 60 rounds, each
/// timing a ~4 ms batch of every case in a rotated order, so that a change
/// in the speed of the (shared) machine between criterion's benchmarks
/// cannot skew a ratio. Prints the median per call over the rounds.
/// A named case of the interleaved pass.
type Case<'a> = (&'static str, Box<dyn Fn() + 'a>);

fn interleaved() {
    let issuer = TestIssuer::new();
    println!("\n== interleaved (median ns per call over 60 rounds; ratios to the floor)");
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let s = setup(&issuer, alg);
        let cases: [Case<'_>; 4] = [
            (
                "floor",
                Box::new(|| {
                    black_box(
                        jsonwebtoken::decode::<serde_json::Value>(
                            black_box(&s.token),
                            &s.decoding_key,
                            &s.validation,
                        )
                        .unwrap(),
                    );
                }),
            ),
            (
                "verify",
                Box::new(|| {
                    black_box(
                        s.guard_uncached
                            .verify(black_box(&s.token))
                            .now_or_never()
                            .unwrap()
                            .unwrap(),
                    );
                }),
            ),
            (
                "plain",
                Box::new(|| assert!(call(&s.plain, Some(&s.token)).is_success())),
            ),
            (
                "layer",
                Box::new(|| assert!(call(&s.layer_uncached, Some(&s.token)).is_success())),
            ),
        ];
        // Calls per batch: about 4 ms of each case.
        let batch: Vec<u32> = cases
            .iter()
            .map(|(_, f)| {
                let start = Instant::now();
                for _ in 0..20 {
                    f();
                }
                let per = start.elapsed().as_secs_f64() / 20.0;
                ((0.004 / per) as u32).max(1)
            })
            .collect();
        let mut samples = vec![Vec::new(); cases.len()];
        for round in 0..60 {
            for k in 0..cases.len() {
                let i = (round + k) % cases.len();
                let (_, f) = &cases[i];
                let start = Instant::now();
                for _ in 0..batch[i] {
                    f();
                }
                samples[i].push(start.elapsed().as_nanos() as f64 / f64::from(batch[i]));
            }
        }
        let median: Vec<f64> = samples
            .iter_mut()
            .map(|v| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            })
            .collect();
        let (floor, verify, plain, layer) = (median[0], median[1], median[2], median[3]);
        println!(
            "{alg:?}: floor {floor:.0} ns | guard.verify {verify:.0} ns = {:.3}x | layer (cache off) minus plain router {:.0} ns = {:.3}x floor",
            verify / floor,
            layer - plain,
            (layer - plain) / floor,
        );
    }
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
    if let (Some(plain), Some(hit), Some(miss), Some(trip)) = (
        mean("introspection", "router/plain"),
        mean("introspection", "router/layer_cache_hit"),
        mean("introspection", "router/layer_miss"),
        mean("introspection", "http/round_trip"),
    ) {
        println!(
            "introspection: cache hit adds {:.0} ns over the plain router ({plain:.0} ns) | a miss costs {miss:.0} ns = {:.2}x one loopback round trip ({trip:.0} ns)",
            hit - plain,
            miss / trip,
        );
    }
    if let (Some(alone), Some(hit), Some(miss)) = (
        mean("dpop", "proof_signature_alone"),
        mean("dpop", "router/layer_cache_hit"),
        mean("dpop", "router/layer_miss"),
    ) {
        println!(
            "dpop (ES256): token cache hit + proof {hit:.0} ns = {:.3}x the proof's signature alone ({alone:.0} ns) | full miss {miss:.0} ns = {:.3}x",
            hit / alone,
            miss / alone,
        );
    }
    if let (Some(guard), Some(policy)) = (
        mean("mcp", "router/guard_only"),
        mean("mcp", "router/guard_and_policy"),
    ) {
        println!(
            "mcp: McpScopeLayer adds {:.0} ns to a tools/call through the guard ({guard:.0} ns): {:.3}x",
            policy - guard,
            policy / guard,
        );
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
