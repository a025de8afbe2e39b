//! The whole guard: arbitrary input as the `Authorization` header of a request
//! through `TokenGuardLayer` around an axum `Router` (guards of a
//! `TestIssuer`), built once per process with its tokio runtime.
//!
//! The first byte chooses how the rest becomes a request:
//!
//! - `0`: the raw `Authorization` value;
//! - `1`: `Bearer <rest>`, so the fuzzer works on the token itself (split,
//!   base64url, JSON header);
//! - `2`: the rest split at NUL bytes, each part base64url-encoded and joined
//!   with `.`: the fuzzer writes the JOSE header and payload JSON directly;
//! - `3`: `<header JSON> NUL <claims JSON>` (or claims alone, under a valid
//!   header), signed HS256 with a secret the guard trusts: the fuzzer reaches
//!   claim parsing and the claim checks. A 200 is possible here, and is
//!   checked against an independent model of what must hold for acceptance.
//!
//! Every answer must be 400 / 401 (or, in mode 3, 200 / 403 for the route's
//! `read` scope) with `Cache-Control: no-store` and a well-formed RFC 6750
//! challenge; never 5xx, never a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenguard::testing::{DEFAULT_TEST_ISSUER, TestIssuer};
use tokenguard::{Algorithm, require_scope};
use tower::ServiceExt;

mod common;
use common::check_challenge;

const AUD: &str = "https://api";
const SECRET: &[u8] = b"tokenguard fuzzing secret, 32+ bytes long";
const VALID_HEADER: &[u8] = br#"{"alg":"HS256","typ":"at+jwt","kid":"hs"}"#;

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// `TestIssuer::guard`, strict defaults.
    plain: Router,
    /// The same issuer plus an HS256 key `hs`, no lifetime limit; `/` needs
    /// the scope `read`.
    hmac: Router,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer = TestIssuer::new();
        let ok = || async { "ok" };
        let hmac_guard = issuer
            .guard_builder(AUD)
            .hmac_secret(Algorithm::HS256, SECRET, Some("hs"))
            .max_lifetime(None)
            .build()
            .expect("HMAC guard");
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            plain: Router::new()
                .route("/", get(ok))
                .layer(issuer.guard(AUD).layer()),
            hmac: Router::new()
                .route("/", get(ok))
                .route_layer(require_scope("read"))
                .layer(hmac_guard.layer()),
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What must hold of a token the HMAC guard accepted on a route needing
/// `read` (a model independent of the crate: `serde_json::Value` and plain
/// comparisons).
fn check_accepted(header: &[u8], claims: &[u8]) {
    let h: Value = serde_json::from_slice(header).expect("accepted header is JSON");
    assert_eq!(h["alg"], "HS256", "{h}");
    let typ = h["typ"].as_str().expect("typ").to_ascii_lowercase();
    assert!(typ == "at+jwt" || typ == "application/at+jwt", "{h}");
    assert!(h.get("crit").is_none(), "{h}");
    assert!(h.get("kid").is_none_or(|k| k == "hs"), "{h}");

    let c: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(c["iss"], DEFAULT_TEST_ISSUER, "{c}");
    match &c["aud"] {
        Value::String(a) => assert_eq!(a, AUD, "{c}"),
        Value::Array(a) => assert!(a.iter().any(|a| a == AUD), "{c}"),
        other => panic!("aud {other}"),
    }
    let exp = c["exp"].as_f64().expect("numeric exp");
    assert!(exp >= now - 31.0, "{c}");
    for past in ["nbf", "iat"] {
        if let Some(t) = c.get(past) {
            assert!(t.as_f64().expect("numeric") <= now + 31.0, "{c}");
        }
    }
    let scope = c["scope"].as_str().expect("scope string");
    assert!(scope.split(' ').any(|s| s == "read"), "{c}");
}

fn sign(input: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    b64(hmac::sign(&key, input.as_bytes()).as_ref())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mut app = &f.plain;
    let mut signed = None;
    let value: Vec<u8> = match mode % 4 {
        0 => rest.to_vec(),
        1 => [b"Bearer ", rest].concat(),
        2 => {
            let parts: Vec<String> = rest.split(|&b| b == 0).map(b64).collect();
            format!("Bearer {}", parts.join(".")).into_bytes()
        }
        _ => {
            let (h, c) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (VALID_HEADER, rest),
            };
            let input = format!("{}.{}", b64(h), b64(c));
            let token = format!("{input}.{}", sign(&input));
            app = &f.hmac;
            signed = Some((h, c));
            format!("Bearer {token}").into_bytes()
        }
    };
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return;
    };
    let req = Request::get("/")
        .header(header::AUTHORIZATION, value)
        .body(Body::empty())
        .unwrap();
    let res = f.rt.block_on(app.clone().oneshot(req)).unwrap();
    let status = res.status();
    match (status, signed) {
        (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED, _) => {}
        (StatusCode::FORBIDDEN, Some(_)) => {}
        (StatusCode::OK, Some((h, c))) => {
            check_accepted(h, c);
            return;
        }
        _ => panic!("status {status} in mode {}", mode % 4),
    }
    assert_eq!(
        res.headers()
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let ch = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("a challenge")
        .to_str()
        .expect("ASCII challenge");
    // A request without any token gets the bare challenge.
    check_challenge(ch, status, true);
});
