//! DPoP (RFC 9449) through real axum Routers: every check of a proof, the
//! binding of a token to its key, the two challenges (`DPoP` and `Bearer`),
//! server nonces, the replay store, and properties over arbitrary proofs.
//! Each test asserts the status and every `WWW-Authenticate` value exactly,
//! and `DPoP-Nonce` / `Retry-After` where they belong.
//!
//! Proofs are made either with the testing kit's [`DpopKey`] or with
//! [`ClientKey`] below (aws-lc-rs keys, RFC 7638 thumbprints computed here
//! with `sha2`), which can also drop header members and sign any bytes.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use tokenguard::testing::{DpopKey, ProofBuilder, TestIssuer};
use tokenguard::{
    AccessTokenClaims, Algorithm, AuthErrorKind, BuildError, Claims, DpopConfig, InvalidToken,
    MemoryReplayStore, NonceConfig, NumericDate, ReplayFuture, ReplayKey, ReplayStore,
    ReplayStoreError, RequireScope, TokenGuard, scopes,
};
use tower::ServiceExt;

/// The audience of the tokens.
const AUD: &str = "https://api.example.com";
/// The public URL the API is called at (`DpopConfig::new`).
const PUBLIC: &str = "https://api.example.com";
/// The public URI of `/invoices`.
const URL: &str = "https://api.example.com/invoices";
/// The default proof algorithms, as the `DPoP` challenge lists them.
const ALGS: &str = "ES256 ES384 EdDSA RS256 PS256";
/// A bare `Bearer` challenge.
const BEARER: &str = r#"Bearer realm="api""#;
/// The `sub` the test issuer puts in every token (the `/invoices` body).
const SUB: &str = "test-client";

// The descriptions of `src/error.rs`.
const MISSING: &str = "A DPoP proof is required";
const SEVERAL: &str = "More than one DPoP proof";
const MALFORMED: &str = "The DPoP proof is malformed";
const TOO_LARGE: &str = "The DPoP proof is too large";
const WRONG_TYPE: &str = "The DPoP proof is not typed dpop+jwt";
const UNSUPPORTED_ALG: &str = "The DPoP proof algorithm is not accepted";
const PRIVATE_KEY: &str = "The DPoP proof key holds private key material";
const INVALID_KEY: &str = "The DPoP proof key is invalid";
const BAD_SIGNATURE: &str = "The DPoP proof signature is invalid";
const WRONG_METHOD: &str = "The DPoP proof is for another HTTP method";
const WRONG_URI: &str = "The DPoP proof is for another URI";
const FUTURE: &str = "The DPoP proof was issued in the future";
const TOO_OLD: &str = "The DPoP proof is too old";
const INVALID_JTI: &str = "The DPoP proof has no valid jti";
const WRONG_ATH: &str = "The DPoP proof is for another access token";
const REPLAYED: &str = "The DPoP proof was used before";
const NOT_BOUND: &str = "The access token is not bound to a DPoP key";
const KEY_MISMATCH: &str = "The access token is bound to another key";
const DPOP_REQUIRED: &str = "The access token must be presented with a DPoP proof";
const SENDER_CONSTRAINED: &str =
    "The access token is bound to a key and cannot be used as a bearer token";
const INVALID_CLAIM: &str = "The access token has an invalid claim";
const TOKEN_EXPIRED: &str = "The access token expired";
const TOKEN_TOO_LARGE: &str = "The access token is too large";
const USE_NONCE: &str = "Resend the request with the DPoP nonce given";
const INSUFFICIENT_SCOPE: &str = "The access token does not grant the required scope";

/// Every description an `invalid_dpop_proof` challenge may carry.
const PROOF_DESCRIPTIONS: &[&str] = &[
    MISSING,
    SEVERAL,
    MALFORMED,
    TOO_LARGE,
    WRONG_TYPE,
    UNSUPPORTED_ALG,
    PRIVATE_KEY,
    INVALID_KEY,
    BAD_SIGNATURE,
    WRONG_METHOD,
    WRONG_URI,
    FUTURE,
    TOO_OLD,
    INVALID_JTI,
    WRONG_ATH,
    REPLAYED,
];

scopes! {
    /// Read invoices.
    pub ReadInvoices = "read:invoices";
}

// ---------------------------------------------------------------------------
// Routers and requests.

/// `GET /invoices` (the token's `sub`), `POST /invoices`, `GET /~docs` and
/// `GET /scoped` (needs `read:invoices`), without any guard.
fn routes() -> Router {
    Router::new()
        .route(
            "/invoices",
            get(|Claims(c): Claims<AccessTokenClaims>| async move {
                c.sub.clone().unwrap_or_default()
            })
            .post(|| async { "created" }),
        )
        .route("/~docs", get(|| async { "docs" }))
        .route(
            "/scoped",
            get(|_: RequireScope<ReadInvoices>| async { "scoped" }),
        )
}

/// The routes behind `guard`'s layer, mounted on the outer router.
fn app(guard: &TokenGuard) -> Router {
    routes().layer(guard.layer())
}

/// A guard trusting `issuer` with DPoP configured by `config`.
fn dpop_guard(issuer: &TestIssuer, config: DpopConfig) -> TokenGuard {
    issuer.guard_builder(AUD).dpop(config).build().unwrap()
}

/// A request with an optional `Authorization` value and the given `DPoP`
/// header values (one header each).
fn request(
    method: &str,
    path: &str,
    authorization: Option<&str>,
    proofs: &[&str],
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    for proof in proofs {
        req = req.header("dpop", *proof);
    }
    req.body(Body::empty()).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

/// `method path` with `Authorization: DPoP <token>` and one `DPoP: <proof>`.
async fn dpop_call(app: &Router, method: &str, path: &str, token: &str, proof: &str) -> Response {
    send(
        app,
        request(method, path, Some(&format!("DPoP {token}")), &[proof]),
    )
    .await
}

/// `GET /invoices` with `Authorization: DPoP <token>` and `DPoP: <proof>`.
async fn dpop_get(app: &Router, token: &str, proof: &str) -> Response {
    dpop_call(app, "GET", "/invoices", token, proof).await
}

/// `GET /invoices` with `Authorization: Bearer <token>` (and no proof).
async fn bearer_get(app: &Router, token: &str) -> Response {
    send(
        app,
        request("GET", "/invoices", Some(&format!("Bearer {token}")), &[]),
    )
    .await
}

async fn body(res: Response) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

// ---------------------------------------------------------------------------
// Challenges and assertions.

/// Every `WWW-Authenticate` value, in order.
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

/// `DPoP realm="api", algs="…"`.
fn dpop_bare(algs: &str) -> String {
    format!(r#"DPoP realm="api", algs="{algs}""#)
}

/// A `DPoP` challenge carrying an error, with the default `algs`.
fn dpop_error(error: &str, description: &str) -> String {
    dpop_error_algs(error, description, ALGS)
}

fn dpop_error_algs(error: &str, description: &str, algs: &str) -> String {
    format!(
        r#"DPoP realm="api", error="{error}", error_description="{description}", algs="{algs}""#
    )
}

/// A `Bearer` challenge carrying an error.
fn bearer_error(error: &str, description: &str) -> String {
    format!(r#"Bearer realm="api", error="{error}", error_description="{description}""#)
}

/// A refusal: this status, exactly these challenges, `Cache-Control: no-store`.
#[track_caller]
fn assert_refused(res: &Response, status: StatusCode, expected: &[&str]) {
    assert_eq!(res.status(), status, "challenges: {:?}", challenges(res));
    assert_eq!(challenges(res), expected);
    assert_eq!(
        header_value(res, "cache-control").as_deref(),
        Some("no-store")
    );
}

/// 401 `invalid_dpop_proof` with this description on the `DPoP` challenge,
/// then a bare `Bearer` one; no nonce.
#[track_caller]
fn assert_proof_refused(res: &Response, description: &str) {
    assert_refused(
        res,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_dpop_proof", description), BEARER],
    );
    assert_eq!(header_value(res, "dpop-nonce"), None);
}

/// 401 `invalid_token` with this description on the `DPoP` challenge (the
/// token came with the `DPoP` scheme), then a bare `Bearer` one.
#[track_caller]
fn assert_dpop_token_refused(res: &Response, description: &str) {
    assert_refused(
        res,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_token", description), BEARER],
    );
}

/// 401 `use_dpop_nonce` with a `DPoP-Nonce`, which is returned.
#[track_caller]
fn assert_use_nonce(res: &Response) -> String {
    assert_refused(
        res,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("use_dpop_nonce", USE_NONCE), BEARER],
    );
    let nonce = header_value(res, "dpop-nonce").expect("a DPoP-Nonce header");
    assert!(!nonce.is_empty());
    nonce
}

#[track_caller]
fn assert_ok(res: &Response) {
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "challenges: {:?}",
        challenges(res)
    );
    assert!(challenges(res).is_empty());
}

// ---------------------------------------------------------------------------
// Fixtures.

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url(SHA-256(`data`)), computed with `sha2`.
fn sha256_b64(data: impl AsRef<[u8]>) -> String {
    b64(sha2::Sha256::digest(data.as_ref()))
}

fn now() -> i64 {
    NumericDate::now().as_secs()
}

fn random_jti() -> String {
    let mut jti = [0u8; 16];
    SystemRandom::new().fill(&mut jti).unwrap();
    b64(jti)
}

/// The issuer of every test: one set of keys (its RSA key is slow to make),
/// while each test builds its own guards, caches and replay stores.
fn issuer() -> TestIssuer {
    static ISSUER: LazyLock<TestIssuer> = LazyLock::new(TestIssuer::new);
    ISSUER.clone()
}

/// An issuer, a DPoP guard and its router, a client key and a token bound to it.
struct Fixture {
    issuer: TestIssuer,
    guard: TokenGuard,
    app: Router,
    key: DpopKey,
    token: String,
}

impl Fixture {
    /// DPoP with every default.
    fn new() -> Self {
        Self::with(DpopConfig::new(PUBLIC))
    }

    fn with(config: DpopConfig) -> Self {
        let issuer = issuer();
        let guard = dpop_guard(&issuer, config);
        let key = DpopKey::new();
        let token = issuer.token().audience(AUD).dpop_bound(&key).mint();
        Self {
            app: app(&guard),
            issuer,
            guard,
            key,
            token,
        }
    }

    /// A proof for `GET /invoices` to adjust.
    fn builder(&self) -> ProofBuilder {
        self.key.proof_builder("GET", URL, &self.token)
    }

    /// A valid proof for `GET /invoices`.
    fn proof(&self) -> String {
        self.key.proof("GET", URL, &self.token)
    }

    /// `GET /invoices` with this fixture's token and `proof`.
    async fn get(&self, proof: &str) -> Response {
        dpop_get(&self.app, &self.token, proof).await
    }

    /// A token bound to the key with this thumbprint.
    fn token_bound_to(&self, jkt: &str) -> String {
        self.issuer
            .token()
            .audience(AUD)
            .claim("cnf", json!({ "jkt": jkt }))
            .mint()
    }
}

/// A client key made here (not the testing kit's), for every default proof
/// algorithm, that signs any header and claims it is given.
enum Secret {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

struct ClientKey {
    secret: Secret,
    alg: &'static str,
}

impl ClientKey {
    fn new(alg: &'static str) -> Self {
        let secret = match alg {
            "ES256" => {
                Secret::P256(EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
            }
            "ES384" => {
                Secret::P384(EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap())
            }
            "EdDSA" => Secret::Ed25519(Ed25519KeyPair::generate().unwrap()),
            "RS256" | "PS256" => Secret::Rsa(
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
            ),
            other => panic!("no client key for {other}"),
        };
        Self { secret, alg }
    }

    /// The public JWK.
    fn jwk(&self) -> Value {
        let ec = |k: &EcdsaKeyPair, crv: &str, len: usize| {
            let p = k.public_key().as_ref();
            json!({"kty": "EC", "crv": crv, "x": b64(&p[1..1 + len]), "y": b64(&p[1 + len..])})
        };
        match &self.secret {
            Secret::P256(k) => ec(k, "P-256", 32),
            Secret::P384(k) => ec(k, "P-384", 48),
            Secret::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            Secret::Rsa(k) => json!({
                "kty": "RSA",
                "n": b64(k.public_key().modulus().big_endian_without_leading_zero()),
                "e": b64(k.public_key().exponent().big_endian_without_leading_zero()),
            }),
        }
    }

    /// RFC 7638 §3.2: the required members in lexicographic order, no
    /// whitespace, SHA-256, base64url.
    fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let m = |name: &str| jwk[name].as_str().unwrap().to_owned();
        let canonical = match m("kty").as_str() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                m("crv"),
                m("x"),
                m("y")
            ),
            "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv"), m("x")),
            _ => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e"), m("n")),
        };
        sha256_b64(canonical)
    }

    /// `typ`, `alg` and `jwk`.
    fn header(&self) -> Map<String, Value> {
        Map::from_iter([
            ("typ".to_owned(), json!("dpop+jwt")),
            ("alg".to_owned(), json!(self.alg)),
            ("jwk".to_owned(), self.jwk()),
        ])
    }

    /// Signs `input` with this key's algorithm.
    fn signature(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.secret {
            Secret::P256(k) | Secret::P384(k) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            Secret::Ed25519(k) => k.sign(input).as_ref().to_vec(),
            Secret::Rsa(k) => {
                let padding: &'static dyn sig::RsaEncoding = if self.alg == "PS256" {
                    &sig::RSA_PSS_SHA256
                } else {
                    &sig::RSA_PKCS1_SHA256
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, input, &mut out).unwrap();
                out
            }
        }
    }

    /// A compact JWS of these exact header and claims bytes.
    fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature = self.signature(input.as_bytes());
        format!("{input}.{}", b64(signature))
    }

    fn sign(&self, header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
        self.sign_raw(
            &serde_json::to_string(header).unwrap(),
            &serde_json::to_string(claims).unwrap(),
        )
    }

    /// A valid proof for `method url` presenting `token`.
    fn proof(&self, method: &str, url: &str, token: &str) -> String {
        self.sign(&self.header(), &claims(method, url, token, now()))
    }
}

/// The claims of a valid proof, issued at `iat`.
fn claims(method: &str, url: &str, token: &str, iat: i64) -> Map<String, Value> {
    Map::from_iter([
        ("jti".to_owned(), json!(random_jti())),
        ("htm".to_owned(), json!(method)),
        ("htu".to_owned(), json!(url)),
        ("iat".to_owned(), json!(iat)),
        ("ath".to_owned(), json!(sha256_b64(token))),
    ])
}

// ---------------------------------------------------------------------------
// 1. Accepted proofs.

/// A bound token with a fresh proof for the request's method and URI is let
/// through to the handler, on GET and on POST (`htm` is the method), with no
/// challenge and no nonce.
#[tokio::test]
async fn valid_proofs_are_accepted_on_get_and_post() {
    let f = Fixture::new();
    let res = f.get(&f.proof()).await;
    assert_ok(&res);
    assert_eq!(header_value(&res, "dpop-nonce"), None);
    assert_eq!(body(res).await, SUB);

    let proof = f.key.proof("POST", URL, &f.token);
    let res = dpop_call(&f.app, "POST", "/invoices", &f.token, &proof).await;
    assert_ok(&res);
    assert_eq!(body(res).await, "created");
}

/// The scheme name is case-insensitive (RFC 9110 §11.1): `dpop` works too.
#[tokio::test]
async fn the_dpop_scheme_is_case_insensitive() {
    let f = Fixture::new();
    for scheme in ["dpop", "DPOP", "DpOp"] {
        let auth = format!("{scheme} {}", f.token);
        let res = send(
            &f.app,
            request("GET", "/invoices", Some(&auth), &[&f.proof()]),
        )
        .await;
        assert_ok(&res);
    }
}

/// The verified-token cache does not skip the proof: the same token is
/// accepted again and again with new proofs, and on the third request, which
/// the cache answers, a bad proof (and then a missing one) is refused; later
/// good proofs pass again.
#[tokio::test]
async fn cache_hits_still_check_the_proof() {
    let f = Fixture::new();
    for i in 0..8 {
        match i {
            2 => {
                let wrong = f.key.proof("POST", URL, &f.token);
                assert_proof_refused(&f.get(&wrong).await, WRONG_METHOD);
                let other = DpopKey::new().proof("GET", URL, &f.token);
                assert_dpop_token_refused(&f.get(&other).await, KEY_MISMATCH);
                let auth = format!("DPoP {}", f.token);
                let res = send(&f.app, request("GET", "/invoices", Some(&auth), &[])).await;
                assert_proof_refused(&res, MISSING);
            }
            _ => assert_ok(&f.get(&f.proof()).await),
        }
    }
}

/// Proofs of every default algorithm are accepted (ES256, ES384, EdDSA,
/// RS256, PS256), each by a key whose RFC 7638 thumbprint is computed here,
/// independently of the crate.
#[tokio::test]
async fn proofs_of_every_default_algorithm_are_accepted() {
    let f = Fixture::new();
    for alg in ["ES256", "ES384", "EdDSA", "RS256", "PS256"] {
        let key = ClientKey::new(alg);
        let token = f.token_bound_to(&key.thumbprint());
        for _ in 0..2 {
            let res = dpop_get(&f.app, &token, &key.proof("GET", URL, &token)).await;
            assert_ok(&res);
        }
    }
}

/// The testing kit's thumbprint (`cnf.jkt` of `dpop_bound`) is RFC 7638's.
#[test]
fn the_kit_thumbprint_is_rfc7638() {
    let key = DpopKey::new();
    let jwk = key.jwk();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    assert_eq!(key.thumbprint(), sha256_b64(canonical));
}

// ---------------------------------------------------------------------------
// 2. One failing case per check.

/// The `DPoP` scheme without any `DPoP` header: 401 `invalid_dpop_proof`.
#[tokio::test]
async fn dpop_scheme_without_a_proof_is_refused() {
    let f = Fixture::new();
    let auth = format!("DPoP {}", f.token);
    let res = send(&f.app, request("GET", "/invoices", Some(&auth), &[])).await;
    assert_proof_refused(&res, MISSING);
}

/// Two `DPoP` headers, even two valid proofs, are refused (RFC 9449 §4.3
/// step 1: exactly one).
#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let f = Fixture::new();
    let auth = format!("DPoP {}", f.token);
    let (a, b) = (f.proof(), f.proof());
    let res = send(&f.app, request("GET", "/invoices", Some(&auth), &[&a, &b])).await;
    assert_proof_refused(&res, SEVERAL);
    // Neither was consumed: each alone is accepted afterwards.
    assert_ok(&f.get(&a).await);
    assert_ok(&f.get(&b).await);
}

/// Two proofs joined by a comma in one header (how a proxy merges two
/// headers) are refused as several proofs.
#[tokio::test]
async fn two_proofs_in_one_header_are_refused() {
    let f = Fixture::new();
    for joined in [
        format!("{}, {}", f.proof(), f.proof()),
        format!("{},{}", f.proof(), f.proof()),
    ] {
        assert_proof_refused(&f.get(&joined).await, SEVERAL);
    }
}

/// A `DPoP` header that is not a compact JWS with a JSON object header is
/// malformed: too few or too many parts, empty parts, bad base64url, a
/// header that is not JSON, or JSON but not an object.
#[tokio::test]
async fn proofs_that_are_not_a_jws_are_malformed() {
    let f = Fixture::new();
    let valid = f.proof();
    let parts: Vec<&str> = valid.split('.').collect();
    let claims = parts[1];
    let cases = [
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{valid}.x"),
        "..".to_owned(),
        format!(".{claims}.{}", parts[2]),
        format!("{}.{claims}.", parts[0]),
        format!("{}!.{claims}.{}", parts[0], parts[2]),
        format!("{}=.{claims}.{}", parts[0], parts[2]),
        format!(
            "{}.{claims}.{}",
            STANDARD.encode(br#"{"typ":"dpop+jwt","a":"??>"}"#),
            parts[2]
        ),
        format!("{}.{claims}.{}", b64("not json"), parts[2]),
        format!("{}.{claims}.{}", b64("[1, 2]"), parts[2]),
        format!("{}.{claims}.{}", b64(r#"{"typ": "dpop+jwt""#), parts[2]),
        format!("{}.{claims}.{}", b64([b'{', 0xff, b'}']), parts[2]),
    ];
    for proof in &cases {
        assert_proof_refused(&f.get(proof).await, MALFORMED);
    }
}

/// A `DPoP` header value that is not visible ASCII is malformed.
#[tokio::test]
async fn a_non_ascii_proof_header_is_malformed() {
    let f = Fixture::new();
    let mut req = request("GET", "/invoices", Some(&format!("DPoP {}", f.token)), &[]);
    let mut bytes = f.proof().into_bytes();
    bytes.insert(10, 0xe9);
    req.headers_mut()
        .insert("dpop", HeaderValue::from_bytes(&bytes).unwrap());
    assert_proof_refused(&send(&f.app, req).await, MALFORMED);
}

/// A proof over 8 KiB is refused before it is parsed, whether a claim or a
/// header member makes it large, or it is not even a JWS.
#[tokio::test]
async fn oversized_proofs_are_refused() {
    let f = Fixture::new();
    let cases = [
        f.builder().claim("pad", "x".repeat(9000)).sign(),
        f.builder().header("pad", "x".repeat(9000)).sign(),
        "a".repeat(8 * 1024 + 1),
    ];
    for proof in &cases {
        assert!(proof.len() > 8 * 1024);
        assert_proof_refused(&f.get(proof).await, TOO_LARGE);
    }
}

/// `typ` must be `dpop+jwt`: `JWT`, `at+jwt`, `application/jwt`, `dpop+jwt`
/// with a parameter or a space, and an empty `typ` are refused.
#[tokio::test]
async fn a_typ_other_than_dpop_jwt_is_refused() {
    let f = Fixture::new();
    for typ in [
        "JWT",
        "at+jwt",
        "application/at+jwt",
        "application/jwt",
        "dpop+jwt ",
        "dpop+jwt;v=1",
        "application/dpop+jwtx",
        "xapplication/dpop+jwt",
        "",
    ] {
        let proof = f.builder().header("typ", typ).sign();
        assert_proof_refused(&f.get(&proof).await, WRONG_TYPE);
    }
}

/// A proof without `typ`, or with a `typ` that is not a string, is refused
/// (as malformed: a required header member is missing or of the wrong type).
#[tokio::test]
async fn a_missing_or_non_string_typ_is_refused() {
    let f = Fixture::new();
    let key = ClientKey::new("ES256");
    let token = f.token_bound_to(&key.thumbprint());
    let mut header = key.header();
    header.remove("typ");
    let proof = key.sign(&header, &claims("GET", URL, &token, now()));
    assert_proof_refused(&dpop_get(&f.app, &token, &proof).await, MALFORMED);
    let proof = f.builder().header("typ", 1).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
    let proof = f.builder().header("typ", Value::Null).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
}

/// `typ` compares as a media type: case-insensitively, with or without the
/// `application/` prefix.
#[tokio::test]
async fn typ_application_dpop_jwt_is_accepted() {
    let f = Fixture::new();
    for typ in ["application/dpop+jwt", "DPoP+JWT", "Application/DPOP+jwt"] {
        let proof = f.builder().header("typ", typ).sign();
        assert_ok(&f.get(&proof).await);
    }
}

/// `alg` `none`, HMAC algorithms, unknown and lower-cased names are refused.
#[tokio::test]
async fn unsigned_and_symmetric_algorithms_are_refused() {
    let f = Fixture::new();
    for alg in ["none", "HS256", "HS384", "HS512", "es256", "ES512", ""] {
        let proof = f.builder().header("alg", alg).sign();
        assert_proof_refused(&f.get(&proof).await, UNSUPPORTED_ALG);
    }
}

/// With `.algorithms([ES384])`, an ES256 proof is refused and the challenge
/// lists only `ES384`; an ES384 proof is accepted.
#[tokio::test]
async fn algorithms_outside_the_allow_list_are_refused() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).algorithms([Algorithm::ES384]));
    let res = f.get(&f.proof()).await;
    assert_refused(
        &res,
        StatusCode::UNAUTHORIZED,
        &[
            &dpop_error_algs("invalid_dpop_proof", UNSUPPORTED_ALG, "ES384"),
            BEARER,
        ],
    );
    let key = ClientKey::new("ES384");
    let token = f.token_bound_to(&key.thumbprint());
    assert_ok(&dpop_get(&f.app, &token, &key.proof("GET", URL, &token)).await);
    // The missing-token challenge lists the configured algorithms too.
    let res = send(&f.app, request("GET", "/invoices", None, &[])).await;
    assert_refused(
        &res,
        StatusCode::UNAUTHORIZED,
        &[BEARER, &dpop_bare("ES384")],
    );
}

/// A DPoP configuration that cannot work does not build: HMAC or no proof
/// algorithms, a public URL that is relative, not http(s), or has a query
/// or fragment; a nonce secret shorter than 32 bytes is refused.
#[test]
fn unusable_dpop_configurations_do_not_build() {
    let issuer = issuer();
    let build = |config: DpopConfig| issuer.guard_builder(AUD).dpop(config).build();
    for config in [
        DpopConfig::new(PUBLIC).algorithms([Algorithm::HS256]),
        DpopConfig::new(PUBLIC).algorithms([Algorithm::ES256, Algorithm::HS512]),
        DpopConfig::new(PUBLIC).algorithms([]),
        DpopConfig::new("/invoices"),
        DpopConfig::new("ftp://api.example.com"),
        DpopConfig::new("https://api.example.com/?x=1"),
        DpopConfig::new("https://api.example.com/#f"),
    ] {
        assert!(
            matches!(build(config.clone()), Err(BuildError::InvalidDpopConfig(_))),
            "{config:?}"
        );
    }
    assert!(NonceConfig::new(vec![7u8; 31]).is_err());
    assert!(NonceConfig::new(vec![7u8; 32]).is_ok());
}

/// A proof whose header has no `jwk`, or a `jwk` that is not an object, is
/// refused as malformed.
#[tokio::test]
async fn a_missing_jwk_is_refused() {
    let f = Fixture::new();
    let key = ClientKey::new("ES256");
    let token = f.token_bound_to(&key.thumbprint());
    let mut header = key.header();
    header.remove("jwk");
    let proof = key.sign(&header, &claims("GET", URL, &token, now()));
    assert_proof_refused(&dpop_get(&f.app, &token, &proof).await, MALFORMED);
    for jwk in [Value::Null, json!("key"), json!([key.jwk()])] {
        let mut header = key.header();
        header.insert("jwk".into(), jwk);
        let proof = key.sign(&header, &claims("GET", URL, &token, now()));
        assert_proof_refused(&dpop_get(&f.app, &token, &proof).await, MALFORMED);
    }
}

/// A `jwk` holding a private member (a real-looking `d`, or an RSA prime) is
/// refused, even though the public part is the signer's.
#[tokio::test]
async fn a_jwk_with_private_key_material_is_refused() {
    let f = Fixture::new();
    let mut d = [0u8; 32];
    SystemRandom::new().fill(&mut d).unwrap();
    for (member, value) in [("d", b64(d)), ("p", b64([3u8; 128]))] {
        let mut jwk = f.key.jwk();
        jwk[member] = json!(value);
        let proof = f.builder().header("jwk", jwk).sign();
        assert_proof_refused(&f.get(&proof).await, PRIVATE_KEY);
    }
}

/// A symmetric `jwk` (`kty: oct`) is refused: with its secret `k` as private
/// material, without it as an invalid key.
#[tokio::test]
async fn a_symmetric_jwk_is_refused() {
    let f = Fixture::new();
    let proof = f
        .builder()
        .header("jwk", json!({"kty": "oct", "k": b64([1u8; 32])}))
        .sign();
    assert_proof_refused(&f.get(&proof).await, PRIVATE_KEY);
    let proof = f.builder().header("jwk", json!({"kty": "oct"})).sign();
    assert_proof_refused(&f.get(&proof).await, INVALID_KEY);
}

/// A `jwk` that does not fit `alg` is refused: a P-256 key with `alg`
/// ES384, EdDSA or RS256; an incomplete EC key; an unknown curve.
#[tokio::test]
async fn a_jwk_that_does_not_fit_the_algorithm_is_refused() {
    let f = Fixture::new();
    for alg in ["ES384", "EdDSA", "RS256", "PS256"] {
        let proof = f.builder().header("alg", alg).sign();
        assert_proof_refused(&f.get(&proof).await, INVALID_KEY);
    }
    let mut no_y = f.key.jwk();
    no_y.as_object_mut().unwrap().remove("y");
    let mut other_curve = f.key.jwk();
    other_curve["crv"] = json!("P-521");
    for jwk in [no_y, other_curve] {
        let proof = f.builder().header("jwk", jwk).sign();
        assert_proof_refused(&f.get(&proof).await, INVALID_KEY);
    }
}

/// A `jwk` whose own `use` or `alg` does not fit is refused on a guard that
/// has not seen the key before.
#[tokio::test]
async fn a_jwk_whose_use_or_alg_does_not_fit_is_refused() {
    for (member, value) in [
        ("use", json!("enc")),
        ("alg", json!("ES384")),
        ("key_ops", json!(["sign"])),
    ] {
        let f = Fixture::new();
        let mut jwk = f.key.jwk();
        jwk[member] = value;
        let proof = f.builder().header("jwk", jwk).sign();
        assert_proof_refused(&f.get(&proof).await, INVALID_KEY);
    }
}

/// The same holds once the key has been seen (and parsed) before: whether a
/// `jwk` with `use: enc` is refused must not depend on the guard's key cache.
#[tokio::test]
async fn a_jwk_whose_use_does_not_fit_is_refused_after_the_key_was_cached() {
    let f = Fixture::new();
    assert_ok(&f.get(&f.proof()).await);
    for (member, value) in [
        ("use", json!("enc")),
        ("alg", json!("ES384")),
        ("key_ops", json!(["sign"])),
    ] {
        let mut jwk = f.key.jwk();
        jwk[member] = value;
        let proof = f.builder().header("jwk", jwk).sign();
        assert_proof_refused(&f.get(&proof).await, INVALID_KEY);
    }
}

/// A proof signed by key A whose header carries key B's `jwk` (and a token
/// bound to B) is refused: the signature does not verify with the `jwk`.
#[tokio::test]
async fn a_signature_by_another_key_than_the_jwk_is_refused() {
    let f = Fixture::new();
    let b = DpopKey::new();
    let token = f.token_bound_to(&b.thumbprint());
    let proof = f
        .key
        .proof_builder("GET", URL, &token)
        .header("jwk", b.jwk())
        .sign();
    assert_proof_refused(&dpop_get(&f.app, &token, &proof).await, BAD_SIGNATURE);
    // A signature with one bit flipped.
    let good = f.proof();
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    raw[5] ^= 1;
    let flipped = format!("{input}.{}", b64(raw));
    assert_proof_refused(&f.get(&flipped).await, BAD_SIGNATURE);
}

/// A `crit` header member is refused (none is understood), whatever it lists.
#[tokio::test]
async fn a_crit_header_is_refused() {
    let f = Fixture::new();
    for crit in [json!(["exp"]), json!([]), Value::Null] {
        let proof = f.builder().header("crit", crit).sign();
        assert_proof_refused(&f.get(&proof).await, MALFORMED);
    }
}

/// Duplicate members in the proof's header or claims are refused
/// (RFC 7515 §4: names must be unique).
#[tokio::test]
async fn duplicate_members_are_refused() {
    let f = Fixture::new();
    let key = ClientKey::new("ES256");
    let token = f.token_bound_to(&key.thumbprint());
    let jwk = key.jwk().to_string();
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"none","alg":"ES256","jwk":{jwk}}}"#);
    let claims_json = serde_json::to_string(&claims("GET", URL, &token, now())).unwrap();
    let proof = key.sign_raw(&header, &claims_json);
    assert_proof_refused(&dpop_get(&f.app, &token, &proof).await, MALFORMED);

    let header = serde_json::to_string(&key.header()).unwrap();
    let claims_json = format!(
        r#"{{"jti":"{}","htm":"POST","htm":"GET","htu":"{URL}","iat":{},"ath":"{}"}}"#,
        random_jti(),
        now(),
        sha256_b64(&token)
    );
    let proof = key.sign_raw(&header, &claims_json);
    assert_proof_refused(&dpop_get(&f.app, &token, &proof).await, MALFORMED);
}

/// `htm` must be the request's method, exactly: a POST proof on GET, `get`
/// in lower case, a GET proof on POST, and a non-string `htm` are refused.
#[tokio::test]
async fn htm_must_be_the_request_method() {
    let f = Fixture::new();
    for htm in ["POST", "get", "GET ", "HEAD"] {
        let proof = f.builder().claim("htm", htm).sign();
        assert_proof_refused(&f.get(&proof).await, WRONG_METHOD);
    }
    let proof = f.key.proof("GET", URL, &f.token);
    let res = dpop_call(&f.app, "POST", "/invoices", &f.token, &proof).await;
    assert_proof_refused(&res, WRONG_METHOD);
    let proof = f.builder().claim("htm", json!(["GET"])).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
}

/// `htu` must be the public URI of the request: another path, scheme, port,
/// host, a trailing slash, another case of the path, a relative URI, one
/// with user info, or no URI at all are refused.
#[tokio::test]
async fn htu_of_another_uri_is_refused() {
    let f = Fixture::new();
    for htu in [
        "https://api.example.com/invoices/1",
        "https://api.example.com/other",
        "https://api.example.com/invoices/",
        "https://api.example.com/INVOICES",
        "https://api.example.com//invoices",
        "http://api.example.com/invoices",
        "https://api.example.com:8443/invoices",
        "https://api.example.com:80/invoices",
        "https://evil.example.com/invoices",
        "https://api.example.com.evil.example/invoices",
        "https://user@api.example.com/invoices",
        "/invoices",
        "api.example.com/invoices",
        "",
    ] {
        let proof = f.builder().claim("htu", htu).sign();
        assert_proof_refused(&f.get(&proof).await, WRONG_URI);
    }
    let proof = f.builder().claim("htu", 1).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
}

/// Query and fragment are not part of `htu`'s comparison (RFC 9449 §4.3
/// step 9), in the proof nor in the request.
#[tokio::test]
async fn htu_query_and_fragment_are_ignored() {
    let f = Fixture::new();
    for htu in [
        "https://api.example.com/invoices?page=2",
        "https://api.example.com/invoices#top",
        "https://api.example.com/invoices?a=1&b=2#x",
    ] {
        let proof = f.builder().claim("htu", htu).sign();
        assert_ok(&f.get(&proof).await);
    }
    let res = dpop_call(&f.app, "GET", "/invoices?page=3", &f.token, &f.proof()).await;
    assert_ok(&res);
}

/// `htu` is compared after syntax- and scheme-based normalization
/// (RFC 3986 §6.2.2–6.2.3): case of scheme and host, the default port, dot
/// segments, and percent-encoded unreserved characters.
#[tokio::test]
async fn htu_is_compared_after_normalization() {
    let f = Fixture::new();
    for htu in [
        "HTTPS://API.EXAMPLE.COM:443/invoices",
        "https://Api.Example.Com/invoices",
        "https://api.example.com/./invoices",
        "https://api.example.com/x/../invoices",
        "https://api.example.com/%69nvoices",
    ] {
        let proof = f.builder().claim("htu", htu).sign();
        assert_ok(&f.get(&proof).await);
    }
    for htu in [
        "https://api.example.com/~docs",
        "https://api.example.com/%7Edocs",
        "https://api.example.com/%7edocs",
    ] {
        let proof = f.key.proof("GET", htu, &f.token);
        let res = dpop_call(&f.app, "GET", "/~docs", &f.token, &proof).await;
        assert_ok(&res);
    }
}

/// `htu` is built from the configured public URL, never from `Host` or
/// `X-Forwarded-*`: a proof for the host the request claims is refused.
#[tokio::test]
async fn htu_comes_from_the_public_url_not_the_request_headers() {
    let f = Fixture::new();
    let forged = |proof: &str| {
        let mut req = request(
            "GET",
            "/invoices",
            Some(&format!("DPoP {}", f.token)),
            &[proof],
        );
        let h = req.headers_mut();
        h.insert(header::HOST, HeaderValue::from_static("evil.example"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        req
    };
    let proof = f.key.proof("GET", "http://evil.example/invoices", &f.token);
    assert_proof_refused(&send(&f.app, forged(&proof)).await, WRONG_URI);
    let proof = f
        .key
        .proof("GET", "https://evil.example/invoices", &f.token);
    assert_proof_refused(&send(&f.app, forged(&proof)).await, WRONG_URI);
    assert_ok(&send(&f.app, forged(&f.proof())).await);
}

/// The public URL's non-default port and path prefix are part of `htu`.
#[tokio::test]
async fn the_public_url_port_and_path_prefix_are_part_of_htu() {
    let f = Fixture::with(DpopConfig::new("https://Example.com:8443/api/"));
    let good = f
        .key
        .proof("GET", "https://example.com:8443/api/invoices", &f.token);
    assert_ok(&f.get(&good).await);
    for htu in [
        "https://example.com/api/invoices",
        "https://example.com:8443/invoices",
        "https://example.com:8443/api/api/invoices",
    ] {
        let proof = f.key.proof("GET", htu, &f.token);
        assert_proof_refused(&f.get(&proof).await, WRONG_URI);
    }
}

/// `iat` more than 60 s old is refused; 59 s old is accepted.
#[tokio::test]
async fn proofs_older_than_max_age_are_refused() {
    let f = Fixture::new();
    let proof = f.builder().claim("iat", now() - 61).sign();
    assert_proof_refused(&f.get(&proof).await, TOO_OLD);
    let proof = f.builder().claim("iat", now() - 3600).sign();
    assert_proof_refused(&f.get(&proof).await, TOO_OLD);
    let proof = f.builder().claim("iat", now() - 59).sign();
    assert_ok(&f.get(&proof).await);
}

/// `iat` 10 s in the future is refused; 3 s in the future (within the 5 s
/// clock skew) is accepted.
#[tokio::test]
async fn proofs_from_beyond_the_clock_skew_are_refused() {
    let f = Fixture::new();
    let proof = f.builder().claim("iat", now() + 10).sign();
    assert_proof_refused(&f.get(&proof).await, FUTURE);
    let proof = f.builder().claim("iat", now() + 3).sign();
    assert_ok(&f.get(&proof).await);
}

/// `max_age` and `clock_skew` set the window: 10 s and 0 s.
#[tokio::test]
async fn max_age_and_clock_skew_are_configurable() {
    let f = Fixture::with(
        DpopConfig::new(PUBLIC)
            .max_age(Duration::from_secs(10))
            .clock_skew(Duration::ZERO),
    );
    let proof = f.builder().claim("iat", now() - 15).sign();
    assert_proof_refused(&f.get(&proof).await, TOO_OLD);
    let proof = f.builder().claim("iat", now() + 3).sign();
    assert_proof_refused(&f.get(&proof).await, FUTURE);
    let proof = f.builder().claim("iat", now() - 5).sign();
    assert_ok(&f.get(&proof).await);
}

/// `iat` must be a non-negative number: a string, a negative number, `null`
/// or no `iat` at all is malformed. A fractional `iat` is a NumericDate.
#[tokio::test]
async fn iat_must_be_a_numeric_date() {
    let f = Fixture::new();
    let cases = [
        f.builder().claim("iat", now().to_string()).sign(),
        f.builder().claim("iat", -1).sign(),
        f.builder().claim("iat", Value::Null).sign(),
        f.builder().without_claim("iat").sign(),
    ];
    for proof in &cases {
        assert_proof_refused(&f.get(proof).await, MALFORMED);
    }
    let proof = f.builder().claim("iat", now() as f64 - 0.5).sign();
    assert_ok(&f.get(&proof).await);
}

/// `jti` must be 1 to 256 bytes: empty and 257 bytes are refused, 256 bytes
/// and one byte are accepted; a non-string `jti` is malformed.
#[tokio::test]
async fn jti_must_be_one_to_256_bytes() {
    let f = Fixture::new();
    for jti in [String::new(), "j".repeat(257), "é".repeat(129)] {
        let proof = f.builder().claim("jti", jti).sign();
        assert_proof_refused(&f.get(&proof).await, INVALID_JTI);
    }
    for jti in ["j".repeat(256), "k".to_owned()] {
        let proof = f.builder().claim("jti", jti).sign();
        assert_ok(&f.get(&proof).await);
    }
    let proof = f.builder().claim("jti", 7).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
}

/// A proof without `jti` is refused for its `jti` (`InvalidProof::InvalidJti`:
/// "`jti` is missing, empty or too long").
#[tokio::test]
async fn a_proof_without_jti_is_refused() {
    let f = Fixture::new();
    let proof = f.builder().without_claim("jti").sign();
    assert_proof_refused(&f.get(&proof).await, INVALID_JTI);
}

/// The exact same proof is accepted once: its replay is refused, every time.
#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let f = Fixture::new();
    let proof = f.proof();
    assert_ok(&f.get(&proof).await);
    for _ in 0..3 {
        assert_proof_refused(&f.get(&proof).await, REPLAYED);
    }
}

/// Replay is keyed by (key thumbprint, `jti`): a new proof by the same key
/// with a used `jti` is a replay; the same `jti` from another key is not.
#[tokio::test]
async fn replay_is_keyed_by_thumbprint_and_jti() {
    let f = Fixture::new();
    let first = f.builder().claim("jti", "shared-jti").sign();
    assert_ok(&f.get(&first).await);
    let again = f
        .builder()
        .claim("jti", "shared-jti")
        .claim("iat", now() - 1)
        .sign();
    assert_ne!(first, again);
    assert_proof_refused(&f.get(&again).await, REPLAYED);

    let b = DpopKey::new();
    let token_b = f.issuer.token().audience(AUD).dpop_bound(&b).mint();
    let other_key = b
        .proof_builder("GET", URL, &token_b)
        .claim("jti", "shared-jti")
        .sign();
    assert_ok(&dpop_get(&f.app, &token_b, &other_key).await);
}

/// A refused proof does not consume its `jti`: refused for its method, its
/// URI, its age, its token hash or its key, then a correct proof with the
/// same `jti` is accepted (the `jti` is recorded only after every other
/// check passed), and only once.
#[tokio::test]
async fn a_refused_proof_does_not_consume_its_jti() {
    let f = Fixture::new();
    let jti = "only-once";
    let with_jti = || f.builder().claim("jti", jti);
    assert_proof_refused(
        &f.get(&with_jti().claim("htm", "POST").sign()).await,
        WRONG_METHOD,
    );
    assert_proof_refused(
        &f.get(&with_jti().claim("htu", "https://api.example.com/x").sign())
            .await,
        WRONG_URI,
    );
    assert_proof_refused(
        &f.get(&with_jti().claim("iat", now() - 600).sign()).await,
        TOO_OLD,
    );
    assert_proof_refused(
        &f.get(&with_jti().without_claim("ath").sign()).await,
        WRONG_ATH,
    );
    // The same key's proof for a token bound to another key.
    let other = f.token_bound_to(&DpopKey::new().thumbprint());
    let mismatch = f
        .key
        .proof_builder("GET", URL, &other)
        .claim("jti", jti)
        .sign();
    assert_dpop_token_refused(&dpop_get(&f.app, &other, &mismatch).await, KEY_MISMATCH);

    assert_ok(&f.get(&with_jti().sign()).await);
    assert_proof_refused(&f.get(&with_jti().sign()).await, REPLAYED);
}

/// `ath` must be the hash of the presented token: missing, of another token,
/// the right hash in another encoding (padded or standard base64), or not a
/// string, the proof is refused.
#[tokio::test]
async fn ath_must_be_the_hash_of_the_access_token() {
    let f = Fixture::new();
    let digest = sha2::Sha256::digest(f.token.as_bytes());
    let other_token = f.issuer.token().audience(AUD).dpop_bound(&f.key).mint();
    let cases = [
        f.builder().without_claim("ath").sign(),
        f.builder().claim("ath", Value::Null).sign(),
        f.key.proof("GET", URL, &other_token),
        f.builder().claim("ath", URL_SAFE.encode(digest)).sign(),
        f.builder()
            .claim("ath", STANDARD.encode([0xfbu8; 32]))
            .sign(),
        f.builder().claim("ath", "").sign(),
    ];
    for proof in &cases {
        assert_proof_refused(&f.get(proof).await, WRONG_ATH);
    }
    let proof = f.builder().claim("ath", 5).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
    // And the other token with its own proof is fine.
    let proof = f.key.proof("GET", URL, &other_token);
    assert_ok(&dpop_get(&f.app, &other_token, &proof).await);
}

/// A token bound to key A with a valid proof by key B: 401 `invalid_token`
/// on the `DPoP` challenge (RFC 9449 §7.1: `cnf.jkt` is not the proof key's).
#[tokio::test]
async fn a_token_bound_to_another_key_is_refused() {
    let f = Fixture::new();
    let b = DpopKey::new();
    let proof = b.proof("GET", URL, &f.token);
    assert_dpop_token_refused(&f.get(&proof).await, KEY_MISMATCH);
}

/// A DPoP-bound token sent as a bearer token is refused (RFC 9449 §7.2),
/// with or without a proof, on every request (cache hits too): the `Bearer`
/// challenge carries the error and the `DPoP` one is offered.
#[tokio::test]
async fn a_bound_token_sent_as_bearer_is_refused() {
    let f = Fixture::new();
    let expected = [
        bearer_error("invalid_token", SENDER_CONSTRAINED),
        dpop_bare(ALGS),
    ];
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    for _ in 0..2 {
        assert_refused(
            &bearer_get(&f.app, &f.token).await,
            StatusCode::UNAUTHORIZED,
            &expected,
        );
        let auth = format!("Bearer {}", f.token);
        let res = send(
            &f.app,
            request("GET", "/invoices", Some(&auth), &[&f.proof()]),
        )
        .await;
        assert_refused(&res, StatusCode::UNAUTHORIZED, &expected);
    }
}

/// An unbound token with the `DPoP` scheme (and a valid proof) is refused:
/// it is not a DPoP token.
#[tokio::test]
async fn an_unbound_token_with_the_dpop_scheme_is_refused() {
    let f = Fixture::new();
    let plain = f.issuer.token().audience(AUD).mint();
    let proof = f.key.proof("GET", URL, &plain);
    assert_dpop_token_refused(&dpop_get(&f.app, &plain, &proof).await, NOT_BOUND);
    // `cnf` without `jkt` binds nothing: still not a DPoP token.
    let token = f
        .issuer
        .token()
        .audience(AUD)
        .claim("cnf", json!({}))
        .mint();
    let proof = f.key.proof("GET", URL, &token);
    assert_dpop_token_refused(&dpop_get(&f.app, &token, &proof).await, NOT_BOUND);
}

/// A `cnf.jkt` that is not a string is an invalid claim with the `DPoP`
/// scheme, and still a bound token as a bearer token.
#[tokio::test]
async fn cnf_jkt_must_be_a_string() {
    let f = Fixture::new();
    for jkt in [json!(42), Value::Null, json!([f.key.thumbprint()])] {
        let token = f
            .issuer
            .token()
            .audience(AUD)
            .claim("cnf", json!({ "jkt": jkt }))
            .mint();
        let proof = f.key.proof("GET", URL, &token);
        assert_dpop_token_refused(&dpop_get(&f.app, &token, &proof).await, INVALID_CLAIM);
        assert_refused(
            &bearer_get(&f.app, &token).await,
            StatusCode::UNAUTHORIZED,
            &[
                &bearer_error("invalid_token", SENDER_CONSTRAINED),
                &dpop_bare(ALGS),
            ],
        );
    }
}

/// A token bound by `cnf.jkt` and also to a certificate (`x5t#S256`) cannot
/// have its whole binding verified: refused even with a valid proof.
#[tokio::test]
async fn a_token_also_bound_to_a_certificate_is_refused() {
    let f = Fixture::new();
    let token = f
        .issuer
        .token()
        .audience(AUD)
        .claim(
            "cnf",
            json!({"jkt": f.key.thumbprint(), "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        )
        .mint();
    let proof = f.key.proof("GET", URL, &token);
    assert_dpop_token_refused(&dpop_get(&f.app, &token, &proof).await, SENDER_CONSTRAINED);
}

/// A token that fails verification with the `DPoP` scheme is refused on the
/// `DPoP` challenge, before its proof is looked at.
#[tokio::test]
async fn an_expired_token_with_the_dpop_scheme_errors_on_the_dpop_challenge() {
    let f = Fixture::new();
    let token = f
        .issuer
        .token()
        .audience(AUD)
        .dpop_bound(&f.key)
        .expired()
        .mint();
    let proof = f
        .key
        .proof_builder("GET", URL, &token)
        .claim("jti", "j-1")
        .sign();
    assert_dpop_token_refused(&dpop_get(&f.app, &token, &proof).await, TOKEN_EXPIRED);
    // Its proof's `jti` was not consumed.
    assert_ok(&f.get(&f.builder().claim("jti", "j-1").sign()).await);
}

/// A token too large, presented with the `DPoP` scheme, is refused on the
/// `DPoP` challenge: the error concerns the scheme the request used.
#[tokio::test]
async fn a_too_large_dpop_token_errors_on_the_dpop_challenge() {
    let f = Fixture::new();
    let auth = format!("DPoP {}", "a".repeat(9000));
    let res = send(
        &f.app,
        request("GET", "/invoices", Some(&auth), &[&f.proof()]),
    )
    .await;
    assert_refused(
        &res,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_token", TOKEN_TOO_LARGE), BEARER],
    );
}

// ---------------------------------------------------------------------------
// 3. Modes.

/// Without DPoP configured, `Authorization: DPoP …` is no credential: 401
/// with a bare `Bearer` challenge only.
#[tokio::test]
async fn without_dpop_the_dpop_scheme_is_not_a_credential() {
    let issuer = issuer();
    let app = app(&issuer.guard(AUD));
    let key = DpopKey::new();
    let token = issuer.token().audience(AUD).dpop_bound(&key).mint();
    let res = dpop_get(&app, &token, &key.proof("GET", URL, &token)).await;
    assert_refused(&res, StatusCode::UNAUTHORIZED, &[BEARER]);
}

/// Without DPoP configured, a bound token is refused as a bearer token, with
/// a `Bearer` challenge only; an unbound one is accepted.
#[tokio::test]
async fn without_dpop_bound_tokens_are_refused_as_bearer() {
    let issuer = issuer();
    let app = app(&issuer.guard(AUD));
    let token = issuer
        .token()
        .audience(AUD)
        .dpop_bound(&DpopKey::new())
        .mint();
    assert_refused(
        &bearer_get(&app, &token).await,
        StatusCode::UNAUTHORIZED,
        &[&bearer_error("invalid_token", SENDER_CONSTRAINED)],
    );
    let plain = issuer.token().audience(AUD).mint();
    assert_ok(&bearer_get(&app, &plain).await);
}

/// With DPoP on (not required), both schemes are offered: a request without
/// token gets both bare challenges, an unbound bearer token is accepted, a
/// bad bearer token's error is on the `Bearer` challenge.
#[tokio::test]
async fn with_dpop_and_bearer_both_challenges_are_offered() {
    let f = Fixture::new();
    let res = send(&f.app, request("GET", "/invoices", None, &[])).await;
    assert_refused(&res, StatusCode::UNAUTHORIZED, &[BEARER, &dpop_bare(ALGS)]);
    let plain = f.issuer.token().audience(AUD).mint();
    assert_ok(&bearer_get(&f.app, &plain).await);
    let expired = f.issuer.token().audience(AUD).expired().mint();
    assert_refused(
        &bearer_get(&f.app, &expired).await,
        StatusCode::UNAUTHORIZED,
        &[
            &bearer_error("invalid_token", TOKEN_EXPIRED),
            &dpop_bare(ALGS),
        ],
    );
}

/// `.required()`: a plain bearer token is refused with 401 `invalid_token`
/// and a `DPoP` challenge only.
#[tokio::test]
async fn required_dpop_refuses_bearer_tokens() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).required());
    let plain = f.issuer.token().audience(AUD).mint();
    for _ in 0..2 {
        assert_refused(
            &bearer_get(&f.app, &plain).await,
            StatusCode::UNAUTHORIZED,
            &[&dpop_error("invalid_token", DPOP_REQUIRED)],
        );
    }
}

/// `.required()`: only `DPoP` challenges, for a missing token, a bad proof
/// and a bound token sent as bearer; a valid DPoP request is accepted.
#[tokio::test]
async fn required_dpop_offers_only_the_dpop_challenge() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).required());
    let res = send(&f.app, request("GET", "/invoices", None, &[])).await;
    assert_refused(&res, StatusCode::UNAUTHORIZED, &[&dpop_bare(ALGS)]);
    let wrong = f.builder().claim("htm", "POST").sign();
    assert_refused(
        &f.get(&wrong).await,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_dpop_proof", WRONG_METHOD)],
    );
    assert_refused(
        &bearer_get(&f.app, &f.token).await,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_token", SENDER_CONSTRAINED)],
    );
    assert_ok(&f.get(&f.proof()).await);
}

/// The optional layer lets requests without a token through, but a DPoP
/// request with a bad proof is still refused.
#[tokio::test]
async fn the_optional_layer_still_checks_proofs() {
    let f = Fixture::new();
    let app = Router::new()
        .route(
            "/invoices",
            get(|c: Option<Claims<AccessTokenClaims>>| async move {
                if c.is_some() { "someone" } else { "anyone" }
            }),
        )
        .layer(f.guard.optional_layer());
    let res = send(&app, request("GET", "/invoices", None, &[])).await;
    assert_ok(&res);
    assert_eq!(body(res).await, "anyone");
    let wrong = f.builder().claim("htm", "POST").sign();
    assert_proof_refused(&dpop_get(&app, &f.token, &wrong).await, WRONG_METHOD);
    let res = dpop_get(&app, &f.token, &f.proof()).await;
    assert_ok(&res);
    assert_eq!(body(res).await, "someone");
}

// ---------------------------------------------------------------------------
// 4. Authorization.

/// A DPoP request whose token lacks the route's scope: 403
/// `insufficient_scope` on the `DPoP` challenge (with `scope` and `algs`),
/// then a bare `Bearer` one; with the scope, 200.
#[tokio::test]
async fn insufficient_scope_on_a_dpop_request_is_on_the_dpop_challenge() {
    let f = Fixture::new();
    let url = format!("{PUBLIC}/scoped");
    let proof = f.key.proof("GET", &url, &f.token);
    let res = dpop_call(&f.app, "GET", "/scoped", &f.token, &proof).await;
    let expected = format!(
        r#"DPoP realm="api", error="insufficient_scope", error_description="{INSUFFICIENT_SCOPE}", scope="read:invoices", algs="{ALGS}""#
    );
    assert_refused(&res, StatusCode::FORBIDDEN, &[&expected, BEARER]);

    let scoped = f
        .issuer
        .token()
        .audience(AUD)
        .scope("read:invoices")
        .dpop_bound(&f.key)
        .mint();
    let proof = f.key.proof("GET", &url, &scoped);
    assert_ok(&dpop_call(&f.app, "GET", "/scoped", &scoped, &proof).await);

    // A bearer request's refusal is on the `Bearer` challenge.
    let plain = f.issuer.token().audience(AUD).mint();
    let auth = format!("Bearer {plain}");
    let res = send(&f.app, request("GET", "/scoped", Some(&auth), &[])).await;
    let expected = format!(
        r#"Bearer realm="api", error="insufficient_scope", error_description="{INSUFFICIENT_SCOPE}", scope="read:invoices""#
    );
    assert_refused(&res, StatusCode::FORBIDDEN, &[&expected, &dpop_bare(ALGS)]);
}

// ---------------------------------------------------------------------------
// 5. Server nonces.

fn nonces(secret: u8) -> NonceConfig {
    NonceConfig::new(vec![secret; 32]).unwrap()
}

/// With nonces on, a proof without one gets 401 `use_dpop_nonce` and a
/// `DPoP-Nonce`; the retry with that nonce is accepted (and gets no new
/// nonce while the first is young).
#[tokio::test]
async fn a_proof_without_nonce_gets_use_dpop_nonce() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7)));
    let nonce = assert_use_nonce(&f.get(&f.proof()).await);
    let res = f.get(&f.builder().nonce(&nonce).sign()).await;
    assert_ok(&res);
    assert_eq!(header_value(&res, "dpop-nonce"), None);
    // The nonce may be used by many proofs.
    assert_ok(&f.get(&f.builder().nonce(&nonce).sign()).await);
}

/// A forged nonce (garbage, empty, one character changed, another's
/// format) gets `use_dpop_nonce` again with a fresh nonce; a non-string
/// nonce is malformed.
#[tokio::test]
async fn a_forged_nonce_gets_use_dpop_nonce() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7)));
    let nonce = assert_use_nonce(&f.get(&f.proof()).await);
    let mut tampered = nonce.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for forged in [
        "garbage".to_owned(),
        String::new(),
        tampered,
        format!("{nonce}A"),
        b64([0u8; 24]),
    ] {
        let proof = f.builder().nonce(&forged).sign();
        let fresh = assert_use_nonce(&f.get(&proof).await);
        assert_ne!(fresh, forged);
    }
    let proof = f.builder().claim("nonce", 5).sign();
    assert_proof_refused(&f.get(&proof).await, MALFORMED);
}

/// A nonce issued by a guard with another secret is refused.
#[tokio::test]
async fn a_nonce_from_another_secret_is_refused() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7)));
    let other = app(&dpop_guard(
        &f.issuer,
        DpopConfig::new(PUBLIC).nonces(nonces(8)),
    ));
    let foreign = assert_use_nonce(&dpop_get(&other, &f.token, &f.proof()).await);
    assert_use_nonce(&f.get(&f.builder().nonce(&foreign).sign()).await);
}

/// Replicas with the same secret accept each other's nonces.
#[tokio::test]
async fn replicas_with_the_same_secret_share_nonces() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7)));
    let replica = app(&dpop_guard(
        &f.issuer,
        DpopConfig::new(PUBLIC).nonces(nonces(7)),
    ));
    let nonce = assert_use_nonce(&f.get(&f.proof()).await);
    assert_ok(&dpop_get(&replica, &f.token, &f.builder().nonce(&nonce).sign()).await);
}

/// While rotating, nonces made with the previous secret stay valid.
#[tokio::test]
async fn nonces_of_the_previous_secret_stay_valid() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7)));
    let rotated = app(&dpop_guard(
        &f.issuer,
        DpopConfig::new(PUBLIC).nonces(nonces(8).previous_secret(vec![7u8; 32]).unwrap()),
    ));
    let old = assert_use_nonce(&f.get(&f.proof()).await);
    assert_ok(&dpop_get(&rotated, &f.token, &f.builder().nonce(&old).sign()).await);
    let new = assert_use_nonce(&dpop_get(&rotated, &f.token, &f.proof()).await);
    assert_ok(&dpop_get(&rotated, &f.token, &f.builder().nonce(&new).sign()).await);
}

/// A proof refused for its nonce does not consume its `jti`.
#[tokio::test]
async fn a_proof_refused_for_its_nonce_does_not_consume_its_jti() {
    let f = Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7)));
    let jti = random_jti();
    let nonce = assert_use_nonce(&f.get(&f.builder().claim("jti", jti.as_str()).sign()).await);
    let proof = f.builder().claim("jti", jti.as_str()).nonce(&nonce).sign();
    assert_ok(&f.get(&proof).await);
    assert_proof_refused(&f.get(&proof).await, REPLAYED);
}

/// With a 2 s lifetime, a nonce past half its life is still accepted and the
/// 200 response carries a fresh `DPoP-Nonce`; once its life is over it gets
/// `use_dpop_nonce`, while the fresh one is accepted.
#[tokio::test]
async fn a_nonce_past_half_its_life_is_refreshed() {
    let f =
        Fixture::with(DpopConfig::new(PUBLIC).nonces(nonces(7).lifetime(Duration::from_secs(2))));
    let nonce = assert_use_nonce(&f.get(&f.proof()).await);
    let mut fresh = None;
    for _ in 0..25 {
        let res = f.get(&f.builder().nonce(&nonce).sign()).await;
        assert_ok(&res);
        if let Some(value) = header_value(&res, "dpop-nonce") {
            fresh = Some(value);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = fresh.expect("a fresh DPoP-Nonce within 2.5 s");
    assert_ne!(fresh, nonce);
    let mut expired = false;
    for _ in 0..25 {
        let res = f.get(&f.builder().nonce(&nonce).sign()).await;
        if res.status() == StatusCode::UNAUTHORIZED {
            assert_use_nonce(&res);
            expired = true;
            break;
        }
        assert_ok(&res);
        assert!(header_value(&res, "dpop-nonce").is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired, "the nonce outlived its 2 s lifetime");
    let res = f.get(&f.builder().nonce(&fresh).sign()).await;
    assert_ok(&res);
}

// ---------------------------------------------------------------------------
// 6. Replay stores.

/// A full `MemoryReplayStore` refuses new proofs with 503 and `Retry-After`
/// (no challenge) rather than forgetting one: no accepted proof is ever
/// accepted again, and a refused one is not accepted on retry either.
#[tokio::test]
async fn a_full_memory_store_answers_503_and_never_accepts_a_replay() {
    let store = Arc::new(MemoryReplayStore::new(16));
    let f = Fixture::with(DpopConfig::new(PUBLIC).replay_store(store));
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..48 {
        let proof = f.proof();
        let res = f.get(&proof).await;
        match res.status() {
            StatusCode::OK => accepted.push(proof),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_refused(&res, StatusCode::SERVICE_UNAVAILABLE, &[]);
                let retry: u64 = header_value(&res, "retry-after").unwrap().parse().unwrap();
                assert!((1..=65).contains(&retry), "Retry-After: {retry}");
                refused.push(proof);
            }
            other => panic!("unexpected {other}: {:?}", challenges(&res)),
        }
    }
    assert!(
        !accepted.is_empty() && accepted.len() <= 16,
        "{}",
        accepted.len()
    );
    assert!(!refused.is_empty());
    for proof in &accepted {
        assert_proof_refused(&f.get(proof).await, REPLAYED);
    }
    for proof in &refused {
        assert_eq!(f.get(proof).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

/// A replay store that answers later (the pending path).
struct SlowStore {
    inner: Arc<MemoryReplayStore>,
    delay: Duration,
    calls: AtomicUsize,
}

impl SlowStore {
    fn new(delay: Duration) -> Self {
        Self {
            inner: Arc::new(MemoryReplayStore::new(1000)),
            delay,
            calls: AtomicUsize::new(0),
        }
    }
}

impl ReplayStore for SlowStore {
    fn record(&self, key: ReplayKey, ttl: Duration) -> ReplayFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (inner, delay) = (self.inner.clone(), self.delay);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            inner.record(key, ttl).await
        })
    }
}

/// With a store that answers after 50 ms, requests still pass (first and
/// cached token alike), the handler runs, and replays are still refused.
#[tokio::test]
async fn a_slow_replay_store_still_admits_and_refuses_replays() {
    let store = Arc::new(SlowStore::new(Duration::from_millis(50)));
    let f = Fixture::with(DpopConfig::new(PUBLIC).replay_store(store.clone()));
    for _ in 0..3 {
        let proof = f.proof();
        let res = f.get(&proof).await;
        assert_ok(&res);
        assert_eq!(body(res).await, SUB);
        assert_proof_refused(&f.get(&proof).await, REPLAYED);
    }
    let wrong = f.builder().claim("htm", "POST").sign();
    assert_proof_refused(&f.get(&wrong).await, WRONG_METHOD);
    assert_eq!(store.calls.load(Ordering::SeqCst), 6);
}

/// Eight concurrent requests with one proof, through a slow store: exactly
/// one is accepted, the others are replays.
#[tokio::test]
async fn concurrent_uses_of_one_proof_admit_exactly_one() {
    let store = Arc::new(SlowStore::new(Duration::from_millis(20)));
    let f = Fixture::with(DpopConfig::new(PUBLIC).replay_store(store));
    // Warm the token cache, so that every request takes the same path.
    assert_ok(&f.get(&f.proof()).await);
    let proof = f.proof();
    let responses = futures_util::future::join_all((0..8).map(|_| f.get(&proof))).await;
    let ok = responses
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!(ok, 1);
    for res in responses.iter().filter(|r| r.status() != StatusCode::OK) {
        assert_proof_refused(res, REPLAYED);
    }
}

/// A replay store that cannot answer.
struct DownStore(Duration);

impl ReplayStore for DownStore {
    fn record(&self, _: ReplayKey, _: Duration) -> ReplayFuture {
        let e = ReplayStoreError::new("down", self.0);
        Box::pin(async move { Err(e) })
    }
}

/// A failing store refuses with 503, `Retry-After` from its error (at least
/// 1 s) and no challenge; a proof refused for itself still gets its 401.
#[tokio::test]
async fn a_failing_replay_store_answers_503_with_retry_after() {
    for (retry_after, header) in [(Duration::from_secs(3), "3"), (Duration::ZERO, "1")] {
        let f =
            Fixture::with(DpopConfig::new(PUBLIC).replay_store(Arc::new(DownStore(retry_after))));
        for _ in 0..2 {
            let res = f.get(&f.proof()).await;
            assert_refused(&res, StatusCode::SERVICE_UNAVAILABLE, &[]);
            assert_eq!(header_value(&res, "retry-after").as_deref(), Some(header));
        }
        let wrong = f.builder().claim("htm", "POST").sign();
        assert_proof_refused(&f.get(&wrong).await, WRONG_METHOD);
    }
}

/// Two replicas sharing one store: a proof accepted by one is refused by the
/// other.
#[tokio::test]
async fn replicas_sharing_a_store_refuse_each_others_proofs() {
    let store: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::new(1000));
    let f = Fixture::with(DpopConfig::new(PUBLIC).replay_store(store.clone()));
    let replica = app(&dpop_guard(
        &f.issuer,
        DpopConfig::new(PUBLIC).replay_store(store),
    ));
    let proof = f.proof();
    assert_ok(&f.get(&proof).await);
    assert_proof_refused(&dpop_get(&replica, &f.token, &proof).await, REPLAYED);
    let proof = f.proof();
    assert_ok(&dpop_get(&replica, &f.token, &proof).await);
    assert_proof_refused(&f.get(&proof).await, REPLAYED);
}

/// A store that records what it is asked.
#[derive(Default)]
struct Recorder {
    inner: Option<Arc<MemoryReplayStore>>,
    seen: Mutex<Vec<(ReplayKey, Duration)>>,
}

impl ReplayStore for Recorder {
    fn record(&self, key: ReplayKey, ttl: Duration) -> ReplayFuture {
        self.seen.lock().unwrap().push((key, ttl));
        match &self.inner {
            Some(inner) => inner.record(key, ttl),
            None => Box::pin(async { Ok(tokenguard::Seen::First) }),
        }
    }
}

/// The store is given the digest of (thumbprint, `jti`) and a TTL covering
/// the whole `iat` window (`max_age` + `clock_skew`).
#[tokio::test]
async fn the_store_records_thumbprint_and_jti_for_the_iat_window() {
    let recorder = Arc::new(Recorder::default());
    let f = Fixture::with(
        DpopConfig::new(PUBLIC)
            .max_age(Duration::from_secs(10))
            .clock_skew(Duration::from_secs(2))
            .replay_store(recorder.clone()),
    );
    assert_ok(&f.get(&f.builder().claim("jti", "jti-1").sign()).await);
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            ReplayKey::new(&f.key.thumbprint(), "jti-1"),
            Duration::from_secs(12)
        )]
    );

    let recorder = Arc::new(Recorder::default());
    let f = Fixture::with(DpopConfig::new(PUBLIC).replay_store(recorder.clone()));
    assert_ok(&f.get(&f.builder().claim("jti", "jti-2").sign()).await);
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            ReplayKey::new(&f.key.thumbprint(), "jti-2"),
            Duration::from_secs(65)
        )]
    );
}

/// The store is asked only about proofs that passed every other check: not
/// for a bad proof, a key mismatch, a missing nonce, a refused token or a
/// bearer request.
#[tokio::test]
async fn the_store_is_asked_only_after_every_other_check() {
    let recorder = Arc::new(Recorder {
        inner: Some(Arc::new(MemoryReplayStore::new(1000))),
        ..Recorder::default()
    });
    let f = Fixture::with(
        DpopConfig::new(PUBLIC)
            .nonces(nonces(7))
            .replay_store(recorder.clone()),
    );
    let nonce = assert_use_nonce(&f.get(&f.proof()).await);
    assert_proof_refused(
        &f.get(&f.builder().nonce(&nonce).claim("htm", "POST").sign())
            .await,
        WRONG_METHOD,
    );
    let other = DpopKey::new()
        .proof_builder("GET", URL, &f.token)
        .nonce(&nonce)
        .sign();
    assert_dpop_token_refused(&f.get(&other).await, KEY_MISMATCH);
    let expired = f
        .issuer
        .token()
        .audience(AUD)
        .dpop_bound(&f.key)
        .expired()
        .mint();
    let proof = f
        .key
        .proof_builder("GET", URL, &expired)
        .nonce(&nonce)
        .sign();
    assert_dpop_token_refused(&dpop_get(&f.app, &expired, &proof).await, TOKEN_EXPIRED);
    let plain = f.issuer.token().audience(AUD).mint();
    assert_ok(&bearer_get(&f.app, &plain).await);
    assert!(recorder.seen.lock().unwrap().is_empty());

    assert_ok(&f.get(&f.builder().nonce(&nonce).sign()).await);
    assert_eq!(recorder.seen.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// 7. Without a request.

/// `guard.verify` has no request, so no proof: a DPoP-bound token is
/// refused, an unbound one accepted (and refused too once DPoP is required).
#[tokio::test]
async fn verify_refuses_bound_tokens_for_want_of_a_proof() {
    let f = Fixture::new();
    assert_eq!(
        f.guard.verify(&f.token).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::SenderConstrained)
    );
    let plain = f.issuer.token().audience(AUD).mint();
    assert!(f.guard.verify(&plain).await.is_ok());
    let required = dpop_guard(&f.issuer, DpopConfig::new(PUBLIC).required());
    assert_eq!(
        required.verify(&plain).await.unwrap_err().kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::DpopRequired)
    );
}

// ---------------------------------------------------------------------------
// 8. Properties.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a property whose fixtures are built once by the caller.
fn run<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

/// Any small JSON value.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a valid proof.
#[derive(Debug, Clone)]
enum Edit {
    Remove,
    Set(Value),
    /// `iat` this many seconds from now.
    IatIn(i64),
    /// `iat` as a float, this many seconds from now.
    IatInFloat(f64),
}

#[derive(Debug, Clone)]
struct Change {
    header: bool,
    name: String,
    edit: Edit,
}

/// `htu` values the model knows to be this request's URI.
const SAME_URI: &[&str] = &[
    URL,
    "https://api.example.com/invoices?x=1",
    "https://api.example.com/invoices#f",
    "HTTPS://API.EXAMPLE.COM:443/invoices",
    "https://api.example.com/./invoices",
    "https://api.example.com/%69nvoices",
];
/// `htu` values of other URIs.
const OTHER_URI: &[&str] = &[
    "http://api.example.com/invoices",
    "https://api.example.com:8443/invoices",
    "https://api.example.com/invoices/",
    "https://api.example.com/Invoices",
    "https://user@api.example.com/invoices",
    "/invoices",
];

fn change() -> BoxedStrategy<Change> {
    fn member(header: bool, name: &'static str, values: Vec<Value>) -> BoxedStrategy<Change> {
        let edit = prop_oneof![
            1 => Just(Edit::Remove),
            3 => prop::sample::select(values).prop_map(Edit::Set),
            2 => json_value().prop_map(Edit::Set),
        ];
        edit.prop_map(move |edit| Change {
            header,
            name: name.to_owned(),
            edit,
        })
        .boxed()
    }
    let strings = |s: &[&str]| s.iter().map(|v| json!(v)).collect::<Vec<_>>();
    let iat = prop_oneof![
        Just(Edit::Remove),
        prop::sample::select(vec![
            -3600i64, -120, -70, -50, -30, -1, 0, 1, 2, 9, 30, 3600
        ])
        .prop_map(Edit::IatIn),
        prop::sample::select(vec![-70.5f64, -1.5, -0.25, 2.5, 9.5]).prop_map(Edit::IatInFloat),
        json_value().prop_map(Edit::Set),
    ]
    .prop_map(|edit| Change {
        header: false,
        name: "iat".into(),
        edit,
    });
    let extra = (any::<bool>(), "[a-z]{1,8}", json_value()).prop_map(|(header, name, v)| Change {
        header,
        name,
        edit: Edit::Set(v),
    });
    prop_oneof![
        member(
            true,
            "typ",
            strings(&[
                "dpop+jwt",
                "DPoP+JWT",
                "application/dpop+jwt",
                "Application/DPoP+JWT",
                "JWT",
                "at+jwt",
                "dpop+jwt ",
                "application/jwt",
            ])
        ),
        member(
            true,
            "alg",
            strings(&["ES256", "es256", "ES384", "RS256", "EdDSA", "none", "HS256"])
        ),
        member(
            true,
            "jwk",
            vec![
                json!({"kty": "EC", "crv": "P-256"}),
                json!({"kty": "oct", "k": "AAAA"}),
                DpopKey::new().jwk(),
            ]
        ),
        member(true, "crit", vec![json!(["exp"]), json!([]), Value::Null]),
        member(
            false,
            "jti",
            vec![
                json!(""),
                json!("j"),
                json!("j".repeat(256)),
                json!("j".repeat(257)),
                json!(1)
            ]
        ),
        member(false, "htm", strings(&["GET", "get", "POST", "GET ", ""])),
        member(
            false,
            "htu",
            SAME_URI.iter().chain(OTHER_URI).map(|v| json!(v)).collect()
        ),
        iat,
        member(false, "ath", vec![json!(""), Value::Null, json!("x")]),
        member(false, "nonce", vec![json!("n"), Value::Null, json!(1)]),
        extra,
    ]
    .boxed()
}

/// The model's verdict on a proof.
#[derive(Debug, PartialEq)]
enum Verdict {
    Valid,
    Invalid,
    /// Too close to a limit (or the clock) to call.
    Unsure,
}

/// RFC 9449 §4.3, written from the specification: is this proof, signed
/// with ES256 by the key of `jwk`, valid for `GET /invoices` with the token
/// whose hash is `ath`, at `now`? (Replay is the caller's part.)
fn model(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    jwk: &Value,
    ath: &str,
    now: i64,
) -> Verdict {
    let typ_ok = header.get("typ").and_then(Value::as_str).is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "dpop+jwt" || t == "application/dpop+jwt"
    });
    let header_ok = typ_ok
        && header.get("alg") == Some(&json!("ES256"))
        && header.get("jwk") == Some(jwk)
        && !header.contains_key("crit");
    let jti_ok = claims
        .get("jti")
        .and_then(Value::as_str)
        .is_some_and(|j| (1..=256).contains(&j.len()));
    let htm_ok = claims.get("htm") == Some(&json!("GET"));
    let htu_ok = claims
        .get("htu")
        .and_then(Value::as_str)
        .is_some_and(|u| SAME_URI.contains(&u));
    let ath_ok = claims.get("ath") == Some(&json!(ath));
    let nonce_ok = matches!(
        claims.get("nonce"),
        None | Some(Value::Null | Value::String(_))
    );
    if !(header_ok && jti_ok && htm_ok && htu_ok && ath_ok && nonce_ok) {
        return Verdict::Invalid;
    }
    // `iat`: a non-negative NumericDate within [now - 60, now + 5]; the
    // server's clock may have moved on by a second.
    match claims.get("iat").and_then(Value::as_f64) {
        Some(iat) if iat >= 0.0 => {
            let iat = iat.floor();
            if iat >= (now - 58) as f64 && iat <= (now + 3) as f64 {
                Verdict::Valid
            } else if iat < (now - 62) as f64 || iat > (now + 7) as f64 {
                Verdict::Invalid
            } else {
                Verdict::Unsure
            }
        }
        _ => Verdict::Invalid,
    }
}

/// Arbitrary header members and claims in proofs signed by the bound key
/// never yield a 500 or a panic: only 200/400/401/403/503; 200 exactly when
/// the proof is valid by the model above and its `jti` is new; any refusal
/// is a well-formed `invalid_dpop_proof` challenge.
#[test]
fn arbitrary_proof_members_never_break_the_guard() {
    let rt = runtime();
    let issuer = issuer();
    let app = app(&dpop_guard(&issuer, DpopConfig::new(PUBLIC)));
    let key = ClientKey::new("ES256");
    let token = issuer
        .token()
        .audience(AUD)
        .claim("cnf", json!({ "jkt": key.thumbprint() }))
        .mint();
    let ath = sha256_b64(&token);
    let jwk = key.jwk();
    let used = RefCell::new(HashSet::new());
    run(256, prop::collection::vec(change(), 0..4), |changes| {
        let now = now();
        let mut header = key.header();
        let mut claims = claims("GET", URL, &token, now);
        for Change {
            header: h,
            name,
            edit,
        } in &changes
        {
            let map = if *h { &mut header } else { &mut claims };
            let value = match edit {
                Edit::Remove => {
                    map.remove(name);
                    continue;
                }
                Edit::Set(v) => v.clone(),
                Edit::IatIn(d) => json!(now + d),
                Edit::IatInFloat(d) => json!(now as f64 + d),
            };
            map.insert(name.clone(), value);
        }
        let proof = key.sign(&header, &claims);
        prop_assume!(proof.len() < 7 * 1024);
        let verdict = model(&header, &claims, &jwk, &ath, now);
        let res = rt.block_on(dpop_get(&app, &token, &proof));
        let status = res.status().as_u16();
        prop_assert!(
            [200, 400, 401, 403, 503].contains(&status),
            "status {}",
            status
        );
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let replay = used.borrow().contains(&jti);
        if status == 200 {
            prop_assert_ne!(
                &verdict,
                &Verdict::Invalid,
                "accepted: {:?} {:?}",
                header,
                claims
            );
            prop_assert!(!replay, "a replay was accepted");
            used.borrow_mut().insert(jti);
            return Ok(());
        }
        prop_assert!(
            verdict != Verdict::Valid || replay,
            "refused {:?}: {:?} {:?}",
            challenges(&res),
            header,
            claims
        );
        prop_assert_eq!(status, 401);
        let all = challenges(&res);
        prop_assert_eq!(all.len(), 2);
        prop_assert_eq!(&all[1], BEARER);
        let description = all[0]
            .strip_prefix(r#"DPoP realm="api", error="invalid_dpop_proof", error_description=""#)
            .and_then(|rest| rest.strip_suffix(&format!(r#"", algs="{ALGS}""#)));
        prop_assert!(
            description.is_some_and(|d| PROOF_DESCRIPTIONS.contains(&d)),
            "{:?}",
            all
        );
        // A valid proof with a used `jti` is refused as a replay.
        if verdict == Verdict::Valid {
            prop_assert_eq!(description, Some(REPLAYED));
        }
        Ok(())
    });
    // The model is not vacuous: many generated proofs were valid.
    let accepted = used.borrow().len();
    assert!(accepted >= 16, "only {accepted} proofs accepted");
}

/// Whatever a valid proof is changed to (one character replaced, inserted
/// or removed, or any string of header characters), it is never accepted:
/// always 401 `invalid_dpop_proof`.
#[test]
fn tampered_proofs_are_never_accepted() {
    #[derive(Debug, Clone)]
    enum Tamper {
        Replace(prop::sample::Index, char),
        Insert(prop::sample::Index, char),
        Remove(prop::sample::Index),
        Any(String),
    }
    let chars = prop::sample::select(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.,=+/ ~"
            .chars()
            .collect::<Vec<_>>(),
    );
    let tamper = prop_oneof![
        (any::<prop::sample::Index>(), chars.clone()).prop_map(|(i, c)| Tamper::Replace(i, c)),
        (any::<prop::sample::Index>(), chars).prop_map(|(i, c)| Tamper::Insert(i, c)),
        any::<prop::sample::Index>().prop_map(Tamper::Remove),
        "[!-~][ -~]{0,300}[!-~]".prop_map(Tamper::Any),
    ];
    let rt = runtime();
    let f = Fixture::new();
    run(256, tamper, |tamper| {
        let proof = f.proof();
        let mut chars: Vec<char> = proof.chars().collect();
        let tampered = match tamper {
            Tamper::Replace(i, c) => {
                let i = i.index(chars.len());
                chars[i] = c;
                chars.into_iter().collect()
            }
            Tamper::Insert(i, c) => {
                chars.insert(i.index(chars.len() + 1), c);
                chars.into_iter().collect()
            }
            Tamper::Remove(i) => {
                chars.remove(i.index(chars.len()));
                chars.into_iter().collect()
            }
            Tamper::Any(s) => s,
        };
        prop_assume!(tampered != proof);
        let res = rt.block_on(f.get(&tampered));
        prop_assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{:?}",
            challenges(&res)
        );
        let all = challenges(&res);
        prop_assert_eq!(all.len(), 2);
        prop_assert!(
            all[0].starts_with(
                r#"DPoP realm="api", error="invalid_dpop_proof", error_description=""#
            ),
            "{:?}",
            all
        );
        // The valid proof itself is still unused.
        prop_assert_eq!(rt.block_on(f.get(&proof)).status(), StatusCode::OK);
        Ok(())
    });
}
