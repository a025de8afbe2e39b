//! MCP servers built with [rmcp](https://docs.rs/rmcp), the official Rust MCP
//! SDK (feature `rmcp`): [`Claims<C>`](crate::Claims), [`Token`](crate::Token)
//! and [`RequireScope<S>`](crate::RequireScope) as `#[tool]` arguments,
//! [`ToolScopes`] to show each caller only the tools its scopes allow, and
//! [`StripCredentialsLayer`] so that no tool can read the raw token.
//!
//! Serve the rmcp server with its streamable-HTTP transport
//! (`StreamableHttpService`) behind the guard's layer. For every HTTP request
//! the layer verifies the token and stores the `Arc<AccessToken>` in the
//! request's extensions; rmcp then puts the request's `http::request::Parts`
//! into the MCP request context's extensions, where the arguments below find
//! the token. They decide exactly like the axum extractors (they run them).
//!
//! ```no_run
//! use std::sync::Arc;
//! use rmcp::handler::server::router::tool::ToolRouter;
//! use rmcp::model::{ListToolsResult, PaginatedRequestParams};
//! use rmcp::service::RequestContext;
//! use rmcp::transport::streamable_http_server::{
//!     StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
//! };
//! use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
//! use tokenguard::{
//!     AccessTokenClaims, Claims, ProtectedResource, RequireScope, StripCredentialsLayer,
//!     TokenGuard, ToolScopes, scope,
//! };
//!
//! #[derive(Clone)]
//! struct Invoices {
//!     scopes: ToolScopes, // cheap to clone: rmcp makes a server per session
//! }
//!
//! #[tool_router]
//! impl Invoices {
//!     /// Lists the caller's invoices.
//!     #[tool]
//!     async fn list_invoices(
//!         &self,
//!         _: RequireScope<scope!("read:invoices")>,
//!         Claims(claims): Claims<AccessTokenClaims>,
//!     ) -> String {
//!         format!("no invoices for {}", claims.sub.as_deref().unwrap_or("?"))
//!     }
//! }
//!
//! #[tool_handler]
//! impl ServerHandler for Invoices {
//!     // Each caller sees only the tools its token's scopes allow.
//!     async fn list_tools(
//!         &self,
//!         _: Option<PaginatedRequestParams>,
//!         context: RequestContext<RoleServer>,
//!     ) -> Result<ListToolsResult, ErrorData> {
//!         Ok(self.scopes.list_result(&context, Self::tool_router().list_all()))
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let resource = "https://mcp.example.com/mcp";
//! let guard = TokenGuard::builder()
//!     .issuer("https://id.example.com")
//!     .audience(resource)
//!     .protected_resource(ProtectedResource::new(resource).scopes_supported(["read:invoices"]))
//!     .build()?;
//! let scopes = ToolScopes::new().tool("list_invoices", ["read:invoices"]);
//! let mcp = StreamableHttpService::new(
//!     move || Ok(Invoices { scopes: scopes.clone() }),
//!     Arc::new(LocalSessionManager::default()),
//!     StreamableHttpServerConfig::default().with_allowed_hosts(["mcp.example.com"]),
//! );
//! let app = axum::Router::new()
//!     .route_service("/mcp", mcp)
//!     .layer(StripCredentialsLayer::new()) // inside the guard: tools never see the token
//!     .layer(guard.layer())
//!     // Outside the guard: /.well-known/oauth-protected-resource/mcp (RFC 9728).
//!     .merge(guard.metadata_router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Refusals
//!
//! A request without a valid token never reaches rmcp: the guard's layer
//! answers 401 with `WWW-Authenticate: Bearer …, resource_metadata="…"`, and
//! an MCP client starts its authorization from there. A missing scope is
//! found later, when rmcp has read the request and is calling the tool:
//! HTTP has answered 200 by then (or opened its event stream), so the tool
//! call fails with a JSON-RPC error (code `-32600`, invalid request) whose
//! message names the scope (``insufficient_scope: access token lacks the
//! required scope `write:invoices` ``) and whose `data` holds `error`,
//! `error_description`, `scope`, `status` (403) and `www_authenticate` (the
//! challenge the guard would send). For the HTTP 403 `insufficient_scope`
//! challenge that lets a client step up its scopes (MCP authorization, scope
//! challenge handling), put the `mcp` feature's `McpScopeLayer` in front of
//! the rmcp service: it reads the JSON-RPC method and tool name before the SDK
//! does. The arguments stay as the last check, next to the code they protect.
//!
//! Outside an HTTP request behind the guard (the stdio transport, a missing
//! layer) the arguments answer an internal error, logged as a
//! misconfiguration; they never let a call through.
//!
//! ## The raw token
//!
//! [`AccessToken`] holds the verified claims and scopes, never the token
//! string, so [`Token`](crate::Token) and [`Claims`](crate::Claims) cannot
//! hand it on. rmcp, however, gives every tool the HTTP request's headers
//! (its `Extension<http::request::Parts>` argument), `Authorization`
//! included; [`StripCredentialsLayer`], between the guard and the rmcp
//! service, removes the `Authorization` and `DPoP` headers once the guard has
//! used them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::rmcp::ErrorData;
use ::rmcp::RoleServer;
use ::rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use ::rmcp::model::{ErrorCode, ListToolsResult, Tool};
use ::rmcp::service::RequestContext;
use axum::extract::FromRequestParts;
use futures_util::FutureExt;
use http::request::Parts;
use http::{Request, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::claims::AccessToken;
use crate::error::{AuthError, AuthErrorKind};
use crate::extensions::challenge_config;
use crate::scope::ScopeRequirement;
use crate::{AuthRejection, Claims, RequireScope, Token};

const NO_HTTP_REQUEST: &str = "tokenguard rmcp argument used outside an HTTP request: serve the rmcp server with its streamable-HTTP transport behind the TokenGuard layer";
const PENDING: &str = "tokenguard extractor did not decide synchronously";

/// The verified token of this MCP request, for a `#[tool]` (or `#[prompt]`)
/// argument: the claims and scopes, never the token string.
impl<Ctx: AsRequestContext> FromContextPart<Ctx> for Token {
    fn from_context_part(context: &mut Ctx) -> Result<Self, ErrorData> {
        extract(context)
    }
}

/// The verified claims of this MCP request as `C`, for a `#[tool]` argument.
impl<Ctx, C> FromContextPart<Ctx> for Claims<C>
where
    Ctx: AsRequestContext,
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn from_context_part(context: &mut Ctx) -> Result<Self, ErrorData> {
        extract(context)
    }
}

/// Demands the scope requirement `R` of this MCP request's token, for a
/// `#[tool]` argument; a JSON-RPC error naming the scope otherwise.
impl<Ctx: AsRequestContext, R: ScopeRequirement> FromContextPart<Ctx> for RequireScope<R> {
    fn from_context_part(context: &mut Ctx) -> Result<Self, ErrorData> {
        extract(context)
    }
}

/// Runs the axum extractor `T` on the HTTP request parts rmcp's
/// streamable-HTTP transport stored in the context: one decision for both
/// adapters.
fn extract<T, Ctx>(context: &mut Ctx) -> Result<T, ErrorData>
where
    T: FromRequestParts<(), Rejection = AuthRejection>,
    Ctx: AsRequestContext,
{
    let Some(parts) = context
        .as_request_context_mut()
        .extensions
        .get_mut::<Parts>()
    else {
        let error = AuthError::new(AuthErrorKind::Misconfigured(NO_HTTP_REQUEST));
        return Err(refusal(&error, &http::Extensions::new()));
    };
    // The extractors read the extensions and never wait: their futures are
    // ready at the first poll.
    let outcome = T::from_request_parts(parts, &()).now_or_never();
    let error = match outcome {
        Some(Ok(value)) => return Ok(value),
        Some(Err(rejection)) => rejection.into_error(),
        None => AuthError::new(AuthErrorKind::Misconfigured(PENDING)),
    };
    Err(refusal(&error, &parts.extensions))
}

/// The JSON-RPC error for a refusal, logged where every refusal is.
fn refusal(error: &AuthError, extensions: &http::Extensions) -> ErrorData {
    // Logs it, and renders the challenge the guard would send.
    let response = crate::observe::reject::<()>(error, &challenge_config(extensions));
    let status = response.status();
    let mut data = Map::new();
    data.insert("status".into(), status.as_u16().into());
    if let Some(code) = error.error_code() {
        data.insert("error".into(), code.into());
    }
    data.insert("error_description".into(), error.description().into());
    if let AuthErrorKind::InsufficientScope { required } = error.kind() {
        data.insert("scope".into(), required.as_str().into());
    }
    if let Some(challenge) = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
    {
        data.insert("www_authenticate".into(), challenge.into());
    }
    if status.is_server_error() {
        // Misconfigurations are logged; the client learns nothing more.
        return ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            error.description(),
            Some(Value::Object(data)),
        );
    }
    let message = match error.error_code() {
        Some(code) => format!("{code}: {error}"),
        None => error.to_string(),
    };
    ErrorData::new(
        ErrorCode::INVALID_REQUEST,
        message,
        Some(Value::Object(data)),
    )
}

/// Which scopes each tool needs, to answer `tools/list` with only the tools
/// the caller's token allows (MCP clients, and the models behind them, then
/// do not try tools they cannot call). Scopes match exactly, as everywhere in
/// tokenguard; a tool needs all of its scopes.
///
/// A tool not named here is hidden from every caller unless
/// [`allow_unlisted`](Self::allow_unlisted); `.tool("ping", [])` shows a tool
/// to every authenticated caller. The list is a courtesy, not the check: keep
/// [`RequireScope`](crate::RequireScope) on the tool (or `McpScopeLayer` in
/// front of the server) so that a call is refused whatever the client knows.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use rmcp::model::Tool;
/// use tokenguard::{ToolScopes, testing::TestIssuer};
///
/// let scopes = ToolScopes::new()
///     .tool("list_invoices", ["read:invoices"])
///     .tool("create_invoice", ["write:invoices"]);
///
/// let issuer = TestIssuer::new();
/// let guard = issuer.guard("https://mcp.example.com/mcp");
/// let read = issuer.token().audience("https://mcp.example.com/mcp").scope("read:invoices").mint();
/// let token = guard.verify(&read).await.unwrap();
///
/// let empty = std::sync::Arc::new(serde_json::Map::new());
/// let tools = vec![
///     Tool::new("list_invoices", "List invoices", empty.clone()),
///     Tool::new("create_invoice", "Create an invoice", empty),
/// ];
/// let visible = scopes.filter(&token, tools);
/// assert_eq!(visible.iter().map(|t| &*t.name).collect::<Vec<_>>(), ["list_invoices"]);
/// assert!(!scopes.allows(&token, "create_invoice"));
/// # }
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct ToolScopes {
    // Shared: rmcp clones the server (and so this map) for every session.
    inner: Arc<Inner>,
}

#[derive(Clone, Default)]
struct Inner {
    tools: BTreeMap<Box<str>, Vec<Box<str>>>,
    allow_unlisted: bool,
}

impl ToolScopes {
    /// No tool is shown.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tool `name` needs every one of `scopes` (added to any named
    /// before for it; none: any authenticated caller).
    pub fn tool<'a>(
        mut self,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let name: String = name.into();
        Arc::make_mut(&mut self.inner)
            .tools
            .entry(name.into_boxed_str())
            .or_default()
            .extend(scopes.into_iter().map(Box::from));
        self
    }

    /// Tools not named here are shown to every authenticated caller
    /// (default: hidden).
    pub fn allow_unlisted(mut self) -> Self {
        Arc::make_mut(&mut self.inner).allow_unlisted = true;
        self
    }

    /// The scopes the tool `name` needs, if it is named here.
    pub fn required(&self, name: &str) -> Option<impl Iterator<Item = &str>> {
        self.inner
            .tools
            .get(name)
            .map(|scopes| scopes.iter().map(|s| &**s))
    }

    /// Every scope named, sorted and once each: the resource's
    /// `scopes_supported` (RFC 9728), for one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let all: std::collections::BTreeSet<&str> =
            self.inner.tools.values().flatten().map(|s| &**s).collect();
        all.into_iter()
    }

    /// Whether `token` may see (and call) the tool `name`.
    pub fn allows(&self, token: &AccessToken, name: &str) -> bool {
        match self.inner.tools.get(name) {
            Some(scopes) => scopes.iter().all(|s| token.scopes().contains(s)),
            None => self.inner.allow_unlisted,
        }
    }

    /// The tools `token` may see, in their order.
    pub fn filter(&self, token: &AccessToken, mut tools: Vec<Tool>) -> Vec<Tool> {
        tools.retain(|tool| self.allows(token, &tool.name));
        tools
    }

    /// The tools the caller of this MCP request may see: none when the
    /// request carries no verified token (it is not behind the guard).
    pub fn filter_request(
        &self,
        context: &RequestContext<RoleServer>,
        tools: Vec<Tool>,
    ) -> Vec<Tool> {
        match request_token(context) {
            Some(token) => self.filter(token, tools),
            None => {
                tracing::debug!("tools/list without a verified token: no tool shown");
                Vec::new()
            }
        }
    }

    /// A whole `tools/list` answer for this request: [`filter_request`](Self::filter_request),
    /// without a cursor. Its cache hints are left unset, which rmcp fills in
    /// as `private` for protocol versions that have them: the list differs
    /// by caller, so no shared cache may keep it.
    pub fn list_result(
        &self,
        context: &RequestContext<RoleServer>,
        tools: Vec<Tool>,
    ) -> ListToolsResult {
        ListToolsResult::with_all_items(self.filter_request(context, tools))
    }
}

impl fmt::Debug for ToolScopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolScopes")
            .field("tools", &self.inner.tools)
            .field("allow_unlisted", &self.inner.allow_unlisted)
            .finish()
    }
}

/// The verified token of an MCP request served over HTTP behind the guard.
fn request_token(context: &RequestContext<RoleServer>) -> Option<&AccessToken> {
    context
        .extensions
        .get::<Parts>()
        .and_then(|parts| parts.extensions.get::<Arc<AccessToken>>())
        .map(|token| &**token)
}

/// Removes the `Authorization` and `DPoP` headers from requests, so that a
/// service behind the guard (an rmcp server, whose tools see the request's
/// headers) cannot read the token or its proof. Goes between the guard's
/// layer and the service; the guard has used them by then.
///
/// Tokens the guard was told to take from the query or a cookie are not
/// removed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use http::Request;
/// use tokenguard::StripCredentialsLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// let svc = ServiceBuilder::new()
///     .layer(StripCredentialsLayer::new())
///     .service_fn(|req: Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(req.headers().contains_key("authorization"))
///     });
/// let req = Request::get("/").header("authorization", "Bearer abc").body(()).unwrap();
/// assert!(!svc.oneshot(req).await.unwrap());
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StripCredentialsLayer {
    _priv: (),
}

impl StripCredentialsLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tower_layer::Layer<S> for StripCredentialsLayer {
    type Service = StripCredentials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StripCredentials { inner }
    }
}

/// The service of [`StripCredentialsLayer`].
#[derive(Debug, Clone)]
pub struct StripCredentials<S> {
    inner: S,
}

impl<S> StripCredentials<S> {
    inner_service_accessors!();
}

impl<S, B> tower_service::Service<Request<B>> for StripCredentials<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers_mut();
        headers.remove(header::AUTHORIZATION);
        headers.remove("dpop");
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_scopes_fail_closed() {
        let s = ToolScopes::new()
            .tool("a", ["x"])
            .tool("a", ["y"])
            .tool("p", []);
        assert_eq!(s.required("a").unwrap().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(s.scopes().collect::<Vec<_>>(), ["x", "y"]);
        assert!(s.required("b").is_none());
        let clone = s.clone().allow_unlisted();
        assert!(!s.inner.allow_unlisted && clone.inner.allow_unlisted);
    }
}
