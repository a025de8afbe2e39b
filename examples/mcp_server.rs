//! An MCP server built with rmcp (the official Rust MCP SDK), served over
//! streamable HTTP at `/mcp` and protected by tokenguard.
//!
//! ```text
//! cargo run --example mcp_server --features rmcp,testing
//! ```
//!
//! Two tools: `list_invoices` needs `read:invoices`, `create_invoice` needs
//! `write:invoices`. Every HTTP request to `/mcp` passes the guard's layer
//! (no valid token: 401 with `resource_metadata`, where an MCP client starts
//! its authorization); `tools/list` shows each caller only the tools its
//! scopes allow; a `tools/call` its scopes do not allow is answered 403
//! `insufficient_scope` by `McpScopeLayer` before rmcp reads it; each tool
//! demands its scope again with `RequireScope` and reads the caller from
//! `Claims`. The RFC 9728 document is served, public,
//! at `/.well-known/oauth-protected-resource/mcp`.
//!
//! Without configuration it starts an embedded development issuer (keys
//! generated in-process, served with a discovery document on a loopback
//! port) and prints ready-to-paste tokens and commands. With
//! `ISSUER_URL=https://id.example.com` it trusts that issuer instead (keys
//! through discovery). `mcp-e2e/auth-server.mjs` (oidc-provider) is one to
//! try on loopback: `node mcp-e2e/client.mjs http://127.0.0.1:3000/mcp
//! --client-id … --client-secret … --issuer …` then does the whole OAuth
//! dance with the MCP TypeScript SDK (see `tests/it/rmcp.rs`).
//!
//! `PORT` sets the port (default 3000; the server listens on 127.0.0.1
//! only); `PUBLIC_URL` the URL clients call (default
//! `http://127.0.0.1:$PORT`): the resource is `$PUBLIC_URL/mcp`, and
//! `AUDIENCE` (the tokens' `aud`) defaults to it. `RUST_LOG` sets the log
//! filter (default `info,tokenguard=debug`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ListToolsResult, PaginatedRequestParams};
use rmcp::schemars::JsonSchema;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use tokenguard::testing::TestIssuerServer;
use tokenguard::{
    AccessTokenClaims, Claims, McpScopeLayer, ProtectedResource, RequireScope,
    StripCredentialsLayer, TokenGuard, ToolScopes, scope,
};

/// Which scopes each tool needs: what `tools/list` shows a caller, and the
/// resource's `scopes_supported`.
pub fn tool_scopes() -> ToolScopes {
    TOOLS.iter().fold(ToolScopes::new(), |s, (tool, scope)| {
        s.tool(*tool, [*scope])
    })
}

/// Which scope each tool needs.
const TOOLS: [(&str, &str); 2] = [
    ("list_invoices", "read:invoices"),
    ("create_invoice", "write:invoices"),
];

/// The same table as an HTTP-level policy: a `tools/call` the token's scopes
/// do not allow is answered 403 `insufficient_scope` before rmcp reads it.
pub fn mcp_policy() -> McpScopeLayer {
    TOOLS.iter().fold(McpScopeLayer::new(), |p, (tool, scope)| {
        p.tool(tool, [*scope])
    })
}

/// The resource's RFC 9728 description: `resource` is the URL clients call.
pub fn protected_resource(resource: &str) -> ProtectedResource {
    ProtectedResource::new(resource)
        .scopes_supported(tool_scopes().scopes().collect::<Vec<_>>())
        .resource_name("tokenguard invoices (MCP)")
}

#[derive(Clone, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct Invoice {
    id: u64,
    customer: String,
    amount_cents: u64,
    created_by: String,
}

#[derive(Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct InvoiceList {
    /// The caller (`sub` of the verified token).
    caller: String,
    invoices: Vec<Invoice>,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct NewInvoice {
    /// Who is billed.
    customer: String,
    /// The amount, in cents.
    amount_cents: u64,
}

type Db = Arc<Mutex<Vec<Invoice>>>;

/// The MCP server: one per session (rmcp's factory clones it).
#[derive(Clone)]
pub struct Invoices {
    db: Db,
    scopes: ToolScopes,
}

#[tool_router]
impl Invoices {
    #[tool(
        description = "List the invoices (needs the read:invoices scope).",
        annotations(read_only_hint = true)
    )]
    async fn list_invoices(
        &self,
        _: RequireScope<scope!("read:invoices")>,
        Claims(claims): Claims<AccessTokenClaims>,
    ) -> Json<InvoiceList> {
        Json(InvoiceList {
            caller: claims.sub.clone().unwrap_or_default(),
            invoices: self.db.lock().unwrap().clone(),
        })
    }

    #[tool(description = "Create an invoice (needs the write:invoices scope).")]
    async fn create_invoice(
        &self,
        _: RequireScope<scope!("write:invoices")>,
        Claims(claims): Claims<AccessTokenClaims>,
        Parameters(new): Parameters<NewInvoice>,
    ) -> Json<Invoice> {
        let mut db = self.db.lock().unwrap();
        let invoice = Invoice {
            id: db.len() as u64 + 1,
            customer: new.customer,
            amount_cents: new.amount_cents,
            created_by: claims.sub.clone().unwrap_or_default(),
        };
        db.push(invoice.clone());
        Json(invoice)
    }
}

#[tool_handler(
    name = "tokenguard-invoices",
    instructions = "Invoices. list_invoices needs read:invoices, create_invoice needs write:invoices."
)]
impl ServerHandler for Invoices {
    // Each caller sees only the tools its token's scopes allow.
    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(self
            .scopes
            .list_result(&context, Self::tool_router().list_all()))
    }
}

/// The whole app: the rmcp service at `/mcp` behind the guard, the metadata
/// document outside it. `allowed_hosts`: the `Host` values rmcp accepts
/// (DNS-rebinding protection).
pub fn app(guard: &TokenGuard, allowed_hosts: Vec<String>) -> Router {
    Router::new()
        .route_service("/mcp", mcp_service(allowed_hosts))
        // Inside the guard: it has used the token; tools never see it.
        .layer(StripCredentialsLayer::new())
        // Inside the guard too: it reads the verified token's scopes.
        .layer(mcp_policy())
        .layer(guard.layer())
        // Outside the guard: public.
        .merge(guard.metadata_router())
}

/// The rmcp streamable-HTTP service. `allowed_hosts`: the `Host` values rmcp
/// accepts (DNS-rebinding protection).
pub fn mcp_service(
    allowed_hosts: Vec<String>,
) -> StreamableHttpService<Invoices, LocalSessionManager> {
    let db = Db::default();
    let scopes = tool_scopes();
    StreamableHttpService::new(
        move || {
            Ok(Invoices {
                db: db.clone(),
                scopes: scopes.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts),
    )
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tokenguard=debug".into()),
        )
        .init();

    let port: u16 = match var("PORT") {
        Some(p) => p
            .parse()
            .unwrap_or_else(|_| fail(format!("PORT={p:?} is not a port number"))),
        None => 3000,
    };
    let public_url = var("PUBLIC_URL").unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let public_url = public_url.trim_end_matches('/').to_owned();
    let resource = format!("{public_url}/mcp");
    let audience = var("AUDIENCE").unwrap_or_else(|| resource.clone());
    let public_host = reqwest::Url::parse(&public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| fail(format!("PUBLIC_URL={public_url:?} is not a URL")));
    let mut allowed_hosts = vec![public_host, "127.0.0.1".into(), "localhost".into()];
    allowed_hosts.dedup();

    let (builder, dev_issuer) = match var("ISSUER_URL") {
        Some(issuer) => {
            println!("Trusting issuer {issuer} (keys through discovery) for audience {audience}.");
            (
                TokenGuard::builder().issuer(issuer).audience(&audience),
                None,
            )
        }
        None => {
            let dev = TestIssuerServer::start()
                .await
                .unwrap_or_else(|e| fail(format!("cannot start the development issuer: {e}")));
            (dev.guard_builder(&audience), Some(dev))
        }
    };
    let guard = builder
        .protected_resource(protected_resource(&resource))
        .build()
        .unwrap_or_else(|e| fail(e));
    if dev_issuer.is_some() {
        // Fail fast if discovery does not work.
        guard.warm_up().await.unwrap_or_else(|e| fail(e));
    }

    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| {
            fail(format!(
                "cannot listen on {addr}: {e} (set PORT to use another port)"
            ))
        });
    let metadata = guard.resource_metadata_url().unwrap_or_default().to_owned();

    if let Some(dev) = &dev_issuer {
        let issuer = dev.issuer();
        let hour = Duration::from_secs(3600);
        let mint = |sub: &str, scope: &str| {
            issuer
                .token()
                .audience(&audience)
                .subject(sub)
                .scope(scope)
                .expires_in(hour)
                .mint()
        };
        let read = mint("alice", "read:invoices");
        let write = mint("bob", "read:invoices write:invoices");
        println!(
            r#"
tokenguard MCP server: {resource} (rmcp, streamable HTTP), trusting an embedded
development issuer at {issuer_url}. Tokens below are valid for one hour:

export READ_TOKEN='{read}'
export WRITE_TOKEN='{write}'

curl -i {metadata}                       # the RFC 9728 document, public
curl -i -X POST {resource} -H 'content-type: application/json' \
     -H 'accept: application/json, text/event-stream' -d '{{}}'            # 401 + resource_metadata

With the MCP TypeScript SDK (cd mcp-e2e && npm ci first):

node mcp-e2e/client.mjs {resource} --token "$READ_TOKEN" list_invoices \
     'create_invoice={{"customer":"ACME","amount_cents":1200}}'           # lists one tool; create_invoice: insufficient_scope
node mcp-e2e/client.mjs {resource} --token "$WRITE_TOKEN" \
     'create_invoice={{"customer":"ACME","amount_cents":1200}}' list_invoices

Or any MCP client (e.g. the MCP Inspector) at {resource} with the header
"Authorization: Bearer $READ_TOKEN".
"#,
            issuer_url = dev.url()
        );
    } else {
        println!("Listening on {resource}; metadata at {metadata}.");
    }

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app(&guard, allowed_hosts))
        .with_graceful_shutdown(shutdown)
        .await
    {
        fail(e);
    }
}
