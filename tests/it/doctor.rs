//! `tokenguard-doctor` run as a process against a loopback issuer
//! (`TestIssuerServer`: discovery and JWKS over HTTP): one token per failure
//! kind, the lines it prints and its exit status. The signature segment of a
//! token never appears in its output.
#![cfg(all(feature = "doctor", feature = "testing"))]

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tokenguard::Algorithm;
use tokenguard::NumericDate;
use tokenguard::testing::{TestIssuer, TestIssuerServer};
use tokio::io::AsyncWriteExt;

const AUD: &str = "https://api.example.com";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The line of the check `name` (`[ok]   typ:       …`).
    fn check(&self, name: &str) -> &str {
        let prefix = format!("{name}:");
        self.checks()
            .into_iter()
            .find(|l| l.get(7..).is_some_and(|rest| rest.starts_with(&prefix)))
            .unwrap_or_else(|| panic!("no check line for {name}:\n{}", self.stdout))
    }

    fn checks(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .skip_while(|l| !l.starts_with("Checks, in the guard's order:"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(str::trim_start)
            .collect()
    }

    fn position(&self, name: &str) -> usize {
        let line = self.check(name);
        self.checks().iter().position(|l| *l == line).unwrap()
    }

    fn result(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("Result: "))
            .unwrap_or_else(|| panic!("no result line:\n{}", self.stdout))
    }
}

async fn doctor(args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenguard-doctor"));
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the doctor finished within 60 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Diagnoses `token` (given as an argument) against `server`, and checks that
/// neither the token nor its signature is printed.
async fn diagnose(server: &TestIssuerServer, token: &str, extra: &[&str]) -> Run {
    let mut args = vec![token, "--issuer", server.url(), "--audience", AUD];
    args.extend_from_slice(extra);
    let run = doctor(&args, None).await;
    assert_not_leaked(&run, token);
    run
}

fn assert_not_leaked(run: &Run, token: &str) {
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(!output.contains(token), "the token was echoed:\n{output}");
    if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() >= 8) {
        assert!(
            !output.contains(signature),
            "the signature was printed:\n{output}"
        );
    }
}

fn assert_ok(run: &Run, names: &[&str]) {
    for name in names {
        let line = run.check(name);
        assert!(line.starts_with("[ok]"), "{name} should pass: {line}");
    }
}

fn assert_not_reached(run: &Run, names: &[&str]) {
    for name in names {
        let line = run.check(name);
        assert!(
            line.starts_with("[--]") && line.ends_with("not reached"),
            "{name} should not be reached: {line}"
        );
    }
}

const ALL: [&str; 17] = [
    "size",
    "segments",
    "header",
    "alg",
    "crit",
    "typ",
    "key",
    "signature",
    "claims",
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "lifetime",
    "scopes",
    "binding",
];

fn b64(v: serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn an_accepted_token_passes_every_check_in_order() {
    let server = TestIssuerServer::start().await.unwrap();
    let issuer = server.issuer();
    let token = issuer
        .token()
        .audience(AUD)
        .subject("u1")
        .scope("read write")
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let names: Vec<&str> = run
        .checks()
        .iter()
        .map(|l| l.get(7..).unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(names, ALL);
    assert_ok(&run, &ALL);
    let kid = issuer.kid(Algorithm::ES256);
    assert_eq!(
        run.check("key"),
        format!("[ok]   key:       kid \"{kid}\" (ES256)")
    );
    assert_eq!(run.check("signature"), "[ok]   signature: verified (ES256)");
    assert_eq!(run.check("typ"), "[ok]   typ:       typ \"at+jwt\"");
    assert_eq!(run.check("nbf"), "[ok]   nbf:       absent, not checked");
    assert_eq!(
        run.check("binding"),
        "[ok]   binding:   no cnf: a bearer token"
    );
    assert_eq!(
        run.result(),
        "Result: ACCEPTED (sub \"u1\", scopes \"read write\")"
    );
    // The decoded header and claims, pretty-printed.
    assert!(
        run.stdout
            .contains("JOSE header:\n  {\n    \"alg\": \"ES256\",\n")
    );
    assert!(run.stdout.contains("    \"sub\": \"u1\""));
    assert!(run.stdout.contains(&format!("    \"aud\": \"{AUD}\"")));
    assert!(
        run.stdout
            .contains(&format!("Keys: {}/jwks (9 keys: ", server.url()))
    );
}

#[tokio::test]
async fn the_token_can_come_from_stdin_and_the_keys_from_a_jwks_url() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server.issuer().token().audience(AUD).mint();
    let jwks = server.jwks_url();
    let run = doctor(
        &[
            "-",
            "--issuer",
            server.url(),
            "--audience",
            AUD,
            "--jwks",
            &jwks,
        ],
        Some(&format!("{token}\n")),
    )
    .await;
    assert_not_leaked(&run, &token);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.result().starts_with("Result: ACCEPTED"));
    assert!(run.stdout.contains(&format!("keys from {jwks}")));
    // Keys straight from the JWKS URL: no discovery.
    assert_eq!(server.discovery_requests(), 0);

    let help = doctor(&["--help"], None).await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("`-` reads it from standard input"));
}

#[tokio::test]
async fn an_expired_token_is_refused_at_exp() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server.issuer().token().audience(AUD).expired().mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    let exp = run.check("exp");
    assert!(
        exp.starts_with("[FAIL] exp:       The access token expired (exp "),
        "{exp}"
    );
    assert!(
        exp.ends_with(
            "-- no setting relaxes this: even the largest leeway (MAX_LEEWAY, 300 s) does not cover it; get a new token"
        ),
        "{exp}"
    );
    assert_ok(&run, &["signature", "iss", "aud"]);
    assert_not_reached(&run, &["nbf", "iat", "lifetime", "scopes", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED at exp: The access token expired"
    );
}

#[tokio::test]
async fn a_token_expired_within_the_largest_leeway_names_the_leeway() {
    let server = TestIssuerServer::start().await.unwrap();
    let now = NumericDate::now().as_secs();
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .claim("iat", now - 200)
        .claim("exp", now - 100)
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    let exp = run.check("exp");
    assert!(
        exp.ends_with(
            "-- relax with TokenGuardBuilder::leeway(Duration::from_secs(300)) (MAX_LEEWAY, the largest; better: fix the clocks)"
        ),
        "{exp}"
    );
    assert_ok(&run, &["nbf", "iat", "lifetime", "scopes", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by exp"
    );

    // The same token with that leeway configured: accepted.
    let run = diagnose(&server, &token, &["--leeway", "300"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused_at_nbf() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .not_before_in(Duration::from_secs(3600))
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    let nbf = run.check("nbf");
    assert!(
        nbf.starts_with("[FAIL] nbf:       The access token is not valid yet (nbf "),
        "{nbf}"
    );
    assert!(nbf.contains("-- no setting relaxes this: beyond the largest leeway"));
    assert_ok(&run, &["exp"]);
    assert_not_reached(&run, &["iat", "lifetime", "scopes", "binding"]);
}

#[tokio::test]
async fn a_wrong_issuer_names_the_issuer_setting() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .issuer("https://other.example.com")
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("iss"),
        format!(
            "[FAIL] iss:       The access token issuer is not trusted (iss \"https://other.example.com\") -- relax with TokenGuardBuilder::issuer(\"https://other.example.com\") if that issuer is trusted (the token's signature verified with the keys of \"{}\"); TokenGuard::multi_issuer(..) to trust both",
            server.url()
        )
    );
    // Past the issuer, everything else passes.
    assert_ok(&run, &["signature", "aud", "exp", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by iss"
    );
}

#[tokio::test]
async fn a_wrong_audience_names_the_audience_settings() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server.issuer().token().wrong_audience().mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("aud"),
        "[FAIL] aud:       The access token is not meant for this resource (aud \"https://other-resource.invalid\") -- relax with TokenGuardBuilder::audience(\"https://other-resource.invalid\") (the token's audience), or TokenGuardBuilder::insecure_skip_audience_check()"
    );
    assert_ok(&run, &["iss", "exp", "binding"]);

    // No audience at all: only skipping the check relaxes it.
    let token = server.issuer().token().mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("aud"),
        "[FAIL] aud:       access token lacks the `aud` claim (aud absent) -- relax with TokenGuardBuilder::insecure_skip_audience_check()"
    );
}

#[tokio::test]
async fn a_wrong_typ_names_allow_untyped_tokens_when_it_helps() {
    let server = TestIssuerServer::start().await.unwrap();
    let untyped = server.issuer().token().audience(AUD).untyped().mint();
    let run = diagnose(&server, &untyped, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("typ"),
        "[FAIL] typ:       The token is not an access token (typ absent) -- relax with TokenGuardBuilder::allow_untyped_tokens()"
    );
    assert_ok(&run, &["key", "signature", "exp", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by typ"
    );
    let run = diagnose(&server, &untyped, &["--allow-untyped"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);

    // Another kind of token: no setting accepts it.
    let proof_typed = server.issuer().token().audience(AUD).typ("dpop+jwt").mint();
    let run = diagnose(&server, &proof_typed, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("typ"),
        "[FAIL] typ:       The token is not an access token (typ \"dpop+jwt\") -- no setting relaxes this: typ \"dpop+jwt\" names another kind of token"
    );
    assert_not_reached(&run, &["key", "signature", "iss", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED at typ: The token is not an access token"
    );
}

#[tokio::test]
async fn a_long_lifetime_names_max_lifetime() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .expires_in(Duration::from_secs(48 * 3600))
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("lifetime"),
        "[FAIL] lifetime:  The access token lifetime is too long (172800 s) -- relax with TokenGuardBuilder::max_lifetime(Some(Duration::from_secs(172800))) or max_lifetime(None)"
    );
    assert_ok(&run, &["exp", "scopes", "binding"]);
    let run = diagnose(&server, &token, &["--max-lifetime", "none"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.check("lifetime"),
        "[ok]   lifetime:  not checked (max_lifetime(None))"
    );
}

#[tokio::test]
async fn an_unknown_kid_is_refused_at_the_key() {
    let server = TestIssuerServer::start().await.unwrap();
    let issuer = server.issuer();
    let token = issuer.token().audience(AUD).kid(Some("no-such-key")).mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    let key = run.check("key");
    assert!(
        key.starts_with(
            "[FAIL] key:       The access token signing key is unknown (kid \"no-such-key\", alg ES256) -- no setting relaxes this: the issuer publishes no key for it (kids: "
        ),
        "{key}"
    );
    assert!(key.contains(&issuer.kid(Algorithm::ES256)), "{key}");

    // Without a kid, a key is chosen only if exactly one fits the alg: after
    // a rotation, two ES256 keys are published.
    server.rotate();
    let token = server.issuer().token().audience(AUD).kid(None).mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.check("key").contains(
            "-- no setting relaxes this: the token names no kid, and not exactly one of the issuer's keys"
        ),
        "{}",
        run.check("key")
    );
    assert_ok(&run, &["alg", "typ"]);
    assert_not_reached(&run, &["signature", "iss", "exp", "binding"]);
}

#[tokio::test]
async fn a_bad_signature_is_refused_at_the_signature() {
    let server = TestIssuerServer::start().await.unwrap();
    // Signed by another key under the issuer's kid.
    let kid = server.issuer().kid(Algorithm::ES256);
    let token = TestIssuer::with_issuer(server.url())
        .token()
        .audience(AUD)
        .kid(Some(&kid))
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("signature"),
        "[FAIL] signature: The access token signature is invalid -- no setting relaxes this: the token was altered, or signed by another key under this kid"
    );
    assert_ok(&run, &["key"]);
    assert_not_reached(&run, &["claims", "iss", "aud", "exp", "binding"]);
    // The claims are shown all the same: they are not trusted, only decoded.
    assert!(
        run.stdout
            .contains(&format!("    \"iss\": \"{}\"", server.url()))
    );
}

#[tokio::test]
async fn a_disallowed_algorithm_is_refused_at_alg() {
    let server = TestIssuerServer::start().await.unwrap();
    let hs256 = server
        .issuer()
        .token()
        .audience(AUD)
        .hmac_secret(Algorithm::HS256, &[7; 32])
        .mint();
    let run = diagnose(&server, &hs256, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("alg"),
        "[FAIL] alg:       The access token algorithm is not accepted (alg \"HS256\") -- no setting relaxes this here: HMAC tokens need the shared secret, TokenGuardBuilder::hmac_secret(Algorithm::HS256, ..) with static keys, which the doctor cannot check"
    );
    assert_ok(&run, &["header"]);
    assert_not_reached(&run, &["crit", "typ", "key", "signature", "binding"]);

    // An asymmetric algorithm left out of a narrower allowlist: relaxable.
    let es256 = server.issuer().token().audience(AUD).mint();
    let run = diagnose(&server, &es256, &["--algorithm", "RS256"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("alg"),
        "[FAIL] alg:       The access token algorithm is not accepted (alg \"ES256\") -- relax with TokenGuardBuilder::algorithms([Algorithm::RS256, Algorithm::ES256])"
    );
    assert_ok(&run, &["key", "signature", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by alg"
    );
}

#[tokio::test]
async fn a_key_pinned_to_another_algorithm_is_refused_at_the_key() {
    let server = TestIssuerServer::start().await.unwrap();
    let issuer = server.issuer();
    // The RS256 key's kid, on an RS384 signature: the JWK's `alg` pins the key.
    let token = issuer
        .token()
        .audience(AUD)
        .algorithm(Algorithm::RS384)
        .kid(Some(&issuer.kid(Algorithm::RS256)))
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("key"),
        format!(
            "[FAIL] key:       The access token algorithm is not accepted (kid \"{}\", alg RS384) -- no setting relaxes this: the issuer's key with this kid is pinned to another algorithm (RFC 8725 §3.1)",
            issuer.kid(Algorithm::RS256)
        )
    );
    assert_ok(&run, &["alg", "typ"]);
    assert_not_reached(&run, &["signature", "binding"]);
}

#[tokio::test]
async fn crit_and_size_limits() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .header("crit", json!(["exp"]))
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("crit"),
        "[FAIL] crit:      The access token has an unsupported critical header -- no setting relaxes this: no JWS extension (`crit`) is understood"
    );
    assert_not_reached(&run, &["typ", "key"]);

    // Larger than the default 8 KiB: relaxable, and read from stdin.
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .claim("pad", "x".repeat(9000))
        .mint();
    let url = server.url().to_owned();
    let run = doctor(&["-", "--issuer", &url, "--audience", AUD], Some(&token)).await;
    assert_not_leaked(&run, &token);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("size"),
        format!(
            "[FAIL] size:      The access token is too large ({len} bytes) -- relax with TokenGuardBuilder::max_token_size({len})",
            len = token.len()
        )
    );
    assert_ok(&run, &["signature", "exp", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by size"
    );
}

#[tokio::test]
async fn malformed_tokens_are_refused_where_the_guard_refuses_them() {
    let server = TestIssuerServer::start().await.unwrap();
    let run = diagnose(&server, "not-a-token", &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("segments"),
        "[FAIL] segments:  The access token is malformed (1 segment) -- no setting relaxes this: not a JWT the guard can read (opaque tokens need TokenGuardBuilder::introspection(..))"
    );
    assert_ok(&run, &["size"]);
    assert_not_reached(&run, &["header", "alg", "signature", "binding"]);
    assert!(run.stdout.contains("JOSE header: none"));

    // Three segments, but the header is not JSON: shown as such.
    let claims = b64(json!({"iss": server.url(), "aud": AUD}));
    let token = format!(
        "{}.{claims}.c2lnbmF0dXJlLWJ5dGVz",
        URL_SAFE_NO_PAD.encode("not json")
    );
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.check("header").starts_with(
            "[FAIL] header:    The access token is malformed (not JSON) -- no setting relaxes this"
        ),
        "{}",
        run.check("header")
    );
    assert_ok(&run, &["segments"]);
    assert!(
        run.stdout.contains("JOSE header: not JSON ("),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!("    \"aud\": \"{AUD}\"")));

    // Unsigned (`alg: none`): refused when the token is split.
    let token = format!("{}.{claims}.", b64(json!({"alg": "none", "typ": "at+jwt"})));
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("segments"),
        "[FAIL] segments:  The access token signature is invalid (the signature segment is empty) -- no setting relaxes this: an unsigned token is never accepted"
    );
    assert_not_reached(&run, &["header", "alg"]);
}

#[tokio::test]
async fn a_bound_token_needs_its_proof() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .claim(
            "cnf",
            json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        )
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.check("binding"),
        "[FAIL] binding:   The access token is bound to a key and cannot be used as a bearer token -- a sender-constrained token: cnf.jkt: needs a DPoP proof (TokenGuardBuilder::dpop(..), Authorization: DPoP); cannot be checked offline"
    );
    // Every check before the binding passed.
    let before: Vec<&str> = ALL.iter().copied().filter(|n| *n != "binding").collect();
    assert_ok(&run, &before);

    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .claim(
            "cnf",
            json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        )
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.check("binding")
            .contains("cnf.x5t#S256: needs the client certificate (TokenGuardBuilder::mtls(..))"),
        "{}",
        run.check("binding")
    );
}

#[tokio::test]
async fn several_relaxable_failures_are_all_reported_in_the_guards_order() {
    let server = TestIssuerServer::start().await.unwrap();
    let token = server
        .issuer()
        .token()
        .untyped()
        .wrong_audience()
        .expires_in(Duration::from_secs(48 * 3600))
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    let failed: Vec<&str> = run
        .checks()
        .into_iter()
        .filter(|l| l.starts_with("[FAIL]"))
        .collect();
    assert_eq!(failed.len(), 3, "{}", run.stdout);
    assert!(run.check("typ").contains("allow_untyped_tokens()"));
    assert!(run.check("aud").contains("insecure_skip_audience_check()"));
    assert!(run.check("lifetime").contains("max_lifetime(None)"));
    assert!(run.position("typ") < run.position("aud"));
    assert!(run.position("aud") < run.position("lifetime"));
    assert_ok(&run, &["key", "signature", "iss", "exp", "binding"]);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by typ, aud, lifetime"
    );
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Result: "))
        .skip(1)
        .collect();
    assert_eq!(listed.len(), 3, "{}", run.stdout);
    assert_eq!(listed[0], "  - TokenGuardBuilder::allow_untyped_tokens()");

    // A relaxable failure, then one no setting relaxes: both, in order.
    let token = server
        .issuer()
        .token()
        .audience(AUD)
        .untyped()
        .expired()
        .mint();
    let run = diagnose(&server, &token, &[]).await;
    assert_eq!(run.code, 1);
    assert!(run.check("typ").starts_with("[FAIL]"));
    assert!(run.check("exp").contains("no setting relaxes this"));
    assert_eq!(
        run.result(),
        "Result: REFUSED at exp: The access token expired"
    );
    assert!(
        run.stdout
            .contains("  (after relaxing: TokenGuardBuilder::allow_untyped_tokens())")
    );
}

/// The relaxations are listed in the order the guard met the failures: this
/// pins the library's order of every relaxable check.
#[tokio::test]
async fn every_relaxable_check_is_met_in_the_guards_order() {
    let server = TestIssuerServer::start().await.unwrap();
    let now = NumericDate::now().as_secs();
    let token = server
        .issuer()
        .token()
        .claim("pad", "x".repeat(9000))
        .untyped()
        .issuer("https://other.example.com")
        .wrong_audience()
        .claim("iat", now - 30 * 3600)
        .claim("exp", now - 100)
        .mint();
    let url = server.url().to_owned();
    let run = doctor(
        &[
            "-",
            "--issuer",
            &url,
            "--audience",
            AUD,
            "--algorithm",
            "RS256",
        ],
        Some(&token),
    )
    .await;
    assert_not_leaked(&run, &token);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.result(),
        "Result: REFUSED; accepted once relaxed by size, alg, typ, iss, aud, exp, lifetime"
    );
    let failed: Vec<&str> = run
        .checks()
        .into_iter()
        .filter(|l| l.starts_with("[FAIL]"))
        .map(|l| l.get(7..).unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["size", "alg", "typ", "iss", "aud", "exp", "lifetime"]
    );
    assert_ok(&run, &["key", "signature", "nbf", "iat", "binding"]);
}

#[tokio::test]
async fn unusable_settings_and_unreachable_issuers_exit_2() {
    let token = TestIssuer::new().token().audience(AUD).mint();
    // http is refused off loopback, as the builder refuses it.
    let run = doctor(
        &[
            &token,
            "--issuer",
            "http://id.example.com",
            "--audience",
            AUD,
        ],
        None,
    )
    .await;
    assert_not_leaked(&run, &token);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains(
            "the guard's settings are refused: invalid URL: \"http://id.example.com\" must be an https URL (http only on loopback)"
        ),
        "{}",
        run.stderr
    );

    // Nobody listens on the port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer = format!("http://127.0.0.1:{port}");
    let run = doctor(&[&token, "--issuer", &issuer, "--audience", AUD], None).await;
    assert_not_leaked(&run, &token);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot check the token: could not load the issuer's keys or metadata:"),
        "{}",
        run.stderr
    );

    // A leeway the builder refuses.
    let run = doctor(
        &[
            &token,
            "--issuer",
            &issuer,
            "--audience",
            AUD,
            "--leeway",
            "600",
        ],
        None,
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("is longer than the 300s allowed"),
        "{}",
        run.stderr
    );

    // Usage errors: no audience; nothing on stdin.
    let run = doctor(&[&token, "--issuer", &issuer], None).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--audience"), "{}", run.stderr);
    let run = doctor(&["-", "--issuer", &issuer, "--audience", AUD], Some("  \n")).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no token given"), "{}", run.stderr);
    // A pasted `Bearer <token>`, quoted or not: refused, the token not echoed.
    let bearer = format!("Bearer {token}");
    for args in [vec!["Bearer", token.as_str()], vec![bearer.as_str()]] {
        let mut args = args;
        args.extend(["--issuer", &issuer, "--audience", AUD]);
        let run = doctor(&args, None).await;
        assert_not_leaked(&run, &token);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains("without `Bearer `"), "{}", run.stderr);
    }
}
