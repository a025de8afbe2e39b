//! HTTP fetches for key sets, discovery documents and introspection:
//! one injectable `reqwest::Client`, a total timeout, a response size cap, no
//! redirects, and URLs that must be HTTPS (HTTP only on loopback).
//!
//! ```
//! use tokenguard::TokenGuard;
//! // Plain HTTP is refused off loopback, at build time.
//! assert!(TokenGuard::builder().issuer("http://id.example.com").audience("a").build().is_err());
//! ```

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};

/// A failed fetch (discovery, JWKS or introspection).
#[derive(Debug, Clone)]
pub(crate) struct FetchError {
    pub(crate) message: String,
    pub(crate) status: Option<StatusCode>,
}

impl FetchError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks that `url` parses and is HTTPS, or HTTP on a loopback host.
pub(crate) fn check_url(url: &str) -> Result<Url, FetchError> {
    let parsed =
        Url::parse(url).map_err(|e| FetchError::new(format!("invalid URL {url:?}: {e}")))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(FetchError::new(format!(
            "{url:?} must be an https URL (http only on loopback)"
        ))),
    }
}

/// A fetched document.
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) max_age: Option<Duration>,
    /// The `Content-Type`, when it is a visible-ASCII value.
    pub(crate) content_type: Option<String>,
}

/// HTTP GET with the guard's client, timeout and size cap.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
}

/// The client used when the app injects none: no redirects, connect timeout.
pub(crate) fn default_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("tokenguard/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn max_age(value: Option<&HeaderValue>) -> Option<Duration> {
    let value = value?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, v)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            age = v
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

impl Fetcher {
    /// GET `url` (a JWKS or metadata document).
    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let request = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json, application/jwk-set+json");
        self.send(url, request).await
    }

    /// POST a form (`application/x-www-form-urlencoded`) to `url`, with an
    /// optional `Authorization` value, accepting the media type `accept`.
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        authorization: Option<HeaderValue>,
        form: String,
        accept: &'static str,
    ) -> Result<Fetched, FetchError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(ACCEPT, accept)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        self.send(url, request).await
    }

    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.timeout, self.read(url, request)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::new(format!(
                "{url} did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn read(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, FetchError> {
        // `without_url`: a URL can carry a query, and errors are logged.
        let fail =
            |e: reqwest::Error| FetchError::new(format!("fetching {url}: {}", e.without_url()));
        let mut resp = request.send().await.map_err(fail)?;
        // An injected client may follow redirects: the answer must still come
        // from the URL asked, or a redirect would name another authority.
        if resp.url() != url {
            return Err(FetchError::new(format!(
                "{url} redirected to another URL, which is not trusted (the injected HTTP client follows redirects)"
            )));
        }
        let status = resp.status();
        if !status.is_success() {
            let what = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(FetchError {
                message: format!("{url} answered {status}{what}"),
                status: Some(status),
            });
        }
        if resp
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::new(format!(
                "{url} answered more than {} bytes",
                self.max_bytes
            )));
        }
        let max_age = max_age(resp.headers().get(CACHE_CONTROL));
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::new(format!(
                    "{url} answered more than {} bytes",
                    self.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body: body.freeze(),
            max_age,
            content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("https://id.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        assert!(check_url("http://id.example.com/jwks").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn cache_control() {
        let v = |s: &'static str| max_age(Some(&HeaderValue::from_static(s)));
        assert_eq!(v("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(v("no-store"), Some(Duration::ZERO));
        assert_eq!(v("public"), None);
        assert_eq!(max_age(None), None);
    }
}
