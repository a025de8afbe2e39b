//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells
//! a client (an MCP client, for one) which authorization servers issue
//! tokens for this resource, which scopes exist, and how tokens are sent.
//!
//! Configure a [`ProtectedResource`] on the guard; then every 401 and 403
//! challenge carries `resource_metadata="…"` (RFC 9728 §5.1), and
//! [`TokenGuard::metadata_router`] serves the document at the well-known
//! URL inserted before the resource's path (§3.1). The `resource` is
//! configuration, never derived from `Host`: clients check that it is the
//! URL they used (§3.3).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tokenguard::{ProtectedResource, testing::TestIssuer};
//! let issuer = TestIssuer::new();
//! let guard = issuer
//!     .guard_builder("https://api.example.com/mcp")
//!     .protected_resource(ProtectedResource::new("https://api.example.com/mcp").scopes_supported(["read:invoices"]))
//!     .build()
//!     .unwrap();
//! assert_eq!(
//!     guard.resource_metadata_url(),
//!     Some("https://api.example.com/.well-known/oauth-protected-resource/mcp")
//! );
//! let app: axum::Router = axum::Router::new().merge(guard.metadata_router());
//! # let _ = app;
//! # }
//! ```

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Url;
use serde::Serialize;

use crate::guard::{RenderForIssuers, ResourceMetadata, TokenGuard};

/// The well-known path segment of RFC 9728 §3.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The description of this protected resource (RFC 9728 §2), given to
/// [`TokenGuardBuilder::protected_resource`](crate::TokenGuardBuilder::protected_resource).
/// The members that describe the guard itself (`bearer_methods_supported`,
/// the DPoP and certificate-binding members) are filled in from its settings.
#[derive(Debug, Clone)]
#[must_use]
pub struct ProtectedResource {
    pub(crate) resource: String,
    pub(crate) authorization_servers: Vec<String>,
    pub(crate) scopes_supported: Vec<String>,
    pub(crate) resource_name: Option<String>,
    pub(crate) resource_documentation: Option<String>,
    pub(crate) serve_root: bool,
}

impl ProtectedResource {
    /// The resource identifier: the URL clients call (https, or http on
    /// loopback; no fragment), usually also the tokens' audience (RFC 8707).
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            resource_name: None,
            resource_documentation: None,
            serve_root: false,
        }
    }

    /// An authorization server's issuer identifier (default: the guard's
    /// issuer, or each issuer of a multi-issuer guard).
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes a client may request for this resource.
    pub fn scopes_supported<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        self.scopes_supported
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// A human-readable name (`resource_name`).
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// A page of documentation for developers (`resource_documentation`).
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Also serve the document at the root well-known URL
    /// (`/.well-known/oauth-protected-resource`), for clients that look there
    /// when the resource has a path.
    pub fn also_at_root(mut self) -> Self {
        self.serve_root = true;
        self
    }
}

/// What the guard's own settings add to the document.
#[derive(Clone)]
pub(crate) struct GuardFacts {
    pub(crate) issuers: Vec<String>,
    pub(crate) bearer_methods: Vec<&'static str>,
    pub(crate) dpop_algs: Option<Vec<String>>,
    pub(crate) dpop_required: bool,
    pub(crate) certificate_bound: bool,
}

#[derive(Serialize)]
struct Document<'a> {
    resource: &'a str,
    authorization_servers: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    scopes_supported: &'a [String],
    bearer_methods_supported: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_signing_alg_values_supported: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dpop_bound_access_tokens_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_client_certificate_bound_access_tokens: bool,
}

/// An https URL, or http on loopback, without fragment.
fn check_url(what: &str, url: &str) -> Result<Url, String> {
    let parsed = crate::fetch::check_url(url).map_err(|e| format!("{what}: {}", e.message))?;
    if parsed.fragment().is_some() || url.contains('#') {
        return Err(format!("{what} {url:?} has a fragment (RFC 9728 §2)"));
    }
    Ok(parsed)
}

impl ProtectedResource {
    /// Validates the description and renders the document, with the
    /// well-known paths to serve it at.
    pub(crate) fn build(self, facts: GuardFacts) -> Result<ResourceMetadata, String> {
        let resource = check_url("the resource", &self.resource)?;
        if resource.query().is_some() {
            // RFC 9728 §2 discourages it, and a query cannot be inserted after
            // the well-known path unambiguously.
            return Err(format!("the resource {:?} has a query", self.resource));
        }
        if let Some(doc) = &self.resource_documentation {
            check_url("resource_documentation", doc)?;
        }
        let for_issuers: Option<RenderForIssuers> =
            self.authorization_servers.is_empty().then(|| {
                let (description, facts) = (self.clone(), facts.clone());
                Arc::new(move |issuers: Vec<String>| {
                    let facts = GuardFacts {
                        issuers,
                        ..facts.clone()
                    };
                    description.clone().build(facts).map(|m| m.json)
                }) as RenderForIssuers
            });
        let servers = if self.authorization_servers.is_empty() {
            facts.issuers
        } else {
            self.authorization_servers
        };
        if servers.is_empty() {
            return Err("no authorization server: configure an issuer or name one".into());
        }
        for server in &servers {
            check_url("an authorization server", server)?;
        }
        for scope in &self.scopes_supported {
            if !crate::syntax::is_valid_scope_token(scope) {
                return Err(format!("{scope:?} is not a scope token (RFC 6749 §3.3)"));
            }
        }
        let document = Document {
            resource: &self.resource,
            authorization_servers: &servers,
            scopes_supported: &self.scopes_supported,
            bearer_methods_supported: &facts.bearer_methods,
            resource_name: self.resource_name.as_deref(),
            resource_documentation: self.resource_documentation.as_deref(),
            dpop_signing_alg_values_supported: facts.dpop_algs.as_deref(),
            dpop_bound_access_tokens_required: facts.dpop_required,
            tls_client_certificate_bound_access_tokens: facts.certificate_bound,
        };
        let json = serde_json::to_vec(&document).map_err(|e| e.to_string())?;
        // RFC 9728 §3.1: the well-known path goes between host and path; a
        // terminating `/` of the resource's path is dropped first.
        let path = resource.path().trim_end_matches('/');
        let path = format!("{WELL_KNOWN}{path}");
        let mut url = resource.clone();
        url.set_path(&path);
        let mut paths = vec![path];
        if self.serve_root && paths.first().is_some_and(|p| p != WELL_KNOWN) {
            paths.push(WELL_KNOWN.into());
        }
        Ok(ResourceMetadata {
            url: Arc::from(url.as_str()),
            paths,
            json: Bytes::from(json),
            for_issuers,
        })
    }
}

impl TokenGuard {
    /// The URL of this resource's metadata document, when a
    /// [`ProtectedResource`] is configured: what challenges name in
    /// `resource_metadata`.
    pub fn resource_metadata_url(&self) -> Option<&str> {
        self.inner.metadata.as_ref().map(|m| &*m.url)
    }

    /// The metadata document (JSON), when a [`ProtectedResource`] is
    /// configured.
    pub fn resource_metadata_document(&self) -> Option<&Bytes> {
        self.inner.metadata.as_ref().map(|m| &m.json)
    }

    /// An axum router that serves the metadata document (`GET`, public:
    /// merge it outside the guard's layer) at the path-inserted well-known
    /// URL, and the root one with [`ProtectedResource::also_at_root`].
    /// Empty when no [`ProtectedResource`] is configured.
    #[cfg(feature = "axum")]
    pub fn metadata_router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let mut router = axum::Router::new();
        if let Some(metadata) = &self.inner.metadata {
            for path in &metadata.paths {
                let json = metadata.json.clone();
                router = router.route(
                    path,
                    axum::routing::get(move || {
                        let json = json.clone();
                        async move {
                            (
                                [
                                    (http::header::CONTENT_TYPE, "application/json"),
                                    (http::header::CACHE_CONTROL, "public, max-age=3600"),
                                ],
                                json,
                            )
                        }
                    }),
                );
            }
        }
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> GuardFacts {
        GuardFacts {
            issuers: vec!["https://id.example.com".into()],
            bearer_methods: vec!["header"],
            dpop_algs: None,
            dpop_required: false,
            certificate_bound: false,
        }
    }

    #[test]
    fn well_known_urls_insert_the_path() {
        let m = ProtectedResource::new("https://api.example.com/mcp/")
            .build(facts())
            .unwrap();
        assert_eq!(
            m.url.as_ref(),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(m.paths, ["/.well-known/oauth-protected-resource/mcp"]);
        let m = ProtectedResource::new("https://api.example.com")
            .also_at_root()
            .build(facts())
            .unwrap();
        assert_eq!(
            m.url.as_ref(),
            "https://api.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(m.paths, ["/.well-known/oauth-protected-resource"]);
        let m = ProtectedResource::new("http://127.0.0.1:3000/a/b")
            .also_at_root()
            .build(facts())
            .unwrap();
        assert_eq!(
            m.paths,
            [
                "/.well-known/oauth-protected-resource/a/b",
                "/.well-known/oauth-protected-resource"
            ]
        );
    }

    #[test]
    fn bad_descriptions_are_refused() {
        for bad in [
            "http://api.example.com/mcp",
            "https://api.example.com/mcp#x",
            "https://api.example.com/mcp?x=1",
            "/mcp",
        ] {
            assert!(ProtectedResource::new(bad).build(facts()).is_err(), "{bad}");
        }
        assert!(
            ProtectedResource::new("https://api.example.com")
                .scopes_supported(["a b"])
                .build(facts())
                .is_err()
        );
        assert!(
            ProtectedResource::new("https://api.example.com")
                .resource_documentation("ftp://x")
                .build(facts())
                .is_err()
        );
        let no_issuer = GuardFacts {
            issuers: Vec::new(),
            ..facts()
        };
        assert!(
            ProtectedResource::new("https://api.example.com")
                .build(no_issuer)
                .is_err()
        );
    }

    #[test]
    fn the_document_describes_the_guard() {
        let facts = GuardFacts {
            bearer_methods: vec!["header", "body"],
            dpop_algs: Some(vec!["ES256".into()]),
            dpop_required: true,
            certificate_bound: true,
            ..facts()
        };
        let m = ProtectedResource::new("https://api.example.com/mcp")
            .scopes_supported(["read", "write"])
            .resource_name("Invoices")
            .build(facts)
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&m.json).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "resource": "https://api.example.com/mcp",
                "authorization_servers": ["https://id.example.com"],
                "scopes_supported": ["read", "write"],
                "bearer_methods_supported": ["header", "body"],
                "resource_name": "Invoices",
                "dpop_signing_alg_values_supported": ["ES256"],
                "dpop_bound_access_tokens_required": true,
                "tls_client_certificate_bound_access_tokens": true
            })
        );
    }
}
