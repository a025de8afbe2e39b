//! Property tests (proptest). Each property compares the crate with a small
//! model written from the specification, on generated inputs:
//!
//! - scopes: `Scopes::from_space_separated`, `ScopeRequirement` tuples and
//!   `AnyOf`, `RequireScopeLayer`, `scope::is_valid_scope_token` (RFC 6749 §3.3);
//! - credentials: `credential::parse_authorization` and `credential::is_token68`
//!   (RFC 6750 §2.1), the query parameter and cookie sources;
//! - challenges: `AuthError::challenge` for every kind of error (RFC 6750 §3);
//! - claims: `AccessTokenClaims` from JSON objects whose names are written
//!   plainly or with `\u` escapes, against a `serde_json::Value` model;
//! - the whole layer around an axum `Router`, on arbitrary `Authorization`
//!   header values.
//!
//! Failures are not persisted to files: a counterexample found once becomes an
//! explicit regression test at the end of this file. Bugs of `src/` found by
//! these properties have `#[ignore]`d regression tests there, which fail until
//! the bug is fixed: `cargo test --all-features --test it properties:: -- --ignored`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokenguard::__private::{is_scope_char, is_valid_scope_token};
use tokenguard::__private::{is_token68, parse_authorization};
use tokenguard::testing::TestIssuer;
use tokenguard::{
    AccessTokenClaims, Algorithm, AnyOf, AuthError, AuthErrorKind, InvalidRequest, InvalidToken,
    RequireScopeLayer, ScopeRequirement, Scopes, TokenGuard, TokenSources, scopes,
};
use tower::ServiceExt;

const AUD: &str = "https://api";
/// The string claims `AccessTokenClaims` reads into fields of their own.
const STRING_CLAIMS: [&str; 6] = ["iss", "sub", "jti", "client_id", "scope", "acr"];
/// Its NumericDate claims.
const DATE_CLAIMS: [&str; 4] = ["exp", "iat", "nbf", "auth_time"];
/// The guard's default `max_token_size`.
const DEFAULT_MAX: usize = 8192;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs a property whose fixtures (runtime, issuer, router) are built once by
/// the caller rather than once per case.
fn run<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    if let Err(e) = TestRunner::new(config(cases)).run(&strategy, test) {
        panic!("{e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------
// Models, written from the grammars rather than from the code.

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (`NQCHAR`,
/// Appendix A.4).
fn model_scope_byte(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

/// `scope-token = 1*NQCHAR`.
fn model_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(model_scope_byte)
}

/// What a quoted `realm` may hold: scope-token characters and space.
fn model_realm(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b' ' || model_scope_byte(b))
}

/// RFC 7235 §2.1: `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
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

/// The items of a space-separated list: the maximal runs of non-space
/// characters, as a set.
fn model_items(s: &str) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    let mut current = String::new();
    for c in s.chars() {
        if c == ' ' {
            if !current.is_empty() {
                items.insert(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        items.insert(current);
    }
    items
}

/// The field value proper: whitespace around it is not part of it (RFC 9110
/// §5.5; OWS is SP / HTAB, §5.6.3, and CR, LF, FF, which no `HeaderValue` holds, are
/// trimmed as well).
fn field_value(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// The auth-scheme: the field value up to the first SP or HTAB.
fn scheme_of(value: &[u8]) -> &[u8] {
    let value = field_value(value);
    let end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    &value[..end]
}

/// RFC 6750 §2.1, strictly: `credentials = "Bearer" 1*SP b64token`, the scheme
/// case-insensitive, the token at most `max` bytes. The token, if the field
/// value is one.
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

// ---------------------------------------------------------------------------
// Strategies.

const TOKEN68_RE: &str = "[A-Za-z0-9._~+/-]{1,40}={0,3}";

/// Words near the scopes the tests require: the scopes themselves, other
/// cases, prefixes, wildcards, characters outside the grammar.
const WORDS: &[&str] = &[
    "a", "b", "c:w", "D", "A", "B", "c", "c:W", "d", "ab", "a:", "*", "read:*", "é", "a\tb", "\"",
    "\\", "a,b", "\u{0}",
];

fn spaced_words() -> impl Strategy<Value = String> {
    prop::collection::vec((0usize..3, prop::sample::select(WORDS)), 0..8).prop_map(|parts| {
        let mut s = String::new();
        for (spaces, word) in parts {
            s.push_str(&" ".repeat(spaces));
            s.push_str(word);
        }
        s
    })
}

fn scope_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ abAB:*\t]{0,24}",
        spaced_words(),
        spaced_words().prop_map(|s| format!("  {s}  ")),
    ]
}

/// Strings with bytes around the grammar's boundaries, and anything.
fn scope_token_candidate() -> impl Strategy<Value = String> {
    let near = prop::sample::select(vec![
        '\u{0}', '\t', ' ', '!', '"', '#', 'A', '[', '\\', ']', '~', '\u{7f}', '\u{80}', 'ÿ', 'é',
        '\u{2028}',
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(0u8..0x80, 0..8).prop_map(|b| String::from_utf8(b).unwrap()),
        prop::collection::vec(near, 0..6).prop_map(String::from_iter),
        "[!#-\\[\\]-~]{1,12}",
    ]
}

/// "bearer" in any casing.
fn bearer_casing() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), 6).prop_map(|upper| {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn max_len() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..48, 1 => Just(usize::MAX)]
}

/// `Authorization` values: arbitrary bytes, and scheme + separator + token +
/// tail assembled from near-misses of each part.
fn authorization_bytes() -> impl Strategy<Value = Vec<u8>> {
    let scheme = prop_oneof![
        4 => bearer_casing().prop_map(String::into_bytes),
        1 => prop::sample::select(vec![
            "Basic", "Bearerx", "Bear", "", "\tBearer", "Bearer,", "Beärer", "Bearer\t", "DPoP",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    let sep = prop::collection::vec(
        prop::sample::select(vec![
            b' ', b' ', b' ', b'\t', b'\r', b'\n', 0x0b, 0x0c, b',', 0,
        ]),
        0..4,
    );
    let token = prop_oneof![
        4 => TOKEN68_RE.prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => (TOKEN68_RE, TOKEN68_RE).prop_map(|(a, b)| format!("{a}={b}").into_bytes()),
    ];
    let tail = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(prop::sample::select(b" \t,=\"a.\r\n".to_vec()), 1..4),
    ];
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..48),
        4 => (scheme, sep, token, tail).prop_map(|(s, p, t, r)| [s, p, t, r].concat()),
    ]
}

/// Characters a scope name may hold, and what it may not.
fn hostile_string() -> impl Strategy<Value = String> {
    let c = prop::sample::select(vec![
        '"', '\\', '\r', '\n', '\0', '\t', ',', '=', ' ', 'a', 'Z', ':', 'é', '\u{7f}', '\u{2028}',
        '\u{fffd}',
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(c, 0..16).prop_map(String::from_iter),
    ]
}

/// Space-separated valid scope names.
fn scope_list() -> impl Strategy<Value = String> {
    prop::collection::vec("[!#-\\[\\]-~]{1,10}", 1..4).prop_map(|v| v.join(" "))
}

/// A valid realm (the builder accepts exactly these).
fn realm() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        Just(' '),
        Just('!'),
        proptest::char::range('#', '['),
        proptest::char::range(']', '~'),
    ];
    prop::collection::vec(c, 1..20).prop_map(String::from_iter)
}

const CLAIM_NAMES: &[&str] = &["iss", "aud", "exp", "scope", "claims", "a\"b", "x\r\ny", ""];

fn invalid_token() -> impl Strategy<Value = InvalidToken> {
    use InvalidToken::*;
    prop_oneof![
        prop::sample::select(vec![
            Malformed,
            TooLarge,
            UnsupportedAlgorithm,
            WrongType,
            UnsupportedCritical,
            UnknownKey,
            BadSignature,
            WrongIssuer,
            WrongAudience,
            Expired,
            NotYetValid,
            IssuedInTheFuture,
            LifetimeTooLong,
        ]),
        prop::sample::select(CLAIM_NAMES).prop_map(MissingClaim),
        prop::sample::select(CLAIM_NAMES).prop_map(InvalidClaim),
    ]
}

fn auth_error() -> impl Strategy<Value = AuthError> {
    prop_oneof![
        Just(AuthError::missing_token()),
        prop::sample::select(vec![
            InvalidRequest::SeveralAuthorizationHeaders,
            InvalidRequest::SeveralCredentials,
            InvalidRequest::MalformedCredentials,
        ])
        .prop_map(AuthError::invalid_request),
        invalid_token().prop_map(AuthError::invalid_token),
        scope_list().prop_map(AuthError::insufficient_scope),
        hostile_string().prop_map(AuthError::insufficient_scope),
        any::<u64>().prop_map(|s| AuthError::keys_unavailable(Duration::from_secs(s))),
        prop::sample::select(CLAIM_NAMES)
            .prop_map(|why| AuthError::new(AuthErrorKind::Misconfigured(why))),
    ]
}

// ---------------------------------------------------------------------------
// Checks of a challenge.

/// The auth-params of a `Bearer` challenge, in order. Only the form tokenguard
/// writes is accepted: `Bearer name="value"(, name="value")*`, with no `"`
/// or `\` inside a value.
fn parse_challenge(ch: &str) -> Result<Vec<(String, String)>, String> {
    let mut rest = ch
        .strip_prefix("Bearer ")
        .ok_or("does not start with `Bearer `")?;
    let mut params = Vec::new();
    loop {
        let eq = rest.find("=\"").ok_or("a parameter without `=\"`")?;
        let name = &rest[..eq];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!("bad parameter name {name:?}"));
        }
        rest = &rest[eq + 2..];
        let close = rest.find('"').ok_or("an unterminated quoted value")?;
        let value = &rest[..close];
        if value.contains('\\') {
            return Err(format!("a backslash in {value:?}"));
        }
        params.push((name.to_owned(), value.to_owned()));
        rest = &rest[close + 1..];
        if rest.is_empty() {
            return Ok(params);
        }
        rest = rest
            .strip_prefix(", ")
            .ok_or_else(|| format!("junk after a parameter: {rest:?}"))?;
    }
}

/// Checks what every challenge must satisfy and returns its parameters.
fn check_challenge(ch: &str) -> Result<Vec<(String, String)>, TestCaseError> {
    prop_assert!(
        HeaderValue::from_str(ch).is_ok(),
        "not a header value: {:?}",
        ch
    );
    prop_assert!(ch.starts_with("Bearer realm=\""), "{:?}", ch);
    prop_assert!(
        ch.bytes().all(|b| (0x20..=0x7E).contains(&b)),
        "control or non-ASCII character in {:?}",
        ch
    );
    prop_assert_eq!(
        ch.bytes().filter(|&b| b == b'"').count() % 2,
        0,
        "unbalanced quotes"
    );
    let params = parse_challenge(ch).map_err(|e| TestCaseError::fail(format!("{e}: {ch:?}")))?;
    prop_assert_eq!(params[0].0.as_str(), "realm");
    let names: BTreeSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    prop_assert_eq!(names.len(), params.len(), "a repeated parameter: {:?}", ch);
    prop_assert!(
        names.is_subset(&BTreeSet::from([
            "realm",
            "error",
            "error_description",
            "scope"
        ])),
        "{:?}",
        ch
    );
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if let Some(error) = get("error") {
        prop_assert!(
            ["invalid_request", "invalid_token", "insufficient_scope"].contains(&error.as_str())
        );
        prop_assert!(get("error_description").is_some());
    } else {
        prop_assert_eq!(params.len(), 1, "parameters without an error: {:?}", ch);
    }
    if let Some(scope) = get("scope") {
        prop_assert_eq!(get("error").map(String::as_str), Some("insufficient_scope"));
        for item in scope.split(' ').filter(|i| !i.is_empty()) {
            prop_assert!(model_scope_token(item), "scope item {:?}", item);
        }
    }
    Ok(params)
}

/// Checks `err.challenge(realm)` against the model of RFC 6750 §3.
fn check_error_challenge(err: &AuthError, realm: &str) -> Result<(), TestCaseError> {
    let status = err.status();
    let Some(ch) = err.challenge(realm) else {
        prop_assert!(
            matches!(
                err.kind(),
                AuthErrorKind::KeysUnavailable { .. } | AuthErrorKind::Misconfigured(_)
            ),
            "no challenge for {:?}",
            err
        );
        prop_assert!(status.is_server_error());
        return Ok(());
    };
    prop_assert!(
        [400, 401, 403].contains(&status.as_u16()),
        "{:?}: {}",
        err,
        status
    );
    let params = check_challenge(&ch)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    prop_assert_eq!(get("realm"), Some(realm));
    prop_assert_eq!(get("error"), err.error_code());
    if err.error_code().is_some() {
        prop_assert_eq!(get("error_description"), Some(err.description()));
    }
    match err.kind() {
        AuthErrorKind::InsufficientScope { required } => {
            prop_assert_eq!(status, StatusCode::FORBIDDEN);
            let expected: String = required
                .bytes()
                .filter(|&b| b == b' ' || model_scope_byte(b))
                .map(char::from)
                .collect();
            prop_assert_eq!(get("scope"), Some(expected.as_str()));
            if required.split(' ').all(model_scope_token) {
                // Valid names are echoed as they are.
                prop_assert_eq!(get("scope"), Some(required.as_str()));
            }
        }
        AuthErrorKind::MissingToken => {
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
            prop_assert_eq!(params.len(), 1);
        }
        AuthErrorKind::InvalidRequest(_) => prop_assert_eq!(status, StatusCode::BAD_REQUEST),
        AuthErrorKind::InvalidToken(_) => prop_assert_eq!(status, StatusCode::UNAUTHORIZED),
        other => prop_assert!(false, "a challenge for {:?}", other),
    }
    Ok(())
}

fn header_str(res: &Response, name: header::HeaderName) -> Option<&str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

// ---------------------------------------------------------------------------
// Scopes.

scopes! {
    SA = "a";
    SB = "b";
    SC = "c:w";
    SD = "D";
}

/// A claim name: one `AccessTokenClaims` knows, or another.
fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "auth_time",
            "acr", "amr", "cnf",
        ])
        .prop_map(String::from),
        1 => prop::sample::select(vec!["tenant", "roles", "scp", "é", "a\"b", "", "iss ", "ISS"])
            .prop_map(String::from),
        1 => "[a-z\u{e9}\u{1F600}\"\\\\]{0,6}",
    ]
}

/// A claim value of any of the shapes the fields take, or another.
fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z:\u{e9}\"]{0,8}".prop_map(Value::from),
        (-5i64..3_000_000_000).prop_map(Value::from),
        prop::collection::vec("[a-z]{0,4}", 0..3).prop_map(Value::from),
        Just(json!({"jkt": "x"})),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
    ]
}

/// `name` as a JSON string, each character whose bit is set in `escape`
/// written as a `\u` escape (surrogate pairs outside the BMP).
fn json_name(name: &str, escape: u32) -> String {
    let mut out = String::from("\"");
    for (i, c) in name.chars().enumerate() {
        if escape >> (i % 32) & 1 == 1 {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            let quoted = serde_json::to_string(&c.to_string()).unwrap();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
    }
    out.push('"');
    out
}

/// What `AccessTokenClaims` must make of `members` (already unescaped):
/// `None` if it must refuse them.
fn model_claims(members: &[(String, Value)]) -> Option<serde_json::Map<String, Value>> {
    let mut all = serde_json::Map::new();
    for (name, value) in members {
        let fits = match name.as_str() {
            n if STRING_CLAIMS.contains(&n) => value.is_string(),
            n if DATE_CLAIMS.contains(&n) => value.as_u64().is_some(),
            "aud" => match value {
                Value::String(_) => true,
                Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
                _ => false,
            },
            "amr" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            "cnf" => value.is_object(),
            _ => true,
        };
        // RFC 7519 §4: a repeated name is refused.
        if !fits || all.insert(name.clone(), value.clone()).is_some() {
            return None;
        }
    }
    Some(all)
}

proptest! {
    #![proptest_config(config(512))]

    /// `AccessTokenClaims` reads a claims object as the model does, whether
    /// its names are borrowed from the text or unescaped into copies: every
    /// known claim in its field (of its type), every other in `extra`, a
    /// repeated name refused however it is written.
    #[test]
    fn claims_are_read_whatever_the_escapes(
        members in prop::collection::vec((claim_name(), claim_value(), any::<u32>()), 0..8),
    ) {
        let text = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(n, v, escape)| format!("{}:{v}", json_name(n, *escape)))
                .collect::<Vec<_>>()
                .join(",")
        );
        let plain: Vec<(String, Value)> =
            members.iter().map(|(n, v, _)| (n.clone(), v.clone())).collect();
        let parsed = serde_json::from_str::<AccessTokenClaims>(&text);
        let Some(mut model) = model_claims(&plain) else {
            prop_assert!(parsed.is_err(), "accepted {}", text);
            return Ok(());
        };
        let c = parsed.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let mut take = |name: &str| model.remove(name);
        let fields = [
            ("iss", &c.iss), ("sub", &c.sub), ("jti", &c.jti), ("client_id", &c.client_id),
            ("scope", &c.scope), ("acr", &c.acr),
        ];
        for (name, field) in fields {
            prop_assert_eq!(field.clone().map(Value::from), take(name), "{}", name);
        }
        let dates = [("exp", c.exp), ("iat", c.iat), ("nbf", c.nbf), ("auth_time", c.auth_time)];
        for (name, field) in dates {
            prop_assert_eq!(field.map(|d| Value::from(d.as_secs())), take(name), "{}", name);
        }
        let aud = take("aud").map(|v| match v {
            Value::String(one) => vec![one],
            many => serde_json::from_value::<Vec<String>>(many).unwrap(),
        });
        let read: Option<Vec<String>> =
            c.aud.as_ref().map(|a| a.iter().map(String::from).collect());
        prop_assert_eq!(read, aud);
        prop_assert_eq!(c.amr.clone().map(Value::from), take("amr"));
        prop_assert_eq!(c.cnf.clone().map(Value::Object), take("cnf"));
        prop_assert_eq!(&c.extra, &model);
    }

    /// `from_space_separated`: exactly the non-empty space-separated items,
    /// sorted, deduplicated, without spaces; `contains` is exact and
    /// case-sensitive.
    #[test]
    fn scopes_are_the_space_separated_items(s in scope_string(), probe in scope_string()) {
        let scopes = Scopes::from_space_separated(&s);
        let model = model_items(&s);
        let listed: Vec<&str> = scopes.iter().collect();
        let expected: Vec<&str> = model.iter().map(String::as_str).collect();
        prop_assert_eq!(&listed, &expected);
        prop_assert!(listed.windows(2).all(|w| w[0] < w[1]), "not sorted and unique");
        prop_assert!(listed.iter().all(|i| !i.is_empty() && !i.contains(' ')));
        prop_assert_eq!(scopes.len(), model.len());
        prop_assert_eq!(scopes.is_empty(), model.is_empty());

        let mut probes = vec![String::new(), " ".into(), s.clone(), probe];
        for item in &model {
            probes.push(item.to_uppercase());
            probes.push(item.to_lowercase());
            probes.push(format!("{item} "));
            probes.push(format!(" {item}"));
            probes.push(format!("{item}*"));
            if let Some((last, _)) = item.char_indices().last() {
                probes.push(item[..last].to_owned());
                probes.push(item[last..].to_owned());
            }
            probes.push(item.clone());
        }
        for p in &probes {
            prop_assert_eq!(scopes.contains(p), model.contains(p), "contains({:?})", p);
        }

        // The set is the same, whatever the order and repetitions of its items.
        let again: Scopes = listed.iter().rev().chain(listed.iter()).copied().collect();
        prop_assert_eq!(&again, &scopes);
    }

    /// Single scopes, all-of tuples, `AnyOf` and their nestings are the
    /// boolean formulas they stand for.
    #[test]
    fn scope_requirements_are_all_and_any(granted in scope_string()) {
        let g = Scopes::from_space_separated(&granted);
        let m = model_items(&granted);
        let (a, b, c, d) = (m.contains("a"), m.contains("b"), m.contains("c:w"), m.contains("D"));
        prop_assert_eq!(SA::is_satisfied(&g), a);
        prop_assert_eq!(SD::is_satisfied(&g), d);
        prop_assert_eq!(<(SA,)>::is_satisfied(&g), a);
        prop_assert_eq!(<(SA, SB)>::is_satisfied(&g), a && b);
        prop_assert_eq!(<(SA, SB, SC, SD)>::is_satisfied(&g), a && b && c && d);
        prop_assert_eq!(<(SA, SA)>::is_satisfied(&g), a);
        prop_assert_eq!(AnyOf::<(SA,)>::is_satisfied(&g), a);
        prop_assert_eq!(AnyOf::<(SA, SB)>::is_satisfied(&g), a || b);
        prop_assert_eq!(AnyOf::<(SA, SB, SC, SD)>::is_satisfied(&g), a || b || c || d);
        prop_assert_eq!(<(SA, AnyOf<(SB, SC)>)>::is_satisfied(&g), a && (b || c));
        prop_assert_eq!(
            AnyOf::<((SA, SB), (SC, SD))>::is_satisfied(&g),
            (a && b) || (c && d)
        );
        prop_assert_eq!(<(SA, SB, SC, SD)>::description(), "a b c:w D");
        prop_assert_eq!(AnyOf::<(SC, SA)>::description(), "c:w a");
    }

    /// `is_valid_scope_token` and `is_scope_char` are the RFC 6749 grammar.
    #[test]
    fn scope_token_grammar(s in scope_token_candidate(), c in any::<char>()) {
        prop_assert_eq!(is_valid_scope_token(&s), model_scope_token(&s), "{:?}", s);
        let ascii = u8::try_from(u32::from(c)).ok().filter(u8::is_ascii);
        prop_assert_eq!(is_scope_char(c), ascii.is_some_and(model_scope_byte), "{:?}", c);
    }
}

/// `RequireScopeLayer::all_of` / `any_of` behind the guard: 200 exactly when
/// the token's scopes satisfy the model, else 403 `insufficient_scope` naming
/// the required scopes.
#[test]
fn scope_layer_matches_model() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let names = vec!["a", "b", "c:w", "D", "read:invoices"];
    let strategy = (
        scope_string(),
        prop::collection::vec(prop::sample::select(names), 1..4),
        any::<bool>(),
    );
    run(96, strategy, |(granted, required, any)| {
        let layer = if any {
            RequireScopeLayer::any_of(required.iter().copied())
        } else {
            RequireScopeLayer::all_of(required.iter().copied())
        };
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route_layer(layer)
            .layer(guard.layer());
        let token = issuer.token().audience(AUD).scope(&granted).mint();
        let req = Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let res = rt.block_on(app.oneshot(req)).unwrap();
        let m = model_items(&granted);
        let ok = if any {
            required.iter().any(|r| m.contains(*r))
        } else {
            required.iter().all(|r| m.contains(*r))
        };
        if ok {
            prop_assert_eq!(res.status(), StatusCode::OK);
        } else {
            prop_assert_eq!(res.status(), StatusCode::FORBIDDEN);
            let ch = header_str(&res, header::WWW_AUTHENTICATE).unwrap_or_default();
            let params = check_challenge(ch)?;
            let scope = params.iter().find(|(n, _)| n == "scope").map(|(_, v)| v);
            prop_assert_eq!(scope, Some(&required.join(" ")));
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// Credentials.

/// Checks one `parse_authorization` answer against the model.
fn check_parse(value: &[u8], max: usize) -> Result<(), TestCaseError> {
    let is_bearer = scheme_of(value).eq_ignore_ascii_case(b"bearer");
    let strict = model_bearer(value, max);
    let field = field_value(value);
    match parse_authorization(value, max) {
        Ok(None) => {
            prop_assert!(!is_bearer, "Bearer credentials ignored");
        }
        Ok(Some(t)) => {
            prop_assert!(is_bearer);
            prop_assert!(is_token68(t.as_bytes()) && model_token68(t.as_bytes()));
            prop_assert!(t.len() <= max);
            // Exactly scheme, 1*SP, token.
            let rest = &field[6..];
            prop_assert!(rest.ends_with(t.as_bytes()), "token not at the end");
            let sep = &rest[..rest.len() - t.len()];
            prop_assert!(
                !sep.is_empty() && sep.iter().all(|&b| b == b' '),
                "`Bearer` and the token are separated by {:?}",
                String::from_utf8_lossy(sep)
            );
            prop_assert_eq!(strict, Some(t.as_bytes()));
        }
        Err(e) => {
            prop_assert!(is_bearer, "error for another scheme: {:?}", e);
            prop_assert_eq!(strict, None, "valid credentials refused: {:?}", e);
            let mut after = &field[6..];
            while let [b' ', rest @ ..] = after {
                after = rest;
            }
            match e.kind() {
                AuthErrorKind::InvalidRequest(InvalidRequest::MalformedCredentials) => {
                    // A token68 that is only too long must say so.
                    prop_assert!(
                        !(model_token68(after) && after.len() > max && field.get(6) == Some(&b' ')),
                        "too large reported as malformed"
                    );
                }
                AuthErrorKind::InvalidToken(InvalidToken::TooLarge) => {
                    prop_assert!(after.len() > max);
                }
                other => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    /// `parse_authorization` never panics; `Ok(None)` exactly for other
    /// schemes; `Ok(Some(t))` only for `bearer` (any case), a token68 of at
    /// most `max` bytes ending the value after spaces; every strictly valid
    /// value is accepted; errors are 400 malformed or 401 too large.
    #[test]
    fn parse_authorization_matches_model(value in authorization_bytes(), max in max_len()) {
        check_parse(&value, max)?;
    }

    /// Round trip: `"{scheme} {t}"` gives `t` for any token68 and casing.
    #[test]
    fn bearer_round_trip(
        scheme in bearer_casing(),
        spaces in 1usize..5,
        t in TOKEN68_RE,
        max in max_len(),
    ) {
        let value = format!("{scheme}{}{t}", " ".repeat(spaces));
        let parsed = parse_authorization(value.as_bytes(), max);
        if t.len() <= max {
            prop_assert_eq!(parsed, Ok(Some(t.as_str())));
        } else {
            prop_assert_eq!(parsed, Err(AuthError::invalid_token(InvalidToken::TooLarge)));
        }
    }

    /// `is_token68` is the RFC 7235 grammar.
    #[test]
    fn token68_grammar(
        s in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            TOKEN68_RE.prop_map(String::into_bytes),
            "[A-Za-z0-9=+/. \"-]{0,8}".prop_map(String::into_bytes),
        ],
    ) {
        prop_assert_eq!(is_token68(&s), model_token68(&s), "{:?}", String::from_utf8_lossy(&s));
    }

    /// Challenges: `None` only for 5xx kinds; otherwise a valid header value,
    /// `Bearer realm="…"` first, balanced quotes, no control or non-ASCII
    /// character, the right error code and description, and a `scope` that
    /// echoes only scope-token characters, even of hostile input.
    #[test]
    fn challenges_are_well_formed(err in auth_error(), realm in realm()) {
        prop_assert!(model_realm(&realm));
        check_error_challenge(&err, &realm)?;
    }
}

// ---------------------------------------------------------------------------
// The whole layer.

fn guarded(guard: &TokenGuard) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(guard.layer())
}

/// Sends `GET uri` with these headers through `app`.
fn send(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    uri: &str,
    headers: &[(header::HeaderName, HeaderValue)],
) -> Response {
    let mut req = Request::get(uri);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    rt.block_on(app.clone().oneshot(req.body(Body::empty()).unwrap()))
        .unwrap()
}

/// Checks a refusal of the guard: 400 or 401, `no-store`, and a challenge that
/// passes [`check_challenge`] with the default realm.
fn check_refusal(res: &Response) -> Result<Vec<(String, String)>, TestCaseError> {
    prop_assert!(
        [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(&res.status()),
        "status {}",
        res.status()
    );
    prop_assert_eq!(header_str(res, header::CACHE_CONTROL), Some("no-store"));
    let ch = header_str(res, header::WWW_AUTHENTICATE);
    prop_assert!(ch.is_some(), "no WWW-Authenticate");
    let params = check_challenge(ch.unwrap())?;
    prop_assert_eq!(params[0].1.as_str(), "api");
    let error = params
        .iter()
        .find(|(n, _)| n == "error")
        .map(|(_, v)| v.as_str());
    match res.status() {
        StatusCode::BAD_REQUEST => prop_assert_eq!(error, Some("invalid_request")),
        _ => prop_assert!(matches!(error, None | Some("invalid_token"))),
    }
    Ok(params)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compact-JWS-looking strings: parts that are base64url JSON headers with
/// chosen `alg` / `typ` / `kid` / `crit`, arbitrary JSON or bytes, junk
/// characters; real signatures and kids of `issuer` mixed in.
fn jwt_ish(issuer: &TestIssuer, signature: String) -> impl Strategy<Value = String> + use<> {
    let kids = vec![
        Value::Null,
        issuer.kid(Algorithm::ES256).into(),
        issuer.kid(Algorithm::RS256).into(),
        "x".into(),
        json!(1),
    ];
    let header = (
        prop::sample::select(vec![
            json!("ES256"),
            json!("RS256"),
            json!("EdDSA"),
            json!("none"),
            json!("HS256"),
            json!("Ed25519"),
            json!(""),
            json!(null),
            json!(["ES256"]),
        ]),
        prop::sample::select(vec![
            Value::Null,
            json!("at+jwt"),
            json!("application/at+jwt"),
            json!("JWT"),
            json!("dpop+jwt"),
            json!(7),
        ]),
        prop::sample::select(kids),
        prop::sample::select(vec![Value::Null, json!([]), json!(["exp"]), json!("x")]),
    )
        .prop_map(|(alg, typ, kid, crit)| {
            let mut h = serde_json::Map::new();
            for (name, v) in [("alg", alg), ("typ", typ), ("kid", kid), ("crit", crit)] {
                if !v.is_null() {
                    h.insert(name.into(), v);
                }
            }
            b64(Value::Object(h).to_string())
        });
    let claims = (
        any::<i64>(),
        prop::sample::select(vec![AUD, "x"]),
        any::<bool>(),
    )
        .prop_map(|(exp, aud, iss)| {
            let mut c = json!({"exp": exp, "aud": aud, "scope": "a b"});
            if iss {
                c["iss"] = tokenguard::testing::DEFAULT_TEST_ISSUER.into();
            }
            b64(c.to_string())
        });
    let part = prop_oneof![
        2 => "[A-Za-z0-9_-]{0,24}",
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(b64),
        1 => ".{0,12}".prop_map(b64),
        1 => Just(String::new()),
        1 => "[A-Za-z0-9_=+/.~-]{0,8}",
    ];
    let signature = prop_oneof![
        2 => Just(signature),
        1 => part.clone(),
    ];
    prop_oneof![
        4 => (header.clone(), claims.clone(), signature.clone())
            .prop_map(|(h, c, s)| format!("{h}.{c}.{s}")),
        1 => (header, part.clone(), part.clone(), prop::collection::vec(part.clone(), 0..3))
            .prop_map(|(h, p, s, more)| [vec![h, p, s], more].concat().join(".")),
        1 => (part.clone(), claims, signature).prop_map(|(h, c, s)| format!("{h}.{c}.{s}")),
        1 => prop::collection::vec(part, 0..5).prop_map(|v| v.join(".")),
    ]
}

/// `valid` changed at one place (so that it no longer verifies).
fn mutated(valid: String) -> impl Strategy<Value = String> {
    let len = valid.len();
    (
        0..len,
        prop::sample::select(b"Aa0-_.=+/~ \t\"".to_vec()),
        0u8..4,
    )
        .prop_map(move |(at, byte, how)| {
            let mut t = valid.clone().into_bytes();
            match how {
                0 => t[at] = byte,
                1 => t.insert(at, byte),
                2 => {
                    t.remove(at);
                }
                _ => t.truncate(at),
            }
            let mut t = String::from_utf8(t).unwrap();
            // More spaces before the token, or whitespace after it, leave the
            // credentials as they were.
            if t.trim_start_matches(' ').trim_end_matches([' ', '\t']) == valid {
                t.push('A');
            }
            t
        })
}

/// Every byte `HeaderValue::from_bytes` accepts.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..=0x7E, 0x80u8..=0xFF]
}

/// For arbitrary `Authorization` values, a guard around a Router answers only
/// 400 or 401 (never 200, 5xx or a panic), with `no-store` and a valid
/// challenge, and exactly what `parse_authorization` and verification say:
/// 401 without error for other schemes, the parse error, or `invalid_token`.
#[test]
fn layer_refuses_arbitrary_authorization_values() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let app = guarded(&issuer.guard(AUD));
    let valid = issuer.token().audience(AUD).scope("a").mint();
    // Verified once, so that the verified-token cache holds it: its near
    // misses below must still be refused.
    let bearer = HeaderValue::from_str(&format!("Bearer {valid}")).unwrap();
    let res = send(&rt, &app, "/", &[(header::AUTHORIZATION, bearer)]);
    assert_eq!(res.status(), StatusCode::OK);
    let signature = valid.rsplit('.').next().unwrap().to_owned();
    let refused = vec![
        issuer.token().audience("https://other").mint(),
        issuer.token().audience(AUD).expired().mint(),
        issuer.token().audience(AUD).untyped().mint(),
        issuer.token().audience(AUD).kid(Some("unknown")).mint(),
        issuer.token().audience(AUD).issuer("https://evil").mint(),
        issuer
            .token()
            .audience(AUD)
            .algorithm(Algorithm::EdDSA)
            .kid(Some(&issuer.kid(Algorithm::ES256)))
            .mint(),
        TestIssuer::new().token().audience(AUD).mint(),
        format!("{}.", valid.rsplit_once('.').unwrap().0),
        "a".repeat(DEFAULT_MAX + 1),
    ];
    let strategy = prop_oneof![
        3 => prop::collection::vec(header_byte(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..10),
        3 => authorization_bytes(),
        4 => (bearer_casing(), jwt_ish(&issuer, signature))
            .prop_map(|(s, t)| format!("{s} {t}").into_bytes()),
        3 => mutated(valid.clone()).prop_map(|t| format!("Bearer {t}").into_bytes()),
        1 => prop::sample::select(refused).prop_map(|t| format!("Bearer {t}").into_bytes()),
    ];
    run(768, strategy, |value| {
        let Ok(hv) = HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let res = send(&rt, &app, "/", &[(header::AUTHORIZATION, hv)]);
        prop_assert_ne!(
            res.status(),
            StatusCode::OK,
            "accepted {:?}",
            String::from_utf8_lossy(&value)
        );
        let params = check_refusal(&res)?;
        let ch = header_str(&res, header::WWW_AUTHENTICATE).unwrap();
        match parse_authorization(&value, DEFAULT_MAX) {
            Ok(None) => prop_assert_eq!(ch, r#"Bearer realm="api""#),
            Err(e) => {
                prop_assert_eq!(res.status(), e.status());
                prop_assert_eq!(Some(ch.to_owned()), e.challenge("api"));
            }
            Ok(Some(_)) => {
                prop_assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
                prop_assert_eq!(params[1].1.as_str(), "invalid_token");
            }
        }
        Ok(())
    });
}

/// Two `Authorization` headers, whatever they hold: 400 `invalid_request`.
#[test]
fn layer_refuses_two_authorization_headers() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let app = guarded(&issuer.guard(AUD));
    let valid = issuer.token().audience(AUD).mint();
    let value = prop_oneof![
        Just(format!("Bearer {valid}").into_bytes()),
        prop::collection::vec(header_byte(), 0..24),
    ];
    run(64, (value.clone(), value), |(a, b)| {
        let headers = [
            (header::AUTHORIZATION, HeaderValue::from_bytes(&a).unwrap()),
            (header::AUTHORIZATION, HeaderValue::from_bytes(&b).unwrap()),
        ];
        let res = send(&rt, &app, "/", &headers);
        prop_assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        check_refusal(&res)?;
        Ok(())
    });
}

/// The query parameter and cookie sources (opt-in): a valid token survives
/// any percent-encoding of its characters; arbitrary queries and cookies are
/// refused with 400 / 401 and a valid challenge; a token sent twice is 400.
#[test]
fn query_and_cookie_sources() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let guard = issuer
        .guard_builder(AUD)
        .token_sources(TokenSources::default().with_query().with_cookie("at"))
        .build()
        .unwrap();
    let app = guarded(&guard);
    let valid = issuer.token().audience(AUD).mint();

    // Round trip through percent-encoding, in the query and in a cookie.
    let encodings = prop::collection::vec(0u8..3, valid.len());
    run(64, (encodings, any::<bool>()), |(how, in_cookie)| {
        let mut enc = String::new();
        for (c, how) in valid.chars().zip(how) {
            match how {
                0 => enc.push(c),
                1 => enc.push_str(&format!("%{:02X}", c as u32)),
                _ => enc.push_str(&format!("%{:02x}", c as u32)),
            }
        }
        let res = if in_cookie {
            let cookie = HeaderValue::from_str(&format!("a=b; at={enc}; c=d")).unwrap();
            send(&rt, &app, "/", &[(header::COOKIE, cookie)])
        } else {
            send(&rt, &app, &format!("/?x=1&access_token={enc}&y"), &[])
        };
        prop_assert_eq!(res.status(), StatusCode::OK);
        Ok(())
    });

    // Arbitrary queries and cookies.
    let query = prop_oneof![
        "[A-Za-z0-9._~%=&+/-]{0,40}",
        "[A-Za-z0-9._~%+/-]{0,40}".prop_map(|v| format!("access_token={v}")),
        ("[A-Za-z0-9%._-]{0,12}", "[A-Za-z0-9%._-]{0,12}")
            .prop_map(|(a, b)| format!("access_token={a}&access_token={b}")),
    ];
    let cookie = prop_oneof![
        Just(None),
        prop::collection::vec(header_byte(), 0..40).prop_map(Some),
        "[A-Za-z0-9%._=; -]{0,30}".prop_map(|v| Some(format!("at={v}").into_bytes())),
    ];
    let bearer = format!("Bearer {valid}");
    let auth = prop_oneof![
        Just(None),
        Just(Some(bearer.clone())),
        "[A-Za-z ]{0,12}".prop_map(Some),
    ];
    run(256, (query, cookie, auth), |(query, cookie, auth)| {
        let uri = format!("/?{query}");
        if uri.parse::<http::Uri>().is_err() {
            return Ok(());
        }
        let mut headers = Vec::new();
        if let Some(c) = cookie
            .as_deref()
            .and_then(|c| HeaderValue::from_bytes(c).ok())
        {
            headers.push((header::COOKIE, c));
        }
        if let Some(a) = &auth {
            headers.push((header::AUTHORIZATION, HeaderValue::from_str(a).unwrap()));
        }
        let res = send(&rt, &app, &uri, &headers);
        // Which sources carry something the guard reads as a credential.
        let valid_header = auth.as_deref() == Some(bearer.as_str());
        let in_query = query
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == "access_token");
        let in_cookie = headers
            .iter()
            .filter(|(name, _)| name == header::COOKIE)
            .filter_map(|(_, v)| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|pair| {
                pair.trim_matches(' ')
                    .split_once('=')
                    .is_some_and(|(n, _)| n == "at")
            });
        if valid_header && !in_query && !in_cookie {
            prop_assert_eq!(res.status(), StatusCode::OK);
        } else {
            check_refusal(&res)?;
            if valid_header {
                // Sent twice, or a malformed second one.
                prop_assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            }
        }
        Ok(())
    });
}

/// The builder accepts exactly the realms the model allows, and the layer's
/// challenges carry that realm.
#[test]
fn realm_is_checked_and_used() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let candidate = prop_oneof![realm(), hostile_string(), scope_token_candidate()];
    run(128, candidate, |realm| {
        let built = issuer.guard_builder(AUD).realm(realm.clone()).build();
        prop_assert_eq!(built.is_ok(), model_realm(&realm), "realm {:?}", realm);
        if let Ok(guard) = built {
            let res = send(&rt, &guarded(&guard), "/", &[]);
            prop_assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let expected = format!(r#"Bearer realm="{realm}""#);
            prop_assert_eq!(
                header_str(&res, header::WWW_AUTHENTICATE),
                Some(expected.as_str())
            );
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// Regression tests.

/// RFC 6750 §2.1 is `"Bearer" 1*SP b64token`: no other whitespace between
/// the scheme and the token (an earlier parser trimmed any ASCII whitespace
/// after the first space, so `Bearer \tabc` was accepted as `abc`; found by
/// `parse_authorization_matches_model`). Whitespace around the whole value is
/// not part of it.
#[test]
fn regression_only_spaces_separate_scheme_and_token() {
    let malformed = Err(AuthError::invalid_request(
        InvalidRequest::MalformedCredentials,
    ));
    for value in [
        "Bearer \tabc",
        "Bearer  \t abc",
        "Bearer \r\nabc",
        "Bearer \x0cabc",
    ] {
        assert_eq!(
            parse_authorization(value.as_bytes(), 64),
            malformed,
            "{value:?}"
        );
    }
    assert_eq!(
        parse_authorization(b" \tbearer  abc \t", 64),
        Ok(Some("abc"))
    );
    // Through the layer: a valid token after `Bearer <HTAB>` is refused.
    let rt = runtime();
    let issuer = TestIssuer::new();
    let app = guarded(&issuer.guard(AUD));
    let token = issuer.token().audience(AUD).mint();
    let value = HeaderValue::from_str(&format!("Bearer \t{token}")).unwrap();
    let res = send(&rt, &app, "/", &[(header::AUTHORIZATION, value)]);
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// Regression: a leeway of 2^63 s or more used to wrap to a negative one
/// (`Duration::MAX` became -1 s, refusing every fresh token as issued in the
/// future). A leeway is now at most 5 minutes: more is a build error, and
/// every accepted leeway accepts what a smaller one accepts.
#[test]
fn regression_huge_leeway_does_not_wrap() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let token = issuer.token().audience(AUD).mint();
    for secs in [0, 30, 300] {
        let guard = issuer
            .guard_builder(AUD)
            .leeway(Duration::from_secs(secs))
            .build()
            .unwrap();
        let verified = rt.block_on(guard.verify(&token));
        assert!(verified.is_ok(), "leeway {secs} s: {verified:?}");
    }
    for secs in [301, 1 << 62, 1 << 63, u64::MAX] {
        let err = issuer
            .guard_builder(AUD)
            .leeway(Duration::from_secs(secs))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            tokenguard::BuildError::LeewayTooLarge(Duration::from_secs(secs))
        );
    }
}

/// Counterexamples of the properties above and inputs the `credential` fuzz
/// target found, kept as plain tests.
#[test]
fn parse_authorization_examples() {
    for (value, max) in [
        (" Bearer a\"", 320),
        ("bearer     \n\n\n\n\n  E", 4),
        ("bearer \n", 0),
        ("\tBearer abc\t", 8),
        ("Bearer\t abc", 8),
        ("Bearer", 8),
        ("Bearer ", 8),
        ("bearer a", 0),
        ("Bearer =", 8),
        ("Bearer a==b", 8),
        ("Bearer\ta", 8),
        ("Bearer ,a", 8),
        ("BEARER a ", 8),
        ("Bearer a", usize::MAX),
    ] {
        check_parse(value.as_bytes(), max).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// Signed tokens with arbitrary JOSE headers and claims.

/// Any JSON value: null, booleans, integers, floats, arbitrary UTF-8 strings,
/// and nested arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `typ` candidates: near-misses of `at+jwt` / `application/at+jwt` built from
/// ASCII and multi-byte characters, any string, any JSON value.
fn typ_value() -> impl Strategy<Value = Value> {
    let near = prop::sample::select(vec![
        'a', 'p', 'l', 'i', 'c', 't', 'o', 'n', '/', '+', 'j', 'w', 'A', 'T', 'é', '€', '𝄞',
        '\u{301}',
    ]);
    prop_oneof![
        2 => prop::collection::vec(near, 0..24).prop_map(|c| Value::from(String::from_iter(c))),
        2 => (prop::sample::select(vec!["", "application/", "applicatioé", "APPLICATION/", "applicationé"]),
              prop::sample::select(vec!["at+jwt", "jwt", "AT+JWT", "t+jwt", "at+jwté", "é+jwt", ""]))
            .prop_map(|(p, s)| Value::from(format!("{p}{s}"))),
        1 => any::<String>().prop_map(Value::from),
        1 => json_value(),
    ]
}

const HEADER_NAMES: &[&str] = &[
    "typ", "crit", "cty", "jku", "jwk", "x5u", "x5c", "b64", "zip", "kid",
];
const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "cnf",
    "auth_time",
    "acr",
    "amr",
    "scp",
];

/// Header members to set (`None`: leave the builder's default).
fn header_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let name = prop_oneof![
        3 => prop::sample::select(HEADER_NAMES).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let member = (name, json_value());
    (
        prop::option::weighted(0.7, typ_value()),
        prop::collection::vec(member, 0..4),
    )
        .prop_map(|(typ, mut members)| {
            if let Some(typ) = typ {
                members.push(("typ".into(), typ));
            }
            members
        })
}

/// Claims to override or add on top of a valid token's claims.
fn claim_members() -> impl Strategy<Value = Vec<(String, Option<Value>)>> {
    let name = prop_oneof![
        4 => prop::sample::select(CLAIMS).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    prop::collection::vec((name, prop::option::weighted(0.85, json_value())), 0..4)
}

/// The model of an acceptable `typ`: `at+jwt` or `application/at+jwt`,
/// ASCII case-insensitive (RFC 9068 §2.1).
fn model_typ_ok(typ: Option<&Value>) -> bool {
    typ.and_then(Value::as_str).is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    })
}

/// Tokens signed by a key the guard trusts, with arbitrary JOSE header
/// members (`typ` above all) and arbitrary claims: the layer never panics,
/// answers only 200, 400, 401 or 403, refusals carry a well-formed challenge,
/// and a 200 needs a valid `typ`, no `crit` and no `cnf`.
#[test]
fn signed_tokens_with_arbitrary_headers_and_claims_never_panic() {
    let rt = runtime();
    let issuer = TestIssuer::new();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route_layer(tokenguard::require_scope("read"))
        .layer(issuer.guard(AUD).layer());
    let strategy = (header_members(), claim_members(), any::<bool>());
    run(768, strategy, |(header, claims, with_kid)| {
        let mut builder = issuer.token().audience(AUD).scope("read");
        if !with_kid {
            builder = builder.kid(None);
        }
        for (name, value) in &header {
            builder = builder.header(name, value.clone());
        }
        for (name, value) in &claims {
            builder = match value {
                Some(v) => builder.claim(name, v.clone()),
                None => builder.without_claim(name),
            };
        }
        let token = builder.mint();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let res = send(&rt, &app, "/", &[(header::AUTHORIZATION, value)]);
        match res.status() {
            StatusCode::OK => {
                let typ = header
                    .iter()
                    .rev()
                    .find(|(n, _)| n == "typ")
                    .map(|(_, v)| v);
                // The builder's default `typ` is `at+jwt`.
                prop_assert!(typ.is_none() || model_typ_ok(typ), "typ {typ:?}");
                prop_assert!(!header.iter().any(|(n, _)| n == "crit"), "crit accepted");
                prop_assert!(
                    !claims.iter().any(|(n, v)| n == "cnf" && v.is_some()),
                    "cnf accepted as bearer"
                );
            }
            StatusCode::FORBIDDEN => {
                let ch = header_str(&res, header::WWW_AUTHENTICATE).unwrap_or_default();
                prop_assert!(ch.contains(r#"error="insufficient_scope""#), "{ch}");
            }
            _ => {
                check_refusal(&res)?;
            }
        }
        Ok(())
    });
}
