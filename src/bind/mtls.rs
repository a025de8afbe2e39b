//! Certificate-bound tokens (RFC 8705 §3): a token whose `cnf["x5t#S256"]`
//! is the SHA-256 thumbprint of a client certificate is accepted only from a
//! request authenticated by that certificate.
//!
//! The certificate comes from the TLS connection (the application's acceptor
//! puts a [`ClientCertificate`] into the request extensions) or, behind a
//! TLS-terminating proxy the application declares trusted, from the RFC 9440
//! `Client-Cert` header. An untrusted `Client-Cert` header is never read.
//!
//! ```
//! use tokenguard::{ClientCertificate, MtlsConfig};
//! let cert = ClientCertificate::from_der(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
//! assert_eq!(cert.thumbprint().len(), 43);
//! let behind_proxy = MtlsConfig::from_proxy_header("client-cert");
//! # let _ = behind_proxy;
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use sha2::Digest as _;

use crate::error::{AuthError, InvalidRequest, InvalidToken};

/// The client's TLS certificate (DER), as the application's TLS acceptor
/// verified it. Put it into the request extensions, once per connection, for
/// [`MtlsConfig::from_connection`].
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate(Bytes);

impl ClientCertificate {
    /// A certificate from its DER encoding (the end-entity certificate).
    pub fn from_der(der: impl Into<Bytes>) -> Self {
        Self(der.into())
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.0
    }

    /// base64url(SHA-256(DER)): the `x5t#S256` a token bound to this
    /// certificate carries (RFC 8705 §3.1).
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&self.0))
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint())
            .finish()
    }
}

/// Where client certificates come from.
#[derive(Debug, Clone)]
enum Source<H> {
    Connection,
    ProxyHeader(H),
}

/// Certificate-bound tokens (RFC 8705), given to
/// [`TokenGuardBuilder::mtls`](crate::TokenGuardBuilder::mtls).
///
/// Without it, a token bound to a certificate is refused, and no
/// certificate is looked for.
#[derive(Debug, Clone)]
#[must_use]
pub struct MtlsConfig {
    source: Source<String>,
    required: bool,
}

impl MtlsConfig {
    /// The certificate of the TLS connection, as a [`ClientCertificate`] in
    /// the request extensions (the application's acceptor puts it there).
    pub fn from_connection() -> Self {
        Self {
            source: Source::Connection,
            required: false,
        }
    }

    /// The certificate a TLS-terminating proxy forwards in the RFC 9440
    /// header `name` (usually `client-cert`), as a structured-field byte
    /// sequence (`:base64 DER:`). Only for a proxy that is the sole way in
    /// and that strips the header from what clients send: the header is
    /// believed as if it were the connection's certificate. A malformed or
    /// repeated header is answered 400. The connection's own certificate
    /// (the proxy's) is not used. A header with another meaning
    /// (`Authorization`, `DPoP`, `Cookie`, `Host`, …) is a build error.
    pub fn from_proxy_header(name: impl Into<String>) -> Self {
        Self {
            source: Source::ProxyHeader(name.into()),
            required: false,
        }
    }

    /// Refuse tokens that are not bound to a certificate.
    pub fn require_bound_tokens(mut self) -> Self {
        self.required = true;
        self
    }
}

/// Headers whose meaning HTTP or this crate fixes: never a certificate.
const TAKEN: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "dpop",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "forwarded",
    "x-forwarded-for",
];

/// The mTLS step, built from an [`MtlsConfig`].
#[derive(Debug)]
pub(crate) struct Mtls {
    source: Source<HeaderName>,
    pub(crate) required: bool,
}

impl Mtls {
    /// Fails for a header name that is not one.
    pub(crate) fn new(config: MtlsConfig) -> Result<Self, String> {
        let source = match config.source {
            Source::Connection => Source::Connection,
            Source::ProxyHeader(name) => {
                let header = HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                if TAKEN.contains(&header.as_str()) {
                    return Err(format!(
                        "{name:?} carries other data than a client certificate; a proxy forwards \
                         the certificate in a header of its own, e.g. client-cert (RFC 9440)"
                    ));
                }
                Source::ProxyHeader(header)
            }
        };
        Ok(Self {
            source,
            required: config.required,
        })
    }

    /// The request's client certificate, if any; 400 for a malformed
    /// header from the trusted proxy.
    pub(crate) fn certificate(
        &self,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Option<ClientCertificate>, AuthError> {
        match &self.source {
            Source::Connection => Ok(extensions.get::<ClientCertificate>().cloned()),
            Source::ProxyHeader(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => Ok(None),
                    (Some(value), None) => parse_byte_sequence(value.as_bytes())
                        .map(|der| Some(ClientCertificate::from_der(der)))
                        .ok_or_else(malformed),
                    (Some(_), Some(_)) => Err(malformed()),
                }
            }
        }
    }
}

fn malformed() -> AuthError {
    AuthError::invalid_request(InvalidRequest::MalformedClientCertificate)
}

/// An RFC 8941 §3.3.5 byte sequence (`:` base64 `:`), parameters refused:
/// RFC 9440 §2.2 defines none. Written by hand: the grammar is one line, and
/// every other form (lists, parameters) is an error here anyway.
fn parse_byte_sequence(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let inner = value.strip_prefix(b":")?.strip_suffix(b":")?;
    if inner.is_empty() || inner.contains(&b':') {
        return None;
    }
    // RFC 8941 §4.2.7: parsers should accept missing padding and non-zero
    // padding bits.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(inner).ok().filter(|der| !der.is_empty())
}

/// Checks the certificate binding of a token bound to `x5t` (`None`: the
/// token is not certificate-bound).
pub(crate) fn check(
    mtls: &Mtls,
    x5t: Option<&serde_json::Value>,
    cert: Option<&ClientCertificate>,
) -> Result<(), AuthError> {
    let refuse = |reason| Err(AuthError::invalid_token(reason));
    match (x5t, cert) {
        (None, _) if mtls.required => refuse(InvalidToken::CertificateRequired),
        (None, _) => Ok(()),
        (Some(serde_json::Value::String(x5t)), Some(cert)) => {
            // Both are public values; a plain comparison leaks nothing.
            if cert.thumbprint() == *x5t {
                Ok(())
            } else {
                refuse(InvalidToken::CertificateMismatch)
            }
        }
        (Some(serde_json::Value::String(_)), None) => refuse(InvalidToken::CertificateMismatch),
        (Some(_), _) => refuse(InvalidToken::InvalidClaim("cnf")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sequences() {
        assert_eq!(parse_byte_sequence(b":AQID:").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_byte_sequence(b"  :AQID:  ").unwrap(), vec![1, 2, 3]);
        // Missing padding and non-zero padding bits are accepted (RFC 8941 §4.2.7).
        assert_eq!(parse_byte_sequence(b":AQI:").unwrap(), vec![1, 2]);
        assert_eq!(parse_byte_sequence(b":AQI=:").unwrap(), vec![1, 2]);
        assert_eq!(parse_byte_sequence(b":AQJ=:").unwrap(), vec![1, 2]);
        for bad in [
            &b"AQID"[..],
            b":AQID",
            b"::",
            b":AQID:;a=1",
            b":AQID:, :AQID:",
            b":AQ-_:",
            b":not base64!:",
        ] {
            assert!(parse_byte_sequence(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn thumbprint_is_base64url_sha256_of_the_der() {
        // SHA-256("") from FIPS 180-2.
        assert_eq!(
            ClientCertificate::from_der(Vec::new()).thumbprint(),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
