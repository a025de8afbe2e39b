//! Authorization server metadata: OpenID Connect Discovery
//! (`{issuer}/.well-known/openid-configuration`), falling back to RFC 8414
//! (`/.well-known/oauth-authorization-server` inserted before the issuer's path).
//! The document's `issuer` must be identical to the configured issuer
//! (OpenID Connect Discovery §4.3, RFC 8414 §3.3); the endpoints read from it
//! (`jwks_uri`, `introspection_endpoint`) must be HTTPS (or loopback HTTP).

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::fetch::{FetchError, Fetcher, check_url};

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

/// An endpoint that metadata documents name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    /// `jwks_uri` (RFC 8414 §2).
    Jwks,
    /// `introspection_endpoint` (RFC 8414 §2).
    Introspection,
}

/// The well-known URLs to try for `issuer`, in order.
pub(crate) fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let mut oidc = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    vec![oidc, rfc8414]
}

/// Resolves the issuer's `jwks_uri`.
pub(crate) async fn jwks_uri(fetcher: &Fetcher, issuer: &str) -> Result<Url, FetchError> {
    endpoint(fetcher, issuer, Endpoint::Jwks).await
}

/// Resolves one endpoint of the issuer's metadata.
pub(crate) async fn endpoint(
    fetcher: &Fetcher,
    issuer: &str,
    which: Endpoint,
) -> Result<Url, FetchError> {
    let issuer_url = check_url(issuer)?;
    let mut last = None;
    for url in metadata_urls(&issuer_url) {
        match fetcher.get(&url).await {
            Ok(doc) => {
                let meta: Metadata = serde_json::from_slice(&doc.body).map_err(|e| {
                    FetchError::new(format!("metadata document at {url} is not valid: {e}"))
                })?;
                if meta.issuer != issuer {
                    return Err(FetchError::new(format!(
                        "metadata at {url} names issuer {:?}, not the configured {issuer:?}",
                        meta.issuer
                    )));
                }
                let (found, name) = match which {
                    Endpoint::Jwks => (meta.jwks_uri, "jwks_uri"),
                    Endpoint::Introspection => {
                        (meta.introspection_endpoint, "introspection_endpoint")
                    }
                };
                let found = found
                    .ok_or_else(|| FetchError::new(format!("metadata at {url} has no {name}")))?;
                return check_url(&found);
            }
            // Only a missing document moves on to the next well-known URL.
            Err(e) if e.status == Some(StatusCode::NOT_FOUND) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| FetchError::new("no metadata document found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls() {
        let urls = metadata_urls(&Url::parse("https://id.example.com/tenant/a/").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://id.example.com/tenant/a/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://id.example.com/.well-known/oauth-authorization-server/tenant/a"
        );
        let urls = metadata_urls(&Url::parse("https://id.example.com").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://id.example.com/.well-known/oauth-authorization-server"
        );
    }
}
