//! Structure-aware: the input is an `Arbitrary` description of a JOSE header
//! and a claims set, each a template (a valid one by default) changed by a
//! list of edits. A member's name is one of the known names or any string;
//! its value is the usual value for that name, a nearly valid one, any string
//! (ASCII, 2/3/4-byte UTF-8, controls, JOSE words) or any JSON value (null,
//! booleans, integers, floats, huge and negative numbers, times around now,
//! arrays, objects; three levels deep). Objects are written by hand, so names
//! may repeat. The token is signed HS256 with a secret the guard trusts (or
//! its signature spoiled) and sent through `TokenGuardLayer` around an axum
//! `Router` whose route needs the scope `read`.
//!
//! Checks: no panic; only 200 / 400 / 401 / 403; on refusals
//! `Cache-Control: no-store` and a well-formed RFC 6750 challenge; on 200 and
//! 403 an independent model (`serde_json::Value`, plain comparisons) agrees
//! that the header and claims allow the token (`alg` HS256, `typ` at+jwt or
//! application/at+jwt in any case, `kid` absent or `hs`, no `crit`, no
//! repeated `alg`/`typ`/`kid`/`crit`; claims not repeated, of their types,
//! no `cnf`, `iss`, `aud`, `exp`, `nbf`, `iat` valid) and that `scope` holds
//! `read` exactly on 200; when the model finds the token plainly valid (not
//! within a second of a time limit, within the size limits), the guard does
//! not refuse it.
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
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
const KID: &str = "hs";
/// `leeway` of the guard (its default).
const LEEWAY: f64 = 30.0;
/// 9999-12-31T23:59:59Z, the largest NumericDate.
const MAX_DATE: f64 = 253_402_300_799.0;
/// The guard's default token size limit.
const MAX_TOKEN: usize = 8192;
const MAX_HEADER: usize = 2048;

/// Strings a JOSE header or claims set is made of.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA", "Ed25519", "none",
    "at+jwt", "jwt", "JWT", "application/", "+", "/", " ", "hs", "read", "write", "openid",
    "https://api", DEFAULT_TEST_ISSUER, "https://", "dpop+jwt", "b64", "\\", "\"", "\u{0}",
];
#[rustfmt::skip]
const ACCEPTED_ALGS: &[&str] = &[
    "HS256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    "Ed25519", "HS384", "HS512",
];

// ---------------------------------------------------------------- input ----

/// One piece of a string.
#[derive(Arbitrary, Debug, Clone)]
enum Piece {
    /// Printable ASCII.
    Ascii(u8),
    /// A 2-byte character (U+0080..U+017F).
    Two(u8),
    /// A 3-byte character (U+0800..U+FFFF; a surrogate becomes U+FFFD).
    Three(u16),
    /// A 4-byte character (U+10000..).
    Four(u16),
    /// A C0 control or DEL.
    Control(u8),
    Word(u8),
    /// Any UTF-8 as the fuzzer's bytes spell it.
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
struct Text(Vec<Piece>);

impl Text {
    fn render(&self) -> String {
        let mut s = String::new();
        for p in &self.0 {
            match p {
                Piece::Ascii(b) => s.push(char::from(0x20 + b % 95)),
                Piece::Two(b) => s.push(char::from_u32(0x80 + u32::from(*b)).unwrap()),
                Piece::Three(v) => {
                    s.push(char::from_u32(0x800 + u32::from(*v) % 0xF800).unwrap_or('\u{FFFD}'))
                }
                Piece::Four(v) => s.push(char::from_u32(0x10000 + u32::from(*v) * 16).unwrap()),
                Piece::Control(b) => s.push(if b % 33 == 32 {
                    '\u{7F}'
                } else {
                    char::from(b % 33)
                }),
                Piece::Word(i) => s.push_str(WORDS[usize::from(*i) % WORDS.len()]),
                Piece::Raw(r) => s.push_str(r),
            }
        }
        s
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Scalar {
    Null,
    Bool(bool),
    Small(i8),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Now plus this many seconds.
    Time(i32),
    /// Now plus a few seconds and a fraction (around the leeway).
    NearTime(i8, u8),
    /// Number spellings serde_json reads in its own ways.
    Number(u8),
    Str(Text),
    Word(u8),
}

#[rustfmt::skip]
const NUMBERS: &[&str] = &[
    "0", "-0", "-1", "1e400", "-1e400", "1e-400", "1E3", "2.0", "1.7e9", "253402300799",
    "253402300800", "253402300799.0", "253402300799.5", "9223372036854775807",
    "9223372036854775808", "18446744073709551615", "18446744073709551616", "-9223372036854775808",
    "1e300", "0.5", "-0.0",
];

#[derive(Arbitrary, Debug, Clone)]
enum Json1 {
    S(Scalar),
    A(Vec<Scalar>),
    O(Vec<(Text, Scalar)>),
}

#[derive(Arbitrary, Debug, Clone)]
enum Json {
    S(Scalar),
    A(Vec<Json1>),
    O(Vec<(Text, Json1)>),
}

/// A member's value: the usual one for its name (what a valid token has), a
/// nearly valid one, any string, or any JSON.
#[derive(Arbitrary, Debug, Clone)]
enum Val {
    Usual,
    Near(u8),
    Str(Text),
    Json(Json),
}

#[derive(Arbitrary, Debug, Clone)]
enum HName {
    Alg,
    Typ,
    Kid,
    Crit,
    Jku,
    Jwk,
    X5u,
    X5c,
    Cty,
    B64,
    Other(String),
    OtherText(Text),
}

#[derive(Arbitrary, Debug, Clone)]
enum CName {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    ClientId,
    Scope,
    Scp,
    Cnf,
    AuthTime,
    Acr,
    Amr,
    Other(String),
    OtherText(Text),
}

/// Changes to a template: `Set` replaces the first member of that name (or
/// appends), `Push` appends (names may repeat), `Remove` drops every member
/// of that name.
#[derive(Arbitrary, Debug, Clone)]
enum Edit<N> {
    Set(N, Val),
    Push(N, Val),
    Remove(N),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum HeaderTemplate {
    /// `alg` HS256, `typ` at+jwt, `kid` hs.
    Full,
    /// `alg` and `typ`.
    NoKid,
    Empty,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ClaimsTemplate {
    /// `iss`, `aud`, `exp` in 5 minutes, `iat` now, `scope` "read", `sub`.
    Full,
    /// `iss`, `aud`, `exp`.
    Minimal,
    Empty,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Sig {
    Good,
    /// One byte of the MAC changed.
    Flip(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    header: HeaderTemplate,
    header_edits: Vec<Edit<HName>>,
    claims: ClaimsTemplate,
    claims_edits: Vec<Edit<CName>>,
    sig: Sig,
}

// ------------------------------------------------------------ rendering ----

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

impl Scalar {
    fn render(&self, now: i64) -> String {
        match self {
            Scalar::Null => "null".into(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Small(v) => v.to_string(),
            Scalar::Int(v) => v.to_string(),
            Scalar::UInt(v) => v.to_string(),
            // Non-finite values become `null`.
            Scalar::Float(v) => serde_json::to_string(v).unwrap(),
            Scalar::Time(d) => (now + i64::from(*d)).to_string(),
            Scalar::NearTime(d, f) => {
                let v = (now + i64::from(*d)) as f64 + f64::from(*f) / 256.0;
                serde_json::to_string(&v).unwrap()
            }
            Scalar::Number(i) => pick(NUMBERS, *i).into(),
            Scalar::Str(t) => json_str(&t.render()),
            Scalar::Word(i) => json_str(pick(WORDS, *i)),
        }
    }
}

fn object<T>(members: &[(Text, T)], f: impl Fn(&T) -> String) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(&k.render()), f(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Json1 {
    fn render(&self, now: i64) -> String {
        match self {
            Json1::S(s) => s.render(now),
            Json1::A(a) => {
                let v: Vec<String> = a.iter().map(|s| s.render(now)).collect();
                format!("[{}]", v.join(","))
            }
            Json1::O(o) => object(o, |s| s.render(now)),
        }
    }
}

impl Json {
    fn render(&self, now: i64) -> String {
        match self {
            Json::S(s) => s.render(now),
            Json::A(a) => {
                let v: Vec<String> = a.iter().map(|s| s.render(now)).collect();
                format!("[{}]", v.join(","))
            }
            Json::O(o) => object(o, |s| s.render(now)),
        }
    }
}

impl HName {
    fn name(&self) -> String {
        match self {
            HName::Alg => "alg",
            HName::Typ => "typ",
            HName::Kid => "kid",
            HName::Crit => "crit",
            HName::Jku => "jku",
            HName::Jwk => "jwk",
            HName::X5u => "x5u",
            HName::X5c => "x5c",
            HName::Cty => "cty",
            HName::B64 => "b64",
            HName::Other(s) => return s.clone(),
            HName::OtherText(t) => return t.render(),
        }
        .into()
    }

    /// (usual value, nearly valid values), as JSON text.
    fn values(&self) -> (String, Vec<String>) {
        let s = |v: &[&str]| v.iter().map(|v| json_str(v)).collect::<Vec<_>>();
        match self {
            HName::Alg => (json_str("HS256"), s(ACCEPTED_ALGS)),
            HName::Typ => (
                json_str("at+jwt"),
                s(&[
                    "application/at+jwt",
                    "AT+JWT",
                    "Application/At+Jwt",
                    "JWT",
                    "application/jwt",
                    "at+jwt ",
                    "dpop+jwt",
                    "",
                ]),
            ),
            HName::Kid => (json_str(KID), s(&["HS", "", "hs\u{0}", "p256"])),
            HName::Crit => (r#"["b64"]"#.into(), vec!["[]".into(), "null".into()]),
            HName::B64 => ("false".into(), vec!["true".into()]),
            HName::Jwk => (
                r#"{"kty":"oct","k":"c2VjcmV0"}"#.into(),
                vec![r#"{"kty":"EC","crv":"P-256"}"#.into()],
            ),
            HName::X5c => (r#"["MIIB"]"#.into(), vec!["[]".into()]),
            _ => (
                json_str("https://attacker.example/jwks"),
                s(&["application/json", "JWT", ""]),
            ),
        }
    }
}

impl CName {
    fn name(&self) -> String {
        match self {
            CName::Iss => "iss",
            CName::Sub => "sub",
            CName::Aud => "aud",
            CName::Exp => "exp",
            CName::Nbf => "nbf",
            CName::Iat => "iat",
            CName::Jti => "jti",
            CName::ClientId => "client_id",
            CName::Scope => "scope",
            CName::Scp => "scp",
            CName::Cnf => "cnf",
            CName::AuthTime => "auth_time",
            CName::Acr => "acr",
            CName::Amr => "amr",
            CName::Other(s) => return s.clone(),
            CName::OtherText(t) => return t.render(),
        }
        .into()
    }

    fn values(&self, now: i64) -> (String, Vec<String>) {
        let s = |v: &[&str]| v.iter().map(|v| json_str(v)).collect::<Vec<_>>();
        let t = |d: i64| (now + d).to_string();
        let times = |usual: i64| {
            let near = [-31, -30, -29, 29, 30, 31, 3600, -3600, 86_401]
                .map(|d| t(d))
                .into_iter()
                .chain(["0".into(), "-1".into(), format!("{}.9", now + 30)])
                .chain([json_str(&t(0)), "null".into(), "1e400".into()]);
            (t(usual), near.collect())
        };
        match self {
            CName::Iss => (
                json_str(DEFAULT_TEST_ISSUER),
                s(&[
                    "https://issuer.tokenguard.test/",
                    "HTTPS://issuer.tokenguard.test",
                    "",
                ]),
            ),
            CName::Aud => (
                json_str(AUD),
                vec![
                    format!(r#"["{AUD}"]"#),
                    format!(r#"["other","{AUD}"]"#),
                    r#"["other"]"#.into(),
                    "[]".into(),
                    json_str("https://api/"),
                    format!(r#"["{AUD}",1]"#),
                    format!(r#"[["{AUD}"]]"#),
                ],
            ),
            CName::Exp => times(300),
            CName::Nbf | CName::Iat | CName::AuthTime => times(0),
            CName::Scope | CName::Scp => (
                json_str("read"),
                vec![
                    json_str("read write"),
                    json_str("write"),
                    json_str(" read "),
                    json_str("READ"),
                    json_str("read\twrite"),
                    json_str(""),
                    r#"["read"]"#.into(),
                ],
            ),
            CName::Cnf => (
                r#"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#.into(),
                vec![r#"{}"#.into(), r#""jkt""#.into()],
            ),
            CName::Amr => (
                r#"["pwd"]"#.into(),
                vec!["[]".into(), json_str("pwd"), "[1]".into()],
            ),
            _ => (json_str("test-client"), s(&["", "\u{0}"])),
        }
    }
}

type Members = Vec<(String, String)>;

fn apply<N>(
    members: &mut Members,
    edits: &[Edit<N>],
    name: impl Fn(&N) -> String,
    values: impl Fn(&N) -> (String, Vec<String>),
    now: i64,
) {
    let value = |n: &N, v: &Val| match v {
        Val::Usual => values(n).0,
        Val::Near(i) => {
            let near = values(n).1;
            near[usize::from(*i) % near.len()].clone()
        }
        Val::Str(t) => json_str(&t.render()),
        Val::Json(j) => j.render(now),
    };
    for e in edits {
        match e {
            Edit::Set(n, v) => {
                let (k, v) = (name(n), value(n, v));
                match members.iter_mut().find(|(m, _)| *m == k) {
                    Some(m) => m.1 = v,
                    None => members.push((k, v)),
                }
            }
            Edit::Push(n, v) => members.push((name(n), value(n, v))),
            Edit::Remove(n) => {
                let k = name(n);
                members.retain(|(m, _)| *m != k);
            }
        }
    }
}

fn render(members: &Members) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

// ---------------------------------------------------------------- model ----

/// What the model makes of a header or claims set.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Accepted by the rules (on the claims: whatever the scope).
    Valid,
    /// Refused by the rules; the reason.
    Invalid(String),
    /// Too close to a rule's edge (time) for the model to say.
    Unsure,
}

/// The members by name; `Err` if a name repeats or a value is not JSON.
fn members<'a>(m: &'a Members, only: Option<&[&str]>) -> Result<Vec<(&'a str, Value)>, String> {
    let mut out: Vec<(&str, Value)> = Vec::new();
    for (k, v) in m {
        let relevant = only.is_none_or(|o| o.contains(&k.as_str()));
        if !relevant {
            continue;
        }
        if out.iter().any(|(n, _)| n == k) {
            return Err(format!("duplicate {k:?}"));
        }
        let v: Value = serde_json::from_str(v).map_err(|e| format!("{k:?} not JSON: {e}"))?;
        out.push((k, v));
    }
    Ok(out)
}

fn header_verdict(h: &Members) -> Verdict {
    // Only these members are read; others are ignored whatever they hold.
    let m = match members(h, Some(&["alg", "typ", "kid", "crit"])) {
        Ok(m) => m,
        Err(e) => return Verdict::Invalid(e),
    };
    let get = |name: &str| m.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    if get("alg") != Some(&Value::from("HS256")) {
        return Verdict::Invalid("alg".into());
    }
    let typ_ok = get("typ").and_then(Value::as_str).is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Verdict::Invalid("typ".into());
    }
    if get("crit").is_some() {
        return Verdict::Invalid("crit".into());
    }
    if get("kid").is_some_and(|k| *k != KID) {
        return Verdict::Invalid("kid".into());
    }
    Verdict::Valid
}

/// A NumericDate as the guard reads it: seconds (fraction dropped), if a
/// number in `0..=MAX_DATE`.
fn numeric_date(v: &Value) -> Option<f64> {
    let f = v.as_f64()?;
    (f.is_finite() && (0.0..=MAX_DATE).contains(&f)).then(|| f.floor())
}

/// `before`/`after`: whole seconds around the request, so the guard's clock
/// read lies in between.
fn claims_verdict(c: &Members, before: f64, after: f64) -> Verdict {
    let m = match members(c, None) {
        Ok(m) => m,
        Err(e) => return Verdict::Invalid(e),
    };
    let get = |name: &str| m.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let bad = |what: &str| Verdict::Invalid(what.into());
    // Types of the claims the guard knows.
    for name in ["iss", "sub", "jti", "client_id", "scope", "acr"] {
        if get(name).is_some_and(|v| !v.is_string()) {
            return bad(name);
        }
    }
    for name in ["exp", "nbf", "iat", "auth_time"] {
        if get(name).is_some_and(|v| numeric_date(v).is_none()) {
            return bad(name);
        }
    }
    // A sender-constrained token is never accepted as a bearer token
    // (RFC 9449 §7.2, RFC 8705 §3), whatever its `cnf` holds.
    if get("cnf").is_some() {
        return bad("cnf");
    }
    if let Some(amr) = get("amr") {
        let ok = amr
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return bad("amr");
        }
    }
    let aud_ok = match get("aud") {
        Some(Value::String(a)) => a == AUD,
        Some(Value::Array(a)) => a.iter().all(Value::is_string) && a.iter().any(|a| a == AUD),
        _ => false,
    };
    if get("iss") != Some(&Value::from(DEFAULT_TEST_ISSUER)) {
        return bad("iss");
    }
    if !aud_ok {
        return bad("aud");
    }
    let Some(exp) = get("exp").and_then(numeric_date) else {
        return bad("exp");
    };
    let mut unsure = false;
    // Expired on or after exp + leeway (RFC 7519 §4.1.4).
    if before >= exp + LEEWAY {
        return bad("exp in the past");
    }
    unsure |= after >= exp + LEEWAY;
    for name in ["nbf", "iat"] {
        if let Some(t) = get(name).and_then(numeric_date) {
            // Refused when t > now + leeway.
            if t > after + LEEWAY {
                return bad(name);
            }
            unsure |= t > before + LEEWAY;
        }
    }
    if unsure {
        Verdict::Unsure
    } else {
        Verdict::Valid
    }
}

/// Whether the `scope` claim grants `read` (a space-separated list).
fn grants_read(c: &Members) -> bool {
    c.iter()
        .find(|(k, _)| k == "scope")
        .and_then(|(_, v)| serde_json::from_str::<Value>(v).ok())
        .and_then(|v| v.as_str().map(|s| s.split(' ').any(|s| s == "read")))
        .unwrap_or(false)
}

// ------------------------------------------------------------- the guard ----

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// The `TestIssuer`'s keys plus an HS256 key `hs`, no lifetime limit;
    /// `/` needs the scope `read`.
    app: Router,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer = TestIssuer::new();
        let guard = issuer
            .guard_builder(AUD)
            .hmac_secret(Algorithm::HS256, SECRET, Some(KID))
            .max_lifetime(None)
            .build()
            .expect("HMAC guard");
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            app: Router::new()
                .route("/", get(|| async { "ok" }))
                .route_layer(require_scope("read"))
                .layer(guard.layer()),
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let now = secs() as i64;

    let mut h: Members = match input.header {
        HeaderTemplate::Full => vec![
            ("alg".into(), json_str("HS256")),
            ("typ".into(), json_str("at+jwt")),
            ("kid".into(), json_str(KID)),
        ],
        HeaderTemplate::NoKid => vec![
            ("alg".into(), json_str("HS256")),
            ("typ".into(), json_str("at+jwt")),
        ],
        HeaderTemplate::Empty => vec![],
    };
    apply(&mut h, &input.header_edits, HName::name, HName::values, now);
    let mut c: Members = match input.claims {
        ClaimsTemplate::Full => vec![
            ("iss".into(), json_str(DEFAULT_TEST_ISSUER)),
            ("sub".into(), json_str("u1")),
            ("aud".into(), json_str(AUD)),
            ("exp".into(), (now + 300).to_string()),
            ("iat".into(), now.to_string()),
            ("scope".into(), json_str("read")),
        ],
        ClaimsTemplate::Minimal => vec![
            ("iss".into(), json_str(DEFAULT_TEST_ISSUER)),
            ("aud".into(), json_str(AUD)),
            ("exp".into(), (now + 300).to_string()),
        ],
        ClaimsTemplate::Empty => vec![],
    };
    apply(
        &mut c,
        &input.claims_edits,
        CName::name,
        |n| n.values(now),
        now,
    );

    let (header_json, claims_json) = (render(&h), render(&c));
    let signing_input = format!(
        "{}.{}",
        b64(header_json.as_bytes()),
        b64(claims_json.as_bytes())
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let mut mac = hmac::sign(&key, signing_input.as_bytes()).as_ref().to_vec();
    let good_sig = match input.sig {
        Sig::Good => true,
        Sig::Flip(i) => {
            let n = mac.len();
            mac[usize::from(i) % n] ^= 1 << (i % 8);
            false
        }
    };
    let token = format!("{signing_input}.{}", b64(&mac));

    let req = Request::get("/")
        .header(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("base64url is ASCII"),
        )
        .body(Body::empty())
        .unwrap();
    let before = secs();
    let res = f.rt.block_on(f.app.clone().oneshot(req)).unwrap();
    let after = secs();
    let status = res.status();

    let hv = header_verdict(&h);
    let cv = claims_verdict(&c, before, after);
    let read = grants_read(&c);
    let ctx =
        || format!("status {status}\nheader {header_json}\nclaims {claims_json}\n{hv:?} {cv:?}");
    match status {
        StatusCode::OK | StatusCode::FORBIDDEN => {
            // The guard accepted the token.
            assert!(good_sig, "spoiled signature accepted\n{}", ctx());
            assert_eq!(hv, Verdict::Valid, "{}", ctx());
            assert!(!matches!(cv, Verdict::Invalid(_)), "{}", ctx());
            assert_eq!(status == StatusCode::OK, read, "scope\n{}", ctx());
            if status == StatusCode::OK {
                return;
            }
        }
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => {
            let plainly_valid = good_sig
                && hv == Verdict::Valid
                && cv == Verdict::Valid
                && token.len() <= MAX_TOKEN
                && header_json.len() <= MAX_HEADER;
            assert!(!plainly_valid, "valid token refused\n{}", ctx());
        }
        _ => panic!("unexpected {}", ctx()),
    }
    assert_eq!(
        res.headers()
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{}",
        ctx()
    );
    let ch = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("a challenge")
        .to_str()
        .expect("ASCII challenge");
    // Every input carries a token: a bare challenge would be wrong.
    check_challenge(ch, status, false);
});
