//! Certificate-bound access tokens (RFC 8705): a token whose
//! `cnf["x5t#S256"]` is a client certificate's thumbprint is accepted only
//! from a request authenticated by that certificate.
//!
//! Over real TLS first: a rustls server on loopback asking for (not
//! requiring) client certificates of a test CA, which puts each connection's
//! verified certificate into the requests' extensions (as
//! `examples/mtls.rs` does), and reqwest clients with and without an
//! identity. The certificates are generated here with rcgen. Then through
//! Routers without TLS: the RFC 9440 `Client-Cert` header of a trusted proxy
//! (every malformed form), the certificate of the connection, no mTLS at
//! all, and tokens bound both to a DPoP key and to a certificate.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokenguard::testing::{DpopKey, TestIssuer};
use tokenguard::{
    AccessTokenClaims, AuthErrorKind, BuildError, Claims, ClientCertificate, DpopConfig,
    InvalidToken, MtlsConfig, TokenGuard, TokenGuardBuilder,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tower::{ServiceBuilder, ServiceExt};

/// The audience of the tokens.
const AUD: &str = "https://api.example.com";
/// The public URL of the API, for DPoP proofs (`DpopConfig::new`).
const PUBLIC: &str = "https://api.example.com";
/// The DPoP default proof algorithms, as the `DPoP` challenge lists them.
const ALGS: &str = "ES256 ES384 EdDSA RS256 PS256";
/// The trusted proxy's header.
const CLIENT_CERT: &str = "client-cert";

// The descriptions of `src/error.rs`.
const MISMATCH: &str =
    "The access token is bound to a client certificate this request did not present";
const REQUIRED: &str = "The access token must be bound to a client certificate";
const SENDER_CONSTRAINED: &str =
    "The access token is bound to a key and cannot be used as a bearer token";
const MALFORMED_HEADER: &str = "Malformed client certificate header";
const INVALID_CLAIM: &str = "The access token has an invalid claim";
const KEY_MISMATCH: &str = "The access token is bound to another key";
const PROOF_MISSING: &str = "A DPoP proof is required";

// ---------------------------------------------------------------------------
// Certificates.

/// A test CA, and the client certificates it issues.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate of the CA and its key.
struct Leaf {
    der: Vec<u8>,
    pem: String,
    key: KeyPair,
}

impl Leaf {
    fn client_certificate(&self) -> ClientCertificate {
        ClientCertificate::from_der(self.der.clone())
    }

    /// What a token bound to this certificate carries.
    fn thumbprint(&self) -> String {
        self.client_certificate().thumbprint()
    }

    /// The RFC 9440 header value: an RFC 8941 byte sequence of the DER.
    fn header_value(&self) -> String {
        format!(":{}:", STANDARD.encode(&self.der))
    }

    /// A reqwest identity (certificate then PKCS#8 key, PEM).
    fn identity(&self) -> reqwest::Identity {
        let pem = format!("{}{}", self.pem, self.key.serialize_pem());
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
    }
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn issue(&self, name: &str, sans: &[&str], eku: rcgen::ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
        }
    }

    fn client(&self, name: &str) -> Leaf {
        self.issue(name, &[], ClientAuth)
    }
}

// ---------------------------------------------------------------------------
// The TLS server and its clients.

/// The acceptor of `examples/mtls.rs`: every request of a connection
/// carries the certificate the connection was verified with.
async fn serve_mtls(listener: TcpListener, tls: Arc<ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| ClientCertificate::from_der(der.to_vec()));
            let app = ServiceBuilder::new()
                .option_layer(cert.map(Extension))
                .service(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}

/// An HTTPS server on loopback for `app`, asking for client certificates of
/// `pki` and taking clients without one; its `https://127.0.0.1:PORT` URL.
/// It lives as long as the test's runtime.
async fn https_server(pki: &Pki, app: Router) -> String {
    let server = pki.issue("localhost", &["127.0.0.1", "localhost"], ServerAuth);
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .unwrap();
    let tls = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.der.into()],
            PrivatePkcs8KeyDer::from(server.key.serialize_der()).into(),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(serve_mtls(listener, Arc::new(tls), app));
    url
}

/// A client trusting only `pki`'s CA, presenting `identity` if any.
fn https_client(pki: &Pki, identity: Option<&Leaf>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_der(pki.ca.der()).unwrap();
    let builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .timeout(Duration::from_secs(10));
    match identity {
        Some(leaf) => builder.identity(leaf.identity()),
        None => builder,
    }
    .build()
    .unwrap()
}

/// `GET url` with `Authorization: Bearer <token>` and the `extra` headers:
/// the status, the `WWW-Authenticate` values and the body.
async fn https_get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Vec<String>, String) {
    let mut req = client.get(url).bearer_auth(token);
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let challenges = res
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, challenges, res.text().await.unwrap())
}

// ---------------------------------------------------------------------------
// The API, tokens and assertions.

/// `GET /whoami`: the token's `sub` and the thumbprint of the request's
/// client certificate (`-` for none), behind `guard`'s layer.
fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(
                |Claims(claims): Claims<AccessTokenClaims>,
                 cert: Option<Extension<ClientCertificate>>| async move {
                    let cert = cert.map_or("-".to_owned(), |Extension(c)| c.thumbprint());
                    format!("{} {cert}", claims.sub.clone().unwrap_or_default())
                },
            ),
        )
        .layer(guard.layer())
}

fn guard(issuer: &TestIssuer, mtls: MtlsConfig) -> TokenGuard {
    issuer.guard_builder(AUD).mtls(mtls).build().unwrap()
}

/// A token for [`AUD`] with this `sub`, bound by `cnf` if any.
fn mint(issuer: &TestIssuer, sub: &str, cnf: Option<Value>) -> String {
    let token = issuer.token().audience(AUD).subject(sub);
    match cnf {
        Some(cnf) => token.claim("cnf", cnf),
        None => token,
    }
    .mint()
}

/// A token bound to `leaf`.
fn bound_to(issuer: &TestIssuer, sub: &str, leaf: &Leaf) -> String {
    mint(issuer, sub, Some(json!({ "x5t#S256": leaf.thumbprint() })))
}

fn bearer_error(error: &str, description: &str) -> String {
    format!(r#"Bearer realm="api", error="{error}", error_description="{description}""#)
}

fn dpop_error(error: &str, description: &str) -> String {
    format!(
        r#"DPoP realm="api", error="{error}", error_description="{description}", algs="{ALGS}""#
    )
}

/// 401 `invalid_token` with this description on the Bearer challenge.
#[track_caller]
fn assert_https_refused(answer: &(StatusCode, Vec<String>, String), description: &str) {
    assert_eq!(
        (answer.0, answer.1.clone()),
        (
            StatusCode::UNAUTHORIZED,
            vec![bearer_error("invalid_token", description)]
        ),
        "{}",
        answer.2
    );
}

#[track_caller]
fn assert_https_ok(answer: &(StatusCode, Vec<String>, String), body: &str) {
    assert_eq!(
        (answer.0, answer.1.is_empty(), answer.2.as_str()),
        (StatusCode::OK, true, body),
        "{:?}",
        answer.1
    );
}

/// `GET /whoami` with `Authorization: <authorization>` and these headers
/// (one each, in order); `cert` in the extensions, as an acceptor puts it.
fn request(
    authorization: &str,
    headers: &[(&str, &str)],
    cert: Option<ClientCertificate>,
) -> Request<Body> {
    let mut req = Request::builder()
        .uri("/whoami")
        .header(header::AUTHORIZATION, authorization);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(cert) = cert {
        req.extensions_mut().insert(cert);
    }
    req
}

/// A bearer request with these headers and no certificate extension.
fn bearer(token: &str, headers: &[(&str, &str)]) -> Request<Body> {
    request(&format!("Bearer {token}"), headers, None)
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

fn challenges(res: &Response) -> Vec<String> {
    res.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// This status and exactly these challenges.
#[track_caller]
fn assert_refused(res: &Response, status: StatusCode, expected: &[&str]) {
    assert_eq!(
        (res.status(), challenges(res)),
        (status, to_strings(expected))
    );
}

fn to_strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[track_caller]
fn assert_invalid_token(res: &Response, description: &str) {
    assert_refused(
        res,
        StatusCode::UNAUTHORIZED,
        &[&bearer_error("invalid_token", description)],
    );
}

#[track_caller]
fn assert_malformed_header(res: &Response) {
    assert_refused(
        res,
        StatusCode::BAD_REQUEST,
        &[&bearer_error("invalid_request", MALFORMED_HEADER)],
    );
}

async fn assert_ok(res: Response, body: &str) {
    assert_eq!(res.status(), StatusCode::OK, "{:?}", challenges(&res));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), body);
}

// ---------------------------------------------------------------------------
// Over TLS.

#[tokio::test]
async fn a_bound_token_is_accepted_only_over_its_certificate() {
    let pki = Pki::new("test CA");
    let (alice, mallory) = (pki.client("alice"), pki.client("mallory"));
    let issuer = TestIssuer::new();
    let url = https_server(&pki, app(&guard(&issuer, MtlsConfig::from_connection()))).await;
    let url = format!("{url}/whoami");
    let token = bound_to(&issuer, "alice", &alice);
    let as_alice = https_client(&pki, Some(&alice));
    let as_mallory = https_client(&pki, Some(&mallory));
    let anonymous = https_client(&pki, None);

    let ok = format!("alice {}", alice.thumbprint());
    assert_https_ok(&https_get(&as_alice, &url, &token, &[]).await, &ok);
    // Another certificate of the same CA: the TLS handshake succeeds, the
    // binding does not.
    assert_https_refused(&https_get(&as_mallory, &url, &token, &[]).await, MISMATCH);
    // No certificate (the server does not require one).
    assert_https_refused(&https_get(&anonymous, &url, &token, &[]).await, MISMATCH);
    // The binding is checked on every request, verified-token cache hits
    // included, and on every request of a kept-alive connection.
    for _ in 0..3 {
        assert_https_ok(&https_get(&as_alice, &url, &token, &[]).await, &ok);
        assert_https_refused(&https_get(&as_mallory, &url, &token, &[]).await, MISMATCH);
    }
    // A `Client-Cert` header is not a certificate here: only the
    // connection's is believed.
    let header = alice.header_value();
    let forged = [(CLIENT_CERT, header.as_str())];
    assert_https_refused(
        &https_get(&anonymous, &url, &token, &forged).await,
        MISMATCH,
    );
    assert_https_refused(
        &https_get(&as_mallory, &url, &token, &forged).await,
        MISMATCH,
    );

    // Mallory's own token, over mallory's certificate.
    let hers = bound_to(&issuer, "mallory", &mallory);
    let ok = format!("mallory {}", mallory.thumbprint());
    assert_https_ok(&https_get(&as_mallory, &url, &hers, &[]).await, &ok);
    assert_https_refused(&https_get(&as_alice, &url, &hers, &[]).await, MISMATCH);
}

#[tokio::test]
async fn an_unbound_token_is_accepted_with_or_without_a_certificate() {
    let pki = Pki::new("test CA");
    let alice = pki.client("alice");
    let issuer = TestIssuer::new();
    let url = https_server(&pki, app(&guard(&issuer, MtlsConfig::from_connection()))).await;
    let url = format!("{url}/whoami");
    let token = mint(&issuer, "bob", None);

    let with_cert = format!("bob {}", alice.thumbprint());
    assert_https_ok(
        &https_get(&https_client(&pki, Some(&alice)), &url, &token, &[]).await,
        &with_cert,
    );
    assert_https_ok(
        &https_get(&https_client(&pki, None), &url, &token, &[]).await,
        "bob -",
    );
}

#[tokio::test]
async fn require_bound_tokens_refuses_an_unbound_token() {
    let pki = Pki::new("test CA");
    let alice = pki.client("alice");
    let issuer = TestIssuer::new();
    let config = MtlsConfig::from_connection().require_bound_tokens();
    let url = https_server(&pki, app(&guard(&issuer, config))).await;
    let url = format!("{url}/whoami");
    let as_alice = https_client(&pki, Some(&alice));

    let unbound = mint(&issuer, "bob", None);
    assert_https_refused(&https_get(&as_alice, &url, &unbound, &[]).await, REQUIRED);
    assert_https_refused(
        &https_get(&https_client(&pki, None), &url, &unbound, &[]).await,
        REQUIRED,
    );
    // A DPoP-bound token is not certificate-bound either.
    let dpop_only = mint(
        &issuer,
        "bob",
        Some(json!({"jkt": DpopKey::new().thumbprint()})),
    );
    assert_https_refused(&https_get(&as_alice, &url, &dpop_only, &[]).await, REQUIRED);
    // Control: a bound token over its certificate.
    let bound = bound_to(&issuer, "alice", &alice);
    let ok = format!("alice {}", alice.thumbprint());
    assert_https_ok(&https_get(&as_alice, &url, &bound, &[]).await, &ok);
}

#[tokio::test]
async fn a_certificate_of_another_ca_does_not_get_through_the_handshake() {
    let pki = Pki::new("test CA");
    let stranger = Pki::new("another CA").client("alice");
    let issuer = TestIssuer::new();
    let url = https_server(&pki, app(&guard(&issuer, MtlsConfig::from_connection()))).await;
    // Bound to the stranger's certificate: the guard would accept it, but
    // the acceptor verifies certificates against its CA first.
    let token = bound_to(&issuer, "alice", &stranger);
    let res = https_client(&pki, Some(&stranger))
        .get(format!("{url}/whoami"))
        .bearer_auth(&token)
        .send()
        .await;
    // TLS 1.3: the client learns it from the server's alert.
    let err = format!("{:?}", res.expect_err("a certificate of another CA"));
    assert!(err.contains("UnknownCA"), "{err}");
}

// ---------------------------------------------------------------------------
// Behind a TLS-terminating proxy: the RFC 9440 header.

#[tokio::test]
async fn the_proxy_header_carries_the_certificate() {
    let pki = Pki::new("test CA");
    let (alice, mallory) = (pki.client("alice"), pki.client("mallory"));
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, MtlsConfig::from_proxy_header(CLIENT_CERT)));
    let token = bound_to(&issuer, "alice", &alice);
    let alice_header = alice.header_value();
    let mallory_header = mallory.header_value();

    // The handler sees no certificate extension: the header is the guard's.
    let ok = "alice -";
    assert_ok(
        send(&app, bearer(&token, &[(CLIENT_CERT, &alice_header)])).await,
        ok,
    )
    .await;
    // Header names are case-insensitive; spaces around a field are not part
    // of it (RFC 8941 §4.2).
    let spaced = format!("  {alice_header} ");
    assert_ok(
        send(&app, bearer(&token, &[("Client-Cert", &spaced)])).await,
        ok,
    )
    .await;
    assert_invalid_token(
        &send(&app, bearer(&token, &[(CLIENT_CERT, &mallory_header)])).await,
        MISMATCH,
    );
    assert_invalid_token(&send(&app, bearer(&token, &[])).await, MISMATCH);
    // The connection's own certificate is the proxy's, never the client's.
    let from_proxy = request(
        &format!("Bearer {token}"),
        &[],
        Some(alice.client_certificate()),
    );
    assert_invalid_token(&send(&app, from_proxy).await, MISMATCH);

    // An unbound token needs no header.
    let unbound = mint(&issuer, "bob", None);
    assert_ok(send(&app, bearer(&unbound, &[])).await, "bob -").await;
    assert_ok(
        send(&app, bearer(&unbound, &[(CLIENT_CERT, &mallory_header)])).await,
        "bob -",
    )
    .await;
}

#[tokio::test]
async fn a_proxy_header_name_is_case_insensitive_in_the_configuration_too() {
    let alice = Pki::new("test CA").client("alice");
    let issuer = TestIssuer::new();
    let app = app(&guard(
        &issuer,
        MtlsConfig::from_proxy_header("Client-Cert"),
    ));
    let token = bound_to(&issuer, "alice", &alice);
    assert_ok(
        send(
            &app,
            bearer(&token, &[(CLIENT_CERT, &alice.header_value())]),
        )
        .await,
        "alice -",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_proxy_header_is_a_bad_request() {
    let pki = Pki::new("test CA");
    let alice = pki.client("alice");
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, MtlsConfig::from_proxy_header(CLIENT_CERT)));
    let bound = bound_to(&issuer, "alice", &alice);
    let unbound = mint(&issuer, "bob", None);
    let b64 = STANDARD.encode(&alice.der);
    let b64url = URL_SAFE_NO_PAD.encode(&alice.der);
    let good = alice.header_value();

    let malformed = [
        // Not a byte sequence.
        b64.clone(),
        format!(":{b64}"),
        format!("{b64}:"),
        format!("\"{b64}\""),
        "::".to_owned(),
        ":".to_owned(),
        // Not base64 (base64url is not the alphabet of RFC 8941).
        format!(":{b64url}:"),
        ":not base64!:".to_owned(),
        format!(": {b64} :"),
        // A PEM certificate, as some proxies send (not RFC 9440).
        format!("-----BEGIN%20CERTIFICATE-----%0A{b64}%0A-----END%20CERTIFICATE-----%0A"),
        // A list.
        format!("{good}, {good}"),
        format!("{good},{}", pki.client("mallory").header_value()),
        // Parameters (RFC 9440 §2.2 defines none).
        format!("{good};a=1"),
        format!("{good};chain"),
    ];
    for value in &malformed {
        let headers = [(CLIENT_CERT, value.as_str())];
        assert_malformed_header(&send(&app, bearer(&bound, &headers)).await);
        // Whatever the token: the header is read before the token is
        // verified.
        assert_malformed_header(&send(&app, bearer(&unbound, &headers)).await);
    }

    // Twice, even the same good value.
    for values in [[&good, &good], [&good, &b64]] {
        let headers = [
            (CLIENT_CERT, values[0].as_str()),
            (CLIENT_CERT, values[1].as_str()),
        ];
        assert_malformed_header(&send(&app, bearer(&bound, &headers)).await);
    }
    // Control: once, it is the certificate.
    assert_ok(
        send(&app, bearer(&bound, &[(CLIENT_CERT, &good)])).await,
        "alice -",
    )
    .await;
}

#[test]
fn a_proxy_header_name_must_be_a_header_name() {
    let build = |name: &str| {
        TestIssuer::new()
            .guard_builder(AUD)
            .mtls(MtlsConfig::from_proxy_header(name))
            .build()
    };
    for name in ["", "client cert", "client-cert:", "client\ncert"] {
        let err = build(name).expect_err(name);
        assert!(
            matches!(err, BuildError::InvalidMtlsConfig(_)),
            "{name:?}: {err:?}"
        );
    }
    // Headers that carry something else: a slip of configuration that would
    // make the guard read a token or a cookie as a certificate.
    for name in ["Authorization", "dpop", "Cookie", "host", "Forwarded"] {
        let err = build(name).expect_err(name);
        assert!(
            matches!(&err, BuildError::InvalidMtlsConfig(m) if m.contains("other data")),
            "{name:?}: {err:?}"
        );
    }
    for name in ["client-cert", "x-client-cert", "ssl-client-cert"] {
        assert!(build(name).is_ok(), "{name}");
    }
}

// ---------------------------------------------------------------------------
// The connection's certificate, and no mTLS.

#[tokio::test]
async fn from_connection_never_reads_the_header() {
    let pki = Pki::new("test CA");
    let (alice, mallory) = (pki.client("alice"), pki.client("mallory"));
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, MtlsConfig::from_connection()));
    let token = bound_to(&issuer, "alice", &alice);
    let authorization = format!("Bearer {token}");
    let header = alice.header_value();

    // Only the header: refused.
    assert_invalid_token(
        &send(&app, bearer(&token, &[(CLIENT_CERT, &header)])).await,
        MISMATCH,
    );
    // The header does not override the connection's certificate.
    let req = request(
        &authorization,
        &[(CLIENT_CERT, &header)],
        Some(mallory.client_certificate()),
    );
    assert_invalid_token(&send(&app, req).await, MISMATCH);
    // Nor is a malformed one an error: it is not read at all.
    let unbound = mint(&issuer, "bob", None);
    assert_ok(
        send(
            &app,
            bearer(&unbound, &[(CLIENT_CERT, "junk"), (CLIENT_CERT, "::")]),
        )
        .await,
        "bob -",
    )
    .await;

    // The certificate in the extensions is.
    let ok = format!("alice {}", alice.thumbprint());
    let req = request(&authorization, &[], Some(alice.client_certificate()));
    assert_ok(send(&app, req).await, &ok).await;
    let req = request(
        &authorization,
        &[(CLIENT_CERT, "junk")],
        Some(alice.client_certificate()),
    );
    assert_ok(send(&app, req).await, &ok).await;
}

#[tokio::test]
async fn without_mtls_a_certificate_bound_token_is_refused() {
    let alice = Pki::new("test CA").client("alice");
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let app = app(&guard);
    let token = bound_to(&issuer, "alice", &alice);
    let authorization = format!("Bearer {token}");

    assert_invalid_token(&send(&app, bearer(&token, &[])).await, SENDER_CONSTRAINED);
    assert_invalid_token(
        &send(
            &app,
            bearer(&token, &[(CLIENT_CERT, &alice.header_value())]),
        )
        .await,
        SENDER_CONSTRAINED,
    );
    let req = request(&authorization, &[], Some(alice.client_certificate()));
    assert_invalid_token(&send(&app, req).await, SENDER_CONSTRAINED);
    let err = guard.verify(&token).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::SenderConstrained)
    );
    // Control: an unbound token.
    let unbound = mint(&issuer, "bob", None);
    assert_ok(send(&app, bearer(&unbound, &[])).await, "bob -").await;
}

#[tokio::test]
async fn verify_without_a_request_refuses_a_certificate_bound_token() {
    let alice = Pki::new("test CA").client("alice");
    let issuer = TestIssuer::new();
    let guard = guard(&issuer, MtlsConfig::from_connection());
    let err = guard
        .verify(&bound_to(&issuer, "alice", &alice))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &AuthErrorKind::InvalidToken(InvalidToken::CertificateMismatch)
    );
    guard.verify(&mint(&issuer, "bob", None)).await.unwrap();
}

#[tokio::test]
async fn a_malformed_certificate_binding_is_an_invalid_claim() {
    let alice = Pki::new("test CA").client("alice");
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, MtlsConfig::from_connection()));
    for x5t in [
        json!(42),
        json!(null),
        json!([alice.thumbprint()]),
        json!({}),
    ] {
        let token = mint(&issuer, "alice", Some(json!({ "x5t#S256": x5t })));
        let req = request(
            &format!("Bearer {token}"),
            &[],
            Some(alice.client_certificate()),
        );
        assert_invalid_token(&send(&app, req).await, INVALID_CLAIM);
    }
    // Another hash of the certificate (SHA-1, `x5t`) is not this binding,
    // and the thumbprint is of the DER, base64url without padding.
    let sha256 = sha2::Sha256::digest(&alice.der);
    for wrong in [
        URL_SAFE_NO_PAD.encode(sha256).to_uppercase(),
        base64::engine::general_purpose::URL_SAFE.encode(sha256),
        STANDARD.encode(sha256),
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(alice.pem.as_bytes())),
    ] {
        if wrong == alice.thumbprint() {
            continue;
        }
        let token = mint(&issuer, "alice", Some(json!({ "x5t#S256": wrong })));
        let req = request(
            &format!("Bearer {token}"),
            &[],
            Some(alice.client_certificate()),
        );
        assert_invalid_token(&send(&app, req).await, MISMATCH);
    }
    // Control, computed here: base64url(SHA-256(DER)).
    assert_eq!(alice.thumbprint(), URL_SAFE_NO_PAD.encode(sha256));
    // Other `cnf` members next to the binding are ignored.
    let token = mint(
        &issuer,
        "alice",
        Some(json!({ "x5t#S256": alice.thumbprint(), "x5t": "ignored" })),
    );
    let req = request(
        &format!("Bearer {token}"),
        &[],
        Some(alice.client_certificate()),
    );
    assert_ok(
        send(&app, req).await,
        &format!("alice {}", alice.thumbprint()),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Bound to a DPoP key and to a certificate.

fn dpop_mtls_guard(issuer: &TestIssuer) -> TokenGuardBuilder {
    issuer
        .guard_builder(AUD)
        .dpop(DpopConfig::new(PUBLIC))
        .mtls(MtlsConfig::from_proxy_header(CLIENT_CERT))
}

#[tokio::test]
async fn a_token_bound_twice_needs_both_bindings() {
    let pki = Pki::new("test CA");
    let (alice, mallory) = (pki.client("alice"), pki.client("mallory"));
    let issuer = TestIssuer::new();
    let app = app(&dpop_mtls_guard(&issuer).build().unwrap());
    let key = DpopKey::new();
    let token = mint(
        &issuer,
        "alice",
        Some(json!({"jkt": key.thumbprint(), "x5t#S256": alice.thumbprint()})),
    );
    let url = format!("{PUBLIC}/whoami");
    let dpop = format!("DPoP {token}");
    let cert = alice.header_value();
    let bearer_bare = r#"Bearer realm="api""#;

    // Both: accepted (with a fresh proof each time).
    for _ in 0..2 {
        let proof = key.proof("GET", &url, &token);
        let req = request(&dpop, &[(CLIENT_CERT, &cert), ("dpop", &proof)], None);
        assert_ok(send(&app, req).await, "alice -").await;
    }

    // The proof without the certificate, or with another one.
    let proof = key.proof("GET", &url, &token);
    assert_refused(
        &send(&app, request(&dpop, &[("dpop", &proof)], None)).await,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_token", MISMATCH), bearer_bare],
    );
    let proof = key.proof("GET", &url, &token);
    let other = mallory.header_value();
    assert_refused(
        &send(
            &app,
            request(&dpop, &[(CLIENT_CERT, &other), ("dpop", &proof)], None),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_token", MISMATCH), bearer_bare],
    );

    // The certificate without the proof: as a bearer token, or with the DPoP
    // scheme and no proof, or a proof by another key.
    assert_refused(
        &send(&app, bearer(&token, &[(CLIENT_CERT, &cert)])).await,
        StatusCode::UNAUTHORIZED,
        &[
            &bearer_error("invalid_token", SENDER_CONSTRAINED),
            &format!(r#"DPoP realm="api", algs="{ALGS}""#),
        ],
    );
    assert_refused(
        &send(&app, request(&dpop, &[(CLIENT_CERT, &cert)], None)).await,
        StatusCode::UNAUTHORIZED,
        &[
            &dpop_error("invalid_dpop_proof", PROOF_MISSING),
            bearer_bare,
        ],
    );
    let stranger = DpopKey::new().proof("GET", &url, &token);
    assert_refused(
        &send(
            &app,
            request(&dpop, &[(CLIENT_CERT, &cert), ("dpop", &stranger)], None),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error("invalid_token", KEY_MISMATCH), bearer_bare],
    );

    // Control: still accepted with both.
    let proof = key.proof("GET", &url, &token);
    let req = request(&dpop, &[(CLIENT_CERT, &cert), ("dpop", &proof)], None);
    assert_ok(send(&app, req).await, "alice -").await;
}

#[tokio::test]
async fn a_token_bound_twice_is_refused_when_either_binding_is_not_configured() {
    let alice = Pki::new("test CA").client("alice");
    let issuer = TestIssuer::new();
    let key = DpopKey::new();
    let token = mint(
        &issuer,
        "alice",
        Some(json!({"jkt": key.thumbprint(), "x5t#S256": alice.thumbprint()})),
    );
    let url = format!("{PUBLIC}/whoami");
    let cert = alice.header_value();

    // DPoP only: the certificate binding cannot be checked.
    let dpop_only = app(&issuer
        .guard_builder(AUD)
        .dpop(DpopConfig::new(PUBLIC))
        .build()
        .unwrap());
    let proof = key.proof("GET", &url, &token);
    let req = request(
        &format!("DPoP {token}"),
        &[(CLIENT_CERT, &cert), ("dpop", &proof)],
        None,
    );
    assert_refused(
        &send(&dpop_only, req).await,
        StatusCode::UNAUTHORIZED,
        &[
            &dpop_error("invalid_token", SENDER_CONSTRAINED),
            r#"Bearer realm="api""#,
        ],
    );

    // mTLS only: a DPoP-bound token is no bearer token.
    let mtls_only = app(&guard(&issuer, MtlsConfig::from_proxy_header(CLIENT_CERT)));
    assert_invalid_token(
        &send(&mtls_only, bearer(&token, &[(CLIENT_CERT, &cert)])).await,
        SENDER_CONSTRAINED,
    );
}
