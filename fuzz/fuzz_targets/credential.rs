//! `credential::parse_authorization` and `credential::is_token68` on arbitrary
//! bytes, checked against the RFC 6750 §2.1 / RFC 7235 grammars; and the
//! opt-in query-parameter and cookie sources, through the guard's layer (their
//! only public path).
//!
//! Input: the first byte chooses the maximum token size (`4 * byte`, or
//! `usize::MAX` for 255); the rest is the `Authorization` value, and also the
//! query string of one request and the `Cookie` value of another.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use libfuzzer_sys::fuzz_target;
use tokenguard::__private::{is_token68, parse_authorization};
use tokenguard::testing::TestIssuer;
use tokenguard::{AuthErrorKind, InvalidRequest, InvalidToken, TokenSources};
use tower::ServiceExt;

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: Router,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let guard = TestIssuer::new()
            .guard_builder("https://api")
            .token_sources(TokenSources::default().with_query().with_cookie("at"))
            .build()
            .expect("guard");
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            app: Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(guard.layer()),
        }
    })
}

/// RFC 7235: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn model_token68(s: &[u8]) -> bool {
    let mut body = s;
    while let [rest @ .., b'='] = body {
        body = rest;
    }
    !body.is_empty()
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
}

/// The field value proper: surrounding whitespace is not part of it
/// (RFC 9110 §5.5).
fn field_value(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// RFC 6750 §2.1, strictly: `"Bearer" 1*SP b64token`, at most `max` bytes.
fn model_bearer(value: &[u8], max: usize) -> Option<&[u8]> {
    let value = field_value(value);
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    let mut token = &value[6..];
    while let [b' ', rest @ ..] = token {
        token = rest;
    }
    (model_token68(token) && token.len() <= max).then_some(token)
}

fn check_parse(value: &[u8], max: usize) {
    let field = field_value(value);
    // The scheme ends at the first SP or HTAB.
    let scheme_end = field
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(field.len());
    let is_bearer = field[..scheme_end].eq_ignore_ascii_case(b"bearer");
    let strict = model_bearer(value, max);
    match parse_authorization(value, max) {
        Ok(None) => assert!(!is_bearer, "Bearer credentials ignored"),
        Ok(Some(t)) => {
            assert!(is_bearer);
            assert!(model_token68(t.as_bytes()), "not a token68: {t:?}");
            assert!(t.len() <= max);
            let rest = &field[6..];
            assert!(
                rest.ends_with(t.as_bytes()),
                "the token does not end the value"
            );
            let sep = &rest[..rest.len() - t.len()];
            assert!(
                !sep.is_empty() && sep.iter().all(|&b| b == b' '),
                "separator {sep:?}"
            );
            assert_eq!(strict, Some(t.as_bytes()));
        }
        Err(e) => {
            assert!(is_bearer, "an error for another scheme");
            assert_eq!(strict, None, "valid credentials refused: {e:?}");
            match e.kind() {
                AuthErrorKind::InvalidRequest(InvalidRequest::MalformedCredentials) => {}
                AuthErrorKind::InvalidToken(InvalidToken::TooLarge) => {
                    // What follows `Bearer 1*SP`, too long.
                    let token = &field[6..];
                    let spaces = token.iter().take_while(|&&b| b == b' ').count();
                    assert!(spaces > 0 && token.len() - spaces > max);
                }
                other => panic!("unexpected error {other:?}"),
            }
            let ch = e.challenge("api").expect("a 400/401 has a challenge");
            check_challenge(&ch);
        }
    }
}

/// `Bearer name="value"(, name="value")*`, printable ASCII, no `"` or `\`
/// inside values.
fn check_challenge(ch: &str) {
    assert!(HeaderValue::from_str(ch).is_ok(), "{ch:?}");
    assert!(ch.bytes().all(|b| (0x20..=0x7E).contains(&b)), "{ch:?}");
    let mut rest = ch.strip_prefix("Bearer realm=\"api\"").expect(ch);
    while !rest.is_empty() {
        rest = rest.strip_prefix(", ").expect(ch);
        let (name, after) = rest.split_once("=\"").expect(ch);
        assert!(
            ["error", "error_description", "scope"].contains(&name),
            "{ch:?}"
        );
        let (value, after) = after.split_once('"').expect(ch);
        assert!(!value.contains('\\'), "{ch:?}");
        rest = after;
    }
}

fn send(req: http::request::Builder) {
    let f = fixture();
    let res =
        f.rt.block_on(f.app.clone().oneshot(req.body(Body::empty()).unwrap()))
            .unwrap();
    // Nothing here can carry a token this process's issuer signed.
    assert!(
        [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(&res.status()),
        "status {}",
        res.status()
    );
    let ch = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("a challenge")
        .to_str()
        .expect("ASCII challenge");
    check_challenge(ch);
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, value)) = data.split_first() else {
        return;
    };
    let max = if m == 255 {
        usize::MAX
    } else {
        4 * usize::from(m)
    };
    assert_eq!(is_token68(value), model_token68(value));
    check_parse(value, max);

    if let Ok(query) = std::str::from_utf8(value)
        && let Ok(uri) = format!("/?{query}").parse::<Uri>()
    {
        send(Request::get(uri));
    }
    if let Ok(cookie) = HeaderValue::from_bytes(value) {
        send(Request::get("/").header(header::COOKIE, cookie));
    }
});
