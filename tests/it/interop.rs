//! Interop with a real authorization server: panva's `oidc-provider` (npm),
//! run by `interop/server.mjs` on 127.0.0.1 as a child process.
//!
//! The server issues RFC 9068 JWT access tokens through the client
//! credentials grant with resource indicators (RFC 8707): one resource per
//! signing algorithm (RS256, PS256, ES256, EdDSA) and another API. An ID
//! token comes from a genuine authorization code flow through the server's
//! development login and consent pages.
//!
//! The guards here know only the issuer URL and their audiences: keys come
//! through discovery and the JWKS over real HTTP, as in production.
//!
//! Needs Node.js >= 20 and npm on `PATH`. The first test to run installs the
//! pinned packages (`npm ci` in `interop/`) when `interop/node_modules` is
//! missing or older than `package-lock.json`.

#![cfg(all(feature = "testing", feature = "axum"))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use reqwest::Url;
use serde_json::Value;
use tokenguard::testing::TestIssuer;
use tokenguard::{
    AuthErrorKind, InvalidToken, RequireScope, TokenGuard, TokenGuardBuilder, scopes,
};
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// What interop/server.mjs configures.
// ---------------------------------------------------------------------------

const CLIENT_ID: &str = "tokenguard-interop";
const CLIENT_SECRET: &str = "tokenguard-interop-secret-0123456789abcdef";
const REDIRECT_URI: &str = "https://client.example.com/callback";

const RS256_API: &str = "https://api.example.com/rs256";
const PS256_API: &str = "https://api.example.com/ps256";
const ES256_API: &str = "https://api.example.com/es256";
const EDDSA_API: &str = "https://api.example.com/eddsa";
/// Signed with the fully-specified RFC 9864 name `Ed25519`.
const ED25519_API: &str = "https://api.example.com/ed25519";
/// The resource servers the guards trust, and the JWS `alg` the server signs
/// their access tokens with.
const APIS: [(&str, &str); 5] = [
    (RS256_API, "RS256"),
    (PS256_API, "PS256"),
    (ES256_API, "ES256"),
    (EDDSA_API, "EdDSA"),
    (ED25519_API, "Ed25519"),
];
/// Another resource of the same server (RS256, same scopes): its tokens are
/// not meant for the APIs above.
const OTHER_API: &str = "https://other.example.com";

/// The `refetch_cooldown` of the rotation and outage tests.
const COOLDOWN: Duration = Duration::from_millis(100);
/// How long a server may take to print `READY`.
const START_TIMEOUT: Duration = Duration::from_secs(45);
/// How a start that timed out is reported.
const NO_READY: &str = "no READY line";
/// How long `npm ci` may take.
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);

scopes! {
    ReadInvoices = "read:invoices";
    WriteInvoices = "write:invoices";
}

// ---------------------------------------------------------------------------
// Node.js, the npm packages, and the server process.
// ---------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

const INSTALL_NODE: &str = "the interop tests (tests/it/interop.rs) run a real authorization \
     server, panva's oidc-provider, with Node.js: install Node.js >= 20 and npm \
     (https://nodejs.org/) and make sure `node` and `npm` are on PATH";

/// Runs `cmd` to completion within `timeout`; its exit status and output
/// (stdout then stderr).
fn run(cmd: &mut Command, timeout: Duration) -> Result<(std::process::ExitStatus, String), String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = r.read_to_string(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    let output = stdout.join().unwrap_or_default() + &stderr.join().unwrap_or_default();
    Ok((status, output))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Checks for Node.js and npm, and installs the pinned packages when
/// `node_modules` is missing or older than the lock file. Once per test
/// binary; panics (never skips) when something is missing.
fn ensure_node() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = interop_dir();
        let (status, version) = run(
            Command::new("node").arg("--version"),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\n{e}"));
        let major = version
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        assert!(
            status.success() && major.is_some_and(|m| m >= 20),
            "{INSTALL_NODE}; `node --version` says {:?}",
            version.trim()
        );
        let (status, out) = run(
            Command::new(npm()).arg("--version"),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\n{e}"));
        assert!(
            status.success(),
            "{INSTALL_NODE}; `npm --version` failed:\n{out}"
        );

        // npm writes node_modules/.package-lock.json on every install.
        let installed = modified(&dir.join("node_modules/.package-lock.json")).filter(|_| {
            dir.join("node_modules/oidc-provider/package.json")
                .is_file()
        });
        let lock =
            modified(&dir.join("package-lock.json")).expect("interop/package-lock.json is missing");
        let manifest =
            modified(&dir.join("package.json")).expect("interop/package.json is missing");
        if installed.is_none_or(|at| at < lock || at < manifest) {
            let mut cmd = Command::new(npm());
            cmd.args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir);
            let (status, out) =
                run(&mut cmd, NPM_CI_TIMEOUT).unwrap_or_else(|e| panic!("npm ci: {e}"));
            assert!(
                status.success(),
                "`npm ci` in {} failed ({status}):\n{out}",
                dir.display()
            );
        }
    });
}

/// A running `interop/server.mjs`. Killed on drop; also exits by itself when
/// this process goes away (its stdin closes), so that the shared server of a
/// static never outlives the tests.
struct AuthServer {
    /// `http://127.0.0.1:PORT`, the issuer.
    issuer: String,
    port: u16,
    /// The PKCS#8 PEM private key of the `private_key_jwt` client
    /// `tokenguard-rs-jwt` (the `RS_KEY` line), new at every start.
    rs_key_pem: String,
    child: Child,
    _stdin: ChildStdin,
    /// Everything the server printed, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl AuthServer {
    /// Starts a server with newly generated keys on `port` (0: a free one).
    fn start(port: u16) -> Self {
        ensure_node();
        // A port just freed by a killed server may take a moment to be free.
        let deadline = Instant::now() + Duration::from_secs(10);
        // A start that hangs (seen once on a loaded CI machine, never
        // reproduced) gets one more try; its output is kept for the report.
        let mut hung = None;
        loop {
            match Self::try_start(port) {
                Ok(server) => return server,
                Err(log)
                    if port != 0 && log.contains("EADDRINUSE") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) if hung.is_none() && log.starts_with(NO_READY) => hung = Some(log),
                Err(log) => panic!(
                    "interop/server.mjs did not start:\n{log}{}",
                    hung.map(|h| format!("\n\nan earlier try:\n{h}"))
                        .unwrap_or_default()
                ),
            }
        }
    }

    fn try_start(port: u16) -> Result<Self, String> {
        let mut child = Command::new("node")
            .args([
                "server.mjs",
                "--exit-with-stdin",
                "--port",
                &port.to_string(),
            ])
            .current_dir(interop_dir())
            .env_remove("KEYS_FILE")
            .env_remove("PORT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\ncannot run node: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stdout_log = log.clone();
        std::thread::spawn(move || {
            // `RS_KEY` comes before `READY`.
            let mut rs_key = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(key) = line.strip_prefix("RS_KEY ") {
                    rs_key = STANDARD
                        .decode(key.trim())
                        .ok()
                        .and_then(|pem| String::from_utf8(pem).ok());
                }
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send((url.trim().to_owned(), rs_key.take()));
                }
                stdout_log.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let stderr_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                stderr_log.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take().unwrap();
        let dump = |child: &mut Child, why: String| {
            let _ = child.kill();
            let status = child.wait();
            // Let the readers collect the last lines.
            std::thread::sleep(Duration::from_millis(50));
            format!(
                "{why} ({status:?}); it printed:\n{}",
                log.lock().unwrap().join("\n")
            )
        };
        let (issuer, rs_key_pem) = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(ready) => ready,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(dump(
                    &mut child,
                    format!("{NO_READY} within {START_TIMEOUT:?}"),
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(dump(&mut child, "it exited before READY".into()));
            }
        };
        let actual = Url::parse(&issuer)
            .ok()
            .filter(|u| u.host_str() == Some("127.0.0.1"))
            .and_then(|u| u.port());
        let Some(actual) = actual else {
            return Err(dump(&mut child, format!("unexpected issuer {issuer:?}")));
        };
        let Some(rs_key_pem) = rs_key_pem else {
            return Err(dump(
                &mut child,
                "no valid `RS_KEY <base64 PEM>` line before READY".into(),
            ));
        };
        if port != 0 && actual != port {
            return Err(dump(
                &mut child,
                format!("listening on {actual}, not {port}"),
            ));
        }
        Ok(Self {
            issuer,
            port: actual,
            rs_key_pem,
            child,
            _stdin: stdin,
            log,
        })
    }

    /// Kills the server and waits until it is gone (its port is closed).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "interop/server.mjs ({}) printed:\n{}",
                self.issuer,
                self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
            );
        }
    }
}

/// The server shared by the tests that neither stop nor restart it.
async fn shared_server() -> &'static AuthServer {
    static SERVER: OnceLock<AuthServer> = OnceLock::new();
    blocking(|| SERVER.get_or_init(|| AuthServer::start(0))).await
}

/// Starts a server with new keys on `port` (0: a free one).
async fn start_server(port: u16) -> AuthServer {
    blocking(move || AuthServer::start(port)).await
}

/// Runs `f` off the runtime, so that its connections keep being served (a
/// real application does not block its runtime for seconds); its panics are
/// the caller's.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

// ---------------------------------------------------------------------------
// An OAuth client, over real HTTP.
// ---------------------------------------------------------------------------

/// A client for the server (one per test: reqwest clients belong to the
/// runtime they were first used on). Follows no redirects.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The server's endpoints, from its discovery document.
struct Endpoints {
    authorization: String,
    token: String,
    jwks: String,
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let res = http.get(url).send().await.unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn endpoints(http: &reqwest::Client, issuer: &str) -> Endpoints {
    let meta = get_json(http, &format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(meta["issuer"], issuer);
    let field = |name: &str| {
        meta[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery has no {name}: {meta}"))
            .to_owned()
    };
    Endpoints {
        authorization: field("authorization_endpoint"),
        token: field("token_endpoint"),
        jwks: field("jwks_uri"),
    }
}

/// The `kid`s the server publishes now, sorted.
async fn published_kids(http: &reqwest::Client, issuer: &str) -> Vec<String> {
    let jwks = get_json(http, &endpoints(http, issuer).await.jwks).await;
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// `application/x-www-form-urlencoded`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://form.invalid/").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// POSTs a form to the token endpoint (client_secret_basic); the JSON answer.
async fn token_request(
    http: &reqwest::Client,
    token_endpoint: &str,
    pairs: &[(&str, &str)],
) -> Value {
    let res = http
        .post(token_endpoint)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "token request {pairs:?}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// An access token for `resource` through the client credentials grant;
/// returns it with the scope the server granted.
async fn access_token(
    http: &reqwest::Client,
    issuer: &str,
    resource: &str,
    scope: &str,
) -> (String, String) {
    let token_endpoint = endpoints(http, issuer).await.token;
    let answer = token_request(
        http,
        &token_endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    (
        answer["access_token"].as_str().unwrap().to_owned(),
        answer["scope"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The cookies of a browser, for the login and consent pages.
#[derive(Default)]
struct CookieJar(HashMap<String, String>);

impl CookieJar {
    async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let cookies: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let req = if cookies.is_empty() {
            req
        } else {
            req.header(header::COOKIE, cookies.join("; "))
        };
        let res = req.send().await.unwrap();
        for set in res.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let attributes = attributes.to_ascii_lowercase();
            if value.is_empty() || attributes.contains("expires=thu, 01 jan 1970") {
                self.0.remove(name.trim());
            } else {
                self.0
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        res
    }
}

/// An ID token from a genuine authorization code flow: authorization request,
/// the development login and consent pages (as a browser would submit them),
/// the redirect with the code, and the code exchanged at the token endpoint.
async fn id_token(http: &reqwest::Client, issuer: &str) -> String {
    let endpoints = endpoints(http, issuer).await;
    let mut url = Url::parse(&endpoints.authorization).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("client_id", CLIENT_ID),
        ("response_type", "code"),
        ("scope", "openid"),
        ("redirect_uri", REDIRECT_URI),
        ("state", "interop-state"),
        ("nonce", "interop-nonce"),
    ]);
    let mut jar = CookieJar::default();
    let location = |res: &reqwest::Response, base: &Url| -> Url {
        let to = res
            .headers()
            .get(header::LOCATION)
            .unwrap_or_else(|| panic!("{base} answered {} without Location", res.status()));
        base.join(to.to_str().unwrap()).unwrap()
    };
    let mut prompts = Vec::new();
    let mut steps = 0;
    let code = loop {
        steps += 1;
        assert!(
            steps <= 12,
            "the authorization flow does not end (prompts {prompts:?})"
        );
        if url.as_str().starts_with(REDIRECT_URI) {
            let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
            assert_eq!(
                params.get("state").map(String::as_str),
                Some("interop-state"),
                "{url}"
            );
            // RFC 9207.
            assert_eq!(params.get("iss").map(String::as_str), Some(issuer), "{url}");
            break params
                .get("code")
                .unwrap_or_else(|| panic!("no code in {url}"))
                .clone();
        }
        let res = jar.send(http.get(url.clone())).await;
        if res.status().is_redirection() {
            url = location(&res, &url);
            continue;
        }
        let status = res.status();
        let page = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {url}: {page}");
        // A login or consent page: submit its form.
        let action = page
            .split_once("action=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(action, _)| action.replace("&amp;", "&"))
            .unwrap_or_else(|| panic!("no form at {url}: {page}"));
        let action = url.join(&action).unwrap();
        let body = if page.contains(r#"name="prompt" value="login""#) {
            prompts.push("login");
            form(&[
                ("prompt", "login"),
                ("login", "alice"),
                ("password", "wonderland"),
            ])
        } else if page.contains(r#"name="prompt" value="consent""#) {
            prompts.push("consent");
            form(&[("prompt", "consent")])
        } else {
            panic!("neither a login nor a consent page at {url}: {page}");
        };
        let res = jar
            .send(
                http.post(action.clone())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body),
            )
            .await;
        assert!(
            res.status().is_redirection(),
            "POST {action}: {}",
            res.status()
        );
        url = location(&res, &action);
    };
    assert_eq!(prompts, ["login", "consent"]);
    let answer = token_request(
        http,
        &endpoints.token,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
        ],
    )
    .await;
    answer["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token in {answer}"))
        .to_owned()
}

/// The decoded JOSE header and claims of a JWT (not verified).
fn decode(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut part =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (part(), part())
}

// ---------------------------------------------------------------------------
// The resource server.
// ---------------------------------------------------------------------------

/// A guard that knows only the issuer and the audiences of the four APIs.
fn guard_builder(issuer: &str) -> TokenGuardBuilder {
    APIS.iter()
        .fold(TokenGuard::builder().issuer(issuer), |b, (api, _)| {
            b.audience(*api)
        })
}

/// `GET /invoices` needs `read:invoices`, `POST /invoices` `write:invoices`.
fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route(
            "/invoices",
            get(|_: RequireScope<ReadInvoices>| async { "[]" })
                .post(|_: RequireScope<WriteInvoices>| async { "created" }),
        )
        .layer(guard.layer())
}

async fn call(app: &Router, method: &str, token: &str) -> Response {
    let req = Request::builder()
        .method(method)
        .uri("/invoices")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

fn challenge(res: &Response) -> Option<&str> {
    res.headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
}

async fn assert_ok(res: Response, body: &str) {
    assert_eq!(res.status(), StatusCode::OK, "{:?}", challenge(&res));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
}

fn assert_invalid_token(res: &Response, description: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(res),
        Some(
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
            )
            .as_str()
        )
    );
}

fn assert_refused(
    result: Result<impl std::fmt::Debug, tokenguard::AuthError>,
    reason: InvalidToken,
) {
    let err = result.expect_err("the token must be refused");
    assert_eq!(err.kind(), &AuthErrorKind::InvalidToken(reason));
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
}

fn sorted(mut kids: Vec<String>) -> Vec<String> {
    kids.sort();
    kids
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

/// A token of the server for `api`, signed with `alg`: accepted through
/// discovery, and its granted scopes enforced.
async fn accepted_and_scopes_enforced(api: &str, alg: &str) {
    let server = shared_server().await;
    let http = http_client();
    let guard = guard_builder(&server.issuer).build().unwrap();
    let app = app(&guard);

    // Read-only. A scope the resource does not offer is dropped by the server.
    let (read_only, granted) =
        access_token(&http, &server.issuer, api, "read:invoices admin").await;
    assert_eq!(granted, "read:invoices");
    let (header, _) = decode(&read_only);
    assert_eq!(header["alg"], alg, "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    let kid = header["kid"].as_str().expect("a kid").to_owned();

    let verified = guard.verify(&read_only).await.unwrap();
    let claims = verified.claims();
    assert_eq!(claims.iss.as_deref(), Some(server.issuer.as_str()));
    assert!(claims.aud.as_ref().unwrap().contains(api));
    assert_eq!(claims.aud.as_ref().unwrap().iter().count(), 1);
    assert_eq!(claims.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(verified.subject(), Some(CLIENT_ID));
    assert!(claims.jti.is_some());
    let scopes: Vec<&str> = verified.scopes().iter().collect();
    assert_eq!(scopes, ["read:invoices"]);

    // The keys came through discovery: the server's whole JWKS, this kid in it.
    let status = &guard.key_status()[0];
    assert_eq!(status.source, format!("{}/jwks", server.issuer));
    assert_eq!(
        sorted(status.kids.clone()),
        published_kids(&http, &server.issuer).await
    );
    assert!(status.kids.contains(&kid), "{kid} not in {:?}", status.kids);
    assert_eq!(status.keys_loaded, 4);

    assert_ok(call(&app, "GET", &read_only).await, "[]").await;
    let res = call(&app, "POST", &read_only).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="write:invoices""#
        )
    );

    // Read and write.
    let (read_write, granted) =
        access_token(&http, &server.issuer, api, "read:invoices write:invoices").await;
    assert_eq!(granted, "read:invoices write:invoices");
    assert_ok(call(&app, "GET", &read_write).await, "[]").await;
    assert_ok(call(&app, "POST", &read_write).await, "created").await;

    // Write only: the read route refuses it.
    let (write_only, _) = access_token(&http, &server.issuer, api, "write:invoices").await;
    let res = call(&app, "GET", &write_only).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        challenge(&res)
            .unwrap()
            .ends_with(r#"scope="read:invoices""#)
    );
}

#[tokio::test]
async fn rs256_tokens_are_accepted_and_their_scopes_enforced() {
    accepted_and_scopes_enforced(RS256_API, "RS256").await;
}

#[tokio::test]
async fn ps256_tokens_are_accepted_and_their_scopes_enforced() {
    accepted_and_scopes_enforced(PS256_API, "PS256").await;
}

#[tokio::test]
async fn es256_tokens_are_accepted_and_their_scopes_enforced() {
    accepted_and_scopes_enforced(ES256_API, "ES256").await;
}

#[tokio::test]
async fn eddsa_tokens_are_accepted_and_their_scopes_enforced() {
    accepted_and_scopes_enforced(EDDSA_API, "EdDSA").await;
}

#[tokio::test]
async fn ed25519_named_tokens_are_accepted_and_their_scopes_enforced() {
    accepted_and_scopes_enforced(ED25519_API, "Ed25519").await;
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused() {
    let server = shared_server().await;
    let http = http_client();
    let guard = guard_builder(&server.issuer).build().unwrap();
    let (token, granted) = access_token(
        &http,
        &server.issuer,
        OTHER_API,
        "read:invoices write:invoices",
    )
    .await;
    assert_eq!(granted, "read:invoices write:invoices");
    let (header, claims) = decode(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["aud"], OTHER_API);

    assert_refused(guard.verify(&token).await, InvalidToken::WrongAudience);
    let app = app(&guard);
    for method in ["GET", "POST"] {
        assert_invalid_token(
            &call(&app, method, &token).await,
            "The access token is not meant for this resource",
        );
    }

    // Control: only the audience was wrong.
    let other = TokenGuard::builder()
        .issuer(&server.issuer)
        .audience(OTHER_API)
        .build()
        .unwrap();
    other.verify(&token).await.unwrap();
}

#[tokio::test]
async fn an_id_token_is_refused_for_its_type() {
    let server = shared_server().await;
    let http = http_client();
    let token = id_token(&http, &server.issuer).await;
    let (header, claims) = decode(&token);
    // oidc-provider does not type ID tokens; their audience is the client.
    assert!(header.get("typ").is_none_or(|t| t == "JWT"), "{header}");
    assert_eq!(claims["aud"], CLIENT_ID, "{claims}");
    assert_eq!(claims["iss"], server.issuer.as_str());
    assert_eq!(claims["nonce"], "interop-nonce");
    assert_eq!(claims["sub"], "alice");

    let guard = guard_builder(&server.issuer).build().unwrap();
    assert_refused(guard.verify(&token).await, InvalidToken::WrongType);
    assert_invalid_token(
        &call(&app(&guard), "GET", &token).await,
        "The token is not an access token",
    );
}

#[tokio::test]
async fn an_id_token_is_refused_for_its_audience_when_untyped_tokens_are_allowed() {
    let server = shared_server().await;
    let http = http_client();
    let token = id_token(&http, &server.issuer).await;

    let guard = guard_builder(&server.issuer)
        .allow_untyped_tokens()
        .build()
        .unwrap();
    assert_refused(guard.verify(&token).await, InvalidToken::WrongAudience);
    assert_invalid_token(
        &call(&app(&guard), "GET", &token).await,
        "The access token is not meant for this resource",
    );

    // Control: the ID token is otherwise genuine (signature, issuer, times):
    // without `typ` checks, only the audience keeps it out. A guard whose
    // audience is the client ID would take it.
    let careless = TokenGuard::builder()
        .issuer(&server.issuer)
        .audience(CLIENT_ID)
        .allow_untyped_tokens()
        .build()
        .unwrap();
    careless.verify(&token).await.unwrap();
}

#[tokio::test]
async fn the_same_guard_follows_a_key_rotation() {
    let mut first = start_server(0).await;
    let issuer = first.issuer.clone();
    let http = http_client();
    let guard = guard_builder(&issuer)
        .refetch_cooldown(COOLDOWN)
        .build()
        .unwrap();
    let app = app(&guard);

    let (old_token, _) = access_token(&http, &issuer, RS256_API, "read:invoices").await;
    guard.verify(&old_token).await.unwrap();
    let old_kids = published_kids(&http, &issuer).await;
    assert_eq!(sorted(guard.key_status()[0].kids.clone()), old_kids);

    // Same issuer (same port), new keys.
    first.stop();
    let second = start_server(first.port).await;
    assert_eq!(second.issuer, issuer);
    let new_kids = published_kids(&http, &issuer).await;
    assert_eq!(new_kids.len(), 4);
    assert!(
        new_kids.iter().all(|kid| !old_kids.contains(kid)),
        "{old_kids:?} / {new_kids:?}"
    );

    tokio::time::sleep(COOLDOWN * 3).await;
    for (api, alg) in APIS {
        let (token, _) = access_token(&http, &issuer, api, "read:invoices").await;
        let verified = guard
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg} token after the rotation: {e:?}"));
        assert_eq!(verified.claims().iss.as_deref(), Some(issuer.as_str()));
        assert_ok(call(&app, "GET", &token).await, "[]").await;
    }
    let status = &guard.key_status()[0];
    assert_eq!(sorted(status.kids.clone()), new_kids);
    assert_eq!(status.last_error, None);
    assert_eq!(status.consecutive_failures, 0);

    // The old keys are gone from the issuer, so from the guard.
    assert_refused(guard.verify(&old_token).await, InvalidToken::UnknownKey);
}

#[tokio::test]
async fn cached_keys_keep_verifying_when_the_server_is_gone() {
    let mut server = start_server(0).await;
    let issuer = server.issuer.clone();
    let http = http_client();
    let guard = guard_builder(&issuer)
        .refetch_cooldown(COOLDOWN)
        .build()
        .unwrap();
    let app = app(&guard);

    let mut tokens = Vec::new();
    for (api, _) in APIS {
        let (token, _) = access_token(&http, &issuer, api, "read:invoices write:invoices").await;
        guard.verify(&token).await.unwrap();
        tokens.push(token);
    }
    let kids = published_kids(&http, &issuer).await;

    server.stop();
    tokio::time::sleep(COOLDOWN * 3).await;
    // A token naming a kid the guard does not know makes it try the issuer,
    // which is gone: the kid stays unknown, and the failure is recorded.
    let stranger = TestIssuer::with_issuer(&issuer)
        .token()
        .audience(RS256_API)
        .mint();
    assert_refused(guard.verify(&stranger).await, InvalidToken::UnknownKey);
    let status = &guard.key_status()[0];
    assert!(status.last_error.is_some(), "{status:?}");
    assert!(status.consecutive_failures >= 1, "{status:?}");
    assert_eq!(sorted(status.kids.clone()), kids);

    for token in &tokens {
        guard.verify(token).await.unwrap();
        assert_ok(call(&app, "GET", token).await, "[]").await;
        assert_ok(call(&app, "POST", token).await, "created").await;
    }
}

// A crate root: without `path`, `mod` would look for tests/it/dpop.rs,
// tests/it/introspection.rs and tests/it/mtls.rs.
#[path = "interop/dpop.rs"]
mod dpop;
#[path = "interop/introspection.rs"]
mod introspection;
#[path = "interop/mtls.rs"]
mod mtls;
