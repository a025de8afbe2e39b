//! DPoP (RFC 9449) against implementations tokenguard did not write: the
//! access tokens are bound by the real authorization server (oidc-provider,
//! `interop/server.mjs`: a client credentials request with a `DPoP` proof
//! gets `token_type: DPoP` and `cnf.jkt`), and every proof, for the token
//! endpoint and for the API, is made by panva's `jose` (`interop/dpop.mjs`, a
//! child process that keeps its key pairs by name, so that one key signs the
//! token request and the API requests).
//!
//! The API is an axum [`Router`] behind `guard.layer()` whose public URL is
//! [`PUBLIC_URL`]: a proof's `htu` is [`PUBLIC_URL`] + the request path.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, Request, StatusCode, header};
use serde_json::{Value, json};
use tokenguard::{
    ClientAuth, DpopConfig, IntrospectionConfig, InvalidToken, NonceConfig, TokenGuard,
};
use tower::ServiceExt;

use super::{
    CLIENT_ID, CLIENT_SECRET, ED25519_API, EDDSA_API, ES256_API, INSTALL_NODE, PS256_API,
    RS256_API, access_token, app, assert_ok, assert_refused, blocking, decode, endpoints,
    ensure_node, form, get_json, guard_builder, http_client, interop_dir, shared_server,
};

// ---------------------------------------------------------------------------
// The API, and what interop/server.mjs configures.
// ---------------------------------------------------------------------------

/// The URL clients call the API at (`DpopConfig::new`).
const PUBLIC_URL: &str = "https://api.example.com";
/// The `algs` of the DPoP challenge: tokenguard's default proof algorithms.
const ALGS: &str = "ES256 ES384 EdDSA RS256 PS256";
/// The resource whose access tokens are opaque (introspected).
const OPAQUE_API: &str = "https://api.example.com/opaque";
const RS_BASIC_ID: &str = "tokenguard-rs-basic";
const RS_BASIC_SECRET: &str = "tokenguard-rs-basic-secret-0123456789abcdef";

/// The bare Bearer challenge that accompanies a DPoP one.
const BEARER: &str = r#"Bearer realm="api""#;
const BOUND_AS_BEARER: &str =
    "The access token is bound to a key and cannot be used as a bearer token";
const ANOTHER_KEY: &str = "The access token is bound to another key";

// ---------------------------------------------------------------------------
// jose, through interop/dpop.mjs.
// ---------------------------------------------------------------------------

/// The running `interop/dpop.mjs`: one JSON request per line on its stdin,
/// one JSON answer per line on its stdout. Shared by the tests (requests are
/// serialized); it exits when this process goes away (its stdin closes).
struct ProofMaker {
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    _child: Child,
    /// What it printed on stderr, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

fn proof_maker() -> &'static ProofMaker {
    static MAKER: OnceLock<ProofMaker> = OnceLock::new();
    MAKER.get_or_init(|| {
        ensure_node();
        let mut child = Command::new("node")
            .arg("dpop.mjs")
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\ncannot run node: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let stderr_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                stderr_log.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        ProofMaker {
            io: Mutex::new((stdin, stdout)),
            _child: child,
            log,
        }
    })
}

/// A proof made by jose.
#[derive(Debug, Clone)]
struct Proof {
    /// The compact JWS.
    proof: String,
    /// jose's RFC 7638 thumbprint of the public key.
    jkt: String,
    /// The public JWK.
    jwk: Value,
}

impl ProofMaker {
    fn make(&self, request: &Value) -> Proof {
        let answer = {
            let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
            let (stdin, stdout) = &mut *io;
            writeln!(stdin, "{request}")
                .and_then(|()| stdin.flush())
                .unwrap_or_else(|e| panic!("writing to dpop.mjs: {e}; {}", self.stderr()));
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(n) if n > 0 => line,
                other => panic!("dpop.mjs did not answer ({other:?}); {}", self.stderr()),
            }
        };
        let answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("dpop.mjs answered {answer:?}: {e}"));
        if let Some(error) = answer.get("error") {
            panic!(
                "dpop.mjs refused {request}: {}",
                error.as_str().unwrap_or_default()
            );
        }
        let field = |name: &str| {
            answer[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {answer}"))
                .to_owned()
        };
        Proof {
            proof: field("proof"),
            jkt: field("jkt"),
            jwk: answer["jwk"].clone(),
        }
    }

    fn stderr(&self) -> String {
        format!(
            "it printed on stderr:\n{}",
            self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
        )
    }
}

/// A key pair kept by dpop.mjs under a name of its own, generated by the
/// first proof it signs.
#[derive(Debug, Clone)]
struct JoseKey {
    name: String,
    alg: &'static str,
}

impl JoseKey {
    fn new(alg: &'static str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Self {
            name: format!("{alg}-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            alg,
        }
    }

    /// A proof for `htm` and `htu`; `extra` is merged into the request to
    /// dpop.mjs (`accessToken`, `nonce`, `iat`, `jti`, `headerOverrides`, …).
    async fn proof(&self, htm: &str, htu: &str, extra: Value) -> Proof {
        let mut request = json!({"key": self.name, "alg": self.alg, "htm": htm, "htu": htu});
        if let Value::Object(extra) = extra {
            request.as_object_mut().unwrap().extend(extra);
        }
        blocking(move || proof_maker().make(&request)).await
    }

    /// A proof for `method` on [`PUBLIC_URL`] + `path`, for `token` (its
    /// `ath` computed by node:crypto), merged with `extra`.
    async fn api_proof(&self, method: &str, path: &str, token: &str, extra: Value) -> String {
        let mut request = json!({"accessToken": token});
        if let Value::Object(extra) = extra {
            request.as_object_mut().unwrap().extend(extra);
        }
        self.proof(method, &format!("{PUBLIC_URL}{path}"), request)
            .await
            .proof
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

// ---------------------------------------------------------------------------
// DPoP-bound tokens from the server.
// ---------------------------------------------------------------------------

/// A DPoP-bound access token for `resource` through the client credentials
/// grant, the token request signed by `key` (a proof for the token endpoint:
/// htm POST, htu the endpoint, no `ath`; a `use_dpop_nonce` answer is
/// retried once with the server's nonce). Returns the token, the scope
/// granted and the key's thumbprint.
async fn dpop_access_token(
    http: &reqwest::Client,
    issuer: &str,
    resource: &str,
    scope: &str,
    key: &JoseKey,
) -> (String, String, String) {
    let token_endpoint = endpoints(http, issuer).await.token;
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let extra = nonce.as_ref().map_or(json!({}), |n| json!({"nonce": n}));
        let proof = key.proof("POST", &token_endpoint, extra).await;
        let res = http
            .post(&token_endpoint)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("DPoP", &proof.proof)
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ]))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let server_nonce = res
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.text().await.unwrap();
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("token endpoint answered {status} {body:?}: {e}"));
        if status == StatusCode::BAD_REQUEST
            && answer["error"] == "use_dpop_nonce"
            && nonce.is_none()
        {
            nonce = Some(server_nonce.expect("use_dpop_nonce without DPoP-Nonce"));
            continue;
        }
        assert_eq!(status, StatusCode::OK, "DPoP token request: {body}");
        assert_eq!(answer["token_type"], "DPoP", "{answer}");
        let token = answer["access_token"].as_str().unwrap().to_owned();
        if token.contains('.') {
            let (header, claims) = decode(&token);
            assert_eq!(header["typ"], "at+jwt", "{header}");
            assert_eq!(claims["aud"], resource, "{claims}");
            // The server's thumbprint of the proof key is jose's.
            assert_eq!(claims["cnf"], json!({"jkt": proof.jkt}), "{claims}");
        }
        return (
            token,
            answer["scope"].as_str().unwrap_or_default().to_owned(),
            proof.jkt,
        );
    }
    panic!("the token endpoint asked for a DPoP nonce twice");
}

// ---------------------------------------------------------------------------
// Requests to the API.
// ---------------------------------------------------------------------------

fn dpop_guard(issuer: &str) -> TokenGuard {
    guard_builder(issuer)
        .dpop(DpopConfig::new(PUBLIC_URL))
        .build()
        .unwrap()
}

/// `method uri` with `Authorization: <scheme> <token>` and one `DPoP`
/// header per proof.
fn request(method: &str, uri: &str, scheme: &str, token: &str, proofs: &[&str]) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("{scheme} {token}"));
    for proof in proofs {
        req = req.header(HeaderName::from_static("dpop"), *proof);
    }
    req.body(Body::empty()).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

/// `method /invoices` with the DPoP scheme and a fresh proof by `key`.
async fn dpop_call(app: &Router, key: &JoseKey, method: &str, token: &str) -> Response {
    let proof = key.api_proof(method, "/invoices", token, json!({})).await;
    send(app, request(method, "/invoices", "DPoP", token, &[&proof])).await
}

/// `method /invoices` as a bearer token.
async fn bearer_call(app: &Router, method: &str, token: &str) -> Response {
    send(app, request(method, "/invoices", "Bearer", token, &[])).await
}

/// Every `WWW-Authenticate` value, in order.
fn challenges(res: &Response) -> Vec<&str> {
    res.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn dpop_challenge(error: &str, description: &str) -> String {
    format!(
        r#"DPoP realm="api", error="{error}", error_description="{description}", algs="{ALGS}""#
    )
}

/// 401 with the error on the DPoP challenge, then the bare Bearer one.
#[track_caller]
fn assert_dpop_refused(res: &Response, error: &str, description: &str) {
    assert_eq!(
        (res.status(), challenges(res)),
        (
            StatusCode::UNAUTHORIZED,
            vec![dpop_challenge(error, description).as_str(), BEARER]
        )
    );
}

#[track_caller]
fn assert_proof_refused(res: &Response, description: &str) {
    assert_dpop_refused(res, "invalid_dpop_proof", description);
}

/// A bound token sent as a bearer token: 401 on the Bearer challenge (the
/// scheme the request used), then the bare DPoP one.
#[track_caller]
fn assert_bound_as_bearer(res: &Response) {
    assert_eq!(
        (res.status(), challenges(res)),
        (
            StatusCode::UNAUTHORIZED,
            vec![
                format!(
                    r#"Bearer realm="api", error="invalid_token", error_description="{BOUND_AS_BEARER}""#
                )
                .as_str(),
                format!(r#"DPoP realm="api", algs="{ALGS}""#).as_str(),
            ]
        )
    );
}

/// 403 on the DPoP challenge, naming `scope`.
#[track_caller]
fn assert_dpop_insufficient_scope(res: &Response, scope: &str) {
    assert_eq!(
        (res.status(), challenges(res)),
        (
            StatusCode::FORBIDDEN,
            vec![
                format!(
                    r#"DPoP realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="{scope}", algs="{ALGS}""#
                )
                .as_str(),
                BEARER,
            ]
        )
    );
}

// ---------------------------------------------------------------------------
// Tests: accepted, per proof algorithm.
// ---------------------------------------------------------------------------

/// A token bound by the server to a jose key of `alg`, for `api`: accepted
/// with jose's proofs, its scopes enforced on the DPoP challenge, refused as
/// a bearer token and without a proof.
async fn bound_token_accepted_with_jose_proofs(alg: &'static str, api: &str) {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new(alg);

    let (read_only, granted, jkt) =
        dpop_access_token(&http, &server.issuer, api, "read:invoices", &key).await;
    assert_eq!(granted, "read:invoices");
    assert_ok(dpop_call(&app, &key, "GET", &read_only).await, "[]").await;
    // Again, from the verified-token cache, with a new proof.
    assert_ok(dpop_call(&app, &key, "GET", &read_only).await, "[]").await;
    assert_dpop_insufficient_scope(
        &dpop_call(&app, &key, "POST", &read_only).await,
        "write:invoices",
    );

    // Not a bearer token, and not without a proof.
    assert_bound_as_bearer(&bearer_call(&app, "GET", &read_only).await);
    assert_refused(
        guard.verify(&read_only).await,
        InvalidToken::SenderConstrained,
    );
    assert_proof_refused(
        &send(&app, request("GET", "/invoices", "DPoP", &read_only, &[])).await,
        "A DPoP proof is required",
    );

    // The same key, another token: read and write.
    let (read_write, _, same) = dpop_access_token(
        &http,
        &server.issuer,
        api,
        "read:invoices write:invoices",
        &key,
    )
    .await;
    assert_eq!(same, jkt);
    assert_ok(dpop_call(&app, &key, "POST", &read_write).await, "created").await;
    assert_ok(dpop_call(&app, &key, "GET", &read_write).await, "[]").await;

    // Write only: the read route refuses it.
    let (write_only, _, _) =
        dpop_access_token(&http, &server.issuer, api, "write:invoices", &key).await;
    assert_dpop_insufficient_scope(
        &dpop_call(&app, &key, "GET", &write_only).await,
        "read:invoices",
    );
}

#[tokio::test]
async fn es256_proofs_of_jose_are_accepted() {
    bound_token_accepted_with_jose_proofs("ES256", ES256_API).await;
}

#[tokio::test]
async fn es384_proofs_of_jose_are_accepted() {
    bound_token_accepted_with_jose_proofs("ES384", ES256_API).await;
}

#[tokio::test]
async fn eddsa_proofs_of_jose_are_accepted() {
    bound_token_accepted_with_jose_proofs("EdDSA", EDDSA_API).await;
}

/// RFC 9864's fully-specified name for EdDSA with Ed25519.
#[tokio::test]
async fn ed25519_named_proofs_of_jose_are_accepted() {
    bound_token_accepted_with_jose_proofs("Ed25519", ED25519_API).await;
}

#[tokio::test]
async fn rs256_proofs_of_jose_are_accepted() {
    bound_token_accepted_with_jose_proofs("RS256", RS256_API).await;
}

#[tokio::test]
async fn ps256_proofs_of_jose_are_accepted() {
    bound_token_accepted_with_jose_proofs("PS256", PS256_API).await;
}

// ---------------------------------------------------------------------------
// Tests: the binding.
// ---------------------------------------------------------------------------

/// A valid proof by another key than the token's: refused on the DPoP
/// challenge as `invalid_token`, whatever that key's algorithm.
#[tokio::test]
async fn a_proof_by_another_jose_key_is_refused() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new("ES256");
    let (token, _, jkt) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;

    for alg in ["ES256", "EdDSA", "RS256"] {
        let other = JoseKey::new(alg);
        let res = dpop_call(&app, &other, "GET", &token).await;
        assert_dpop_refused(&res, "invalid_token", ANOTHER_KEY);
    }
    // The other key's own token is no use with this one's proof either.
    let other = JoseKey::new("ES256");
    let (theirs, _, their_jkt) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &other).await;
    assert_ne!(their_jkt, jkt);
    assert_dpop_refused(
        &dpop_call(&app, &key, "GET", &theirs).await,
        "invalid_token",
        ANOTHER_KEY,
    );
    // Control: each with its own key.
    assert_ok(dpop_call(&app, &key, "GET", &token).await, "[]").await;
    assert_ok(dpop_call(&app, &other, "GET", &theirs).await, "[]").await;
}

/// The proof of the token request is not a proof for the API: its `htu` is
/// the token endpoint (and it has no `ath`).
#[tokio::test]
async fn the_token_request_proof_is_refused_by_the_api() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new("ES256");
    let token_endpoint = endpoints(&http, &server.issuer).await.token;
    let (token, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;
    let for_the_server = key.proof("POST", &token_endpoint, json!({})).await.proof;
    let res = send(
        &app,
        request("POST", "/invoices", "DPoP", &token, &[&for_the_server]),
    )
    .await;
    assert_proof_refused(&res, "The DPoP proof is for another URI");
}

/// With DPoP on (not required), the server's unbound tokens stay bearer
/// tokens; with the DPoP scheme they are refused as not bound.
#[tokio::test]
async fn unbound_tokens_of_the_server_stay_bearer_tokens() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let (bearer, _) = access_token(&http, &server.issuer, ES256_API, "read:invoices").await;
    assert!(decode(&bearer).1.get("cnf").is_none());

    assert_ok(bearer_call(&app, "GET", &bearer).await, "[]").await;
    let key = JoseKey::new("ES256");
    assert_dpop_refused(
        &dpop_call(&app, &key, "GET", &bearer).await,
        "invalid_token",
        "The access token is not bound to a DPoP key",
    );

    // `required()`: only DPoP is offered, and the bearer token refused.
    let required = guard_builder(&server.issuer)
        .dpop(DpopConfig::new(PUBLIC_URL).required())
        .build()
        .unwrap();
    let strict = super::app(&required);
    let res = bearer_call(&strict, "GET", &bearer).await;
    assert_eq!(
        (res.status(), challenges(&res)),
        (
            StatusCode::UNAUTHORIZED,
            vec![
                dpop_challenge(
                    "invalid_token",
                    "The access token must be presented with a DPoP proof"
                )
                .as_str()
            ]
        )
    );
    let (bound, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;
    assert_ok(dpop_call(&strict, &key, "GET", &bound).await, "[]").await;
}

// ---------------------------------------------------------------------------
// Tests: RFC 9449 §4.3, one failing check per case.
// ---------------------------------------------------------------------------

/// One jose proof per check of RFC 9449 §4.3, each wrong in one way only
/// (the others are accepted, below): each refused with its own description.
#[tokio::test]
async fn each_proof_check_refuses_a_jose_proof() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new("ES256");
    let (token, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;
    let (other_token, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;
    let rsa = JoseKey::new("RS256");
    let rsa_jwk = rsa.proof("GET", PUBLIC_URL, json!({})).await.jwk;
    let stranger = JoseKey::new("ES256");
    let stranger_jwk = stranger.proof("GET", PUBLIC_URL, json!({})).await.jwk;
    let invoices = format!("{PUBLIC_URL}/invoices");
    let t = now();

    // (what, htm, htu, extra request fields for dpop.mjs, description)
    let cases: Vec<(&str, &str, String, Value, &str)> = vec![
        (
            "htm POST on a GET",
            "POST",
            invoices.clone(),
            json!({}),
            "The DPoP proof is for another HTTP method",
        ),
        (
            "htm in lowercase (methods are case-sensitive)",
            "get",
            invoices.clone(),
            json!({}),
            "The DPoP proof is for another HTTP method",
        ),
        (
            "htu with another path",
            "GET",
            format!("{PUBLIC_URL}/invoices/2"),
            json!({}),
            "The DPoP proof is for another URI",
        ),
        (
            "htu with another scheme",
            "GET",
            "http://api.example.com/invoices".into(),
            json!({}),
            "The DPoP proof is for another URI",
        ),
        (
            "htu with another port",
            "GET",
            "https://api.example.com:8443/invoices".into(),
            json!({}),
            "The DPoP proof is for another URI",
        ),
        (
            "htu with another host",
            "GET",
            "https://other.example.com/invoices".into(),
            json!({}),
            "The DPoP proof is for another URI",
        ),
        (
            "htu relative",
            "GET",
            "/invoices".into(),
            json!({}),
            "The DPoP proof is for another URI",
        ),
        (
            "iat 120 s old",
            "GET",
            invoices.clone(),
            json!({"iat": t - 120}),
            "The DPoP proof is too old",
        ),
        (
            "iat 60 s in the future",
            "GET",
            invoices.clone(),
            json!({"iat": t + 60}),
            "The DPoP proof was issued in the future",
        ),
        (
            "empty jti",
            "GET",
            invoices.clone(),
            json!({"jti": ""}),
            "The DPoP proof has no valid jti",
        ),
        (
            "jti of 257 bytes",
            "GET",
            invoices.clone(),
            json!({"jti": "j".repeat(257)}),
            "The DPoP proof has no valid jti",
        ),
        (
            "ath of another token",
            "GET",
            invoices.clone(),
            json!({"accessToken": other_token}),
            "The DPoP proof is for another access token",
        ),
        (
            "no ath",
            "GET",
            invoices.clone(),
            json!({"omit": ["ath"]}),
            "The DPoP proof is for another access token",
        ),
        (
            "the private JWK in the header",
            "GET",
            invoices.clone(),
            json!({"headerOverrides": {"jwk": "$private"}}),
            "The DPoP proof key holds private key material",
        ),
        (
            "typ JWT",
            "GET",
            invoices.clone(),
            json!({"typ": "JWT"}),
            "The DPoP proof is not typed dpop+jwt",
        ),
        (
            "typ at+jwt",
            "GET",
            invoices.clone(),
            json!({"typ": "at+jwt"}),
            "The DPoP proof is not typed dpop+jwt",
        ),
        (
            "alg none, signed",
            "GET",
            invoices.clone(),
            json!({"alg": "none", "signature": "c2lnbmF0dXJl"}),
            "The DPoP proof algorithm is not accepted",
        ),
        (
            "alg none, unsecured (empty signature)",
            "GET",
            invoices.clone(),
            json!({"alg": "none"}),
            "The DPoP proof is malformed",
        ),
        (
            "HS256 with the public JWK as the secret",
            "GET",
            invoices.clone(),
            json!({"alg": "HS256"}),
            "The DPoP proof algorithm is not accepted",
        ),
        (
            "ES512, not an accepted algorithm",
            "GET",
            invoices.clone(),
            json!({"alg": "ES512", "key": "es512-of-each-proof-check"}),
            "The DPoP proof algorithm is not accepted",
        ),
        (
            "signed by the key, the header naming another (EC) key",
            "GET",
            invoices.clone(),
            json!({"headerOverrides": {"jwk": stranger_jwk}}),
            "The DPoP proof signature is invalid",
        ),
        (
            "ES256 with an RSA key in the header",
            "GET",
            invoices.clone(),
            json!({"headerOverrides": {"jwk": rsa_jwk}}),
            "The DPoP proof key is invalid",
        ),
        (
            "a symmetric key in the header",
            "GET",
            invoices.clone(),
            json!({"headerOverrides": {"jwk": {"kty": "oct", "k": "c2VjcmV0"}}}),
            "The DPoP proof key holds private key material",
        ),
        (
            "no typ",
            "GET",
            invoices.clone(),
            json!({"headerOverrides": {"typ": null}}),
            "The DPoP proof is malformed",
        ),
        (
            "no jwk",
            "GET",
            invoices.clone(),
            json!({"headerOverrides": {"jwk": null}}),
            "The DPoP proof is malformed",
        ),
        (
            "no htu",
            "GET",
            invoices.clone(),
            json!({"omit": ["htu"]}),
            "The DPoP proof is malformed",
        ),
        (
            "no iat",
            "GET",
            invoices.clone(),
            json!({"omit": ["iat"]}),
            "The DPoP proof is malformed",
        ),
        (
            "htm not a string",
            "GET",
            invoices.clone(),
            json!({"claimOverrides": {"htm": ["GET"]}}),
            "The DPoP proof is malformed",
        ),
        (
            "iat a string",
            "GET",
            invoices.clone(),
            json!({"claimOverrides": {"iat": t.to_string()}}),
            "The DPoP proof is malformed",
        ),
    ];
    for (what, htm, htu, extra, description) in cases {
        let mut fields = json!({"accessToken": token});
        fields
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let proof = key.proof(htm, &htu, fields).await.proof;
        let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
        assert_eq!(
            (res.status(), challenges(&res)),
            (
                StatusCode::UNAUTHORIZED,
                vec![
                    dpop_challenge("invalid_dpop_proof", description).as_str(),
                    BEARER
                ]
            ),
            "{what}"
        );
    }

    // Not one proof: two headers, two proofs in one, none, not a JWS.
    let first = key.api_proof("GET", "/invoices", &token, json!({})).await;
    let second = key.api_proof("GET", "/invoices", &token, json!({})).await;
    let several = "More than one DPoP proof";
    let two_headers = request("GET", "/invoices", "DPoP", &token, &[&first, &second]);
    assert_proof_refused(&send(&app, two_headers).await, several);
    let joined = format!("{first}, {second}");
    let one_header = request("GET", "/invoices", "DPoP", &token, &[&joined]);
    assert_proof_refused(&send(&app, one_header).await, several);
    let none = request("GET", "/invoices", "DPoP", &token, &[]);
    assert_proof_refused(&send(&app, none).await, "A DPoP proof is required");
    let garbage = request("GET", "/invoices", "DPoP", &token, &["not-a-jws"]);
    assert_proof_refused(&send(&app, garbage).await, "The DPoP proof is malformed");

    // The bound token as a bearer token, with or without a proof.
    assert_bound_as_bearer(&bearer_call(&app, "GET", &token).await);
    let with_proof = request("GET", "/invoices", "Bearer", &token, &[&first]);
    assert_bound_as_bearer(&send(&app, with_proof).await);

    // Control: none of the proofs above was recorded (each failed before
    // the replay record), and the token is fine.
    assert_ok(
        send(&app, request("GET", "/invoices", "DPoP", &token, &[&first])).await,
        "[]",
    )
    .await;
}

/// RFC 9449 §4.2: `jti` is required. A jose proof without one is refused as
/// having no valid `jti` (`InvalidProof::InvalidJti`, documented as "`jti`
/// is missing, empty or too long").
#[tokio::test]
async fn a_jose_proof_without_jti_is_refused_for_its_jti() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new("ES256");
    let (token, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;
    let proof = key
        .api_proof("GET", "/invoices", &token, json!({"omit": ["jti"]}))
        .await;
    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
    assert_proof_refused(&res, "The DPoP proof has no valid jti");
}

/// What RFC 9449 §4.3 and RFC 3986 §6 leave to the proof: `htu` compared
/// without query and fragment, after normalization; `typ` with its
/// `application/` prefix; `iat` within the window (60 s old, 5 s ahead).
#[tokio::test]
async fn jose_proofs_within_the_rules_are_accepted() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new("ES256");
    let (token, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &key).await;
    let t = now();

    // (what, request URI, htu, extra request fields for dpop.mjs)
    let cases: Vec<(&str, &str, &str, Value)> = vec![
        (
            "htu with a query",
            "/invoices",
            "https://api.example.com/invoices?page=2",
            json!({}),
        ),
        (
            "htu with a fragment",
            "/invoices",
            "https://api.example.com/invoices#top",
            json!({}),
        ),
        (
            "a request with a query, htu without",
            "/invoices?page=2",
            "https://api.example.com/invoices",
            json!({}),
        ),
        (
            "a request and an htu with different queries",
            "/invoices?page=2",
            "https://api.example.com/invoices?page=3",
            json!({}),
        ),
        (
            "htu with the default port",
            "/invoices",
            "https://api.example.com:443/invoices",
            json!({}),
        ),
        (
            "htu with uppercase scheme and host",
            "/invoices",
            "HTTPS://API.EXAMPLE.COM/invoices",
            json!({}),
        ),
        (
            "htu with dot segments",
            "/invoices",
            "https://api.example.com/a/../invoices",
            json!({}),
        ),
        (
            "htu with a percent-encoded unreserved character",
            "/invoices",
            "https://api.example.com/%69nvoices",
            json!({}),
        ),
        (
            "typ application/dpop+jwt",
            "/invoices",
            "https://api.example.com/invoices",
            json!({"typ": "application/dpop+jwt"}),
        ),
        (
            "iat 50 s old",
            "/invoices",
            "https://api.example.com/invoices",
            json!({"iat": t - 50}),
        ),
        (
            "iat 3 s ahead",
            "/invoices",
            "https://api.example.com/invoices",
            json!({"iat": t + 3}),
        ),
        (
            "an unknown claim and header member",
            "/invoices",
            "https://api.example.com/invoices",
            json!({"claimOverrides": {"x": 1}, "headerOverrides": {"kid": "k"}}),
        ),
    ];
    for (what, uri, htu, extra) in cases {
        let mut fields = json!({"accessToken": token});
        fields
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let proof = key.proof("GET", htu, fields).await.proof;
        let res = send(&app, request("GET", uri, "DPoP", &token, &[&proof])).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{what}: {:?}",
            challenges(&res)
        );
    }
}

/// A proof is good once; a proof refused by an earlier check is not spent.
#[tokio::test]
async fn a_replayed_jose_proof_is_refused() {
    let server = shared_server().await;
    let http = http_client();
    let guard = dpop_guard(&server.issuer);
    let app = app(&guard);
    let key = JoseKey::new("EdDSA");
    let (token, _, _) =
        dpop_access_token(&http, &server.issuer, EDDSA_API, "read:invoices", &key).await;
    let (other, _, _) =
        dpop_access_token(&http, &server.issuer, EDDSA_API, "read:invoices", &key).await;

    let proof = key.api_proof("GET", "/invoices", &token, json!({})).await;
    // For another token first: refused before the replay record.
    let res = send(&app, request("GET", "/invoices", "DPoP", &other, &[&proof])).await;
    assert_proof_refused(&res, "The DPoP proof is for another access token");

    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
    assert_ok(res, "[]").await;
    for _ in 0..2 {
        let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
        assert_proof_refused(&res, "The DPoP proof was used before");
    }
    // A jti of its own is accepted, and so is a new proof reusing the jti of
    // another key (replays are keyed by thumbprint and jti).
    assert_ok(dpop_call(&app, &key, "GET", &token).await, "[]").await;
    let stranger = JoseKey::new("ES256");
    let (theirs, _, _) =
        dpop_access_token(&http, &server.issuer, ES256_API, "read:invoices", &stranger).await;
    let fixed = json!({"jti": "the-same-jti"});
    let mine = key
        .api_proof("GET", "/invoices", &token, fixed.clone())
        .await;
    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&mine])).await;
    assert_ok(res, "[]").await;
    let their = stranger.api_proof("GET", "/invoices", &theirs, fixed).await;
    let res = send(
        &app,
        request("GET", "/invoices", "DPoP", &theirs, &[&their]),
    )
    .await;
    assert_ok(res, "[]").await;
    // The same key and jti again, in another proof (its htu has a query,
    // which is ignored: EdDSA signatures are deterministic).
    let again = key
        .proof(
            "GET",
            &format!("{PUBLIC_URL}/invoices?again"),
            json!({"accessToken": token, "jti": "the-same-jti"}),
        )
        .await
        .proof;
    assert_ne!(again, mine);
    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&again])).await;
    assert_proof_refused(&res, "The DPoP proof was used before");
}

// ---------------------------------------------------------------------------
// Tests: server nonces.
// ---------------------------------------------------------------------------

/// Nonces on: a proof without one is answered 401 `use_dpop_nonce` with
/// `DPoP-Nonce`; jose's new proof with that nonce is accepted. A made-up
/// nonce, or one of another secret, is answered like a missing one.
#[tokio::test]
async fn the_dpop_nonce_round_trip_with_jose() {
    let server = shared_server().await;
    let http = http_client();
    let guard = guard_builder(&server.issuer)
        .dpop(DpopConfig::new(PUBLIC_URL).nonces(NonceConfig::new(vec![7u8; 32]).unwrap()))
        .build()
        .unwrap();
    let app = app(&guard);
    let key = JoseKey::new("ES256");
    let (token, _, _) = dpop_access_token(
        &http,
        &server.issuer,
        ES256_API,
        "read:invoices write:invoices",
        &key,
    )
    .await;
    let use_nonce = "Resend the request with the DPoP nonce given";
    let nonce_of = |res: &Response| -> String {
        res.headers()
            .get("dpop-nonce")
            .expect("a DPoP-Nonce header")
            .to_str()
            .unwrap()
            .to_owned()
    };

    let res = dpop_call(&app, &key, "GET", &token).await;
    assert_dpop_refused(&res, "use_dpop_nonce", use_nonce);
    let nonce = nonce_of(&res);
    assert!(
        !nonce.is_empty()
            && nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
        "{nonce:?}"
    );

    let with_nonce = json!({"nonce": nonce});
    let proof = key
        .api_proof("GET", "/invoices", &token, with_nonce.clone())
        .await;
    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
    assert_ok(res, "[]").await;
    // The nonce serves more proofs (stateless), each once.
    let proof = key
        .api_proof("POST", "/invoices", &token, with_nonce.clone())
        .await;
    let res = send(
        &app,
        request("POST", "/invoices", "DPoP", &token, &[&proof]),
    )
    .await;
    assert_ok(res, "created").await;
    let res = send(
        &app,
        request("POST", "/invoices", "DPoP", &token, &[&proof]),
    )
    .await;
    assert_proof_refused(&res, "The DPoP proof was used before");

    // Nonces that are not this guard's.
    let other = guard_builder(&server.issuer)
        .dpop(DpopConfig::new(PUBLIC_URL).nonces(NonceConfig::new(vec![8u8; 32]).unwrap()))
        .build()
        .unwrap();
    let res = dpop_call(&super::app(&other), &key, "GET", &token).await;
    assert_dpop_refused(&res, "use_dpop_nonce", use_nonce);
    let foreign = nonce_of(&res);
    assert_ne!(foreign, nonce);
    for bad in [foreign.as_str(), "made-up", &nonce[..nonce.len() - 1]] {
        let proof = key
            .api_proof("GET", "/invoices", &token, json!({"nonce": bad}))
            .await;
        let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
        assert_dpop_refused(&res, "use_dpop_nonce", use_nonce);
        assert!(!nonce_of(&res).is_empty());
    }

    // Other checks still come first: a proof by another key with a valid
    // nonce is refused for its key.
    let stranger = JoseKey::new("ES256");
    let proof = stranger
        .api_proof("GET", "/invoices", &token, with_nonce)
        .await;
    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
    assert_dpop_refused(&res, "invalid_token", ANOTHER_KEY);
    assert!(res.headers().get("dpop-nonce").is_none());
    // And the bound token is no bearer token here either.
    assert_bound_as_bearer(&bearer_call(&app, "GET", &token).await);
}

// ---------------------------------------------------------------------------
// Tests: introspected opaque tokens.
// ---------------------------------------------------------------------------

/// An opaque token bound by the server: the introspection answer carries
/// `cnf.jkt` (jose's thumbprint) and `token_type: DPoP`; the guard accepts
/// it with jose's proofs, enforces its scopes, and refuses it as a bearer
/// token or with another key's proof.
#[tokio::test]
async fn an_introspected_opaque_token_is_bound_too() {
    let server = shared_server().await;
    let http = http_client();
    let guard = TokenGuard::builder()
        .issuer(&server.issuer)
        .audience(OPAQUE_API)
        .introspection(IntrospectionConfig::new(ClientAuth::client_secret_basic(
            RS_BASIC_ID,
            RS_BASIC_SECRET,
        )))
        .dpop(DpopConfig::new(PUBLIC_URL))
        .build()
        .unwrap();
    let app = app(&guard);
    let key = JoseKey::new("PS256");
    let (token, granted, jkt) =
        dpop_access_token(&http, &server.issuer, OPAQUE_API, "read:invoices", &key).await;
    assert_eq!(granted, "read:invoices");
    assert!(!token.contains('.'), "an opaque token: {token}");

    // What the server says of it.
    let meta = get_json(
        &http,
        &format!("{}/.well-known/openid-configuration", server.issuer),
    )
    .await;
    let res = http
        .post(meta["introspection_endpoint"].as_str().unwrap())
        .basic_auth(RS_BASIC_ID, Some(RS_BASIC_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", &token),
            ("token_type_hint", "access_token"),
        ]))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["cnf"], json!({"jkt": jkt}), "{answer}");
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    assert_eq!(answer["aud"], OPAQUE_API, "{answer}");

    assert_ok(dpop_call(&app, &key, "GET", &token).await, "[]").await;
    assert_dpop_insufficient_scope(
        &dpop_call(&app, &key, "POST", &token).await,
        "write:invoices",
    );
    assert_bound_as_bearer(&bearer_call(&app, "GET", &token).await);
    assert_refused(guard.verify(&token).await, InvalidToken::SenderConstrained);
    let stranger = JoseKey::new("PS256");
    assert_dpop_refused(
        &dpop_call(&app, &stranger, "GET", &token).await,
        "invalid_token",
        ANOTHER_KEY,
    );
    let proof = key
        .api_proof("GET", "/invoices", &token, json!({"iat": now() - 120}))
        .await;
    let res = send(&app, request("GET", "/invoices", "DPoP", &token, &[&proof])).await;
    assert_proof_refused(&res, "The DPoP proof is too old");
    // Control: still accepted with a good proof.
    assert_ok(dpop_call(&app, &key, "GET", &token).await, "[]").await;
}
