//! Per-operation scopes for MCP servers (feature `mcp`): [`McpScopeLayer`]
//! maps `tools/call` names, `resources/read` URIs (by prefix) and
//! `prompts/get` names to the scopes they need, and answers the HTTP 403
//! `insufficient_scope` challenge before the MCP server reads the request.
//!
//! It reads the JSON-RPC message of every `POST` (a bounded peek; the body is
//! handed on intact), so it works with every client. The `Mcp-Method` and
//! `Mcp-Name` headers of MCP 2026-07-28 (SEP-2243) must then agree with the
//! body (400 otherwise); with [`McpScopeLayer::trust_headers`] the layer
//! decides from the headers alone, for servers that check that agreement
//! themselves.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tokenguard::{McpScopeLayer, testing::TestIssuer};
//!
//! let issuer = TestIssuer::new();
//! let guard = issuer.guard("https://mcp.example.com/mcp");
//! let policy = McpScopeLayer::new()
//!     .tool("list_invoices", ["read:invoices"])
//!     .tool("create_invoice", ["write:invoices"])
//!     .resource("invoices://", ["read:invoices"]);
//! let app = Router::new()
//!     .route("/mcp", post(|| async { "the MCP server" }))
//!     .layer(policy) // inside the guard's layer: it needs the verified token
//!     .layer(guard.layer());
//!
//! let token = issuer.token().audience("https://mcp.example.com/mcp").scope("read:invoices").mint();
//! let call = |tool: &str| {
//!     Request::post("/mcp")
//!         .header("authorization", format!("Bearer {token}"))
//!         .header("content-type", "application/json")
//!         .body(Body::from(format!(
//!             r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
//!         )))
//!         .unwrap()
//! };
//! assert_eq!(app.clone().oneshot(call("list_invoices")).await.unwrap().status(), StatusCode::OK);
//! let refused = app.oneshot(call("create_invoice")).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::FORBIDDEN);
//! assert!(refused.headers()["www-authenticate"].to_str().unwrap().contains(r#"scope="write:invoices""#));
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::challenge::ChallengeBody;
use crate::claims::AccessToken;
use crate::error::{AuthError, InvalidRequest};
use crate::extensions::challenge_config;
use crate::observe::{body_too_large, reject_request};

/// The header that mirrors the JSON-RPC `method` (MCP 2026-07-28).
const MCP_METHOD: &str = "mcp-method";
/// The header that mirrors `params.name` or `params.uri` (MCP 2026-07-28).
const MCP_NAME: &str = "mcp-name";
/// SEP-2243's encoding of a header value that is not plain visible ASCII.
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// Scopes required by MCP operations, enforced in front of the MCP server.
/// Place it inside the guard's layer ([`TokenGuard::layer`](crate::TokenGuard::layer)).
///
/// - `tools/call` of a tool named with [`tool`](Self::tool),
///   `resources/read` of a URI starting with a prefix given to
///   [`resource`](Self::resource) (the longest prefix wins; the comparison is
///   of plain strings, so end a prefix with `/` to mean a folder) and
///   `prompts/get` of a prompt named with [`prompt`](Self::prompt) need
///   every scope given there;
/// - any JSON-RPC method can need scopes of its own ([`method`](Self::method)),
///   e.g. `completion/complete`; they add to the operation's;
/// - operations not named need only an authenticated caller, or the scopes
///   of [`unlisted`](Self::unlisted).
///
/// A refused operation gets one complete 403 `insufficient_scope` challenge
/// naming every scope it needs (for a JSON-RPC batch, every scope the batch
/// needs). `GET` (the SSE stream) and `DELETE` (the end of a session) pass.
/// The scopes are compared with the token's, scope hierarchy applied.
///
/// ```
/// use tokenguard::McpScopeLayer;
/// let policy = McpScopeLayer::new()
///     .tool("create_invoice", ["write:invoices"])
///     .resource("file:///invoices/", ["read:invoices"])
///     .prompt("summarize", ["read:invoices"])
///     .method("completion/complete", ["read:invoices"])
///     .unlisted(["mcp:use"])
///     .max_body(256 * 1024);
/// assert_eq!(policy.scopes().collect::<Vec<_>>(), ["mcp:use", "read:invoices", "write:invoices"]);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct McpScopeLayer {
    // Shared: the layer is cloned into every service.
    policy: Arc<Policy>,
    max_body: usize,
    trust_headers: bool,
}

/// Scopes, all of which are required.
type Rule = Vec<Box<str>>;

#[derive(Clone, Debug, Default)]
struct Policy {
    tools: HashMap<Box<str>, Rule>,
    prompts: HashMap<Box<str>, Rule>,
    /// Longest prefix first.
    resources: Vec<(Box<str>, Rule)>,
    methods: HashMap<Box<str>, Rule>,
    unlisted: Rule,
}

impl Default for McpScopeLayer {
    fn default() -> Self {
        Self::new()
    }
}

fn scopes_of<'a>(scopes: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = Box<str>> {
    scopes.into_iter().map(|s| {
        assert!(
            crate::syntax::is_valid_scope_token(s),
            "{s:?} is not a valid scope (RFC 6749: non-empty, printable ASCII, no space, quote or backslash)"
        );
        Box::from(s)
    })
}

impl McpScopeLayer {
    /// No operation needs a scope yet; bodies up to 1 MiB are read.
    pub fn new() -> Self {
        Self {
            policy: Arc::default(),
            max_body: 1024 * 1024,
            trust_headers: false,
        }
    }

    fn policy(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }

    /// `tools/call` of the tool `name` needs every one of `scopes` (added to
    /// those named before for it).
    ///
    /// # Panics
    /// If a scope is not a valid RFC 6749 scope-token.
    pub fn tool<'a>(mut self, name: &str, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let rule = self.policy().tools.entry(Box::from(name)).or_default();
        rule.extend(scopes_of(scopes));
        self
    }

    /// `prompts/get` of the prompt `name` needs every one of `scopes`.
    ///
    /// # Panics
    /// If a scope is not a valid RFC 6749 scope-token.
    pub fn prompt<'a>(mut self, name: &str, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let rule = self.policy().prompts.entry(Box::from(name)).or_default();
        rule.extend(scopes_of(scopes));
        self
    }

    /// `resources/read` of a URI that starts with `prefix` needs every one of
    /// `scopes` (when several prefixes match, the longest decides).
    ///
    /// # Panics
    /// If a scope is not a valid RFC 6749 scope-token.
    pub fn resource<'a>(mut self, prefix: &str, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let scopes: Rule = scopes_of(scopes).collect();
        let resources = &mut self.policy().resources;
        match resources.iter_mut().find(|(p, _)| &**p == prefix) {
            Some((_, rule)) => rule.extend(scopes),
            None => resources.push((Box::from(prefix), scopes)),
        }
        resources.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// The JSON-RPC method `method` needs every one of `scopes`, whatever
    /// its parameters (in addition to a tool's, resource's or prompt's).
    ///
    /// # Panics
    /// If a scope is not a valid RFC 6749 scope-token.
    pub fn method<'a>(mut self, method: &str, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let rule = self.policy().methods.entry(Box::from(method)).or_default();
        rule.extend(scopes_of(scopes));
        self
    }

    /// Tools, resources and prompts not named here need every one of
    /// `scopes` (default: none, any authenticated caller).
    ///
    /// # Panics
    /// If a scope is not a valid RFC 6749 scope-token.
    pub fn unlisted<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let scopes: Rule = scopes_of(scopes).collect();
        self.policy().unlisted.extend(scopes);
        self
    }

    /// The largest request body read, in bytes (default 1 MiB); a larger
    /// `POST` is answered with 413 before the MCP server sees it.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Decide from the `Mcp-Method` / `Mcp-Name` headers alone when a request
    /// has them, without reading its body. Only for MCP servers that refuse
    /// a request whose headers disagree with its body, as MCP 2026-07-28
    /// requires of them: otherwise a client could name one tool in the
    /// header and call another.
    pub fn trust_headers(mut self) -> Self {
        self.trust_headers = true;
        self
    }

    /// Every scope named, sorted and once each (e.g. for `scopes_supported`
    /// in the RFC 9728 metadata).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let p = &*self.policy;
        let all: std::collections::BTreeSet<&str> = p
            .tools
            .values()
            .chain(p.prompts.values())
            .chain(p.resources.iter().map(|(_, r)| r))
            .chain(p.methods.values())
            .chain(std::iter::once(&p.unlisted))
            .flatten()
            .map(|s| &**s)
            .collect();
        all.into_iter()
    }
}

/// What one JSON-RPC message asks for.
struct Operation<'a> {
    method: &'a str,
    /// `params.name` (`tools/call`, `prompts/get`) or `params.uri`
    /// (`resources/read`).
    target: Option<&'a str>,
}

impl Policy {
    /// Adds the scopes `op` needs to `needed`.
    fn require<'p>(&'p self, op: &Operation<'_>, needed: &mut Vec<&'p str>) {
        let mut add = |rule: &'p Rule| {
            for s in rule {
                if !needed.contains(&&**s) {
                    needed.push(s);
                }
            }
        };
        if let Some(rule) = self.methods.get(op.method) {
            add(rule);
        }
        let Some(target) = op.target else { return };
        let rule = match op.method {
            "tools/call" => self.tools.get(target),
            "prompts/get" => self.prompts.get(target),
            _ => self
                .resources
                .iter()
                .find(|(prefix, _)| target.starts_with(&**prefix))
                .map(|(_, rule)| rule),
        };
        add(rule.unwrap_or(&self.unlisted));
    }

    /// The refusal, if the request's token lacks a scope the operations need.
    fn check<'a>(
        &self,
        ops: impl IntoIterator<Item = Operation<'a>>,
        ext: &http::Extensions,
    ) -> Result<(), AuthError> {
        let mut needed = Vec::new();
        for op in ops {
            self.require(&op, &mut needed);
        }
        if needed.is_empty() {
            return Ok(());
        }
        let token = ext
            .get::<Arc<AccessToken>>()
            .ok_or_else(AuthError::missing_token)?;
        if needed.iter().all(|s| token.scopes().contains(s)) {
            Ok(())
        } else {
            Err(AuthError::insufficient_scope(needed.join(" ")))
        }
    }
}

/// The methods whose operation names a target, and the parameter naming it.
fn target_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

fn unreadable() -> AuthError {
    AuthError::invalid_request(InvalidRequest::UnreadableMessage)
}

fn mismatch() -> AuthError {
    AuthError::invalid_request(InvalidRequest::McpHeaderMismatch)
}

/// The operation of one JSON-RPC message; `None` for a response (no
/// `method`).
fn operation(message: &Value) -> Result<Option<Operation<'_>>, AuthError> {
    let Value::Object(message) = message else {
        return Err(unreadable());
    };
    let method = match message.get("method") {
        None => return Ok(None),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(unreadable()),
    };
    let target = match target_param(method) {
        None => None,
        Some(param) => {
            let target = message
                .get("params")
                .and_then(Value::as_object)
                .and_then(|p: &Map<String, Value>| p.get(param))
                .and_then(Value::as_str);
            Some(target.ok_or_else(unreadable)?)
        }
    };
    Ok(Some(Operation { method, target }))
}

/// The one value of header `name`, decoded (SEP-2243: `=?base64?…?=` for
/// values that are not visible ASCII); `Ok(None)` when absent.
fn mirrored(headers: &HeaderMap, name: &str) -> Result<Option<String>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(mismatch());
    }
    let value = value.to_str().map_err(|_| mismatch())?;
    let decoded = match value
        .strip_prefix(BASE64_PREFIX)
        .and_then(|v| v.strip_suffix(BASE64_SUFFIX))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(mismatch)?,
        None => value.to_owned(),
    };
    Ok(Some(decoded))
}

/// The operations of a POST body, checked against the mirrored headers.
fn operations<'a>(
    message: &'a Value,
    method_header: Option<&str>,
    name_header: Option<&str>,
) -> Result<Vec<Operation<'a>>, AuthError> {
    let ops = match message {
        // A JSON-RPC batch (MCP 2025-03-26): every message counts. Headers
        // mirror one message, so a batch cannot have them.
        Value::Array(batch) => {
            if method_header.is_some() || name_header.is_some() {
                return Err(mismatch());
            }
            let mut ops = Vec::with_capacity(batch.len());
            for message in batch {
                ops.extend(operation(message)?);
            }
            return Ok(ops);
        }
        message => operation(message)?,
    };
    let (method, target) = match &ops {
        Some(op) => (Some(op.method), op.target),
        None => (None, None),
    };
    if method_header.is_some_and(|h| Some(h) != method)
        || name_header.is_some_and(|h| Some(h) != target)
    {
        return Err(mismatch());
    }
    Ok(ops.into_iter().collect())
}

impl<S> Layer<S> for McpScopeLayer {
    type Service = McpScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpScopeService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`McpScopeLayer`]. Its inner service gets the request with
/// an [`McpBody`]: the original body, or the bytes read from it.
#[derive(Clone, Debug)]
pub struct McpScopeService<S> {
    inner: S,
    layer: McpScopeLayer,
}

impl<S> McpScopeService<S> {
    inner_service_accessors!();
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, ResBody> Service<Request<B>> for McpScopeService<S>
where
    S: Service<Request<McpBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: ChallengeBody + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = McpScopeFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() != Method::POST {
            let req = req.map(McpBody::untouched);
            return McpScopeFuture::inner(self.inner.call(req));
        }
        let headers = mirrored(req.headers(), MCP_METHOD)
            .and_then(|method| Ok((method, mirrored(req.headers(), MCP_NAME)?)));
        let (method_header, name_header) = match headers {
            Ok(headers) => headers,
            Err(e) => {
                return McpScopeFuture::refused(reject_request(
                    &e,
                    &challenge_config(req.extensions()),
                    req.headers(),
                ));
            }
        };
        if let Some(method) = method_header
            .as_deref()
            .filter(|_| self.layer.trust_headers)
        {
            let target = name_header.as_deref();
            // A name-bearing method without `Mcp-Name`: the body decides.
            if target_param(method).is_none() || target.is_some() {
                let op = Operation { method, target };
                return match self.layer.policy.check([op], req.extensions()) {
                    Ok(()) => McpScopeFuture::inner(self.inner.call(req.map(McpBody::untouched))),
                    Err(e) => McpScopeFuture::refused(reject_request(
                        &e,
                        &challenge_config(req.extensions()),
                        req.headers(),
                    )),
                };
            }
        }
        let too_long = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > self.layer.max_body as u64);
        if too_long {
            return McpScopeFuture::refused(body_too_large(self.layer.max_body));
        }
        // The body must be read first: the instance made ready by
        // `poll_ready` goes into the future, a clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        McpScopeFuture::peeking(Box::pin(async move {
            let (parts, body) = req.into_parts();
            let collected = match Limited::new(body, layer.max_body).collect().await {
                Ok(collected) => collected,
                Err(e) if e.is::<LengthLimitError>() => return Ok(body_too_large(layer.max_body)),
                Err(_) => {
                    return Ok(reject_request(
                        &unreadable(),
                        &challenge_config(&parts.extensions),
                        &parts.headers,
                    ));
                }
            };
            let trailers = collected.trailers().cloned();
            let bytes = collected.to_bytes();
            let checked = serde_json::from_slice::<Value>(&bytes)
                .map_err(|_| unreadable())
                .and_then(|message| {
                    let ops =
                        operations(&message, method_header.as_deref(), name_header.as_deref())?;
                    layer.policy.check(ops, &parts.extensions)
                });
            if let Err(e) = checked {
                return Ok(reject_request(
                    &e,
                    &challenge_config(&parts.extensions),
                    &parts.headers,
                ));
            }
            let body = McpBody::buffered(bytes, trailers);
            inner.call(Request::from_parts(parts, body)).await
        }))
    }
}

pin_project! {
    /// The request body [`McpScopeService`] hands on: the original body when
    /// it was not read, or the bytes (and trailers) read from it.
    #[derive(Debug)]
    pub struct McpBody<B> {
        #[pin]
        state: BodyState<B>,
    }
}

pin_project! {
    #[project = BodyStateProj]
    #[derive(Debug)]
    enum BodyState<B> {
        Untouched { #[pin] inner: B },
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
    }
}

impl<B> McpBody<B> {
    fn untouched(inner: B) -> Self {
        Self {
            state: BodyState::Untouched { inner },
        }
    }

    fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            state: BodyState::Buffered {
                data: Some(data),
                trailers,
            },
        }
    }
}

impl<B: Body<Data = Bytes>> Body for McpBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().state.project() {
            BodyStateProj::Untouched { inner } => inner.poll_frame(cx),
            BodyStateProj::Buffered { data, trailers } => {
                if let Some(data) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Untouched { inner } => inner.is_end_stream(),
            BodyState::Buffered { data, trailers } => {
                data.as_ref().is_none_or(Bytes::is_empty) && trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Untouched { inner } => inner.size_hint(),
            BodyState::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

pin_project! {
    /// Response future of [`McpScopeService`].
    pub struct McpScopeFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Inner { #[pin] fut: F },
        Refused { resp: Option<Response<B>> },
        Peeking { fut: BoxFuture<'static, Result<Response<B>, E>> },
    }
}

impl<F, B, E> McpScopeFuture<F, B, E> {
    fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    fn refused(resp: Response<B>) -> Self {
        Self {
            state: State::Refused { resp: Some(resp) },
        }
    }

    fn peeking(fut: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            state: State::Peeking { fut },
        }
    }
}

impl<F, B, E> Future for McpScopeFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx),
            StateProj::Peeking { fut } => fut.as_mut().poll(cx),
            // `None` only when polled after completion: never resolves again.
            StateProj::Refused { resp } => {
                resp.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(
        body: &str,
        method: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<(String, Option<String>)>, InvalidRequest> {
        let value: Value =
            serde_json::from_str(body).map_err(|_| InvalidRequest::UnreadableMessage)?;
        let ops = operations(&value, method, name).map_err(|e| match e.kind() {
            crate::error::AuthErrorKind::InvalidRequest(r) => *r,
            other => panic!("{other:?}"),
        })?;
        Ok(ops
            .into_iter()
            .map(|op| (op.method.to_owned(), op.target.map(str::to_owned)))
            .collect())
    }

    #[test]
    fn messages_and_their_headers() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}"#;
        assert_eq!(
            ops(call, None, None),
            Ok(vec![("tools/call".into(), Some("t".into()))])
        );
        assert!(ops(call, Some("tools/call"), Some("t")).is_ok());
        assert_eq!(
            ops(call, Some("tools/list"), None),
            Err(InvalidRequest::McpHeaderMismatch)
        );
        assert_eq!(
            ops(call, Some("tools/call"), Some("u")),
            Err(InvalidRequest::McpHeaderMismatch)
        );
        // A response has no method, and so no header.
        let response = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert_eq!(ops(response, None, None), Ok(vec![]));
        assert_eq!(
            ops(response, Some("tools/call"), None),
            Err(InvalidRequest::McpHeaderMismatch)
        );
        // A name on a method that names nothing.
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert_eq!(
            ops(list, Some("tools/list"), Some("t")),
            Err(InvalidRequest::McpHeaderMismatch)
        );
        // Name-bearing methods must name their target.
        for bad in [
            r#"{"method":"tools/call"}"#,
            r#"{"method":"tools/call","params":{"name":1}}"#,
            r#"{"method":"resources/read","params":{"name":"x"}}"#,
            r#"{"method":1}"#,
            r#"[1]"#,
            r#""tools/call""#,
        ] {
            assert_eq!(
                ops(bad, None, None),
                Err(InvalidRequest::UnreadableMessage),
                "{bad}"
            );
        }
        // Batches: every message; never with headers.
        let batch = r#"[{"method":"tools/call","params":{"name":"a"}},{"method":"resources/read","params":{"uri":"x://1"}},{"id":2,"result":{}}]"#;
        assert_eq!(ops(batch, None, None).map(|o| o.len()), Ok(2));
        assert_eq!(
            ops(batch, Some("tools/call"), None),
            Err(InvalidRequest::McpHeaderMismatch)
        );
        // Duplicate members: the last one counts, as for JSON.parse.
        let dup = r#"{"method":"tools/call","params":{"name":"a","name":"b"}}"#;
        assert_eq!(
            ops(dup, None, None),
            Ok(vec![("tools/call".into(), Some("b".into()))])
        );
    }

    #[test]
    fn header_values_decode_sep_2243_base64() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(MCP_NAME, v.parse().unwrap());
            }
            mirrored(&h, MCP_NAME).map_err(|e| e.kind().clone())
        };
        assert_eq!(headers(&[]), Ok(None));
        assert_eq!(
            headers(&["list_invoices"]),
            Ok(Some("list_invoices".into()))
        );
        assert_eq!(headers(&["=?base64?Y2Fmw6k=?="]), Ok(Some("café".into())));
        assert!(headers(&["=?base64?not base64?="]).is_err());
        assert!(headers(&["a", "b"]).is_err());
    }

    #[test]
    fn the_longest_resource_prefix_decides() {
        let layer = McpScopeLayer::new()
            .resource("file:///", ["files:read"])
            .resource("file:///secret/", ["secret:read"])
            .tool("t", ["a", "b"])
            .method("tools/call", ["b", "c"])
            .unlisted(["mcp:use"]);
        let needed = |method: &str, target: Option<&str>| {
            let mut needed = Vec::new();
            layer
                .policy
                .require(&Operation { method, target }, &mut needed);
            needed.join(" ")
        };
        assert_eq!(needed("resources/read", Some("file:///a")), "files:read");
        assert_eq!(
            needed("resources/read", Some("file:///secret/a")),
            "secret:read"
        );
        assert_eq!(needed("resources/read", Some("db://x")), "mcp:use");
        assert_eq!(needed("tools/call", Some("t")), "b c a");
        assert_eq!(needed("tools/call", Some("other")), "b c mcp:use");
        assert_eq!(needed("prompts/get", Some("p")), "mcp:use");
        assert_eq!(needed("tools/list", None), "");
    }
}
