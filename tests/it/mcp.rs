//! `McpScopeLayer` through a real axum `Router`: operations named in the
//! JSON-RPC body and in the `Mcp-Method` / `Mcp-Name` headers (MCP
//! 2026-07-28), headers that disagree with the body, oversized and
//! unreadable bodies, batches, resource prefixes, and the body handed on
//! intact. (An rmcp server behind it, driven by the MCP TypeScript SDK, is in
//! `tests/it/rmcp.rs`.)

#![cfg(all(feature = "mcp", feature = "testing"))]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{any, post};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tokenguard::testing::TestIssuer;
use tokenguard::{McpScopeLayer, ScopeHierarchy};
use tower::ServiceExt;

const AUD: &str = "https://mcp.example.com/mcp";

fn policy() -> McpScopeLayer {
    McpScopeLayer::new()
        .tool("list_invoices", ["read:invoices"])
        .tool("create_invoice", ["write:invoices"])
        .resource("invoices://", ["read:invoices"])
        .resource("invoices://archive/", ["archive:read"])
        .prompt("summarize", ["read:invoices"])
        .method("completion/complete", ["read:invoices"])
}

struct App {
    issuer: TestIssuer,
    router: Router,
}

/// The MCP endpoint echoes the body it got, so that tests see it is intact.
fn app_with(layer: McpScopeLayer) -> App {
    let issuer = TestIssuer::new();
    let guard = issuer
        .guard_builder(AUD)
        .scope_hierarchy(
            ScopeHierarchy::new().implies("invoices:admin", ["read:invoices", "write:invoices"]),
        )
        .build()
        .unwrap();
    let router = Router::new()
        .route("/mcp", any(|body: Bytes| async move { body }))
        .route("/other", post(|| async { "other" }))
        .layer(layer)
        .layer(guard.layer());
    App { issuer, router }
}

impl App {
    fn token(&self, scope: &str) -> String {
        self.issuer.token().audience(AUD).scope(scope).mint()
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn post(
        &self,
        scope: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::post("/mcp")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token(scope)),
            )
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(body.into()).unwrap()).await
    }
}

fn call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"note": "é ✓"}}})
        .to_string()
}

fn read(uri: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": uri}})
        .to_string()
}

fn challenge(headers: &HeaderMap) -> &str {
    headers
        .get(header::WWW_AUTHENTICATE)
        .expect("a WWW-Authenticate header")
        .to_str()
        .unwrap()
}

#[track_caller]
fn assert_forbidden(answer: &(StatusCode, HeaderMap, String), scope: &str) {
    assert_eq!(answer.0, StatusCode::FORBIDDEN, "{}", answer.2);
    assert_eq!(
        challenge(&answer.1),
        format!(
            r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="{scope}""#
        )
    );
}

#[track_caller]
fn assert_bad_request(answer: &(StatusCode, HeaderMap, String), description: &str) {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.2);
    assert_eq!(
        challenge(&answer.1),
        format!(
            r#"Bearer realm="api", error="invalid_request", error_description="{description}""#
        )
    );
}

const MISMATCH: &str = "The Mcp-Method or Mcp-Name header does not match the request body";
const UNREADABLE: &str = "The request body is not a readable JSON-RPC message";

#[tokio::test]
async fn a_tool_call_from_the_body_is_allowed_or_refused_by_its_scopes() {
    let app = app_with(policy());
    let body = call("list_invoices");
    let ok = app.post("read:invoices", &[], body.clone()).await;
    assert_eq!(ok.0, StatusCode::OK);
    // Handed on byte for byte.
    assert_eq!(ok.2, body);

    assert_forbidden(
        &app.post("read:invoices", &[], call("create_invoice")).await,
        "write:invoices",
    );
    // The scope hierarchy of the guard applies.
    assert_eq!(
        app.post("invoices:admin", &[], call("create_invoice"))
            .await
            .0,
        StatusCode::OK
    );
    // Tools not named need only a token.
    assert_eq!(app.post("", &[], call("ping_tool")).await.0, StatusCode::OK);
    // Methods that name nothing pass.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string();
    assert_eq!(app.post("", &[], list).await.0, StatusCode::OK);
}

#[tokio::test]
async fn resources_prompts_and_methods() {
    let app = app_with(policy());
    assert_eq!(
        app.post("read:invoices", &[], read("invoices://2026/1"))
            .await
            .0,
        StatusCode::OK
    );
    // The longest prefix decides.
    assert_forbidden(
        &app.post("read:invoices", &[], read("invoices://archive/2019"))
            .await,
        "archive:read",
    );
    assert_eq!(
        app.post("", &[], read("weather://today")).await.0,
        StatusCode::OK
    );

    let prompt = json!({"jsonrpc": "2.0", "id": 4, "method": "prompts/get", "params": {"name": "summarize"}}).to_string();
    assert_forbidden(
        &app.post("write:invoices", &[], prompt.clone()).await,
        "read:invoices",
    );
    assert_eq!(
        app.post("read:invoices", &[], prompt).await.0,
        StatusCode::OK
    );

    let complete =
        json!({"jsonrpc": "2.0", "id": 5, "method": "completion/complete", "params": {}})
            .to_string();
    assert_forbidden(&app.post("", &[], complete).await, "read:invoices");
}

#[tokio::test]
async fn unlisted_operations_can_need_a_scope_and_refusals_name_everything_needed() {
    let app = app_with(
        policy()
            .unlisted(["mcp:use"])
            .method("tools/call", ["mcp:tools"]),
    );
    assert_forbidden(
        &app.post("read:invoices", &[], call("ping_tool")).await,
        "mcp:tools mcp:use",
    );
    // Holding one of two is not enough, and the challenge names both.
    assert_forbidden(
        &app.post("mcp:tools", &[], call("create_invoice")).await,
        "mcp:tools write:invoices",
    );
    assert_eq!(
        app.post("mcp:tools write:invoices", &[], call("create_invoice"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_batch_needs_the_scopes_of_every_message() {
    let app = app_with(policy());
    let batch = format!(
        "[{},{}]",
        call("list_invoices"),
        read("invoices://archive/1")
    );
    assert_forbidden(
        &app.post("read:invoices", &[], batch.clone()).await,
        "read:invoices archive:read",
    );
    let ok = app
        .post("read:invoices archive:read", &[], batch.clone())
        .await;
    assert_eq!((ok.0, ok.2), (StatusCode::OK, batch.clone()));
    // A batch mirrors no single message: it cannot carry the headers.
    assert_bad_request(
        &app.post(
            "read:invoices archive:read",
            &[("mcp-method", "tools/call")],
            batch,
        )
        .await,
        MISMATCH,
    );
}

#[tokio::test]
async fn headers_must_agree_with_the_body() {
    let app = app_with(policy());
    let agree = [("mcp-method", "tools/call"), ("mcp-name", "list_invoices")];
    assert_eq!(
        app.post("read:invoices", &agree, call("list_invoices"))
            .await
            .0,
        StatusCode::OK
    );
    // The header names an allowed tool, the body calls another.
    assert_bad_request(
        &app.post("read:invoices", &agree, call("create_invoice"))
            .await,
        MISMATCH,
    );
    assert_bad_request(
        &app.post(
            "read:invoices",
            &[("mcp-method", "tools/list")],
            call("list_invoices"),
        )
        .await,
        MISMATCH,
    );
    // Two headers, or a name where the method names nothing.
    assert_bad_request(
        &app.post(
            "read:invoices",
            &[("mcp-name", "list_invoices"), ("mcp-name", "list_invoices")],
            call("list_invoices"),
        )
        .await,
        MISMATCH,
    );
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string();
    assert_bad_request(&app.post("", &[("mcp-name", "x")], list).await, MISMATCH);
    // SEP-2243's base64 form of a name that is not plain ASCII.
    let body = call("café");
    let encoded = [
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?Y2Fmw6k=?="),
    ];
    assert_eq!(app.post("", &encoded, body.clone()).await.0, StatusCode::OK);
    let wrong = [
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?Y2FmZQ==?="),
    ];
    assert_bad_request(&app.post("", &wrong, body).await, MISMATCH);
}

#[tokio::test]
async fn trusted_headers_decide_without_the_body() {
    let app = app_with(policy().trust_headers());
    let create = [("mcp-method", "tools/call"), ("mcp-name", "create_invoice")];
    // Not read, so not judged: the MCP server behind must check the match.
    let ok = app.post("write:invoices", &create, "not json").await;
    assert_eq!((ok.0, ok.2.as_str()), (StatusCode::OK, "not json"));
    assert_forbidden(
        &app.post("read:invoices", &create, "not json").await,
        "write:invoices",
    );
    // Without `Mcp-Name` on a name-bearing method, the body decides.
    assert_forbidden(
        &app.post(
            "read:invoices",
            &[("mcp-method", "tools/call")],
            call("create_invoice"),
        )
        .await,
        "write:invoices",
    );
    assert_bad_request(
        &app.post("read:invoices", &[("mcp-method", "tools/call")], "not json")
            .await,
        UNREADABLE,
    );
    // Without headers, the body as always.
    assert_forbidden(
        &app.post("read:invoices", &[], call("create_invoice")).await,
        "write:invoices",
    );
}

#[tokio::test]
async fn unreadable_and_oversized_bodies() {
    let app = app_with(policy().max_body(1024));
    for bad in [
        "",
        "not json",
        "42",
        "[1]",
        r#"{"method":"tools/call"}"#,
        r#"{"method":"tools/call","params":{"name":7}}"#,
        r#"{"method":"resources/read","params":{"name":"invoices://1"}}"#,
    ] {
        assert_bad_request(&app.post("read:invoices", &[], bad).await, UNREADABLE);
    }
    // A response to a server request has no method: nothing to require.
    let response = json!({"jsonrpc": "2.0", "id": 9, "result": {}}).to_string();
    assert_eq!(app.post("", &[], response).await.0, StatusCode::OK);

    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_invoices", "arguments": {"pad": "x".repeat(2000)}}}).to_string();
    // Announced by Content-Length.
    let announced = app
        .post(
            "read:invoices",
            &[("content-length", &big.len().to_string())],
            big.clone(),
        )
        .await;
    assert_eq!(announced.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed, without a length.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = app
        .post(
            "read:invoices",
            &[],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(streamed.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Within the limit, a streamed body arrives whole.
    let small = call("list_invoices");
    let chunks: Vec<Result<Bytes, std::io::Error>> = small
        .as_bytes()
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let ok = app
        .post(
            "read:invoices",
            &[],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!((ok.0, ok.2), (StatusCode::OK, small));
}

#[tokio::test]
async fn get_and_delete_pass_and_the_guard_still_decides() {
    let app = app_with(policy().unlisted(["mcp:use"]));
    let token = app.token("");
    for method in ["GET", "DELETE"] {
        let req = Request::builder()
            .method(method)
            .uri("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.send(req).await.0, StatusCode::OK, "{method}");
    }
    // No token: the guard's 401, before the policy.
    let req = Request::post("/mcp")
        .body(Body::from(call("list_invoices")))
        .unwrap();
    let (status, headers, _) = app.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&headers), r#"Bearer realm="api""#);
    // Other routes behind the same layer are judged like /mcp: every POST is
    // read as an MCP message.
    let req = Request::post("/other")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(call("list_invoices")))
        .unwrap();
    assert_forbidden(&app.send(req).await, "read:invoices");
}

#[tokio::test]
async fn under_an_optional_guard_a_scoped_operation_needs_a_token() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let router = Router::new()
        .route("/mcp", post(|body: Bytes| async move { body }))
        .layer(policy())
        .layer(guard.optional_layer());
    let send = |body: String| {
        router
            .clone()
            .oneshot(Request::post("/mcp").body(Body::from(body)).unwrap())
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}).to_string();
    assert_eq!(send(init).await.unwrap().status(), StatusCode::OK);
    let res = send(call("list_invoices")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
}

#[test]
fn scopes_lists_every_scope_once() {
    let policy = policy();
    let scopes: Vec<&str> = policy.scopes().collect();
    assert_eq!(scopes, ["archive:read", "read:invoices", "write:invoices"]);
}
