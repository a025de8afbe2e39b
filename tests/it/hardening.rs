//! Regression tests for the defects of an outside review, each through a real
//! axum Router with its exact status and challenge.

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::routing::{any, get};
use axum::{Router, response::IntoResponse};
use common::*;
use tokenguard::testing::TestIssuer;
use tokenguard::{Algorithm, BuildError, NumericDate, TokenGuard, TokenSources, require_scope};
use tower::ServiceExt;

const NOT_AN_ACCESS_TOKEN: &str = "The token is not an access token";
const BOUND: &str = "The access token is bound to a key and cannot be used as a bearer token";
const ALG: &str = "The access token algorithm is not accepted";
const EXPIRED: &str = "The access token expired";

fn invalid_request(res: &axum::response::Response, description: &str) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        challenge(res).unwrap(),
        format!(
            r#"Bearer realm="api", error="invalid_request", error_description="{description}""#
        )
    );
}

async fn oneshot(app: &Router, req: Request<Body>) -> axum::response::Response {
    app.clone().oneshot(req).await.unwrap()
}

// 1. A `typ` whose 12th byte falls inside a multi-byte character used to
//    panic before any key was looked at.
#[tokio::test]
async fn multi_byte_typ_is_refused_not_a_panic() {
    let issuer = TestIssuer::new();
    let app = app(&issuer.guard(AUD));
    for typ in [
        "applicationét+jwt",
        "applicationé+jwt",
        "applicationé/at+jwt",
        "application/at+jwté",
        "éééééééééé",
    ] {
        let token = issuer.token().audience(AUD).header("typ", typ).mint();
        assert_invalid_token(&bearer(&app, "/me", &token).await, NOT_AN_ACCESS_TOKEN);
    }
    let untyped = issuer
        .guard_builder(AUD)
        .allow_untyped_tokens()
        .build()
        .unwrap();
    let token = issuer
        .token()
        .audience(AUD)
        .header("typ", "applicationéjwt")
        .mint();
    assert_invalid_token(
        &bearer(&app_of(&untyped), "/me", &token).await,
        NOT_AN_ACCESS_TOKEN,
    );
}

fn app_of(guard: &TokenGuard) -> Router {
    app(guard)
}

// 2. A sender-constrained token is never a bearer token: refused on the first
//    request and on every later one (which the verified-token cache answers).
#[tokio::test]
async fn tokens_with_cnf_are_refused_as_bearer_tokens() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let app = app(&guard);
    for cnf in [
        serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        serde_json::json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        serde_json::json!({"kid": "any member"}),
        serde_json::json!({}),
    ] {
        let token = issuer
            .token()
            .audience(AUD)
            .claim("cnf", cnf.clone())
            .mint();
        for _ in 0..3 {
            assert_invalid_token(&bearer(&app, "/me", &token).await, BOUND);
        }
        assert!(guard.verify(&token).await.is_err(), "{cnf}");
    }
    // A `cnf` that is not an object is malformed, never "absent".
    let token = issuer
        .token()
        .audience(AUD)
        .claim("cnf", serde_json::Value::Null)
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &token).await,
        "The access token has an invalid claim",
    );
}

// 3. One key, one algorithm: an RSA key without `alg`, and every PEM RSA key,
//    verifies RS256 only unless configured otherwise.
#[tokio::test]
async fn rsa_keys_without_alg_verify_exactly_one_algorithm() {
    let issuer = TestIssuer::new();
    let mut jwk = issuer.jwk(Algorithm::RS256);
    jwk.as_object_mut().unwrap().remove("alg");
    let kid = issuer.kid(Algorithm::RS256);
    let signed = |alg| {
        issuer
            .token()
            .audience(AUD)
            .algorithm(alg)
            .kid(Some(&kid))
            .mint()
    };
    let base = || TokenGuard::builder().issuer(issuer.issuer()).audience(AUD);
    let from_jwk = app(&base().jwk(jwk.to_string()).build().unwrap());
    let from_pem = app(&base()
        .pem(issuer.rsa_public_pem(), Some(&kid))
        .build()
        .unwrap());
    for app in [&from_jwk, &from_pem] {
        assert_eq!(
            bearer(app, "/me", &signed(Algorithm::RS256)).await.status(),
            StatusCode::OK
        );
        for other in [
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            assert_invalid_token(&bearer(app, "/me", &signed(other)).await, ALG);
        }
    }
    // Configured: the setting applies whatever the order of the calls.
    let ps = app(&base()
        .pem(issuer.rsa_public_pem(), Some(&kid))
        .rsa_algorithm(Algorithm::PS256)
        .build()
        .unwrap());
    assert_eq!(
        bearer(&ps, "/me", &signed(Algorithm::PS256)).await.status(),
        StatusCode::OK
    );
    assert_invalid_token(&bearer(&ps, "/me", &signed(Algorithm::RS256)).await, ALG);
    let e = base()
        .pem(issuer.rsa_public_pem(), None)
        .rsa_algorithm(Algorithm::ES256)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::InvalidAlgorithms(_)), "{e}");
    // Not in the allowlist: the key is unusable, a build error for static keys.
    let e = base()
        .algorithms([Algorithm::ES256])
        .pem(issuer.rsa_public_pem(), None)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::InvalidKey(_)), "{e}");
}

// 4. RFC 7519 §4.1.4: not accepted on or after `exp` + leeway.
#[tokio::test]
async fn a_token_is_refused_at_exactly_its_expiry() {
    let issuer = TestIssuer::new();
    let strict = app(&issuer
        .guard_builder(AUD)
        .leeway(Duration::ZERO)
        .build()
        .unwrap());
    let lenient = app(&issuer.guard(AUD));
    let now = NumericDate::now().as_secs();
    let at = |exp: i64| {
        issuer
            .token()
            .audience(AUD)
            .claim("iat", now - 60)
            .claim("exp", exp)
            .mint()
    };
    assert_invalid_token(&bearer(&strict, "/me", &at(now)).await, EXPIRED);
    assert_invalid_token(&bearer(&lenient, "/me", &at(now - 30)).await, EXPIRED);
    assert_eq!(
        bearer(&strict, "/me", &at(now + 30)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        bearer(&lenient, "/me", &at(now - 25)).await.status(),
        StatusCode::OK
    );
}

// 5. Leeway is bounded.
#[test]
fn leeway_over_five_minutes_is_a_build_error() {
    let issuer = TestIssuer::new();
    assert!(
        issuer
            .guard_builder(AUD)
            .leeway(tokenguard::MAX_LEEWAY)
            .build()
            .is_ok()
    );
    let e = issuer
        .guard_builder(AUD)
        .leeway(Duration::from_secs(301))
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::LeewayTooLarge(Duration::from_secs(301)));
    assert!(e.to_string().contains("300s"), "{e}");
}

/// A 1024-bit RSA public key (SPKI), too small to be trusted.
const RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDs45WgAyxt9vs9jAlqd4RBui1z
AaWYl8AlWPpthXYhH8LCKokE44xSQwnNDTJXYo3Wbk2RnlaE3+eWQKkLQVrElqBh
SLOle05JHkM25cBicmR+BfbE/L6n7WipjfvL0R7GMgaTOQydIb8f+UsfFHVQO7DK
D8P4Mj3lLApFVSdiTQIDAQAB
-----END PUBLIC KEY-----
";

// 6. One rule set for every way a key enters.
#[tokio::test]
async fn static_keys_pass_the_key_set_rules() {
    let issuer = TestIssuer::new();
    let base = || TokenGuard::builder().issuer(issuer.issuer()).audience(AUD);
    let invalid_key = |b: tokenguard::TokenGuardBuilder| match b.build() {
        Err(BuildError::InvalidKey(why)) => why,
        other => panic!("expected InvalidKey, got {other:?}"),
    };
    assert!(invalid_key(base().pem(RSA_1024_PEM, None)).contains("1024 bits"));
    let small = jsonwebtoken::DecodingKey::from_rsa_raw_components(&[0xc5; 128], &[1, 0, 1]);
    assert!(invalid_key(base().decoding_key(small, Algorithm::RS256, None)).contains("1024 bits"));
    let short = jsonwebtoken::DecodingKey::from_secret(&[1; 16]);
    assert!(invalid_key(base().decoding_key(short, Algorithm::HS256, None)).contains("32 bytes"));
    let private_pem =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    assert!(invalid_key(base().pem(private_pem, None)).contains("private"));
    let mut private = issuer.jwk(Algorithm::ES256);
    private["d"] = "c2VjcmV0".into();
    assert!(invalid_key(base().jwk(private.to_string())).contains("private"));
    // In a key set, such a member is refused and the others serve.
    let jwks = serde_json::json!({"keys": [private, issuer.jwk(Algorithm::EdDSA)]});
    let guard = base().jwks_json(jwks.to_string()).build().unwrap();
    assert_eq!(guard.key_status()[0].kids, [issuer.kid(Algorithm::EdDSA)]);
    let es = issuer.token().audience(AUD).mint();
    assert_invalid_token(
        &bearer(&app(&guard), "/me", &es).await,
        "The access token signing key is unknown",
    );
}

fn query_cookie_app(issuer: &TestIssuer) -> Router {
    let guard = issuer
        .guard_builder(AUD)
        .token_sources(TokenSources::default().with_query().with_cookie("at"))
        .build()
        .unwrap();
    Router::new()
        .route("/me", get(|| async { "ok" }))
        .route(
            "/cached",
            get(|| async {
                ([(header::CACHE_CONTROL, "public, max-age=60")], "ok").into_response()
            }),
        )
        .route(
            "/no-store",
            get(|| async { ([(header::CACHE_CONTROL, "no-store")], "ok").into_response() }),
        )
        .layer(guard.layer())
}

// 7. The one-token rule cannot be evaded by encoded names or hidden cookies.
#[tokio::test]
async fn encoded_names_and_non_ascii_cookies_cannot_hide_a_second_token() {
    let issuer = TestIssuer::new();
    let app = query_cookie_app(&issuer);
    let token = issuer.token().audience(AUD).mint();
    let several = "More than one access token in the request";
    for name in ["access%5Ftoken", "access%5ftoken", "%61ccess_token"] {
        let req = Request::get(format!("/me?{name}={token}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        invalid_request(&oneshot(&app, req).await, several);
        let req = Request::get(format!("/me?access_token={token}&{name}={token}"))
            .body(Body::empty())
            .unwrap();
        invalid_request(&oneshot(&app, req).await, several);
    }
    // Alone, an encoded name is the parameter.
    let req = Request::get(format!("/me?access%5Ftoken={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(oneshot(&app, req).await.status(), StatusCode::OK);

    let mut non_ascii = format!("x=é; at={token}").into_bytes();
    non_ascii.extend_from_slice(b"; y=\xff");
    let req = Request::get("/me")
        .header(header::COOKIE, format!("at={token}"))
        .header(header::COOKIE, HeaderValue::from_bytes(&non_ascii).unwrap())
        .body(Body::empty())
        .unwrap();
    invalid_request(&oneshot(&app, req).await, several);
    // A non-ASCII byte elsewhere does not hide the one token either.
    let req = Request::get("/me")
        .header(header::COOKIE, HeaderValue::from_bytes(&non_ascii).unwrap())
        .body(Body::empty())
        .unwrap();
    assert_eq!(oneshot(&app, req).await.status(), StatusCode::OK);
    // A non-ASCII token value is malformed.
    let req = Request::get("/me")
        .header(
            header::COOKIE,
            HeaderValue::from_bytes(b"at=abc\xe9").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    invalid_request(&oneshot(&app, req).await, "Malformed credentials");
}

// 8. RFC 6750 §2.3: responses to query-token requests are `Cache-Control: private`.
#[tokio::test]
async fn query_token_responses_are_private() {
    let issuer = TestIssuer::new();
    let app = query_cookie_app(&issuer);
    let token = issuer.token().audience(AUD).mint();
    let cache_control = |res: &axum::response::Response| {
        res.headers()
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let get = |uri: String| Request::get(uri).body(Body::empty()).unwrap();
    let res = oneshot(&app, get(format!("/me?access_token={token}"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(cache_control(&res).as_deref(), Some("private"));
    let res = oneshot(&app, get(format!("/cached?access_token={token}"))).await;
    assert_eq!(cache_control(&res).as_deref(), Some("private, max-age=60"));
    let res = oneshot(&app, get(format!("/no-store?access_token={token}"))).await;
    assert_eq!(cache_control(&res).as_deref(), Some("no-store"));
    // Header and cookie tokens leave the response alone.
    let res = bearer(&app, "/me", &token).await;
    assert_eq!(cache_control(&res), None);
    let req = Request::get("/cached")
        .header(header::COOKIE, format!("at={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        cache_control(&oneshot(&app, req).await).as_deref(),
        Some("public, max-age=60")
    );
}

// 9. RFC 6750 §2.2: no body token for methods without body semantics.
#[tokio::test]
async fn form_tokens_only_for_methods_with_body_semantics() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let app = Router::new()
        .route("/x", any(|| async { "ok" }))
        .layer(guard.layer())
        .layer(guard.form_token_layer());
    let token = issuer.token().audience(AUD).mint();
    let form = |method: Method| {
        Request::builder()
            .method(method)
            .uri("/x")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("access_token={token}")))
            .unwrap()
    };
    for method in [
        Method::GET,
        Method::HEAD,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ] {
        let res = oneshot(&app, form(method.clone())).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(
            challenge(&res).as_deref(),
            Some(r#"Bearer realm="api""#),
            "{method}"
        );
    }
    for method in [Method::POST, Method::PUT, Method::PATCH] {
        assert_eq!(
            oneshot(&app, form(method.clone())).await.status(),
            StatusCode::OK,
            "{method}"
        );
    }
    // An encoded parameter name counts in the body too.
    let req = Request::post("/x")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(format!("access%5Ftoken={token}")))
        .unwrap();
    invalid_request(
        &oneshot(&app, req).await,
        "More than one access token in the request",
    );
}

// 10. `multi_issuer`: one set of request-level settings, the first guard's,
//     for every refusal whichever issuer a token names.
#[tokio::test]
async fn multi_issuer_refusals_use_the_request_level_settings() {
    let a = TestIssuer::with_issuer("https://a.example.com");
    let b = TestIssuer::with_issuer("https://b.example.com");
    let guard_a = a
        .guard_builder(AUD)
        .realm("tenant-a")
        .json_errors()
        .build()
        .unwrap();
    let guard_b = b.guard_builder(AUD).realm("tenant-b").build().unwrap();
    let multi = TokenGuard::multi_issuer([guard_a, guard_b]).unwrap();
    let app = Router::new()
        .route(
            "/admin",
            get(|| async { "ok" }).route_layer(require_scope("admin")),
        )
        .route(
            "/me",
            get(|_: tokenguard::RequireScope<Admin>| async { "ok" }),
        )
        .layer(multi.layer());
    let token = b.token().audience(AUD).scope("read").mint();
    let expired = b.token().audience(AUD).expired().mint();
    for (path, token, status, challenge_value) in [
        (
            "/admin",
            &token,
            StatusCode::FORBIDDEN,
            r#"Bearer realm="tenant-a", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="admin""#,
        ),
        (
            "/me",
            &token,
            StatusCode::FORBIDDEN,
            r#"Bearer realm="tenant-a", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="admin""#,
        ),
        (
            "/me",
            &expired,
            StatusCode::UNAUTHORIZED,
            r#"Bearer realm="tenant-a", error="invalid_token", error_description="The access token expired""#,
        ),
    ] {
        let res = bearer(&app, path, token).await;
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(challenge(&res).as_deref(), Some(challenge_value), "{path}");
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{path}: the first guard's error body"
        );
    }
}

tokenguard::scopes! { Admin = "admin"; }

// 11. Configuration that contradicts the docs is a build error.
#[test]
fn contradictory_configuration_is_refused() {
    for issuer in [
        "https://id.example.com?tenant=a",
        "https://id.example.com/#x",
    ] {
        let e = TokenGuard::builder()
            .issuer(issuer)
            .audience(AUD)
            .build()
            .unwrap_err();
        assert!(
            matches!(e, BuildError::InvalidUrl(ref why) if why.contains("RFC 8414")),
            "{e}"
        );
    }
    let e = TokenGuard::builder()
        .issuer("https://id.example.com")
        .audience(AUD)
        .insecure_skip_issuer_check()
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::ConflictingSettings(_)), "{e}");
    let e = TokenGuard::builder()
        .audience(AUD)
        .jwks_url("https://id.example.com/jwks")
        .insecure_skip_issuer_check()
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::ConflictingSettings(_)), "{e}");
    // With static keys, skipping the issuer check stays possible.
    let issuer = TestIssuer::new();
    assert!(
        TokenGuard::builder()
            .audience(AUD)
            .jwks_json(issuer.jwks().to_string())
            .insecure_skip_issuer_check()
            .build()
            .is_ok()
    );
}
