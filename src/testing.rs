//! An in-process token issuer for tests and demos (feature `testing`).
//!
//! [`TestIssuer`] generates its own keys (RSA, P-256, P-384, Ed25519; RSA only
//! when first used), mints RFC 9068 access tokens with a fluent builder, and
//! builds a [`TokenGuard`] that trusts it without any network access.
//! Signatures are made with aws-lc-rs directly, not through the code that
//! verifies them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use tokenguard::testing::TestIssuer;
//!
//! let issuer = TestIssuer::new();
//! let guard = issuer.guard("https://api.example.com");
//! let token = issuer
//!     .token()
//!     .audience("https://api.example.com")
//!     .subject("u1")
//!     .scope("read:invoices")
//!     .expires_in(Duration::from_secs(300))
//!     .mint();
//! assert_eq!(guard.verify(&token).await.unwrap().subject(), Some("u1"));
//!
//! let expired = issuer.token().audience("https://api.example.com").expired().mint();
//! assert!(guard.verify(&expired).await.is_err());
//! # }
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test tooling: a broken test setup should fail loudly; never on a guarded request's path"
)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};

use crate::NumericDate;
use crate::TokenGuard;

/// The issuer URL a [`TestIssuer::new`] uses.
pub const DEFAULT_TEST_ISSUER: &str = "https://issuer.tokenguard.test";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Keys {
    rsa: OnceLock<aws_lc_rs::rsa::KeyPair>,
    p256: EcdsaKeyPair,
    p384: EcdsaKeyPair,
    ed25519: Ed25519KeyPair,
    /// Distinguishes the key ids of two issuers.
    tag: String,
}

/// An in-process issuer: keys, a JWKS, and a token minter.
#[derive(Clone)]
pub struct TestIssuer {
    issuer: String,
    keys: Arc<Keys>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIssuer {
    /// An issuer named [`DEFAULT_TEST_ISSUER`] with fresh keys.
    pub fn new() -> Self {
        Self::with_issuer(DEFAULT_TEST_ISSUER)
    }

    /// An issuer with the given `iss` and fresh keys.
    pub fn with_issuer(issuer: impl Into<String>) -> Self {
        let mut tag = [0u8; 4];
        SystemRandom::new()
            .fill(&mut tag)
            .expect("system randomness");
        Self {
            issuer: issuer.into(),
            keys: Arc::new(Keys {
                rsa: OnceLock::new(),
                p256: EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key"),
                p384: EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .expect("P-384 key"),
                ed25519: Ed25519KeyPair::generate().expect("Ed25519 key"),
                tag: b64(tag),
            }),
        }
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn rsa(&self) -> &aws_lc_rs::rsa::KeyPair {
        self.keys.rsa.get_or_init(|| {
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key")
        })
    }

    /// The `kid` of the key that signs `alg`.
    pub fn kid(&self, alg: Algorithm) -> String {
        let family = match alg {
            Algorithm::ES256 => "p256",
            Algorithm::ES384 => "p384",
            Algorithm::EdDSA => "ed25519",
            Algorithm::RS256 => "rsa",
            Algorithm::RS384 => "rsa-rs384",
            Algorithm::RS512 => "rsa-rs512",
            Algorithm::PS256 => "rsa-ps256",
            Algorithm::PS384 => "rsa-ps384",
            Algorithm::PS512 => "rsa-ps512",
            _ => "hmac",
        };
        format!("{family}-{}", self.keys.tag)
    }

    /// The public keys as a JWK set: one key for each of the
    /// [`DEFAULT_ALGORITHMS`](crate::DEFAULT_ALGORITHMS), each labelled with
    /// its one `alg` (nine keys; see [`jwk`](Self::jwk)).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = crate::DEFAULT_ALGORITHMS
            .iter()
            .map(|alg| self.jwk(*alg))
            .collect();
        json!({ "keys": keys })
    }

    /// The public JWK of the key that signs `alg`, labelled with it. The RSA
    /// algorithms share one RSA key pair under one `kid` per algorithm (a
    /// test convenience: a real issuer uses one key per algorithm).
    ///
    /// # Panics
    /// For HMAC algorithms, which have no public key.
    pub fn jwk(&self, alg: Algorithm) -> Value {
        let point = |k: &EcdsaKeyPair, len: usize| {
            let p = k.public_key().as_ref();
            (b64(&p[1..1 + len]), b64(&p[1 + len..]))
        };
        let kid = self.kid(alg);
        match alg {
            Algorithm::ES256 => {
                let (x, y) = point(&self.keys.p256, 32);
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": x, "y": y})
            }
            Algorithm::ES384 => {
                let (x, y) = point(&self.keys.p384, 48);
                json!({"kty": "EC", "crv": "P-384", "use": "sig", "alg": "ES384", "kid": kid, "x": x, "y": y})
            }
            Algorithm::EdDSA => {
                json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                "x": b64(self.keys.ed25519.public_key().as_ref())})
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                panic!("HMAC algorithms have no public key")
            }
            _ => {
                let rsa = self.rsa().public_key();
                json!({"kty": "RSA", "use": "sig", "alg": serde_json::to_value(alg).expect("algorithm name"), "kid": kid,
                    "n": b64(rsa.modulus().big_endian_without_leading_zero()),
                    "e": b64(rsa.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    /// The RSA public key as a PEM `PUBLIC KEY` (SPKI).
    pub fn rsa_public_pem(&self) -> String {
        let der = self.rsa().public_key().as_der().expect("SPKI encoding");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// A guard that trusts this issuer (static keys, no network) for `audience`,
    /// with every other setting at its strict default.
    pub fn guard(&self, audience: &str) -> TokenGuard {
        self.guard_builder(audience)
            .build()
            .expect("test guard configuration")
    }

    /// A builder preset with this issuer and its keys, for further settings.
    pub fn guard_builder(&self, audience: &str) -> crate::TokenGuardBuilder {
        TokenGuard::builder()
            .issuer(self.issuer.clone())
            .audience(audience)
            .jwks_json(self.jwks().to_string())
    }

    /// Starts a token: `iss` of this issuer, a random `jti`, `iat` now,
    /// `exp` in 5 minutes, `typ: at+jwt`, ES256, `sub` and `client_id` set to
    /// `test-client`.
    pub fn token(&self) -> TokenBuilder {
        let now = NumericDate::now().as_secs();
        let mut jti = [0u8; 12];
        SystemRandom::new()
            .fill(&mut jti)
            .expect("system randomness");
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("sub".into(), "test-client".into());
        claims.insert("client_id".into(), "test-client".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + 300).into());
        claims.insert("jti".into(), b64(jti).into());
        TokenBuilder {
            issuer: self.clone(),
            alg: Algorithm::ES256,
            header: Map::from_iter([("typ".to_owned(), Value::from("at+jwt"))]),
            claims,
            kid: None,
            hmac: None,
        }
    }
}

/// Builds and signs one token. Made by [`TestIssuer::token`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TokenBuilder {
    issuer: TestIssuer,
    alg: Algorithm,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    kid: Option<Option<String>>,
    hmac: Option<Vec<u8>>,
}

impl TokenBuilder {
    /// Binds the token to `key` (`cnf.jkt`, RFC 9449 §6.1): it is then
    /// accepted only with DPoP proofs signed by that key.
    pub fn dpop_bound(self, key: &DpopKey) -> Self {
        self.claim("cnf", json!({ "jkt": key.thumbprint() }))
    }

    /// Sets any claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets a header parameter.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// `sub`.
    pub fn subject(self, sub: &str) -> Self {
        self.claim("sub", sub)
    }

    /// `aud` (one audience).
    pub fn audience(self, aud: &str) -> Self {
        self.claim("aud", aud)
    }

    /// `aud` (several audiences).
    pub fn audiences(self, aud: &[&str]) -> Self {
        self.claim("aud", aud.to_vec())
    }

    /// `scope` (space-separated).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    /// `client_id`.
    pub fn client_id(self, client_id: &str) -> Self {
        self.claim("client_id", client_id)
    }

    /// `iss`, to mint tokens of another issuer with these keys.
    pub fn issuer(self, iss: &str) -> Self {
        self.claim("iss", iss)
    }

    /// `exp` this long after `iat`.
    pub fn expires_in(self, d: Duration) -> Self {
        let iat = self
            .claims
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| NumericDate::now().as_secs());
        self.claim("exp", iat + d.as_secs() as i64)
    }

    /// Issued 10 minutes ago, expired 5 minutes ago (beyond any default leeway).
    pub fn expired(self) -> Self {
        let now = NumericDate::now().as_secs();
        self.claim("iat", now - 600).claim("exp", now - 300)
    }

    /// `aud` of another resource (`https://other-resource.invalid`), for
    /// negative tests.
    pub fn wrong_audience(self) -> Self {
        self.claim("aud", "https://other-resource.invalid")
    }

    /// `nbf` this far in the future.
    pub fn not_before_in(self, d: Duration) -> Self {
        let now = NumericDate::now().as_secs();
        self.claim("nbf", now + d.as_secs() as i64)
    }

    /// No `typ` header (as many providers mint access tokens).
    pub fn untyped(mut self) -> Self {
        self.header.remove("typ");
        self
    }

    /// The `typ` header.
    pub fn typ(self, typ: &str) -> Self {
        self.header("typ", typ)
    }

    /// Signs with the issuer's key for `alg` (default ES256).
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Overrides the `kid` header (`None` omits it).
    pub fn kid(mut self, kid: Option<&str>) -> Self {
        self.kid = Some(kid.map(str::to_owned));
        self
    }

    /// Signs with HMAC and this secret instead (`alg` must be HS256/384/512).
    pub fn hmac_secret(mut self, alg: Algorithm, secret: &[u8]) -> Self {
        self.alg = alg;
        self.hmac = Some(secret.to_vec());
        if self.kid.is_none() {
            self.kid = Some(None);
        }
        self
    }

    /// Signs and serializes the token (compact JWS).
    ///
    /// # Panics
    /// If the algorithm is not one this issuer can sign with.
    pub fn mint(self) -> String {
        let issuer = &self.issuer;
        let alg_name = serde_json::to_value(self.alg).expect("algorithm name");
        let mut header = self.header;
        header.insert("alg".into(), alg_name);
        match self.kid.unwrap_or_else(|| Some(issuer.kid(self.alg))) {
            Some(kid) => header.insert("kid".into(), kid.into()),
            None => header.remove("kid"),
        };
        let input = format!(
            "{}.{}",
            b64(serde_json::to_vec(&header).expect("header JSON")),
            b64(serde_json::to_vec(&self.claims).expect("claims JSON"))
        );
        let signature = sign(issuer, self.alg, self.hmac.as_deref(), input.as_bytes());
        format!("{input}.{}", b64(signature))
    }
}

fn sign(issuer: &TestIssuer, alg: Algorithm, hmac: Option<&[u8]>, msg: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac as h;
    let rng = SystemRandom::new();
    let rsa = |padding: &'static dyn sig::RsaEncoding| {
        let key = issuer.rsa();
        let mut out = vec![0; key.public_modulus_len()];
        key.sign(padding, &rng, msg, &mut out)
            .expect("RSA signature");
        out
    };
    let hmac_sign = |a: h::Algorithm| {
        h::sign(&h::Key::new(a, hmac.expect("HMAC secret")), msg)
            .as_ref()
            .to_vec()
    };
    match alg {
        Algorithm::HS256 => hmac_sign(h::HMAC_SHA256),
        Algorithm::HS384 => hmac_sign(h::HMAC_SHA384),
        Algorithm::HS512 => hmac_sign(h::HMAC_SHA512),
        Algorithm::RS256 => rsa(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => rsa(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => rsa(&sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => rsa(&sig::RSA_PSS_SHA256),
        Algorithm::PS384 => rsa(&sig::RSA_PSS_SHA384),
        Algorithm::PS512 => rsa(&sig::RSA_PSS_SHA512),
        Algorithm::ES256 => issuer
            .keys
            .p256
            .sign(&rng, msg)
            .expect("ES256 signature")
            .as_ref()
            .to_vec(),
        Algorithm::ES384 => issuer
            .keys
            .p384
            .sign(&rng, msg)
            .expect("ES384 signature")
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => issuer.keys.ed25519.sign(msg).as_ref().to_vec(),
        other => panic!("the test issuer cannot sign {other:?}"),
    }
}

/// A [`TestIssuer`] served over HTTP on a loopback port: its discovery
/// document (`/.well-known/openid-configuration`) and JWK set (`/jwks`), for
/// end-to-end tests through the guard's real network path. Keys can be rotated
/// and retired at runtime. The server stops when this value is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tokenguard::testing::TestIssuerServer;
///
/// let server = TestIssuerServer::start().await.unwrap();
/// let guard = tokenguard::TokenGuard::builder()
///     .issuer(server.url())              // discovery over loopback HTTP
///     .audience("https://api.example.com")
///     .build()
///     .unwrap();
/// let token = server.issuer().token().audience("https://api.example.com").mint();
/// assert!(guard.verify(&token).await.is_ok());
/// assert_eq!(server.jwks_requests(), 1);
///
/// // Rotate: new keys are published beside the old ones, then the old ones retire.
/// let old = server.rotate();
/// server.retire(&old);
/// assert_eq!(server.published().len(), 1);
/// # }
/// ```
pub struct TestIssuerServer {
    url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

struct ServerState {
    /// Key sets published in the JWKS; the last one signs new tokens.
    published: std::sync::Mutex<Vec<TestIssuer>>,
    jwks_requests: std::sync::atomic::AtomicUsize,
    discovery_requests: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for TestIssuerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuerServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuerServer {
    /// Binds `127.0.0.1` on a free port and serves a new issuer whose `iss`
    /// is `http://127.0.0.1:PORT`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Like [`start`](Self::start), on the given port (0 for a free one).
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        use axum::routing::get;
        use std::sync::atomic::Ordering;

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(ServerState {
            published: std::sync::Mutex::new(vec![TestIssuer::with_issuer(url.clone())]),
            jwks_requests: Default::default(),
            discovery_requests: Default::default(),
        });
        let json = |v: Value| {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
        };
        let discovery = {
            let (state, url) = (state.clone(), url.clone());
            move || async move {
                state.discovery_requests.fetch_add(1, Ordering::SeqCst);
                json(json!({
                    "issuer": url,
                    "jwks_uri": format!("{url}/jwks"),
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384", "EdDSA"],
                }))
            }
        };
        let jwks = {
            let state = state.clone();
            move || async move {
                state.jwks_requests.fetch_add(1, Ordering::SeqCst);
                let published = state
                    .published
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let keys: Vec<Value> = published
                    .iter()
                    .flat_map(|issuer| {
                        issuer.jwks()["keys"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                json(json!({ "keys": keys }))
            }
        };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state, task })
    }

    /// The issuer URL (`http://127.0.0.1:PORT`), which is also the `iss` of its tokens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// The key set that signs new tokens (the newest published).
    pub fn issuer(&self) -> TestIssuer {
        self.published()
            .pop()
            .expect("at least one key set is published")
    }

    /// Every published key set, oldest first.
    pub fn published(&self) -> Vec<TestIssuer> {
        self.state
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes a new key set, which signs new tokens from now on; the
    /// previous ones stay published (overlap) until retired. Returns the
    /// previous signing key set.
    pub fn rotate(&self) -> TestIssuer {
        let mut published = self
            .state
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let previous = published
            .last()
            .cloned()
            .expect("at least one key set is published");
        published.push(TestIssuer::with_issuer(self.url.clone()));
        previous
    }

    /// Removes a key set from the JWKS. Tokens it signed stop verifying once
    /// guards refetch the set.
    pub fn retire(&self, keys: &TestIssuer) {
        let mut published = self
            .state
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if published.len() > 1 {
            published.retain(|k| !Arc::ptr_eq(&k.keys, &keys.keys));
        }
    }

    /// How many JWKS requests the server answered.
    pub fn jwks_requests(&self) -> usize {
        self.state
            .jwks_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many discovery requests the server answered.
    pub fn discovery_requests(&self) -> usize {
        self.state
            .discovery_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A builder trusting this server through discovery, for `audience`.
    pub fn guard_builder(&self, audience: &str) -> crate::TokenGuardBuilder {
        TokenGuard::builder()
            .issuer(self.url.clone())
            .audience(audience)
    }
}

/// A DPoP client key (P-256, ES256) that makes proofs (RFC 9449 §4), for
/// tests of DPoP-protected APIs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tokenguard::{DpopConfig, testing::{DpopKey, TestIssuer}};
/// let issuer = TestIssuer::new();
/// let guard = issuer
///     .guard_builder("https://api")
///     .dpop(DpopConfig::new("https://api.example.com"))
///     .build()
///     .unwrap();
/// let key = DpopKey::new();
/// let token = issuer.token().audience("https://api").dpop_bound(&key).mint();
/// let proof = key.proof("GET", "https://api.example.com/invoices", &token);
/// let req = http::Request::get("/invoices")
///     .header("authorization", format!("DPoP {token}"))
///     .header("dpop", proof)
///     .body(axum::body::Body::empty())
///     .unwrap();
/// let app = axum::Router::new()
///     .route("/invoices", axum::routing::get(|| async { "[]" }))
///     .layer(guard.layer());
/// use tower::ServiceExt;
/// assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct DpopKey {
    key: Arc<EcdsaKeyPair>,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

impl Default for DpopKey {
    fn default() -> Self {
        Self::new()
    }
}

impl DpopKey {
    /// A new P-256 key.
    pub fn new() -> Self {
        Self {
            key: Arc::new(
                EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"),
            ),
        }
    }

    /// The public JWK (what a proof's header carries).
    pub fn jwk(&self) -> Value {
        let p = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
    }

    /// The RFC 7638 thumbprint of the key (a bound token's `cnf.jkt`).
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y")
        );
        b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ))
    }

    /// A fresh proof for `method` on `url`, presenting `access_token`.
    pub fn proof(&self, method: &str, url: &str, access_token: &str) -> String {
        self.proof_builder(method, url, access_token).sign()
    }

    /// A proof to adjust before signing.
    pub fn proof_builder(&self, method: &str, url: &str, access_token: &str) -> ProofBuilder {
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .expect("system randomness");
        let ath = b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            access_token.as_bytes(),
        ));
        let claims = Map::from_iter([
            ("jti".to_owned(), Value::from(b64(jti))),
            ("htm".to_owned(), Value::from(method)),
            ("htu".to_owned(), Value::from(url)),
            ("iat".to_owned(), Value::from(NumericDate::now().as_secs())),
            ("ath".to_owned(), Value::from(ath)),
        ]);
        let header = Map::from_iter([
            ("typ".to_owned(), Value::from("dpop+jwt")),
            ("alg".to_owned(), Value::from("ES256")),
            ("jwk".to_owned(), self.jwk()),
        ]);
        ProofBuilder {
            key: self.clone(),
            header,
            claims,
        }
    }
}

/// One DPoP proof being built. Made by [`DpopKey::proof_builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ProofBuilder {
    key: DpopKey,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl ProofBuilder {
    /// Sets any claim (`jti`, `htm`, `htu`, `iat`, `ath`, `nonce`, …).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets any header member (`typ`, `alg`, `jwk`, …).
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// Sets the server nonce.
    pub fn nonce(self, nonce: &str) -> Self {
        self.claim("nonce", nonce)
    }

    /// Signs with the key (ES256), whatever `alg` the header says.
    pub fn sign(self) -> String {
        let input = format!(
            "{}.{}",
            b64(serde_json::to_vec(&self.header).expect("header JSON")),
            b64(serde_json::to_vec(&self.claims).expect("claims JSON"))
        );
        let signature = self
            .key
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ES256 signature");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}
