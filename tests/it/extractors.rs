//! Extractors, route-level scope layers, scope sources and custom error
//! bodies, through real axum Routers and a bare tower service.

use crate::common;

use std::convert::Infallible;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use serde::Deserialize;
use tokenguard::testing::TestIssuer;
use tokenguard::{
    AccessTokenClaims, AnyOf, Claims, ErrorBody, RequireScope, RequireScopeLayer, ScopeSource,
    Scopes, Token, require_scope, scopes,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

scopes! {
    /// Read invoices.
    pub ReadInvoices = "read:invoices";
    /// Write invoices.
    pub WriteInvoices = "write:invoices";
    /// Administer.
    pub Admin = "admin";
}

#[derive(Deserialize)]
struct MyClaims {
    sub: String,
    tenant: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NeedsRoles {
    roles: Vec<String>,
}

fn routes() -> Router {
    Router::new()
        .route(
            "/std",
            get(|Claims(c): Claims<AccessTokenClaims>| async move { Json((*c).clone()) }),
        )
        .route(
            "/mine",
            get(|Claims(c): Claims<MyClaims>| async move { format!("{}@{}", c.sub, c.tenant) }),
        )
        .route(
            "/roles",
            get(|Claims(_): Claims<NeedsRoles>| async { "roles" }),
        )
        .route(
            "/read",
            get(|_: RequireScope<ReadInvoices>| async { "read" }),
        )
        .route(
            "/both",
            get(|_: RequireScope<(ReadInvoices, WriteInvoices)>| async { "both" }),
        )
        .route(
            "/either",
            get(|_: RequireScope<AnyOf<(Admin, WriteInvoices)>>| async { "either" }),
        )
        .route(
            "/token",
            get(|Token(t): Token| async move { t.scopes().iter().collect::<Vec<_>>().join(",") }),
        )
        .route(
            "/maybe",
            get(|c: Option<Claims<AccessTokenClaims>>| async move {
                match c {
                    Some(Claims(c)) => format!("hello {}", c.sub.as_deref().unwrap_or("")),
                    None => "hello stranger".to_owned(),
                }
            }),
        )
}

fn scope_challenge(required: &str) -> String {
    format!(
        r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="{required}""#
    )
}

#[tokio::test]
async fn claims_extractors() {
    let issuer = TestIssuer::new();
    let app = routes().layer(issuer.guard(AUD).layer());
    let token = issuer
        .token()
        .audience(AUD)
        .subject("u1")
        .claim("tenant", "acme")
        .scope("a b")
        .mint();

    let res = bearer(&app, "/std", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
    assert_eq!(json["sub"], "u1");
    assert_eq!(json["tenant"], "acme");
    assert_eq!(json["aud"], AUD);

    let res = bearer(&app, "/mine", &token).await;
    assert_eq!(body(res).await, "u1@acme");

    // Verified claims that do not fit the handler's type: 401 invalid_token, not 500.
    let res = bearer(&app, "/roles", &token).await;
    assert_invalid_token(&res, "The access token has an invalid claim");

    let res = bearer(&app, "/token", &token).await;
    assert_eq!(body(res).await, "a,b");
}

#[tokio::test]
async fn scope_extractors() {
    let issuer = TestIssuer::new();
    let app = routes().layer(issuer.guard(AUD).layer());
    let read = issuer.token().audience(AUD).scope("read:invoices").mint();
    let read_write = issuer
        .token()
        .audience(AUD)
        .scope("write:invoices read:invoices")
        .mint();

    assert_eq!(bearer(&app, "/read", &read).await.status(), StatusCode::OK);
    let res = bearer(&app, "/both", &read).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res).unwrap(),
        scope_challenge("read:invoices write:invoices")
    );
    assert_eq!(
        bearer(&app, "/both", &read_write).await.status(),
        StatusCode::OK
    );

    let res = bearer(&app, "/either", &read).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res).unwrap(),
        scope_challenge("admin write:invoices")
    );
    assert_eq!(
        bearer(&app, "/either", &read_write).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn scopes_match_exactly() {
    let issuer = TestIssuer::new();
    let app = routes().layer(issuer.guard(AUD).layer());
    for granted in [
        "read",
        "read:invoice",
        "read:invoicesX",
        "READ:INVOICES",
        "*",
        "read:*",
        "xread:invoices",
        "",
    ] {
        let token = issuer.token().audience(AUD).scope(granted).mint();
        let res = bearer(&app, "/read", &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{granted:?}");
        assert_eq!(challenge(&res).unwrap(), scope_challenge("read:invoices"));
    }
    // `scope` as an array where a string is expected: the token is refused.
    let token = issuer
        .token()
        .audience(AUD)
        .claim("scope", vec!["read:invoices"])
        .mint();
    assert_invalid_token(
        &bearer(&app, "/read", &token).await,
        "The access token has an invalid claim",
    );
}

#[tokio::test]
async fn scope_sources() {
    let issuer = TestIssuer::new();
    let app_with = |source: ScopeSource| {
        routes().layer(
            issuer
                .guard_builder(AUD)
                .scope_source(source)
                .build()
                .unwrap()
                .layer(),
        )
    };

    let scp_string = issuer
        .token()
        .audience(AUD)
        .claim("scp", "read:invoices other")
        .mint();
    let scp_array = issuer
        .token()
        .audience(AUD)
        .claim("scp", vec!["read:invoices"])
        .mint();
    let perms = issuer
        .token()
        .audience(AUD)
        .claim("permissions", vec!["read:invoices"])
        .mint();
    let scope_only = issuer.token().audience(AUD).scope("read:invoices").mint();

    let scp = app_with(ScopeSource::Scp);
    assert_eq!(
        bearer(&scp, "/read", &scp_string).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        bearer(&scp, "/read", &scp_array).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        bearer(&scp, "/read", &scope_only).await.status(),
        StatusCode::FORBIDDEN
    );

    let permissions = app_with(ScopeSource::Permissions);
    assert_eq!(
        bearer(&permissions, "/read", &perms).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        bearer(&permissions, "/read", &scp_array).await.status(),
        StatusCode::FORBIDDEN
    );
    // `permissions` must be an array.
    let perms_string = issuer
        .token()
        .audience(AUD)
        .claim("permissions", "read:invoices")
        .mint();
    assert_eq!(
        bearer(&permissions, "/read", &perms_string).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The default reads `scope` only.
    let default = app_with(ScopeSource::Scope);
    assert_eq!(
        bearer(&default, "/read", &scp_string).await.status(),
        StatusCode::FORBIDDEN
    );

    let custom = app_with(ScopeSource::custom(|c: &AccessTokenClaims| {
        c.extra
            .get("roles")
            .and_then(|r| r.as_array())
            .map_or_else(Scopes::default, |roles| {
                roles
                    .iter()
                    .filter_map(|r| r.as_str())
                    .map(|r| if r == "reader" { "read:invoices" } else { r })
                    .collect()
            })
    }));
    let reader = issuer
        .token()
        .audience(AUD)
        .claim("roles", vec!["reader"])
        .mint();
    assert_eq!(
        bearer(&custom, "/read", &reader).await.status(),
        StatusCode::OK
    );
}

/// Nested claims where providers put roles: Keycloak's `realm_access.roles`
/// and `resource_access.<client>.roles`, Entra's `roles` with `scp`.
#[tokio::test]
async fn scope_sources_at_claim_paths() {
    let issuer = TestIssuer::new();
    let app_with = |source: ScopeSource| {
        routes().layer(
            issuer
                .guard_builder(AUD)
                .scope_source(source)
                .build()
                .unwrap()
                .layer(),
        )
    };
    let keycloak = issuer
        .token()
        .audience(AUD)
        .claim("realm_access", serde_json::json!({"roles": ["offline", "read:invoices"]}))
        .claim(
            "resource_access",
            serde_json::json!({"invoices.api": {"roles": ["write:invoices"]}, "other": {"roles": ["read:invoices"]}}),
        )
        .mint();
    let status = |app: axum::Router, path: &'static str, token: String| async move {
        bearer(&app, path, &token).await.status()
    };

    let realm = app_with(ScopeSource::claim_path(["realm_access", "roles"]));
    assert_eq!(
        status(realm.clone(), "/read", keycloak.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(realm.clone(), "/either", keycloak.clone()).await,
        StatusCode::FORBIDDEN
    );

    // A client ID with a dot is one name.
    let client = app_with(ScopeSource::claim_path([
        "resource_access",
        "invoices.api",
        "roles",
    ]));
    assert_eq!(
        status(client.clone(), "/either", keycloak.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(client.clone(), "/read", keycloak.clone()).await,
        StatusCode::FORBIDDEN
    );

    // Absent on the way: no scopes (403, not 401).
    let plain = issuer.token().audience(AUD).scope("read:invoices").mint();
    assert_eq!(
        status(client.clone(), "/read", plain.clone()).await,
        StatusCode::FORBIDDEN
    );
    // Another JSON type on the way or at the end: refused.
    for bad in [
        serde_json::json!("invoices.api"),
        serde_json::json!({"invoices.api": {"roles": 7}}),
        serde_json::json!({"invoices.api": {"roles": ["ok", 7]}}),
    ] {
        let token = issuer
            .token()
            .audience(AUD)
            .claim("resource_access", bad.clone())
            .mint();
        assert_eq!(
            status(client.clone(), "/read", token).await,
            StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }

    // Entra ID: delegated (`scp`) and application (`roles`) permissions.
    let entra = app_with(ScopeSource::union([
        ScopeSource::Scp,
        ScopeSource::claim_path(["roles"]),
    ]));
    let app_token = issuer
        .token()
        .audience(AUD)
        .claim("roles", vec!["read:invoices"])
        .mint();
    let user_token = issuer
        .token()
        .audience(AUD)
        .claim("scp", "write:invoices")
        .mint();
    let both = issuer
        .token()
        .audience(AUD)
        .claim("scp", "write:invoices")
        .claim("roles", vec!["read:invoices"])
        .mint();
    assert_eq!(
        status(entra.clone(), "/read", app_token).await,
        StatusCode::OK
    );
    assert_eq!(
        status(entra.clone(), "/read", user_token.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(entra.clone(), "/either", user_token).await,
        StatusCode::OK
    );
    assert_eq!(status(entra.clone(), "/both", both).await, StatusCode::OK);
}

#[tokio::test]
async fn optional_layer_and_option_extractors() {
    let issuer = TestIssuer::new();
    let app = routes().layer(issuer.guard(AUD).optional_layer());
    assert_eq!(
        body(send(&app, "/maybe", &[]).await).await,
        "hello stranger"
    );
    let token = issuer.token().audience(AUD).subject("u1").mint();
    assert_eq!(body(bearer(&app, "/maybe", &token).await).await, "hello u1");
    // A present but invalid token is still refused.
    let expired = issuer.token().audience(AUD).expired().mint();
    assert_invalid_token(
        &bearer(&app, "/maybe", &expired).await,
        "The access token expired",
    );
    // Required extractors on an optional route answer the plain challenge.
    let res = send(&app, "/read", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&res).as_deref(), Some(r#"Bearer realm="api""#));
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_server_error() {
    let res = send(&routes(), "/read", &["Bearer abc"]).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(challenge(&res).is_none());
}

#[tokio::test]
async fn route_level_scope_layer() {
    let issuer = TestIssuer::new();
    let admin = Router::new()
        .route("/admin/stats", get(|| async { "stats" }))
        .route_layer(require_scope("admin"));
    let app = Router::new()
        .route("/open", get(|| async { "open" }))
        .merge(admin)
        .merge(
            Router::new()
                .route("/any", get(|| async { "any" }))
                .route_layer(RequireScopeLayer::any_of(["x", "admin"])),
        )
        .layer(issuer.guard(AUD).layer());

    let user = issuer.token().audience(AUD).scope("read").mint();
    let admin_token = issuer.token().audience(AUD).scope("admin").mint();
    assert_eq!(bearer(&app, "/open", &user).await.status(), StatusCode::OK);
    let res = bearer(&app, "/admin/stats", &user).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenge(&res).unwrap(), scope_challenge("admin"));
    assert_eq!(
        bearer(&app, "/admin/stats", &admin_token).await.status(),
        StatusCode::OK
    );
    let res = bearer(&app, "/any", &user).await;
    assert_eq!(challenge(&res).unwrap(), scope_challenge("x admin"));
    assert_eq!(
        bearer(&app, "/any", &admin_token).await.status(),
        StatusCode::OK
    );
}

#[test]
#[should_panic(expected = "is not a valid scope")]
fn route_level_scope_must_be_a_scope_token() {
    let _ = require_scope("two words");
}

#[tokio::test]
async fn bare_tower_service_without_axum_routing() {
    let issuer = TestIssuer::new();
    let svc = ServiceBuilder::new()
        .layer(issuer.guard(AUD).layer())
        .layer(require_scope("read"))
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let token = req
                .extensions()
                .get::<std::sync::Arc<tokenguard::AccessToken>>()
                .unwrap();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                token.subject().unwrap_or("").to_owned(),
            ))))
        }));
    let call = |auth: Option<String>| {
        let svc = svc.clone();
        async move {
            let mut req = Request::get("/");
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            svc.oneshot(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap()
        }
    };
    let ok = issuer
        .token()
        .audience(AUD)
        .subject("svc")
        .scope("read")
        .mint();
    let res = call(Some(format!("Bearer {ok}"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    use http_body_util::BodyExt;
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "svc");
    assert_eq!(call(None).await.status(), StatusCode::UNAUTHORIZED);
    let no_scope = issuer.token().audience(AUD).mint();
    assert_eq!(
        call(Some(format!("Bearer {no_scope}"))).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn custom_error_bodies_keep_status_and_challenge() {
    let issuer = TestIssuer::new();
    let json = routes().layer(
        issuer
            .guard_builder(AUD)
            .json_errors()
            .build()
            .unwrap()
            .layer(),
    );
    let expired = issuer.token().audience(AUD).expired().mint();
    let res = bearer(&json, "/read", &expired).await;
    assert_invalid_token(&res, "The access token expired");
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"error": "invalid_token", "error_description": "The access token expired"})
    );

    // Extractor rejections use the guard's renderer too.
    let token = issuer.token().audience(AUD).scope("read:invoices").mint();
    let res = bearer(&json, "/both", &token).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res).unwrap(),
        scope_challenge("read:invoices write:invoices")
    );
    let v: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
    assert_eq!(v["scope"], "read:invoices write:invoices");

    let custom = routes().layer(
        issuer
            .guard_builder(AUD)
            .realm("billing")
            .error_body(|e| {
                Some(ErrorBody::new(
                    http::HeaderValue::from_static("text/plain"),
                    format!("nope: {}", e.status()),
                ))
            })
            .build()
            .unwrap()
            .layer(),
    );
    let res = send(&custom, "/read", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&res).as_deref(),
        Some(r#"Bearer realm="billing""#)
    );
    assert_eq!(body(res).await, "nope: 401 Unauthorized");
}

#[tokio::test]
async fn responses_to_refusals_are_not_cached() {
    let issuer = TestIssuer::new();
    let app = routes().layer(issuer.guard(AUD).layer());
    let res = send(&app, "/read", &[]).await;
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let _ = Body::empty();
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn wraps_a_service_with_tonic_bodies() {
    let issuer = TestIssuer::new();
    let svc = ServiceBuilder::new()
        .layer(issuer.guard(AUD).layer())
        .service(service_fn(|_req: Request<tonic::body::Body>| async {
            Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
        }));
    let req = Request::post("/invoices.v1.Invoices/List")
        .body(tonic::body::Body::empty())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
    let token = issuer.token().audience(AUD).mint();
    let req = Request::post("/invoices.v1.Invoices/List")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(tonic::body::Body::empty())
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
}

/// `RequireScope<scope!("…")>`: the literal at the handler, matched exactly
/// and named in the 403 like a declared scope.
#[tokio::test]
async fn scope_literals_at_the_handler() {
    let issuer = TestIssuer::new();
    let app = Router::new()
        .route(
            "/literal",
            get(|_: RequireScope<tokenguard::scope!("read:invoices")>| async { "ok" }),
        )
        .route(
            "/both",
            get(
                |_: RequireScope<(tokenguard::scope!("read:invoices"), WriteInvoices)>| async {
                    "ok"
                },
            ),
        )
        .layer(issuer.guard("https://api").layer());
    let token = |scope: &str| issuer.token().audience("https://api").scope(scope).mint();
    let res = bearer(&app, "/literal", &token("read:invoices")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = bearer(&app, "/literal", &token("read:invoice")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenge(&res).unwrap(), scope_challenge("read:invoices"));
    let res = bearer(&app, "/both", &token("read:invoices")).await;
    assert_eq!(
        challenge(&res).unwrap(),
        scope_challenge("read:invoices write:invoices")
    );
}

/// An opt-in hierarchy: `files:admin` implies `files:read`; without it,
/// matching stays exact; the 403 names what the route needs.
#[tokio::test]
async fn scope_hierarchy_is_opt_in() {
    let issuer = TestIssuer::new();
    let route = || {
        Router::new().route(
            "/files",
            get(|_: RequireScope<tokenguard::scope!("files:read")>| async { "ok" }),
        )
    };
    let with = issuer
        .guard_builder("https://api")
        .scope_hierarchy(
            tokenguard::ScopeHierarchy::new().implies("files:admin", ["files:read", "files:write"]),
        )
        .build()
        .unwrap();
    let exact = issuer.guard("https://api");
    let admin = issuer
        .token()
        .audience("https://api")
        .scope("files:admin")
        .mint();
    let res = bearer(&route().layer(with.layer()), "/files", &admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = bearer(&route().layer(exact.layer()), "/files", &admin).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenge(&res).unwrap(), scope_challenge("files:read"));
    // The expansion is visible to handlers, not only to extractors.
    assert!(
        with.verify(&admin)
            .await
            .unwrap()
            .scopes()
            .contains("files:write")
    );
    let bad = issuer
        .guard_builder("https://api")
        .scope_hierarchy(tokenguard::ScopeHierarchy::new().implies("a b", ["c"]))
        .build();
    assert!(bad.is_err());
}

/// Step-up (RFC 9470): a route needing `acr` and a recent `auth_time`
/// answers 401 `insufficient_user_authentication` with `acr_values` and
/// `max_age` until the token qualifies.
#[tokio::test]
async fn step_up_on_a_route() {
    let issuer = TestIssuer::new();
    let mfa = tokenguard::StepUp::acr_values(["urn:example:mfa"])
        .max_age(std::time::Duration::from_secs(300));
    let app = Router::new()
        .route("/pay", get(|| async { "paid" }))
        .route_layer(mfa.layer())
        .layer(issuer.guard("https://api").layer());
    let now = tokenguard::NumericDate::now().as_secs();
    let token = |acr: &str, auth_time: i64| {
        issuer
            .token()
            .audience("https://api")
            .claim("acr", acr)
            .claim("auth_time", auth_time)
            .mint()
    };
    let expected = r#"Bearer realm="api", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:example:mfa", max_age="300""#;
    for refused in [
        token("urn:example:pwd", now),
        token("urn:example:mfa", now - 301),
    ] {
        let res = bearer(&app, "/pay", &refused).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&res).unwrap(), expected);
    }
    let no_auth_time = issuer
        .token()
        .audience("https://api")
        .claim("acr", "urn:example:mfa")
        .mint();
    assert_eq!(
        bearer(&app, "/pay", &no_auth_time).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = bearer(&app, "/pay", &token("urn:example:mfa", now - 10)).await;
    assert_eq!(res.status(), StatusCode::OK);
}
