//! Hostile input from a second JOSE implementation.
//!
//! `attacks/craft.mjs` generates keys and tokens with the `jose` npm package
//! (pinned in `attacks/package.json`) and byte-level manipulation, and prints
//! one JSON document: the issuer, audience and public key set, a few valid
//! tokens, and every attack case with the single RFC 6750 answer it must get.
//! This test runs it (installing `attacks/node_modules` with `npm ci` when
//! needed), puts a guard with those keys in front of an axum route that needs
//! a scope, sends each case through the real layer and checks status,
//! `WWW-Authenticate` (exactly), and that nothing of the token is echoed.
//! Every failing case is collected and reported at the end, in one list.
//!
//! Needs Node.js ≥ 20.19 and npm; without them the test fails, saying so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokenguard::{RequireScope, Scope, TokenGuard, scopes};
use tower::ServiceExt;

scopes! {
    /// The scope the protected route requires.
    ReadInvoices = "read:invoices";
}

/// How long one request may take before it counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
const REALM: &str = "api";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    issuer: String,
    audience: String,
    required_scope: String,
    jwks: serde_json::Value,
    valid: Vec<Valid>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Valid {
    name: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Sent as `Authorization: Bearer <token>`.
    token: Option<String>,
    /// Or these raw `Authorization` values, in order (none: no header).
    authorization: Option<Vec<RawValue>>,
    path: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// `"roomy"`: a guard with a 256 KiB token limit.
    guard: Option<String>,
    /// The http crate must refuse to build one of the header values.
    #[serde(default)]
    http_rejects: bool,
    expect_status: Option<u16>,
    /// Must be present (`null`: a challenge without error code).
    #[serde(default, deserialize_with = "present")]
    expect_error: Option<Option<String>>,
    expect_description: Option<String>,
}

/// Tells a member given as `null` from a missing one.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawValue {
    Text(String),
    Bytes { base64: String },
}

impl RawValue {
    fn bytes(&self) -> Vec<u8> {
        match self {
            RawValue::Text(s) => s.as_bytes().to_vec(),
            RawValue::Bytes { base64 } => STANDARD.decode(base64).expect("base64 in the suite"),
        }
    }
}

impl Case {
    fn authorization(&self) -> Vec<Vec<u8>> {
        match (&self.token, &self.authorization) {
            (Some(token), None) => vec![format!("Bearer {token}").into_bytes()],
            (None, Some(values)) => values.iter().map(RawValue::bytes).collect(),
            _ => panic!("case {:?}: exactly one of token / authorization", self.name),
        }
    }
}

// ------------------------------------------------------------------ node

fn attacks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("attacks")
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

const NEED_NODE: &str = "tests/it/attacks.rs crafts its hostile tokens with the `jose` npm package and \
     needs Node.js >= 20.19 and npm on PATH. Install them (e.g. `apt-get install nodejs npm`, \
     or from https://nodejs.org), then re-run `cargo test --all-features --test it attacks::`; \
     attacks/node_modules is installed with `npm ci` automatically";

fn tool_version(program: &str) -> String {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "`{program} --version` failed ({}): {}\n{NEED_NODE}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run `{program}`: {e}\n{NEED_NODE}"),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs `npm ci` when `node_modules` is missing or older than the lockfile.
fn ensure_node_modules(dir: &Path) {
    // npm writes `node_modules/.package-lock.json` on every install.
    let installed = modified(&dir.join("node_modules/.package-lock.json"))
        .or_else(|| modified(&dir.join("node_modules")));
    let lock = modified(&dir.join("package-lock.json")).expect("attacks/package-lock.json exists");
    if installed.is_some_and(|at| at >= lock) {
        return;
    }
    let out = Command::new(npm())
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `npm ci`: {e}\n{NEED_NODE}"));
    assert!(
        out.status.success(),
        "`npm ci` in {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn craft() -> Suite {
    let node = tool_version("node");
    let version: Vec<u32> = node
        .trim_start_matches('v')
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        version.as_slice() >= [20, 19].as_slice(),
        "Node.js {node} is too old.\n{NEED_NODE}"
    );
    tool_version(npm());
    let dir = attacks_dir();
    ensure_node_modules(&dir);
    let out = Command::new("node")
        .arg("craft.mjs")
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node craft.mjs`: {e}\n{NEED_NODE}"));
    assert!(
        out.status.success(),
        "`node craft.mjs` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("craft.mjs prints one JSON suite")
}

// ------------------------------------------------------------------ app

fn guard(suite: &Suite, max_token_size: Option<usize>) -> TokenGuard {
    let mut builder = TokenGuard::builder()
        .issuer(&suite.issuer)
        .audience(&suite.audience)
        .jwks_json(suite.jwks.to_string());
    if let Some(size) = max_token_size {
        builder = builder.max_token_size(size);
    }
    builder.build().expect("a guard for the crafted key set")
}

fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route("/", get(|_: RequireScope<ReadInvoices>| async { "ok" }))
        .layer(guard.layer())
}

/// What one request came back as.
enum Outcome {
    Response {
        status: StatusCode,
        headers: Vec<(HeaderName, Vec<u8>)>,
        body: Vec<u8>,
    },
    Panicked(String),
    Hung,
}

async fn send(app: &Router, path: &str, headers: Vec<(HeaderName, HeaderValue)>) -> Outcome {
    let mut req = Request::get(path);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let req = req.body(Body::empty()).expect("a request");
    let app = app.clone();
    // Spawned, so that a panic is reported for this case and the others still run.
    let task = tokio::spawn(async move {
        let res = app.oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
            .collect();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, headers, body.to_vec())
    });
    let abort = task.abort_handle();
    match tokio::time::timeout(CASE_TIMEOUT, task).await {
        Ok(Ok((status, headers, body))) => Outcome::Response {
            status,
            headers,
            body,
        },
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "<non-string panic>".into());
            Outcome::Panicked(msg)
        }
        Ok(Err(e)) => Outcome::Panicked(e.to_string()),
        Err(_) => {
            abort.abort();
            Outcome::Hung
        }
    }
}

// ------------------------------------------------------------------ checks

/// The exact challenge a case must get.
fn expected_challenge(case: &Case, required_scope: &str) -> Result<String, String> {
    let mut out = format!("Bearer realm=\"{REALM}\"");
    let Some(error) = case
        .expect_error
        .as_ref()
        .ok_or("the case has no expect_error")?
    else {
        return Ok(out);
    };
    let description = case
        .expect_description
        .as_deref()
        .ok_or("a case with an error code needs expect_description")?;
    write!(
        out,
        ", error=\"{error}\", error_description=\"{description}\""
    )
    .unwrap();
    if error == "insufficient_scope" {
        write!(out, ", scope=\"{required_scope}\"").unwrap();
    }
    Ok(out)
}

/// Whether every `"` of a header value is balanced (quoted-strings closed;
/// `\` escapes the next character inside one).
fn quotes_balanced(value: &str) -> bool {
    let mut inside = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => inside = !inside,
            '\\' if inside => {
                chars.next();
            }
            _ => {}
        }
    }
    !inside
}

/// Pieces of what the client sent that must never come back: every run of
/// token68 characters of 8 or more in the request's credentials, and every
/// string of 6 or more characters inside a decodable JOSE header or payload.
fn secrets(sent: &[Vec<u8>], required_scope: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in sent {
        let text = String::from_utf8_lossy(value);
        let runs = text.split(|c: char| {
            !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/'))
        });
        for run in runs {
            if run.len() >= 8 && !run.eq_ignore_ascii_case("bearer") {
                out.push(run.to_owned());
            }
            for part in run.split('.').take(3).filter(|p| p.len() >= 8) {
                out.push(part.to_owned());
                let Ok(json) = URL_SAFE_NO_PAD.decode(part) else {
                    continue;
                };
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) {
                    collect_strings(&v, &mut out);
                }
            }
        }
    }
    // The 403 challenge names the required scope by design.
    out.retain(|s| s.chars().count() >= 6 && !required_scope.contains(s.as_str()));
    out.sort();
    out.dedup();
    out
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}

/// Checks one response; returns what is wrong with it.
fn check(
    case: &Case,
    required_scope: &str,
    sent: &[Vec<u8>],
    status: StatusCode,
    headers: &[(HeaderName, Vec<u8>)],
    body: &[u8],
) -> Vec<String> {
    let mut problems = Vec::new();
    let expected_status = case.expect_status.expect("checked before sending");
    if status.as_u16() != expected_status {
        problems.push(format!(
            "status {} (expected {expected_status})",
            status.as_u16()
        ));
    }
    let challenges: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == header::WWW_AUTHENTICATE)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    match expected_challenge(case, required_scope) {
        Err(e) => problems.push(e),
        Ok(expected) => match challenges.as_slice() {
            [one] if *one == expected => {}
            [one] => problems.push(format!(
                "WWW-Authenticate `{one}`\n        expected `{expected}`"
            )),
            [] => problems.push(format!("no WWW-Authenticate (expected `{expected}`)")),
            many => problems.push(format!("{} WWW-Authenticate headers: {many:?}", many.len())),
        },
    }
    for c in &challenges {
        if !c.starts_with(&format!("Bearer realm=\"{REALM}\"")) {
            problems.push("the challenge does not start with the Bearer realm".into());
        }
        if c.contains(['\r', '\n']) {
            problems.push("the challenge holds CR or LF".into());
        }
        if !quotes_balanced(c) {
            problems.push("the challenge has unbalanced quotes".into());
        }
    }
    let echoed: Vec<String> = secrets(sent, required_scope)
        .into_iter()
        .filter(|secret| {
            let needle = secret.as_bytes();
            headers
                .iter()
                .map(|(_, v)| v.as_slice())
                .chain(std::iter::once(body))
                .any(|hay| hay.windows(needle.len()).any(|w| w == needle))
        })
        .map(|s| shorten(&s))
        .collect();
    if !echoed.is_empty() {
        problems.push(format!("the response echoes token content: {echoed:?}"));
    }
    problems
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response {
            status, headers, ..
        } => {
            let challenge = headers
                .iter()
                .find(|(n, _)| n == header::WWW_AUTHENTICATE)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "<none>".into());
            format!("{} {challenge}", status.as_u16())
        }
        Outcome::Panicked(msg) => format!("PANIC: {msg}"),
        Outcome::Hung => format!("HANG: no answer within {CASE_TIMEOUT:?}"),
    }
}

// ------------------------------------------------------------------ the test

async fn run(suite: Suite) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    assert_eq!(
        suite.required_scope,
        ReadInvoices::NAME,
        "craft.mjs and this test must agree on the route's scope"
    );

    let strict = guard(&suite, None);
    let roomy = guard(&suite, Some(256 * 1024));
    // The 1024-bit RSA key of the set must have been skipped.
    let mut kids = strict
        .key_status()
        .into_iter()
        .flat_map(|s| s.kids)
        .collect::<Vec<_>>();
    kids.sort();
    if kids != ["ec-1", "ed-1", "rsa-1", "rsa-ps"] {
        failures.push(format!(
            "key set: usable kids {kids:?} (expected ec-1, ed-1, rsa-1, rsa-ps; the 1024-bit rsa-1024 skipped)"
        ));
    }
    let (strict, roomy) = (app(&strict), app(&roomy));

    for valid in &suite.valid {
        let value = HeaderValue::try_from(format!("Bearer {}", valid.token))
            .expect("a valid token is a header value");
        match send(&strict, "/", vec![(header::AUTHORIZATION, value)]).await {
            Outcome::Response {
                status: StatusCode::OK,
                body,
                ..
            } if body == b"ok" => {}
            other => failures.push(format!(
                "{}\n        got {} (expected 200 ok: the setup must accept good tokens)",
                valid.name,
                describe(&other)
            )),
        }
    }

    let mut names = std::collections::HashSet::new();
    for case in &suite.cases {
        assert!(names.insert(&case.name), "duplicate case {:?}", case.name);
        let sent = case.authorization();
        let mut request_headers = Vec::new();
        let mut refused = None;
        for value in &sent {
            match HeaderValue::from_bytes(value) {
                Ok(v) => request_headers.push((header::AUTHORIZATION, v)),
                Err(e) => refused = Some(e),
            }
        }
        if case.http_rejects {
            if refused.is_none() {
                failures.push(format!(
                    "{}\n        the http crate accepted the header value; expected it to refuse",
                    case.name
                ));
            }
            continue;
        }
        if let Some(e) = refused {
            failures.push(format!(
                "{}\n        unsendable header value: {e}",
                case.name
            ));
            continue;
        }
        if case.expect_status.is_none() || case.expect_error.is_none() {
            failures.push(format!(
                "{}\n        expect_status and expect_error are required",
                case.name
            ));
            continue;
        }
        for (name, value) in &case.headers {
            request_headers.push((
                HeaderName::try_from(name.as_str()).expect("a header name"),
                HeaderValue::try_from(value.as_str()).expect("a header value"),
            ));
        }
        let app = match case.guard.as_deref() {
            None => &strict,
            Some("roomy") => &roomy,
            Some(other) => panic!("case {:?}: unknown guard {other:?}", case.name),
        };
        let path = case.path.as_deref().unwrap_or("/");
        let outcome = send(app, path, request_headers).await;
        let problems = match &outcome {
            Outcome::Response {
                status,
                headers,
                body,
            } => {
                // Whatever carried the token: credentials, URI, other headers.
                let mut exposed = sent.clone();
                exposed.push(path.as_bytes().to_vec());
                exposed.extend(case.headers.iter().map(|(_, v)| v.as_bytes().to_vec()));
                check(
                    case,
                    &suite.required_scope,
                    &exposed,
                    *status,
                    headers,
                    body,
                )
            }
            Outcome::Panicked(_) | Outcome::Hung => vec![describe(&outcome)],
        };
        if !problems.is_empty() {
            failures.push(format!(
                "{}\n        got {}\n        {}",
                case.name,
                describe(&outcome),
                problems.join("\n        ")
            ));
        }
    }
    (suite.valid.len() + suite.cases.len(), failures)
}

#[test]
fn hostile_tokens_from_a_second_jose_implementation() {
    let started = Instant::now();
    let suite = craft();
    let crafted = started.elapsed();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (total, failures) = runtime.block_on(run(suite));
    // A case stuck in synchronous code must not keep the test from reporting.
    runtime.shutdown_background();
    eprintln!(
        "{total} requests ({} failing); crafting took {crafted:?}, all {:?}",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} attack cases got the wrong answer:\n\n{}\n",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The checks themselves catch what they are meant to catch.
#[test]
fn the_checker_sees_echoes_and_broken_challenges() {
    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let token = format!(
        "{}.{}.{}",
        enc(r#"{"alg":"RS256","kid":"../../etc/passwd"}"#),
        enc(r#"{"sub":"user-42","scope":"read:invoice"}"#),
        enc("not a real signature")
    );
    let case = Case {
        name: "unknown kid".into(),
        token: Some(token.clone()),
        authorization: None,
        path: None,
        headers: Vec::new(),
        guard: None,
        http_rejects: false,
        expect_status: Some(401),
        expect_error: Some(Some("invalid_token".into())),
        expect_description: Some("The access token signing key is unknown".into()),
    };
    let sent = case.authorization();
    let good = r#"Bearer realm="api", error="invalid_token", error_description="The access token signing key is unknown""#;
    let problems = |status: u16, challenge: &str, body: &str| {
        let headers = vec![(header::WWW_AUTHENTICATE, challenge.as_bytes().to_vec())];
        check(
            &case,
            ReadInvoices::NAME,
            &sent,
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    };
    assert!(problems(401, good, "").is_empty());
    // A scope that is a prefix of the required one may appear in a 403 challenge.
    assert!(problems(401, good, "read:invoices").is_empty());
    assert_eq!(problems(400, good, "").len(), 1);
    let echo_kid = good.replace("is unknown", "../../etc/passwd is unknown");
    assert!(
        problems(401, &echo_kid, "")
            .iter()
            .any(|p| p.contains("echoes"))
    );
    let echo_sub = problems(401, good, "no key for user-42");
    assert!(
        echo_sub.iter().any(|p| p.contains("echoes")),
        "{echo_sub:?}"
    );
    let signature = token.rsplit('.').next().unwrap();
    let echo_part = problems(401, good, signature);
    assert!(
        echo_part.iter().any(|p| p.contains("echoes")),
        "{echo_part:?}"
    );
    let unbalanced = format!("{good}, x=\"");
    assert!(
        problems(401, &unbalanced, "")
            .iter()
            .any(|p| p.contains("unbalanced"))
    );
    assert!(quotes_balanced(r#"Bearer realm="a \" b""#));
    assert!(!quotes_balanced(r#"Bearer realm="a \""#));
}
