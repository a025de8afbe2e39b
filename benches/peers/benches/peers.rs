//! tokenguard against other axum / tower JWT resource-server crates.
//!
//! One RS256 access token (minted by `tokenguard::testing::TestIssuer`: `typ:
//! at+jwt`, `iss`, `aud`, `exp`, `iat`, `scope`, `sub`, `client_id`, `jti`)
//! and one 2048-bit RSA key. Every contender is an axum 0.8 `Router` with the
//! same route (`GET /invoices`, a handler returning a static string) behind the
//! crate's own axum integration (huskarl-resource-server has none: an axum
//! `from_fn` middleware here), configured with static keys and the same
//! claim checks (`iss`, `aud`, `exp`). One request is built and sent through
//! `tower::ServiceExt::oneshot` per iteration, the same way for every
//! contender (see `Drive`).
//!
//! Also measured: the plain Router (no auth) as the baseline, and
//! `jsonwebtoken::decode` of the token with a prepared key (the floor: what
//! the signature check and claim parsing cost by themselves), once per
//! `jsonwebtoken` major version in use, since the peers use different ones;
//! for huskarl-resource-server, which uses no `jsonwebtoken`, its own RS256
//! signature check alone.
//!
//! Run: `cargo bench --manifest-path benches/peers/Cargo.toml`. At the end the
//! bench prints a markdown table of medians and ratios from this run.
//!
//! `JWT10_BACKEND=rust_crypto` makes jsonwebtoken 10 (axum-jwt-auth) use
//! RustCrypto, which is what axum-jwt-auth gets out of the box; by default
//! the bench installs aws-lc-rs, tokenguard's default, for a like-for-like
//! signature check.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use criterion::{Criterion, criterion_group};
use futures_util::FutureExt;
use http::{Request, StatusCode, header};
use serde::Deserialize;
use tokenguard::Algorithm;
use tokenguard::testing::TestIssuer;
use tower::ServiceExt;

const AUD: &str = "https://api.example.com";
const ISS: &str = tokenguard::testing::DEFAULT_TEST_ISSUER;

/// The claims the peers that hand typed claims to the app deserialize.
#[allow(dead_code)]
#[derive(Clone, Debug, Deserialize)]
struct PeerClaims {
    iss: String,
    sub: Option<String>,
    aud: serde_json::Value,
    exp: u64,
    iat: Option<u64>,
    scope: Option<String>,
    client_id: Option<String>,
    jti: Option<String>,
}

async fn handler() -> &'static str {
    "[]"
}

fn plain() -> Router {
    Router::new().route("/invoices", get(handler))
}

fn tokenguard_router(issuer: &TestIssuer, cache: bool) -> Router {
    let mut builder = issuer.guard_builder(AUD);
    if !cache {
        builder = builder.disable_token_cache();
    }
    let guard = builder.build().expect("tokenguard guard");
    plain().layer(guard.layer())
}

/// axum-jwt-auth: an extractor (`Claims<T>`) reading a `Decoder` from the
/// router state; `LocalDecoder` with the RSA public key and a jsonwebtoken 10
/// `Validation` for RS256 with `iss`, `aud`, and `exp`/`iss`/`aud` required.
fn axum_jwt_auth_router(issuer: &TestIssuer) -> Router {
    use axum_jwt_auth::{Claims, Decoder, LocalDecoder};
    let key = jsonwebtoken10::DecodingKey::from_rsa_pem(issuer.rsa_public_pem().as_bytes())
        .expect("RSA PEM (jsonwebtoken 10)");
    let mut validation = jsonwebtoken10::Validation::new(jsonwebtoken10::Algorithm::RS256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let decoder: Decoder<PeerClaims> = Arc::new(
        LocalDecoder::builder()
            .keys(vec![key])
            .validation(validation)
            .build()
            .expect("axum-jwt-auth decoder"),
    );
    Router::new()
        .route("/invoices", get(|_: Claims<PeerClaims>| async { "[]" }))
        .with_state(decoder)
}

/// tower-oauth2-resource-server: its tower layer, a static tenant with the
/// issuer's JWKS, claims validation `iss` + `exp` + `aud` (the static tenant
/// would check no `iss` unless told to).
fn tower_oauth2_router(issuer: &TestIssuer, rt: &tokio::runtime::Runtime) -> Router {
    use tower_oauth2_resource_server::server::OAuth2ResourceServer;
    use tower_oauth2_resource_server::tenant::TenantConfiguration;
    use tower_oauth2_resource_server::validation::ClaimsValidationSpec;
    let tenant = TenantConfiguration::static_builder(issuer.jwks().to_string())
        .audiences(&[AUD])
        .claims_validation(
            ClaimsValidationSpec::new()
                .iss(ISS)
                .exp(true)
                .aud(&vec![AUD.to_owned()]),
        )
        .build()
        .expect("tower-oauth2-resource-server tenant");
    let server = rt
        .block_on(
            OAuth2ResourceServer::<PeerClaims>::builder()
                .add_tenant(tenant)
                .build(),
        )
        .expect("tower-oauth2-resource-server");
    plain().layer(server.into_layer())
}

/// oauth-resource-server: its axum `AuthLayer` over an `OAuthValidator` seeded
/// with the issuer's JWKS (`initial_jwks`), `require_at_jwt` (the `typ` check
/// tokenguard makes by default), no required scope. Its `jwks_uri` points at
/// a closed loopback port: it is never fetched while the seeded key fits.
fn oauth_resource_server_router(issuer: &TestIssuer) -> Router {
    use oauth_resource_server::axum::AuthLayer;
    use oauth_resource_server::{KeyNaming, OAuthConfig, OAuthValidator};
    let resolved = OAuthConfig {
        enabled: true,
        issuer: ISS.into(),
        jwks_uri: Some("http://127.0.0.1:9/jwks".into()),
        audience: AUD.into(),
        resource: "http://127.0.0.1/invoices-api".into(),
        require_at_jwt: true,
        ..OAuthConfig::default()
    }
    .resolve(KeyNaming::Dotted("oauth"))
    .expect("oauth-resource-server config")
    .expect("enabled");
    let validator = OAuthValidator::builder(&resolved)
        .initial_jwks(&issuer.jwks().to_string())
        .build()
        .expect("oauth-resource-server validator");
    let layer = AuthLayer::builder()
        .oauth(Arc::new(validator))
        .build()
        .expect("oauth-resource-server layer");
    plain().layer(layer)
}

/// huskarl-resource-server: it has no tower layer, so its `Rfc9068Validator`
/// runs in an axum `from_fn_with_state` middleware that answers a failure
/// with the crate's own `Rejection` (status and `WWW-Authenticate`) and hands
/// the validated request to the handler in the extensions. Static keys: a
/// `JwsVerifierFactory` that turns the issuer's JWKS into a
/// `MultiKeyVerifier` once, at build; the validator checks `iss`, `aud`,
/// `exp` (and `typ`, `iat`, `sub`, `client_id`, RFC 9068 §2.2).
fn huskarl_router(issuer: &TestIssuer, rt: &tokio::runtime::Runtime) -> Router {
    use huskarl_resource_server::validator::rfc9068::Rfc9068Validator;
    let validator = rt
        .block_on(
            Rfc9068Validator::builder()
                .issuer(ISS)
                .audience(AUD)
                .jws_verifier_factory(HuskarlStaticKeys(huskarl_jwks(&issuer.jwks())))
                .build(),
        )
        .expect("huskarl-resource-server validator");
    let metadata = validator.validator_metadata(None);
    let state = Arc::new(HuskarlState {
        validator,
        metadata,
    });
    plain().layer(axum::middleware::from_fn_with_state(state, huskarl_auth))
}

fn huskarl_jwks(jwks: &serde_json::Value) -> huskarl_resource_server::core::jwk::PublicJwks {
    let jwks: huskarl_resource_server::core::jwk::Jwks =
        serde_json::from_value(jwks.clone()).expect("JWKS (huskarl)");
    jwks.into()
}

/// A key source that never fetches: the verifiers of a fixed JWKS.
struct HuskarlStaticKeys(huskarl_resource_server::core::jwk::PublicJwks);

impl huskarl_resource_server::core::crypto::verifier::JwsVerifierFactory for HuskarlStaticKeys {
    fn build(
        &self,
        _jwks_uri: Option<&huskarl_resource_server::core::EndpointUrl>,
        platform: Arc<dyn huskarl_resource_server::core::crypto::verifier::JwsVerifierPlatform>,
    ) -> huskarl_resource_server::core::platform::MaybeSendBoxFuture<
        'static,
        Result<
            Arc<dyn huskarl_resource_server::core::crypto::verifier::JwsVerifier>,
            huskarl_resource_server::core::Error,
        >,
    > {
        use huskarl_resource_server::core::crypto::verifier::{JwsVerifier, MultiKeyVerifier};
        let jwks = self.0.clone();
        Box::pin(async move {
            let keys = MultiKeyVerifier::from_jwks(&jwks, platform.as_ref()).await?;
            Ok(Arc::new(keys) as Arc<dyn JwsVerifier>)
        })
    }
}

struct HuskarlState {
    validator: huskarl_resource_server::validator::rfc9068::Rfc9068Validator,
    metadata: huskarl_resource_server::validator::metadata::ValidatorMetadata,
}

/// The public origin the API is called at: the validator takes the absolute
/// target URI (its docs: rebuilt from a configured base URL), read only for
/// DPoP's `htu`.
const HUSKARL_PUBLIC: &str = "http://127.0.0.1";

async fn huskarl_auth(
    axum::extract::State(state): axum::extract::State<Arc<HuskarlState>>,
    mut req: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{HUSKARL_PUBLIC}{path}").parse::<http::Uri>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let result = state
        .validator
        .validate_request(req.headers(), req.method(), &uri, None)
        .await;
    if let Some(rejection) = result.rejection(&state.metadata, None) {
        return rejection
            .apply(http::Response::builder())
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    if let Ok(Some(validated)) = result.outcome {
        req.extensions_mut().insert(Arc::new(validated));
    }
    next.run(req).await
}

/// How a request's future is driven: polled once (`now_or_never`) when every
/// contender's future completes without waiting, else on a current-thread
/// runtime (`block_on`) — the same for all contenders.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Drive {
    NowOrNever,
    BlockOn,
}

fn request(token: &str) -> Request<Body> {
    Request::get("/invoices")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn call(drive: Drive, rt: &tokio::runtime::Runtime, router: &Router, token: &str) -> StatusCode {
    let fut = router.clone().oneshot(request(token));
    let res = match drive {
        Drive::NowOrNever => fut.now_or_never().expect("future was not ready"),
        Drive::BlockOn => rt.block_on(fut),
    };
    res.unwrap().status()
}

struct Contender {
    id: &'static str,
    crypto: &'static str,
    router: Router,
}

fn benches(c: &mut Criterion) {
    let backend10 = std::env::var("JWT10_BACKEND").unwrap_or_else(|_| "aws_lc_rs".into());
    match backend10.as_str() {
        "rust_crypto" => jsonwebtoken10::crypto::rust_crypto::DEFAULT_PROVIDER.install_default(),
        _ => jsonwebtoken10::crypto::aws_lc::DEFAULT_PROVIDER.install_default(),
    }
    .expect("jsonwebtoken 10 provider");
    let jwt10: &'static str = if backend10 == "rust_crypto" {
        "jsonwebtoken 10 (RustCrypto)"
    } else {
        "jsonwebtoken 10 (aws-lc-rs)"
    };
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let started = std::time::SystemTime::now();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = TestIssuer::new();
    let token = issuer
        .token()
        .audience(AUD)
        .scope("read:invoices")
        .algorithm(Algorithm::RS256)
        .mint();
    let pem = issuer.rsa_public_pem();

    let contenders = vec![
        Contender {
            id: "baseline/plain_router",
            crypto: "-",
            router: plain(),
        },
        Contender {
            id: "tokenguard/cache_off",
            crypto: JWT11,
            router: tokenguard_router(&issuer, false),
        },
        Contender {
            id: "tokenguard/cache_on",
            crypto: JWT11,
            router: tokenguard_router(&issuer, true),
        },
        Contender {
            id: "axum-jwt-auth",
            crypto: jwt10,
            router: axum_jwt_auth_router(&issuer),
        },
        Contender {
            id: "tower-oauth2-resource-server",
            crypto: JWT11,
            router: tower_oauth2_router(&issuer, &rt),
        },
        Contender {
            id: "oauth-resource-server",
            crypto: JWT9,
            router: oauth_resource_server_router(&issuer),
        },
        Contender {
            id: "huskarl-resource-server",
            crypto: HUSKARL,
            router: huskarl_router(&issuer, &rt),
        },
    ];

    // Every contender must accept the token (and refuse a tampered one), and
    // the driving mode is chosen once for all of them.
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut drive = Drive::NowOrNever;
    for ct in &contenders {
        let res = ct.router.clone().oneshot(request(&token)).now_or_never();
        let status = match res {
            Some(r) => r.unwrap().status(),
            None => {
                drive = Drive::BlockOn;
                rt.block_on(ct.router.clone().oneshot(request(&token)))
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(status, StatusCode::OK, "{} refused the token", ct.id);
        if ct.id != "baseline/plain_router" {
            let status = rt
                .block_on(ct.router.clone().oneshot(request(&tampered)))
                .unwrap()
                .status();
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} accepted a bad signature",
                ct.id
            );
        }
    }
    println!(
        "token: {} bytes; every request driven with {drive:?}; jsonwebtoken 10 backend: {backend10}",
        token.len()
    );

    // The floors.
    let key11 = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut v11 = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v11.set_issuer(&[ISS]);
    v11.set_audience(&[AUD]);
    v11.set_required_spec_claims(&["exp", "iss", "aud"]);
    let key10 = jsonwebtoken10::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut v10 = jsonwebtoken10::Validation::new(jsonwebtoken10::Algorithm::RS256);
    v10.set_issuer(&[ISS]);
    v10.set_audience(&[AUD]);
    v10.set_required_spec_claims(&["exp", "iss", "aud"]);
    let key9 = jsonwebtoken9::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut v9 = jsonwebtoken9::Validation::new(jsonwebtoken9::Algorithm::RS256);
    v9.set_issuer(&[ISS]);
    v9.set_audience(&[AUD]);
    v9.set_required_spec_claims(&["exp", "iss", "aud"]);

    // huskarl's only native backend is RustCrypto: its own floor is its RS256
    // signature check alone (no claims), by the verifier its validator uses.
    let huskarl_key = {
        use huskarl_resource_server::core::crypto::verifier::JwsVerifierPlatform;
        let platform: Arc<dyn JwsVerifierPlatform> =
            huskarl_resource_server::DefaultJwsVerifierPlatform::default().into();
        let jwks = huskarl_jwks(&serde_json::json!({ "keys": [issuer.jwk(Algorithm::RS256)] }));
        rt.block_on(platform.create_verifier_from_jwk(jwks.keys[0].clone()))
            .expect("huskarl RS256 verifier")
    };
    let huskarl_kid = issuer.kid(Algorithm::RS256);
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
    };

    let mut cases: Vec<Case<'_>> = vec![
        Case {
            id: "floor/jsonwebtoken11_decode",
            crypto: JWT11,
            run: Box::new(|| {
                black_box(
                    jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key11, &v11)
                        .unwrap(),
                );
            }),
        },
        Case {
            id: "floor/jsonwebtoken10_decode",
            crypto: jwt10,
            run: Box::new(|| {
                black_box(
                    jsonwebtoken10::decode::<serde_json::Value>(black_box(&token), &key10, &v10)
                        .unwrap(),
                );
            }),
        },
        Case {
            id: "floor/jsonwebtoken9_decode",
            crypto: JWT9,
            run: Box::new(|| {
                black_box(
                    jsonwebtoken9::decode::<serde_json::Value>(black_box(&token), &key9, &v9)
                        .unwrap(),
                );
            }),
        },
        Case {
            id: "floor/huskarl_rs256_verify",
            crypto: HUSKARL,
            run: Box::new(|| {
                use huskarl_resource_server::core::crypto::verifier::JwsVerifier as _;
                let key_match =
                    huskarl_resource_server::core::crypto::verifier::KeyMatch::builder()
                        .alg("RS256")
                        .kid(&huskarl_kid)
                        .build();
                huskarl_key
                    .verify(
                        black_box(signing_input.as_bytes()),
                        black_box(&signature),
                        &key_match,
                    )
                    .now_or_never()
                    .expect("huskarl verify was not ready")
                    .unwrap();
            }),
        },
    ];
    for ct in &contenders {
        let (rt, token) = (&rt, &token);
        cases.push(Case {
            id: ct.id,
            crypto: ct.crypto,
            run: Box::new(move || {
                black_box(call(drive, rt, &ct.router, black_box(token)));
            }),
        });
    }

    let mut g = c.benchmark_group("peers");
    for case in &cases {
        g.bench_function(case.id, |b| b.iter(|| (case.run)()));
    }
    g.finish();

    let criterion_medians: Vec<Option<(f64, f64, f64)>> = cases
        .iter()
        .map(|c| criterion_median(c.id, started).map(|m| (m, m, m)))
        .collect();
    let interleaved = interleaved(&cases);
    print_table(
        "criterion medians (each contender measured in turn)",
        &cases,
        &criterion_medians,
        false,
    );
    print_table(
        "interleaved (all contenders in rotation; median and quartiles of 100 rounds)",
        &cases,
        &interleaved.into_iter().map(Some).collect::<Vec<_>>(),
        true,
    );
}

const JWT11: &str = "jsonwebtoken 11 (aws-lc-rs)";
const JWT9: &str = "jsonwebtoken 9 (ring)";
const HUSKARL: &str = "huskarl-crypto-native (RustCrypto `rsa` 0.10)";

/// One measured operation.
struct Case<'a> {
    id: &'static str,
    crypto: &'static str,
    run: Box<dyn Fn() + 'a>,
}

/// The shared machine drifts in speed over the seconds that separate two
/// criterion benchmarks. This pass measures every case in rotation: each
/// round times a ~5 ms batch of each case (in a rotated order), and the
/// result is the median over the rounds of the time per operation.
fn interleaved(cases: &[Case<'_>]) -> Vec<(f64, f64, f64)> {
    const ROUNDS: usize = 100;
    const BATCH: Duration = Duration::from_millis(5);
    let batches: Vec<u64> = cases
        .iter()
        .map(|c| {
            let start = Instant::now();
            for _ in 0..20 {
                (c.run)();
            }
            let per = start.elapsed() / 20;
            (BATCH.as_nanos() / per.as_nanos().max(1)).max(1) as u64
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for round in 0..ROUNDS {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let start = Instant::now();
            for _ in 0..batches[i] {
                (cases[i].run)();
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / batches[i] as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            (s[s.len() / 4], s[s.len() / 2], s[s.len() * 3 / 4])
        })
        .collect()
}

/// Criterion's median for `id`, if it was measured in this run.
fn criterion_median(id: &str, since: std::time::SystemTime) -> Option<f64> {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()?
        .join("criterion/peers")
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn print_table(
    title: &str,
    cases: &[Case<'_>],
    stats: &[Option<(f64, f64, f64)>],
    quartiles: bool,
) {
    let median = |id: &str| {
        cases
            .iter()
            .position(|c| c.id == id)
            .and_then(|i| stats[i])
            .map(|(_, m, _)| m)
    };
    let (Some(floor), Some(plain)) = (
        median("floor/jsonwebtoken11_decode"),
        median("baseline/plain_router"),
    ) else {
        return;
    };
    println!("\n== peers, {title}; floor = jsonwebtoken 11 decode\n");
    let q = if quartiles { " | quartiles" } else { "" };
    println!(
        "| contender | crypto | median{q} | × floor | auth cost (median − plain router) | auth cost × floor |"
    );
    let q = if quartiles { "---:|" } else { "" };
    println!("|---|---|---:|{q}---:|---:|---:|");
    for (case, s) in cases.iter().zip(stats) {
        let Some((lo, m, hi)) = *s else { continue };
        let routed = !case.id.starts_with("floor/") && case.id != "baseline/plain_router";
        let (cost, ratio) = if routed {
            (
                format!("{:.2} µs", (m - plain) / 1000.0),
                format!("{:.2}", (m - plain) / floor),
            )
        } else {
            ("-".into(), "-".into())
        };
        let q = if quartiles {
            format!(" | {:.2}–{:.2} µs", lo / 1000.0, hi / 1000.0)
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {:.2} µs{q} | {:.2} | {cost} | {ratio} |",
            case.id,
            case.crypto,
            m / 1000.0,
            m / floor
        );
    }
}

criterion_group! {
    name = peers;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}

fn main() {
    peers();
    Criterion::default().configure_from_args().final_summary();
}
