//! Certificate-bound access tokens (RFC 8705 §3) from an implementation
//! tokenguard did not write: oidc-provider (`interop/server.mjs`) binds the
//! access tokens of its client [`MTLS_CLIENT_ID`] to the client certificate
//! of the token request, and the guard checks that binding.
//!
//! Both sit, as it were, behind one TLS-terminating proxy that forwards the
//! client's certificate in the RFC 9440 `Client-Cert` header (`:base64 DER:`),
//! which these tests set: on the token request (the server's `getCertificate`
//! reads it) and on the API requests, through a [`Router`] whose guard has
//! `MtlsConfig::from_proxy_header("client-cert")`. The certificates are
//! self-signed ones made here with rcgen: the proxy, not simulated here,
//! would have verified them.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, StatusCode, header};
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokenguard::{ClientAuth, ClientCertificate, IntrospectionConfig, InvalidToken, MtlsConfig};
use tower::ServiceExt;

use super::{
    APIS, ES256_API, RS256_API, access_token, app, assert_invalid_token, assert_ok, assert_refused,
    challenge, decode, endpoints, form, get_json, guard_builder, http_client, shared_server,
};

// ---------------------------------------------------------------------------
// What interop/server.mjs configures.
// ---------------------------------------------------------------------------

/// The client whose tokens are certificate-bound (client_secret_basic).
const MTLS_CLIENT_ID: &str = "tokenguard-interop-mtls";
const MTLS_CLIENT_SECRET: &str = "tokenguard-interop-mtls-secret-0123456789abcdef";
/// The RFC 9440 header of the proxy, read by the server and the guard.
const CLIENT_CERT: &str = "client-cert";
/// The resource whose access tokens are opaque (introspected).
const OPAQUE_API: &str = "https://api.example.com/opaque";
const RS_BASIC_ID: &str = "tokenguard-rs-basic";
const RS_BASIC_SECRET: &str = "tokenguard-rs-basic-secret-0123456789abcdef";

const MISMATCH: &str =
    "The access token is bound to a client certificate this request did not present";
const REQUIRED: &str = "The access token must be bound to a client certificate";
const BOUND_AS_BEARER: &str =
    "The access token is bound to a key and cannot be used as a bearer token";

// ---------------------------------------------------------------------------
// Certificates, tokens and requests.
// ---------------------------------------------------------------------------

/// A client certificate (DER), self-signed, new at every call.
fn certificate(name: &str) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

/// The `Client-Cert` value the proxy sets for `der`.
fn header_value(der: &[u8]) -> String {
    format!(":{}:", STANDARD.encode(der))
}

/// base64url(SHA-256(DER)), computed here.
fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// POSTs a client credentials request for `resource` as [`MTLS_CLIENT_ID`]
/// with `Client-Cert: <client_cert>` if any; the status and the JSON answer.
async fn mtls_token_request(
    http: &reqwest::Client,
    issuer: &str,
    resource: &str,
    scope: &str,
    client_cert: Option<&str>,
) -> (StatusCode, Value) {
    let token_endpoint = endpoints(http, issuer).await.token;
    let mut req = http
        .post(&token_endpoint)
        .basic_auth(MTLS_CLIENT_ID, Some(MTLS_CLIENT_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", scope),
        ]));
    if let Some(value) = client_cert {
        req = req.header(CLIENT_CERT, value);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    let answer = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("token endpoint answered {status} {body:?}: {e}"));
    (status, answer)
}

/// An access token for `resource` bound by the server to `der`; the token
/// and the scope granted. A JWT's `cnf` is checked to be exactly the
/// certificate's thumbprint.
async fn bound_access_token(
    http: &reqwest::Client,
    issuer: &str,
    resource: &str,
    scope: &str,
    der: &[u8],
) -> (String, String) {
    let (status, answer) =
        mtls_token_request(http, issuer, resource, scope, Some(&header_value(der))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // RFC 8705 §3: still a bearer token as far as the scheme goes.
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    let token = answer["access_token"].as_str().unwrap().to_owned();
    if token.contains('.') {
        let (header, claims) = decode(&token);
        assert_eq!(header["typ"], "at+jwt", "{header}");
        assert_eq!(claims["aud"], resource, "{claims}");
        assert_eq!(claims["client_id"], MTLS_CLIENT_ID, "{claims}");
        // The server's thumbprint is tokenguard's, and the one computed here.
        assert_eq!(claims["cnf"], json!({"x5t#S256": x5t(der)}), "{claims}");
        assert_eq!(
            ClientCertificate::from_der(der.to_vec()).thumbprint(),
            x5t(der)
        );
    }
    (
        token,
        answer["scope"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `method /invoices` as a bearer token, with one `Client-Cert` header per
/// value.
async fn call(app: &Router, method: &str, token: &str, client_certs: &[&str]) -> Response {
    let mut req = Request::builder()
        .method(method)
        .uri("/invoices")
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    for value in client_certs {
        req = req.header(CLIENT_CERT, *value);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn proxy_guard(issuer: &str) -> tokenguard::TokenGuardBuilder {
    guard_builder(issuer).mtls(MtlsConfig::from_proxy_header(CLIENT_CERT))
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

/// For every signing algorithm: a JWT the server bound to a certificate is
/// accepted with that certificate only, and its scopes are enforced.
#[tokio::test]
async fn certificate_bound_jwts_are_accepted_only_with_their_certificate() {
    let server = shared_server().await;
    let http = http_client();
    let guard = proxy_guard(&server.issuer).build().unwrap();
    let app = app(&guard);
    let alice = certificate("alice");
    let mallory = certificate("mallory");
    let (alice_header, mallory_header) = (header_value(&alice), header_value(&mallory));

    for (api, alg) in APIS {
        let (token, granted) =
            bound_access_token(&http, &server.issuer, api, "read:invoices", &alice).await;
        assert_eq!(granted, "read:invoices");
        assert_eq!(decode(&token).0["alg"], alg);

        assert_ok(call(&app, "GET", &token, &[&alice_header]).await, "[]").await;
        // Again, from the verified-token cache.
        assert_ok(call(&app, "GET", &token, &[&alice_header]).await, "[]").await;
        let res = call(&app, "POST", &token, &[&alice_header]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{alg}");
        assert!(
            challenge(&res)
                .unwrap()
                .ends_with(r#"scope="write:invoices""#)
        );
        // Another certificate, or none: refused, cache hit or not.
        assert_invalid_token(
            &call(&app, "GET", &token, &[&mallory_header]).await,
            MISMATCH,
        );
        assert_invalid_token(&call(&app, "GET", &token, &[]).await, MISMATCH);
        assert_refused(
            guard.verify(&token).await,
            InvalidToken::CertificateMismatch,
        );
    }

    // Read and write, over the same certificate.
    let (read_write, _) = bound_access_token(
        &http,
        &server.issuer,
        ES256_API,
        "read:invoices write:invoices",
        &alice,
    )
    .await;
    assert_ok(
        call(&app, "POST", &read_write, &[&alice_header]).await,
        "created",
    )
    .await;
    assert_invalid_token(
        &call(&app, "POST", &read_write, &[&mallory_header]).await,
        MISMATCH,
    );
}

/// The proxy's header, as the guard reads it: a repeated or malformed one is
/// a bad request, and a certificate-bound token is refused by a guard
/// without mTLS whatever the header says.
#[tokio::test]
async fn the_proxy_header_and_a_guard_without_mtls() {
    let server = shared_server().await;
    let http = http_client();
    let alice = certificate("alice");
    let good = header_value(&alice);
    let (token, _) =
        bound_access_token(&http, &server.issuer, RS256_API, "read:invoices", &alice).await;

    let proxied = app(&proxy_guard(&server.issuer).build().unwrap());
    let b64 = STANDARD.encode(&alice);
    for malformed in [
        &[good.as_str(), good.as_str()][..],
        &[&b64],
        &[&format!("{good};a=1")],
    ] {
        let res = call(&proxied, "GET", &token, malformed).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{malformed:?}");
        assert_eq!(
            challenge(&res),
            Some(
                r#"Bearer realm="api", error="invalid_request", error_description="Malformed client certificate header""#
            )
        );
    }

    let plain = guard_builder(&server.issuer).build().unwrap();
    assert_invalid_token(
        &call(&app(&plain), "GET", &token, &[&good]).await,
        BOUND_AS_BEARER,
    );
    assert_refused(plain.verify(&token).await, InvalidToken::SenderConstrained);
}

/// The server's side: the certificate-bound client cannot get a token
/// without a certificate, and other clients' tokens are not bound.
#[tokio::test]
async fn only_the_certificate_bound_client_gets_bound_tokens() {
    let server = shared_server().await;
    let http = http_client();

    let (status, answer) =
        mtls_token_request(&http, &server.issuer, RS256_API, "read:invoices", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_grant", "{answer}");
    let (status, answer) = mtls_token_request(
        &http,
        &server.issuer,
        RS256_API,
        "read:invoices",
        Some("not a byte sequence"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_request", "{answer}");
    let meta = get_json(
        &http,
        &format!("{}/.well-known/openid-configuration", server.issuer),
    )
    .await;
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);

    // The other client's token: not bound, so accepted with any
    // certificate or none, unless bound tokens are required.
    let (unbound, _) = access_token(&http, &server.issuer, RS256_API, "read:invoices").await;
    assert_eq!(decode(&unbound).1.get("cnf"), None);
    let lenient = app(&proxy_guard(&server.issuer).build().unwrap());
    let any = header_value(&certificate("anyone"));
    assert_ok(call(&lenient, "GET", &unbound, &[]).await, "[]").await;
    assert_ok(call(&lenient, "GET", &unbound, &[&any]).await, "[]").await;

    let strict = guard_builder(&server.issuer)
        .mtls(MtlsConfig::from_proxy_header(CLIENT_CERT).require_bound_tokens())
        .build()
        .unwrap();
    let strict_app = app(&strict);
    assert_invalid_token(&call(&strict_app, "GET", &unbound, &[&any]).await, REQUIRED);
    let alice = certificate("alice");
    let (bound, _) =
        bound_access_token(&http, &server.issuer, RS256_API, "read:invoices", &alice).await;
    assert_ok(
        call(&strict_app, "GET", &bound, &[&header_value(&alice)]).await,
        "[]",
    )
    .await;
}

/// An opaque token bound by the server: the introspection answer carries
/// `cnf["x5t#S256"]`, and the guard checks it as for a JWT.
#[tokio::test]
async fn an_introspected_opaque_token_is_bound_too() {
    let server = shared_server().await;
    let http = http_client();
    let guard = tokenguard::TokenGuard::builder()
        .issuer(&server.issuer)
        .audience(OPAQUE_API)
        .introspection(IntrospectionConfig::new(ClientAuth::client_secret_basic(
            RS_BASIC_ID,
            RS_BASIC_SECRET,
        )))
        .mtls(MtlsConfig::from_proxy_header(CLIENT_CERT))
        .build()
        .unwrap();
    let app = app(&guard);
    let alice = certificate("alice");
    let (token, granted) =
        bound_access_token(&http, &server.issuer, OPAQUE_API, "read:invoices", &alice).await;
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
    assert_eq!(answer["cnf"], json!({"x5t#S256": x5t(&alice)}), "{answer}");
    assert_eq!(answer["aud"], OPAQUE_API, "{answer}");

    let alice_header = header_value(&alice);
    assert_ok(call(&app, "GET", &token, &[&alice_header]).await, "[]").await;
    // Again, from the introspection cache.
    assert_ok(call(&app, "GET", &token, &[&alice_header]).await, "[]").await;
    let mallory = header_value(&certificate("mallory"));
    assert_invalid_token(&call(&app, "GET", &token, &[&mallory]).await, MISMATCH);
    assert_invalid_token(&call(&app, "GET", &token, &[]).await, MISMATCH);
    assert_refused(
        guard.verify(&token).await,
        InvalidToken::CertificateMismatch,
    );
}
