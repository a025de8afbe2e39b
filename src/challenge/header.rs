//! `WWW-Authenticate` (RFC 6750 §3) and the refusal response.

use http::{HeaderValue, Response, header};

use super::{ChallengeBody, ChallengeConfig, ErrorBody};
use crate::error::{AuthError, AuthErrorKind};

impl AuthError {
    /// The `WWW-Authenticate` value for this error, with the given realm, or
    /// `None` where no challenge belongs (503, 500).
    ///
    /// The realm must be a valid quoted-string content (the builder checks it);
    /// scope names are RFC 6749 scope-tokens, which never hold `"` or `\`.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        let mut out = String::with_capacity(96);
        out.push_str("Bearer realm=\"");
        out.push_str(realm);
        out.push('"');
        match self.kind() {
            AuthErrorKind::MissingToken => {}
            AuthErrorKind::InvalidRequest(_)
            | AuthErrorKind::InvalidToken(_)
            | AuthErrorKind::InsufficientScope { .. } => {
                out.push_str(", error=\"");
                out.push_str(self.error_code().unwrap_or_default());
                out.push_str("\", error_description=\"");
                out.push_str(self.description());
                out.push('"');
                if let AuthErrorKind::InsufficientScope { required } = self.kind() {
                    out.push_str(", scope=\"");
                    // Defence in depth: only scope-token characters may be echoed.
                    out.extend(
                        required
                            .chars()
                            .filter(|c| crate::syntax::is_scope_char_or_space(*c)),
                    );
                    out.push('"');
                }
            }
            AuthErrorKind::KeysUnavailable { .. }
            | AuthErrorKind::IntrospectionUnavailable { .. }
            | AuthErrorKind::Misconfigured(_) => {
                return None;
            }
        }
        Some(out)
    }

    /// Renders the error as an HTTP response with an empty body (or the body
    /// given by `render`), the right status, `WWW-Authenticate` and, for 503,
    /// `Retry-After`.
    pub(crate) fn to_response<B: ChallengeBody>(&self, ctx: &ChallengeConfig) -> Response<B> {
        let custom = ctx.render.as_ref().and_then(|render| render(self));
        let mut headers = http::HeaderMap::new();
        if let Some(value) = self
            .challenge(&ctx.realm)
            .and_then(|c| HeaderValue::try_from(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(retry_after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let body = match custom {
            Some(ErrorBody { content_type, body }) => {
                headers.insert(header::CONTENT_TYPE, content_type);
                B::from_bytes(body)
            }
            None => B::from_bytes(bytes::Bytes::new()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        *response.headers_mut() = headers;
        response
    }
}
