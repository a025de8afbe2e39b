//! Challenges: every refusal rendered in one place. [`ChallengeConfig`] holds
//! the guard's settings (realm, error body); `header` renders
//! `WWW-Authenticate` (RFC 6750 §3) and the response; `body` lets the layer
//! answer with any common body type ([`ChallengeBody`]).
//!
//! ```
//! use tokenguard::{AuthError, InvalidToken};
//! let err = AuthError::insufficient_scope("read:invoices");
//! assert_eq!(
//!     err.challenge("api").unwrap(),
//!     r#"Bearer realm="api", error="insufficient_scope", error_description="The access token does not grant the required scope", scope="read:invoices""#
//! );
//! ```

mod body;
mod grpc;
mod header;

pub use body::ChallengeBody;
pub(crate) use grpc::grpc_content_type;
pub(crate) use header::DPOP_NONCE;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use crate::error::{AuthError, AuthErrorKind};
use crate::syntax::Scheme;

/// A custom error body produced by an error renderer.
///
/// ```
/// use tokenguard::ErrorBody;
/// let body = ErrorBody::json(r#"{"error":"invalid_token"}"#);
/// assert_eq!(body.content_type, "application/json");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ErrorBody {
    /// The `Content-Type` of the body.
    pub content_type: HeaderValue,
    /// The body bytes.
    pub body: Bytes,
}

impl ErrorBody {
    /// A body with the given content type.
    pub fn new(content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        Self {
            content_type,
            body: body.into(),
        }
    }

    /// An `application/json` body.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self::new(HeaderValue::from_static("application/json"), body)
    }

    /// The body of [`TokenGuardBuilder::json_errors`](crate::TokenGuardBuilder::json_errors):
    /// `{"error": "…", "error_description": "…"}` (plus `"scope"` for 403).
    pub fn standard_json(err: &AuthError) -> Self {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "error".into(),
            err.error_code().unwrap_or("unauthorized").into(),
        );
        obj.insert("error_description".into(), err.description().into());
        if let AuthErrorKind::InsufficientScope { required } = err.kind() {
            obj.insert("scope".into(), required.as_str().into());
        }
        Self::json(serde_json::Value::Object(obj).to_string())
    }
}

/// A function that renders a custom body for an error. Returning `None` keeps
/// the empty body. Status and headers are always set by tokenguard.
pub type ErrorBodyRenderer = Arc<dyn Fn(&AuthError) -> Option<ErrorBody> + Send + Sync>;

/// What rendering a challenge needs: the realm, the optional body renderer,
/// the schemes the guard accepts and the one the request used.
#[derive(Clone)]
pub(crate) struct ChallengeConfig {
    pub(crate) realm: Arc<str>,
    pub(crate) render: Option<ErrorBodyRenderer>,
    /// Set when the guard accepts DPoP (RFC 9449 §7.1).
    pub(crate) dpop: Option<DpopChallenge>,
    /// The scheme of the request being answered: its challenge carries the
    /// error.
    pub(crate) used: Scheme,
    /// The URL of the RFC 9728 metadata document, named in every challenge.
    pub(crate) resource_metadata: Option<Arc<str>>,
}

/// The `DPoP` challenge's settings.
#[derive(Clone, Debug)]
pub(crate) struct DpopChallenge {
    /// The accepted proof algorithms, space-separated (`algs`).
    pub(crate) algs: Arc<str>,
    /// Whether `Bearer` is accepted too (both challenges are then sent).
    pub(crate) bearer: bool,
}

impl ChallengeConfig {
    /// The same settings, answering a request that used `scheme`.
    pub(crate) fn for_scheme(&self, scheme: Scheme) -> Self {
        Self {
            used: scheme,
            ..self.clone()
        }
    }
}

impl fmt::Debug for ChallengeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengeConfig")
            .field("realm", &self.realm)
            .field("render", &self.render.as_ref().map(|_| "<fn>"))
            .field("dpop", &self.dpop)
            .field("used", &self.used)
            .field("resource_metadata", &self.resource_metadata)
            .finish()
    }
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self {
            realm: Arc::from("api"),
            render: None,
            dpop: None,
            used: Scheme::Bearer,
            resource_metadata: None,
        }
    }
}
