//! Finding exactly one access token in a request (RFC 6750 §2).
//!
//! By default only the `Authorization: Bearer <token68>` header is read
//! (§2.1): the scheme is matched case-insensitively, the value must be one
//! token68 (no commas, no second credential, no trailing data) and no longer
//! than the configured maximum. Two `Authorization` headers, or a token sent
//! by two methods at once, are a malformed request (400 `invalid_request`).
//!
//! The URI query parameter `access_token` (§2.3) and a named cookie are read
//! only when enabled with [`TokenSources`]; RFC 6750 discourages the query
//! form because URLs end up in logs. Tokens in form-encoded bodies (§2.2) are
//! read only behind [`TokenGuard::form_token_layer`](crate::TokenGuard::form_token_layer).

use std::borrow::Cow;

use http::{HeaderMap, Uri, header};

use crate::error::{AuthError, InvalidRequest, InvalidToken};
use crate::syntax::{Scheme, is_token68};

/// Where the guard looks for the access token. The `Authorization` header is
/// always read; the others only when enabled.
///
/// ```
/// use tokenguard::TokenSources;
/// let sources = TokenSources::default().with_query().with_cookie("access_token");
/// # let _ = sources;
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TokenSources {
    /// Read the `access_token` URI query parameter (RFC 6750 §2.3).
    pub query: bool,
    /// Read the cookie of this name.
    pub cookie: Option<String>,
    /// Accept `Authorization: DPoP` too (set by the builder when DPoP is on).
    pub(crate) dpop: bool,
}

impl TokenSources {
    /// Also accept `?access_token=…` (RFC 6750 §2.3).
    pub fn with_query(mut self) -> Self {
        self.query = true;
        self
    }

    /// Also accept the token from the cookie `name`.
    pub fn with_cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }
}

/// Parses one `Authorization` header value. `Ok(None)` when the scheme is not
/// `Bearer` (a request without bearer credentials).
pub fn parse_authorization(value: &[u8], max_len: usize) -> Result<Option<&str>, AuthError> {
    match split_authorization(value, max_len, false)? {
        Some((_, token)) => check_token68(token).map(Some),
        None => Ok(None),
    }
}

/// The scheme and token of a `Bearer` (or, when `dpop`, `DPoP`) header
/// value, its syntax not yet checked beyond the scheme, the separator and
/// the size.
fn split_authorization(
    value: &[u8],
    max_len: usize,
    dpop: bool,
) -> Result<Option<(Scheme, &[u8])>, AuthError> {
    let malformed = || AuthError::invalid_request(InvalidRequest::MalformedCredentials);
    // Whitespace around a field value is not part of it (RFC 9110 §5.5).
    let value = value.trim_ascii();
    let scheme_len = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at_checked(scheme_len).unwrap_or((value, b""));
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else {
        return Ok(None);
    };
    // `Bearer` 1*SP token68 (RFC 6750 §2.1); `DPoP` likewise (RFC 9449 §7.1).
    let token = trim_spaces(rest);
    if token.len() == rest.len() || token.is_empty() {
        // `Bearer` alone, or `Bearer\t…`.
        return Err(malformed());
    }
    if token.len() > max_len {
        return Err(AuthError::invalid_token(InvalidToken::TooLarge));
    }
    Ok(Some((scheme, token)))
}

/// Checks that `token` is a token68 (400 `invalid_request` otherwise).
fn check_token68(token: &[u8]) -> Result<&str, AuthError> {
    let malformed = || AuthError::invalid_request(InvalidRequest::MalformedCredentials);
    if !is_token68(token) {
        return Err(malformed());
    }
    // token68 is ASCII.
    std::str::from_utf8(token).map_err(|_| malformed())
}

/// The scheme of the request's `Authorization` header, for rendering a
/// refusal of a credential that could not be read.
pub(crate) fn scheme_of(headers: &HeaderMap, dpop: bool) -> Scheme {
    let is_dpop = headers.get(header::AUTHORIZATION).is_some_and(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"dpop "))
    });
    if dpop && is_dpop {
        Scheme::Dpop
    } else {
        Scheme::Bearer
    }
}

/// What the form-body layer found (RFC 6750 §2.2), for this step to read.
#[derive(Clone)]
pub(crate) struct FormToken(pub(crate) Result<String, AuthError>);

/// The access token found in a request.
pub(crate) struct Found<'a> {
    bytes: Cow<'a, [u8]>,
    /// Whether its token68 syntax was checked already.
    checked: bool,
    /// Whether it came in the URI query (RFC 6750 §2.3: the response must
    /// then be `Cache-Control: private`).
    in_query: bool,
    scheme: Scheme,
}

impl std::fmt::Debug for Found<'_> {
    // Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Found<'a> {
    /// The raw token. Exactly equal to a token verified before, it needs no
    /// other check (the verified-token cache looks it up first).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the token came in the URI query.
    pub(crate) fn in_query(&self) -> bool {
        self.in_query
    }

    /// The scheme it was presented with.
    pub(crate) fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The token, its token68 syntax checked.
    #[cfg(test)]
    pub(crate) fn token(&self) -> Result<&str, AuthError> {
        self.syntax()?;
        self.text()
    }

    /// The token as text, its token68 syntax not checked yet: for a
    /// verifier that checks it with [`syntax`](Self::syntax) when it must.
    pub(crate) fn text(&self) -> Result<&str, AuthError> {
        std::str::from_utf8(&self.bytes)
            .map_err(|_| AuthError::invalid_request(InvalidRequest::MalformedCredentials))
    }

    /// Whether the token is a token68 (RFC 6750 §2.1).
    pub(crate) fn syntax(&self) -> Result<(), AuthError> {
        // Checked when decoded from a query or cookie.
        if self.checked || is_token68(&self.bytes) {
            Ok(())
        } else {
            Err(AuthError::invalid_request(
                InvalidRequest::MalformedCredentials,
            ))
        }
    }
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// Finds the single access token of a request. `Ok(None)`: there is none.
pub(crate) fn extract<'a>(
    headers: &'a HeaderMap,
    uri: &'a Uri,
    extensions: &'a http::Extensions,
    sources: &TokenSources,
    max_len: usize,
) -> Result<Option<Found<'a>>, AuthError> {
    let mut found: Option<Found<'a>> = None;
    let mut put = |bytes: Cow<'a, [u8]>, checked: bool, in_query: bool, scheme: Scheme| {
        if found.is_some() {
            return Err(AuthError::invalid_request(
                InvalidRequest::SeveralCredentials,
            ));
        }
        found = Some(Found {
            bytes,
            checked,
            in_query,
            scheme,
        });
        Ok(())
    };

    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = auth.next() {
        if auth.next().is_some() {
            return Err(AuthError::invalid_request(
                InvalidRequest::SeveralAuthorizationHeaders,
            ));
        }
        if let Some((scheme, token)) = split_authorization(value.as_bytes(), max_len, sources.dpop)?
        {
            put(Cow::Borrowed(token), false, false, scheme)?;
        }
    }

    if sources.query
        && let Some(query) = uri.query()
    {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if is_access_token_name(name.as_bytes()) {
                put(
                    Cow::Owned(decode_param(value, max_len, true)?.into_bytes()),
                    true,
                    true,
                    Scheme::Bearer,
                )?;
            }
        }
    }

    if let Some(cookie_name) = &sources.cookie {
        // A client sends one `Cookie` header (RFC 6265 §5.4); every one is read,
        // as bytes, so that neither a second header nor a non-ASCII byte can
        // hide a second token.
        for value in headers.get_all(header::COOKIE) {
            for pair in value.as_bytes().split(|&b| b == b';') {
                let Some((name, v)) = name_value(pair.trim_ascii()) else {
                    continue;
                };
                if name.trim_ascii() != cookie_name.as_bytes() {
                    continue;
                }
                let v = v.trim_ascii();
                let v = std::str::from_utf8(v).map_err(|_| {
                    AuthError::invalid_request(InvalidRequest::MalformedCredentials)
                })?;
                put(
                    Cow::Owned(decode_param(v, max_len, false)?.into_bytes()),
                    true,
                    false,
                    Scheme::Bearer,
                )?;
            }
        }
    }
    // Put there by the form layer, which is the opt-in for body tokens.
    if let Some(FormToken(token)) = extensions.get::<FormToken>() {
        let token = token.as_ref().map_err(Clone::clone)?;
        put(Cow::Borrowed(token.as_bytes()), true, false, Scheme::Bearer)?;
    }
    Ok(found)
}

/// Splits a `name=value` pair at its first `=`; `None` without one.
pub(crate) fn name_value(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    Some((pair.get(..eq)?, pair.get(eq + 1..)?))
}

/// Percent-decodes `bytes` (and `+` as a space when `plus_is_space`);
/// `None` for a malformed escape.
fn percent_decode(bytes: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes.iter();
    while let Some(&b) = rest.next() {
        out.push(match b {
            b'%' => {
                let hi = hex(*rest.next()?)?;
                let lo = hex(*rest.next()?)?;
                // Two hex digits: at most 0xff.
                (hi * 16 + lo) as u8
            }
            b'+' if plus_is_space => b' ',
            b => b,
        });
    }
    Some(out)
}

/// Whether a form-encoded parameter name (query or body) is `access_token`,
/// compared after decoding, so that `access%5Ftoken` is one too.
pub(crate) fn is_access_token_name(name: &[u8]) -> bool {
    const NAME: &[u8] = b"access_token";
    if name == NAME {
        return true;
    }
    // Escapes only make a name longer; at most 3 bytes per byte of the name.
    name.len() <= NAME.len() * 3
        && name.iter().any(|&b| b == b'%' || b == b'+')
        && percent_decode(name, true).is_some_and(|n| n == NAME)
}

/// Percent-decodes a query, form-body or cookie value and checks it is a
/// token68. With `plus_is_space` (form encoding: the body, RFC 6750 §2.2; the
/// query, §2.3, is decoded the same way by convention), `+` stands for a
/// space and so never yields a valid token.
pub(crate) fn decode_param(
    value: &str,
    max_len: usize,
    plus_is_space: bool,
) -> Result<String, AuthError> {
    let malformed = || AuthError::invalid_request(InvalidRequest::MalformedCredentials);
    if value.len() > max_len.saturating_mul(3) {
        return Err(AuthError::invalid_token(InvalidToken::TooLarge));
    }
    let out = percent_decode(value.as_bytes(), plus_is_space).ok_or_else(malformed)?;
    if out.len() > max_len {
        return Err(AuthError::invalid_token(InvalidToken::TooLarge));
    }
    if !is_token68(&out) {
        return Err(malformed());
    }
    String::from_utf8(out).map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AuthErrorKind;

    fn parse(v: &str) -> Result<Option<&str>, AuthErrorKind> {
        parse_authorization(v.as_bytes(), 64).map_err(|e| e.kind().clone())
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(parse("Bearer abc.def-_~+/=="), Ok(Some("abc.def-_~+/==")));
        assert_eq!(parse("bEaReR   abc"), Ok(Some("abc")));
        assert_eq!(parse("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(parse("Bearerabc"), Ok(None));
        let malformed = Err(AuthErrorKind::InvalidRequest(
            InvalidRequest::MalformedCredentials,
        ));
        assert_eq!(parse("Bearer"), malformed);
        assert_eq!(parse("Bearer "), malformed);
        assert_eq!(parse("Bearer a, Bearer b"), malformed);
        assert_eq!(parse("Bearer a b"), malformed);
        assert_eq!(parse("Bearer\tabc"), malformed);
        assert_eq!(parse("Bearer \tabc"), malformed);
        assert_eq!(parse("  Bearer abc \t"), Ok(Some("abc")));
        assert_eq!(parse("Basic\tabc"), Ok(None));
        assert_eq!(parse("Bearer a=b"), malformed);
        assert_eq!(parse("Bearer \"abc\""), malformed);
        assert_eq!(
            parse(&format!("Bearer {}", "a".repeat(65))),
            Err(AuthErrorKind::InvalidToken(InvalidToken::TooLarge))
        );
    }

    #[test]
    fn sources() {
        let uri: Uri = "/x?a=1&access_token=abc%2Edef".parse().unwrap();
        let ext = http::Extensions::new();
        let mut headers = HeaderMap::new();
        let none = TokenSources::default();
        let token = |found: Option<Found<'_>>| found.map(|f| f.token().unwrap().to_owned());
        assert!(extract(&headers, &uri, &ext, &none, 64).unwrap().is_none());
        let q = TokenSources::default().with_query();
        assert_eq!(
            token(extract(&headers, &uri, &ext, &q, 64).unwrap()).as_deref(),
            Some("abc.def")
        );
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(
            extract(&headers, &uri, &ext, &q, 64).unwrap_err().kind(),
            &AuthErrorKind::InvalidRequest(InvalidRequest::SeveralCredentials)
        );
        headers.append(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(
            extract(&headers, &uri, &ext, &none, 64).unwrap_err().kind(),
            &AuthErrorKind::InvalidRequest(InvalidRequest::SeveralAuthorizationHeaders)
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; at=tok.en".parse().unwrap());
        let c = TokenSources::default().with_cookie("at");
        assert_eq!(
            token(extract(&headers, &uri, &ext, &c, 64).unwrap()).as_deref(),
            Some("tok.en")
        );
        // A header token's syntax is checked when it is asked for.
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer a\"b".parse().unwrap());
        let found = extract(&headers, &uri, &ext, &none, 64).unwrap().unwrap();
        assert_eq!(found.bytes(), b"a\"b");
        assert_eq!(
            found.token().unwrap_err().kind(),
            &AuthErrorKind::InvalidRequest(InvalidRequest::MalformedCredentials)
        );
    }
}
