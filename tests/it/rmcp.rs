//! rmcp (the official Rust MCP SDK) behind the guard, over real HTTP on
//! loopback: the server of `examples/mcp_server.rs` (its code, included
//! below) on the embedded development issuer, driven
//!
//! - by hand, with JSON-RPC over streamable HTTP (reqwest): `initialize`,
//!   `notifications/initialized`, `tools/list`, `tools/call`, with the
//!   `Mcp-Session-Id` the server hands out;
//! - by the official MCP TypeScript SDK client (`@modelcontextprotocol/sdk`,
//!   pinned in `mcp-e2e/package-lock.json`) through `mcp-e2e/client.mjs`:
//!   with a token in its `Authorization` header, and with the SDK's own
//!   OAuth support against a real authorization server (panva's
//!   `oidc-provider`, `mcp-e2e/auth-server.mjs`): 401 → `resource_metadata`
//!   → RFC 9728 document → authorization server metadata → a client
//!   credentials token for the resource → the MCP session.
//!
//! The Node tests need Node.js >= 20 and npm on `PATH`; it installs the
//! pinned packages (`npm ci` in `mcp-e2e/`) when `node_modules` is missing or
//! older than the lock file, and fails (never skips) without them.

#![cfg(all(feature = "rmcp", feature = "testing"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use ::rmcp::handler::server::tool::Extension;
use ::rmcp::{ServerHandler, tool, tool_handler, tool_router};
use axum::Router;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};
use tokenguard::testing::{TestIssuer, TestIssuerServer};
use tokenguard::{StripCredentialsLayer, Token, TokenGuard};

/// The example's server, compiled here as a module: the tests check the
/// code people copy.
#[allow(dead_code)]
#[path = "../../examples/mcp_server.rs"]
mod mcp_server;

const PROTOCOL: &str = "2025-06-18";

/// A running example server on a free loopback port.
struct Server {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// `{base}/mcp`: the resource, and the tokens' audience.
    resource: String,
    /// The development issuer, if the guard trusts it.
    dev: Option<TestIssuerServer>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// On the embedded development issuer.
    async fn start() -> Self {
        let dev = TestIssuerServer::start().await.unwrap();
        Self::start_with(Some(dev), |dev, resource| {
            dev.unwrap().guard_builder(resource)
        })
        .await
    }

    /// Trusting the issuer at `issuer` (keys through discovery).
    async fn start_trusting(issuer: &str) -> Self {
        Self::start_with(None, |_, resource| {
            TokenGuard::builder().issuer(issuer).audience(resource)
        })
        .await
    }

    async fn start_with(
        dev: Option<TestIssuerServer>,
        builder: impl FnOnce(Option<&TestIssuerServer>, &str) -> tokenguard::TokenGuardBuilder,
    ) -> Self {
        Self::start_app(dev, builder, |guard| {
            mcp_server::app(guard, vec!["127.0.0.1".into()])
        })
        .await
    }

    /// On the embedded development issuer, serving `app(guard)`.
    async fn start_app(
        dev: Option<TestIssuerServer>,
        builder: impl FnOnce(Option<&TestIssuerServer>, &str) -> tokenguard::TokenGuardBuilder,
        app: impl FnOnce(&TokenGuard) -> Router,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let resource = format!("{base}/mcp");
        let guard = builder(dev.as_ref(), &resource)
            .protected_resource(mcp_server::protected_resource(&resource))
            .build()
            .unwrap();
        let app = app(&guard);
        Self::serve(listener, app, base, resource, dev)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        app: Router,
        base: String,
        resource: String,
        dev: Option<TestIssuerServer>,
    ) -> Self {
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            resource,
            dev,
            task,
        }
    }

    fn token(&self, sub: &str, scope: &str) -> String {
        self.issuer()
            .token()
            .audience(&self.resource)
            .subject(sub)
            .scope(scope)
            .mint()
    }

    fn issuer(&self) -> TestIssuer {
        self.dev.as_ref().expect("a development issuer").issuer()
    }

    fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.base)
    }
}

/// One HTTP exchange of the streamable-HTTP transport.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    /// The JSON-RPC message answering the request (from a JSON body or the
    /// event stream), if any.
    message: Option<Value>,
    /// The raw body read (up to the answer).
    body: String,
}

/// A streamable-HTTP MCP client by hand: one session, one token.
struct Session {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    id: Option<String>,
    next: u64,
}

impl Session {
    fn new(url: &str, token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: token.map(str::to_owned),
            id: None,
            next: 1,
        }
    }

    async fn post(&self, message: Value) -> Reply {
        let mut req = self
            .http
            .post(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(message.to_string());
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(id) = &self.id {
            req = req
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", PROTOCOL);
        }
        let mut res = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .expect("no answer within 10 s")
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let sse = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let id = message.get("id").cloned();
        let mut body = String::new();
        let mut answer = None;
        // Read until the answer: an event stream may stay open after it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while answer.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, res.chunk())
                .await
                .unwrap_or_else(|_| panic!("no complete answer within 10 s; read: {body}"))
                .unwrap();
            let Some(chunk) = chunk else { break };
            body.push_str(std::str::from_utf8(&chunk).unwrap());
            if sse {
                answer = body
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                    .find(|m| id.is_some() && m.get("id") == id.as_ref());
            }
        }
        if !sse && !body.is_empty() {
            answer = serde_json::from_str(&body).ok();
        }
        Reply {
            status,
            headers,
            message: answer,
            body,
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Reply {
        let id = self.next;
        self.next += 1;
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    /// `initialize` then `notifications/initialized`; keeps the session id.
    /// The `initialize` result.
    async fn open(&mut self) -> Value {
        let reply = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "tokenguard-tests", "version": "0"}
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let result = reply.message.expect("an initialize result")["result"].clone();
        assert_eq!(result["protocolVersion"], PROTOCOL, "{}", reply.body);
        self.id = Some(reply.headers["mcp-session-id"].to_str().unwrap().to_owned());
        let notified = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(notified.status, StatusCode::ACCEPTED, "{}", notified.body);
        result
    }

    async fn tool_names(&mut self) -> Vec<String> {
        let reply = self.request("tools/list", json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let tools = reply.message.expect("a tools/list answer")["result"]["tools"].clone();
        tools
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {}", reply.body))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The whole JSON-RPC answer to `tools/call`.
    async fn call(&mut self, name: &str, arguments: Value) -> Value {
        let reply = self.call_reply(name, arguments).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.message.expect("a tools/call answer")
    }

    /// The HTTP exchange of a `tools/call`.
    async fn call_reply(&mut self, name: &str, arguments: Value) -> Reply {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }
}

fn challenge(headers: &HeaderMap) -> String {
    headers
        .get(header::WWW_AUTHENTICATE)
        .expect("a WWW-Authenticate header")
        .to_str()
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------
// By hand, over HTTP.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn no_token_is_401_with_resource_metadata_and_the_document_is_public() {
    let server = Server::start().await;
    let mut session = Session::new(&server.resource, None);
    let reply = session
        .request(
            "initialize",
            json!({"protocolVersion": PROTOCOL, "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.get("mcp-session-id").is_none());
    assert_eq!(
        challenge(&reply.headers),
        format!(
            r#"Bearer realm="api", resource_metadata="{}""#,
            server.metadata_url()
        )
    );

    let res = reqwest::get(server.metadata_url()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let document: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(document["resource"], server.resource);
    assert_eq!(
        document["authorization_servers"],
        json!([server.dev.as_ref().unwrap().url()])
    );
    assert_eq!(
        document["scopes_supported"],
        json!(["read:invoices", "write:invoices"])
    );
    assert_eq!(document["bearer_methods_supported"], json!(["header"]));
}

#[tokio::test]
async fn an_invalid_token_is_401_before_rmcp_reads_the_request() {
    let server = Server::start().await;
    let expired = server
        .issuer()
        .token()
        .audience(&server.resource)
        .scope("read:invoices")
        .expired()
        .mint();
    let wrong_audience = server
        .issuer()
        .token()
        .audience("https://other.example.com/mcp")
        .scope("read:invoices")
        .mint();
    for token in [expired.as_str(), wrong_audience.as_str(), "garbage"] {
        let mut session = Session::new(&server.resource, Some(token));
        let reply = session.request("tools/list", json!({})).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        let challenge = challenge(&reply.headers);
        assert!(
            challenge.contains(r#"error="invalid_token""#)
                && challenge.contains(&server.metadata_url()),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn a_read_only_token_sees_and_calls_only_list_invoices() {
    let server = Server::start().await;
    let token = server.token("alice", "read:invoices");
    let mut session = Session::new(&server.resource, Some(&token));
    let info = session.open().await;
    assert_eq!(info["serverInfo"]["name"], "tokenguard-invoices");

    assert_eq!(session.tool_names().await, ["list_invoices"]);

    let listed = session.call("list_invoices", json!({})).await;
    let result = &listed["result"];
    assert_eq!(result["isError"], false, "{listed}");
    assert_eq!(result["structuredContent"]["caller"], "alice", "{listed}");
    assert_eq!(result["structuredContent"]["invoices"], json!([]));

    // McpScopeLayer answers before rmcp reads the call.
    let denied = session
        .call_reply(
            "create_invoice",
            json!({"customer": "ACME", "amount_cents": 1200}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert_eq!(denied.body, "");
    assert_eq!(
        denied.headers[header::WWW_AUTHENTICATE],
        format!(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="write:invoices", resource_metadata="{}""#,
            server.metadata_url()
        )
    );

    // Nothing was created.
    let listed = session.call("list_invoices", json!({})).await;
    assert_eq!(listed["result"]["structuredContent"]["invoices"], json!([]));
}

/// Without `McpScopeLayer`, the tool's own `RequireScope` refuses: a
/// JSON-RPC error carrying the challenge.
#[tokio::test]
async fn without_the_policy_layer_the_tool_extractor_refuses() {
    let dev = TestIssuerServer::start().await.unwrap();
    let server = Server::start_app(
        Some(dev),
        |dev, resource| dev.unwrap().guard_builder(resource),
        |guard| {
            Router::new()
                .route_service("/mcp", mcp_server::mcp_service(vec!["127.0.0.1".into()]))
                .layer(guard.layer())
                .merge(guard.metadata_router())
        },
    )
    .await;
    let token = server.token("alice", "read:invoices");
    let mut session = Session::new(&server.resource, Some(&token));
    session.open().await;
    let denied = session
        .call(
            "create_invoice",
            json!({"customer": "ACME", "amount_cents": 1200}),
        )
        .await;
    let error = &denied["error"];
    assert_eq!(error["code"], -32600, "{denied}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("insufficient_scope") && message.contains("write:invoices"),
        "{message}"
    );
    assert_eq!(error["data"]["error"], "insufficient_scope");
    assert_eq!(error["data"]["scope"], "write:invoices");
    assert_eq!(error["data"]["status"], 403);
    assert_eq!(
        error["data"]["www_authenticate"],
        format!(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="write:invoices", resource_metadata="{}""#,
            server.metadata_url()
        )
    );

    // Nothing was created.
    let listed = session.call("list_invoices", json!({})).await;
    assert_eq!(listed["result"]["structuredContent"]["invoices"], json!([]));
}

#[tokio::test]
async fn a_read_write_token_sees_both_tools_and_creates_as_its_subject() {
    let server = Server::start().await;
    let token = server.token("bob", "read:invoices write:invoices");
    let mut session = Session::new(&server.resource, Some(&token));
    session.open().await;
    assert_eq!(
        session.tool_names().await,
        ["create_invoice", "list_invoices"]
    );
    let created = session
        .call(
            "create_invoice",
            json!({"customer": "ACME", "amount_cents": 1200}),
        )
        .await;
    assert_eq!(
        created["result"]["structuredContent"],
        json!({"id": 1, "customer": "ACME", "amount_cents": 1200, "created_by": "bob"}),
        "{created}"
    );
    let listed = session.call("list_invoices", json!({})).await;
    assert_eq!(listed["result"]["structuredContent"]["caller"], "bob");
    assert_eq!(
        listed["result"]["structuredContent"]["invoices"][0]["created_by"],
        "bob"
    );

    // A write-only token sees only create_invoice, in another session.
    let token = server.token("carol", "write:invoices");
    let mut other = Session::new(&server.resource, Some(&token));
    other.open().await;
    assert_eq!(other.tool_names().await, ["create_invoice"]);
    let denied = other.call_reply("list_invoices", json!({})).await;
    assert_forbidden(&denied, "read:invoices");
}

/// An HTTP 403 `insufficient_scope` challenge naming `scope`.
fn assert_forbidden(reply: &Reply, scope: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let challenge = challenge(&reply.headers);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(&format!(r#"scope="{scope}""#)),
        "{challenge}"
    );
}

#[tokio::test]
async fn each_request_is_judged_by_its_own_token_not_the_sessions() {
    let server = Server::start().await;
    let write = server.token("bob", "read:invoices write:invoices");
    let mut session = Session::new(&server.resource, Some(&write));
    session.open().await;
    // The same session, now with a read-only token.
    session.token = Some(server.token("alice", "read:invoices"));
    assert_eq!(session.tool_names().await, ["list_invoices"]);
    let listed = session.call("list_invoices", json!({})).await;
    assert_eq!(listed["result"]["structuredContent"]["caller"], "alice");
    let denied = session
        .call_reply(
            "create_invoice",
            json!({"customer": "ACME", "amount_cents": 1}),
        )
        .await;
    assert_forbidden(&denied, "write:invoices");
    // And without a token, the session is of no use.
    session.token = None;
    let reply = session.request("tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

// A server whose tool reports what it can see of the request.
#[derive(Clone)]
struct Probe;

#[tool_router]
impl Probe {
    #[tool(description = "What the tool sees.")]
    async fn whoami(
        &self,
        token: Token,
        Extension(parts): Extension<http::request::Parts>,
    ) -> String {
        json!({
            "sub": token.subject(),
            "scopes": token.scopes().iter().collect::<Vec<_>>(),
            "headers": parts.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

#[tool_handler]
impl ServerHandler for Probe {}

async fn probe_server(strip: bool) -> Server {
    use ::rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use ::rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let dev = TestIssuerServer::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let resource = format!("{base}/mcp");
    let guard: TokenGuard = dev.guard_builder(&resource).build().unwrap();
    let mcp = StreamableHttpService::new(
        || Ok(Probe),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = Router::new().route_service("/mcp", mcp);
    let router = if strip {
        router.layer(StripCredentialsLayer::new())
    } else {
        router
    };
    Server::serve(
        listener,
        router.layer(guard.layer()),
        base,
        resource,
        Some(dev),
    )
}

async fn whoami(server: &Server) -> Value {
    let token = server.token("dave", "a b");
    let mut session = Session::new(&server.resource, Some(&token));
    session.open().await;
    let answer = session.call("whoami", json!({})).await;
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn token_gives_a_tool_the_verified_claims_and_strip_credentials_hides_the_token() {
    let stripped = whoami(&probe_server(true).await).await;
    assert_eq!(stripped["sub"], "dave");
    assert_eq!(stripped["scopes"], json!(["a", "b"]));
    let headers = stripped["headers"].as_array().unwrap();
    assert!(!headers.contains(&json!("authorization")), "{stripped}");
    assert!(headers.contains(&json!("mcp-session-id")), "{stripped}");

    // Without the layer rmcp hands every tool the Authorization header:
    // what StripCredentialsLayer is for.
    let raw = whoami(&probe_server(false).await).await;
    assert!(
        raw["headers"]
            .as_array()
            .unwrap()
            .contains(&json!("authorization")),
        "{raw}"
    );
}

// ---------------------------------------------------------------------------
// The official MCP TypeScript SDK as the client.
// ---------------------------------------------------------------------------

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-e2e")
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

const INSTALL_NODE: &str = "the MCP end-to-end test (tests/it/rmcp.rs) runs the official MCP \
     TypeScript SDK client with Node.js: install Node.js >= 20 and npm (https://nodejs.org/) \
     and make sure `node` and `npm` are on PATH";

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs `cmd` to completion (output captured); panics with `INSTALL_NODE`
/// when it cannot be started.
fn run(cmd: &mut Command) -> (std::process::ExitStatus, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\ncannot run {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// Checks for Node.js and npm and installs the pinned packages when
/// `node_modules` is missing or older than the lock file. Panics (never
/// skips) when something is missing.
fn ensure_node() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let (status, version) = run(Command::new("node").arg("--version"));
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
        let (status, out) = run(Command::new(npm()).arg("--version"));
        assert!(
            status.success(),
            "{INSTALL_NODE}; `npm --version` failed:\n{out}"
        );
        let dir = e2e_dir();
        let installed = modified(&dir.join("node_modules/.package-lock.json")).filter(|_| {
            ["@modelcontextprotocol/sdk", "oidc-provider"]
                .iter()
                .all(|p| {
                    dir.join("node_modules")
                        .join(p)
                        .join("package.json")
                        .is_file()
                })
        });
        let lock =
            modified(&dir.join("package-lock.json")).expect("mcp-e2e/package-lock.json is missing");
        let manifest =
            modified(&dir.join("package.json")).expect("mcp-e2e/package.json is missing");
        if installed.is_none_or(|at| at < lock || at < manifest) {
            let (status, out) = run(Command::new(npm())
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir));
            assert!(
                status.success(),
                "`npm ci` in {} failed ({status}):\n{out}",
                dir.display()
            );
        }
    });
}

/// Runs `mcp-e2e/client.mjs url args…`; its one line of JSON.
async fn ts_client(url: &str, args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("client.mjs")
        .arg(url)
        .args(args)
        .current_dir(e2e_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("mcp-e2e/client.mjs did not finish within 60 s")
        .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\ncannot run node: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mcp-e2e/client.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("mcp-e2e/client.mjs printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

#[test]
fn the_typescript_sdk_client_lists_and_calls_only_what_its_scopes_allow() {
    ensure_node();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let server = Server::start().await;
            let create = r#"create_invoice={"customer":"ACME","amount_cents":1200}"#;

            // No token: the SDK's connection fails on the 401.
            let out = ts_client(&server.resource, &[]).await;
            assert_eq!(out["connected"], false, "{out}");
            assert_eq!(out["error"]["code"], 401, "{out}");

            // Read-only: one tool listed, it works, the other is refused.
            let read = server.token("alice", "read:invoices");
            let out = ts_client(
                &server.resource,
                &["--token", &read, "list_invoices", create],
            )
            .await;
            assert_eq!(out["connected"], true, "{out}");
            assert_eq!(out["server"], "tokenguard-invoices");
            assert_eq!(out["tools"], json!(["list_invoices"]), "{out}");
            let calls = out["calls"].as_array().unwrap();
            assert_eq!(calls[0]["name"], "list_invoices");
            assert_eq!(
                calls[0]["result"]["structuredContent"]["caller"], "alice",
                "{out}"
            );
            assert_eq!(calls[1]["name"], "create_invoice");
            // The HTTP 403 of McpScopeLayer: with a fixed token, the SDK
            // cannot ask for more scope and reports the status.
            let error = &calls[1]["error"];
            assert_eq!(error["code"], 403, "{out}");

            // Read-write: both listed, creates as bob, then lists it.
            let write = server.token("bob", "read:invoices write:invoices");
            let out = ts_client(
                &server.resource,
                &["--token", &write, create, "list_invoices"],
            )
            .await;
            assert_eq!(
                out["tools"],
                json!(["create_invoice", "list_invoices"]),
                "{out}"
            );
            let calls = out["calls"].as_array().unwrap();
            assert_eq!(
                calls[0]["result"]["structuredContent"]["created_by"], "bob",
                "{out}"
            );
            let invoices = &calls[1]["result"]["structuredContent"]["invoices"];
            assert_eq!(invoices[0]["customer"], "ACME", "{out}");
        });
}

/// What `mcp-e2e/auth-server.mjs` configures.
const AS_CLIENT_ID: &str = "mcp-e2e-client";
const AS_CLIENT_SECRET: &str = "mcp-e2e-client-secret-0123456789abcdef";

/// A running `mcp-e2e/auth-server.mjs` (oidc-provider). Killed on drop; also
/// exits by itself when this process goes away (its stdin closes).
struct AuthServer {
    issuer: String,
    child: std::process::Child,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AuthServer {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read};
        let mut child = Command::new("node")
            .args(["auth-server.mjs", "--exit-with-stdin"])
            .current_dir(e2e_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL_NODE}.\ncannot run node: {e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stderr.read_to_string(&mut out);
            out
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(issuer) => Self { issuer, child },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mcp-e2e/auth-server.mjs did not print READY ({e}):\n{}",
                    log.join().unwrap_or_default()
                );
            }
        }
    }
}

#[test]
fn the_typescript_sdk_does_the_whole_oauth_dance_against_oidc_provider() {
    ensure_node();
    let auth = AuthServer::start();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let server = Server::start_trusting(&auth.issuer).await;
            let create = r#"create_invoice={"customer":"ACME","amount_cents":1200}"#;
            let oauth = |scope: &'static str| {
                [
                    "--client-id",
                    AS_CLIENT_ID,
                    "--client-secret",
                    AS_CLIENT_SECRET,
                    "--issuer",
                    &auth.issuer,
                    "--scope",
                    scope,
                ]
            };

            // 401 → resource_metadata → RFC 9728 document → oidc-provider's
            // metadata → a client credentials token for the resource → again.
            let mut args = oauth("read:invoices").to_vec();
            args.extend(["list_invoices", create]);
            let out = ts_client(&server.resource, &args).await;
            assert_eq!(out["connected"], true, "{out}");
            assert_eq!(out["oauth"]["scope"], "read:invoices", "{out}");
            assert_eq!(out["tools"], json!(["list_invoices"]), "{out}");
            let calls = out["calls"].as_array().unwrap();
            // A client credentials token's subject is the client.
            assert_eq!(
                calls[0]["result"]["structuredContent"]["caller"], AS_CLIENT_ID,
                "{out}"
            );
            // create_invoice: the HTTP 403 of McpScopeLayer. The SDK reads it
            // as `insufficient_scope` (its only path to this message): it
            // authorizes again and retries once. Its client-credentials
            // provider asks for its configured scope, not the challenge's
            // (SDK 1.32), so the new token is read-only too and the retry is
            // refused the same way.
            let error = &calls[1]["error"];
            assert_eq!(error["code"], 403, "{out}");
            assert!(
                error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("403 after trying upscoping")),
                "{out}"
            );
            assert_eq!(out["oauth_after"]["scope"], "read:invoices", "{out}");

            let mut args = oauth("read:invoices write:invoices").to_vec();
            args.extend([create]);
            let out = ts_client(&server.resource, &args).await;
            assert_eq!(
                out["tools"],
                json!(["create_invoice", "list_invoices"]),
                "{out}"
            );
            assert_eq!(
                out["calls"][0]["result"]["structuredContent"]["created_by"], AS_CLIENT_ID,
                "{out}"
            );
        });
}
