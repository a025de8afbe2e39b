//! `WWW-Authenticate` (RFC 6750 §3, RFC 9449 §7.1) and the refusal response.

use http::{HeaderName, HeaderValue, Response, header};

use super::{ChallengeBody, ChallengeConfig, ErrorBody};
use crate::error::{AuthError, AuthErrorKind, InvalidToken};
use crate::syntax::Scheme;

/// `DPoP-Nonce` (RFC 9449 §8.1).
pub(crate) static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

impl AuthError {
    /// The `Bearer` `WWW-Authenticate` value for this error, with the given
    /// realm, or `None` where no challenge belongs (503, 500).
    ///
    /// The realm must be a valid quoted-string content (the builder checks it);
    /// scope names are RFC 6749 scope-tokens, which never hold `"` or `\`.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        if !self.has_challenge() {
            return None;
        }
        let mut out = String::with_capacity(96);
        render(
            &mut out,
            Scheme::Bearer,
            realm,
            self.carries_error().then_some(self),
            None,
        );
        Some(out)
    }

    /// Whether the response carries `WWW-Authenticate` at all.
    fn has_challenge(&self) -> bool {
        !matches!(
            self.kind(),
            AuthErrorKind::KeysUnavailable { .. }
                | AuthErrorKind::IntrospectionUnavailable { .. }
                | AuthErrorKind::ReplayCheckUnavailable { .. }
                | AuthErrorKind::Misconfigured(_)
        )
    }

    /// Whether the challenge names an error code (all but a missing token).
    fn carries_error(&self) -> bool {
        !matches!(self.kind(), AuthErrorKind::MissingToken)
    }

    /// The `WWW-Authenticate` values for this error under `ctx`: the
    /// challenge of the scheme the error concerns (with the error) first,
    /// then a bare one for the other accepted scheme (RFC 9449 §7.1).
    pub(crate) fn challenges(&self, ctx: &ChallengeConfig) -> Vec<String> {
        if !self.has_challenge() {
            return Vec::new();
        }
        let bearer_offered = ctx.dpop.as_ref().is_none_or(|d| d.bearer);
        let algs = ctx.dpop.as_ref().map(|d| &*d.algs);
        let concerns = match self.kind() {
            AuthErrorKind::InvalidDpopProof(_)
            | AuthErrorKind::UseDpopNonce { .. }
            | AuthErrorKind::InvalidToken(InvalidToken::DpopRequired) => Scheme::Dpop,
            _ if ctx.used == Scheme::Dpop && algs.is_some() => Scheme::Dpop,
            _ if bearer_offered => Scheme::Bearer,
            _ => Scheme::Dpop,
        };
        let mut offered = Vec::with_capacity(2);
        offered.push(concerns);
        match concerns {
            Scheme::Bearer if algs.is_some() => offered.push(Scheme::Dpop),
            Scheme::Dpop if bearer_offered => offered.push(Scheme::Bearer),
            _ => {}
        }
        offered
            .into_iter()
            .enumerate()
            .map(|(i, scheme)| {
                let mut out = String::with_capacity(96);
                let error = (i == 0 && self.carries_error()).then_some(self);
                render(
                    &mut out,
                    scheme,
                    &ctx.realm,
                    error,
                    algs.filter(|_| scheme == Scheme::Dpop),
                );
                if let Some(url) = &ctx.resource_metadata {
                    // RFC 9728 §5.1. The URL was checked at build time, and a
                    // serialized URL holds no `"` or `\`.
                    out.push_str(", resource_metadata=\"");
                    out.push_str(url);
                    out.push('"');
                }
                out
            })
            .collect()
    }

    /// Renders the error as an HTTP response with an empty body (or the body
    /// given by `render`), the right status, `WWW-Authenticate`, and
    /// `Retry-After` for 503 or `DPoP-Nonce` for `use_dpop_nonce`.
    pub(crate) fn to_response<B: ChallengeBody>(&self, ctx: &ChallengeConfig) -> Response<B> {
        let custom = ctx.render.as_ref().and_then(|render| render(self));
        let mut headers = http::HeaderMap::new();
        for challenge in self.challenges(ctx) {
            if let Ok(value) = HeaderValue::try_from(challenge) {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(retry_after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        if let AuthErrorKind::UseDpopNonce { nonce } = self.kind()
            && let Ok(value) = HeaderValue::try_from(nonce.as_str())
        {
            headers.insert(DPOP_NONCE.clone(), value);
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

/// One challenge: `<scheme> realm="…"`, the error when given, `algs` for DPoP.
fn render(
    out: &mut String,
    scheme: Scheme,
    realm: &str,
    error: Option<&AuthError>,
    algs: Option<&str>,
) {
    out.push_str(match scheme {
        Scheme::Bearer => "Bearer realm=\"",
        Scheme::Dpop => "DPoP realm=\"",
    });
    out.push_str(realm);
    out.push('"');
    if let Some(err) = error {
        out.push_str(", error=\"");
        out.push_str(err.error_code().unwrap_or_default());
        out.push_str("\", error_description=\"");
        out.push_str(err.description());
        out.push('"');
        if let AuthErrorKind::InsufficientUserAuthentication {
            acr_values,
            max_age,
        } = err.kind()
        {
            // RFC 9470 §3. Values were checked when configured.
            if let Some(acr) = acr_values {
                out.push_str(", acr_values=\"");
                out.extend(
                    acr.chars()
                        .filter(|c| crate::syntax::is_scope_char_or_space(*c)),
                );
                out.push('"');
            }
            if let Some(age) = max_age {
                out.push_str(", max_age=\"");
                out.push_str(&age.to_string());
                out.push('"');
            }
        }
        if let AuthErrorKind::InsufficientScope { required } = err.kind() {
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
    if let Some(algs) = algs {
        out.push_str(", algs=\"");
        out.push_str(algs);
        out.push('"');
    }
}
