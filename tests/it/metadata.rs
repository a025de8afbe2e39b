//! RFC 9728 protected-resource metadata through real Routers: the document
//! at the URL every challenge names, and `resource_metadata` on every 401
//! and 403, for Bearer and DPoP.

#![cfg(all(feature = "testing", feature = "axum"))]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokenguard::testing::{DpopKey, TestIssuer};
use tokenguard::{DpopConfig, ProtectedResource, RequireScope, TokenGuard, scopes};
use tower::ServiceExt;

const RESOURCE: &str = "https://api.example.com/mcp";
const METADATA: &str = "https://api.example.com/.well-known/oauth-protected-resource/mcp";

scopes! {
    Read = "read:invoices";
}

fn guard(issuer: &TestIssuer, dpop: bool) -> TokenGuard {
    let b = issuer.guard_builder(RESOURCE).protected_resource(
        ProtectedResource::new(RESOURCE)
            .scopes_supported(["read:invoices", "write:invoices"])
            .resource_name("Invoices"),
    );
    let b = if dpop {
        b.dpop(DpopConfig::new("https://api.example.com"))
    } else {
        b
    };
    b.build().unwrap()
}

/// The protected routes behind the guard; the metadata router merged outside it.
fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route("/mcp", get(|_: RequireScope<Read>| async { "ok" }))
        .layer(guard.layer())
        .merge(guard.metadata_router())
}

fn challenges(res: &http::Response<Body>) -> Vec<String> {
    res.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn get_with(app: &Router, uri: &str, auth: Option<String>) -> http::Response<Body> {
    let mut req = Request::get(uri);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// The URL the challenge names is served, publicly, with the document the
/// RFC describes, including what the guard's settings imply.
#[tokio::test]
async fn the_advertised_url_serves_the_document() {
    let issuer = TestIssuer::new();
    let guard = guard(&issuer, true);
    assert_eq!(guard.resource_metadata_url(), Some(METADATA));
    let app = app(&guard);
    let path = METADATA.strip_prefix("https://api.example.com").unwrap();
    let res = get_with(&app, path, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({
            "resource": RESOURCE,
            "authorization_servers": [issuer.issuer()],
            "scopes_supported": ["read:invoices", "write:invoices"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Invoices",
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"]
        })
    );
    // The root URL is not served unless asked for.
    let res = get_with(&app, "/.well-known/oauth-protected-resource", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// 401 without a token, 401 for a bad one, 403 for a missing scope: every
/// challenge, of both schemes, names the document.
#[tokio::test]
async fn every_challenge_names_the_metadata() {
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, false));
    let rm = format!(r#"resource_metadata="{METADATA}""#);

    let res = get_with(&app, "/mcp", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [format!(r#"Bearer realm="api", {rm}"#)]);

    let res = get_with(&app, "/mcp", Some("Bearer garbage".into())).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [format!(
            r#"Bearer realm="api", error="invalid_token", error_description="The access token is malformed", {rm}"#
        )]
    );

    let token = issuer.token().audience(RESOURCE).scope("other").mint();
    let res = get_with(&app, "/mcp", Some(format!("Bearer {token}"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&res),
        [format!(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="read:invoices", {rm}"#
        )]
    );

    let token = issuer
        .token()
        .audience(RESOURCE)
        .scope("read:invoices")
        .mint();
    let res = get_with(&app, "/mcp", Some(format!("Bearer {token}"))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// With DPoP on, both challenges name the document; a DPoP request's 403
/// renders on the DPoP challenge.
#[tokio::test]
async fn dpop_challenges_name_the_metadata_too() {
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, true));
    let rm = format!(r#"resource_metadata="{METADATA}""#);
    let algs = r#"algs="ES256 ES384 EdDSA RS256 PS256""#;
    let res = get_with(&app, "/mcp", None).await;
    assert_eq!(
        challenges(&res),
        [
            format!(r#"Bearer realm="api", {rm}"#),
            format!(r#"DPoP realm="api", {algs}, {rm}"#)
        ]
    );
    let key = DpopKey::new();
    let token = issuer
        .token()
        .audience(RESOURCE)
        .scope("other")
        .dpop_bound(&key)
        .mint();
    let proof = key.proof("GET", "https://api.example.com/mcp", &token);
    let req = Request::get("/mcp")
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&res),
        [
            format!(
                r#"DPoP realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="read:invoices", {algs}, {rm}"#
            ),
            format!(r#"Bearer realm="api", {rm}"#),
        ]
    );
}

/// `resource` comes from configuration: a request with another `Host`
/// gets the same document, and invalid descriptions do not build.
#[tokio::test]
async fn the_resource_is_configuration_and_checked() {
    let issuer = TestIssuer::new();
    let app = app(&guard(&issuer, false));
    let req = Request::get("/.well-known/oauth-protected-resource/mcp")
        .header(header::HOST, "evil.example.com")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["resource"], RESOURCE);

    for bad in [
        "http://api.example.com/mcp",
        "https://api.example.com/mcp#f",
        "https://api.example.com/mcp?q=1",
        "not a url",
    ] {
        let built = issuer
            .guard_builder(RESOURCE)
            .protected_resource(ProtectedResource::new(bad))
            .build();
        assert!(
            matches!(
                built,
                Err(tokenguard::BuildError::InvalidResourceMetadata(_))
            ),
            "{bad}"
        );
    }
    let root = issuer
        .guard_builder(RESOURCE)
        .protected_resource(ProtectedResource::new(RESOURCE).also_at_root())
        .build()
        .unwrap();
    let app = app_root(&root);
    let res = get_with(&app, "/.well-known/oauth-protected-resource", None).await;
    assert_eq!(res.status(), StatusCode::OK);
}

fn app_root(guard: &TokenGuard) -> Router {
    Router::new().merge(guard.metadata_router())
}

/// A multi-issuer guard's document names every issuer it trusts (not just
/// the first guard's), unless the first guard named its servers itself; the
/// challenges keep the same URL.
#[tokio::test]
async fn a_multi_issuer_document_names_every_issuer() {
    let a = TestIssuer::with_issuer("https://a.example.com");
    let b = TestIssuer::with_issuer("https://b.example.com");
    let described = |i: &TestIssuer, named: Option<&str>| {
        let mut resource = ProtectedResource::new(RESOURCE);
        if let Some(server) = named {
            resource = resource.authorization_server(server);
        }
        i.guard_builder(RESOURCE)
            .protected_resource(resource)
            .build()
            .unwrap()
    };
    let servers = |guard: &TokenGuard| {
        let doc: serde_json::Value =
            serde_json::from_slice(guard.resource_metadata_document().unwrap()).unwrap();
        doc["authorization_servers"].clone()
    };
    let multi = TokenGuard::multi_issuer([described(&a, None), b.guard(RESOURCE)]).unwrap();
    assert_eq!(
        servers(&multi),
        serde_json::json!(["https://a.example.com", "https://b.example.com"])
    );
    assert_eq!(multi.resource_metadata_url(), Some(METADATA));
    // Served as rendered.
    let path = METADATA.strip_prefix("https://api.example.com").unwrap();
    let res = get_with(&app(&multi), path, None).await;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body, multi.resource_metadata_document().unwrap());

    let named = TokenGuard::multi_issuer([
        described(&a, Some("https://as.example.com")),
        b.guard(RESOURCE),
    ])
    .unwrap();
    assert_eq!(
        servers(&named),
        serde_json::json!(["https://as.example.com"])
    );
}
