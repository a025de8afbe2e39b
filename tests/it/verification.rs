//! JWT verification through a real axum Router: every accepted algorithm, and
//! each rejection of the strict defaults, with its status and challenge.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use tokenguard::testing::TestIssuer;
use tokenguard::{Algorithm, TokenGuard};

fn setup() -> (TestIssuer, axum::Router) {
    let issuer = TestIssuer::new();
    let app = app(&issuer.guard(AUD));
    (issuer, app)
}

#[tokio::test]
async fn every_asymmetric_algorithm_is_accepted() {
    let (issuer, app) = setup();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let token = issuer
            .token()
            .audience(AUD)
            .subject("u1")
            .algorithm(alg)
            .mint();
        let res = bearer(&app, "/me", &token).await;
        assert_eq!(res.status(), StatusCode::OK, "{alg:?}");
        assert_eq!(body(res).await, "u1", "{alg:?}");

        // The same key and algorithm: one changed signature byte, and this
        // signature over another token's claims, are both refused.
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let middle = sig.len() / 2;
        sig[middle] ^= 1;
        let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let other = issuer
            .token()
            .audience(AUD)
            .subject("u2")
            .algorithm(alg)
            .mint();
        let (other_input, _) = other.rsplit_once('.').unwrap();
        let swapped = format!("{other_input}.{signature}");
        for bad in [tampered, swapped] {
            let res = bearer(&app, "/me", &bad).await;
            assert_invalid_token(&res, "The access token signature is invalid");
        }
    }
}

#[tokio::test]
async fn hmac_is_accepted_only_with_an_explicit_secret() {
    let secret = [7u8; 32];
    let issuer = TestIssuer::new();
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .hmac_secret(Algorithm::HS256, secret, None)
        .build()
        .unwrap();
    let token = issuer
        .token()
        .audience(AUD)
        .hmac_secret(Algorithm::HS256, &secret)
        .mint();
    assert_eq!(
        bearer(&app(&guard), "/me", &token).await.status(),
        StatusCode::OK
    );

    // Same token against a guard with only asymmetric keys.
    let res = bearer(&app(&issuer.guard(AUD)), "/me", &token).await;
    assert_invalid_token(&res, "The access token algorithm is not accepted");

    // HMAC cannot be switched on through the allowlist, and short secrets are refused.
    let err = TokenGuard::builder()
        .issuer("https://i")
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .jwks_json(issuer.jwks().to_string())
        .build()
        .unwrap_err();
    assert!(
        matches!(err, tokenguard::BuildError::InvalidAlgorithms(_)),
        "{err}"
    );
    let err = TokenGuard::builder()
        .issuer("https://i")
        .audience(AUD)
        .hmac_secret(Algorithm::HS256, b"short", None)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, tokenguard::BuildError::InvalidKey(_)),
        "{err}"
    );
}

#[tokio::test]
async fn algorithm_outside_the_allowlist_is_refused() {
    let issuer = TestIssuer::new();
    let guard = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .algorithms([Algorithm::ES256])
        .jwks_json(issuer.jwks().to_string())
        .build()
        .unwrap();
    let app = app(&guard);
    let ok = issuer.token().audience(AUD).mint();
    assert_eq!(bearer(&app, "/me", &ok).await.status(), StatusCode::OK);
    let rs = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::RS256)
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &rs).await,
        "The access token algorithm is not accepted",
    );
}

/// Replaces the header of `token` (keeping payload and signature).
fn with_header(token: &str, header: serde_json::Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (issuer, app) = setup();
    let token = issuer.token().audience(AUD).mint();
    let (head, rest) = token.split_once('.').unwrap();
    let _ = head;
    let payload = rest.split('.').next().unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{header}.{payload}.");
    assert_invalid_token(
        &bearer(&app, "/me", &unsigned).await,
        "The access token signature is invalid",
    );
    let none_with_sig = with_header(&token, serde_json::json!({"alg": "none", "typ": "at+jwt"}));
    assert_invalid_token(
        &bearer(&app, "/me", &none_with_sig).await,
        "The access token algorithm is not accepted",
    );
}

#[tokio::test]
async fn key_is_chosen_by_kid_and_pinned_to_its_algorithm() {
    let (issuer, app) = setup();
    // A kid the key set does not have.
    let unknown = issuer.token().audience(AUD).kid(Some("nope")).mint();
    assert_invalid_token(
        &bearer(&app, "/me", &unknown).await,
        "The access token signing key is unknown",
    );
    // The ES256 key's kid, but a token claiming ES384.
    let confused = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::ES384)
        .kid(Some(&issuer.kid(Algorithm::ES256)))
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &confused).await,
        "The access token algorithm is not accepted",
    );
    // Without kid, a single key fits ES256: accepted.
    let kidless = issuer.token().audience(AUD).kid(None).mint();
    assert_eq!(bearer(&app, "/me", &kidless).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn keys_offered_by_the_token_are_ignored() {
    let (issuer, app) = setup();
    let attacker = TestIssuer::new();
    let jwk = attacker.jwks()["keys"][1].clone();
    for (name, value) in [
        ("jwk", jwk),
        ("jku", "https://attacker.example/jwks".into()),
        ("x5u", "https://attacker.example/cert".into()),
        ("x5c", serde_json::json!(["MIIB"])),
    ] {
        // Signed by the attacker's key, naming it in the header and reusing the issuer's kid.
        let token = attacker
            .token()
            .issuer(issuer.issuer())
            .audience(AUD)
            .kid(Some(&issuer.kid(Algorithm::ES256)))
            .header(name, value)
            .mint();
        assert_invalid_token(
            &bearer(&app, "/me", &token).await,
            "The access token signature is invalid",
        );
    }
}

#[tokio::test]
async fn crit_is_refused() {
    let (issuer, app) = setup();
    for crit in [
        serde_json::json!(["exp"]),
        serde_json::json!([]),
        serde_json::json!("b64"),
    ] {
        let token = issuer.token().audience(AUD).header("crit", crit).mint();
        assert_invalid_token(
            &bearer(&app, "/me", &token).await,
            "The access token has an unsupported critical header",
        );
    }
}

#[tokio::test]
async fn issuer_must_match_exactly() {
    let (issuer, app) = setup();
    for iss in [
        format!("{}/", issuer.issuer()),
        issuer.issuer().to_uppercase(),
        "https://issuer.tokenguard".into(),
        "https://evil.example".into(),
    ] {
        let token = issuer.token().audience(AUD).issuer(&iss).mint();
        assert_invalid_token(
            &bearer(&app, "/me", &token).await,
            "The access token issuer is not trusted",
        );
    }
    let token = issuer.token().audience(AUD).without_claim("iss").mint();
    assert_invalid_token(
        &bearer(&app, "/me", &token).await,
        "The access token lacks a required claim",
    );
}

#[tokio::test]
async fn audience_is_required_and_exact() {
    let (issuer, app) = setup();
    let missing = issuer.token().mint();
    assert_invalid_token(
        &bearer(&app, "/me", &missing).await,
        "The access token lacks a required claim",
    );
    for aud in [
        format!("{AUD}/"),
        "https://api.example".into(),
        "https://other.example.com".into(),
    ] {
        let token = issuer.token().audience(&aud).mint();
        assert_invalid_token(
            &bearer(&app, "/me", &token).await,
            "The access token is not meant for this resource",
        );
    }
    let many = issuer.token().audiences(&["https://other", AUD]).mint();
    assert_eq!(bearer(&app, "/me", &many).await.status(), StatusCode::OK);
    let others = issuer
        .token()
        .audiences(&["https://other", "https://third"])
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &others).await,
        "The access token is not meant for this resource",
    );
}

#[tokio::test]
async fn expiry_is_required_and_checked() {
    let (issuer, app) = setup();
    let expired = issuer.token().audience(AUD).expired().mint();
    assert_invalid_token(
        &bearer(&app, "/me", &expired).await,
        "The access token expired",
    );
    let no_exp = issuer.token().audience(AUD).without_claim("exp").mint();
    assert_invalid_token(
        &bearer(&app, "/me", &no_exp).await,
        "The access token lacks a required claim",
    );
    let string_exp = issuer
        .token()
        .audience(AUD)
        .claim("exp", "9999999999")
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &string_exp).await,
        "The access token has an invalid claim",
    );
}

#[tokio::test]
async fn leeway_tolerates_small_skew() {
    let (issuer, app) = setup();
    let now = tokenguard::NumericDate::now().as_secs();
    // Expired 10 s ago: within the default 30 s leeway.
    let token = issuer
        .token()
        .audience(AUD)
        .claim("iat", now - 100)
        .claim("exp", now - 10)
        .mint();
    assert_eq!(bearer(&app, "/me", &token).await.status(), StatusCode::OK);
    // Expired 60 s ago: refused.
    let token = issuer
        .token()
        .audience(AUD)
        .claim("iat", now - 100)
        .claim("exp", now - 60)
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &token).await,
        "The access token expired",
    );
    // With zero leeway, 10 s ago is refused.
    let strict = issuer
        .guard_builder(AUD)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let token = issuer
        .token()
        .audience(AUD)
        .claim("iat", now - 100)
        .claim("exp", now - 10)
        .mint();
    assert_invalid_token(
        &bearer(&common::app(&strict), "/me", &token).await,
        "The access token expired",
    );
}

#[tokio::test]
async fn not_before_and_issued_at_are_checked() {
    let (issuer, app) = setup();
    let nbf = issuer
        .token()
        .audience(AUD)
        .not_before_in(Duration::from_secs(120))
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &nbf).await,
        "The access token is not valid yet",
    );
    let now = tokenguard::NumericDate::now().as_secs();
    let iat = issuer
        .token()
        .audience(AUD)
        .claim("iat", now + 120)
        .claim("exp", now + 300)
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &iat).await,
        "The access token was issued in the future",
    );
}

#[tokio::test]
async fn float_numeric_dates_are_accepted() {
    let (issuer, app) = setup();
    let now = tokenguard::NumericDate::now().as_secs() as f64;
    let token = issuer
        .token()
        .audience(AUD)
        .claim("iat", now + 0.25)
        .claim("exp", now + 300.5)
        .mint();
    assert_eq!(bearer(&app, "/me", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn access_token_type_is_required_by_default() {
    let (issuer, app) = setup();
    for typ in [None, Some("JWT"), Some("dpop+jwt"), Some("id_token+jwt")] {
        let token = match typ {
            None => issuer.token().audience(AUD).untyped().mint(),
            Some(t) => issuer.token().audience(AUD).typ(t).mint(),
        };
        assert_invalid_token(
            &bearer(&app, "/me", &token).await,
            "The token is not an access token",
        );
    }
    let long_form = issuer
        .token()
        .audience(AUD)
        .typ("application/at+jwt")
        .mint();
    assert_eq!(
        bearer(&app, "/me", &long_form).await.status(),
        StatusCode::OK
    );

    // The explicit opt-out accepts untyped and `JWT` tokens, nothing else.
    let relaxed = common::app(
        &issuer
            .guard_builder(AUD)
            .allow_untyped_tokens()
            .build()
            .unwrap(),
    );
    let untyped = issuer.token().audience(AUD).untyped().mint();
    assert_eq!(
        bearer(&relaxed, "/me", &untyped).await.status(),
        StatusCode::OK
    );
    let jwt = issuer.token().audience(AUD).typ("JWT").mint();
    assert_eq!(bearer(&relaxed, "/me", &jwt).await.status(), StatusCode::OK);
    let dpop = issuer.token().audience(AUD).typ("dpop+jwt").mint();
    assert_invalid_token(
        &bearer(&relaxed, "/me", &dpop).await,
        "The token is not an access token",
    );
}

#[tokio::test]
async fn long_lived_tokens_are_refused() {
    let (issuer, app) = setup();
    let day_and_a_bit = issuer
        .token()
        .audience(AUD)
        .expires_in(Duration::from_secs(24 * 3600 + 60))
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &day_and_a_bit).await,
        "The access token lifetime is too long",
    );
    // Without iat, the remaining lifetime counts.
    let now = tokenguard::NumericDate::now().as_secs();
    let no_iat = issuer
        .token()
        .audience(AUD)
        .without_claim("iat")
        .claim("exp", now + 48 * 3600)
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &no_iat).await,
        "The access token lifetime is too long",
    );
    // Configurable, and can be disabled.
    let short = common::app(
        &issuer
            .guard_builder(AUD)
            .max_lifetime(Some(Duration::from_secs(60)))
            .build()
            .unwrap(),
    );
    let five_min = issuer.token().audience(AUD).mint();
    assert_invalid_token(
        &bearer(&short, "/me", &five_min).await,
        "The access token lifetime is too long",
    );
    let unlimited = common::app(
        &issuer
            .guard_builder(AUD)
            .max_lifetime(None)
            .build()
            .unwrap(),
    );
    assert_eq!(
        bearer(&unlimited, "/me", &day_and_a_bit).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn altered_tokens_are_refused() {
    let (issuer, app) = setup();
    let token = issuer.token().audience(AUD).subject("u1").mint();
    let parts: Vec<&str> = token.split('.').collect();
    // Swap in another payload.
    let other = issuer.token().audience(AUD).subject("admin").mint();
    let other_payload = other.split('.').nth(1).unwrap();
    let swapped = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
    assert_invalid_token(
        &bearer(&app, "/me", &swapped).await,
        "The access token signature is invalid",
    );
    // Stripped and truncated signatures.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_invalid_token(
        &bearer(&app, "/me", &stripped).await,
        "The access token signature is invalid",
    );
    let truncated = &token[..token.len() - 4];
    assert_eq!(
        bearer(&app, "/me", truncated).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Not three parts; JWE-like five parts.
    for bad in [
        parts[0].to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.a.b"),
    ] {
        assert_invalid_token(
            &bearer(&app, "/me", &bad).await,
            "The access token is malformed",
        );
    }
}

#[tokio::test]
async fn oversized_tokens_are_refused() {
    let (issuer, app) = setup();
    let big = issuer
        .token()
        .audience(AUD)
        .claim("pad", "x".repeat(9000))
        .mint();
    assert_invalid_token(
        &bearer(&app, "/me", &big).await,
        "The access token is too large",
    );
    let roomy = common::app(
        &issuer
            .guard_builder(AUD)
            .max_token_size(64 * 1024)
            .build()
            .unwrap(),
    );
    assert_eq!(bearer(&roomy, "/me", &big).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_and_malformed_credentials() {
    let (issuer, app) = setup();
    let res = send(&app, "/me", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&res).as_deref(), Some(r#"Bearer realm="api""#));
    // Another scheme is no bearer credential at all.
    let res = send(&app, "/me", &["Basic dXNlcjpwYXNz"]).await;
    assert_eq!(challenge(&res).as_deref(), Some(r#"Bearer realm="api""#));

    let token = issuer.token().audience(AUD).mint();
    let bad_request = |res: &axum::response::Response, desc: &str| {
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            challenge(res).unwrap(),
            format!(r#"Bearer realm="api", error="invalid_request", error_description="{desc}""#)
        );
    };
    let two = format!("Bearer {token}");
    bad_request(
        &send(&app, "/me", &[&two, &two]).await,
        "More than one Authorization header",
    );
    bad_request(
        &send(&app, "/me", &[&format!("Bearer {token}, Bearer {token}")]).await,
        "Malformed credentials",
    );
    bad_request(
        &send(&app, "/me", &["Bearer"]).await,
        "Malformed credentials",
    );
    bad_request(
        &send(&app, "/me", &["Bearer a\"b"]).await,
        "Malformed credentials",
    );
    // A JWT with a character outside token68 in any segment, or `=` before
    // its end, is a malformed request (400), not a bad token (401): the
    // verifier checks the syntax before it refuses.
    let (h, rest) = token.split_once('.').unwrap();
    let (p, sig) = rest.split_once('.').unwrap();
    for bad in [
        format!("{h}!.{p}.{sig}"),
        format!("{h}.{p}!.{sig}"),
        format!("{h}.{p}.{sig}!"),
        format!("{h}=.{p}.{sig}"),
        format!("{h}.{p}.{sig}é"),
        String::from("opaque!token"),
    ] {
        bad_request(
            &send(&app, "/me", &[&format!("Bearer {bad}")]).await,
            "Malformed credentials",
        );
    }
    // A token68 that is not a JWT is a bad token.
    let res = send(&app, "/me", &[&format!("Bearer {h}~.{p}.{sig}")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The scheme is case-insensitive.
    assert_eq!(
        send(&app, "/me", &[&format!("bEARER {token}")])
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn query_and_cookie_tokens_only_when_enabled() {
    let issuer = TestIssuer::new();
    let token = issuer.token().audience(AUD).mint();
    let strict = app(&issuer.guard(AUD));
    let res = send(&strict, &format!("/me?access_token={token}"), &[]).await;
    assert_eq!(challenge(&res).as_deref(), Some(r#"Bearer realm="api""#));

    let sources = tokenguard::TokenSources::default().with_query();
    let relaxed = app(&issuer
        .guard_builder(AUD)
        .token_sources(sources)
        .build()
        .unwrap());
    assert_eq!(
        send(&relaxed, &format!("/me?access_token={token}"), &[])
            .await
            .status(),
        StatusCode::OK
    );
    // Two methods at once: 400.
    let res = send(
        &relaxed,
        &format!("/me?access_token={token}"),
        &[&format!("Bearer {token}")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn realm_is_configurable_and_checked() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard_builder(AUD).realm("invoices").build().unwrap();
    let res = send(&app(&guard), "/me", &[]).await;
    assert_eq!(
        challenge(&res).as_deref(),
        Some(r#"Bearer realm="invoices""#)
    );
    for bad in ["a\"b", "a\\b", "line\r\nbreak", ""] {
        assert_eq!(
            issuer.guard_builder(AUD).realm(bad).build().unwrap_err(),
            tokenguard::BuildError::InvalidRealm
        );
    }
}

#[tokio::test]
async fn static_key_sources() {
    let issuer = TestIssuer::new();
    let rs = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::RS256)
        .kid(None)
        .mint();
    // PEM without kid: kid-less tokens verify.
    let pem = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .pem(issuer.rsa_public_pem(), None)
        .build()
        .unwrap();
    assert_eq!(
        bearer(&app(&pem), "/me", &rs).await.status(),
        StatusCode::OK
    );
    // PEM with kid: a token naming another kid is refused.
    let kid = issuer.kid(Algorithm::RS256);
    let pem_kid = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .pem(issuer.rsa_public_pem(), Some(&kid))
        .build()
        .unwrap();
    let other_kid = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::RS256)
        .kid(Some("other"))
        .mint();
    assert_invalid_token(
        &bearer(&app(&pem_kid), "/me", &other_kid).await,
        "The access token signing key is unknown",
    );
    let rs_kid = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::RS256)
        .mint();
    assert_eq!(
        bearer(&app(&pem_kid), "/me", &rs_kid).await.status(),
        StatusCode::OK
    );
    // One JWK.
    let jwk = issuer.jwk(Algorithm::EdDSA).to_string();
    let one = TokenGuard::builder()
        .issuer(issuer.issuer())
        .audience(AUD)
        .jwk(jwk)
        .build()
        .unwrap();
    let ed = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::EdDSA)
        .mint();
    assert_eq!(
        bearer(&app(&one), "/me", &ed).await.status(),
        StatusCode::OK
    );
    // Bad key material is a build error, not a runtime surprise.
    let err = TokenGuard::builder()
        .issuer("https://i")
        .audience(AUD)
        .pem("not a pem", None)
        .build()
        .unwrap_err();
    assert!(matches!(err, tokenguard::BuildError::InvalidKey(_)));
}

#[tokio::test]
async fn builder_refuses_incomplete_configurations() {
    use tokenguard::BuildError;
    let issuer = TestIssuer::new();
    let jwks = issuer.jwks().to_string();
    let e = TokenGuard::builder()
        .issuer("https://i")
        .jwks_json(&jwks)
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::MissingAudience);
    let e = TokenGuard::builder()
        .audience(AUD)
        .jwks_json(&jwks)
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::MissingIssuer);
    let e = TokenGuard::builder()
        .audience(AUD)
        .insecure_skip_issuer_check()
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::NoKeySource);
    let e = TokenGuard::builder()
        .issuer("http://id.example.com")
        .audience(AUD)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::InvalidUrl(_)), "{e}");
    // The explicit opt-outs work.
    let any_aud = TokenGuard::builder()
        .issuer(issuer.issuer())
        .jwks_json(&jwks)
        .insecure_skip_audience_check()
        .build()
        .unwrap();
    let token = issuer.token().audience("https://whatever").mint();
    assert_eq!(
        bearer(&app(&any_aud), "/me", &token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn both_crypto_backends_compiled_in_do_not_panic() {
    // Under `--all-features` both jsonwebtoken backends are compiled; building a
    // guard chooses aws-lc-rs explicitly, and jsonwebtoken's own API then works
    // in the same process.
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let token = issuer.token().audience(AUD).mint();
    assert!(guard.verify(&token).await.is_ok());
    let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"exp": 1}),
        &key,
    );
    assert!(jwt.is_ok());
}

#[tokio::test]
async fn claims_are_capped_whatever_the_token_size_limit() {
    let issuer = TestIssuer::new();
    let huge = common::app(
        &issuer
            .guard_builder(AUD)
            .max_token_size(1 << 20)
            .build()
            .unwrap(),
    );
    let big_claims = issuer
        .token()
        .audience(AUD)
        .claim("pad", "x".repeat(70 * 1024))
        .mint();
    assert_invalid_token(
        &bearer(&huge, "/me", &big_claims).await,
        "The access token is too large",
    );
    let fits = issuer
        .token()
        .audience(AUD)
        .claim("pad", "x".repeat(60 * 1024))
        .mint();
    assert_eq!(bearer(&huge, "/me", &fits).await.status(), StatusCode::OK);
}
